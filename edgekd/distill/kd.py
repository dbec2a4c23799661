"""Assemble the distillation loss a recipe asks for: the registered loss (``edgekd.distill.losses``)
with its parameters, the teacher runner (+ cache), feature taps and projection for losses on
features, and the input the teacher sees (the student's clips, or the aligned flow clips of
``extras`` for a flow teacher and an RGB student)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from edgekd.distill.cache import CachedTeacher
from edgekd.distill.losses import combine, resolve
from edgekd.distill.projection import feature_projection
from edgekd.distill.taps import FeatureTap, default_feature_path
from edgekd.distill.teacher import Teacher, TeacherOutput, make_teacher
from edgekd.recipe import DistillConfig
from edgekd.train.loop import LossFn
from edgekd.utils import distributed as dist

# keys of an input spec that describe which pixels a clip holds; a flow teacher and an RGB student
# must agree on these even though their normalisation and channel count differ
FRAME_KEYS = ("clip_len", "frame_interval", "resize", "crop", "layout")


def check_teacher_compatible(teacher_classes: Sequence[str], teacher_spec: dict[str, Any],
                             classes: Sequence[str], spec: dict[str, Any], *, same_modality: bool) -> None:
    """Refuse a teacher trained on other classes or other clips, showing both values.

    With the same modality the whole input spec must match. A teacher of another modality (flow
    teacher, RGB student) must see the same frames and crop; its normalisation is its own.
    """
    if list(teacher_classes) != list(classes):
        raise ValueError(f"teacher classes {list(teacher_classes)} differ from the dataset's {list(classes)}")
    keys = sorted(set(teacher_spec) | set(spec)) if same_modality else FRAME_KEYS
    diff = {k: (teacher_spec.get(k), spec.get(k)) for k in keys if teacher_spec.get(k) != spec.get(k)}
    if diff:
        shown = "; ".join(f"{k}: teacher {t!r} vs student {s!r}" for k, (t, s) in diff.items())
        raise ValueError(f"teacher input spec differs from the student's ({shown})")


@dataclass
class KDSetup:
    """What ``fit`` needs for a KD student: the loss, the extra trainable modules (a projection)."""

    loss_fn: LossFn
    teacher: CachedTeacher
    projection: nn.Module | None = None
    extra_modules: list[nn.Module] = field(default_factory=list)
    loss: str = ""  # the registered loss's mechanism name

    def describe(self) -> dict[str, Any]:
        return {"loss": self.loss, "teacher": self.teacher.teacher.describe(), "cache": self.teacher.stats(),
                "projection": None if self.projection is None else type(self.projection).__name__}


def build_kd(
    cfg: DistillConfig,
    teacher_model: nn.Module,
    student: nn.Module,
    *,
    teacher_input_shape: tuple[int, ...],
    student_input_shape: tuple[int, ...],
    precision: str,
    channels_last: bool,
    teacher_input: str = "clips",
    fingerprint: str = "",
    teacher_calibration: Any = None,
) -> KDSetup:
    """The KD loss ``cfg.method`` selects (from the KD-loss registry) for ``student`` against the
    frozen ``teacher_model``, with its parameters from the recipe block ``distill.<method>``.

    ``teacher_input`` is ``"clips"`` (the teacher sees the student's batch) or the ``extras`` key
    holding the teacher's input (``"flow"``). ``fingerprint`` identifies the teacher's outputs for
    a persisted cache. A loss that needs features (``features=True`` in its registration) gets the
    teacher's and the student's tapped by module path (the parameters ``teacher_features`` /
    ``student_features``, else each model's ``feature_path``), the student's projected to the
    teacher's width by a learned projection trained with the student.
    """
    loss, params = resolve(cfg)
    s_tap = None
    teacher = cached_teacher(cfg, teacher_model, input_shape=teacher_input_shape, precision=precision,
                             channels_last=channels_last, fingerprint=fingerprint, calibration=teacher_calibration)
    runner = teacher.teacher
    proj: nn.Module | None = None
    if loss.features:
        s_tap = FeatureTap(student, getattr(params, "student_features", None) or default_feature_path(student))
        assert runner.feature_dim is not None
        proj = feature_projection(_feature_dim(student, s_tap, student_input_shape), runner.feature_dim)

    def teacher_out(clips: torch.Tensor, extras: dict[str, Any]) -> TeacherOutput:
        if teacher_input == "clips":
            x = clips
        elif teacher_input in extras:
            x = extras[teacher_input]
        else:
            raise KeyError(f"the teacher reads extras[{teacher_input!r}], but the batch carries {sorted(extras)}")
        key = extras.get("clip_key") if cfg.cache != "off" else None
        out = teacher(x, key)
        # the loss runs where the student's batch is (a GPU under NCCL; the OpenVINO teacher is CPU-only)
        return TeacherOutput(out.logits.to(clips.device),
                             None if out.features is None else out.features.to(clips.device))

    def kd_loss(logits: torch.Tensor, labels: torch.Tensor, clips: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        t = teacher_out(clips, extras)
        f_s = None if s_tap is None or proj is None else proj(s_tap.pop().float())
        terms = loss.term(logits, t.logits, params, f_s, t.features)
        labelled = labels >= 0  # transfer-set clips carry label -1: their soft terms only
        return combine(terms, logits, labels, None if bool(labelled.all()) else labelled)

    extra = [proj] if proj is not None and any(True for _ in proj.parameters()) else []
    return KDSetup(kd_loss, teacher, proj, extra, loss.name)


def cached_teacher(cfg: DistillConfig, teacher_model: nn.Module, *, input_shape: tuple[int, ...], precision: str,
                   channels_last: bool, fingerprint: str, calibration: Any = None) -> CachedTeacher:
    """The frozen teacher as the recipe runs it (``distill.teacher_backend``, at ``precision``),
    tapping the features its loss needs, behind the output cache: what KD trains against and what
    the ``teacher_outputs`` stage fills ahead of training."""
    loss, params = resolve(cfg)
    tap = (getattr(params, "teacher_features", None) or default_feature_path(teacher_model)) if loss.features else None
    runner: Teacher = make_teacher(cfg.teacher_backend, teacher_model, input_shape=input_shape, feature_tap=tap,
                                   precision=precision, channels_last=channels_last, device=dist.device(),
                                   calibration=calibration)
    return CachedTeacher(runner, fingerprint=fingerprint)


@torch.no_grad()
def _feature_dim(model: nn.Module, tap: FeatureTap, input_shape: tuple[int, ...]) -> int:
    """Width of the tapped features, from one eval-mode forward (so no batch-norm statistic moves)."""
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
        return int(tap.pop().shape[1])
    finally:
        model.train(was_training)
