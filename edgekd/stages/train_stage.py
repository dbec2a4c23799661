"""Teacher, scratch-student and distilled-student stages.

The scratch student and the KD student share the ``student`` recipe section (architecture, epochs,
optimiser, batch size, seed), so the only difference between them is the distillation loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from edgekd.utils import distributed as dist
from edgekd.distill.kd import KDSetup, build_kd, check_teacher_compatible
from edgekd.models import build_model, model_accepts
from edgekd.models.complexity import count_params
from edgekd.recipe import TrainConfig
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RESUME_FILE, RunDir
from edgekd.train.checkpoint import load_checkpoint, save_checkpoint
from edgekd.train.loop import FitOptions, ResumeSpec, cross_entropy_loss, evaluate, fit
from edgekd.train.precision import PrecisionChoice, choose_precision
from edgekd.utils.atomic import atomic_path
from edgekd.utils.hashing import stable_hash
from edgekd.utils.rng import deterministic_mode, seed_everything


def _config_for(rd: RunDir, role: str) -> TrainConfig:
    return rd.recipe.teacher if role == "teacher" else rd.recipe.student


def build_for(cfg: TrainConfig, num_classes: int, ctx: DataContext) -> tuple[nn.Module, dict[str, Any]]:
    kwargs: dict[str, Any] = {"num_classes": num_classes, "input_size": [ctx.spec.clip_len, *ctx.spec.crop],
                              "width_mult": cfg.width_mult, "dropout": cfg.dropout}
    if cfg.modality == "flow":  # 2-channel optical-flow clips (Hu et al.'s flow teacher)
        kwargs["in_channels"] = 2
    if cfg.zero_init_residual:  # only when asked: C3D has no residual blocks and no such argument
        if not model_accepts(cfg.model, "zero_init_residual"):
            raise ValueError(f"zero_init_residual: {cfg.model} has no residual blocks (use it with R3D, "
                             f"R(2+1)D, MC3 or 3D-ResNeXt models)")
        kwargs["zero_init_residual"] = True
    model = build_model(cfg.model, **kwargs)
    if cfg.pretrained is not None:  # transfer learning: the checkpoint saved later needs only kwargs
        from edgekd.models.pretrained import load_pretrained

        freeze = "backbone" if cfg.freeze == ("backbone",) else list(cfg.freeze)
        report = load_pretrained(model, cfg.pretrained, layout=cfg.pretrained_layout, freeze=freeze,
                                 adapt_in_channels=cfg.pretrained_adapt_channels)
        print(f"[{cfg.model}] {report.summary()}", flush=True)
    return model, kwargs


def run_train(rd: RunDir, role: str) -> dict[str, Any]:
    """Train ``role`` (teacher | student_scratch | student_kd); keep the best checkpoint on val.

    A network trains on its ``modality``. A KD student whose teacher has another modality (flow
    teacher, RGB student: Hu et al.'s IMRS) trains on ``rgb+flow`` batches, the teacher reading
    the aligned flow clips; the student is evaluated, and later deployed, on RGB alone.
    """
    cfg = _config_for(rd, role)
    ctx = DataContext.load(rd)
    seed_everything(rd.recipe.seed)
    model, kwargs = build_for(cfg, len(ctx.split.classes), ctx)
    if role != "teacher" and rd.recipe.pretrain.enabled:  # fine-tune the self-supervised backbone, fresh head
        from edgekd.stages.pretrain_stage import init_from_pretrain

        print(f"[{role}] from pretrain/ckpt.pt: {init_from_pretrain(model, rd)}", flush=True)
    out = rd.stage_dir(role)
    choice = training_precision(rd, cfg, kwargs, ctx)
    if dist.is_main():
        print(f"[{role}] {choice.line()}", flush=True)
    train_modality = cfg.modality
    kd: KDSetup | None = None
    if role == "student_kd":
        kd = _kd_setup(rd, ctx, cfg, model, choice.precision)
        if rd.recipe.teacher.modality != cfg.modality:
            train_modality = f"{cfg.modality}+{rd.recipe.teacher.modality}"
    spec = _input_spec(ctx, cfg.modality)

    def on_best(m: nn.Module, row: dict[str, Any]) -> None:
        save_checkpoint(out / "ckpt.pt", m, model_name=cfg.model, model_kwargs=kwargs, classes=ctx.split.classes,
                        input_spec=spec, metrics=row)
        if kd is not None and kd.extra_modules:  # the feature projection, to resume or inspect KD
            with atomic_path(out / "kd_projection.pt") as tmp:
                torch.save({k: v.detach().float() for k, v in kd.extra_modules[0].state_dict().items()}, tmp)

    opts = FitOptions(epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                      precision=choice.precision, precision_reason=choice.reason, channels_last=cfg.channels_last,
                      max_steps_per_epoch=cfg.max_steps_per_epoch, desc=role, lr_schedule=cfg.lr_schedule)
    # resume checkpoint keyed on this stage's inputs: a changed recipe or upstream artifact discards it
    with deterministic_mode(rd.recipe.deterministic):
        best = fit(model, _loader(ctx, "train", cfg.batch_size, train_modality),
                   _loader(ctx, "val", cfg.batch_size, cfg.modality), opts,
                   loss_fn=cross_entropy_loss if kd is None else kd.loss_fn,
                   extra_modules=() if kd is None else kd.extra_modules,
                   on_best=on_best, metrics_path=out / "metrics.jsonl",
                   resume=ResumeSpec(out / RESUME_FILE, rd.key(role)),
                   on_fallback=None if kd is None else (lambda _p: kd.teacher.fall_back_to_fp32()))
    if not dist.is_main():  # under torchrun rank 0 alone evaluates and records the stage
        return {}
    # test accuracy of the kept (best-on-val) checkpoint, in fp32, for the record
    final = load_checkpoint(out / "ckpt.pt").build()
    test = evaluate(final, _loader(ctx, "test", cfg.batch_size, cfg.modality))
    result = {"best_epoch": best["epoch"], "val_top1": best["val_top1"], "test_top1": test["top1"],
              **({"test_top5": test["top5"]} if "top5" in test else {}),
              "params": count_params(final), "precision": best["final_precision"], "precision_choice": choice.to_dict(),
              "modality": cfg.modality}
    if best["precision_fallback"]:
        result["precision_fallback"] = best["precision_fallback"]
    if kd is not None:
        if rd.recipe.distill.cache == "disk":
            kd.teacher.save(out / CACHE_FILE)
        result["kd"] = {"method": rd.recipe.distill.method, **kd.describe()}
    return result


CACHE_FILE = "teacher_cache.pt"


def run_teacher(rd: RunDir) -> dict[str, Any]:
    """Stage entry (see the stage table): the teacher."""
    return run_train(rd, "teacher")


def run_student_scratch(rd: RunDir) -> dict[str, Any]:
    """Stage entry: the student with cross-entropy only."""
    return run_train(rd, "student_scratch")


def run_student_kd(rd: RunDir) -> dict[str, Any]:
    """Stage entry: the student distilled from the teacher."""
    return run_train(rd, "student_kd")


def _loader(ctx: DataContext, subset: str, batch_size: int, modality: str) -> DataLoader:
    """Train loader (``rgb``, ``flow`` or ``rgb+flow``) or eval loader of ``subset``."""
    if subset == "train":
        return ctx.train_loader(batch_size, modality=modality)
    return ctx.eval_loader(subset, batch_size, modality=modality)


def _input_spec(ctx: DataContext, modality: str) -> dict[str, Any]:
    """The checkpoint's input contract, with its ``modality`` (rgb | flow)."""
    return dict(ctx.input_spec(modality))


def training_precision(rd: RunDir, cfg: TrainConfig, kwargs: dict[str, Any], ctx: DataContext,
                       batch: int | None = None) -> PrecisionChoice:
    """``cfg.precision`` resolved for this network on this machine (``auto`` runs the cached bf16
    probe at the training shape and per-process batch; see ``edgekd.train.precision``)."""
    channels = 2 if cfg.modality == "flow" else 3
    per_rank = max(1, (batch or cfg.batch_size) // dist.world_size())
    return choose_precision(cfg.precision, build=lambda: build_model(cfg.model, **kwargs),
                            model={"name": cfg.model, **kwargs}, input_shape=(channels, ctx.spec.clip_len, *ctx.spec.crop),
                            batch=per_rank, channels_last=cfg.channels_last, deterministic=rd.recipe.deterministic,
                            device=dist.device(), log=print if dist.is_main() else None)


def _kd_setup(rd: RunDir, ctx: DataContext, cfg: TrainConfig, student: nn.Module, precision: str) -> KDSetup:
    """Frozen teacher + the recipe's KD loss. The teacher runs in eval mode (no dropout) at the
    student's training precision, and never receives gradients. A teacher trained on other classes
    or other clips is refused; a flow teacher is accepted for an RGB student when frames and crop agree."""
    dcfg, tcfg = rd.recipe.distill, rd.recipe.teacher
    ckpt = load_checkpoint(rd.stage_dir("teacher") / "ckpt.pt")
    t_modality = ckpt.input_spec.get("modality", "rgb")
    if t_modality != tcfg.modality:
        raise ValueError(f"teacher checkpoint was trained on {t_modality!r} clips, but teacher.modality is {tcfg.modality!r}")
    check_teacher_compatible(ckpt.classes, ckpt.input_spec, ctx.split.classes, _input_spec(ctx, cfg.modality),
                             same_modality=t_modality == cfg.modality)
    fingerprint = stable_hash({"teacher": (rd.record("teacher") or {}).get("key"), "data": rd.recipe.section_hash("data"),
                               "backend": dcfg.teacher_backend, "precision": precision, "method": dcfg.method,
                               "calibration_clips": dcfg.teacher_calibration_clips if dcfg.teacher_backend == "openvino_int8" else None,
                               "tap": dcfg.teacher_features, "modality": t_modality})
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
    if dcfg.cache == "disk":
        kd.teacher.load(rd.stage_dir("student_kd") / CACHE_FILE)
    return kd
