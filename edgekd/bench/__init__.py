"""Benchmark helpers: effective CPU clock and per-call latency statistics."""

from edgekd.bench.clock import ClockReading, measure_effective_clock, nominal_clock_mhz, scaled_spf
from edgekd.bench.latency import LatencyStats, measure_latency

__all__ = [
    "ClockReading",
    "LatencyStats",
    "measure_effective_clock",
    "measure_latency",
    "nominal_clock_mhz",
    "scaled_spf",
]
