"""Decoded-frame cache: decode each video once, then read clips from it for every epoch.

On a 2-core CPU box video decoding, not the model, is the training bottleneck: a UCF101 video
takes about 0.1 s to decode, a clip read from the cache a few milliseconds. The cache stores each
video's frames at a fixed ``resize`` in one file, in a format of the table in
``edgekd.data.formats``: ``raw`` (an uncompressed ``(N, H, W, 3)`` uint8 ``.npy``, memory-mapped,
lossless, about 38x the source video) or JPEG/WebP frames packed with an offset index (about 3-4x
the source), of which a clip decodes only the frames it reads.

The key covers the resolved path, size, mtime and resize (plus a format version), and for packed
formats the format and its quality, so editing or replacing a video, or changing how it is stored,
produces a new entry instead of serving stale frames. (Raw keys are what they were before packed
formats existed, so existing raw caches stay valid.) Entries are written under a temporary name in
their own directory and renamed, which is atomic on a local disk and on NFS: several writers
(threads of the data stage, DataLoader workers, the nodes of a multi-node run sharing the cache)
decoding the same video at once only waste work, and no reader sees a half-written entry. A damaged
entry (a truncated copy, a foreign file) reads as missing and is decoded again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgekd.data.decode import VideoDecodeError, read_video
from edgekd.data.formats import (
    PACK_VERSION,
    CacheFormat,
    PackedFrames,
    get_format,
    open_packed,
    pack_frames,
    write_packed,
)
from edgekd.utils.atomic import atomic_path

__all__ = ["CACHE_FORMAT_VERSION", "FrameCache", "Frames", "load_entry", "store_entry"]

CACHE_FORMAT_VERSION = 1

# What the caches hand out: both index like an (N, H, W, C) uint8 array (shape, frames[idx, y0:y1,
# x0:x1], np.asarray); a packed entry decodes only the frames indexed.
Frames = np.ndarray | PackedFrames


class FrameCache:
    """Disk cache of decoded, resized RGB frames, one file per video, in ``format`` (a row of
    ``edgekd.data.formats.CACHE_FORMATS``; ``quality`` for the lossy ones, their default if None).

    ``raw`` is the default here, the lossless choice for library callers; recipes default to the
    compact format (``data.cache_format``).
    """

    def __init__(self, cache_dir: str | Path, *, resize: tuple[int, int], format: str = "raw",
                 quality: int | None = None) -> None:
        if len(resize) != 2 or any(int(v) != v or int(v) <= 0 for v in resize):
            raise ValueError(f"resize must be a (height, width) pair of positive ints, got {resize!r}")
        self.cache_dir = Path(cache_dir)
        self.resize = (int(resize[0]), int(resize[1]))
        self.format = get_format(format)
        self.quality = self.format.resolve_quality(quality)

    def __repr__(self) -> str:
        return f"FrameCache({str(self.cache_dir)!r}, resize={self.resize}, format={self.label!r})"

    @property
    def label(self) -> str:
        """``raw``, or the format with its quality (``webp q90``)."""
        return self.format.name if self.quality is None else f"{self.format.name} q{self.quality}"

    def entry_path(self, path: str | Path) -> Path:
        """Where the frames of ``path`` are (or would be) cached; raises if the video is missing."""
        src = Path(path).resolve()
        try:
            st = src.stat()
        except FileNotFoundError:
            raise VideoDecodeError(path, "file not found") from None
        fields: list[object] = [str(src), st.st_size, st.st_mtime_ns, list(self.resize), CACHE_FORMAT_VERSION]
        if self.format.packed:
            fields += [self.format.name, self.quality, PACK_VERSION]
        key = hashlib.sha1(json.dumps(fields).encode("utf-8")).hexdigest()
        # A readable prefix makes the cache directory inspectable by hand.
        return self.cache_dir / key[:2] / f"{src.stem[:60]}-{key}{self.format.suffix}"

    def is_cached(self, path: str | Path) -> bool:
        """True when a cache entry for the current version of ``path`` exists."""
        return self.entry_path(path).is_file()

    def get(self, path: str | Path) -> Frames:
        """Frames of ``path``: a read-only memory-mapped ``(N, H, W, 3)`` uint8 array (raw) or a
        :class:`~edgekd.data.formats.PackedFrames` that decodes the frames indexed.

        Decodes (and stores) on first use; later calls, in any process, only map the file.
        """
        entry = self.entry_path(path)
        if entry.is_file():
            frames = load_entry(entry, self.format, channels=3)
            if frames is not None:
                return frames
        self._store(path, entry)
        frames = load_entry(entry, self.format, channels=3)
        if frames is None:
            raise VideoDecodeError(path, f"cache entry {entry} unreadable right after writing it")
        return frames

    def ensure(self, path: str | Path) -> int:
        """Decode ``path`` into the cache unless a readable entry is there; the entry's size in bytes."""
        entry = self.entry_path(path)
        if entry.is_file() and load_entry(entry, self.format, channels=3) is not None:
            return entry.stat().st_size
        return self._store(path, entry)

    def encode(self, frames: np.ndarray) -> bytes:
        """The bytes an entry of ``frames`` would hold (what the size estimate measures)."""
        if self.format.packed:
            return pack_frames(frames, self.format, self.quality)  # type: ignore[arg-type]
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(frames), allow_pickle=False)
        return buf.getvalue()

    def _store(self, path: str | Path, entry: Path) -> int:
        return store_entry(entry, read_video(path, resize=self.resize), self.format, self.quality)

    def warm(
        self, paths: Sequence[Path], *, workers: int = 0, desc: str = "decode", progress: bool = True
    ) -> list[tuple[Path, str]]:
        """Decode every not-yet-cached video in ``paths``; return ALL failures as ``(path, reason)``.

        Run it before training so bad files are reported together up front (instead of one crash
        per epoch), and so DataLoader workers only ever read the cache. ``workers > 0`` decodes in
        that many threads. The progress bar shows the ETA and the bytes written so far.
        """
        todo: list[Path] = []
        failures: dict[Path, str] = {}
        for p in dict.fromkeys(Path(p) for p in paths):  # de-duplicated, order kept
            try:
                if not self.is_cached(p):
                    todo.append(p)
            except VideoDecodeError as e:
                failures[p] = e.reason
        if todo:
            failures.update(self._decode_many(todo, workers=workers, desc=desc, progress=progress))
        order = {p: i for i, p in enumerate(Path(p) for p in paths)}
        return sorted(failures.items(), key=lambda kv: order[kv[0]])

    def _decode_many(self, todo: list[Path], *, workers: int, desc: str, progress: bool) -> dict[Path, str]:
        failures: dict[Path, str] = {}
        written = [0]
        bar = tqdm(total=len(todo), desc=desc, unit="video", disable=not progress)
        jobs = [(self, str(p)) for p in todo]
        try:
            if workers > 0:
                # Threads, not processes: OpenCV, Pillow's encoders and numpy release the GIL, so
                # threads scale; and forked children of a process that already ran OpenCV/OpenMP
                # threads can deadlock, while spawned ones re-import the caller's __main__.
                with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                    for result in pool.map(_warm_one, jobs):
                        _record(failures, result, bar, written)
            else:
                for job in jobs:
                    _record(failures, _warm_one(job), bar, written)
        finally:
            bar.close()
        return failures


