"""Sliding-window classification of a video file or camera stream, with a per-phase time split.

A window is ``clip_len`` frames taken every ``frame_interval`` decoded frames (the bundle's
training spec); consecutive windows start ``stride`` decoded frames apart. Frames are prepared
once as they arrive and kept in a ring buffer of one window's span, so a stride smaller than the
span costs no extra decoding or resizing. Time is split into decode (``cap.read``), preprocess
(resize, crop, colour, normalise, stack) and inference, so a slow box shows where time goes.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from .preprocess import PreprocessSpec, normalize_clip, prepare_frame

__all__ = ["Classifier", "Source", "SourceError", "Timings", "WindowResult", "classify_capture", "open_source"]


class SourceError(RuntimeError):
    """The video file or camera cannot be read; the message names it and says why."""


class Classifier(Protocol):
    def infer(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class WindowResult:
    """One window's prediction. Frames are decoded-frame indices (inclusive); times in seconds."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    label: str
    label_index: int
    score: float  # softmax probability of ``label``

    def to_json(self) -> dict[str, Any]:
        return {"type": "window", "window": self.index, "label": self.label, "label_index": self.label_index,
                "score": round(self.score, 6), "start_s": round(self.start_s, 4), "end_s": round(self.end_s, 4),
                "start_frame": self.start_frame, "end_frame": self.end_frame}

    def readable(self) -> str:
        return (f"[{self.start_s:8.2f}s - {self.end_s:8.2f}s] window {self.index:4d}: "
                f"{self.label} ({self.score:.3f})")


@dataclass
class Timings:
    """Seconds spent per phase over a whole stream; FPS are decoded frames per second."""

    frames: int = 0
    windows: int = 0
    decode_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        def fps(seconds: float) -> float | None:
            return round(self.frames / seconds, 2) if seconds > 0 else None

        return {"type": "summary", "frames": self.frames, "windows": self.windows,
                "decode_s": round(self.decode_s, 4), "preprocess_s": round(self.preprocess_s, 4),
                "inference_s": round(self.inference_s, 4), "wall_s": round(self.wall_s, 4),
                "fps_end_to_end": fps(self.wall_s), "fps_decode": fps(self.decode_s),
                "fps_preprocess": fps(self.preprocess_s), "fps_inference": fps(self.inference_s),
                "inference_ms_per_window": round(1000 * self.inference_s / self.windows, 3) if self.windows else None}

    def readable(self) -> str:
        j = self.to_json()
        ms = lambda s: 1000 * s / self.frames if self.frames else float("nan")
        return (f"{self.frames} frames, {self.windows} windows in {self.wall_s:.2f} s: end-to-end "
                f"{j['fps_end_to_end']} FPS (per frame: decode {ms(self.decode_s):.2f} ms, preprocess "
                f"{ms(self.preprocess_s):.2f} ms, inference {ms(self.inference_s):.2f} ms)")


@dataclass
class Source:
    """An opened capture whose first frame was already decoded (to prove the stream is readable)."""

    cap: cv2.VideoCapture
    name: str
    fps: float | None  # None for cameras: timestamps come from the wall clock
    first: np.ndarray | None = field(default=None, repr=False)
    first_decode_s: float = 0.0


def open_source(video: str | Path | None = None, *, camera: int | None = None) -> Source:
    """Open a video file (FFmpeg backend when present) or camera ``index`` and read its first frame.

    Reading one frame up front turns "opened but undecodable" into a :class:`SourceError` here
    rather than a run that silently classifies nothing.
    """
    if (video is None) == (camera is None):
        raise ValueError("give exactly one of a video file or a camera index")
    if camera is not None:
        cap, name = cv2.VideoCapture(int(camera)), f"camera {camera}"
        if not cap.isOpened():
            raise SourceError(f"cannot open {name} (no such device, or it is busy)")
        fps = None
    else:
        path = Path(video)  # type: ignore[arg-type]
        name = str(path)
        if not path.is_file():
            raise SourceError(f"video not found: {path}")
        backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
        cap = cv2.VideoCapture(str(path), backend)
        if not cap.isOpened():
            raise SourceError(f"cannot open {path}: unsupported container/codec or not a video")
        rate = cap.get(cv2.CAP_PROP_FPS)
        fps = float(rate) if rate and math.isfinite(rate) and rate > 0 else None
    t0 = time.perf_counter()
    ok, frame = cap.read()
    decode_s = time.perf_counter() - t0
    if not ok or frame is None:
        cap.release()
        raise SourceError(f"unreadable stream: no frame could be decoded from {name}")
    return Source(cap, name, fps, frame, decode_s)


