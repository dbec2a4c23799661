"""Distilled-student stage: the student trained like the scratch baseline (same ``student``
section, same :func:`~edgekd.stages.train_stage.run_train`), with the recipe's KD loss from the
frozen teacher plugged in instead of cross-entropy alone.

The teacher checkpoint must have been trained on the same classes and clips (a flow teacher may
teach an RGB student when frames and crop agree); it runs in eval mode at the student's training
precision (PyTorch or OpenVINO, ``distill.teacher_backend``), behind the teacher-output cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

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
    method: str  # as the recipe names it (a paper's name or the mechanism's)
    unlabeled_ratio: float  # share of each batch from the transfer set; 0 without one
    transfer_variants: int | None  # variants per transfer-set video (None: the student's aug_variants)

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
            return self.ctx.mixed_train_loader(cfg.batch_size, self.unlabeled_ratio, **kw,
                                               transfer_variants=self.transfer_variants)
        return self.ctx.train_loader(cfg.batch_size, **kw)

    def on_fallback(self, precision: str) -> None:
        self.kd.teacher.fall_back_to_fp32()

    def on_best(self, out: Path) -> None:
        if self.kd.extra_modules:  # the feature projection, to resume or inspect KD
            with atomic_path(out / "kd_projection.pt") as tmp:
                torch.save({k: v.detach().float() for k, v in self.kd.extra_modules[0].state_dict().items()}, tmp)

    def finish(self, out: Path) -> dict[str, Any]:
        return {"kd": {"method": self.method, "unlabeled_ratio": self.unlabeled_ratio, **self.kd.describe()}}


def _kd_plug(rd: RunDir, ctx: DataContext, cfg: TrainConfig, student: nn.Module, precision: str) -> _KDPlug:
    kd = _kd_setup(rd, ctx, cfg, student, precision)
    ratio = rd.recipe.distill.unlabeled_ratio if ctx.unlabeled is not None else 0.0
    if ratio > 0 and dist.is_distributed():
        raise NotImplementedError("distillation with an unlabelled transfer set runs in one process; "
                                  "run it without torchrun (or set distill.unlabeled_ratio: 0)")
    return _KDPlug(kd, ctx, _train_modality(rd, cfg), rd.recipe.distill.method, ratio,
                   rd.recipe.distill.transfer_variants)


def _train_modality(rd: RunDir, cfg: TrainConfig) -> str:
    """A flow teacher and an RGB student (Hu et al.'s IMRS) train on ``rgb+flow`` batches."""
    t = rd.recipe.teacher.modality
    return cfg.modality if t == cfg.modality else f"{cfg.modality}+{t}"


@dataclass
class _TeacherPlan:
    """The frozen teacher as KD will run it, and the fingerprint of its outputs."""

    model: nn.Module
    modality: str  # rgb | flow
    input_shape: tuple[int, ...]
    fingerprint: str
    calibration: Any


def _teacher_plan(rd: RunDir, ctx: DataContext, cfg: TrainConfig, precision: str) -> _TeacherPlan:
    """Load the trained teacher, refuse one trained on other classes or clips (a flow teacher is
    accepted for an RGB student when frames and crop agree), and fingerprint what its outputs
    depend on: the teacher's key, the data, backend, precision, feature tap and modality; not the
    loss (a temperature sweep reuses them)."""
    dcfg, tcfg = rd.recipe.distill, rd.recipe.teacher
    ckpt = load_checkpoint(rd.stage_dir("teacher") / "ckpt.pt")
    t_modality = ckpt.input_spec.get("modality", "rgb")
    if t_modality != tcfg.modality:
        raise ValueError(f"teacher checkpoint was trained on {t_modality!r} clips, but teacher.modality is {tcfg.modality!r}")
    check_teacher_compatible(ckpt.classes, ckpt.input_spec, ctx.split.classes, input_spec(ctx, cfg.modality),
                             same_modality=t_modality == cfg.modality)
    loss, params = resolve_kd_loss(dcfg)
    int8 = dcfg.teacher_backend == "openvino_int8"
    fingerprint = stable_hash({"teacher": (rd.record("teacher") or {}).get("key"), "data": rd.recipe.section_hash("data"),
                               "backend": dcfg.teacher_backend, "precision": precision, "features": loss.features,
                               "calibration_clips": dcfg.teacher_calibration_clips if int8 else None,
                               "tap": getattr(params, "teacher_features", None), "modality": t_modality})
    calibration = None
    if int8:
        calibration = ctx.eval_array("train", limit=dcfg.teacher_calibration_clips, modality=t_modality)[0]
        print(f"[student_kd] INT8 teacher: NNCF calibration on {len(calibration)} training-split clips")
    channels = {"rgb": 3, "flow": 2}[t_modality]
    return _TeacherPlan(ckpt.build(), t_modality, (channels, ctx.spec.clip_len, *ctx.spec.crop), fingerprint,
                        calibration)


OUTPUTS = "outputs.pt"  # the teacher_outputs stage's artifact


def _kd_setup(rd: RunDir, ctx: DataContext, cfg: TrainConfig, student: nn.Module, precision: str) -> KDSetup:
    """Frozen teacher + the recipe's KD loss. The teacher runs in eval mode (no dropout) at the
    student's training precision, and never receives gradients; with ``distill.cache: disk`` its
    outputs come from the ``teacher_outputs`` stage, computed before training."""
    dcfg = rd.recipe.distill
    plan = _teacher_plan(rd, ctx, cfg, precision)
    channels = {"rgb": 3, "flow": 2}
    kd = build_kd(dcfg, plan.model, student, teacher_input_shape=plan.input_shape,
                  student_input_shape=(channels[cfg.modality], ctx.spec.clip_len, *ctx.spec.crop),
                  precision=precision, channels_last=cfg.channels_last,
                  teacher_input="clips" if plan.modality == cfg.modality else plan.modality,
                  fingerprint=plan.fingerprint, teacher_calibration=plan.calibration)
    outputs = rd.stage_dir("teacher_outputs") / OUTPUTS
    if dcfg.cache == "disk":
        if kd.teacher.load(outputs):
            print(f"[student_kd] teacher outputs from {outputs}: {len(kd.teacher)} (video, variant) entries")
        else:
            print(f"[student_kd] no teacher outputs to reuse ({outputs} is absent or for another teacher/precision): "
                  "the teacher runs during training")
    return kd


def run_teacher_outputs(rd: RunDir) -> dict[str, Any]:
    """Stage entry: the frozen teacher's outputs on every (video, augmentation variant) the KD
    student will train on, labelled and transfer-set clips alike, computed once and stored in
    ``teacher_outputs/outputs.pt``. Every KD student of the run (other seeds, other temperatures)
    reads them instead of running the teacher; they are bit-identical to what the teacher would
    give during training (same batch size, same kernels: ``edgekd.distill.cache``)."""
    from edgekd.distill.kd import cached_teacher
    from edgekd.stages.train_stage import build_for, training_precision

    cfg, dcfg = rd.recipe.student, rd.recipe.distill
    if dcfg.cache != "disk" or cfg.aug_variants is None:
        why = "distill.cache is not 'disk'" if dcfg.cache != "disk" else \
            "student.aug_variants is not set (every clip is a fresh draw, so outputs cannot be reused)"
        print(f"[teacher_outputs] nothing to compute: {why}", flush=True)
        return {"precomputed": False, "reason": why}
    ctx = DataContext.load(rd)
    student, kwargs = build_for(cfg, len(ctx.split.classes), ctx)
    precision = training_precision(rd, cfg, kwargs, ctx).precision  # the precision KD will train (and run the teacher) in
    plan = _teacher_plan(rd, ctx, cfg, precision)
    teacher = cached_teacher(dcfg, plan.model, input_shape=plan.input_shape, precision=precision,
                             channels_last=cfg.channels_last, fingerprint=plan.fingerprint, calibration=plan.calibration)
    modality = _train_modality(rd, cfg)
    aug = {"aug_variants": cfg.aug_variants, "aug_schedule": cfg.aug_schedule}
    sets = [ctx.dataset("train", train=True, modality=modality, **aug)]
    variants = [cfg.aug_variants]
    if ctx.unlabeled is not None and dcfg.unlabeled_ratio > 0:
        tv = cfg.aug_variants if dcfg.transfer_variants is None else dcfg.transfer_variants
        sets.append(ctx.unlabeled_dataset(modality, tv, cfg.aug_schedule))
        variants.append(tv)
    keys = [(ds, i, v) for ds, n in zip(sets, variants) for i in range(len(ds)) for v in range(n)]
    b = cfg.batch_size  # the batch size KD runs the teacher at (outputs are bit-identical only at one size)
    start = time.perf_counter()
    for k in tqdm(range(0, len(keys), b), desc="teacher outputs", unit="batch"):
        items = [ds.variant_item(i, v) for ds, i, v in keys[k:k + b]]
        clips = torch.stack([it[0] for it in items])
        extras = [it[2] for it in items]
        x = clips if plan.modality == cfg.modality else torch.stack([e[plan.modality] for e in extras])
        teacher(x, torch.stack([e["clip_key"] for e in extras]))
    seconds = time.perf_counter() - start
    teacher.save(rd.stage_dir("teacher_outputs") / OUTPUTS)
    print(f"[teacher_outputs] {len(teacher)} (video, variant) outputs in {seconds:.1f} s "
          f"({len(teacher) / max(seconds, 1e-9):.1f} clips/s, {dcfg.teacher_backend}, {precision})", flush=True)
    return {"precomputed": True, "entries": len(teacher), "labelled_videos": len(sets[0]),
            "unlabelled_videos": len(sets[1]) if len(sets) > 1 else 0, "variants": cfg.aug_variants,
            "transfer_variants": variants[1] if len(variants) > 1 else None,
            "teacher_seconds": round(seconds, 2), "backend": dcfg.teacher_backend, "precision": precision,
            "teacher": teacher.teacher.describe()}
