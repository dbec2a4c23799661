"""Teacher, scratch-student and distilled-student stages.

The scratch student and the KD student share the ``student`` recipe section (architecture, epochs,
optimiser, batch size, seed), so the only difference between them is the distillation loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from edgekd.models import build_model
from edgekd.models.complexity import count_params
from edgekd.recipe import TrainConfig
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir
from edgekd.train.checkpoint import load_checkpoint, save_checkpoint
from edgekd.train.losses import ullah_kd_loss
from edgekd.train.loop import FitOptions, LossFn, cross_entropy_loss, evaluate, fit
from edgekd.train.perf import autocast, resolve_precision, to_memory_format


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _config_for(rd: RunDir, role: str) -> TrainConfig:
    return rd.recipe.teacher if role == "teacher" else rd.recipe.student


def build_for(cfg: TrainConfig, num_classes: int, ctx: DataContext) -> tuple[nn.Module, dict[str, Any]]:
    kwargs: dict[str, Any] = {"num_classes": num_classes, "input_size": [ctx.spec.clip_len, *ctx.spec.crop],
                              "width_mult": cfg.width_mult, "dropout": cfg.dropout}
    return build_model(cfg.model, **kwargs), kwargs


def run_train(rd: RunDir, role: str) -> dict[str, Any]:
    """Train ``role`` (teacher | student_scratch | student_kd); keep the best checkpoint on val."""
    cfg = _config_for(rd, role)
    ctx = DataContext.load(rd)
    seed_everything(rd.recipe.seed)
    model, kwargs = build_for(cfg, len(ctx.split.classes), ctx)
    loss_fn: LossFn = cross_entropy_loss
    if role == "student_kd":
        loss_fn = _kd_loss(rd, ctx, cfg)
    out = rd.stage_dir(role)

    def on_best(m: nn.Module, row: dict[str, Any]) -> None:
        save_checkpoint(out / "ckpt.pt", m, model_name=cfg.model, model_kwargs=kwargs, classes=ctx.split.classes,
                        input_spec=ctx.input_spec(), metrics=row)

    opts = FitOptions(epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                      precision=cfg.precision, channels_last=cfg.channels_last,
                      max_steps_per_epoch=cfg.max_steps_per_epoch, desc=role)
    best = fit(model, ctx.train_loader(cfg.batch_size), ctx.eval_loader("val", cfg.batch_size), opts,
               loss_fn=loss_fn, on_best=on_best, metrics_path=out / "metrics.jsonl")
    # test accuracy of the kept (best-on-val) checkpoint, in fp32, for the record
    final = load_checkpoint(out / "ckpt.pt").build()
    test = evaluate(final, ctx.eval_loader("test", cfg.batch_size))
    return {"best_epoch": best["epoch"], "val_top1": best["val_top1"], "test_top1": test["top1"],
            "params": count_params(final), "precision": resolve_precision(cfg.precision)}


def _kd_loss(rd: RunDir, ctx: DataContext, cfg: TrainConfig) -> LossFn:
    """Frozen teacher + Ullah & Munir's loss. The teacher runs in eval mode (no dropout) under the
    same precision/memory format as the student's training, and never receives gradients."""
    ckpt = load_checkpoint(rd.stage_dir("teacher") / "ckpt.pt")
    if ckpt.classes != ctx.split.classes:
        raise ValueError(f"teacher classes {ckpt.classes} differ from the dataset's {ctx.split.classes}")
    if ckpt.input_spec != ctx.input_spec():
        raise ValueError(f"teacher input spec {ckpt.input_spec} differs from the dataset's {ctx.input_spec()}")
    teacher = to_memory_format(ckpt.build(), cfg.channels_last)
    for p in teacher.parameters():  # type: ignore[union-attr]
        p.requires_grad_(False)
    precision = resolve_precision(cfg.precision)
    alpha, temperature = rd.recipe.distill.alpha, rd.recipe.distill.temperature

    def loss(student_logits: torch.Tensor, labels: torch.Tensor, clips: torch.Tensor,
             extras: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad(), autocast(precision):
            teacher_logits = teacher(clips).float()  # type: ignore[operator]
        return ullah_kd_loss(student_logits, teacher_logits, labels, alpha=alpha, temperature=temperature)

    return loss
