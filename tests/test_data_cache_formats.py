"""The frame cache's formats: raw round trips exactly and keeps its old keys; packed JPEG/WebP files
read by frame index give exactly what a full decode gives at those indices; JPEG's error stays within
what its quantisation steps allow; entries are atomic and keyed by format and quality; flow and clips
read from packed entries."""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _video import write_mjpg

import edgekd.data.cache as cache_mod
from edgekd.data.cache import CACHE_FORMAT_VERSION, FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, frame_indices
from edgekd.data.flow import FlowCache
from edgekd.data.formats import (
    CACHE_FORMAT_NAMES,
    CACHE_FORMATS,
    PackedFrames,
    decode_image,
    encode_image,
    get_format,
    open_packed,
    pack_frames,
)
from edgekd.data.splits import DatasetSplit, VideoItem
from edgekd.recipe import CacheFormatName, RecipeError, parse_recipe

torch.set_num_threads(1)
H, W, N = 24, 40, 12
# JPEG Annex K luminance quantisation table (what libjpeg scales by quality)
LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def luma_steps(quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_set_quality``: the table scaled by 5000/q (q < 50) or 200 - 2q, rounded, >= 1."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((LUMA * scale + 50) // 100, 1, 255)


def textured_frames(n: int = N, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture drifting one pixel a frame: like video, every frame distinct."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.integers(0, 256, (H, W + n, 3)).astype(np.float32), (0, 0), 2.0)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.stack([big[:, k : k + W] for k in range(n)])


def write_video(path: Path, frames_rgb: np.ndarray) -> Path:
    return write_mjpg(path, frames_rgb)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "videos" / "a" / "v_a_g01_c01.avi", textured_frames())


# ---------------------------------------------------------------- the table


def test_recipe_literal_lists_the_table_and_bad_values_are_named() -> None:
    assert CacheFormatName.__args__ == CACHE_FORMAT_NAMES  # type: ignore[attr-defined]
    assert [f.lossless for f in CACHE_FORMATS] == [f.name == "raw" for f in CACHE_FORMATS]
    assert parse_recipe({"name": "t"}).data.cache_format == "webp"
    with pytest.raises(ValueError, match="did you mean 'webp'"):
        get_format("wepb")
    with pytest.raises(RecipeError) as info:
        parse_recipe({"name": "t", "data": {"cache_format": "raw", "cache_quality": 80}})
    assert "data.cache_quality: only used with a lossy data.cache_format (jpeg, webp), got 'raw'" in str(info.value)
    with pytest.raises(RecipeError, match=r"data.cache_quality: must be in 1..100 or null, got 0"):
        parse_recipe({"name": "t", "data": {"cache_quality": 0}})
    with pytest.raises(RecipeError, match="data.cache_format"):
        parse_recipe({"name": "t", "data": {"cache_format": "png"}})
    with pytest.raises(ValueError, match="takes no quality"):
        FrameCache("c", resize=(H, W), format="raw", quality=90)
    cache = pickle.loads(pickle.dumps(FrameCache("c", resize=(H, W), format="webp", quality=80)))  # spawned workers
    assert cache.format is get_format("webp") and cache.quality == 80


# ---------------------------------------------------------------- raw


def test_raw_round_trips_exactly_and_keeps_the_old_key(tmp_path: Path, video: Path) -> None:
    cache = FrameCache(tmp_path / "cache", resize=(H, W))
    frames = cache.get(video)
    assert isinstance(frames, np.memmap)
    np.testing.assert_array_equal(frames, cache_mod.read_video(video, resize=(H, W)))
    src = video.resolve()
    st = src.stat()
    old = hashlib.sha1(json.dumps([str(src), st.st_size, st.st_mtime_ns, [H, W], CACHE_FORMAT_VERSION])
                       .encode("utf-8")).hexdigest()
    assert cache.entry_path(video) == tmp_path / "cache" / old[:2] / f"{src.stem}-{old}.npy"  # raw caches stay valid


def test_keys_hold_format_and_quality(tmp_path: Path, video: Path) -> None:
    paths = {FrameCache(tmp_path, resize=(H, W), format=f, quality=q).entry_path(video)
             for f, q in (("raw", None), ("jpeg", None), ("jpeg", 90), ("jpeg", 80), ("webp", None), ("webp", 80))}
    assert len(paths) == 5  # jpeg default == jpeg 90; every other pair has its own entry
    assert FrameCache(tmp_path, resize=(H, W), format="webp").entry_path(video).name.endswith(".webp.pack")


# ---------------------------------------------------------------- packed files


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_index_reads_equal_a_full_decode(tmp_path: Path, video: Path, fmt: str) -> None:
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format=fmt)
    frames = cache.get(video)
    assert isinstance(frames, PackedFrames) and frames.shape == (N, H, W, 3) and len(frames) == N
    full = np.asarray(frames)
    assert full.shape == (N, H, W, 3) and full.dtype == np.uint8
    idx = np.array([5, 5, 0, 11, 3])  # repeats: a short video's clip loops
    np.testing.assert_array_equal(frames[idx, 2:20, 7:31], full[idx, 2:20, 7:31])
    np.testing.assert_array_equal(frames[-1], full[-1])
    np.testing.assert_array_equal(frames[3:9:2, :, ::-1], full[3:9:2, :, ::-1])
    np.testing.assert_array_equal(frames[..., 1], full[..., 1])
    np.testing.assert_array_equal(frames[full.mean(axis=(1, 2, 3)) > full.mean()], full[full.mean(axis=(1, 2, 3)) > full.mean()])
    with pytest.raises(IndexError):
        frames[N]
    with pytest.raises(IndexError):
        frames[np.array([0, N])]
    # what the file holds is each frame coded alone, decoded the same whoever decodes it
    for k in (0, 7):
        blob = encode_image(get_format(fmt), cache_mod.read_video(video, resize=(H, W))[k], 90)
        np.testing.assert_array_equal(full[k], decode_image(get_format(fmt), blob, grey=False))


