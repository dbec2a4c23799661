"""NVIDIA GPU SM clock via NVML, for the paper's GPU clock-ratio scaling (reference 585 MHz).

``pynvml`` (package ``nvidia-ml-py``) is imported lazily and is not a dependency: on CPU-only
machines the reading says plainly that it is not available and why, and GPU scaling is skipped.
The SM clock is read, not the memory clock, because the paper scales by the GPU core clock.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GpuClockReading", "read_gpu_clock"]


@dataclass(frozen=True)
class GpuClockReading:
    """SM clock of one GPU (MHz) or ``available=False`` with the reason."""

    available: bool
    name: str | None
    sm_mhz: float | None
    max_sm_mhz: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_gpu_clock(index: int = 0) -> GpuClockReading:
    """Current and maximum SM clock of GPU ``index`` through NVML; never raises."""
    try:
        nvml = importlib.import_module("pynvml")
    except ModuleNotFoundError:
        return GpuClockReading(False, None, None, None,
                               "not available: pynvml is not installed (pip install nvidia-ml-py on a machine with an NVIDIA GPU)")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded on machines without a GPU
        return GpuClockReading(False, None, None, None, f"not available: NVML failed to initialise ({exc})")
    try:
        count = nvml.nvmlDeviceGetCount()
        if index >= count:
            return GpuClockReading(False, None, None, None, f"not available: GPU {index} requested, NVML sees {count}")
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        sm = float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
        max_sm = float(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM))
        return GpuClockReading(True, name, sm, max_sm, "NVML nvmlDeviceGetClockInfo(NVML_CLOCK_SM)")
    except Exception as exc:
        return GpuClockReading(False, None, None, None, f"not available: NVML query failed ({exc})")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
