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
from typing import Any

from edgekd.utils.cpu import NOT_AVAILABLE, X86_ISA_FLAGS, cpu_info, parse_cpuinfo

ISA_FLAGS = X86_ISA_FLAGS  # the x86 features shown; aarch64 shows its own (arm_*) and "not available" for these


def cpu_facts(cpuinfo: str | None = None, machine: str | None = None) -> dict[str, Any]:
    """Model, vendor, logical CPUs, the decisive ISA flags and the effective oneDNN ISA (after any
    ``ONEDNN_MAX_CPU_ISA`` cap). ``cpuinfo``/``machine`` describe another platform (tests)."""
    if cpuinfo is None and machine is None:
        info = cpu_info()
    else:
        info = parse_cpuinfo(cpuinfo or "", machine=machine or platform.machine(), logical_cpus=os.cpu_count(),
                             onednn_cap=os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return info.to_dict()


def bf16_training_facts() -> dict[str, Any]:
    """Whether ``precision: auto`` trains in bf16 here: the probe on a small C3D at the quickstart's
    shape (cached like any probe), plus every probe result already cached on this machine."""
    from edgekd.models import build_model
    from edgekd.train.precision import choose_precision, list_cached_probes

    kwargs = {"num_classes": 10, "input_size": [16, 32, 40], "width_mult": 1.0, "dropout": 0.0}
    choice = choose_precision("auto", build=lambda: build_model("c3d_student", **kwargs),
                              model={"name": "c3d_student", **kwargs}, input_shape=(3, 16, 32, 40), batch=4,
                              channels_last=True, log=None)
    cached = [{"model": c["key"]["model"].get("name"), "input": c["key"]["input_shape"], "batch": c["key"]["batch"],
               "verdict": c["result"]["verdict"]} for c in list_cached_probes()]
    return {"c3d_student": choice.to_dict(), "cached_probes": cached}


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
    from edgekd.engines.openvino_engine import supported_precision_hints

    return {"version": ov.get_version(), "devices": devices, "cpu_precision_hints": supported_precision_hints(core)}


def onnxruntime_facts() -> dict[str, Any]:
    import onnxruntime as ort

    return {"version": ort.__version__, "providers": ort.get_available_providers()}


def tensorrt_facts() -> dict[str, Any]:
    """Usable here or why not, and, wherever the module imports (a GPU is not needed to read its API),
    which TensorRT line it is and what it builds: FP16 route, INT8 route, calibrator or not."""
    from edgekd.engines.tensorrt_engine import tensorrt_capabilities, tensorrt_status

    ok, reason = tensorrt_status()  # lazy import; never raises
    return {"usable": ok, "status": reason, "builds": tensorrt_capabilities()}


def _tensorrt_rows(f: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("usable", "yes" if f["usable"] else "no"), ("status", f["status"])]
    builds = f.get("builds")
    if builds is None:
        return [*rows, ("builds", "nothing: the tensorrt module does not import here")]
    return [*rows, ("line", builds["line"]), ("strong typing", builds["strong_typing"]), ("fp16", builds["fp16"]),
            ("int8 (Q/DQ)", builds["int8_qdq"]), ("int8 calibrator", builds["int8_calib"]),
            ("fp32", builds["fp32"]), ("version compatible", builds["version_compatible"])]


def clock_facts() -> dict[str, Any]:
    from edgekd.bench.clock import measure_effective_clock

    return measure_effective_clock(0.2).to_dict()


def frame_cache_facts() -> dict[str, Any]:
    """Which ``data.cache_format`` rows this machine can write and read (Pillow's JPEG/WebP codecs)."""
    from edgekd.data.formats import codec_facts

    return codec_facts()


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
    "bf16_training": bf16_training_facts,
    "clock": clock_facts,
    "torch": torch_facts,
    "openvino": openvino_facts,
    "nncf": nncf_facts,
    "onnxruntime": onnxruntime_facts,
    "tensorrt": tensorrt_facts,
    "frame_cache": frame_cache_facts,
}


def platform_text() -> str:
    """``Linux-6.1.0-x86_64-with-glibc2.36``-style text without forking: ``platform.platform()``
    unpacks ``uname()``, whose ``processor`` field runs ``uname -p`` in a subprocess, and a fork in
    a process holding OpenVINO / ONNX Runtime / oneDNN threads crashed here (DEVELOPERS.md)."""
    u = platform.uname()  # attribute access leaves the lazy processor field alone
    libc, version = platform.libc_ver()
    return "-".join(x for x in (u.system, u.release, u.machine) if x) + (f"-with-{libc}{version}" if libc else "")


