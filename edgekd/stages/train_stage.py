"""Teacher and scratch-student stages, and the training run every trained model goes through.

The scratch student and the KD student (``distill_stage.py``) share the ``student`` recipe section
(architecture, epochs, optimiser, batch size, seed) and this module's :func:`run_train`, so the
only difference between them is the loss that the distill stage plugs in (:class:`ExtraLoss`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch.nn as nn
from torch.utils.data import DataLoader

from edgekd.models import build_model, model_accepts
from edgekd.models.complexity import count_params
from edgekd.recipe import TrainConfig
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RESUME_FILE, RunDir
from edgekd.train.checkpoint import load_checkpoint, save_checkpoint
from edgekd.train.loop import (
    FitOptions,
    LossFn,
    ResumeSpec,
    cross_entropy_loss,
    evaluate,
    fit,
)
from edgekd.train.precision import PrecisionChoice, choose_precision
from edgekd.utils import distributed as dist
from edgekd.utils.rng import deterministic_mode, seed_everything


class ExtraLoss(Protocol):
    """What a stage training with more than cross-entropy plugs into :func:`run_train` (the distill
    stage's KD loss): the loss, its trainable modules, the loader modality it needs, and hooks."""

    loss_fn: LossFn
    extra_modules: list[nn.Module]

    def train_loader(self, cfg: TrainConfig, seed: int) -> DataLoader: ...  # the batches it trains on

    def on_fallback(self, precision: str) -> None: ...  # training switched from bf16 to fp32

    def on_best(self, out: Path) -> None: ...  # a new best checkpoint was written to out/ckpt.pt

    def finish(self, out: Path) -> dict[str, Any]: ...  # training ended: save state, return the record


# (run dir, data, training config, the model being trained, training precision) -> the loss plugged in
ExtraLossFactory = Callable[[RunDir, DataContext, TrainConfig, nn.Module, str], ExtraLoss]


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


def run_train(rd: RunDir, role: str, extra: ExtraLossFactory | None = None) -> dict[str, Any]:
    """Train ``role`` (teacher | student_scratch | student_kd); keep the best checkpoint on val.

    A network trains on its ``modality`` with cross-entropy, or with the loss ``extra`` builds (the
    KD student), which may train on other batches (``rgb+flow`` for a flow teacher); the model is
    evaluated, and later deployed, on its own modality alone.
    """
    cfg = _config_for(rd, role)
    ctx = DataContext.load(rd)
    seed = rd.recipe.seed if cfg.seed is None else cfg.seed  # this network's init and batch order
    seed_everything(seed)
    model, kwargs = build_for(cfg, len(ctx.split.classes), ctx)
    pretrained_by = "pretrain_teacher" if role == "teacher" else "pretrain"
    if getattr(rd.recipe.pretrain, "teacher_enabled" if role == "teacher" else "student_enabled"):
        # fine-tune the self-supervised backbone, fresh head
        print(f"[{role}] from {pretrained_by}/ckpt.pt: {init_from_pretrain(model, rd, pretrained_by)}", flush=True)
    out = rd.stage_dir(role)
    choice = training_precision(rd, cfg, kwargs, ctx)
    if dist.is_main():
        print(f"[{role}] {choice.line()}", flush=True)
    plug = None if extra is None else extra(rd, ctx, cfg, model, choice.precision)
    spec = input_spec(ctx, cfg.modality)

    def on_best(m: nn.Module, row: dict[str, Any]) -> None:
        save_checkpoint(out / "ckpt.pt", m, model_name=cfg.model, model_kwargs=kwargs, classes=ctx.split.classes,
                        input_spec=spec, metrics=row)
        if plug is not None:
            plug.on_best(out)

    opts = FitOptions(epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                      precision=choice.precision, precision_reason=choice.reason, channels_last=cfg.channels_last,
                      max_steps_per_epoch=cfg.max_steps_per_epoch, desc=role, lr_schedule=cfg.lr_schedule,
                      keep=cfg.keep)
    # resume checkpoint keyed on this stage's inputs: a changed recipe or upstream artifact discards it
    with deterministic_mode(rd.recipe.deterministic):
        train = ctx.train_loader(cfg.batch_size, modality=cfg.modality, seed=seed, aug_variants=cfg.aug_variants,
                                 aug_schedule=cfg.aug_schedule) if plug is None else plug.train_loader(cfg, seed)
        best = fit(model, train, ctx.eval_loader("val", cfg.batch_size, modality=cfg.modality), opts,
                   loss_fn=cross_entropy_loss if plug is None else plug.loss_fn,
                   extra_modules=() if plug is None else plug.extra_modules,
                   on_best=on_best, metrics_path=out / "metrics.jsonl",
                   resume=ResumeSpec(out / RESUME_FILE, rd.key(role)),
                   on_fallback=None if plug is None else plug.on_fallback)
    if not dist.is_main():  # under torchrun rank 0 alone evaluates and records the stage
        return {}
    # test accuracy of the kept (best-on-val) checkpoint, in fp32, for the record
    final = load_checkpoint(out / "ckpt.pt").build()
    test = evaluate(final, ctx.eval_loader("test", cfg.batch_size, modality=cfg.modality))
    result = {"best_epoch": best["epoch"], "keep": cfg.keep, "val_top1": best["val_top1"], "test_top1": test["top1"],
              **({"test_top5": test["top5"]} if "top5" in test else {}),
              "params": count_params(final), "precision": best["final_precision"], "precision_choice": choice.to_dict(),
              "modality": cfg.modality, "seed": seed}
    if best["precision_fallback"]:
        result["precision_fallback"] = best["precision_fallback"]
    if plug is not None:
        result.update(plug.finish(out))
    return result


def init_from_pretrain(model: nn.Module, rd: RunDir, stage: str = "pretrain") -> str:
    """Load ``<stage>/ckpt.pt`` (a pretrain stage's) into a freshly built network, keeping its fresh
    head (the pretrained one never saw a class label). Any other mismatch is an error listing the keys."""
    from edgekd.models.pretrained import load_pretrained

    report = load_pretrained(model, rd.stage_dir(stage) / "ckpt.pt", layout="edgekd", reset_head=True)
    return report.summary()


def run_teacher(rd: RunDir) -> dict[str, Any]:
    """Stage entry (see the stage table): the teacher."""
    return run_train(rd, "teacher")


def run_student_scratch(rd: RunDir) -> dict[str, Any]:
    """Stage entry: the student with cross-entropy only."""
    return run_train(rd, "student_scratch")


def input_spec(ctx: DataContext, modality: str) -> dict[str, Any]:
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
