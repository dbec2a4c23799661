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
    f = cpu_facts(text)
    assert f["model"] == "Test CPU @ 2.00GHz"
    assert f["isa"] == {flag: flag in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8") for flag in ISA_FLAGS}


def test_engine_plan_says_why_not():
    facts = {"cpu": {"isa": {"avx512_vnni": False, "amx_bf16": False}},
             "openvino": {"error": "ModuleNotFoundError: No module named 'openvino'"},
             "onnxruntime": {"version": "1", "providers": ["CPUExecutionProvider"]}, "nncf": {"version": "2"},
             "tensorrt": {"usable": False, "status": "no CUDA GPU visible"}}
    plan = engine_plan(facts)
    assert plan["openvino_fp32"] == "no: ModuleNotFoundError: No module named 'openvino'"
    assert plan["tensorrt"] == "skipped: no CUDA GPU visible"
    assert plan["onnxruntime_fp32"] == "yes" and plan["pytorch_bf16_training"].startswith("no native bf16")


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
    assert {"cpu", "clock", "torch", "openvino", "onnxruntime", "tensorrt", "engines"} <= set(facts)
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
