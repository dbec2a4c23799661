"""End to end on a real clip: a fresh venv with exactly deploy/cpu/Dockerfile's pip install (no
torch, no edgekd) runs the cpu bundle, and its top-1 per window matches the run's OpenVINO engine.

Slow (creates a venv and installs openvino/opencv/numpy from the package index); skips when the
real clips or the index are unavailable.
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _deploy_run import make_run

from edgekd.data.decode import read_video
from edgekd.deploy import pack_bundle
from edgekd.engines.openvino_engine import OpenVinoEngine
from edgekd.runtime.preprocess import PreprocessSpec, normalize_clip

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
DOCKERFILE = REPO / "deploy" / "cpu" / "Dockerfile"

pytestmark = pytest.mark.slow


def dockerfile_pip_requirements(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The requirement specifiers of every ``RUN pip install`` in the Dockerfile (continuations joined)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    reqs: list[str] = []
    for line in text.splitlines():
        words = shlex.split(line.strip())
        if len(words) > 3 and words[0] == "RUN" and words[1:3] == ["pip", "install"]:
            reqs += [w for w in words[3:] if not w.startswith("-")]
    return reqs


def _real_clip() -> Path:
    index = REAL / "index.csv"
    if not index.is_file():
        pytest.skip(f"real clips not available at {REAL}")
    with index.open() as f:
        for row in csv.DictReader(f):
            if row["dataset"] == "ucf101" and (REAL / row["path"]).is_file():
                return REAL / row["path"]
    pytest.skip("no ucf101 clip in the real data index")


def test_fresh_venv_runs_cpu_bundle_like_openvino_engine(tmp_path: Path) -> None:
    clip = _real_clip()
    reqs = dockerfile_pip_requirements()
    assert any(r.startswith("openvino==") for r in reqs), reqs
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", *reqs],
                         capture_output=True, text=True, timeout=600, check=False)
    if pip.returncode != 0 and ("Could not find" in pip.stderr or "connection" in pip.stderr.lower()):
        pytest.skip(f"package index unreachable: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr[-2000:]
    no_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, timeout=60, check=False)
    assert no_torch.returncode != 0, "the deploy venv must not have torch"

    run = make_run(tmp_path / "run")
    bundle = pack_bundle(run, target="cpu", out=tmp_path / "bundle").directory
    proc = subprocess.run([str(py), "-m", "edgekd_runtime", ".", str(clip), "--stride", "8"], cwd=bundle,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    windows, summary = lines[:-1], lines[-1]
    assert summary["type"] == "summary" and summary["windows"] == len(windows) > 0

    spec = PreprocessSpec.load(bundle / "preprocess.json")
    labels = json.loads((bundle / "labels.json").read_text())
    engine = OpenVinoEngine(run / "engines" / "student_kd" / "openvino_fp32" / "model.xml")
    frames = read_video(clip, resize=spec.resize)
    assert summary["frames"] == len(frames)
    y, x = (spec.resize[0] - spec.crop[0]) // 2, (spec.resize[1] - spec.crop[1]) // 2
    for w in windows:
        idx = w["start_frame"] + np.arange(spec.clip_len) * spec.frame_interval
        batch = normalize_clip(np.ascontiguousarray(frames[idx, y : y + spec.crop[0], x : x + spec.crop[1]]), spec)[None]
        logits = engine.infer(batch)[0]
        assert w["label"] == labels[int(logits.argmax())], w
