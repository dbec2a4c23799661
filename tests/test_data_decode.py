"""Decoding: frame count, shape, RGB order, resize, and clear errors for broken files."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekd.data.decode import VideoDecodeError, read_video

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def write_avi(path: Path, frames_bgr: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write BGR uint8 frames as an MJPG .avi (the codec every OpenCV build can write)."""
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), f"cv2 cannot write MJPG to {path}"
    for f in frames_bgr:
        writer.write(f)
    writer.release()
    return path


def coded_frames(n: int = 20, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Grey frames whose level encodes the frame index: frame k is ``20 + 8k`` everywhere."""
    return [np.full((h, w, 3), 20 + 8 * k, np.uint8) for k in range(n)]


def test_frame_count_shape_and_brightness_order(tmp_path: Path) -> None:
    video = read_video(write_avi(tmp_path / "coded.avi", coded_frames()))
    assert video.shape == (20, 48, 64, 3)
    assert video.dtype == np.uint8
    codes = np.rint((video.reshape(20, -1).mean(axis=1) - 20) / 8).astype(int)
    assert codes.tolist() == list(range(20))


def test_rgb_order(tmp_path: Path) -> None:
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[:] = (200, 100, 30)  # B, G, R as OpenCV stores it
    video = read_video(write_avi(tmp_path / "color.avi", [bgr] * 3))
    mean_rgb = video.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mean_rgb, [30, 100, 200], atol=6)


def test_resize_is_height_width(tmp_path: Path) -> None:
    video = read_video(write_avi(tmp_path / "coded.avi", coded_frames(5)), resize=(24, 40))
    assert video.shape == (5, 24, 40, 3)
    # INTER_AREA on a flat frame keeps its level.
    assert abs(float(video[4].mean()) - (20 + 8 * 4)) < 3


def test_bad_resize_rejected(tmp_path: Path) -> None:
    path = write_avi(tmp_path / "coded.avi", coded_frames(2))
    with pytest.raises(ValueError, match="resize"):
        read_video(path, resize=(0, 10))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.avi", None, "not found"),
        ("empty.avi", b"", "0 bytes"),
        ("garbage.avi", b"this is not a video at all " * 40, ""),
    ],
)
def test_errors_name_path_and_reason(tmp_path: Path, name: str, content: bytes | None, reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoDecodeError) as info:
        read_video(path)
    err = info.value
    assert err.path == path
    assert err.reason  # always a human reason
    assert reason in err.reason
    assert str(err) == f"cannot decode {path}: {err.reason}"


def test_error_is_picklable() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(VideoDecodeError("/x/y.avi", "boom")))
    assert (err.path, err.reason, str(err)) == (Path("/x/y.avi"), "boom", "cannot decode /x/y.avi: boom")


def _real_clips(suffix: str) -> list[tuple[Path, int, int, int]]:
    index = REAL / "index.csv"
    if not index.is_file():
        pytest.skip(f"shared real data not present at {REAL}")
    with index.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == "ucf101" and r["path"].endswith(suffix)]
    rows = [r for r in rows if (REAL / r["path"]).is_file()]
    if not rows:
        pytest.skip(f"no local ucf101 {suffix} clip under {REAL}")
    return [(REAL / r["path"], int(r["frames"]), int(r["height"]), int(r["width"])) for r in rows]


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_real_ucf101_clip(suffix: str) -> None:
    path, frames, height, width = _real_clips(suffix)[0]
    video = read_video(path)
    assert video.shape == (frames, height, width, 3)
    assert video.dtype == np.uint8
    assert 10 < float(video.mean()) < 245  # real content, not a black/blank decode
    small = read_video(path, resize=(64, 86))
    assert small.shape == (frames, 64, 86, 3)
