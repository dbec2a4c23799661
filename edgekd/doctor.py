"""``edgekd doctor``: what this machine offers, so a user knows which engines a run will build.

Every probe is independent and never raises: a broken install shows up as one line saying why,
next to the facts that could be read. Heavy libraries are imported inside their probe only.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# CPU features that decide the fast paths: VNNI (INT8 dot products), AVX512-BF16 / AMX (native bf16
# training and OpenVINO bf16 inference, AMX-INT8 for quantised engines)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8")


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """Model name, logical CPUs and the ISA flags above, from ``/proc/cpuinfo`` (Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError as e:
            return {"error": f"/proc/cpuinfo unreadable ({e}); ISA flags unknown", "logical_cpus": os.cpu_count()}
    flags: set[str] = set()
    model = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "model name" and model is None:
            model = value.strip()
    return {"model": model, "logical_cpus": os.cpu_count(), "machine": platform.machine(),
            "isa": {f: f in flags for f in ISA_FLAGS}}


def torch_facts() -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
            "cuda_build": torch.version.cuda, "cuda_available": cuda,
            "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "ddp_backends": {"gloo": dist.is_available() and dist.is_gloo_available(),
                             "nccl": dist.is_available() and dist.is_nccl_available()}}


def openvino_facts() -> dict[str, Any]:
    import openvino as ov

    core = ov.Core()
    devices = {}
    for d in core.available_devices:
        info: dict[str, Any] = {}
        for prop in ("FULL_DEVICE_NAME", "OPTIMIZATION_CAPABILITIES"):
            try:
                value = core.get_property(d, prop)
                info[prop.lower()] = list(value) if isinstance(value, (list, tuple)) else str(value)
            except Exception as e:  # noqa: BLE001 - a device without the property
                info[prop.lower()] = f"unavailable ({type(e).__name__})"
        devices[d] = info
    return {"version": ov.get_version(), "devices": devices}


def onnxruntime_facts() -> dict[str, Any]:
    import onnxruntime as ort

    return {"version": ort.__version__, "providers": ort.get_available_providers()}


def tensorrt_facts() -> dict[str, Any]:
    from edgekd.engines.tensorrt_engine import tensorrt_status

    ok, reason = tensorrt_status()  # lazy import; never raises
    return {"usable": ok, "status": reason}


def clock_facts() -> dict[str, Any]:
    from edgekd.bench.clock import measure_effective_clock

    return measure_effective_clock(0.2).to_dict()


def nncf_facts() -> dict[str, Any]:
    from importlib import metadata

    return {"version": metadata.version("nncf")}


STEAL_WARN = 0.2  # share of CPU time taken by the hypervisor above which training threads are advised


def host_facts(sample_s: float = 1.0) -> dict[str, Any]:
    """CPU steal over ``sample_s`` seconds (/proc/stat) and the advice it implies.

    Why: on an oversubscribed VM the hypervisor deschedules vCPUs; 2-thread PyTorch then spins at
    barriers waiting for a stolen vCPU. Measured on this project's 2-core VM at 60-75% steal: one
    C3D training step took 1.6-16 s with 2 threads and 1.7-2.7 s with 1.
    """
    import time

    from edgekd.utils.cpu_clock import CpuClock

    clock = CpuClock.start()
    time.sleep(sample_s)
    r = clock.read()
    steal = r["host_steal"]
    advice = None
    if steal is not None and steal > STEAL_WARN:
        advice = (f"the hypervisor took {steal:.0%} of the CPU in {sample_s:.0f} s: training with "
                  "OMP_NUM_THREADS=1 is likely faster than with all cores")
    return {"steal": steal, "sample_s": sample_s, "advice": advice}


PROBES: dict[str, Callable[[], dict[str, Any]]] = {
    "host": host_facts,
    "cpu": cpu_facts,
    "clock": clock_facts,
    "torch": torch_facts,
    "openvino": openvino_facts,
    "nncf": nncf_facts,
    "onnxruntime": onnxruntime_facts,
    "tensorrt": tensorrt_facts,
}


def collect() -> dict[str, Any]:
    """Every probe's facts; a probe that fails reports ``{"error": ...}`` instead."""
    facts: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name, probe in PROBES.items():
        try:
            facts[name] = probe()
        except Exception as e:  # noqa: BLE001 - the doctor reports broken installs, it does not crash on them
            facts[name] = {"error": f"{type(e).__name__}: {e}"}
    facts["engines"] = engine_plan(facts)
    return facts


