"""CPU speed settings for PyTorch training.

Measured on this 2-core AMX Xeon (see DEVELOPERS.md): channels_last_3d plus bf16 autocast is the
fastest combination for the C3D family; bf16 without channels_last can be slower than fp32, because
oneDNN then reorders every activation. So "auto" turns both on together where the CPU has native
bf16 (AMX or AVX512-BF16) and stays fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
import torch.nn as nn


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str) -> str:
    """'auto' -> 'bf16' where the CPU computes bf16 natively, else 'fp32'."""
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision


def autocast(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager[object]:
    """bf16 autocast (on the CPU by default, or on ``device_type``), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_memory_format(x: torch.Tensor | nn.Module, channels_last: bool) -> torch.Tensor | nn.Module:
    """channels_last_3d for 5-D tensors / modules when asked, identity otherwise."""
    if not channels_last:
        return x
    if isinstance(x, torch.Tensor) and x.dim() != 5:
        return x
    return x.to(memory_format=torch.channels_last_3d)
