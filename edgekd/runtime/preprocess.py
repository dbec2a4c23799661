"""Preprocessing shared byte for byte by training, engines and the torch-free edge runtime.

This module imports only numpy and OpenCV (and nothing from the rest of edgekd), because it is
copied verbatim into deploy bundles. Training normalises clips with :func:`normalize_clip` from
here (``edgekd.data.clips`` re-exports it), so a bundle cannot drift from what the model saw.

The frame pipeline mirrors the training cache exactly: decode (BGR) -> resize to ``resize``
(H, W) with ``cv2.INTER_AREA`` when the size differs -> BGR to RGB -> centre crop (floor
division) -> ``(x / 255 - mean) / std`` in float32.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

__all__ = ["PreprocessSpec", "normalize_clip", "prepare_frame"]


class _HasMeanStd(Protocol):
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model consumes, as written to a bundle's ``preprocess.json``.

    ``clip_len`` frames taken every ``frame_interval`` decoded frames, each resized to ``resize``
    (H, W) with INTER_AREA, centre-cropped to ``crop`` (H, W), RGB, normalised with mean/std, and
    laid out ``(N, C, T, H, W)``.
    """

    clip_len: int
    frame_interval: int
    resize: tuple[int, int]
    crop: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCTHW"
    color: str = "RGB"
    resize_interpolation: str = "INTER_AREA"
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.frame_interval < 1:
            raise ValueError(f"clip_len and frame_interval must be >= 1, got {self.clip_len}, {self.frame_interval}")
        if len(self.resize) != 2 or len(self.crop) != 2 or min(*self.resize, *self.crop) < 1:
            raise ValueError(f"resize and crop must be positive (H, W) pairs, got {self.resize!r}, {self.crop!r}")
        if self.crop[0] > self.resize[0] or self.crop[1] > self.resize[1]:
            raise ValueError(f"crop {list(self.crop)} must fit inside resize {list(self.resize)}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must have 3 entries and std > 0, got {self.mean!r}, {self.std!r}")
        if (self.layout, self.color, self.resize_interpolation, self.crop_mode) != ("NCTHW", "RGB", "INTER_AREA", "center"):
            raise ValueError(
                "this runtime implements layout NCTHW, color RGB, INTER_AREA resize and center crop; got "
                f"{self.layout}, {self.color}, {self.resize_interpolation}, {self.crop_mode}"
            )

    @property
    def span(self) -> int:
        """Decoded frames covered by one window, first to last sampled frame inclusive."""
        return (self.clip_len - 1) * self.frame_interval + 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Build from an input-spec mapping (checkpoint, sidecar or ``preprocess.json``); extra keys are ignored."""
        missing = [k for k in ("clip_len", "frame_interval", "resize", "crop", "mean", "std") if k not in data]
        if missing:
            raise ValueError(f"preprocessing spec lacks {missing}")
        return cls(
            clip_len=int(data["clip_len"]),
            frame_interval=int(data["frame_interval"]),
            resize=(int(data["resize"][0]), int(data["resize"][1])),
            crop=(int(data["crop"][0]), int(data["crop"][1])),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            layout=str(data.get("layout", "NCTHW")),
            color=str(data.get("color", "RGB")),
            resize_interpolation=str(data.get("resize_interpolation", "INTER_AREA")),
            crop_mode=str(data.get("crop_mode", "center")),
        )

    @classmethod
    def load(cls, path: str | Path) -> PreprocessSpec:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resize"], out["crop"] = list(self.resize), list(self.crop)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out


def prepare_frame(bgr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """One decoded BGR frame -> the ``(crop_h, crop_w, 3)`` uint8 RGB frame a window is built from.

    Same order of operations as the frame cache (resize in BGR with INTER_AREA, then convert), so
    a bundle's windows are bit-identical to the clips the engines were evaluated on.
    """
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    elif bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    h, w = spec.resize
    if bgr.shape[:2] != (h, w):
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    ch, cw = spec.crop
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[y : y + ch, x : x + cw])


def normalize_clip(frames_uint8: np.ndarray, spec: _HasMeanStd) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(3, T, H, W)`` float32 ``(x / 255 - mean) / std`` (numpy only).

    ``spec`` is anything with ``mean`` and ``std`` (``ClipSpec`` in training, ``PreprocessSpec`` here).
    Implemented as a per-channel 256-entry lookup table: the table is computed with exactly that
    float32 formula, so results are bit-identical to it, at about twice the speed of elementwise
    arithmetic (normalisation is the largest per-clip cost on a cache hit).
    """
    if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {frames_uint8.shape}")
    if frames_uint8.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames_uint8.dtype}")
    lut = _normalize_lut(tuple(spec.mean), tuple(spec.std))
    planar = np.ascontiguousarray(frames_uint8.transpose(3, 0, 1, 2))
    out = np.empty(planar.shape, dtype=np.float32)
    for c in range(3):
        out[c] = lut[c][planar[c]]
    return out


@functools.lru_cache(maxsize=8)
def _normalize_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(3, 256)`` table of ``(v / 255 - mean[c]) / std[c]`` in float32."""
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    lut = (levels - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    lut.setflags(write=False)
    return lut
