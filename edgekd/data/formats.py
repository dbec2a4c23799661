"""How the frame cache stores a video's decoded frames: the table of cache formats and the packed file.

Why: the raw format (uncompressed ``(N, H, W, 3)`` uint8, memory-mapped) costs about 38x the
source video on UCF101 at 128x171, so a real dataset fills a disk before the teacher trains. The
compact formats store each frame as a JPEG or WebP image, packed one file per video with an offset
index (MMAction2's rawframes without millions of small files), and decode only the frames a clip
reads. Measured on the shared UCF101 clips (docs/notes.md, 2026-11-29): WebP at quality 90 is
about 2.7x the source size and JPEG 90 about 3.8x (raw: 37.6x), at 39.6 and 38.5 dB PSNR against
the raw frames.

Every format is one row of :data:`CACHE_FORMATS`; the frame cache, the flow cache, the estimate,
the recipe check and the benchmark all read it.

Encoding and decoding use Pillow, never OpenCV: DataLoader workers are forked, and OpenCV in a
forked worker deadlocked on this project's machines (DEVELOPERS.md). Pillow keeps no thread pool.

A packed file (``.jpeg.pack``, ``.webp.pack``), all integers little-endian::

    b"EKDPACK1"                         8-byte magic
    uint32 L                            length of the JSON header (padded with spaces to 8 bytes)
    JSON {"codec", "quality", "shape": [N, H, W, C], "images_per_frame": P}
    uint64 offsets[N * P + 1]           image k's bytes are payload[offsets[k]:offsets[k + 1]]
    payload                             the images, frame after frame

A 3-channel frame is one colour image (``P = 1``); a 1- or 2-channel frame (optical flow's x and y)
is one grey image per channel (``P = C``), as MMAction2 stores ``flow_x``/``flow_y``.
"""

from __future__ import annotations

import difflib
import io
import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image

from edgekd.utils.atomic import atomic_path

__all__ = ["CACHE_FORMATS", "CACHE_FORMAT_NAMES", "CacheFormat", "PackedFrames", "decode_image", "encode_image",
           "get_format", "open_packed", "pack_frames", "write_packed"]

MAGIC = b"EKDPACK1"
PACK_VERSION = 1  # part of every packed entry's cache key


@dataclass(frozen=True)
class CacheFormat:
    """One way of storing cached frames: its name in recipes (``data.cache_format``), whether it
    gives back the decoded pixels exactly, the entry file's suffix, its quality parameter and the
    Pillow codec behind it (``None``: raw ``.npy`` arrays)."""

    name: str
    summary: str
    lossless: bool
    suffix: str
    default_quality: int | None = None  # None: the format takes no quality
    pil_format: str | None = None
    save_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def packed(self) -> bool:
        return self.pil_format is not None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # by name: a spawned DataLoader worker gets the table's own row (and no mappingproxy to pickle)
        return (get_format, (self.name,))

    def resolve_quality(self, quality: int | None) -> int | None:
        """The quality entries are written at: ``quality``, else the default; ``None`` for raw."""
        if not self.packed:
            if quality is not None:
                raise ValueError(f"cache format {self.name!r} takes no quality (got {quality}); quality is for "
                                 f"{', '.join(f.name for f in CACHE_FORMATS if f.packed)}")
            return None
        q = self.default_quality if quality is None else quality
        if not (isinstance(q, int) and 1 <= q <= 100):
            raise ValueError(f"cache format {self.name!r}: quality must be an integer in 1..100, got {quality!r}")
        return q


CACHE_FORMATS: tuple[CacheFormat, ...] = (
    CacheFormat("raw", "uncompressed uint8 frames in a memory-mapped .npy: lossless, the largest", True, ".npy"),
    # 4:2:0 chroma pinned (libjpeg's default), so a Pillow release changing its default cannot change the cache
    CacheFormat("jpeg", "JPEG frames packed one file per video: the fastest compact decode", False, ".jpeg.pack",
                default_quality=90, pil_format="JPEG",
                save_options=MappingProxyType({"subsampling": 2, "optimize": False})),
    # effort 2 of 0..6: 2.6% larger files than libwebp's default 4 at 2.1x its encoding speed (UCF101
    # clips at 128x171, 2026-11-29); encoding is most of the time the data stage takes for WebP
    CacheFormat("webp", "WebP frames packed one file per video: the smallest at equal pixel error", False,
                ".webp.pack", default_quality=90, pil_format="WEBP", save_options=MappingProxyType({"method": 2})),
)
CACHE_FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in CACHE_FORMATS)
_BY_NAME = {f.name: f for f in CACHE_FORMATS}


