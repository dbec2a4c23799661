"""Optical flow, computed once per video in the data stage and cached beside the frame cache.

Hu et al. train a flow teacher on TV-L1 flow clipped to [-20, 20] pixels and mapped linearly to
[0, 255]; that uint8 code is what is cached (``(N, H, W, 2)``, x then y), in the frame cache's
format: a memory-mapped ``.npy`` (raw), or one grey JPEG/WebP image per channel and frame packed
one file per video (as MMAction2 stores ``flow_x``/``flow_y``), so a flow clip costs about what
an RGB clip costs to load. Flow is computed on the cached (resized) RGB
frames, so flow and RGB share frame indices, size and crop boxes: ``flow[k]`` is the motion from
frame ``k`` to ``k + 1``, and the last frame repeats the last pair's flow so both arrays have N
entries. A flow teacher and an RGB student therefore see the same moment.

Flow runs in threads of the main process (OpenCV releases the GIL), never in DataLoader workers:
OpenCV in forked workers deadlocked on this machine (DEVELOPERS.md). TV-L1 (OpenCV contrib's
``DualTVL1OpticalFlow``) is the papers' method; Farneback is a much faster approximation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edgekd.data.cache import FrameCache, Frames, load_entry, store_entry
from edgekd.data.decode import VideoDecodeError

__all__ = ["FLOW_BOUND", "FLOW_METHODS", "FlowCache", "compute_flow", "flow_from_uint8", "flow_to_uint8"]

FLOW_METHODS: tuple[str, ...] = ("tvl1", "farneback")
FLOW_BOUND = 20.0
FLOW_FORMAT_VERSION = 1
_SCALE = 255.0 / (2 * FLOW_BOUND)


def flow_to_uint8(flow: np.ndarray) -> np.ndarray:
    """Pixels of displacement -> uint8: clip to [-20, 20], map linearly to [0, 255] (Hu et al.)."""
    return np.rint((np.clip(flow, -FLOW_BOUND, FLOW_BOUND) + FLOW_BOUND) * _SCALE).astype(np.uint8)


def flow_from_uint8(code: np.ndarray) -> np.ndarray:
    """Inverse of ``flow_to_uint8`` (up to its quantisation step of 40/255 px)."""
    return code.astype(np.float32) / np.float32(_SCALE) - np.float32(FLOW_BOUND)


_local = threading.local()


def _pair_fn(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A flow function for this thread (TV-L1 objects are stateful, so one per thread)."""
    if method == "tvl1":
        algo = getattr(_local, "tvl1", None)
        if algo is None:
            algo = _local.tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: algo.calc(a, b, None)
    if method == "farneback":
        # OpenCV's sample parameters: 3 levels at scale 0.5, window 15, 3 iterations, poly_n 5, sigma 1.2.
        return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown flow method {method!r}; expected one of {', '.join(FLOW_METHODS)}")


def compute_flow(frames: np.ndarray, method: str) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, H, W, 2)`` uint8 flow code aligned with the frames."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"flow needs (N >= 2, H, W, 3) frames, got shape {frames.shape}")
    fn = _pair_fn(method)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.empty((*frames.shape[:3], 2), np.uint8)
    for k in range(len(gray) - 1):
        out[k] = flow_to_uint8(fn(gray[k], gray[k + 1]))
    out[-1] = out[-2]
    return out


class FlowCache:
    """Flow of every cached video, stored next to the frame cache under ``flow-<method>-v<N>/``, in
    the frame cache's format and quality.

    The entry name is the frame-cache entry's name (which hashes the video's path, size, mtime, the
    resize and, for packed formats, the format and quality), so a changed video, a new resize or
    another format invalidates flow too.
    """

    def __init__(self, frames: FrameCache, method: str) -> None:
        if method not in FLOW_METHODS:
            raise ValueError(f"unknown flow method {method!r}; expected one of {', '.join(FLOW_METHODS)}")
        self.frames = frames
        self.method = method
        self.cache_dir = frames.cache_dir / f"flow-{method}-v{FLOW_FORMAT_VERSION}"

    def entry_path(self, path: str | Path) -> Path:
        entry = self.frames.entry_path(path)
        return self.cache_dir / entry.parent.name / entry.name

    def is_cached(self, path: str | Path) -> bool:
        return self.entry_path(path).is_file()

    def get(self, path: str | Path) -> Frames:
        """``(N, H, W, 2)`` uint8 flow of ``path`` (memory-mapped, or packed and decoded where indexed);
        never computes (workers call this)."""
        entry = self.entry_path(path)
        flow = load_entry(entry, self.frames.format, channels=2)
        if flow is None:
            why = "is not cached at" if not entry.is_file() else "is unreadable (not a complete flow entry) at"
            raise VideoDecodeError(path, f"{self.method} optical flow {why} {entry}; the data stage computes it "
                                         "when data.flow is set")
        return flow

    def compute(self, path: str | Path) -> int:
        """Compute and store the flow of ``path`` (frames from the frame cache); returns frame pairs."""
        frames = self.frames.get(path)
        if frames.shape[0] < 2:
            raise VideoDecodeError(path, f"only {frames.shape[0]} frame: optical flow needs at least 2")
        flow = compute_flow(np.asarray(frames), self.method)
        store_entry(self.entry_path(path), flow, self.frames.format, self.frames.quality)
        return frames.shape[0] - 1

    def warm(self, paths: Sequence[Path], *, workers: int = 0,
             progress: bool = True) -> tuple[list[tuple[Path, str]], dict[str, Any]]:
        """Compute missing flow for ``paths``; return ALL failures and the cost of what was computed.
        TV-L1 takes hundreds of milliseconds per frame pair, so a progress bar shows the ETA."""
        failures: list[tuple[Path, str]] = []
        todo: list[Path] = []
        for p in dict.fromkeys(Path(p) for p in paths):
            try:
                if not self.is_cached(p):
                    todo.append(p)
            except VideoDecodeError as e:
                failures.append((p, e.reason))
        pairs = 0
        start = time.perf_counter()

        def one(p: Path) -> tuple[Path, int, str | None]:
            try:
                return p, self.compute(p), None
            except VideoDecodeError as e:
                return p, 0, e.reason
            except (OSError, ValueError, cv2.error) as e:
                return p, 0, f"{type(e).__name__}: {e}"

        results: list[tuple[Path, int, str | None]] = []
        with tqdm(total=len(todo), desc=f"flow ({self.method})", unit="video", disable=not progress or not todo) as bar:
            if workers > 0 and len(todo) > 1:
                with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                    for r in pool.map(one, todo):
                        results.append(r)
                        bar.update(1)
            else:
                for p in todo:
                    results.append(one(p))
                    bar.update(1)
        for p, n, reason in results:
            pairs += n
            if reason is not None:
                failures.append((p, reason))
        seconds = time.perf_counter() - start
        computed = sum(1 for _, n, reason in results if reason is None)
        stats = {"method": self.method, "videos_total": len(set(map(Path, paths))), "videos_computed": computed,
                 "frame_pairs": pairs, "seconds": round(seconds, 3), "threads": max(1, workers),
                 # wall time per pair over all threads: what a user waits, not CPU time
                 "ms_per_pair": round(1000 * seconds / pairs, 3) if pairs else None}
        return failures, stats