def test_jpeg_flat_blocks_are_exact_to_the_dc_step() -> None:
    """A grey image constant on every 8x8 block has only DC coefficients. The DC (8 x the block
    mean) is quantised with step s, so each pixel is off by at most s / 16 before the decoder's
    rounding: |error| <= floor(s / 16 + 0.5). s = 3 at quality 90 (exact), 16 at 50, 80 at 10."""
    rng = np.random.default_rng(1)
    img = np.kron(rng.integers(0, 256, (5, 7)), np.ones((8, 8))).astype(np.uint8)
    fmt = get_format("jpeg")
    for q in (10, 50, 75, 90, 95):
        back = decode_image(fmt, encode_image(fmt, img, q), grey=True)
        step = int(luma_steps(q)[0])
        assert np.abs(back.astype(int) - img).max() <= int(step / 16 + 0.5), (q, step)


def test_jpeg_error_within_the_quantisation_bound() -> None:
    """Any grey content: each DCT coefficient is rounded to its step d_k (error <= d_k / 2) and the
    DCT is orthonormal, so a block's RMS pixel error is at most sqrt(mean(d_k^2) / 4), plus 0.5 for
    rounding to uint8. At quality 90 the bound is 7.2 levels; noise (every coefficient large, the
    worst case for JPEG) stays under it, and the error grows as the quality drops."""
    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 96)).astype(np.uint8), (0, 0), 0.7)
    fmt = get_format("jpeg")
    rms = {}
    for q in (50, 75, 90, 95):
        back = decode_image(fmt, encode_image(fmt, img, q), grey=True)
        rms[q] = float(np.sqrt(((back.astype(float) - img) ** 2).mean()))
        bound = float(np.sqrt((luma_steps(q).astype(float) ** 2).mean() / 4)) + 0.5
        assert rms[q] <= bound, (q, rms[q], bound)
    assert rms[50] > rms[75] > rms[90] > rms[95]


def test_webp_error_falls_with_quality(tmp_path: Path, video: Path) -> None:
    """VP8 has no closed-form quality-to-step rule like JPEG's; what holds is the order, and that its
    error on real clips is reported by the benchmark (benchmarks/bench_input_pipeline.py)."""
    raw = cache_mod.read_video(video, resize=(H, W)).astype(float)
    err = {q: np.abs(np.asarray(FrameCache(tmp_path / "c", resize=(H, W), format="webp", quality=q).get(video)) - raw)
           .mean() for q in (30, 60, 95)}
    assert err[30] > err[60] > err[95]


def test_packed_file_layout_and_damage_is_a_miss(tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format="jpeg")
    frames = cache.get(video)
    entry = cache.entry_path(video)
    blob = entry.read_bytes()
    assert blob[:8] == b"EKDPACK1"
    header = json.loads(blob[12 : 12 + int.from_bytes(blob[8:12], "little")])
    assert header == {"codec": "jpeg", "quality": 90, "shape": [N, H, W, 3], "images_per_frame": 1}
    assert open_packed(entry) is not None and frames.quality == 90
    expected = np.asarray(frames)  # (before the file under this mapping is damaged in place below)
    calls: list[str] = []
    real = cache_mod.read_video
    monkeypatch.setattr(cache_mod, "read_video", lambda p, **kw: calls.append(str(p)) or real(p, **kw))
    for damaged in (blob[: len(blob) - 5], b"EKDPACK2" + blob[8:], blob[:20], b""):
        entry.write_bytes(damaged)  # a truncated copy, a foreign file, an empty file
        assert open_packed(entry) is None
        np.testing.assert_array_equal(np.asarray(cache.get(video)), expected)  # decoded again
    assert len(calls) == 4 and entry.read_bytes() == blob


