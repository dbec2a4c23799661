"""TensorRT availability, for the Jetson / NVIDIA GPU targets.

TensorRT only exists on machines with an NVIDIA GPU (and is not installable on our CPU build
boxes), so it is imported lazily, only when asked: importing :mod:`edgekd.engines` must work
everywhere, and a missing TensorRT must surface as one clear :class:`TensorRTUnavailable`
saying why, not as an ``ImportError`` from deep inside a benchmark.

:class:`TensorRTEngine` is the benchmark/evaluation adapter over the torch-free runner that deploy
bundles ship (:mod:`edgekd.runtime.tensorrt_runner`), so the engine measured here is the engine
the device runs; :func:`check_tensorrt_parity` compares it with ONNX Runtime on the same clips.

:func:`tensorrt_capabilities` says which TensorRT line is installed and what it can build (FP16
strongly typed or by builder flag, INT8 from Q/DQ, a calibrator or not), read from the module's
API by :func:`edgekd.runtime.tensorrt_build.detect_features`; it needs no GPU.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgekd.engines.base import Engine, check_batch, check_logits

__all__ = ["TensorRTEngine", "TensorRTUnavailable", "check_tensorrt_parity", "require_tensorrt", "tensorrt_capabilities",
           "tensorrt_status"]

_NOT_INSTALLED = "TensorRT Python package not installed (pip install tensorrt on a machine with an NVIDIA GPU)"


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot be used here; the message says why (no package, no GPU, broken install)."""


def tensorrt_status() -> tuple[bool, str]:
    """``(True, "TensorRT x.y, GPU ...")`` when usable, else ``(False, reason)``; never raises."""
    try:
        trt = importlib.import_module("tensorrt")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "tensorrt":
            return False, _NOT_INSTALLED
        return False, f"TensorRT Python package failed to import: {exc}"
    except Exception as exc:  # a wheel without its libnvinfer, a CUDA mismatch, ...
        return False, f"TensorRT Python package failed to import: {type(exc).__name__}: {exc}"
    gpu_ok, gpu = _cuda_gpu()
    version = getattr(trt, "__version__", "unknown version")
    if not gpu_ok:
        return False, f"no CUDA GPU visible: {gpu} (TensorRT {version} is installed)"
    return True, f"TensorRT {version}, GPU {gpu}"


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailable` carrying the status reason."""
    ok, reason = tensorrt_status()
    if not ok:
        raise TensorRTUnavailable(reason)
    return importlib.import_module("tensorrt")


def tensorrt_capabilities() -> dict[str, str] | None:
    """The installed TensorRT's line and what it builds per precision (see ``capabilities``), or
    ``None`` where the ``tensorrt`` module cannot be imported (:func:`tensorrt_status` says why)."""
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:  # noqa: BLE001 - absent or broken: tensorrt_status() reports the reason
        return None
    from edgekd.runtime.tensorrt_build import capabilities, detect_features

    return capabilities(detect_features(trt))


def _cuda_gpu() -> tuple[bool, str]:
    """Whether a CUDA device is visible, and its name or why not (via torch, a hard dependency)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed, cannot query CUDA devices"
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        return (
            False,
            f"torch.cuda.is_available() is False (torch {torch.__version__}, {build}, CUDA_VISIBLE_DEVICES={visible})",
        )
    return True, f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)"


class TensorRTEngine(Engine):
    """A TensorRT plan behind the common :class:`Engine` interface.

    Loading checks the sidecar first: a plan built for another TensorRT version or GPU raises
    :class:`edgekd.runtime.tensorrt_runner.EngineMismatch` telling the user to rebuild.
    """

    def __init__(self, plan_path: str | Path, *, name: str | None = None) -> None:
        require_tensorrt()
        from edgekd.runtime.tensorrt_runner import TensorRTRunner

        self.runner = TensorRTRunner(plan_path)
        self.precision = str(self.runner.sidecar.get("precision"))
        self.name = name or f"tensorrt_{self.precision}"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.name)
        return check_logits(self.runner.infer(batch), batch.shape[0], self.name)

    def describe(self) -> dict[str, Any]:
        d = self.runner.describe()
        return {"name": self.name, **d, "inference_precision_hint": self.precision, "threads": None}


def check_tensorrt_parity(engine: Engine, onnx_path: str | Path, clips: np.ndarray, *,
                          batch_size: int = 1) -> dict[str, Any]:
    """Max |delta logit| and top-1 agreement of ``engine`` against ONNX Runtime CPU on ``clips``.

    The ONNX reference is the FP32 export (or the Q/DQ model for an INT8 plan): a TensorRT engine
    that disagrees with the graph it was built from has a build problem, not a quantization one.
    """
    from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine

    reference = OnnxRuntimeEngine(onnx_path, name="onnxruntime_reference")
    deltas, agree = [], 0
    for i in range(0, len(clips), batch_size):
        batch = np.ascontiguousarray(clips[i : i + batch_size], dtype=np.float32)
        a, b = reference.infer(batch), engine.infer(batch)
        deltas.append(float(np.abs(a - b).max()))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
    return {"reference": str(onnx_path), "n_clips": len(clips), "max_abs_delta": max(deltas),
            "top1_agreement": agree / len(clips)}
