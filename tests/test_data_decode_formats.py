"""Robust decoding: avi, mp4, mkv and GIF; variable fps and resolution; truncated, zero-byte, garbage."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekd.data.cache import FrameCache
from edgekd.data.decode import VideoDecodeError, read_video

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def coded_bgr(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frame k is grey level ``20 + 8k`` everywhere (identifies frame order after decoding)."""
    return [np.full((h, w, 3), 20 + 8 * k, np.uint8) for k in range(n)]


def write(path: Path, frames: list[np.ndarray], fourcc: str, fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"this OpenCV build cannot write {fourcc} to {path.suffix}"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def write_gif(path: Path, frames: list[np.ndarray]) -> Path:
    anim = cv2.Animation()
    anim.frames = frames
    anim.durations = [40] * len(frames)
    assert cv2.imwriteanimation(str(path), anim)
    return path


def frame_codes(video: np.ndarray) -> list[int]:
    return np.rint((video.reshape(len(video), -1).mean(axis=1) - 20) / 8).astype(int).tolist()


@pytest.mark.parametrize(("name", "fourcc"), [("a.avi", "MJPG"), ("b.mp4", "mp4v"), ("c.mkv", "MJPG"),
                                              ("d.avi", "XVID"), ("e.gif", None)])
def test_containers_decode_every_frame_in_order(tmp_path: Path, name: str, fourcc: str | None) -> None:
    frames = coded_bgr(12)
    path = write_gif(tmp_path / name, frames) if fourcc is None else write(tmp_path / name, frames, fourcc)
    video = read_video(path)
    assert video.shape == (12, 48, 64, 3) and video.dtype == np.uint8
    assert frame_codes(video) == list(range(12))


def test_variable_fps_and_resolution_share_one_cache_size(tmp_path: Path) -> None:
    a = write(tmp_path / "small_slow.avi", coded_bgr(8, 36, 48), "MJPG", fps=7.5)
    b = write(tmp_path / "big_fast.mp4", coded_bgr(10, 96, 128), "mp4v", fps=59.94)
    cache = FrameCache(tmp_path / "cache", resize=(24, 32))
    assert cache.warm([a, b], progress=False) == []
    fa, fb = cache.get(a), cache.get(b)
    assert fa.shape == (8, 24, 32, 3) and fb.shape == (10, 24, 32, 3)
    assert frame_codes(np.asarray(fa)) == list(range(8)) and frame_codes(np.asarray(fb)) == list(range(10))


def test_truncated_files_are_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(40)]  # incompressible: big frames
    for name, fourcc in (("t.avi", "MJPG"), ("t.mp4", "mp4v")):
        full = write(tmp_path / name, frames, fourcc)
        data = full.read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(VideoDecodeError) as info:
            read_video(cut)
        assert info.value.path == cut and info.value.reason


def test_truncated_avi_reason_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(40)]
    data = write(tmp_path / "t.avi", frames, "MJPG").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match=r"truncated: decoded \d+ of the 40 frames"):
        read_video(tmp_path / "cut.avi")


def test_warm_lists_every_bad_file_with_reason(tmp_path: Path) -> None:
    good = write(tmp_path / "good.avi", coded_bgr(5), "MJPG")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"junk" * 200)  # EBML magic, then nothing valid
    (tmp_path / "dir.avi").mkdir()
    paths = [tmp_path / n for n in ("empty.mp4", "good.avi", "junk.mkv", "dir.avi", "missing.gif")]
    failures = FrameCache(tmp_path / "cache", resize=(24, 32)).warm(paths, progress=False)
    assert [p.name for p, _ in failures] == ["empty.mp4", "junk.mkv", "dir.avi", "missing.gif"]
    reasons = {p.name: r for p, r in failures}
    assert "0 bytes" in reasons["empty.mp4"] and "not a regular file" in reasons["dir.avi"]
    assert "not found" in reasons["missing.gif"] and reasons["junk.mkv"]
    assert good.is_file()


def _real_rows(dataset: str, suffix: str) -> list[dict[str, str]]:
    index = REAL / "index.csv"
    if not index.is_file():
        pytest.skip(f"shared real data not present at {REAL}")
    with index.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dataset"] == dataset and r["path"].endswith(suffix)]
    rows = [r for r in rows if (REAL / r["path"]).is_file()]
    if not rows:
        pytest.skip(f"no local {dataset} {suffix} clip under {REAL}")
    return rows


@pytest.mark.parametrize(("dataset", "suffix"), [("ucf101", ".gif"), ("hmdb51", ".avi"), ("kinetics400", ".mkv")])
def test_real_formats_decode_with_indexed_frame_count(dataset: str, suffix: str) -> None:
    row = _real_rows(dataset, suffix)[0]
    video = read_video(REAL / row["path"], resize=(64, 80))
    assert video.shape == (int(row["frames"]), 64, 80, 3)
    assert 5 < float(video.mean()) < 250
