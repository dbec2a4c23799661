"""Effective clock measurement, clock-ratio scaling and latency statistics."""

from __future__ import annotations

import platform
import time

import pytest

from edgekd.bench import clock as clock_mod
from edgekd.bench import measure_effective_clock, measure_latency, scaled_spf


def test_effective_clock_is_plausible_and_sourced() -> None:
    reading = measure_effective_clock(duration_s=0.2)
    assert reading.method in {"x86_64_add_chain", "sysfs_scaling_cur_freq", "proc_cpuinfo", "unavailable"}
    if platform.machine().lower() in {"x86_64", "amd64"} and platform.system() == "Linux":
        assert reading.method == "x86_64_add_chain", reading.notes
    assert reading.effective_mhz is not None
    assert 300 <= reading.effective_mhz <= 7000
    assert reading.notes
    if reading.nominal_mhz is not None:
        assert 100 <= reading.nominal_mhz <= 10000


def test_clock_falls_back_to_os_figures(monkeypatch, tmp_path) -> None:
    cur = tmp_path / "scaling_cur_freq"
    cur.write_text("1420000\n")  # kHz, as on a Jetson
    monkeypatch.setattr(clock_mod, "_is_x86_64_sysv", lambda: False)
    monkeypatch.setattr(clock_mod, "_SYSFS_CUR", cur)
    reading = measure_effective_clock()
    assert reading.method == "sysfs_scaling_cur_freq"
    assert reading.effective_mhz == pytest.approx(1420.0)

    monkeypatch.setattr(clock_mod, "_SYSFS_CUR", tmp_path / "missing")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2596.000\n")
    monkeypatch.setattr(clock_mod, "_PROC_CPUINFO", cpuinfo)
    reading = measure_effective_clock()
    assert reading.method == "proc_cpuinfo"
    assert reading.effective_mhz == pytest.approx(2596.0)
    assert reading.nominal_mhz == pytest.approx(2596.0)
    assert "sysfs_scaling_cur_freq unavailable" in reading.notes

    monkeypatch.setattr(clock_mod, "_PROC_CPUINFO", tmp_path / "missing")
    reading = measure_effective_clock()
    assert reading.method == "unavailable" and reading.effective_mhz is None


def test_scaled_spf_is_the_clock_ratio() -> None:
    assert scaled_spf(0.010, 3600.0) == pytest.approx(0.0144)
    assert scaled_spf(0.020, 2000.0, reference_mhz=4000.0) == pytest.approx(0.010)
    assert scaled_spf(0.5, 2500.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="measured_mhz"):
        scaled_spf(0.01, 0.0)
    with pytest.raises(ValueError, match="spf"):
        scaled_spf(-1.0, 2500.0)


def test_latency_stats_are_ordered_and_real() -> None:
    calls = []

    def work() -> None:
        calls.append(None)
        time.sleep(0.002)

    stats = measure_latency(work, warmup=2, min_iters=10, max_iters=50, min_time_s=0.05)
    assert stats.n_iters >= 10 and stats.warmup == 2
    assert len(calls) == stats.n_iters + 2
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.min_ms >= 2.0  # each call sleeps 2 ms
    assert stats.mean_ms >= stats.min_ms
    assert set(stats.to_dict()) == {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "n_iters", "warmup"}


def test_latency_iteration_bounds() -> None:
    fast = measure_latency(lambda: None, warmup=0, min_iters=5, max_iters=20, min_time_s=10.0)
    assert fast.n_iters == 20  # capped by max_iters even though min_time_s is not reached
    quick = measure_latency(lambda: None, warmup=0, min_iters=7, max_iters=1000, min_time_s=0.0)
    assert quick.n_iters == 7
    with pytest.raises(ValueError, match="max_iters"):
        measure_latency(lambda: None, min_iters=10, max_iters=5)
