"""What this CPU is, read once, on any platform.

Every place that needs a CPU fact (the doctor, the precision probe's cache key, the GEMM-peak
cache, reports) reads it here, so an aarch64 box (a Jetson's CPU, Graviton) gets "not available on
this platform" for x86-only facts instead of a crash or a silent ``False``.

Flags are facts about the silicon, not promises about speed or correctness: bf16 training is
chosen by measuring it (``edgekd.train.precision``), never by reading ``avx512_bf16`` and trusting
it. What the flags do decide is which oneDNN kernels *can* run: ``ONEDNN_MAX_CPU_ISA`` caps them
(that is how one machine runs another CPU's kernels), so :attr:`CpuInfo.onednn_isa` reports the
effective level, the lower of the CPU's and the cap.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NOT_AVAILABLE", "ONEDNN_ISA_ORDER", "X86_ISA_FLAGS", "CpuInfo", "cpu_info", "parse_cpuinfo"]

NOT_AVAILABLE = "not available on this platform"

# x86 features that decide the fast paths: VNNI (INT8 dot products), AVX512-BF16 / AMX (native bf16
# training and OpenVINO bf16 inference), AMX-INT8 for quantised engines.
X86_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                 "amx_tile", "amx_bf16", "amx_int8")
# aarch64 features (``Features`` in /proc/cpuinfo) that matter for the same decisions.
ARM_ISA_FLAGS = ("asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")

# oneDNN's x86 ISA levels (``ONEDNN_MAX_CPU_ISA`` values), lowest first, with the cpuinfo flags each
# needs. AVX10_1_512_* are the newer names of the AMX levels.
ONEDNN_ISA_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SSE41", ("sse4_1",)),
    ("AVX", ("avx",)),
    ("AVX2", ("avx2",)),
    ("AVX2_VNNI", ("avx2", "avx_vnni")),
    ("AVX512_CORE", ("avx512f", "avx512bw", "avx512vl", "avx512dq")),
    ("AVX512_CORE_VNNI", ("avx512f", "avx512_vnni")),
    ("AVX512_CORE_BF16", ("avx512f", "avx512_vnni", "avx512_bf16")),
    ("AVX512_CORE_FP16", ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16")),
    ("AVX512_CORE_AMX", ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")),
)
_ISA_ALIASES = {"AVX10_1_512": "AVX512_CORE_FP16", "AVX10_1_512_AMX": "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16": "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16": "AVX512_CORE_AMX", "ALL": None,
                "DEFAULT": None}
_ISA_RANK = {name: i for i, (name, _) in enumerate(ONEDNN_ISA_ORDER)}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as ``/proc/cpuinfo`` (or the OS) describes it, plus the oneDNN ISA cap in force."""

    machine: str  # platform.machine(): x86_64, aarch64, arm64, ...
    model: str | None
    vendor: str | None
    flags: frozenset[str] = field(default_factory=frozenset)
    logical_cpus: int | None = None
    onednn_cap: str | None = None  # ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) as set, upper-cased
    source: str = "/proc/cpuinfo"

    @property
    def is_x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")

    @property
    def is_arm(self) -> bool:
        return self.machine.lower() in ("aarch64", "arm64") or self.machine.lower().startswith("arm")

    def isa(self) -> dict[str, Any]:
        """Each decisive feature of this platform: ``True``/``False`` where it is a feature of this
        architecture, :data:`NOT_AVAILABLE` for the other architecture's flags."""
        out: dict[str, Any] = {}
        for flag in X86_ISA_FLAGS:
            out[flag] = (flag in self.flags) if self.is_x86 else NOT_AVAILABLE
        if self.is_arm:
            out.update({f"arm_{flag}": flag in self.flags for flag in ARM_ISA_FLAGS})
        return out

    @property
    def cpu_onednn_isa(self) -> str | None:
        """The highest oneDNN x86 ISA level this CPU supports (None off x86 or with no flags)."""
        if not self.is_x86 or not self.flags:
            return None
        best = None
        for name, needs in ONEDNN_ISA_ORDER:
            if all(f in self.flags for f in needs):
                best = name
        return best

    @property
    def onednn_isa(self) -> str | None:
        """The ISA level oneDNN's kernels run at here: the CPU's, lowered by ``ONEDNN_MAX_CPU_ISA``."""
        native = self.cpu_onednn_isa
        cap = _ISA_ALIASES.get(self.onednn_cap, self.onednn_cap) if self.onednn_cap else None
        if native is None or cap is None or cap not in _ISA_RANK:
            return native
        return native if _ISA_RANK[native] <= _ISA_RANK[cap] else cap

    def isa_at_least(self, level: str) -> bool:
        """Whether oneDNN's effective ISA here (after any cap) is ``level`` or higher (x86 only)."""
        isa = self.onednn_isa
        return isa is not None and _ISA_RANK[isa] >= _ISA_RANK[_ISA_ALIASES.get(level, level) or level]

    def bf16_worth_probing(self) -> tuple[bool, str]:
        """Whether oneDNN has vectorised bf16 kernels here, so that bf16 training could pay off and
        is worth the precision probe; ``(False, why)`` where bf16 would run as slow emulation. One
        C3D probe step took 21 s in bf16 against 0.7 s in fp32 with ``ONEDNN_MAX_CPU_ISA=AVX2``.
        Speed and soundness are then measured, never assumed from this answer."""
        if self.is_x86:
            isa = self.onednn_isa
            if isa is None:
                return False, "no CPU flags could be read"
            capped = f" (capped by ONEDNN_MAX_CPU_ISA={self.onednn_cap})" if self.onednn_cap else ""
            if _ISA_RANK[isa] >= _ISA_RANK["AVX512_CORE"]:
                return True, f"oneDNN ISA {isa}{capped}"
            return False, f"oneDNN ISA {isa}{capped} has no AVX-512: bf16 would be emulated, far slower than fp32"
        if self.is_arm:
            if "bf16" in self.flags:
                return True, "aarch64 with the bf16 feature"
            return False, "aarch64 without the bf16 feature: bf16 would be emulated"
        return False, f"no bf16 rule for a {self.machine} CPU"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "vendor": self.vendor, "machine": self.machine, "logical_cpus": self.logical_cpus,
                "isa": self.isa(), "onednn_isa": self.onednn_isa, "cpu_onednn_isa": self.cpu_onednn_isa,
                "onednn_cap": self.onednn_cap, "source": self.source}

    def key(self) -> dict[str, Any]:
        """What identifies this CPU for caches of measured facts (probe results, GEMM peaks)."""
        return {"model": self.model, "vendor": self.vendor, "machine": self.machine,
                "flags": sorted(f for f in self.flags if f in X86_ISA_FLAGS or f in ARM_ISA_FLAGS),
                "onednn_isa": self.onednn_isa}


