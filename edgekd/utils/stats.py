"""Confidence intervals: Student t over seeds (sweeps), and the incomplete beta function behind it.

Pure Python, so reports and tables can be computed anywhere (no scipy). Intervals use the Student
t-distribution: ``mean +/- t(1 - (1 - c) / 2, n - 1) * s / sqrt(n)``, with ``s`` the sample standard
deviation (n - 1 denominator) and ``c`` the confidence; with one value there is no interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Stat", "mean_ci", "paired_bootstrap", "paired_stat", "t_cdf", "t_quantile"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on ``t_cdf``, to ~1e-12)."""
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Stat:
    """Mean and CI half-width of n values (``half`` is None when n < 2)."""

    values: tuple[float, ...]
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def sd(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def half(self) -> float | None:
        sd = self.sd
        if sd is None:
            return None
        return t_quantile(1 - (1 - self.confidence) / 2, self.n - 1) * sd / math.sqrt(self.n)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci_half_width": self.half, "n": self.n, "sd": self.sd, "values": list(self.values)}


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float | None, int]:
    """``(mean, half-width, n)`` of a t-interval; half-width None for fewer than 2 values."""
    s = Stat(tuple(values), confidence)
    return s.mean, s.half, s.n


def paired_stat(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...],
                confidence: float = 0.95) -> Stat:
    """The differences ``a[i] - b[i]`` of paired measurements (the same seed, the same data) as a
    :class:`Stat`: its t-interval is the paired t-interval, which removes what the pairs share
    (the variation between seeds affects both members of a pair alike)."""
    if len(a) != len(b):
        raise ValueError(f"paired_stat: {len(a)} values against {len(b)}")
    return Stat(tuple(float(x) - float(y) for x, y in zip(a, b)), confidence)


def paired_bootstrap(correct_a: Any, correct_b: Any, *, confidence: float = 0.95, n_boot: int = 10000,
                     seed: int = 0) -> dict[str, Any]:
    """Accuracy difference of two models on the same test videos with a paired bootstrap interval.

    ``correct_a``/``correct_b`` say per video whether each model got it right. Videos are resampled
    with replacement, the same draw for both models (so a hard video counts against both), and the
    interval is the percentile interval of the resampled differences (``n_boot`` draws, seeded)."""
    import numpy as np

    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired_bootstrap: need two equal 1-D arrays, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = (a[idx] - b[idx]).mean(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return {"mean": float((a - b).mean()), "lo": float(lo), "hi": float(hi), "n": len(a), "n_boot": n_boot,
            "confidence": confidence, "method": f"paired bootstrap over test videos ({n_boot} resamples)",
            "a_only": int(((a == 1) & (b == 0)).sum()), "b_only": int(((a == 0) & (b == 1)).sum())}
