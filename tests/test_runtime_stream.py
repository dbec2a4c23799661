"""The torch-free runtime's streaming mode: the step model fed frame by frame with its state carried
computes the online model's clip logits (ONNX Runtime and OpenVINO), the window slides like
PyTorch's StreamingTSM, predictions come every N model frames, and errors say what is wrong.

Tolerance: everything here is FP32 and the stream does the clip's arithmetic (the shift copies the
same values; per-frame logits are averaged instead of features, equal by linearity), in other
kernels and batch shapes: reassociation, a few ulp on logits of order 1 (measured at most 1.3e-6).
The bound, 1e-4, is the issue's.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _deploy_run import CLASSES, make_stream_run
from test_models_x3d import ramp_clip

from edgekd.data.decode import read_video
from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine
from edgekd.engines.openvino_engine import OpenVinoEngine
from edgekd.models.tsm import StreamingTSM
from edgekd.runtime.__main__ import main as runtime_main
from edgekd.runtime.bundle import Bundle, BundleError
from edgekd.runtime.online import (
    FrameStream,
    StepSpec,
    classify_stream,
    load_step,
    load_stream_backend,
    step_spec_path,
)
from edgekd.runtime.preprocess import PreprocessSpec, normalize_clip
from edgekd.runtime.stream import open_source
from edgekd.train.checkpoint import load_checkpoint

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_stream_run(tmp_path_factory.mktemp("stream") / "run")


def _files(run: Path, backend: str) -> tuple[Path, Path]:
    """(clip model, step model) of ``backend`` in the run."""
    if backend == "openvino":
        return (run / "engines/student_kd/openvino_fp32/model.xml", run / "engines/student_kd/openvino_fp32_stream/model.xml")
    return run / "export/student_kd.onnx", run / "export/student_kd_step.onnx"


def _clip_engine(backend: str, path: Path):
    return OpenVinoEngine(path, threads=1) if backend == "openvino" else OnnxRuntimeEngine(path, threads=1)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_streaming_logits_equal_the_clip_logits(run: Path, backend: str) -> None:
    """T frames streamed from the zero state: after frame i the running mean is the mean of the
    online model's first i+1 per-frame logits, and after frame T-1 it is the clip logits that the
    same backend computes from the clip model on the same frames."""
    model = load_checkpoint(run / "student_kd/ckpt.pt").build()
    clip_file, step_file = _files(run, backend)
    t = model.num_segments
    x = ramp_clip(3, 3, t, *model.input_size[1:])
    clips = x.numpy()
    with torch.no_grad():
        frames = model.forward_frames(x).numpy()
    stream = FrameStream(load_step(backend, step_file, threads=1, batch=3), batch=3)
    for i in range(t):
        mean = stream.push(np.ascontiguousarray(clips[:, :, i]))
        assert stream.window_frames == i + 1
        assert np.abs(mean - frames[:, : i + 1].mean(1)).max() <= TOL
    clip_logits = _clip_engine(backend, clip_file).infer(clips)
    assert np.abs(clip_logits).max() > 0.1  # logits of order 1, not a near-constant answer
    assert np.abs(mean - clip_logits).max() <= TOL
    assert (mean.argmax(1) == clip_logits.argmax(1)).all()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_window_slides_like_pytorchs_streaming_tsm(run: Path, backend: str) -> None:
    """Past T frames the prediction is the mean of the last T per-frame logits, each frame seeing
    the history its state carries: frame for frame what ``StreamingTSM`` predicts."""
    model = load_checkpoint(run / "student_kd/ckpt.pt").build()
    t, (h, w) = model.num_segments, model.input_size[1:]
    x = ramp_clip(1, 3, 2 * t + 3, h, w)
    want = StreamingTSM(model.step_module().eval(), window=t, batch=1, height=h, width=w)
    stream = FrameStream(load_step(backend, _files(run, backend)[1], threads=1))
    for i in range(x.shape[2]):
        got = stream.push(np.ascontiguousarray(x[:, :, i].numpy()))
        assert np.abs(got - want.push(x[:, :, i]).numpy()).max() <= TOL, i
    assert stream.window_frames == t
    stream.reset()
    assert stream.window_frames == 0 and not any(s.any() for s in stream.state)


def _noise_video(path: Path, n: int, size: tuple[int, int] = (40, 30)) -> Path:
    """Random frames: an online model's answer then changes from frame to frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def test_classify_stream_predicts_every_n_model_frames(run: Path, tmp_path: Path) -> None:
    """Model frames are every frame_interval-th decoded frame; a prediction every ``every`` of
    them. The prediction at the T-th model frame is the clip engine's on the first window, whose
    frames the training pipeline's preprocessing gives (read_video, centre crop, normalise)."""
    spec = PreprocessSpec.load(_spec_file(run, tmp_path))
    video = _noise_video(tmp_path / "noise.avi", 21)
    stream = FrameStream(load_step("openvino", _files(run, "openvino")[1], threads=1))
    seen: list = []
    timings = classify_stream(open_source(video), spec, stream, tuple(CLASSES), every=2, on_prediction=seen.append)
    steps = len(range(0, 21, spec.frame_interval))  # 11 model frames
    assert (timings.frames, timings.steps, timings.windows) == (21, steps, steps // 2)
    assert [p.frame for p in seen] == [2 * spec.frame_interval * (k + 1) - spec.frame_interval for k in range(steps // 2)]
    assert [p.window_frames for p in seen] == [min(2 * (k + 1), spec.clip_len) for k in range(steps // 2)]
    summary = timings.to_json()
    assert summary["mode"] == "stream" and summary["steps"] == steps and summary["inference_ms_per_step"] > 0
    # the first full window (T = 4 model frames = decoded 0, 2, 4, 6) against the clip engine
    first_full = next(p for p in seen if p.window_frames == spec.clip_len)
    cached = read_video(video, resize=spec.resize)
    y, x = (spec.resize[0] - spec.crop[0]) // 2, (spec.resize[1] - spec.crop[1]) // 2
    idx = np.arange(spec.clip_len) * spec.frame_interval
    clip = normalize_clip(np.ascontiguousarray(cached[idx, y:y + spec.crop[0], x:x + spec.crop[1]]), spec)[None]
    logits = _clip_engine("openvino", _files(run, "openvino")[0]).infer(clip)[0].astype(np.float64)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert first_full.frame == idx[-1] and first_full.label == CLASSES[int(logits.argmax())]
    assert first_full.score == pytest.approx(float(probs.max()), abs=1e-5)
    assert len({p.score for p in seen}) > 1  # the answer moves with the frames
    with pytest.raises(ValueError, match="--every"):
        classify_stream(open_source(video), spec, stream, tuple(CLASSES), every=0)


def _spec_file(run: Path, tmp_path: Path) -> Path:
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps(load_checkpoint(run / "student_kd/ckpt.pt").input_spec))
    return path


def test_step_spec_and_stream_errors(run: Path, tmp_path: Path) -> None:
    step_file = _files(run, "onnxruntime")[1]
    spec = StepSpec.load(step_spec_path(step_file))
    assert (spec.frame, spec.logits, spec.window, len(spec.state)) == ("frame", "logits", 4, 10)
    assert spec.state[0].input == "shift_in_0" and spec.state[0].output == "shift_out_0"
    assert StepSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="format"):
        StepSpec.from_dict({**spec.to_dict(), "format": "other"})
    # a spec that names other tensors than the graph's is refused when the runner opens
    wrong = spec.to_dict()
    wrong["state"][0]["input"] = "shift_in_x"
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    for backend, model in (("onnxruntime", step_file), ("openvino", _files(run, "openvino")[1])):
        with pytest.raises(BundleError, match="do not match its step spec"):
            load_step(backend, model, StepSpec.load(tmp_path / "wrong.json"))
    stream = FrameStream(load_step("onnxruntime", step_file))
    with pytest.raises(ValueError, match="float32 frame batch"):
        stream.push(np.zeros((1, 3, 8, 8), np.float32))
    spec_file = _spec_file(run, tmp_path)
    bundle = Bundle(tmp_path, {"stream_missing": "add openvino_fp32_stream to engines.build"},
                    PreprocessSpec.load(spec_file), tuple(CLASSES))
    with pytest.raises(BundleError, match="no streaming step model: add openvino_fp32_stream"):
        load_stream_backend(bundle)
    with pytest.raises(BundleError, match="online model"):
        load_stream_backend(Bundle(tmp_path, {}, bundle.spec, bundle.labels))


def test_runtime_cli_refuses_stride_with_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime_main([str(tmp_path), "v.mp4", "--stream", "--stride", "4"]) == 2
    assert "--stride is for windows" in capsys.readouterr().err