def collect() -> dict[str, Any]:
    """Every probe's facts; a probe that fails reports ``{"error": ...}`` instead."""
    facts: dict[str, Any] = {"python": platform.python_version(), "platform": platform_text()}
    for name, probe in PROBES.items():
        try:
            facts[name] = probe()
        except Exception as e:  # noqa: BLE001 - the doctor reports broken installs, it does not crash on them
            facts[name] = {"error": f"{type(e).__name__}: {e}"}
    facts["engines"] = engine_plan(facts)
    return facts


def engine_plan(facts: dict[str, Any], status: dict[str, tuple[bool, str]] | None = None) -> dict[str, str]:
    """What ``edgekd run`` can build and benchmark here, one line per row of the backend table
    (``status``: each row's ``(usable, why)``, read from the table when not given), plus whether
    bf16 training is used."""
    if status is None:
        from edgekd.engines import engine_status

        status = engine_status()
    isa = facts.get("cpu", {}).get("isa", {})
    probe = facts.get("bf16_training", {})
    choice = probe.get("c3d_student", {})
    if "error" in probe:
        bf16_train = f"unknown: the probe failed ({probe['error']})"
    elif choice.get("precision") == "bf16":
        bf16_train = f"yes (precision: auto picks bf16; {choice.get('reason')})"
    else:
        bf16_train = f"no (precision: auto trains in fp32; {choice.get('reason', 'not probed')})"
    plan = {"pytorch_bf16_training": bf16_train}
    for name, (ok, why) in status.items():
        if not ok:
            plan[name] = f"no: {why}"
        else:
            plan[name] = "yes" + (_int8_note(isa) if name.endswith("int8") and name.startswith("openvino") else "")
    return plan


def _int8_note(isa: dict[str, Any]) -> str:
    if isa.get("avx512_vnni") == NOT_AVAILABLE:  # not x86: OpenVINO's ARM plugin, no x86 INT8 units
        return " (x86 INT8 instructions not available on this platform)"
    note = " (VNNI)" if isa.get("avx512_vnni") is True or isa.get("avx_vnni") is True else \
        " (no VNNI: INT8 may not be faster than FP32)"
    return note + (", AMX-INT8" if isa.get("amx_int8") is True else "")


def _flag(value: Any) -> str:
    return value if isinstance(value, str) else ("yes" if value else "no")


def format_report(facts: dict[str, Any]) -> str:
    lines = [f"edgekd doctor  (python {facts['python']}, {facts['platform']})", ""]

    def section(title: str, rows: list[tuple[str, Any]]) -> None:
        lines.append(f"[{title}]")
        lines.extend(f"  {k:<24} {v}" for k, v in rows)
        lines.append("")

    def err_or(name: str, rows: Callable[[dict[str, Any]], list[tuple[str, Any]]]) -> None:
        f = facts.get(name, {})
        section(name, [("error", f["error"])] if "error" in f else rows(f))

    err_or("cpu", lambda f: [("model", f["model"]), ("vendor", f["vendor"]), ("logical CPUs", f["logical_cpus"]),
                             ("machine", f["machine"]),
                             ("oneDNN ISA", f"{f['onednn_isa'] or NOT_AVAILABLE}"
                              + (f" (capped by ONEDNN_MAX_CPU_ISA={f['onednn_cap']})" if f["onednn_cap"] else "")),
                             *[(flag, _flag(on)) for flag, on in f["isa"].items()]])
    err_or("bf16_training", lambda f: [
        ("precision: auto", f"{f['c3d_student']['precision']} ({f['c3d_student']['reason']})"),
        *[(f"  probe {c['model']} {c['input']} x{c['batch']}", c["verdict"]) for c in f["cached_probes"]]])
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
    err_or("tensorrt", _tensorrt_rows)
    err_or("frame_cache", lambda f: [("pillow", f["pillow"]), *f["formats"].items()])
    section("engines a run will build", list(facts["engines"].items()))
    return "\n".join(lines).rstrip() + "\n"


def run_doctor(*, as_json: bool = False) -> int:
    facts = collect()
    sys.stdout.write(json.dumps(facts, indent=2, default=str) + "\n" if as_json else format_report(facts))
    return 0
