"""Effective CPU clock measurement, for normalising latency across machines.

Latencies measured on different CPUs are only comparable after scaling by clock (the paper's
clock-ratio method, see :func:`scaled_spf`). The clock figure must be the one the cores actually
run at: on VMs ``/proc/cpuinfo`` reports a fixed nominal number (2000 or 2596 MHz on our build
boxes) regardless of turbo, so the primary method times a dependent chain of register adds
(one cycle of latency each on every x86-64 core of the last 15 years) in a few bytes of machine
code. Where that is impossible (non-x86 such as a Jetson's aarch64, or a kernel that forbids
executable anonymous memory) we fall back to what the OS reports, and always record the method.

Why ``add rax, rdx`` and not ``add rax, 1``: recent Intel cores (Golden Cove / Sapphire Rapids
class, like our AMX build boxes) do not run a dependent ``add rax, 1`` chain at one add per cycle
(the renamer folds small immediates), so it read as 5.5 GHz where the register-register chain and
a 3-cycle ``imul`` chain both read ~2.4 GHz. The imul chain is kept as an independent cross-check.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgekd.utils.cpu import NOT_AVAILABLE

__all__ = ["ClockReading", "measure_effective_clock", "nominal_clock_mhz", "scaled_spf"]

_SYSFS_CUR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
_SYSFS_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
_PROC_CPUINFO = Path("/proc/cpuinfo")

# Sanity limits: the loop result is rejected outside these (a broken timer, folded adds, ...).
_PLAUSIBLE_MHZ = (300.0, 7000.0)
# Two loop lengths must give times in proportion within this relative error.
_LINEARITY_TOL = 0.10
# The add chain and the imul chain must agree on the clock within this relative error.
_CROSSCHECK_TOL = 0.15
_ATTEMPTS = 3
# Length of one timed run (seconds) and the fewest interleaved rounds, whatever duration_s says.
_RUN_S = 0.0005
_MIN_ROUNDS = 20

_ADDS_PER_ITER = 8
_ADD_REG = bytes([0x48, 0x01, 0xD0])  # add rax, rdx     (1 cycle latency)
_IMUL = bytes([0x48, 0x0F, 0xAF, 0xC0])  # imul rax, rax  (3 cycles latency)


@dataclass(frozen=True)
class ClockReading:
    """One clock measurement and how it was obtained (``method`` is never empty)."""

    effective_mhz: float | None
    nominal_mhz: float | None
    method: str
    notes: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def scaled_spf(spf: float, measured_mhz: float, reference_mhz: float = 2500.0) -> float:
    """Scale seconds-per-frame measured at ``measured_mhz`` to a ``reference_mhz`` CPU.

    The paper's clock-ratio method: for compute-bound inference the cycle count per frame is
    roughly constant, so ``spf * measured / reference`` is the time the same work takes at the
    reference clock. It ignores memory-bound effects; report it next to the raw figure.
    """
    for label, value in (("spf", spf), ("measured_mhz", measured_mhz), ("reference_mhz", reference_mhz)):
        if not value > 0:
            raise ValueError(f"scaled_spf: {label} must be > 0, got {value!r}")
    return spf * measured_mhz / reference_mhz


def measure_effective_clock(duration_s: float = 0.3) -> ClockReading:
    """Measure the clock the current core really runs at, falling back to OS-reported figures.

    ``duration_s`` is the rough time budget of the timing loops. Order of methods:
    x86-64 dependent-add loop -> sysfs ``scaling_cur_freq`` -> ``/proc/cpuinfo`` "cpu MHz".
    """
    if not duration_s > 0:
        raise ValueError(f"measure_effective_clock: duration_s must be > 0, got {duration_s!r}")
    nominal = nominal_clock_mhz()
    skipped: list[str] = []
    if _is_x86_64_sysv():
        # A busy neighbour can spoil one attempt's sanity checks; retry before giving up.
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                mhz, notes = _measure_add_chain(duration_s)
                if attempt > 1:
                    notes += f" (attempt {attempt}: {'; '.join(skipped)})"
                return ClockReading(mhz, nominal, "x86_64_add_chain", notes)
            except RuntimeError as exc:
                skipped.append(f"add-chain attempt {attempt} failed sanity check ({exc})")
            except (OSError, ValueError, AttributeError) as exc:  # no exec mmap, no ctypes call
                skipped.append(f"add-chain loop unusable ({exc})")
                break
    else:
        skipped.append(f"add-chain loop {NOT_AVAILABLE} ({platform.machine()} {sys.platform}; it is x86-64 "
                       "machine code)")

    for method, reader in (("sysfs_scaling_cur_freq", _read_sysfs_cur_mhz), ("proc_cpuinfo", _read_proc_cpuinfo_mhz)):
        mhz = reader()
        if mhz is not None:
            return ClockReading(mhz, nominal, method, "; ".join([*skipped, f"OS-reported clock via {method}"]))
        skipped.append(f"{method} unavailable")
    return ClockReading(None, nominal, "unavailable", "; ".join(skipped))


def nominal_clock_mhz() -> float | None:
    """The nominal/advertised clock, for the record (``/proc/cpuinfo``, else sysfs max)."""
    mhz = _read_proc_cpuinfo_mhz()
    if mhz is None:
        mhz = _read_model_name_ghz()
    if mhz is None:
        mhz = _read_khz_file(_SYSFS_MAX)
    return mhz


# --------------------------------------------------------------------------------------------
# x86-64 timing loop


def _is_x86_64_sysv() -> bool:
    """True where the machine code below runs: x86-64 with the System V calling convention."""
    machine = platform.machine().lower()
    return (
        machine in ("x86_64", "amd64") and sys.platform.startswith(("linux", "darwin")) and hasattr(mmap, "PROT_EXEC")
    )


class _MachineCode:
    """A ``uint64 f(uint64 n)`` that runs ``n`` iterations of ``body`` and returns rax."""

    def __init__(self, body: bytes) -> None:
        # mov rcx, rdi ; xor eax, eax ; mov edx, 1 ; loop: body ; dec rcx ; jnz loop ; ret
        prologue = bytes([0x48, 0x89, 0xF9, 0x31, 0xC0, 0xBA, 0x01, 0x00, 0x00, 0x00])
        loop = body + bytes([0x48, 0xFF, 0xC9])
        back = -(len(loop) + 2)
        if back < -128:
            raise ValueError(f"loop body of {len(body)} bytes too long for a short jump")
        code = prologue + loop + bytes([0x75, back & 0xFF, 0xC3])
        self._buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._buf.write(code)
        self._anchor = ctypes.c_char.from_buffer(self._buf)
        self.fn: Callable[[int], int] = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(
            ctypes.addressof(self._anchor)
        )

    def close(self) -> None:
        """Release the executable page (the ctypes view must go first or mmap refuses)."""
        self.fn = None  # type: ignore[assignment]
        del self._anchor
        self._buf.close()


def _time_ns(fn: Callable[[int], int], n: int) -> int:
    t0 = time.perf_counter_ns()
    fn(n)
    return max(time.perf_counter_ns() - t0, 1)


def _measure_add_chain(duration_s: float) -> tuple[float, str]:
    """Clock from the add chain, checked for linearity in loop length and against an imul chain.

    Many short runs (~0.5 ms, well under a scheduler time slice) interleaved, keeping the fastest
    of each: on a busy machine most runs are preempted, but the minimum of a few hundred short
    ones is an uninterrupted one, where a few long runs would all be stretched alike.
    """
    add = _MachineCode(_ADD_REG * _ADDS_PER_ITER)
    imul = _MachineCode(_IMUL * _ADDS_PER_ITER)
    try:
        if add.fn(10) != 10 * _ADDS_PER_ITER:
            raise RuntimeError("add-chain self-test returned a wrong count")
        probe_n = 20_000
        probe_mhz = max(_ADDS_PER_ITER * probe_n / min(_time_ns(add.fn, probe_n) for _ in range(5)) * 1e3, 100.0)
        n = max(1_000, int(_RUN_S * probe_mhz * 1e6 / _ADDS_PER_ITER))
        n_imul = max(1, n // 3)
        best = {"short": float("inf"), "long": float("inf"), "imul": float("inf")}
        deadline = time.perf_counter() + duration_s
        rounds = 0
        while rounds < _MIN_ROUNDS or time.perf_counter() < deadline:
            best["short"] = min(best["short"], _time_ns(add.fn, n))
            best["long"] = min(best["long"], _time_ns(add.fn, 2 * n))
            best["imul"] = min(best["imul"], _time_ns(imul.fn, n_imul))
            rounds += 1
    finally:
        add.close()
        imul.close()
    mhz_short = _ADDS_PER_ITER * n / best["short"] * 1e3
    mhz_long = _ADDS_PER_ITER * 2 * n / best["long"] * 1e3
    mhz_imul = 3 * _ADDS_PER_ITER * n_imul / best["imul"] * 1e3
    ratio = best["long"] / best["short"]
    if abs(ratio - 2.0) / 2.0 > _LINEARITY_TOL:
        raise RuntimeError(f"timing not linear in loop length (2x loop took {ratio:.2f}x)")
    mhz = max(mhz_short, mhz_long)
    if not _PLAUSIBLE_MHZ[0] <= mhz <= _PLAUSIBLE_MHZ[1]:
        raise RuntimeError(f"implausible clock {mhz:.0f} MHz from add chain")
    if abs(mhz_imul - mhz) / mhz > _CROSSCHECK_TOL:
        raise RuntimeError(f"add chain ({mhz:.0f} MHz) and imul chain ({mhz_imul:.0f} MHz) disagree")
    notes = (
        f"fastest of {rounds} interleaved runs of a dependent 'add rax,rdx' chain ({_ADDS_PER_ITER}/iter, "
        f"n={n} and {2 * n}): {mhz_short:.0f}/{mhz_long:.0f} MHz, length ratio {ratio:.3f}; "
        f"imul-chain cross-check {mhz_imul:.0f} MHz"
    )
    return round(mhz, 1), notes


# --------------------------------------------------------------------------------------------
# OS-reported figures


def _read_khz_file(path: Path) -> float | None:
    """A sysfs cpufreq file (kHz) as MHz, or None when absent/unreadable."""
    try:
        return int(path.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def _read_sysfs_cur_mhz() -> float | None:
    return _read_khz_file(_SYSFS_CUR)


def _read_proc_cpuinfo_mhz() -> float | None:
    """First "cpu MHz" line of /proc/cpuinfo (absent on most aarch64 kernels)."""
    try:
        text = _PROC_CPUINFO.read_text()
    except OSError:
        return None
    match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else None


def _read_model_name_ghz() -> float | None:
    """The "@ 2.60GHz" suffix some model names carry."""
    try:
        text = _PROC_CPUINFO.read_text()
    except OSError:
        return None
    match = re.search(r"^model name\s*:.*@\s*([0-9.]+)\s*GHz", text, flags=re.MULTILINE)
    return float(match.group(1)) * 1000.0 if match else None
