"""CPU speed settings for PyTorch training: bf16 autocast and the channels_last_3d memory format.

channels_last_3d with bf16 autocast was the fastest combination for the C3D family on an AMX Xeon;
bf16 without channels_last can be slower than fp32, because oneDNN then reorders every activation.
Whether bf16 is used at all is decided by measurement (``edgekd.train.precision``), not here.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn


def resolve_precision(precision: str) -> str:
    """A concrete training precision, ``fp32`` or ``bf16``. ``auto`` is not resolved here: it needs
    the precision probe on the network about to train (``edgekd.train.precision.choose_precision``)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16 here, got {precision!r}"
                         + ("; resolve 'auto' with edgekd.train.precision.choose_precision first" if precision == "auto" else ""))
    return precision


def autocast(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager[object]:
    """bf16 autocast (on the CPU by default, or on ``device_type``), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_memory_format(x: torch.Tensor | nn.Module, channels_last: bool) -> torch.Tensor | nn.Module:
    """channels_last_3d for 5-D tensors / 3D-conv modules when asked, identity otherwise.

    A module whose convolutions are all 2-D (TSM runs a 2-D backbone per frame) gets
    channels_last instead: channels_last_3d needs rank-5 weights and would raise.
    """
    if not channels_last:
        return x
    if isinstance(x, torch.Tensor):
        return x.to(memory_format=torch.channels_last_3d) if x.dim() == 5 else x
    convs = [m for m in x.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if convs and all(isinstance(m, nn.Conv2d) for m in convs):
        return x.to(memory_format=torch.channels_last)
    return x.to(memory_format=torch.channels_last_3d)