def classify_capture(
    source: Source,
    spec: PreprocessSpec,
    classifier: Classifier,
    labels: tuple[str, ...],
    *,
    stride: int | None = None,
    max_windows: int | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> Timings:
    """Run sliding windows over ``source`` until it ends (or ``max_windows``); returns the timings.

    ``stride`` defaults to one window span (non-overlapping windows). A file shorter than one span
    still gets one window, its frame indices wrapping around exactly as the training pipeline's
    evaluation clips do, so a short clip is classified the way it was evaluated.
    """
    stride = spec.span if stride is None else stride
    if stride < 1:
        raise ValueError(f"stride must be >= 1 decoded frames, got {stride}")
    timings = Timings()
    frames: collections.deque[np.ndarray] = collections.deque(maxlen=spec.span)
    stamps: collections.deque[float] = collections.deque(maxlen=spec.span)
    t_start = time.perf_counter()
    try:
        for frame_idx, bgr, t_decode in _frames(source):
            timings.decode_s += t_decode
            t0 = time.perf_counter()
            frames.append(prepare_frame(bgr, spec))
            stamps.append(frame_idx / source.fps if source.fps else time.perf_counter() - t_start)
            timings.preprocess_s += time.perf_counter() - t0
            timings.frames += 1
            start = frame_idx + 1 - spec.span
            if start >= 0 and start % stride == 0:
                window = list(frames)[:: spec.frame_interval]
                end_s = stamps[-1] + (1.0 / source.fps if source.fps else 0.0)
                result = _classify(window, spec, classifier, labels, timings, start, frame_idx, stamps[0], end_s)
                if on_window:
                    on_window(result)
                if max_windows is not None and timings.windows >= max_windows:
                    break
        if timings.windows == 0 and frames and source.fps is not None:
            n = len(frames)
            idx = (np.arange(spec.clip_len) * spec.frame_interval) % n
            window = [frames[i] for i in idx]
            result = _classify(window, spec, classifier, labels, timings, 0, n - 1, 0.0, n / source.fps)
            if on_window:
                on_window(result)
    finally:
        source.cap.release()
    timings.wall_s = time.perf_counter() - t_start + source.first_decode_s
    return timings


def _frames(source: Source) -> Iterator[tuple[int, np.ndarray, float]]:
    """``(index, BGR frame, seconds spent decoding it)``; the first frame was read by open_source."""
    assert source.first is not None
    yield 0, source.first, source.first_decode_s
    source.first = None
    idx = 1
    while True:
        t0 = time.perf_counter()
        ok, bgr = source.cap.read()
        dt = time.perf_counter() - t0
        if not ok or bgr is None:
            return
        yield idx, bgr, dt
        idx += 1


def _classify(window: list[np.ndarray], spec: PreprocessSpec, classifier: Classifier, labels: tuple[str, ...],
              timings: Timings, start: int, end: int, start_s: float, end_s: float) -> WindowResult:
    t0 = time.perf_counter()
    batch = normalize_clip(np.stack(window), spec)[None]
    t1 = time.perf_counter()
    logits = np.asarray(classifier.infer(batch), dtype=np.float64)[0]
    t2 = time.perf_counter()
    timings.preprocess_s += t1 - t0
    timings.inference_s += t2 - t1
    if logits.shape != (len(labels),):
        raise RuntimeError(f"model returned {logits.shape[0]} logits, the bundle has {len(labels)} labels")
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    k = int(np.argmax(logits))
    result = WindowResult(timings.windows, start, end, start_s, end_s, labels[k], k, float(probs[k]))
    timings.windows += 1
    return result
