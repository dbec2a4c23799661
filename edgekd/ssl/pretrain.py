"""Pretext-contrastive pretraining (Camarena et al. Sec. 3.2, Eq. 5): the loop, its network and its data.

``PretrainNet`` wraps any registered model and uses only its backbone features (``forward_features``
or the output of the module named by its ``feature_path``), adding a pretext classifier and an MLP
projection head. Both heads are thrown away afterwards: only the backbone weights are kept.

A batch holds, per video, two independently augmented clips (random start, crop, flip) for the
contrastive pair and a pretext-transformed copy of the first clip with its class label; the three
go through the network as one concatenated batch, so BatchNorm statistics see all of them.

    loss = CE(pretext_head(f(t(x1))), y) + contrastive_weight * contrastive(h(f(x1)), h(f(x2)))
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from edgekd.recipe import PRETEXT_TRANSFORMS
from edgekd.ssl.losses import contrastive_loss
from edgekd.ssl.transforms import apply_pretext, sample_pretext
from edgekd.train.loop import FitOptions, make_optimizer
from edgekd.train.perf import autocast, resolve_precision, to_memory_format
from edgekd.utils.rng import capture_rng_state, restore_rng_state


class FeatureExtractor(nn.Module):
    """Backbone features of ``model``: its ``forward_features`` when it has one, else the output of
    the module at ``model.feature_path`` captured by a forward hook (flattened to ``(N, D)``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._captured: torch.Tensor | None = None
        if not hasattr(model, "forward_features"):
            path = getattr(model, "feature_path", None)
            if not isinstance(path, str):
                raise ValueError(f"{type(model).__name__} has neither forward_features nor a feature_path")
            model.get_submodule(path).register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._captured = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "forward_features"):
            return self.model.forward_features(x).flatten(1)
        self._captured = None
        self.model(x)
        if self._captured is None:
            raise RuntimeError(f"feature_path {self.model.feature_path!r} did not run in the forward pass")
        out, self._captured = self._captured.flatten(1), None
        return out


class PretrainNet(nn.Module):
    """Backbone + pretext classifier + two-layer MLP projection head (Tao et al., Camarena Fig. 2)."""

    def __init__(self, model: nn.Module, *, num_pretext: int, input_shape: tuple[int, ...],
                 projection_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.backbone = FeatureExtractor(model)
        was_training = model.training
        model.eval()
        with torch.no_grad():  # feature width from one dry run at the real input size
            dim = self.backbone(torch.zeros(1, *input_shape)).shape[1]
        model.train(was_training)
        self.feature_dim = int(dim)
        self.pretext_head = nn.Linear(dim, num_pretext)
        self.projection = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, projection_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pretext logits, projections)`` of a batch of clips."""
        f = self.backbone(x)
        return self.pretext_head(f), self.projection(f)


class PretextPairDataset(Dataset):
    """Wraps a training ``ClipDataset``: item ``i`` is ``(clip1, clip2, transformed clip1, label)``.

    Labels of the source dataset are never used. Randomness follows torch's RNG (one draw per item),
    like ``ClipDataset``, so the loader seed fixes the transforms too.
    """

    def __init__(self, clips: Dataset, transforms: tuple[str, ...] = PRETEXT_TRANSFORMS) -> None:
        self.clips = clips
        self.transforms = tuple(transforms)

    def __len__(self) -> int:
        return len(self.clips)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        x1 = self.clips[i][0]  # items are (clip, label) or (clip, label, extras)
        x2 = self.clips[i][0]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        draw = sample_pretext(rng, self.transforms)
        return x1, x2, apply_pretext(x1, draw).contiguous(), draw.label


@dataclass(frozen=True)
class PretrainOptions:
    epochs: int
    lr: float
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    contrastive_weight: float = 0.5
    temperature: float = 0.07
    negatives: str = "all"
    precision: str = "fp32"  # fp32 | bf16, chosen by the caller (edgekd.train.precision)
    channels_last: bool = True
    max_steps_per_epoch: int | None = None
    desc: str = "pretrain"


def pretrain_loss(net: PretrainNet, x1: torch.Tensor, x2: torch.Tensor, xt: torch.Tensor, labels: torch.Tensor,
                  opts: PretrainOptions, precision: str = "fp32") -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5 on one batch; also returns its parts and the pretext accuracy."""
    n = x1.shape[0]
    batch = to_memory_format(torch.cat([x1, x2, xt]), opts.channels_last)
    with autocast(precision):
        logits, z = net(batch)
    logits, z = logits.float(), z.float()
    pretext = F.cross_entropy(logits[2 * n:], labels)
    contrast = contrastive_loss(z[:n], z[n:2 * n], temperature=opts.temperature, negatives=opts.negatives)  # type: ignore[arg-type]
    total = pretext + opts.contrastive_weight * contrast
    acc = float((logits[2 * n:].argmax(1) == labels).float().mean())
    return total, {"pretext_loss": pretext.item(), "contrastive_loss": contrast.item(), "pretext_top1": acc}


