"""The model contract every registered network keeps (``feature_path``, ``head_path``,
``forward_features``), checked one way for every family: the KD losses and feature taps rely on it."""

from __future__ import annotations

import torch
import torch.nn as nn


def check_feature_tap(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In eval mode (no dropout) the output of ``feature_path``, flattened, is exactly the head's
    input and ``forward_features(x)``, and the head applied to it gives the logits. Returns
    ``(logits, features)`` for the caller's own checks."""
    seen: dict[str, torch.Tensor] = {}
    tap = model.get_submodule(model.feature_path).register_forward_hook(lambda mod, i, o: seen.setdefault("f", o.clone()))
    head = model.get_submodule(model.head_path)
    head_in = head.register_forward_pre_hook(lambda mod, i: seen.setdefault("h", i[0].clone()))
    try:
        with torch.no_grad():
            logits = model(x)
            feats = model.forward_features(x)
    finally:
        tap.remove()
        head_in.remove()
    assert logits.shape[0] == x.shape[0] and torch.isfinite(logits).all()
    assert torch.equal(seen["f"].flatten(1), seen["h"])
    assert torch.equal(feats, seen["h"])
    with torch.no_grad():
        assert torch.allclose(head(feats), logits)
    return logits, feats
