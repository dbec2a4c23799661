"""`edgekd doctor` prints the facts that decide which engines a run builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekd.cli import main
from edgekd.doctor import ISA_FLAGS, cpu_facts, engine_plan


def test_cpu_flags_are_read_from_cpuinfo_text():
    text = ("processor\t: 0\nmodel name\t: Test CPU @ 2.00GHz\n"
            "flags\t\t: fpu avx2 avx512f avx512_vnni amx_tile amx_int8\n"
            "processor\t: 1\nflags\t\t: fpu\n")
    f = cpu_facts(text, machine="x86_64")
    assert f["model"] == "Test CPU @ 2.00GHz"
    assert f["isa"] == {flag: flag in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8") for flag in ISA_FLAGS}


ARM_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
               "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
               "CPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n")


def test_aarch64_reports_x86_facts_as_not_available_instead_of_failing(monkeypatch):
    """A Jetson Orin's CPU (Cortex-A78AE, ARM implementer 0x41), as /proc/cpuinfo shows it."""
    from edgekd.bench import clock
    from edgekd.utils.cpu import NOT_AVAILABLE, parse_cpuinfo

    f = cpu_facts(ARM_CPUINFO, machine="aarch64")
    assert f["model"] == "ARM CPU part 0xd42" and f["machine"] == "aarch64"
    assert all(f["isa"][flag] == NOT_AVAILABLE for flag in ISA_FLAGS)
    assert f["isa"]["arm_asimd"] is True and f["isa"]["arm_bf16"] is False and f["onednn_isa"] is None
    worth, why = parse_cpuinfo(ARM_CPUINFO, machine="aarch64").bf16_worth_probing()
    assert not worth and "aarch64" in why
    plan = engine_plan({"cpu": f}, {"openvino_int8": (True, "")})
    assert "not available on this platform" in plan["openvino_int8"]
    # the x86 clock loop is machine code: on aarch64 it is reported unavailable, and the OS clock is used
    monkeypatch.setattr(clock.platform, "machine", lambda: "aarch64")
    reading = clock.measure_effective_clock(0.01)
    assert reading.method in ("sysfs_scaling_cur_freq", "proc_cpuinfo", "unavailable")
    assert "add-chain loop not available on this platform" in reading.notes


def test_onednn_isa_cap_lowers_the_effective_level():
    from edgekd.utils.cpu import parse_cpuinfo

    amx = "model name\t: Xeon\nflags\t\t: avx avx2 avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 " \
          "avx512_fp16 amx_tile amx_bf16 amx_int8\n"
    assert parse_cpuinfo(amx, machine="x86_64").onednn_isa == "AVX512_CORE_AMX"
    capped = parse_cpuinfo(amx, machine="x86_64", onednn_cap="avx512_core_bf16")
    assert capped.onednn_isa == "AVX512_CORE_BF16" and capped.bf16_worth_probing()[0]
    avx2 = parse_cpuinfo(amx, machine="x86_64", onednn_cap="AVX2")
    assert avx2.onednn_isa == "AVX2" and not avx2.bf16_worth_probing()[0]
    # a cap above what the CPU has changes nothing
    assert parse_cpuinfo("flags\t: avx avx2\n", machine="x86_64", onednn_cap="AVX512_CORE_AMX").onednn_isa == "AVX2"