def run_pretraining(net: PretrainNet, loader: DataLoader, opts: PretrainOptions, *, metrics_path: Path,
                    on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``net`` (backbone and both heads) for ``opts.epochs``; one metrics line per epoch.

    ``opts.precision`` is fp32 or bf16 (chosen by the caller's probe). A non-finite loss under bf16
    rolls the epoch back to its start and trains on in fp32 (recorded in that epoch's row), as the
    supervised loop does; under fp32 it stops."""
    precision = resolve_precision(opts.precision)
    net = to_memory_format(net, opts.channels_last)  # type: ignore[assignment]
    fit_opts = FitOptions(epochs=opts.epochs, lr=opts.lr, optimizer=opts.optimizer, weight_decay=opts.weight_decay)
    optimizer = make_optimizer(net, fit_opts)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text("")
    history = []
    for epoch in range(1, opts.epochs + 1):
        start = None
        if precision == "bf16":
            start = (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()),
                     capture_rng_state(loader.generator))
        switched = None
        try:
            stats = _epoch(net, loader, optimizer, opts, precision, epoch)
        except FloatingPointError as err:
            if start is None:
                raise
            net.load_state_dict(start[0])
            optimizer.load_state_dict(start[1])
            restore_rng_state(start[2], loader.generator)
            precision = "fp32"
            switched = {"from": "bf16", "to": "fp32", "epoch": epoch, "reason": str(err)}
            tqdm.write(f"[{opts.desc}] non-finite loss in bf16: epoch {epoch} rolled back, training on in fp32")
            stats = _epoch(net, loader, optimizer, opts, precision, epoch)
        row = {"epoch": epoch, **stats, "precision": precision}
        if switched is not None:
            row["precision_fallback"] = switched
        history.append(row)
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if on_epoch is not None:
            on_epoch(row)
        tqdm.write(f"[{opts.desc}] epoch {epoch}/{opts.epochs}  loss {row['loss']:.4f}  pretext {row['pretext_loss']:.4f} "
                   f"(top-1 {row['pretext_top1']:.3f})  contrastive {row['contrastive_loss']:.4f}")
    return history


def _epoch(net: PretrainNet, loader: DataLoader, optimizer: torch.optim.Optimizer, opts: PretrainOptions,
           precision: str, epoch: int) -> dict[str, float]:
    net.train()
    total = min(len(loader), opts.max_steps_per_epoch or len(loader))
    sums = {"loss": 0.0, "pretext_loss": 0.0, "contrastive_loss": 0.0, "pretext_top1": 0.0}
    n_seen = 0
    start = time.perf_counter()
    for step, (x1, x2, xt, labels) in enumerate(tqdm(loader, total=total, desc=f"{opts.desc} {epoch}/{opts.epochs}",
                                                     leave=False, dynamic_ncols=True)):
        if step >= total:
            break
        if x1.shape[0] < 2:
            continue  # a last batch of one video has no negatives
        loss, parts = pretrain_loss(net, x1, x2, xt, labels, opts, precision)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{opts.desc}: non-finite loss {loss.item()} at epoch {epoch} step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = x1.shape[0]
        n_seen += b
        sums["loss"] += loss.item() * b
        for k in ("pretext_loss", "contrastive_loss", "pretext_top1"):
            sums[k] += parts[k] * b
    elapsed = time.perf_counter() - start
    return {**{k: v / max(n_seen, 1) for k, v in sums.items()}, "clips_per_s": 3 * n_seen / max(elapsed, 1e-9),
            "epoch_s": elapsed}
