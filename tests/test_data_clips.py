"""Frame cache and clip sampling, checked on tiny MJPG videos whose frames are identifiable."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import edgekd.data.cache as cache_mod
from edgekd.data.cache import FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, make_loader, normalize_clip
from edgekd.data.splits import DatasetSplit, VideoItem

H, W = 48, 64


def write_coded_avi(path: Path, n: int) -> Path:
    """Frame k: level ``10 + 4k`` plus a quadratic ramp in x and y.

    Every frame, every crop window and every mirror image is then distinct, so clip frames can be
    identified exactly (by equality with the cached frames) to check sampling, crops and flips.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    assert writer.isOpened()
    yy, xx = np.mgrid[0:H, 0:W]
    ramp = (xx * xx) // 40 + (yy * yy) // 40
    for k in range(n):
        level = (10 + 4 * k + ramp).clip(0, 255).astype(np.uint8)
        writer.write(np.repeat(level[:, :, None], 3, axis=2))
    writer.release()
    return path


def make_split(root: Path, lengths: dict[str, int]) -> DatasetSplit:
    items = [VideoItem(f"c{i}/{name}.avi", i) for i, name in enumerate(lengths)]
    for it, n in zip(items, lengths.values()):
        write_coded_avi(root / it.rel, n)
    return DatasetSplit(root, [f"c{i}" for i in range(len(items))], items, [], items, "test videos")


@pytest.fixture()
def env(tmp_path: Path) -> tuple[DatasetSplit, FrameCache]:
    split = make_split(tmp_path / "videos", {"long": 20, "short": 5, "mid": 12})
    return split, FrameCache(tmp_path / "cache", resize=(H, W))


def which_frames(clip: np.ndarray, frames: np.ndarray, box: tuple[int, int]) -> list[int]:
    """Identify each clip frame by exact equality with a cropped cached frame."""
    y, x = box
    h, w = clip.shape[1:3]
    out = []
    for f in clip:
        hits = [k for k in range(len(frames)) if np.array_equal(frames[k, y : y + h, x : x + w], f)]
        assert len(hits) == 1, hits
        out.append(hits[0])
    return out


# ---------------------------------------------------------------- cache


def test_cache_decodes_once_and_memory_maps(env, monkeypatch: pytest.MonkeyPatch) -> None:
    split, cache = env
    calls: list[str] = []
    real = cache_mod.read_video
    monkeypatch.setattr(cache_mod, "read_video", lambda p, **kw: calls.append(str(p)) or real(p, **kw))
    path = split.path(split.train[0])
    first = cache.get(path)
    second = FrameCache(cache.cache_dir, resize=(H, W)).get(path)
    assert len(calls) == 1
    assert isinstance(second, np.memmap) and second.dtype == np.uint8 and second.shape == (20, H, W, 3)
    np.testing.assert_array_equal(first, second)
    assert not second.flags.writeable
    # A changed file (new mtime) is a new cache entry, not stale frames.
    os.utime(path, ns=(1, 1))
    cache.get(path)
    assert len(calls) == 2
    # A different storage size is a different entry too.
    assert FrameCache(cache.cache_dir, resize=(24, 32)).get(path).shape == (20, 24, 32, 3)


@pytest.mark.parametrize("workers", [0, 2])
def test_warm_reports_every_failure(env, tmp_path: Path, workers: int) -> None:
    split, cache = env
    empty = tmp_path / "bad" / "empty.avi"
    garbage = tmp_path / "bad" / "garbage.avi"
    empty.parent.mkdir()
    empty.touch()
    garbage.write_bytes(b"\x00garbage" * 100)
    good = [split.path(it) for it in split.train]
    failures = cache.warm([good[0], empty, good[1], garbage, good[2]], workers=workers, progress=False)
    assert [p for p, _ in failures] == [empty, garbage]
    assert "0 bytes" in failures[0][1] and failures[1][1]
    assert all(cache.is_cached(p) for p in good)
    assert cache.warm(good, workers=workers, progress=False) == []


# ---------------------------------------------------------------- clips


