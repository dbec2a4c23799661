"""NVML reading: a clear 'not available' where there is no pynvml/GPU, real numbers where there is."""

from __future__ import annotations

import importlib

from edgekd.bench.gpu import read_gpu_clock


def test_gpu_clock_reading_is_consistent() -> None:
    reading = read_gpu_clock()
    if reading.available:
        assert reading.name and reading.sm_mhz is not None and 0 < reading.sm_mhz <= (reading.max_sm_mhz or 1e9)
    else:
        assert reading.reason.startswith("not available:") and reading.sm_mhz is None


def test_missing_pynvml_says_so(monkeypatch) -> None:
    real_import = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "pynvml":
            raise ModuleNotFoundError("No module named 'pynvml'", name="pynvml")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    reading = read_gpu_clock()
    assert not reading.available
    assert "pynvml is not installed" in reading.reason
