"""Reading OpenVINO ``benchmark_app``'s report (the cross-check in ``benchmarks/``).

benchmark_app prints each latency statistic with its own unit, chosen by size: ``Median: 2.75 ms``
on one machine, ``Median: 936.44 us`` on a faster one (below 1 ms). Reading only "ms" made the
cross-check fail on the faster CPU, so the unit is parsed and converted, never assumed.
"""

from __future__ import annotations

import re

__all__ = ["parse_latency_ms"]

_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "sec": 1000.0, "seconds": 1000.0}
# e.g. "[ INFO ]    Median:        8.03 us" (one line per statistic under "Latency:")
_LATENCY = re.compile(r"\b(Median|Average|Min|Max):\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|seconds|sec|s)\b",
                      re.IGNORECASE)


def parse_latency_ms(text: str, stat: str = "Median") -> float | None:
    """The ``stat`` latency (Median, Average, Min or Max) of a benchmark_app report, in ms, or None
    when the report has no such line. Units ns, us, ms and s are understood."""
    for m in _LATENCY.finditer(text):
        if m.group(1).lower() == stat.lower():
            return float(m.group(2)) * _UNITS_MS[m.group(3).lower()]
    return None
