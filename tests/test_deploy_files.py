"""deploy/ stays true: pins agree with the bundles' requirements, scripts parse, units are complete."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_runtime_venv import dockerfile_pip_requirements

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
FILES = REPO / "edgekd" / "deploy" / "files"


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
    text = (FILES / "build_engine.sh").read_text()
    assert "trtexec" in text and "--stronglyTyped" in text and "--memPoolSize=workspace" in text
    assert "--minShapes" in text and "--maxShapes" in text and "--timingCacheFile" in text
    assert "-m edgekd_runtime.tensorrt_build" in text and "--sidecar-only trtexec" in text


@pytest.mark.parametrize("unit", [DEPLOY / "cpu" / "edgekd-runtime.service", DEPLOY / "jetson" / "edgekd-runtime.service"])
def test_systemd_units_are_complete(unit: Path) -> None:
    text = unit.read_text()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text
    assert re.search(r"^ExecStart=/", text, re.MULTILINE) and "Restart=on-failure" in text
    assert "edgekd_runtime" in text or "edgekd-jetson" in text
