"""How big the frame cache will grow and how long filling it will take, from a sample of the videos.

Why: a paper-scale dataset decoded into the cache can fill a disk (raw frames are about 38x the
source video, 6 GB per hour of footage at 128x171) or keep a 2-core machine busy for hours. The
data stage prints both figures before it starts and refuses to start when the cache would not fit
in the free space; ``edgekd data RECIPE --estimate`` prints them and stops.

The estimate decodes and encodes a seeded random sample of the videos still to cache, in as many
threads as the data stage will use, and scales by source bytes: projected cache bytes = (cache
bytes / source bytes of the sample) x source bytes of every video still to cache, and time alike.
A video's frame count, hence its cache size and decode time, grows with its file size, so this
ratio estimator needs no per-video header reads (opening 13,320 UCF101 files would itself take
a minute). Its 95% interval (the ratio estimator's standard error, finite-population corrected,
Student t) says how far the sample may be off: 8 videos of the shared UCF101 clips estimated 84-94%
of the real size. The refusal compares the estimate with the free space; the report warns when
only the interval's upper end exceeds it. Optical flow (``data.flow``) adds its time per frame pair and its size per frame,
measured on a few pairs of the first sampled video.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.data.cache import FrameCache
from edgekd.data.decode import VideoDecodeError, read_video
from edgekd.data.flow import compute_flow
from edgekd.data.formats import pack_frames
from edgekd.utils.stats import t_quantile

__all__ = ["CacheEstimate", "CacheSpaceError", "check_space", "estimate_cache", "free_space", "human_bytes"]

FLOW_SAMPLE_PAIRS = 8


class CacheSpaceError(RuntimeError):
    """The cache would not fit in the free space of its disk; the message names both numbers."""


@dataclass(frozen=True)
class CacheEstimate:
    """Projected size and time of filling the cache for the videos not cached yet (``todo``).

    ``None`` figures mean no sampled video could be decoded (every one was bad): nothing to scale.
    """

    cache_dir: str
    format: str  # "webp q90", "raw", ...
    resize: tuple[int, int]
    videos: int  # distinct videos listed
    cached: int  # already in the cache
    todo: int  # still to decode
    todo_source_bytes: int
    sampled: int  # decoded for the estimate
    sample_failed: int  # sampled videos that could not be decoded (the data stage reports them)
    cache_per_source: float | None  # cache bytes per source byte in the sample
    frames: int | None  # projected frames to decode
    cache_bytes: int | None  # projected bytes to write, flow included
    cache_bytes_hi: int | None  # upper end of its 95% interval (None: fewer than 2 sampled videos)
    flow_bytes: int | None
    seconds: float | None  # projected wall time: decode, resize, encode, write (and flow)
    flow_seconds: float | None
    threads: int
    flow: str
    free_bytes: int

    @property
    def fits(self) -> bool:
        return self.cache_bytes is None or self.cache_bytes <= self.free_bytes

    def report(self) -> str:
        """What a user reads before a long decode: size, time, free space."""
        head = (f"frame cache ({self.format}, {self.resize[0]}x{self.resize[1]}) at {self.cache_dir}: "
                f"{self.videos} videos, {self.cached} cached, {self.todo} to decode")
        if self.todo == 0:
            return head
        if self.cache_bytes is None or self.seconds is None:
            return (f"{head}; no estimate: none of the {self.sampled} sampled videos could be decoded; "
                    f"free space {human_bytes(self.free_bytes)}")
        flow = (f" (flow {self.flow}: {human_bytes(self.flow_bytes or 0)}, {_duration(self.flow_seconds or 0)})"
                if self.flow != "none" else "")
        hi = f" (95% up to {human_bytes(self.cache_bytes_hi)})" if self.cache_bytes_hi is not None else ""
        verdict = "" if self.fits else "  -- DOES NOT FIT"
        if self.fits and self.cache_bytes_hi is not None and self.cache_bytes_hi > self.free_bytes:
            verdict = "  -- may not fit (the interval's upper end exceeds it)"
        return (f"{head}\n  estimate from {self.sampled} sampled videos: {human_bytes(self.cache_bytes)}{hi} and "
                f"{_duration(self.seconds)} with {self.threads} thread(s){flow}; ~{self.frames:,} frames, "
                f"{self.cache_per_source:.2f} cache bytes per source byte\n"
                f"  free space: {human_bytes(self.free_bytes)}{verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "resize": list(self.resize), "fits": self.fits}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def free_space(path: str | Path) -> int:
    """Free bytes on the filesystem that holds (or will hold) ``path``."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def check_space(est: CacheEstimate) -> None:
    """Raise :class:`CacheSpaceError` naming both numbers when the cache would not fit."""
    if not est.fits:
        raise CacheSpaceError(
            f"the frame cache would not fit: {est.todo} videos need about {human_bytes(est.cache_bytes or 0)} "
            f"({est.cache_bytes} bytes, {est.format}) but {est.cache_dir} has {human_bytes(est.free_bytes)} free "
            f"({est.free_bytes} bytes). Free space, point data.cache_dir at a larger disk, or use a smaller "
            "data.cache_format / data.cache_quality / data.resize")


