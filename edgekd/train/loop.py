"""The training loop shared by teacher, scratch student and distilled student.

One loop with a pluggable loss: the scratch baseline and the KD student run the same code with the
same hyper-parameters, so their comparison isolates the distillation loss.

Reliability is part of the loop rather than of each stage:

- after every epoch a resume checkpoint (``ResumeSpec.path``, written atomically) holds the model,
  the loss's extra modules, optimizer, scheduler, every RNG state, the epoch (which fixes the
  sampler position: the loop resumes at epoch boundaries), the metrics so far and the best row. A
  run killed at any point and started again continues after the last finished epoch and ends with
  the same numbers as an uninterrupted run; a checkpoint whose key differs (the recipe changed) is
  discarded;
- a NaN/inf loss under bf16 rolls the epoch back to its start (weights, optimizer, scheduler,
  RNG and loader states, kept in memory while training in bf16) and trains on in fp32, the switch
  recorded in that epoch's metrics row and in the resume checkpoint; under fp32 it stops training
  before the optimiser step, naming the step and the last good checkpoint;
- under torchrun the model is wrapped in DistributedDataParallel, each rank loads its share of the
  global batch, metrics are reduced across ranks and only rank 0 writes files (see
  ``edgekd.distributed``).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from edgekd.train.perf import autocast, resolve_precision, to_memory_format
from edgekd.utils import distributed as dist
from edgekd.utils.atomic import atomic_path, write_text
from edgekd.utils.rng import capture_rng_state, restore_rng_state

# loss_fn(student_logits, labels, clips, extras) -> scalar loss. The clips are passed so a KD loss can
# run its teacher; ``extras`` holds whatever else the loader yields for the batch (a batch may be
# ``(clips, labels)`` or ``(clips, labels, extras_dict)``: aligned flow clips, cache keys, ...).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]

RESUME_FORMAT = "edgekd-resume-v1"


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``(clips, labels)`` or ``(clips, labels, extras)`` -> ``(clips, labels, extras)``."""
    if len(batch) == 2:
        return batch[0], batch[1], {}
    if len(batch) == 3 and isinstance(batch[2], dict):
        return batch[0], batch[1], batch[2]
    raise ValueError(f"a batch must be (clips, labels) or (clips, labels, extras_dict), got {len(batch)} items")


@dataclass(frozen=True)
class FitOptions:
    epochs: int
    lr: float
    optimizer: str = "adam"
    weight_decay: float = 0.0
    precision: str = "fp32"  # fp32 | bf16, chosen before (edgekd.train.precision.choose_precision)
    channels_last: bool = True
    max_steps_per_epoch: int | None = None
    desc: str = "train"
    lr_schedule: str = "constant"  # constant | cosine (per epoch, to 0 at the last epoch)
    precision_reason: str = ""  # why this precision (the probe's verdict), copied into every metrics row
    keep: str = "best_val"  # best_val | last: which epoch's weights on_best receives (see fit)


@dataclass(frozen=True)
class ResumeSpec:
    """Where the per-epoch resume checkpoint lives, and the key it must carry to be used (the
    stage's reuse key: recipe sections + upstream artifacts). Another key means another recipe."""

    path: Path
    key: str


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; the message names the step and the last good checkpoint."""


def make_optimizer(model: nn.Module, opts: FitOptions, extra_modules: Sequence[nn.Module] = ()) -> torch.optim.Optimizer:
    """The fused (single-kernel) implementations: for the 63M-parameter teacher, fused Adam cut a
    training step from 2.2 s to 1.8 s on this CPU (the foreach path spent ~0.3 s in sqrt alone).
    ``extra_modules`` (e.g. a KD feature projection) are trained with the model."""
    params = [p for m in (model, *extra_modules) for p in m.parameters() if p.requires_grad]
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.lr, weight_decay=opts.weight_decay, fused=True)
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay, fused=True)
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=0.9, weight_decay=opts.weight_decay, fused=True)
    raise ValueError(f"unknown optimizer {opts.optimizer!r} (adam, adamw, sgd)")


def make_scheduler(optimizer: torch.optim.Optimizer, opts: FitOptions) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch learning-rate schedule; ``constant`` (the paper's static 1e-4) has none."""
    if opts.lr_schedule == "constant":
        return None
    if opts.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=opts.epochs)
    raise ValueError(f"unknown lr_schedule {opts.lr_schedule!r} (constant, cosine)")


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, clips: torch.Tensor,
                       extras: dict[str, Any]) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