def _record(failures: dict[Path, str], result: tuple[str, str | None, int], bar: tqdm, written: list[int]) -> None:
    p, reason, nbytes = result
    written[0] += nbytes
    if reason is not None:
        failures[Path(p)] = reason
    bar.set_postfix(written=f"{written[0] / 1e9:.2f}GB", failed=len(failures), refresh=False)
    bar.update(1)


def store_entry(entry: Path, frames: np.ndarray, fmt: CacheFormat, quality: int | None) -> int:
    """Write ``frames`` to ``entry`` in ``fmt`` atomically; returns the entry's size in bytes."""
    if fmt.packed:
        assert quality is not None
        return write_packed(entry, frames, fmt, quality)
    with atomic_path(entry) as tmp:
        np.save(tmp, np.ascontiguousarray(frames), allow_pickle=False)
        size = tmp.stat().st_size
    return size


def load_entry(entry: Path, fmt: CacheFormat, *, channels: int) -> Frames | None:
    """Open a cache entry of ``(N, H, W, channels)`` uint8 frames without decoding it; ``None`` if it
    is unreadable (missing, foreign, truncated or corrupt), so the caller re-creates it."""
    if fmt.packed:
        frames: Frames | None = open_packed(entry)
        if frames is None or frames.format is not fmt or frames.shape[-1] != channels:
            return None
        return frames
    try:
        arr = np.load(entry, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != channels or arr.shape[0] == 0:
        return None
    return arr


def _warm_one(job: tuple[FrameCache, str]) -> tuple[str, str | None, int]:
    """Pool task: decode one video into the cache; report a failure reason instead of raising."""
    cache, path = job
    try:
        return path, None, cache.ensure(path)
    except VideoDecodeError as e:
        return path, e.reason, 0
    except (OSError, ValueError, MemoryError) as e:  # disk full, permission, odd frames: still report all
        return path, f"{type(e).__name__}: {e}", 0
