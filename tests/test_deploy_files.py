"""deploy/ stays true: pins agree with the bundles' requirements, scripts parse, units are complete,
and a Jetson bundle's build_engine.sh gives trtexec and the Python builder the right ONNX and flags
on every TensorRT line (a recording fake trtexec, the stand-in ``tensorrt`` modules of
test_tensorrt_fake.py and a fake cuda-python, all in subprocesses as on the device)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_runtime_venv import dockerfile_pip_requirements

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
FILES = REPO / "edgekd" / "deploy" / "files"
TESTS = Path(__file__).resolve().parent


def _code(path: Path) -> str:
    """The file without comment lines (comments may say "torch-free")."""
    return "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))


def _reqs(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def test_cpu_dockerfile_pins_equal_bundle_requirements() -> None:
    docker = dockerfile_pip_requirements(DEPLOY / "cpu" / "Dockerfile")
    assert docker == _reqs(FILES / "requirements-cpu.txt")
    assert all(re.fullmatch(r"[a-z0-9-]+==[0-9][\w.]*", r) for r in docker), "every CPU dependency is pinned exactly"
    assert {r.split("==")[0] for r in docker} == {"openvino", "opencv-python-headless", "numpy"}
    text = _code(DEPLOY / "cpu" / "Dockerfile")
    assert re.search(r"^FROM python:3\.\d+-slim$", text, re.MULTILINE) and "torch" not in text


def test_jetson_dockerfile_uses_an_l4t_tensorrt_base() -> None:
    text = _code(DEPLOY / "jetson" / "Dockerfile")
    assert "ARG BASE=nvcr.io/nvidia/l4t-tensorrt:r8.5.2-runtime" in text and "FROM ${BASE}" in text
    assert "requirements.txt" in text and "torch" not in text


@pytest.mark.parametrize("script", [DEPLOY / "jetson" / "build_engine.sh", DEPLOY / "jetson" / "run.sh",
                                    FILES / "build_engine.sh", FILES / "run.sh"])
def test_scripts_are_executable_bash(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def test_engine_build_script_has_both_builders() -> None:
    text = _code(FILES / "build_engine.sh")
    assert "trtexec" in text and "--memPoolSize=workspace" in text and "--trtexec-flags" in text
    assert "--minShapes" in text and "--maxShapes" in text and "--timingCacheFile" in text
    assert "-m edgekd_runtime.tensorrt_build" in text and "--sidecar-only trtexec" in text
    # precision flags are never spelled in the script: the installed TensorRT decides them (see below)
    assert not re.search(r"--(fp16|int8|bf16|best|stronglyTyped|calib)(?![\w-])", text)


# The fakes a subprocess imports instead of TensorRT and cuda-python: test_tensorrt_fake.py's stand-in
# for the line named by EDGEKD_FAKE_TENSORRT, and FakeCudart's functions at module level.
_FAKE_TENSORRT = """import os
from test_tensorrt_fake import FakeCudart, make_trt
_trt = make_trt(os.environ["EDGEKD_FAKE_TENSORRT"], FakeCudart(), {})
globals().update({k: v for k, v in vars(_trt).items() if not k.startswith("__")})
__version__ = _trt.__version__
"""
_FAKE_CUDART = """from test_tensorrt_fake import FakeCudart
_cudart = FakeCudart()
cudaMemcpyKind = FakeCudart.cudaMemcpyKind
globals().update({n: getattr(_cudart, n) for n in dir(FakeCudart) if n.startswith("cuda") and n != "cudaMemcpyKind"})
"""
# trtexec as far as the script uses it: records its arguments, writes the plan TensorRT would load
_FAKE_TRTEXEC = """#!{python}
import json, os, sys
with open(os.environ["TRTEXEC_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
plan = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--saveEngine="))
with open(plan, "wb") as f:
    f.write(b"VCPLAN" if "--versionCompatible" in sys.argv else b"PLAN")
"""
_PRECISION_FLAGS = {"--fp16", "--int8", "--bf16", "--best", "--stronglyTyped", "--versionCompatible"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Jetson fp16 and int8 bundles of a tiny run (FP16 ONNX built as the engines stage builds it),
    plus the fakes: ``{"fp16": dir, "int8": dir, "fakes": dir, "trtexec": path}``."""
    from _deploy_run import make_run

    from edgekd.deploy import pack_bundle
    from edgekd.engines.rows import BuildContext, build_onnx_fp16
    from edgekd.engines.table import get_engine
    from edgekd.recipe import EnginesConfig
    from edgekd.utils.hashing import sha256_file

    root = tmp_path_factory.mktemp("jetson")
    run = make_run(root / "run")
    onnx_path = run / "export" / "student_kd.onnx"
    clips = np.random.default_rng(0).standard_normal((4, 3, 4, 16, 16), dtype=np.float32)
    build_onnx_fp16(BuildContext(get_engine("onnxruntime_fp16"), "student_kd", run, onnx_path,
                                 {"source_onnx": str(onnx_path), "source_onnx_sha256": sha256_file(onnx_path)},
                                 EnginesConfig(), parity_clips=clips))
    out = {"fp16": pack_bundle(run, target="jetson", out=root / "j16").directory,
           "int8": pack_bundle(run, target="jetson", precision="int8", out=root / "j8").directory}
    fakes = root / "fakes"
    (fakes / "tensorrt").mkdir(parents=True)
    (fakes / "tensorrt" / "__init__.py").write_text(_FAKE_TENSORRT)
    (fakes / "cuda" / "bindings").mkdir(parents=True)
    (fakes / "cuda" / "__init__.py").write_text("")
    (fakes / "cuda" / "bindings" / "__init__.py").write_text("")
    (fakes / "cuda" / "bindings" / "runtime.py").write_text(_FAKE_CUDART)
    trtexec = fakes / "trtexec"
    trtexec.write_text(_FAKE_TRTEXEC.format(python=sys.executable))
    trtexec.chmod(trtexec.stat().st_mode | stat.S_IXUSR)
    return {**out, "fakes": fakes, "trtexec": trtexec}


def _build(bundle: Path, bundles: dict[str, Path], version: str, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                    list[list[str]]]:
    """Run the bundle's build_engine.sh on a device whose TensorRT is ``version``; the trtexec calls it made."""
    log = bundle / "trtexec.log"
    log.unlink(missing_ok=True)
    for f in (bundle / "engines").glob("*") if (bundle / "engines").is_dir() else ():
        f.unlink()
    env = {**os.environ, "PYTHON": sys.executable, "TRTEXEC": str(bundles["trtexec"]), "TRTEXEC_LOG": str(log),
           "EDGEKD_FAKE_TENSORRT": version, "PYTHONPATH": os.pathsep.join([str(bundles["fakes"]), str(TESTS)])}
    proc = subprocess.run(["bash", str(bundle / "build_engine.sh"), *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return proc, calls


@pytest.mark.parametrize(("version", "precision", "source", "flags", "route"), [
    ("8.5.2.2", "fp16", "model/model.onnx", ["--fp16"], "builder_flag"),  # 8.x: today's flags
    ("10.3.0", "fp16", "model/model_fp16.onnx", ["--stronglyTyped"], "strongly_typed"),
    ("11.4.0", "fp16", "model/model_fp16.onnx", [], "strongly_typed"),  # no precision flags exist any more
    ("8.5.2.2", "int8", "model/model_int8_qdq.onnx", ["--int8"], "builder_flag"),
    ("10.3.0", "int8", "model/model_int8_qdq.onnx", ["--stronglyTyped"], "strongly_typed"),
    ("11.4.0", "int8", "model/model_int8_qdq.onnx", [], "strongly_typed"),
])
def test_trtexec_command_line_per_tensorrt_line(bundles: dict[str, Path], version: str, precision: str, source: str,
                                                flags: list[str], route: str) -> None:
    bundle = bundles[precision]
    proc, calls = _build(bundle, bundles, version, "--trtexec", "--batch", "1,2,4")
    assert proc.returncode == 0, proc.stderr
    (args,) = calls
    plan = f"engines/model_{'fp16' if precision == 'fp16' else 'int8_qdq'}.plan"
    assert args[:2] == [f"--onnx={source}", f"--saveEngine={plan}"]
    assert [a for a in args if a in _PRECISION_FLAGS] == flags
    assert not any(a.startswith(("--calib", "--workspace=")) for a in args)
    assert {"--minShapes=clip:1x3x4x16x16", "--optShapes=clip:2x3x4x16x16", "--maxShapes=clip:4x3x4x16x16",
            "--memPoolSize=workspace:1024M", "--timingCacheFile=engines/timing.cache"} <= set(args)
    side = json.loads((bundle / plan).with_suffix(".json").read_text())  # written by the Python side after trtexec
    assert (side["builder"], side["trtexec_flags"], side["route"]) == ("trtexec", flags, route)
    assert side["source_onnx"] == source and side["tensorrt_version"] == version
    assert side["strongly_typed"] == (route == "strongly_typed") and side["labels"] == ["walk", "jumping_jack", "sit_down"]


def test_python_builder_and_version_compatible_trtexec_on_tensorrt_11(bundles: dict[str, Path]) -> None:
    bundle = bundles["fp16"]
    proc, calls = _build(bundle, bundles, "11.4.0")
    assert proc.returncode == 0, proc.stderr
    assert calls == []  # the Python builder: trtexec is not run
    assert "TensorRT 11.4.0 (11.x line): fp16 from the FP16 ONNX, strongly typed (always, TensorRT >= 11)" in proc.stderr
    side = json.loads((bundle / "engines" / "model_fp16.json").read_text())
    assert (side["builder"], side["source_onnx"], side["route"]) == ("tensorrt python api", "model/model_fp16.onnx",
                                                                     "strongly_typed")
    assert side["network"]["fp16_layers"] > 0 and side["timing_cache"].startswith("engines/timing-trt11.4.0-sm8.7")
    proc, calls = _build(bundle, bundles, "10.3.0", "--trtexec", "--version-compatible")
    assert proc.returncode == 0, proc.stderr
    assert [a for a in calls[0] if a in _PRECISION_FLAGS] == ["--stronglyTyped", "--versionCompatible"]
    assert json.loads((bundle / "engines" / "model_fp16.json").read_text())["version_compatible"] is True
    proc, _ = _build(bundle, bundles, "8.5.2.2", "--version-compatible")  # 8.5 predates version compatibility
    assert proc.returncode == 2 and "TensorRT 8.5.2.2 has no BuilderFlag.VERSION_COMPATIBLE" in proc.stderr


@pytest.mark.parametrize("unit", [DEPLOY / "cpu" / "edgekd-runtime.service", DEPLOY / "jetson" / "edgekd-runtime.service"])
def test_systemd_units_are_complete(unit: Path) -> None:
    text = unit.read_text()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text
    assert re.search(r"^ExecStart=/", text, re.MULTILINE) and "Restart=on-failure" in text
    assert "edgekd_runtime" in text or "edgekd-jetson" in text