@dataclass
class _Run:
    """Mutable state of one fit: what a resume checkpoint restores."""

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    epoch: int = 0  # last finished epoch
    global_step: int = 0
    precision: str = "fp32"  # what training runs in now (bf16 until a fallback switches it to fp32)
    fallback: dict[str, Any] | None = None  # the bf16 -> fp32 switch, once it happened


@dataclass
class _EpochStart:
    """What rolling an epoch back needs: copies of every state the epoch changes."""

    model: dict[str, Any]
    extra: list[dict[str, Any]]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, Any]
    global_step: int

    @classmethod
    def take(cls, model: nn.Module, extra_modules: Sequence[nn.Module], optimizer: torch.optim.Optimizer,
             scheduler: Any, generators: Sequence[torch.Generator | None], state: _Run) -> _EpochStart:
        return cls(copy.deepcopy(model.state_dict()), [copy.deepcopy(m.state_dict()) for m in extra_modules],
                   copy.deepcopy(optimizer.state_dict()),
                   copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
                   capture_rng_state(*generators), state.global_step)

    def restore(self, model: nn.Module, extra_modules: Sequence[nn.Module], optimizer: torch.optim.Optimizer,
                scheduler: Any, generators: Sequence[torch.Generator | None], state: _Run) -> None:
        model.load_state_dict(self.model)
        for m, sd in zip(extra_modules, self.extra):
            m.load_state_dict(sd)
        optimizer.load_state_dict(self.optimizer)
        if scheduler is not None and self.scheduler is not None:
            scheduler.load_state_dict(self.scheduler)
        restore_rng_state(self.rng, *generators)
        state.global_step = self.global_step


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    opts: FitOptions,
    *,
    loss_fn: LossFn = cross_entropy_loss,
    extra_modules: Sequence[nn.Module] = (),
    on_best: Callable[[nn.Module, dict[str, Any]], None],
    metrics_path: Path,
    resume: ResumeSpec | None = None,
    on_fallback: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train for ``opts.epochs``; after each epoch evaluate on val, log a metrics line and call
    ``on_best`` when val top-1 improves (ties broken by lower val loss), or after every epoch with
    ``opts.keep == "last"`` (a cosine schedule's end; a val set of a few videos picks noise).
    Returns the metrics of the kept epoch.
    ``extra_modules`` hold trainable parameters of the loss (a KD feature projection): they are
    optimised with the model, put in train mode with it and saved in the resume checkpoint.
    With ``resume``, continues from a matching resume checkpoint and writes one every epoch.
    ``on_fallback(precision)`` is called when a non-finite bf16 loss switches training to fp32
    (a KD loss uses it to run its teacher in fp32 too)."""
    device = dist.device()
    model = to_memory_format(model.to(device), opts.channels_last)  # type: ignore[assignment]
    for m in extra_modules:
        m.to(device)
    optimizer = make_optimizer(model, opts, extra_modules)
    scheduler = make_scheduler(optimizer, opts)
    sampler: DistributedSampler | None = None
    if dist.is_distributed():
        seed = train_loader.generator.initial_seed() if train_loader.generator is not None else 0
        train_loader, sampler = dist.shard_train_loader(train_loader, seed)
    generators = (train_loader.generator, val_loader.generator)
    state = _Run(rows=[], best={}, precision=resolve_precision(opts.precision))
    if resume is not None:
        _resume(resume, state, model, extra_modules, optimizer, scheduler, generators, opts.desc)
        if state.fallback is not None and on_fallback is not None:
            on_fallback(state.precision)
    net: nn.Module = model
    if dist.is_distributed():
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if dist.is_main():
        _write_metrics(metrics_path, state.rows)  # a fresh run starts a fresh log; a resumed one keeps its rows
    for epoch in range(state.epoch + 1, opts.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        # a dataset whose samples depend on the epoch (ClipDataset's cycle schedule); set before the
        # iterator forks the (non-persistent) workers, and on resume from the restored epoch
        set_epoch = getattr(train_loader.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        start = _EpochStart.take(model, extra_modules, optimizer, scheduler, generators, state) \
            if state.precision == "bf16" else None
        switched: dict[str, Any] | None = None
        try:
            train_stats = _train_epoch(net, train_loader, optimizer, loss_fn, opts, state.precision, epoch,
                                       extra_modules, state, resume)
        except NonFiniteLossError as err:
            if start is None:
                raise
            # bf16 went non-finite: this epoch again from its start, in fp32, for the rest of the stage
            start.restore(model, extra_modules, optimizer, scheduler, generators, state)
            switched = {"from": "bf16", "to": "fp32", "epoch": epoch, "reason": str(err)}
            state.precision, state.fallback = "fp32", switched
            if dist.is_main():
                tqdm.write(f"[{opts.desc}] non-finite loss in bf16 at epoch {epoch}: rolled back to the start of "
                           f"the epoch, training on in fp32 ({err})")
            if on_fallback is not None:
                on_fallback("fp32")
            train_stats = _train_epoch(net, train_loader, optimizer, loss_fn, opts, state.precision, epoch,
                                       extra_modules, state, resume)
        if scheduler is not None:
            scheduler.step()
        val = _evaluate_all_ranks(model, val_loader, precision=state.precision, channels_last=opts.channels_last)
        row = {"epoch": epoch, **train_stats, **{f"val_{k}": v for k, v in val.items()}, "precision": state.precision}
        if opts.precision_reason:
            row["precision_reason"] = opts.precision_reason
        if switched is not None:
            row["precision_fallback"] = switched
        state.rows.append(row)
        state.epoch = epoch
        if opts.keep == "last" or not state.best or \
                (val["top1"], -val["loss"]) > (state.best["val_top1"], -state.best["val_loss"]):
            state.best = row
            if dist.is_main():
                on_best(model, row)
        # RNG states of every rank, gathered before rank 0 writes (a collective: all ranks call it)
        rng = dist.all_gather_objects(capture_rng_state(*generators))
        if dist.is_main():
            _write_metrics(metrics_path, state.rows)
            if resume is not None:
                _save_resume(resume, state, model, extra_modules, optimizer, scheduler, rng)
            tqdm.write(f"[{opts.desc}] epoch {epoch}/{opts.epochs}  loss {train_stats['train_loss']:.4f}  "
                       f"train top-1 {train_stats['train_top1']:.3f}  val top-1 {val['top1']:.3f}  "
                       f"({train_stats['clips_per_s']:.1f} clips/s, {state.precision})")
    dist.barrier()  # rank 0's checkpoint and metrics are on disk before any rank moves on
    return {**state.best, "final_precision": state.precision, "precision_fallback": state.fallback}


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """The whole log, rewritten atomically each epoch: a kill never leaves a half line, and a resumed
    run's log holds exactly the epochs its checkpoint covers."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _save_resume(spec: ResumeSpec, state: _Run, model: nn.Module, extra_modules: Sequence[nn.Module],
                 optimizer: torch.optim.Optimizer, scheduler: Any, rng: list[dict[str, Any]]) -> None:
    payload = {
        "format": RESUME_FORMAT,
        "key": spec.key,
        "epoch": state.epoch,
        "global_step": state.global_step,
        "world_size": dist.world_size(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra_modules": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in extra_modules],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng,
        # the loop resumes at epoch boundaries, so the sampler's position is the next epoch: a
        # DistributedSampler reshuffles from (seed, epoch); a RandomSampler from the loader generator
        # whose state is in ``rng``
        "sampler": {"next_epoch": state.epoch + 1, "world_size": dist.world_size(),
                    "kind": "distributed" if dist.is_distributed() else "loader_generator"},
        "rows": state.rows,
        "best": state.best,
        "precision": state.precision,
        "precision_fallback": state.fallback,
    }
    with atomic_path(spec.path) as tmp:
        torch.save(payload, tmp)


def load_resume_state(spec: ResumeSpec) -> tuple[dict[str, Any] | None, str]:
    """The resume payload if ``spec.path`` holds one with ``spec.key``, else ``None`` and why.
    Loaded with ``weights_only=True``: a resume file cannot run pickled code."""
    if not spec.path.is_file():
        return None, "no resume checkpoint"
    try:
        payload = torch.load(spec.path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable file is discarded, never trusted
        return None, f"unreadable resume checkpoint ({type(e).__name__}: {e})"
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        return None, f"not an edgekd resume checkpoint (expected format {RESUME_FORMAT!r})"
    if payload.get("key") != spec.key:
        return None, f"it was written for other inputs (key {payload.get('key')}, now {spec.key})"
    return payload, "ok"


def _resume(spec: ResumeSpec, state: _Run, model: nn.Module, extra_modules: Sequence[nn.Module],
            optimizer: torch.optim.Optimizer, scheduler: Any, generators: Sequence[torch.Generator | None],
            desc: str) -> None:
    payload, why = load_resume_state(spec)
    if payload is None:
        if spec.path.exists():
            if dist.is_main():
                print(f"[{desc}] discarding {spec.path}: {why}", flush=True)
            dist.barrier()  # every rank has read (and rejected) it before rank 0 deletes it
            if dist.is_main():
                spec.path.unlink(missing_ok=True)
        return
    model.load_state_dict(payload["model"])
    if len(payload["extra_modules"]) != len(extra_modules):
        raise ValueError(f"{spec.path}: holds {len(payload['extra_modules'])} extra module(s), the loss has "
                         f"{len(extra_modules)}; delete it or re-run with --force")
    for m, sd in zip(extra_modules, payload["extra_modules"]):
        m.load_state_dict(sd)
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    rng = payload["rng"]
    restore_rng_state(rng[min(dist.rank(), len(rng) - 1)], *generators)
    state.rows, state.best = list(payload["rows"]), dict(payload["best"])
    state.epoch, state.global_step = int(payload["epoch"]), int(payload["global_step"])
    if payload.get("precision_fallback"):  # bf16 failed before the kill: go on in what it switched to
        state.precision, state.fallback = str(payload["precision"]), dict(payload["precision_fallback"])
    if dist.is_main():
        print(f"[{desc}] resuming from {spec.path} after epoch {state.epoch} ({state.precision})", flush=True)


def _train_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 opts: FitOptions, precision: str, epoch: int, extra_modules: Sequence[nn.Module],
                 state: _Run, resume: ResumeSpec | None) -> dict[str, float]:
    net.train()
    for m in extra_modules:
        m.train()
    extra_params = [p for m in extra_modules for p in m.parameters() if p.requires_grad]
    device = dist.device()
    total = min(len(loader), opts.max_steps_per_epoch or len(loader))
    counts: dict[str, float] = {"n": 0, "loss": 0.0, "correct": 0, "labelled": 0}
    start = time.perf_counter()
    bar = tqdm(loader, total=total, desc=f"{opts.desc} {epoch}/{opts.epochs}", leave=False, dynamic_ncols=True,
               disable=not dist.is_main())
    try:
        _steps(bar, total, net, optimizer, loss_fn, opts, precision, epoch, extra_params, state, resume, device, counts)
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    # whole-data-set numbers (top-1 over labelled clips: transfer-set clips carry label -1)
    n_seen, loss_sum, correct, labelled = dist.all_reduce_sum(
        [counts["n"], counts["loss"], counts["correct"], counts["labelled"]])
    return {"train_loss": loss_sum / max(n_seen, 1), "train_top1": correct / max(labelled, 1),
            "clips_per_s": n_seen / max(elapsed, 1e-9), "epoch_s": elapsed}


def _steps(bar: Any, total: int, net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
           opts: FitOptions, precision: str, epoch: int, extra_params: list[torch.nn.Parameter], state: _Run,
           resume: ResumeSpec | None, device: torch.device, counts: dict[str, float]) -> None:
    start = time.perf_counter()
    for step, batch in enumerate(bar):
        if step >= total:
            break
        clips, labels, extras = split_batch(batch)
        clips = to_memory_format(clips.to(device), opts.channels_last)
        labels = labels.to(device)
        with autocast(precision, device.type):
            logits = net(clips)
        loss = loss_fn(logits, labels, clips, extras)
        state.global_step += 1
        _stop_if_not_finite(loss, opts.desc, epoch, step, state, resume)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(extra_params)  # DDP averages the model's gradients itself
        optimizer.step()
        b = labels.shape[0]
        counts["n"] += b
        counts["loss"] += loss.item() * b
        counts["correct"] += int((logits.argmax(1) == labels).sum())
        counts["labelled"] += int((labels >= 0).sum())
        rate = counts["n"] / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{counts['loss'] / counts['n']:.4f}", clips_s=f"{rate:.1f}")


def _stop_if_not_finite(loss: torch.Tensor, desc: str, epoch: int, step: int, state: _Run,
                        resume: ResumeSpec | None) -> None:
    """Raise before the optimiser step, so the weights (and every checkpoint) stay finite. Under DDP
    the flag is reduced over ranks, so every rank stops at the same step instead of hanging."""
    bad = not bool(torch.isfinite(loss.detach()).all())
    if dist.is_distributed():
        bad = dist.all_reduce_sum([float(bad)])[0] > 0
    if not bad:
        return
    if resume is not None and state.epoch > 0 and resume.path.is_file():
        last = f"{resume.path} (after epoch {state.epoch}; running again resumes from it)"
    else:
        last = "none (no epoch finished yet)"
    raise NonFiniteLossError(f"{desc}: non-finite loss ({loss.detach().float().item()}) at epoch {epoch}, "
                             f"step {step} of the epoch (global step {state.global_step}); "
                             f"last good checkpoint: {last}. Lower the learning rate or check the inputs.")


def _evaluate_all_ranks(model: nn.Module, loader: DataLoader, *, precision: str, channels_last: bool) -> dict[str, float]:
    """Val metrics over the whole set: each rank predicts its strided share, predictions are
    gathered and put back in data-set order, so every rank computes the same (exact) numbers."""
    if not dist.is_distributed():
        return evaluate(model, loader, precision=precision, channels_last=channels_last)
    probs, labels = predict(model, dist.shard_eval_loader(loader), precision=precision, channels_last=channels_last)
    parts = dist.all_gather_objects((probs, labels))
    n = sum(len(lab) for _, lab in parts)
    all_probs = np.empty((n, probs.shape[1]), dtype=probs.dtype)
    all_labels = np.empty(n, dtype=labels.dtype)
    for r, (p, lab) in enumerate(parts):
        all_probs[r::len(parts)], all_labels[r::len(parts)] = p, lab
    return accuracy_metrics(all_probs, all_labels)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, *, precision: str = "fp32",
            channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Video-level probabilities and labels. A batch of shape (B, K, C, T, H, W) holds K clips per
    video; their softmax outputs are averaged."""
    model.eval()
    device = next(model.parameters()).device
    probs, labels = [], []
    for batch in loader:
        clips, y, _ = split_batch(batch)
        k = 1
        if clips.dim() == 6:
            b, k = clips.shape[:2]
            clips = clips.flatten(0, 1)
        with autocast(precision, device.type):
            logits = model(to_memory_format(clips.to(device), channels_last)).float()
        p = F.softmax(logits, dim=1)
        probs.append(p.view(-1, k, p.shape[1]).mean(1).cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def evaluate(model: nn.Module, loader: DataLoader, *, precision: str = "fp32", channels_last: bool = False) -> dict[str, float]:
    """Top-1, top-5 (when there are >= 5 classes) and NLL loss of video-level predictions."""
    probs, labels = predict(model, loader, precision=precision, channels_last=channels_last)
    return accuracy_metrics(probs, labels)


def accuracy_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    n = len(labels)
    top1 = float((probs.argmax(1) == labels).mean()) if n else math.nan
    out = {"top1": top1, "n": n}
    if probs.shape[1] >= 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        out["top5"] = float((top5 == labels[:, None]).any(1).mean()) if n else math.nan
    eps = 1e-12
    out["loss"] = float(-np.log(probs[np.arange(n), labels] + eps).mean()) if n else math.nan
    return out
