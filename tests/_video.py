"""Test videos written to disk: frames in, an MJPG AVI out (OpenCV's writer, which every
opencv-python-headless build has), for tests of the decoders, the frame cache and optical flow."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_mjpg(path: Path, frames_rgb: np.ndarray, fps: float = 25.0) -> Path:
    """``frames_rgb`` (N, H, W, 3) uint8 RGB -> ``path`` (parents made); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames_rgb.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames_rgb:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
