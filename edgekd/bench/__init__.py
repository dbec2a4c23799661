"""Benchmark helpers.

clock.py (effective CPU clock, clock-ratio scaling), latency.py (per-call percentiles), metrics.py
(top-k, ROC/AUC, Wilson interval, confusion), peak.py (GEMM peak per precision), gpu.py (NVML SM
clock), e2e.py (decode + preprocess + inference timing), literature.py (Ullah & Munir Tables
15-16), plots.py (PNG plots). Only the light ones are re-exported here.
"""

from edgekd.bench.clock import (
    ClockReading,
    measure_effective_clock,
    nominal_clock_mhz,
    scaled_spf,
)
from edgekd.bench.latency import LatencyStats, measure_latency

__all__ = [
    "ClockReading",
    "LatencyStats",
    "measure_effective_clock",
    "measure_latency",
    "nominal_clock_mhz",
    "scaled_spf",
]
