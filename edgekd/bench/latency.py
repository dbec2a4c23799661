"""Per-call latency measurement.

Engines are compared on tail latency, not just the mean: a single-clip edge deployment feels the
p90/p99, and the first calls (lazy allocation, JIT, cache warm-up) are excluded by a warm-up.
Each call is timed on its own with ``time.perf_counter_ns`` so percentiles are real per-call
figures, and the loop runs until both a minimum count and a minimum time are reached, so fast
engines are sampled enough and slow ones are capped by ``max_iters``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["LatencyStats", "measure_latency", "stats_from_samples"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles of ``n_iters`` timed calls after ``warmup`` untimed ones (milliseconds)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    n_iters: int
    warmup: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    min_iters: int = 10,
    max_iters: int = 200,
    min_time_s: float = 1.0,
) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then time calls until ``min_iters`` and ``min_time_s``.

    Stops at ``max_iters`` even if ``min_time_s`` is not reached.
    """
    _validate(warmup=warmup, min_iters=min_iters, max_iters=max_iters, min_time_s=min_time_s)
    for _ in range(warmup):
        fn()
    samples_ns = _timed_calls(fn, min_iters=min_iters, max_iters=max_iters, min_time_s=min_time_s)
    return stats_from_samples(samples_ns, warmup)


def _validate(*, warmup: int, min_iters: int, max_iters: int, min_time_s: float) -> None:
    if warmup < 0:
        raise ValueError(f"measure_latency: warmup must be >= 0, got {warmup}")
    if min_iters < 1:
        raise ValueError(f"measure_latency: min_iters must be >= 1, got {min_iters}")
    if max_iters < min_iters:
        raise ValueError(f"measure_latency: max_iters ({max_iters}) must be >= min_iters ({min_iters})")
    if min_time_s < 0:
        raise ValueError(f"measure_latency: min_time_s must be >= 0, got {min_time_s}")


def _timed_calls(fn: Callable[[], object], *, min_iters: int, max_iters: int, min_time_s: float) -> list[int]:
    """Per-call durations in ns; the loop bookkeeping is outside the timed region."""
    samples: list[int] = []
    budget_ns = int(min_time_s * 1e9)
    start = time.perf_counter_ns()
    while len(samples) < max_iters:
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if len(samples) >= min_iters and t1 - start >= budget_ns:
            break
    return samples


def stats_from_samples(samples_ns: list[int], warmup: int) -> LatencyStats:
    """Percentiles of per-call durations (ns) timed elsewhere, e.g. per video end to end."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        n_iters=len(samples_ns),
        warmup=warmup,
    )
