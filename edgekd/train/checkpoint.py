"""Checkpoints that carry their contract: weights plus the model name and kwargs, the class
names, the input spec and the metrics they were saved with, so any later stage (export, bench,
deploy) rebuilds the exact network without the recipe. Loaded with ``weights_only=True`` so a
checkpoint file cannot run arbitrary pickled code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from edgekd.models import build_model
from edgekd.utils.atomic import atomic_path

FORMAT = "edgekd-checkpoint-v1"


@dataclass
class Checkpoint:
    model_name: str
    model_kwargs: dict[str, Any]
    classes: list[str]
    input_spec: dict[str, Any]  # clip_len, frame_interval, resize, crop, mean, std
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Rebuild the network and load the weights (eval mode, float32, contiguous)."""
        model = build_model(self.model_name, **self.model_kwargs)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(path: str | Path, model: nn.Module, *, model_name: str, model_kwargs: dict[str, Any],
                    classes: list[str], input_spec: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write a checkpoint atomically (a crash never leaves a truncated ``ckpt.pt``)."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "model_name": model_name,
        "model_kwargs": _plain(model_kwargs),
        "classes": list(classes),
        "input_spec": _plain(input_spec),
        "metrics": _plain(metrics),
        "state_dict": state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    payload = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{p} is not an edgekd checkpoint (expected format {FORMAT!r})")
    return Checkpoint(payload["model_name"], payload["model_kwargs"], payload["classes"],
                      payload["input_spec"], payload["state_dict"], payload.get("metrics", {}))


def _plain(obj: Any) -> Any:
    """Tuples to lists etc., so the payload holds only types ``weights_only`` loading accepts."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