def get_format(name: str) -> CacheFormat:
    """The row of ``name``; an unknown name gets the closest one and the list."""
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), CACHE_FORMAT_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown cache format {name!r}{hint} (formats: {', '.join(CACHE_FORMAT_NAMES)})") from None


def encode_image(fmt: CacheFormat, image: np.ndarray, quality: int) -> bytes:
    """One ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 image in ``fmt``'s codec."""
    assert fmt.pil_format is not None, f"{fmt.name} is not an image codec"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, fmt.pil_format, quality=quality, **fmt.save_options)
    return buf.getvalue()


def decode_image(fmt: CacheFormat, data: bytes | memoryview | np.ndarray, *, grey: bool) -> np.ndarray:
    """Inverse of :func:`encode_image`: ``(H, W)`` when ``grey``, else ``(H, W, 3)`` RGB uint8.

    A grey plane comes back from WebP as three equal-ish channels (VP8 has no grey mode), so it is
    converted to one; JPEG stores it as one component.
    """
    assert fmt.pil_format is not None, f"{fmt.name} is not an image codec"
    with Image.open(io.BytesIO(data), formats=[fmt.pil_format]) as im:  # type: ignore[arg-type]
        mode = "L" if grey else "RGB"
        return np.asarray(im if im.mode == mode else im.convert(mode))


def _images(frames: np.ndarray) -> Iterator[np.ndarray]:
    channels = frames.shape[-1]
    for frame in frames:
        if channels == 3:
            yield frame
        else:
            yield from (frame[..., c] for c in range(channels))


def pack_frames(frames: np.ndarray, fmt: CacheFormat, quality: int) -> bytes:
    """``(N, H, W, C)`` uint8 frames (C = 3, or 1-2 grey planes) as one packed file's bytes."""
    if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[-1] not in (1, 2, 3) or frames.shape[0] < 1:
        raise ValueError(f"expected (N >= 1, H, W, 1|2|3) uint8 frames, got {frames.shape} {frames.dtype}")
    images = [encode_image(fmt, im, quality) for im in _images(frames)]
    offsets = np.zeros(len(images) + 1, dtype="<u8")
    np.cumsum([len(b) for b in images], out=offsets[1:])
    meta = {"codec": fmt.name, "quality": quality, "shape": [int(v) for v in frames.shape],
            "images_per_frame": 1 if frames.shape[-1] == 3 else int(frames.shape[-1])}
    header = json.dumps(meta).encode("utf-8")
    header += b" " * (-(len(MAGIC) + 4 + len(header)) % 8)  # offsets start 8-byte aligned
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, offsets.tobytes(), *images])


