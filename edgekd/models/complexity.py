"""Parameter and multiply-accumulate counts.

MACs are counted with forward hooks on the layers that do the arithmetic (convolutions and linear
layers); pooling, ReLU and normalisation are a rounding error next to them and are left out, as in
the usual "GMACs per clip" figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def macs_by_module(model: nn.Module, input_shape: Sequence[int]) -> dict[nn.Module, int]:
    """MACs of each convolution and linear layer for one forward pass of a single input of shape
    ``(C, T, H, W)`` (batch 1); a layer run twice counts twice.

    The probe input is made on the model's device, so a model built on the ``meta`` device is
    counted from shapes alone, without computing anything (fast even for ResNeXt-101)."""
    macs: dict[nn.Module, int] = {}

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.modules.conv._ConvNd):
            per_output = (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
        else:
            per_output = m.in_features
        macs[m] = macs.get(m, 0) + out.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        device = next(iter(model.parameters()), torch.empty(0)).device
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return macs


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs for one forward pass of a single input of shape ``(C, T, H, W)`` (batch 1)."""
    return sum(macs_by_module(model, input_shape).values())