def test_eval_shape_normalisation_and_centre_crop(env) -> None:
    split, cache = env
    spec = ClipSpec(clip_len=8, crop=(32, 40))
    ds = ClipDataset(split, "test", cache, spec, train=False)
    clip, label = ds[0]
    assert (clip.shape, clip.dtype, label) == ((3, 8, 32, 40), torch.float32, 0)
    raw = ds.raw_clip(0)
    frames = cache.get(split.path(split.test[0]))
    y, x = (H - 32) // 2, (W - 40) // 2
    start = (20 - 8) // 2  # centred in time
    np.testing.assert_array_equal(raw, frames[start : start + 8, y : y + 32, x : x + 40])
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    expected = (torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(clip, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(normalize_clip(raw, spec), clip.numpy())
    torch.testing.assert_close(ds[0][0], clip, rtol=0, atol=0)  # eval is deterministic


def test_normalize_clip_matches_formula_for_every_level() -> None:
    spec = ClipSpec(mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    levels = np.arange(256, dtype=np.uint8)
    frames = np.stack([levels, levels[::-1], np.roll(levels, 7)], axis=-1).reshape(4, 8, 8, 3)
    x = frames.astype(np.float32) / np.float32(255)
    expected = ((x - np.float32(spec.mean)) / np.float32(spec.std)).transpose(3, 0, 1, 2)
    out = normalize_clip(frames, spec)
    assert out.shape == (3, 4, 8, 8) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="uint8"):
        normalize_clip(frames.astype(np.float32), spec)


def test_short_video_loops(env) -> None:
    split, cache = env
    ds = ClipDataset(split, "test", cache, ClipSpec(clip_len=12, crop=(H, W)), train=False)
    frames = cache.get(split.path(split.test[1]))
    assert which_frames(ds.raw_clip(1), frames, (0, 0)) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_frame_interval_and_k_clips(env) -> None:
    split, cache = env
    spec = ClipSpec(clip_len=4, frame_interval=3, crop=(H, W))  # span 10
    frames = cache.get(split.path(split.test[0]))  # 20 frames, max start 10
    one = ClipDataset(split, "test", cache, spec, train=False)
    assert which_frames(one.raw_clip(0), frames, (0, 0)) == [5, 8, 11, 14]
    three = ClipDataset(split, "test", cache, spec, train=False, clips_per_video=3)
    clips, _ = three[0]
    assert clips.shape == (3, 3, 4, H, W)
    raw = three.raw_clip(0)
    assert [which_frames(c, frames, (0, 0)) for c in raw] == [[0, 3, 6, 9], [5, 8, 11, 14], [10, 13, 16, 19]]
    np.testing.assert_array_equal(normalize_clip(raw[2], spec), clips[2].numpy())


def test_train_sampling_reproducible_and_valid(env) -> None:
    split, cache = env
    spec = ClipSpec(clip_len=4, frame_interval=2, crop=(H, W))
    ds = ClipDataset(split, "train", cache, spec, train=True)
    frames = cache.get(split.path(split.train[0]))
    torch.manual_seed(123)
    first = [ds[0][0] for _ in range(40)]
    torch.manual_seed(123)
    again = [ds[0][0] for _ in range(40)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    flips, starts = set(), set()
    for _ in range(40):
        raw = ds._train_clip(0)
        flipped = not any(np.array_equal(raw[0], frames[k]) for k in range(20))
        ids = which_frames(raw[:, :, ::-1] if flipped else raw, frames, (0, 0))
        assert ids == [ids[0] + 2 * j for j in range(4)] and ids[0] <= 20 - 7
        flips.add(flipped)
        starts.add(ids[0])
    assert flips == {False, True}
    assert len(starts) > 3


def test_train_random_crop_within_frame(env) -> None:
    split, cache = env
    ds = ClipDataset(split, "train", cache, ClipSpec(clip_len=2, crop=(32, 32)), train=True, hflip=False)
    torch.manual_seed(0)
    frames = cache.get(split.path(split.train[2]))
    boxes = set()
    for _ in range(8):
        raw = ds._train_clip(2)
        assert raw.shape == (2, 32, 32, 3)
        hits = [(k, y, x) for k in range(len(frames)) for y in range(H - 31) for x in range(W - 31)
                if np.array_equal(frames[k, y : y + 32, x : x + 32], raw[0])]
        assert len(hits) == 1, f"train crop is not a unique window of the cached frames: {hits}"
        k, y, x = hits[0]
        np.testing.assert_array_equal(raw[1], frames[(k + 1) % len(frames), y : y + 32, x : x + 32])
        boxes.add((y, x))
    assert len(boxes) > 3


def test_bad_options_rejected(env) -> None:
    split, cache = env
    with pytest.raises(ValueError, match="larger than the cached frame size"):
        ClipDataset(split, "test", cache, ClipSpec(crop=(112, 112)), train=False)
    with pytest.raises(ValueError, match="evaluation option"):
        ClipDataset(split, "train", cache, ClipSpec(crop=(32, 32)), train=True, clips_per_video=2)


def test_loader_with_workers_is_reproducible(env) -> None:
    split, cache = env
    cache.warm([split.path(it) for it in split.train], progress=False)
    ds = ClipDataset(split, "train", cache, ClipSpec(clip_len=4, crop=(32, 32)), train=True)

    def epoch(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = make_loader(ds, batch_size=2, shuffle=True, workers=2, seed=seed)
        return [(x, y) for x, y in loader]

    a, b, c = epoch(7), epoch(7), epoch(8)
    assert [x.shape for x, _ in a] == [(2, 3, 4, 32, 32), (1, 3, 4, 32, 32)]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