def write_packed(path: str | Path, frames: np.ndarray, fmt: CacheFormat, quality: int) -> int:
    """Write the packed file atomically (temporary name, then rename); returns its size in bytes."""
    blob = pack_frames(frames, fmt, quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    return len(blob)


class PackedFrames:
    """The ``(N, H, W, C)`` uint8 frames of one packed file, decoded only where indexed.

    Reads like the memory-mapped raw array the clip sampler already slices: ``frames.shape``,
    ``frames[k]``, ``frames[indices, y0:y1, x0:x1]`` (decodes each listed frame once, then crops)
    and ``np.asarray(frames)`` (decodes all). The file is memory-mapped, so opening one costs a
    header read, whatever the video's length.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: Path, data: np.ndarray, fmt: CacheFormat, quality: int,
                 shape: tuple[int, int, int, int], offsets: np.ndarray, payload: int) -> None:
        self.path = path
        self.format = fmt
        self.quality = quality
        self.shape = shape
        self._data = data
        self._offsets = offsets
        self._payload = payload
        self._per_frame = 1 if shape[-1] == 3 else shape[-1]

    def __repr__(self) -> str:
        return f"PackedFrames({str(self.path)!r}, {self.format.name} q{self.quality}, shape={self.shape})"

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded array (as ``ndarray.nbytes``), not of the file."""
        return int(np.prod(self.shape))

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` decoded, ``(H, W, C)``."""
        n = self.shape[0]
        if not -n <= k < n:
            raise IndexError(f"frame {k} out of range for {n} frames ({self.path})")
        k %= n
        grey = self._per_frame != 1 or self.shape[-1] != 3
        planes = []
        for j in range(k * self._per_frame, (k + 1) * self._per_frame):
            start, stop = self._payload + int(self._offsets[j]), self._payload + int(self._offsets[j + 1])
            planes.append(decode_image(self.format, self._data[start:stop], grey=grey))
        out = planes[0] if not grey else np.stack(planes, axis=-1)
        if out.shape != self.shape[1:]:
            raise ValueError(f"{self.path}: frame {k} decoded to {out.shape}, the header says {self.shape[1:]}")
        return out

    def _frames(self, indices: np.ndarray) -> np.ndarray:
        """Frames at ``indices`` (repeats allowed: a short video's clip loops), each decoded once."""
        uniq, inverse = np.unique(indices, return_inverse=True)
        out = np.empty((len(uniq), *self.shape[1:]), np.uint8)
        for j, k in enumerate(uniq):
            out[j] = self.frame(int(k))
        return out[inverse.reshape(-1)]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if first is Ellipsis or first is None:
            return np.asarray(self)[key]
        if isinstance(first, (int, np.integer)):
            return self.frame(int(first))[rest]
        indices = np.arange(self.shape[0])[first]  # slices, index arrays, masks; IndexError when out of range
        frames = self._frames(np.atleast_1d(indices))
        return frames[(slice(None), *rest)] if rest else frames

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self._frames(np.arange(self.shape[0]))
        return out if dtype is None else out.astype(dtype, copy=False)


def open_packed(path: str | Path) -> PackedFrames | None:
    """Map a packed file; ``None`` when it is not a complete one (foreign, truncated, corrupt), so the
    caller re-creates the entry instead of training on garbage."""
    path = Path(path)
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):  # missing, unreadable or empty
        return None
    try:
        if bytes(data[: len(MAGIC)]) != MAGIC:
            return None
        (length,) = struct.unpack("<I", bytes(data[8:12]))
        meta = json.loads(bytes(data[12 : 12 + length]).decode("utf-8"))
        fmt = get_format(meta["codec"])
        shape = tuple(int(v) for v in meta["shape"])
        per_frame = int(meta["images_per_frame"])
        start = 12 + length
        count = shape[0] * per_frame
        offsets = data[start : start + 8 * (count + 1)].view("<u8")
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
        return None
    payload = start + 8 * (count + 1)
    ok = (fmt.packed and len(shape) == 4 and shape[0] >= 1 and len(offsets) == count + 1 and offsets[0] == 0
          and int(offsets[-1]) == len(data) - payload and bool(np.all(np.diff(offsets.astype(np.int64)) > 0)))
    if not ok:
        return None
    return PackedFrames(path, data, fmt, int(meta["quality"]), shape, offsets, payload)  # type: ignore[arg-type]


def codec_facts() -> dict[str, Any]:
    """Which cache formats this machine can write and read (Pillow's codecs), for ``edgekd doctor``."""
    import PIL
    from PIL import features

    turbo = features.check_feature("libjpeg_turbo")
    libs = {"JPEG": ("jpg", f"libjpeg-turbo {features.version('libjpeg_turbo')}" if turbo
                     else f"libjpeg {features.version('jpg')}"),
            "WEBP": ("webp", f"libwebp {features.version('webp')}")}
    out: dict[str, str] = {}
    for f in CACHE_FORMATS:
        if f.pil_format is None:
            out[f.name] = "yes (numpy .npy, lossless)"
            continue
        key, lib = libs[f.pil_format]
        ok = features.check(key)
        out[f.name] = (f"yes ({lib}, quality {f.default_quality} by default)" if ok
                       else f"no: this Pillow build has no {f.pil_format} codec")
    return {"pillow": PIL.__version__, "formats": out}
