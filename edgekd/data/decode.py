"""Video decoding with OpenCV.

Every other part of the pipeline (frame cache, clip sampling, calibration, deploy parity checks)
consumes the ``(N, H, W, 3) uint8 RGB`` array returned here, so this is the single place that deals
with codecs, BGR/RGB order and broken files. Broken files are common in scraped action datasets; they
must surface as one clear exception type naming the file, not as an empty array that crashes three
layers later.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["VideoDecodeError", "read_video"]


class VideoDecodeError(RuntimeError):
    """A video could not be decoded; carries the offending ``path`` and a human ``reason``.

    A dedicated type lets callers (e.g. ``FrameCache.warm``) collect every bad file and report them
    all at once instead of dying on the first.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:  # picklable across multiprocessing pools
        return (type(self), (self.path, self.reason))


def _check_resize(resize: tuple[int, int] | None) -> tuple[int, int] | None:
    if resize is None:
        return None
    if len(resize) != 2 or any(int(v) != v or int(v) <= 0 for v in resize):
        raise ValueError(f"resize must be a (height, width) pair of positive ints, got {resize!r}")
    return int(resize[0]), int(resize[1])


def _open(path: Path) -> cv2.VideoCapture:
    """Open with the FFmpeg backend when present, so the result does not depend on backend probing.

    ``CAP_ANY`` may hand odd files to the image-sequence backend, which then "succeeds" on garbage.
    """
    if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    return cv2.VideoCapture(str(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if not path.is_file():
        raise VideoDecodeError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def read_video(path: str | Path, *, resize: tuple[int, int] | None = None) -> np.ndarray:
    """Decode every frame of ``path`` into an ``(N, H, W, 3)`` uint8 RGB array.

    ``resize`` is ``(H, W)``; each frame is resized with ``cv2.INTER_AREA`` (the right filter for
    downscaling, which is what a frame cache does). ``CAP_PROP_FRAME_COUNT`` is not trusted (it is an
    estimate from the container, off by one for many AVI/MKV files): frames are read until the
    decoder stops. It is used only to detect truncation: a file that decodes to well under the count
    its header declares (under 95 %, less one frame) lost its tail, e.g. an interrupted download.
    Frames of changing resolution are fine with ``resize`` (each is resized); the frame rate is not
    used (clips are counted in frames).

    Raises:
        VideoDecodeError: missing, empty, unopenable, truncated or frame-less file, or frames of
        changing size without ``resize``.
    """
    path = Path(path)
    size = _check_resize(resize)
    _check_file(path)
    cap = _open(path)
    try:
        if not cap.isOpened():
            raise VideoDecodeError(path, "OpenCV could not open it (unsupported container/codec or corrupt file)")
        declared = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        try:
            frames = _read_all(cap, path, size)
        except cv2.error as e:
            raise VideoDecodeError(path, f"OpenCV error while decoding: {str(e).strip()}") from None
    finally:
        cap.release()
    if not frames:
        raise VideoDecodeError(path, "no frames could be decoded")
    if declared > 0 and len(frames) < 0.95 * declared - 1:
        raise VideoDecodeError(
            path, f"truncated: decoded {len(frames)} of the {int(declared)} frames its header declares")
    return np.stack(frames)


def _read_all(cap: cv2.VideoCapture, path: Path, size: tuple[int, int] | None) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    first_shape: tuple[int, ...] | None = None
    while True:
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return frames
        if bgr.ndim == 2:  # some backends return grayscale for single-channel sources
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        elif bgr.shape[2] == 4:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
        if first_shape is None:
            first_shape = bgr.shape
        elif bgr.shape != first_shape and size is None:
            raise VideoDecodeError(
                path, f"frame {len(frames)} has shape {bgr.shape}, first frame had {first_shape}; pass resize="
            )
        if size is not None and bgr.shape[:2] != size:
            bgr = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