# ARM implementer codes (``CPU implementer`` in /proc/cpuinfo) for a readable model name
_ARM_IMPLEMENTERS = {"0x41": "ARM", "0x4e": "NVIDIA", "0x61": "Apple", "0x51": "Qualcomm", "0xc0": "Ampere"}


def parse_cpuinfo(text: str, *, machine: str, logical_cpus: int | None = None,
                  onednn_cap: str | None = None, source: str = "/proc/cpuinfo") -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (x86 ``flags`` / aarch64 ``Features``).

    Taking the text and the machine as arguments lets tests describe any platform."""
    flags: set[str] = set()
    model = vendor = None
    arm_part = arm_impl = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "model name" and model is None:
            model = value
        elif key == "vendor_id" and vendor is None:
            vendor = value
        elif key == "CPU implementer" and arm_impl is None:
            arm_impl = value
        elif key == "CPU part" and arm_part is None:
            arm_part = value
        elif key == "Hardware" and model is None:
            model = value
    if model is None and arm_impl is not None:
        vendor = _ARM_IMPLEMENTERS.get(arm_impl.lower(), f"implementer {arm_impl}")
        model = f"{vendor} CPU part {arm_part or '?'}"
    cap = onednn_cap.strip().upper() if onednn_cap else None
    return CpuInfo(machine=machine, model=model, vendor=vendor, flags=frozenset(flags), logical_cpus=logical_cpus,
                   onednn_cap=cap or None, source=source)


def _onednn_cap_from_env() -> str | None:
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")


@functools.lru_cache(maxsize=1)
def _cpu_info_cached(cap: str | None) -> CpuInfo:
    machine = platform.machine() or "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        source = "/proc/cpuinfo"
    except OSError:
        text, source = "", f"/proc/cpuinfo unreadable; platform.processor() {platform.processor()!r}"
    info = parse_cpuinfo(text, machine=machine, logical_cpus=os.cpu_count(), onednn_cap=cap, source=source)
    if info.model is None and platform.processor():
        info = CpuInfo(info.machine, platform.processor(), info.vendor, info.flags, info.logical_cpus,
                       info.onednn_cap, info.source)
    return info


def cpu_info() -> CpuInfo:
    """This machine's CPU (read once per process and ISA cap)."""
    return _cpu_info_cached(_onednn_cap_from_env())
