"""Inference backends behind one :class:`Engine` interface, and the table of what each offers.

The table is the single place that says which precisions a backend accepts, what artifact it
loads, how that artifact is built and which engine options a precision implies (an OpenVINO
"bf16" row is the FP32 IR compiled with a bf16 hint). Benchmark and evaluation code reads the
table instead of branching on backend names. TensorRT is listed but only ever imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgekd.engines.base import DESCRIBE_KEYS, Engine, check_batch
from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine
from edgekd.engines.openvino_engine import (
    OpenVinoEngine,
    build_openvino_fp32,
    build_openvino_int8,
    supported_precision_hints,
)
from edgekd.engines.tensorrt_engine import TensorRTUnavailable, require_tensorrt, tensorrt_status
from edgekd.engines.torch_engine import TorchEngine

__all__ = [
    "BACKENDS",
    "DESCRIBE_KEYS",
    "Backend",
    "Engine",
    "OnnxRuntimeEngine",
    "OpenVinoEngine",
    "TensorRTUnavailable",
    "TorchEngine",
    "available_backends",
    "backend_status",
    "build_openvino_fp32",
    "build_openvino_int8",
    "check_batch",
    "get_backend",
    "require_tensorrt",
    "supported_precision_hints",
    "tensorrt_status",
]


@dataclass(frozen=True)
class Backend:
    """One backend: its engine adapter, accepted precisions, artifact and per-precision recipe."""

    name: str
    engine: type[Engine] | None  # None: no adapter in this build (TensorRT: status only)
    artifact: str  # what the engine loads: "nn.Module", "onnx", "openvino_ir", "tensorrt_plan"
    precisions: tuple[str, ...]
    status: Callable[[], tuple[bool, str]]
    builders: Mapping[str, Callable[..., Path]] = field(default_factory=dict)
    engine_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def options_for(self, precision: str) -> dict[str, Any]:
        """Engine keyword arguments for ``precision`` (raises for a precision it does not accept)."""
        if precision not in self.precisions:
            raise ValueError(f"backend {self.name!r} accepts precisions {self.precisions}, not {precision!r}")
        return dict(self.engine_options.get(precision, {}))


def _openvino_status() -> tuple[bool, str]:
    import openvino as ov

    return True, f"OpenVINO {ov.get_version()}, CPU precision hints {supported_precision_hints()}"


def _onnxruntime_status() -> tuple[bool, str]:
    import onnxruntime as ort

    return True, f"ONNX Runtime {ort.__version__}, providers {ort.get_available_providers()}"


def _torch_status() -> tuple[bool, str]:
    import torch

    return True, f"PyTorch {torch.__version__}"


BACKENDS: Mapping[str, Backend] = MappingProxyType(
    {
        "pytorch": Backend("pytorch", TorchEngine, "nn.Module", ("fp32",), _torch_status),
        "onnxruntime": Backend("onnxruntime", OnnxRuntimeEngine, "onnx", ("fp32",), _onnxruntime_status),
        "openvino": Backend(
            "openvino",
            OpenVinoEngine,
            "openvino_ir",
            ("fp32", "bf16", "int8"),
            _openvino_status,
            builders={"fp32": build_openvino_fp32, "bf16": build_openvino_fp32, "int8": build_openvino_int8},
            engine_options={
                "fp32": {"precision_hint": "f32"},
                "bf16": {"precision_hint": "bf16"},
                "int8": {"precision_hint": "f32"},
            },
        ),
        "tensorrt": Backend("tensorrt", None, "tensorrt_plan", ("fp32", "fp16", "int8"), tensorrt_status),
    }
)


def get_backend(name: str) -> Backend:
    """The table entry for ``name``; the error lists the known names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}; known: {sorted(BACKENDS)}") from None


def backend_status() -> dict[str, tuple[bool, str]]:
    """``{backend: (usable, reason)}`` for every backend in the table; never raises."""
    result: dict[str, tuple[bool, str]] = {}
    for name, backend in BACKENDS.items():
        try:
            result[name] = backend.status()
        except Exception as exc:  # a broken install must be reported, not crash the listing
            result[name] = (False, f"{type(exc).__name__}: {exc}")
    return result


def available_backends() -> list[str]:
    """Names of the backends usable on this machine, in table order."""
    return [name for name, (ok, _) in backend_status().items() if ok]
