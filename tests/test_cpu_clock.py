"""CpuClock: wall and CPU seconds, and the host's steal share read from /proc/stat deltas."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.utils import cpu_clock
from edgekd.utils.cpu_clock import CpuClock


def _stat(path: Path, user: int, idle: int, steal: int) -> None:
    #            user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3\n")


def test_steal_and_busy_shares_come_from_tick_deltas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "stat"
    monkeypatch.setattr(cpu_clock, "_PROC_STAT", stat)
    _stat(stat, user=1000, idle=5000, steal=200)
    clock = CpuClock.start()
    _stat(stat, user=1300, idle=5500, steal=1400)  # +300 busy, +500 idle, +1200 stolen of 2000 ticks
    r = clock.read()
    assert (r["host_steal"], r["host_busy"]) == (0.6, 0.15)
    assert "stolen by the hypervisor 60%" in clock.line()


def test_without_proc_stat_the_shares_are_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_clock, "_PROC_STAT", tmp_path / "absent")
    r = CpuClock.start().read()
    assert r["host_steal"] is None and r["host_busy"] is None
    assert r["wall_s"] >= 0 and r["process_cpu_s"] >= 0 and r["cores"] >= 1


def test_process_cpu_time_counts_work_done() -> None:
    clock = CpuClock.start()
    x = 0
    for i in range(3_000_000):
        x += i * i
    assert x > 0 and clock.read()["process_cpu_s"] > 0
