"""TensorRT availability, for the Jetson / NVIDIA GPU targets.

TensorRT only exists on machines with an NVIDIA GPU (and is not installable on our CPU build
boxes), so it is imported lazily, only when asked: importing :mod:`edgekd.engines` must work
everywhere, and a missing TensorRT must surface as one clear :class:`TensorRTUnavailable`
saying why, not as an ``ImportError`` from deep inside a benchmark.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["TensorRTUnavailable", "require_tensorrt", "tensorrt_status"]

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
