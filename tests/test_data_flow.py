"""Optical flow: the [-20, 20] -> uint8 code, motion recovered by TV-L1/Farneback, the on-disk cache,
and flow clips aligned with RGB clips (same frames, crop and flip)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _video import write_mjpg

from edgekd.data.augment import draw_clip
from edgekd.data.cache import FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, frame_indices
from edgekd.data.decode import VideoDecodeError
from edgekd.data.flow import FlowCache, compute_flow, flow_from_uint8, flow_to_uint8
from edgekd.data.splits import DatasetSplit, VideoItem

H, W = 40, 48


def shifting_frames(n: int = 6, dx: int = 2, seed: int = 0) -> np.ndarray:
    """A smooth random texture moving ``dx`` pixels right per frame (RGB uint8)."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.integers(0, 256, (H, W + dx * n + 8)).astype(np.float32), (0, 0), 2.0)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    frames = [big[:, (dx * n) - dx * k : (dx * n) - dx * k + W] for k in range(n)]  # content moves +x
    return np.stack([np.repeat(f[:, :, None], 3, axis=2) for f in frames])


def write_avi(path: Path, frames_rgb: np.ndarray) -> Path:
    return write_mjpg(path, frames_rgb)


def test_code_maps_bounds_and_round_trips() -> None:
    flow = np.array([-50.0, -20.0, -10.0, 0.0, 10.0, 20.0, 33.0], np.float32)
    code = flow_to_uint8(flow)
    assert code.dtype == np.uint8 and code.tolist() == [0, 0, 64, 128, 191, 255, 255]
    back = flow_from_uint8(code)
    np.testing.assert_allclose(back[1:-1], np.clip(flow, -20, 20)[1:-1], atol=40 / 255 / 2 + 1e-4)


@pytest.mark.parametrize("method", ["farneback", "tvl1"])
def test_flow_recovers_translation(method: str) -> None:
    frames = shifting_frames(dx=2)
    code = compute_flow(frames, method)
    assert code.shape == (6, H, W, 2) and code.dtype == np.uint8
    np.testing.assert_array_equal(code[-1], code[-2])  # last frame repeats the last pair
    inner = flow_from_uint8(code[:-1, 8:-8, 10:-10])
    assert abs(float(np.median(inner[..., 0])) - 2.0) < 0.35
    assert abs(float(np.median(inner[..., 1]))) < 0.35


def test_flow_cache_stores_maps_and_invalidates(tmp_path: Path) -> None:
    video = write_avi(tmp_path / "v" / "a.avi", shifting_frames())
    frames = FrameCache(tmp_path / "cache", resize=(H, W))
    fc = FlowCache(frames, "farneback")
    with pytest.raises(VideoDecodeError, match="not cached"):
        fc.get(video)
    failures, stats = fc.warm([video, tmp_path / "v" / "gone.avi"])
    assert [(p.name, "not found" in r) for p, r in failures] == [("gone.avi", True)]
    assert stats["videos_computed"] == 1 and stats["frame_pairs"] == 5 and stats["ms_per_pair"] > 0
    flow = fc.get(video)
    assert isinstance(flow, np.memmap) and flow.shape == (6, H, W, 2) and not flow.flags.writeable
    assert fc.entry_path(video).parent.parent == tmp_path / "cache" / "flow-farneback-v1"
    assert not list(fc.entry_path(video).parent.glob(".*"))  # atomic write left no temp file
    again, stats2 = fc.warm([video])
    assert again == [] and stats2["videos_computed"] == 0 and stats2["ms_per_pair"] is None
    write_avi(video, shifting_frames(seed=1))  # a changed video is a new entry
    assert not fc.is_cached(video)


def test_train_flow_aligned_with_rgb(tmp_path: Path) -> None:
    root = tmp_path / "v"
    items = [VideoItem(f"c{i}/v{i}.avi", i) for i in range(2)]
    for i, it in enumerate(items):
        write_avi(root / it.rel, shifting_frames(n=10, seed=i))
    split = DatasetSplit(root, ["c0", "c1"], items, [], items, "t")
    frames = FrameCache(tmp_path / "cache", resize=(H, W))
    flow_cache = FlowCache(frames, "farneback")
    assert flow_cache.warm([split.path(it) for it in items])[0] == []
    spec = ClipSpec(clip_len=4, frame_interval=2, crop=(24, 24))
    ds = ClipDataset(split, "train", frames, spec, train=True, modality="rgb+flow", flow_cache=flow_cache,
                     flow_norm=((0.5, 0.5), (1 / 255, 1 / 255)), aug_variants=8, seed=5, with_extras=True)
    flips = set()
    torch.manual_seed(0)
    for _ in range(12):
        rgb, label, extras = ds[1]
        i, v = extras["clip_key"].tolist()
        d = draw_clip(np.random.default_rng([5, i, v]), n_frames=10, height=H, width=W, span=spec.span,
                      crop=spec.crop, hflip=True)
        idx = frame_indices(10, d.start, spec)
        src_rgb = frames.get(split.path(items[1]))[idx, d.y : d.y + 24, d.x : d.x + 24]
        src_flow = flow_cache.get(split.path(items[1]))[idx, d.y : d.y + 24, d.x : d.x + 24].astype(np.float32)
        if d.flip:
            src_rgb, src_flow = src_rgb[:, :, ::-1], src_flow[:, :, ::-1]
            src_flow[..., 0] = 255 - src_flow[..., 0]
        flips.add(d.flip)
        np.testing.assert_array_equal(rgb.numpy(), ds._norm_rgb(np.ascontiguousarray(src_rgb)).numpy())
        np.testing.assert_allclose(extras["flow"].numpy(), (src_flow - 127.5).transpose(3, 0, 1, 2), atol=1e-4)
        assert label == 1
        # the texture moves right: mean x-flow is positive, and negative on a flipped clip
        mean_x = float(extras["flow"][0].mean())
        assert (mean_x < 0) if d.flip else (mean_x > 0)
    assert flips == {False, True}
