"""End-to-end latency: decode a video file, cut and normalise the eval clip, run the engine.

Model-only latency hides what an edge deployment pays per video: decoding (OpenCV/FFmpeg),
resizing, cropping and normalising. Here each sample is one test-split video from disk, through
exactly the eval path (``read_video`` with the recipe's resize, centre temporal window, centre
crop, ``normalize_clip``), timed per stage with ``perf_counter_ns``. The first ``warmup`` videos
are processed untimed (codec and engine warm-up). The whole file is decoded, as the frame cache
does; SPF uses the same denominator as the model-only rows (frames in the clip), so the two are
directly comparable and their difference is the pre-processing cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bench.latency import LatencyStats, stats_from_samples
from edgekd.data.clips import (
    ClipSpec,
    clip_starts,
    crop_box,
    frame_indices,
    normalize_clip,
)
from edgekd.data.decode import read_video
from edgekd.engines.base import Engine

__all__ = ["E2EResult", "eval_clip_from_file", "measure_end_to_end"]


@dataclass(frozen=True)
class E2EResult:
    """Per-video end-to-end latency and where the time went (means, ms)."""

    total: LatencyStats
    decode_ms: float
    preprocess_ms: float
    infer_ms: float
    videos: int
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total"] = self.total.to_dict()
        return d


def eval_clip_from_file(path: Path, spec: ClipSpec, resize: tuple[int, int]) -> np.ndarray:
    """``(1, C, T, H, W)`` float32 eval clip of a video file, as the bench's accuracy rows see it."""
    frames = read_video(path, resize=resize)
    return _clip(frames, spec)


def _clip(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    n, h, w, _ = frames.shape
    y, x = crop_box(h, w, spec)
    ch, cw = spec.crop
    raw = frames[frame_indices(n, clip_starts(n, spec, 1)[0], spec), y : y + ch, x : x + cw]
    return normalize_clip(np.ascontiguousarray(raw), spec)[None]


def measure_end_to_end(engine: Engine, videos: Sequence[Path], spec: ClipSpec, resize: tuple[int, int], *,
                       warmup: int = 1, repeats: int = 1) -> E2EResult:
    """Decode + preprocess + infer each of ``videos`` ``repeats`` times after ``warmup`` untimed videos."""
    if not videos:
        raise ValueError("measure_end_to_end: no videos given")
    if warmup < 0 or repeats < 1:
        raise ValueError(f"measure_end_to_end: need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    for i in range(warmup):
        engine.infer(eval_clip_from_file(Path(videos[i % len(videos)]), spec, resize))
    totals: list[int] = []
    parts = np.zeros(3)
    for _ in range(repeats):
        for path in videos:
            t0 = time.perf_counter_ns()
            frames = read_video(Path(path), resize=resize)
            t1 = time.perf_counter_ns()
            clip = _clip(frames, spec)
            t2 = time.perf_counter_ns()
            engine.infer(clip)
            t3 = time.perf_counter_ns()
            totals.append(t3 - t0)
            parts += (t1 - t0, t2 - t1, t3 - t2)
    parts_ms = parts / len(totals) / 1e6
    return E2EResult(stats_from_samples(totals, warmup), float(parts_ms[0]), float(parts_ms[1]), float(parts_ms[2]),
                     len(videos), repeats)
