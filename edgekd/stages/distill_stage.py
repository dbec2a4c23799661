"""Distilled-student stage: the student trained like the scratch baseline (same ``student``
section, same :func:`~edgekd.stages.train_stage.run_train`), with the recipe's KD loss from the
frozen teacher plugged in instead of cross-entropy alone.

The teacher checkpoint must have been trained on the same classes and clips (a flow teacher may
teach an RGB student when frames and crop agree); it runs in eval mode at the student's training
precision (PyTorch or OpenVINO, ``distill.teacher_backend``), behind the teacher-output cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgekd.distill.kd import KDSetup, build_kd, check_teacher_compatible
from edgekd.distill.losses import resolve as resolve_kd_loss
from edgekd.recipe import TrainConfig
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir
from edgekd.stages.train_stage import input_spec, run_train
from edgekd.train.checkpoint import load_checkpoint
from edgekd.utils import distributed as dist
from edgekd.utils.atomic import atomic_path
from edgekd.utils.hashing import stable_hash


def run_student_kd(rd: RunDir) -> dict[str, Any]:
    """Stage entry (see the stage table): the student distilled from the teacher."""
    return run_train(rd, "student_kd", extra=_kd_plug)


@dataclass
class _KDPlug:
    """The KD loss as :class:`~edgekd.stages.train_stage.ExtraLoss`."""

    kd: KDSetup
    ctx: DataContext
    train_modality: str  # "rgb", or "rgb+flow" for a flow teacher and an RGB student
    cache: Path | None  # the teacher-output cache file (distill.cache: disk)
    method: str  # as the recipe names it (a paper's name or the mechanism's)
    unlabeled_ratio: float  # share of each batch from the transfer set; 0 without one

    @property
    def loss_fn(self) -> Any:
        return self.kd.loss_fn

    @property
    def extra_modules(self) -> list[nn.Module]:
        return self.kd.extra_modules

    def train_loader(self, cfg: TrainConfig, seed: int) -> Any:
        kw = {"modality": self.train_modality, "seed": seed, "aug_variants": cfg.aug_variants,
              "aug_schedule": cfg.aug_schedule}
        if self.unlabeled_ratio > 0:
            return self.ctx.mixed_train_loader(cfg.batch_size, self.unlabeled_ratio, **kw)
        return self.ctx.train_loader(cfg.batch_size, **kw)

    def on_fallback(self, precision: str) -> None:
        self.kd.teacher.fall_back_to_fp32()

    def on_best(self, out: Path) -> None:
        if self.kd.extra_modules:  # the feature projection, to resume or inspect KD
            with atomic_path(out / "kd_projection.pt") as tmp:
                torch.save({k: v.detach().float() for k, v in self.kd.extra_modules[0].state_dict().items()}, tmp)

    def finish(self, out: Path) -> dict[str, Any]:
        if self.cache is not None:
            self.kd.teacher.save(self.cache)
        return {"kd": {"method": self.method, "unlabeled_ratio": self.unlabeled_ratio, **self.kd.describe()}}


def _kd_plug(rd: RunDir, ctx: DataContext, cfg: TrainConfig, student: nn.Module, precision: str) -> _KDPlug:
    kd, cache = _kd_setup(rd, ctx, cfg, student, precision)
    ratio = rd.recipe.distill.unlabeled_ratio if ctx.unlabeled is not None else 0.0
    if ratio > 0 and dist.is_distributed():
        raise NotImplementedError("distillation with an unlabelled transfer set runs in one process; "
                                  "run it without torchrun (or set distill.unlabeled_ratio: 0)")
    return _KDPlug(kd, ctx, _train_modality(rd, cfg), cache, rd.recipe.distill.method, ratio)


def _train_modality(rd: RunDir, cfg: TrainConfig) -> str:
    """A flow teacher and an RGB student (Hu et al.'s IMRS) train on ``rgb+flow`` batches."""
    t = rd.recipe.teacher.modality
    return cfg.modality if t == cfg.modality else f"{cfg.modality}+{t}"


def _kd_setup(rd: RunDir, ctx: DataContext, cfg: TrainConfig, student: nn.Module,
              precision: str) -> tuple[KDSetup, Path | None]:
    """Frozen teacher + the recipe's KD loss. The teacher runs in eval mode (no dropout) at the
    student's training precision, and never receives gradients. A teacher trained on other classes
    or other clips is refused; a flow teacher is accepted for an RGB student when frames and crop agree."""
    dcfg, tcfg = rd.recipe.distill, rd.recipe.teacher
    ckpt = load_checkpoint(rd.stage_dir("teacher") / "ckpt.pt")
    t_modality = ckpt.input_spec.get("modality", "rgb")
    if t_modality != tcfg.modality:
        raise ValueError(f"teacher checkpoint was trained on {t_modality!r} clips, but teacher.modality is {tcfg.modality!r}")
    check_teacher_compatible(ckpt.classes, ckpt.input_spec, ctx.split.classes, input_spec(ctx, cfg.modality),
                             same_modality=t_modality == cfg.modality)
    loss, params = resolve_kd_loss(dcfg)
    # what the teacher's outputs depend on (not the loss itself: only whether it taps features, and where)
    fingerprint = stable_hash({"teacher": (rd.record("teacher") or {}).get("key"), "data": rd.recipe.section_hash("data"),
                               "backend": dcfg.teacher_backend, "precision": precision, "features": loss.features,
                               "calibration_clips": dcfg.teacher_calibration_clips if dcfg.teacher_backend == "openvino_int8" else None,
                               "tap": getattr(params, "teacher_features", None), "modality": t_modality})
    channels = {"rgb": 3, "flow": 2}
    calibration = None
    if dcfg.teacher_backend == "openvino_int8":
        calibration = ctx.eval_array("train", limit=dcfg.teacher_calibration_clips, modality=t_modality)[0]
        print(f"[student_kd] INT8 teacher: NNCF calibration on {len(calibration)} training-split clips")
    kd = build_kd(dcfg, ckpt.build(), student,
                  teacher_input_shape=(channels[t_modality], ctx.spec.clip_len, *ctx.spec.crop),
                  student_input_shape=(channels[cfg.modality], ctx.spec.clip_len, *ctx.spec.crop),
                  precision=precision, channels_last=cfg.channels_last,
                  teacher_input="clips" if t_modality == cfg.modality else t_modality, fingerprint=fingerprint,
                  teacher_calibration=calibration)
    cache = None
    if dcfg.cache == "disk":  # shared by every run with this teacher and data (other student seeds)
        cache = Path(rd.recipe.data.cache_dir) / "teacher_outputs" / f"{fingerprint}.pt"
        if kd.teacher.load(cache):
            print(f"[student_kd] teacher outputs from {cache}: {len(kd.teacher)} (video, variant) entries")
    return kd, cache