def engine_plan(facts: dict[str, Any]) -> dict[str, str]:
    """What ``edgekd run`` will build here, and why not where it will not."""
    ov, ort, trt = facts.get("openvino", {}), facts.get("onnxruntime", {}), facts.get("tensorrt", {})
    isa = facts.get("cpu", {}).get("isa", {})
    ov_ok = "error" not in ov
    caps = ov.get("devices", {}).get("CPU", {}).get("optimization_capabilities", []) if ov_ok else []
    bf16_native = bool(isa.get("amx_bf16") or isa.get("avx512_bf16"))
    return {
        "pytorch_fp32": "yes",
        "pytorch_bf16_training": "yes (precision: auto picks bf16)" if bf16_native
        else "no native bf16 on this CPU (precision: auto trains in fp32)",
        "onnxruntime_fp32": "yes" if "error" not in ort else f"no: {ort['error']}",
        "openvino_fp32": "yes" if ov_ok else f"no: {ov['error']}",
        "openvino_bf16": ("yes" if "BF16" in caps else "no: the OpenVINO CPU plugin reports no BF16 capability")
        if ov_ok else f"no: {ov['error']}",
        "openvino_int8": ("yes" + (" (VNNI)" if isa.get("avx512_vnni") or isa.get("avx_vnni") else
                                   " (no VNNI: INT8 may not be faster than FP32)")
                          + (", AMX-INT8" if isa.get("amx_int8") else ""))
        if ov_ok and "error" not in facts.get("nncf", {}) else "no: OpenVINO or NNCF missing",
        "tensorrt": "yes" if trt.get("usable") else f"skipped: {trt.get('status', trt.get('error'))}",
    }


def format_report(facts: dict[str, Any]) -> str:
    lines = [f"edgekd doctor  (python {facts['python']}, {facts['platform']})", ""]

    def section(title: str, rows: list[tuple[str, Any]]) -> None:
        lines.append(f"[{title}]")
        lines.extend(f"  {k:<24} {v}" for k, v in rows)
        lines.append("")

    def err_or(name: str, rows: Callable[[dict[str, Any]], list[tuple[str, Any]]]) -> None:
        f = facts.get(name, {})
        section(name, [("error", f["error"])] if "error" in f else rows(f))

    err_or("cpu", lambda f: [("model", f["model"]), ("logical CPUs", f["logical_cpus"]), ("machine", f["machine"]),
                             *[(flag, "yes" if on else "no") for flag, on in f["isa"].items()]])
    err_or("host", lambda f: [("CPU steal", "unknown (no /proc/stat)" if f["steal"] is None
                               else f"{f['steal']:.0%} over {f['sample_s']:.0f} s"),
                              *([("advice", f["advice"])] if f["advice"] else [])])
    err_or("clock", lambda f: [("effective MHz", "unknown" if f["effective_mhz"] is None else f"{f['effective_mhz']:.0f}"),
                               ("nominal MHz", f["nominal_mhz"]), ("method", f["method"])])
    err_or("torch", lambda f: [("version", f["version"]), ("threads", f"{f['threads']} intra-op, {f['interop_threads']} inter-op"),
                               ("CUDA", f"available, {f['cuda_devices']}" if f["cuda_available"]
                                else f"not available (build: {f['cuda_build'] or 'CPU-only'})"),
                               ("DDP backends", ", ".join(k for k, v in f["ddp_backends"].items() if v) or "none")])
    err_or("openvino", lambda f: [("version", f["version"]), ("devices", ", ".join(f["devices"]) or "none"),
                                  *[(f"  {d}", f"{i.get('full_device_name')}; {i.get('optimization_capabilities')}")
                                    for d, i in f["devices"].items()]])
    err_or("onnxruntime", lambda f: [("version", f["version"]), ("providers", ", ".join(f["providers"]))])
    err_or("tensorrt", lambda f: [("usable", "yes" if f["usable"] else "no"), ("status", f["status"])])
    section("engines a run will build", list(facts["engines"].items()))
    return "\n".join(lines).rstrip() + "\n"


def run_doctor(*, as_json: bool = False) -> int:
    facts = collect()
    sys.stdout.write(json.dumps(facts, indent=2, default=str) + "\n" if as_json else format_report(facts))
    return 0