def estimate_cache(cache: FrameCache, paths: Sequence[str | Path], *, sample: int = 8, threads: int = 0,
                   flow: str = "none", seed: int = 0) -> CacheEstimate:
    """Project the cache's growth for the videos of ``paths`` not cached yet, from ``sample`` of them.

    Nothing is written: the sample is encoded in memory, so a refusal leaves the disk as it was
    (the data stage decodes those few videos again; a second or two). ``flow``: the ``data.flow``
    method whose cost is added (``"none"``: frames only).
    """
    listed = list(dict.fromkeys(Path(p) for p in paths))
    todo: list[tuple[Path, int]] = []
    cached = 0
    for p in listed:
        try:
            if cache.is_cached(p):
                cached += 1
            else:
                todo.append((p, p.stat().st_size))
        except (VideoDecodeError, OSError):
            pass  # missing: the data stage reports it; it costs nothing to cache
    rng = np.random.default_rng([seed, 2718])
    picks = sorted(rng.choice(len(todo), size=min(sample, len(todo)), replace=False).tolist()) if todo else []
    measured, wall = _measure(cache, [todo[i][0] for i in picks], threads=threads)
    ok = [(todo[i][1], m) for i, m in zip(picks, measured) if m is not None]
    todo_src = sum(size for _, size in todo)
    flow_cost = _flow_cost(cache, [m for _, m in ok], flow) if ok and flow != "none" else None
    free = free_space(cache.cache_dir)
    common: dict[str, Any] = {
        "cache_dir": str(cache.cache_dir), "format": cache.label, "resize": cache.resize, "videos": len(listed),
        "cached": cached, "todo": len(todo), "todo_source_bytes": todo_src, "sampled": len(picks),
        "sample_failed": len(picks) - len(ok), "threads": max(1, threads), "flow": flow, "free_bytes": free}
    if not todo:
        none = None if flow == "none" else 0
        return CacheEstimate(**common, cache_per_source=None, frames=0, cache_bytes=0,  # type: ignore[arg-type]
                             cache_bytes_hi=0, flow_bytes=none, seconds=0.0, flow_seconds=none)
    if not ok:
        return CacheEstimate(**common, cache_per_source=None, frames=None, cache_bytes=None,  # type: ignore[arg-type]
                             cache_bytes_hi=None, flow_bytes=None, seconds=None, flow_seconds=None)
    src = sum(size for size, _ in ok)
    per_src = sum(m["bytes"] for _, m in ok) / src
    frames = round(sum(m["frames"] for _, m in ok) / src * todo_src)
    seconds = wall * todo_src / src
    flow_bytes = flow_s = 0.0
    if flow_cost is not None:
        flow_bytes = flow_cost["bytes_per_frame"] * frames
        flow_s = flow_cost["s_per_pair"] * frames / min(max(1, threads), os.cpu_count() or 1)
    half = _half_interval([(x, m["bytes"]) for x, m in ok], per_src, len(todo), todo_src)
    return CacheEstimate(**common, cache_per_source=per_src, frames=frames,  # type: ignore[arg-type]
                         cache_bytes=round(per_src * todo_src + flow_bytes),
                         cache_bytes_hi=None if half is None else round(per_src * todo_src + half + flow_bytes),
                         flow_bytes=round(flow_bytes) if flow != "none" else None, seconds=seconds + flow_s,
                         flow_seconds=flow_s if flow != "none" else None)


def _half_interval(xy: list[tuple[int, int]], ratio: float, population: int, total_x: int) -> float | None:
    """Half-width of the 95% interval of ratio x ``total_x`` (Cochran's ratio estimator variance,
    finite-population corrected, Student t with n - 1 degrees of freedom)."""
    n = len(xy)
    if n < 2:
        return None
    mean_x = sum(x for x, _ in xy) / n
    s2 = sum((y - ratio * x) ** 2 for x, y in xy) / (n - 1)
    var_ratio = (1 - n / population) * s2 / (n * mean_x**2)
    return t_quantile(0.975, n - 1) * total_x * var_ratio**0.5


def _measure(cache: FrameCache, paths: list[Path], *, threads: int) -> tuple[list[dict[str, Any] | None], float]:
    """Decode and encode each sampled video with the stage's threads; per video its frame count,
    entry bytes and a few frames for the flow measurement; the pool's wall time."""

    def one(p: Path) -> dict[str, Any] | None:
        try:
            frames = read_video(p, resize=cache.resize)
            nbytes = len(cache.encode(frames))
        except (VideoDecodeError, OSError, ValueError):
            return None
        return {"frames": len(frames), "bytes": nbytes, "head": frames[: FLOW_SAMPLE_PAIRS + 1].copy()}

    start = time.perf_counter()
    if threads > 0 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(paths))) as pool:
            out = list(pool.map(one, paths))
    else:
        out = [one(p) for p in paths]
    return out, time.perf_counter() - start


def _flow_cost(cache: FrameCache, measured: list[dict[str, Any]], method: str) -> dict[str, float] | None:
    """Seconds per frame pair (one thread) and cache bytes per flow frame, on the first usable video."""
    head = next((m["head"] for m in measured if len(m["head"]) >= 2), None)
    if head is None:
        return None
    compute_flow(head[:2], method)  # the first call creates TV-L1's per-thread object
    start = time.perf_counter()
    code = compute_flow(head, method)
    per_pair = (time.perf_counter() - start) / (len(head) - 1)
    if cache.format.packed:
        nbytes = len(pack_frames(code, cache.format, cache.quality))  # type: ignore[arg-type]
    else:
        nbytes = code.nbytes
    return {"s_per_pair": per_pair, "bytes_per_frame": nbytes / len(code)}
