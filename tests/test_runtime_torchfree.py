"""The bundle's runtime runs where torch (and edgekd) cannot be imported, and agrees with the run's
OpenVINO engine. Runs subprocesses, hence its own file (see DEVELOPERS.md on forking)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _deploy_run import make_run, make_stream_run
from test_runtime import write_video
from test_runtime_stream import _noise_video

from edgekd.data.decode import read_video
from edgekd.deploy import pack_bundle
from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine
from edgekd.engines.openvino_engine import OpenVinoEngine
from edgekd.runtime.preprocess import PreprocessSpec, normalize_clip

# Make `import torch` and `import edgekd` fail, then run the bundle's own package as `python -m edgekd_runtime`.
BLOCKED_RUN = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'edgekd'):
            raise ImportError(f'{name} is blocked in this test')
        return None
sys.meta_path.insert(0, Block())
sys.argv = ['edgekd_runtime'] + sys.argv[1:]
try:
    runpy.run_module('edgekd_runtime', run_name='__main__', alter_sys=True)
finally:
    assert 'torch' not in sys.modules and not any(m.split('.')[0] == 'edgekd' for m in sys.modules)
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("torchfree")
    run = make_run(root / "run")
    return run, pack_bundle(run, target="cpu", out=root / "bundle").directory


def _run_blocked(bundle_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, *args], cwd=bundle_dir, capture_output=True,
                          text=True, timeout=120, check=False)


def test_runtime_package_imports_no_torch() -> None:
    code = ("import sys; import edgekd.runtime.__main__, edgekd.runtime.backends, edgekd.runtime.tensorrt_build; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_bundle_classifies_without_torch_like_the_openvino_engine(bundle: tuple[Path, Path], tmp_path: Path) -> None:
    run, bundle_dir = bundle
    video = write_video(tmp_path / "clip.avi", 40)
    proc = _run_blocked(bundle_dir, ".", str(video), "--stride", "6")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    windows, summary = lines[:-1], lines[-1]
    assert summary["type"] == "summary" and summary["frames"] == 40 and summary["windows"] == len(windows) == 6
    assert summary["fps_end_to_end"] > 0 and summary["inference_s"] > 0
    assert "window" in proc.stderr and "FPS" in proc.stderr  # the readable lines
    # reference: the run's OpenVINO FP32 engine on the training pipeline's preprocessing
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    spec = PreprocessSpec.load(bundle_dir / "preprocess.json")
    engine = OpenVinoEngine(run / "engines" / "student_kd" / "openvino_fp32" / "model.xml")
    frames = read_video(video, resize=spec.resize)
    y, x = (spec.resize[0] - spec.crop[0]) // 2, (spec.resize[1] - spec.crop[1]) // 2
    labels = json.loads((bundle_dir / "labels.json").read_text())
    for w in windows:
        idx = w["start_frame"] + np.arange(spec.clip_len) * spec.frame_interval
        clip = np.ascontiguousarray(frames[idx, y : y + spec.crop[0], x : x + spec.crop[1]])
        logits = engine.infer(normalize_clip(clip, spec)[None])[0]
        assert w["label"] == labels[int(logits.argmax())]
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert w["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert manifest["target"] == "cpu"


def test_runtime_errors_without_torch(bundle: tuple[Path, Path], tmp_path: Path) -> None:
    _, bundle_dir = bundle
    proc = _run_blocked(bundle_dir, ".", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 2 and "video not found" in proc.stderr
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"\x00" * 2048)
    proc = _run_blocked(bundle_dir, ".", str(garbage))
    assert proc.returncode == 2 and ("unreadable stream" in proc.stderr or "cannot open" in proc.stderr)
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_dir, tampered)
    (tampered / "preprocess.json").write_text((tampered / "preprocess.json").read_text().replace('"clip_len": 4', '"clip_len": 5'))
    proc = _run_blocked(tampered, ".", str(garbage))
    assert proc.returncode == 2 and "sha256 mismatch: preprocess.json" in proc.stderr


@pytest.fixture(scope="module")
def stream_bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("torchfree_stream")
    run = make_stream_run(root / "run")
    cpu = pack_bundle(run, target="cpu", out=root / "cpu").directory
    jetson = pack_bundle(run, target="jetson", precision="fp32", out=root / "jetson").directory
    return run, cpu, jetson


@pytest.mark.parametrize("target", ["cpu", "jetson"])
def test_stream_mode_without_torch_predicts_per_frame(stream_bundles: tuple[Path, Path, Path], target: str,
                                                     tmp_path: Path) -> None:
    """``--stream``: one prediction per model frame (every frame_interval-th decoded frame), the state
    carried; the cpu bundle runs the OpenVINO step IR, the jetson bundle the step ONNX in ONNX
    Runtime. At the T-th model frame the prediction is the clip model's on that window (same
    backend's clip engine, the training pipeline's preprocessing)."""
    run, cpu, jetson = stream_bundles
    bundle_dir = cpu if target == "cpu" else jetson
    video = _noise_video(tmp_path / "noise.avi", 17)
    proc = _run_blocked(bundle_dir, ".", str(video), "--stream")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    frames, summary = lines[:-1], lines[-1]
    spec = PreprocessSpec.load(bundle_dir / "preprocess.json")
    assert [f["frame"] for f in frames] == list(range(0, 17, spec.frame_interval))
    assert [f["window_frames"] for f in frames] == [min(i + 1, spec.clip_len) for i in range(len(frames))]
    assert summary["mode"] == "stream" and summary["steps"] == summary["predictions"] == len(frames)
    assert "through the step model" in proc.stderr
    full = frames[spec.clip_len - 1]
    cached = read_video(video, resize=spec.resize)
    y, x = (spec.resize[0] - spec.crop[0]) // 2, (spec.resize[1] - spec.crop[1]) // 2
    idx = np.arange(spec.clip_len) * spec.frame_interval
    clip = normalize_clip(np.ascontiguousarray(cached[idx, y : y + spec.crop[0], x : x + spec.crop[1]]), spec)[None]
    engine = (OpenVinoEngine(run / "engines/student_kd/openvino_fp32/model.xml") if target == "cpu"
              else OnnxRuntimeEngine(run / "export/student_kd.onnx"))
    logits = engine.infer(clip)[0].astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    labels = json.loads((bundle_dir / "labels.json").read_text())
    assert full["label"] == labels[int(logits.argmax())] and full["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    # --every 3: every third model frame
    proc = _run_blocked(bundle_dir, ".", str(video), "--stream", "--every", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    every = [json.loads(line) for line in proc.stdout.splitlines()][:-1]
    assert [f["prediction"] for f in every] == [0, 1, 2] and [f["step"] for f in every] == [2, 5, 8]
    assert [f["frame"] for f in every] == [f["frame"] for f in frames[2::3]]
    assert [f["score"] for f in every] == [f["score"] for f in frames[2::3]]


def test_stream_mode_on_a_bundle_that_cannot_stream(bundle: tuple[Path, Path], tmp_path: Path) -> None:
    _, bundle_dir = bundle  # the C3D student: no step model
    video = write_video(tmp_path / "clip.avi", 10)
    proc = _run_blocked(bundle_dir, ".", str(video), "--stream")
    assert proc.returncode == 2 and "no streaming step model" in proc.stderr
