"""Wall time, this process's CPU time and the host's CPU steal over a stretch of work.

Why: on a shared VM the hypervisor can take most of the CPU away ("steal"); a sweep that took 20
minutes of wall time may have had a fraction of the machine. Recording CPU seconds and the steal
share next to wall seconds lets a reader tell a slow recipe from a busy host.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PROC_STAT = Path("/proc/stat")


def _cpu_ticks() -> list[int] | None:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal ...),
    or None where there is none (not Linux)."""
    try:
        first = _PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    return [int(x) for x in first[1:9]]


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class CpuClock:
    """Start with ``CpuClock.start()``; ``read()`` gives what happened since."""

    wall0: float
    cpu0: float
    ticks0: list[int] | None

    @classmethod
    def start(cls) -> CpuClock:
        return cls(time.perf_counter(), process_cpu_s(), _cpu_ticks())

    def read(self) -> dict[str, Any]:
        """``wall_s``; ``process_cpu_s`` (user + system, children included); ``host_steal`` and
        ``host_busy``: shares of all cores' time stolen by the hypervisor and spent running
        (None where /proc/stat is absent); ``cores``."""
        out: dict[str, Any] = {"wall_s": round(time.perf_counter() - self.wall0, 2),
                               "process_cpu_s": round(process_cpu_s() - self.cpu0, 2),
                               "cores": os.cpu_count(), "host_steal": None, "host_busy": None}
        now = _cpu_ticks()
        if self.ticks0 is not None and now is not None:
            d = [b - a for a, b in zip(self.ticks0, now)]
            total = sum(d)
            if total > 0:
                user, nice, system, _idle, _iowait, irq, softirq, steal = d
                out["host_steal"] = round(steal / total, 3)
                out["host_busy"] = round((user + nice + system + irq + softirq) / total, 3)
        return out

    def line(self) -> str:
        r = self.read()
        extra = "" if r["host_steal"] is None else f", host CPU stolen by the hypervisor {r['host_steal']:.0%}"
        return f"wall {r['wall_s'] / 60:.1f} min, CPU {r['process_cpu_s'] / 60:.1f} min on {r['cores']} cores{extra}"