def test_concurrent_writers_only_waste_work(tmp_path: Path, video: Path) -> None:
    """Several writers of one entry (threads here; DataLoader workers or nodes on a shared
    filesystem alike): each writes a temporary file beside the entry and renames it, so all read
    identical frames and no temporary file is left."""
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format="webp")
    barrier = threading.Barrier(4)
    results: list[np.ndarray] = []

    def worker() -> None:
        barrier.wait()
        results.append(np.asarray(FrameCache(cache.cache_dir, resize=(H, W), format="webp").get(video)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(np.array_equal(r, results[0]) for r in results)
    assert [p.name for p in cache.entry_path(video).parent.iterdir()] == [cache.entry_path(video).name]


def test_a_failed_write_leaves_no_entry(tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.data import formats

    cache = FrameCache(tmp_path / "cache", resize=(H, W), format="jpeg")

    def fail(*a: object, **k: object) -> bytes:
        raise OSError("No space left on device")

    monkeypatch.setattr(formats, "pack_frames", fail)
    assert cache.warm([video], progress=False) == [(video, "OSError: No space left on device")]
    assert not cache.is_cached(video) and not list((tmp_path / "cache").rglob("*.pack*"))


def test_grey_planes_pack_as_one_image_each() -> None:
    rng = np.random.default_rng(3)
    flow = np.kron(rng.integers(0, 256, (N, 3, 5, 2)), np.ones((1, 8, 8, 1))).astype(np.uint8)
    for name in ("jpeg", "webp"):
        fmt = get_format(name)
        blob = pack_frames(flow, fmt, 90)
        header = json.loads(blob[12 : 12 + int.from_bytes(blob[8:12], "little")])
        assert header["images_per_frame"] == 2 and header["shape"] == [N, 24, 40, 2]


# ---------------------------------------------------------------- flow and clips on packed entries


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_flow_is_cached_in_the_frame_format(tmp_path: Path, video: Path, fmt: str) -> None:
    frames = FrameCache(tmp_path / "cache", resize=(H, W), format=fmt)
    fc = FlowCache(frames, "farneback")
    failures, stats = fc.warm([video], progress=False)
    assert failures == [] and stats["frame_pairs"] == N - 1
    flow = fc.get(video)
    assert isinstance(flow, PackedFrames) and flow.shape == (N, H, W, 2)
    assert fc.entry_path(video).name == frames.entry_path(video).name
    full = np.asarray(flow)
    np.testing.assert_array_equal(flow[np.array([2, 2, 9]), 4:20], full[np.array([2, 2, 9]), 4:20])
    from edgekd.data.flow import compute_flow

    code = compute_flow(np.asarray(frames.get(video)), "farneback")  # what was stored, before coding
    assert np.abs(full.astype(int) - code).mean() < 2.0  # ~0.3 px; the benchmark reports real clips


def test_clips_from_a_packed_cache_are_its_decoded_frames(tmp_path: Path, video: Path) -> None:
    split = DatasetSplit(video.parent.parent, ["a"], [VideoItem("a/" + video.name, 0)], [],
                         [VideoItem("a/" + video.name, 0)], "test")
    cache = FrameCache(tmp_path / "cache", resize=(H, W), format="webp")
    spec = ClipSpec(clip_len=4, frame_interval=2, crop=(16, 16))
    full = np.asarray(cache.get(video))
    ev = ClipDataset(split, "test", cache, spec, train=False)
    n = full.shape[0]
    start = max(0, n - spec.span) // 2
    y, x = (H - 16) // 2, (W - 16) // 2
    np.testing.assert_array_equal(ev.raw_clip(0), full[frame_indices(n, start, spec), y : y + 16, x : x + 16])
    tr = ClipDataset(split, "train", cache, spec, train=True, hflip=False, aug_variants=1)
    clip, label = tr.variant_item(0, 0)
    assert clip.shape == (3, 4, 16, 16) and label == 0
    windows = [full[frame_indices(n, s, spec), yy : yy + 16, xx : xx + 16]
               for s in range(n) for yy in range(H - 15) for xx in range(W - 15)]
    raw = tr._train_sample(0, np.random.default_rng([0, 0, 0]))[0]
    assert any(np.array_equal(raw, w) for w in windows)  # a crop of the decoded frames, nothing else
