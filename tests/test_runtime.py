"""The torch-free runtime's sliding windows, preprocessing parity and errors, on tiny MJPG videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekd.data.decode import read_video
from edgekd.runtime.__main__ import main as runtime_main
from edgekd.runtime.preprocess import PreprocessSpec, normalize_clip, prepare_frame
from edgekd.runtime.stream import (
    SourceError,
    WindowResult,
    classify_capture,
    open_source,
)

H, W, FPS = 30, 40, 25.0
SPEC = PreprocessSpec(clip_len=4, frame_interval=2, resize=(24, 30), crop=(16, 16),
                      mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989))
LABELS = ("a", "b", "c")


def write_video(path: Path, n: int) -> Path:
    """Frame k has its own level plus a colour ramp, so every window's content is distinct."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    assert writer.isOpened()
    yy, xx = np.mgrid[0:H, 0:W]
    for k in range(n):
        frame = np.stack([(8 * k + 3 * xx) % 256, (5 * k + 4 * yy) % 256, (200 - 6 * k + xx + yy) % 256], -1)
        writer.write(frame.astype(np.uint8))
    writer.release()
    return path


class Recorder:
    """A classifier that remembers its inputs and always answers class (window index % 3)."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        logits = np.zeros((1, 3), np.float32)
        logits[0, (len(self.batches) - 1) % 3] = 2.0
        return logits


def reference_clip(frames: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The training pipeline's eval clip: cached (resized) frames, centre crop, normalised."""
    ch, cw = SPEC.crop
    y, x = (SPEC.resize[0] - ch) // 2, (SPEC.resize[1] - cw) // 2
    return normalize_clip(np.ascontiguousarray(frames[indices, y : y + ch, x : x + cw]), SPEC)


def test_windows_match_training_preprocessing_bit_for_bit(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 30)
    rec, seen = Recorder(), []
    timings = classify_capture(open_source(video), SPEC, rec, LABELS, stride=5, on_window=seen.append)
    cached = read_video(video, resize=SPEC.resize)  # what FrameCache stores
    starts = [0, 5, 10, 15, 20]  # span = 7, last start <= 30 - 7
    assert [r.start_frame for r in seen] == starts and [r.end_frame for r in seen] == [s + 6 for s in starts]
    for r, batch in zip(seen, rec.batches):
        assert batch.shape == (1, 3, 4, 16, 16) and batch.dtype == np.float32
        np.testing.assert_array_equal(batch[0], reference_clip(cached, r.start_frame + np.arange(4) * 2))
        assert r.start_s == pytest.approx(r.start_frame / FPS) and r.end_s == pytest.approx((r.end_frame + 1) / FPS)
    assert [r.label for r in seen] == ["a", "b", "c", "a", "b"]
    assert seen[0].score == pytest.approx(np.exp(2) / (np.exp(2) + 2))
    assert (timings.frames, timings.windows) == (30, 5)
    assert min(timings.decode_s, timings.preprocess_s, timings.inference_s) > 0
    assert timings.decode_s + timings.preprocess_s + timings.inference_s <= timings.wall_s * 1.01
    summary = timings.to_json()
    assert summary["fps_end_to_end"] == pytest.approx(30 / timings.wall_s, rel=0.01)
    assert "FPS" in timings.readable() and "decode" in timings.readable()


def test_default_stride_is_one_span_and_max_windows_stops(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 30)
    seen: list[WindowResult] = []
    classify_capture(open_source(video), SPEC, Recorder(), LABELS, on_window=seen.append)
    assert [r.start_frame for r in seen] == [0, 7, 14, 21]
    seen.clear()
    t = classify_capture(open_source(video), SPEC, Recorder(), LABELS, stride=1, max_windows=3, on_window=seen.append)
    assert [r.start_frame for r in seen] == [0, 1, 2] and t.windows == 3
    with pytest.raises(ValueError, match="stride"):
        classify_capture(open_source(video), SPEC, Recorder(), LABELS, stride=0)


def test_short_video_wraps_like_the_eval_clip(tmp_path: Path) -> None:
    video = write_video(tmp_path / "short.avi", 5)  # shorter than one span (7)
    rec, seen = Recorder(), []
    classify_capture(open_source(video), SPEC, rec, LABELS, on_window=seen.append)
    assert len(seen) == 1 and (seen[0].start_frame, seen[0].end_frame) == (0, 4)
    cached = read_video(video, resize=SPEC.resize)
    np.testing.assert_array_equal(rec.batches[0][0], reference_clip(cached, np.array([0, 2, 4, 1])))


def test_prepare_frame_matches_the_frame_cache(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 3)
    cap = cv2.VideoCapture(str(video))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    cached = read_video(video, resize=SPEC.resize)[0]
    np.testing.assert_array_equal(prepare_frame(bgr, SPEC), cached[4:20, 7:23])


def test_bad_sources_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video not found"):
        open_source(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match=r"cannot open|unreadable stream"):
        open_source(garbage)
    with pytest.raises(SourceError, match="camera 97"):
        open_source(camera=97)
    with pytest.raises(ValueError, match="exactly one"):
        open_source(garbage, camera=0)


def test_label_count_mismatch_is_an_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 10)
    with pytest.raises(RuntimeError, match="3 logits, the bundle has 2 labels"):
        classify_capture(open_source(video), SPEC, Recorder(), ("a", "b"))


def test_preprocess_spec_is_validated() -> None:
    assert SPEC.span == 7
    assert PreprocessSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="lacks"):
        PreprocessSpec.from_dict({"clip_len": 4})
    with pytest.raises(ValueError, match="must fit inside"):
        PreprocessSpec(4, 1, (16, 16), (20, 20), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="implements"):
        PreprocessSpec(4, 1, (16, 16), (8, 8), (0, 0, 0), (1, 1, 1), layout="NTHWC")


def test_runtime_cli_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime_main([str(tmp_path)]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert runtime_main([str(tmp_path / "nowhere"), "v.mp4"]) == 2
    assert "bundle not found" in capsys.readouterr().err