def test_engine_plan_says_why_not():
    facts = {"cpu": {"isa": {"avx512_vnni": False, "amx_bf16": False}},
             "openvino": {"error": "ModuleNotFoundError: No module named 'openvino'"},
             "onnxruntime": {"version": "1", "providers": ["CPUExecutionProvider"]}, "nncf": {"version": "2"},
             "tensorrt": {"usable": False, "status": "no CUDA GPU visible"}}
    status = {"openvino_fp32": (False, "ModuleNotFoundError: No module named 'openvino'"),
              "tensorrt_fp16": (False, "no CUDA GPU visible"), "onnxruntime_fp32": (True, "ONNX Runtime 1"),
              "openvino_int8": (True, "")}
    plan = engine_plan(facts, status)
    assert plan["openvino_fp32"] == "no: ModuleNotFoundError: No module named 'openvino'"
    assert plan["tensorrt_fp16"] == "no: no CUDA GPU visible"
    assert plan["openvino_int8"] == "yes (no VNNI: INT8 may not be faster than FP32)"
    assert plan["onnxruntime_fp32"] == "yes" and plan["pytorch_bf16_training"].startswith("no (precision: auto")
    from edgekd.engines.table import ENGINE_NAMES

    assert set(engine_plan(facts)) == {"pytorch_bf16_training", *ENGINE_NAMES}  # every row of the table


def test_doctor_output_names_versions_devices_isa_providers_tensorrt_and_clock(capsys):
    import onnxruntime as ort
    import openvino as ov
    import torch

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"version                  {ov.get_version()}" in out
    assert re.search(r"devices\s+.*CPU", out)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), []))
    for flag in ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"):
        assert re.search(rf"^  {flag}\s+{'yes' if flag in flags else 'no'}$", out, re.M), flag
    assert f"providers                {', '.join(ort.get_available_providers())}" in out
    assert "[tensorrt]" in out and re.search(r"usable\s+(yes|no)", out)
    assert ("CUDA                     available" in out) == torch.cuda.is_available()
    assert f"threads                  {torch.get_num_threads()} intra-op" in out
    mhz = re.search(r"effective MHz\s+(\d+|unknown)", out)
    assert mhz is not None
    if mhz.group(1) != "unknown":
        assert 200 < int(mhz.group(1)) < 7000  # a plausible CPU clock
    assert re.search(r"openvino_int8\s+(yes|no)", out)


def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert {"cpu", "clock", "torch", "openvino", "onnxruntime", "tensorrt", "engines", "bf16_training"} <= set(facts)
    choice = facts["bf16_training"]["c3d_student"]
    assert choice["precision"] in ("fp32", "bf16") and choice["reason"] and choice["cpu"]
    assert isinstance(facts["onnxruntime"]["providers"], list) and "CPU" in facts["openvino"]["devices"]
    assert facts["tensorrt"]["usable"] in (True, False) and facts["tensorrt"]["status"]


def test_host_probe_advises_one_thread_under_heavy_steal(monkeypatch):
    from edgekd import doctor
    from edgekd.utils import cpu_clock

    ticks = iter([(100, 900, 0), (150, 950, 400)])  # (user, idle, steal): +400 steal of +500 ticks -> 80%

    def fake_ticks():
        user, idle, steal = next(ticks)
        return [user, 0, 0, idle, 0, 0, 0, steal]

    monkeypatch.setattr(cpu_clock, "_cpu_ticks", fake_ticks)
    f = doctor.host_facts(sample_s=0.01)
    assert f["steal"] == 0.8 and "OMP_NUM_THREADS=1" in f["advice"]
    ticks = iter([(100, 900, 0), (190, 1000, 10)])  # 10 of 200 ticks stolen: no advice
    assert doctor.host_facts(sample_s=0.01)["advice"] is None


def test_platform_text_forks_nothing(monkeypatch):
    """platform.platform() runs `uname -p` in a subprocess; the doctor runs inside processes that
    hold OpenVINO and oneDNN threads, where a fork crashed the suite (DEVELOPERS.md)."""
    import platform
    import subprocess

    from edgekd.doctor import platform_text

    def no_fork(*a, **k):
        raise AssertionError(f"the doctor started a subprocess: {a}")

    monkeypatch.setattr(subprocess, "Popen", no_fork)
    monkeypatch.setattr(platform, "_uname_cache", None, raising=False)  # a fresh uname() each time
    text = platform_text()
    assert platform.system() in text and platform.machine() in text
