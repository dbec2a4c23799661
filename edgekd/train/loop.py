"""The training loop shared by teacher, scratch student and distilled student.

One loop with a pluggable loss: the scratch baseline and the KD student run the same code with the
same hyper-parameters, so their comparison isolates the distillation loss.
"""

from __future__ import annotations

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
from torch.utils.data import DataLoader
from tqdm import tqdm

from edgekd.train.perf import autocast, resolve_precision, to_memory_format

# loss_fn(student_logits, labels, clips, extras) -> scalar loss. The clips are passed so a KD loss can
# run its teacher; ``extras`` holds whatever else the loader yields for the batch (a batch may be
# ``(clips, labels)`` or ``(clips, labels, extras_dict)``: aligned flow clips, cache keys, ...).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]


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
    precision: str = "auto"
    channels_last: bool = True
    max_steps_per_epoch: int | None = None
    desc: str = "train"


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


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, clips: torch.Tensor,
                       extras: dict[str, Any]) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


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
) -> dict[str, Any]:
    """Train for ``opts.epochs``; after each epoch evaluate on val, append a metrics line and call
    ``on_best`` when val top-1 improves (ties broken by lower val loss). Returns the best metrics.
    ``extra_modules`` hold trainable parameters of the loss (a KD feature projection): they are
    optimised with the model and put in train mode with it."""
    precision = resolve_precision(opts.precision)
    model = to_memory_format(model, opts.channels_last)  # type: ignore[assignment]
    optimizer = make_optimizer(model, opts, extra_modules)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text("")  # a fresh run starts a fresh log
    best: dict[str, Any] = {}
    for epoch in range(1, opts.epochs + 1):
        train_stats = _train_epoch(model, train_loader, optimizer, loss_fn, opts, precision, epoch, extra_modules)
        val = evaluate(model, val_loader, precision=precision, channels_last=opts.channels_last)
        row = {"epoch": epoch, **train_stats, **{f"val_{k}": v for k, v in val.items()}, "precision": precision}
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if not best or (val["top1"], -val["loss"]) > (best["val_top1"], -best["val_loss"]):
            best = row
            on_best(model, row)
        tqdm.write(f"[{opts.desc}] epoch {epoch}/{opts.epochs}  loss {train_stats['train_loss']:.4f}  "
                   f"train top-1 {train_stats['train_top1']:.3f}  val top-1 {val['top1']:.3f}  "
                   f"({train_stats['clips_per_s']:.1f} clips/s)")
    return best


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 opts: FitOptions, precision: str, epoch: int,
                 extra_modules: Sequence[nn.Module] = ()) -> dict[str, float]:
    model.train()
    for m in extra_modules:
        m.train()
    total = min(len(loader), opts.max_steps_per_epoch or len(loader))
    n_seen, loss_sum, correct = 0, 0.0, 0
    start = time.perf_counter()
    bar = tqdm(loader, total=total, desc=f"{opts.desc} {epoch}/{opts.epochs}", leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        if step >= total:
            break
        clips, labels, extras = split_batch(batch)
        clips = to_memory_format(clips, opts.channels_last)
        with autocast(precision):
            logits = model(clips)
        loss = loss_fn(logits, labels, clips, extras)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{opts.desc}: non-finite loss {loss.item()} at epoch {epoch} step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = labels.shape[0]
        n_seen += b
        loss_sum += loss.item() * b
        correct += int((logits.argmax(1) == labels).sum())
        rate = n_seen / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", clips_s=f"{rate:.1f}")
    bar.close()
    elapsed = time.perf_counter() - start
    return {"train_loss": loss_sum / max(n_seen, 1), "train_top1": correct / max(n_seen, 1),
            "clips_per_s": n_seen / max(elapsed, 1e-9), "epoch_s": elapsed}


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, *, precision: str = "fp32",
            channels_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Video-level probabilities and labels. A batch of shape (B, K, C, T, H, W) holds K clips per
    video; their softmax outputs are averaged."""
    model.eval()
    probs, labels = [], []
    for batch in loader:
        clips, y, _ = split_batch(batch)
        k = 1
        if clips.dim() == 6:
            b, k = clips.shape[:2]
            clips = clips.flatten(0, 1)
        with autocast(precision):
            logits = model(to_memory_format(clips, channels_last)).float()
        p = F.softmax(logits, dim=1)
        probs.append(p.view(-1, k, p.shape[1]).mean(1).numpy())
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
