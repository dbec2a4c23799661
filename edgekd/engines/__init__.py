"""Inference engines behind one :class:`Engine` interface, and the backend table that lists them.

``table.py`` is the one place that says which engines exist (keyed by backend and precision), where
each one's file is, how it is built and opened, and which deploy target ships it; ``rows.py`` holds
the row builders and loaders; one module per backend holds its adapter. The bench, the engines
stage, the doctor, recipe validation and ``edgekd pack`` all read the table.

Names are imported on first use (PEP 562), so reading the table (recipe validation) does not load
OpenVINO or ONNX Runtime; TensorRT is only ever imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DESCRIBE_KEYS": "base", "Engine": "base", "check_batch": "base",
    "OnnxRuntimeEngine": "onnxruntime_engine",
    "OpenVinoEngine": "openvino_engine", "build_openvino_fp32": "openvino_engine",
    "build_openvino_int8": "openvino_engine", "supported_precision_hints": "openvino_engine",
    "ENGINES": "table", "ENGINE_NAMES": "table", "EngineRow": "table", "get_engine": "table",
    "TensorRTUnavailable": "tensorrt_engine", "require_tensorrt": "tensorrt_engine", "tensorrt_status": "tensorrt_engine",
    "StreamingEngine": "streaming_engine",
    "TorchEngine": "torch_engine",
}
__all__ = sorted([*_WHERE, "engine_status"])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def engine_status() -> dict[str, tuple[bool, str]]:
    """``{row name: (usable here, why not)}`` for every row of the table; never raises."""
    from edgekd.engines.table import ENGINES

    return {row.name: row.status() for row in ENGINES}
