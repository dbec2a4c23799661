"""What INT8 does for a model's grouped and depthwise 3D convolutions, said beside the INT8 numbers.

INT8 speeds up a model only through the operations its backend runs in INT8 kernels that pay.
Grouped/depthwise 3D convolutions (X3D: every block's 3x3x3 ``conv_b`` and the stem's 5x1x1) are a
known case where it may not: few multiplies per byte moved, and some backends keep them in float
inside an INT8 graph. A model that has them gets a note on each INT8 row: how many there are and
their share of the MACs (from the PyTorch model), and, where the backend can be profiled per
operation (OpenVINO, ONNX Runtime: ``edgekd.engines.profile``), their measured time in the FP32 and
the INT8 engine of the same backend and how many ran in 8 bits. The note never guesses a speed-up:
without a measurement it says the op class is a known case and that it was not measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from edgekd.engines.profile import (
    grouped_conv3d_summary,
    profile_onnxruntime,
    profile_openvino,
)
from edgekd.models.complexity import macs_by_module

__all__ = ["NO_SPEEDUP_BELOW", "GroupedConv3d", "find_grouped_conv3d", "int8_note", "profile_grouped_conv3d"]

# a measured FP32/INT8 time ratio below this is reported as "no speed-up" (the spread of two
# back-to-back per-op timings of the same engine on a shared machine is of this order)
NO_SPEEDUP_BELOW = 1.1
_PROFILERS = {"openvino": profile_openvino, "onnxruntime": profile_onnxruntime}


@dataclass(frozen=True)
class GroupedConv3d:
    """The model's ``nn.Conv3d`` layers with ``groups > 1`` (depthwise: one input channel per group)."""

    layers: int
    depthwise: int
    macs: int  # their multiply-accumulates for one clip
    total_macs: int

    @property
    def share(self) -> float:
        return self.macs / self.total_macs if self.total_macs else 0.0


def find_grouped_conv3d(model: nn.Module, input_shape: Sequence[int]) -> GroupedConv3d:
    """Count grouped/depthwise ``Conv3d`` layers and their MACs on one ``(C, T, H, W)`` clip."""
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv3d) and m.groups > 1]
    depthwise = sum(m.groups == m.in_channels for m in grouped)
    macs = macs_by_module(model, input_shape)
    return GroupedConv3d(len(grouped), depthwise, sum(macs.get(m, 0) for m in grouped), sum(macs.values()))


def profile_grouped_conv3d(backend: str, fp32_artifact: Path, int8_artifact: Path, clip: np.ndarray, *,
                           threads: int | None) -> dict[str, Any] | None:
    """Per-op time of the grouped 3D convolutions in the FP32 and INT8 engine of ``backend``;
    None when this backend has no per-op profiler here (TensorRT) or a file is missing."""
    profile = _PROFILERS.get(backend)
    if profile is None or not fp32_artifact.is_file() or not int8_artifact.is_file():
        return None
    fp32 = grouped_conv3d_summary(profile(fp32_artifact, clip, threads=threads))
    int8 = grouped_conv3d_summary(profile(int8_artifact, clip, threads=threads))
    return {"backend": backend, "fp32": fp32, "int8": int8,
            "speedup": fp32["grouped_conv3d_ms"] / int8["grouped_conv3d_ms"] if int8["grouped_conv3d_ms"] else None}


def int8_note(found: GroupedConv3d, measured: dict[str, Any] | None) -> str:
    """The sentence an INT8 row gets for a model with grouped/depthwise 3D convolutions ("" without)."""
    if not found.layers:
        return ""
    what = (f"{found.layers} grouped/depthwise 3D convolutions ({found.depthwise} depthwise, "
            f"{100 * found.share:.1f}% of the MACs): a known case where INT8 may give no speed-up")
    if measured is None or not measured["int8"]["grouped_conv3d_ops"]:
        return what + "; not measured per op for this backend"
    f, q, speedup = measured["fp32"], measured["int8"], measured["speedup"]
    verdict = "no speed-up" if speedup is None or speedup < NO_SPEEDUP_BELOW else f"{speedup:.1f}x faster"
    return (f"{what}. Measured ({measured['backend']} per-op counters, batch 1): {f['grouped_conv3d_ms']:.2f} ms "
            f"FP32 -> {q['grouped_conv3d_ms']:.2f} ms INT8, {verdict}; {q['grouped_conv3d_int8_ops']} of "
            f"{q['grouped_conv3d_ops']} ran in 8 bits")
