"""Build the TensorRT engines of one exported model, for the engines stage.

The build itself is :func:`edgekd.runtime.tensorrt_build.build_engine` (torch-free, so the same
code runs on a Jetson from a deploy bundle); this module decides what to build from the recipe,
feeds it the run's calibration clips, checks each plan against ONNX Runtime, and records a row per
precision: built (with its sidecar and parity) or skipped/failed with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.engines.tensorrt_engine import (
    TensorRTEngine,
    TensorRTUnavailable,
    check_tensorrt_parity,
    tensorrt_status,
)
from edgekd.runtime.tensorrt_build import (
    BuildOptions,
    TensorRTFeatureUnavailable,
    build_engine,
)

__all__ = ["build_tensorrt_engines"]


def build_tensorrt_engines(
    onnx_path: Path,
    qdq_path: Path | None,
    out_dir: Path,
    *,
    precisions: Sequence[str],
    batch: tuple[int, int, int],
    workspace_mb: int,
    timing_cache_dir: str | None,
    calibration: np.ndarray | None,
    parity_clips: np.ndarray,
    input_spec: dict[str, Any],
    labels: Sequence[str],
) -> dict[str, Any]:
    """``{precision: record}`` for each requested precision; never raises for a missing TensorRT."""
    ok, reason = tensorrt_status()
    if not ok:
        return {p: {"status": "skipped", "reason": reason} for p in precisions}
    rows: dict[str, Any] = {}
    for precision in precisions:
        source = qdq_path if precision == "int8_qdq" else onnx_path
        if source is None:
            rows[precision] = {"status": "skipped", "reason": "no Q/DQ ONNX (engines.qdq_int8 is off)"}
            continue
        plan = out_dir / f"tensorrt_{precision}" / "model.plan"
        options = BuildOptions(precision, batch, workspace_mb, timing_cache_dir,
                               calibration_batch_size=min(batch[2], 8),
                               calibration_cache=str(plan.with_name("calibration.cache")))
        try:
            sidecar = build_engine(source, plan, options, calibration_clips=calibration,
                                   input_spec=input_spec, labels=labels)
            parity = check_tensorrt_parity(TensorRTEngine(plan), source, parity_clips)
        except (TensorRTFeatureUnavailable, TensorRTUnavailable) as exc:
            rows[precision] = {"status": "skipped", "reason": str(exc)}
            continue
        rows[precision] = {"status": "built", "plan": str(plan), "sidecar": sidecar, "parity": parity}
        print(f"[engines] tensorrt {precision}: built {plan}, max |delta logit| vs ONNX Runtime "
              f"{parity['max_abs_delta']:.2e}, top-1 agreement {parity['top1_agreement']:.3f}")
    return rows
