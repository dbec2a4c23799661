"""Decoded-frame cache: decode each video once, then memory-map it for every epoch.

On a 2-core CPU box video decoding, not the model, is the training bottleneck: a UCF101 clip
takes tens of milliseconds to decode but a cached, memory-mapped slice costs well under one. The
cache stores each video as a ``.npy`` of ``(N, H, W, 3)`` uint8 frames at a fixed ``resize``.

The key covers the resolved path, size, mtime and resize (plus a format version), so editing or
replacing a video, or changing the storage size, silently produces a new entry instead of serving
stale frames. Entries are written with an atomic rename, so several DataLoader workers decoding the
same video at once only waste work; they never see a half-written file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgekd.data.decode import VideoDecodeError, read_video
from edgekd.utils.atomic import atomic_path

__all__ = ["FrameCache", "CACHE_FORMAT_VERSION"]

CACHE_FORMAT_VERSION = 1


class FrameCache:
    """Disk cache of decoded, resized RGB frames, one ``.npy`` per video."""

    def __init__(self, cache_dir: str | Path, *, resize: tuple[int, int]) -> None:
        if len(resize) != 2 or any(int(v) != v or int(v) <= 0 for v in resize):
            raise ValueError(f"resize must be a (height, width) pair of positive ints, got {resize!r}")
        self.cache_dir = Path(cache_dir)
        self.resize = (int(resize[0]), int(resize[1]))

    def __repr__(self) -> str:
        return f"FrameCache({str(self.cache_dir)!r}, resize={self.resize})"

    def entry_path(self, path: str | Path) -> Path:
        """Where the frames of ``path`` are (or would be) cached; raises if the video is missing."""
        src = Path(path).resolve()
        try:
            st = src.stat()
        except FileNotFoundError:
            raise VideoDecodeError(path, "file not found") from None
        key_src = json.dumps([str(src), st.st_size, st.st_mtime_ns, list(self.resize), CACHE_FORMAT_VERSION])
        key = hashlib.sha1(key_src.encode("utf-8")).hexdigest()
        # A readable prefix makes the cache directory inspectable by hand.
        return self.cache_dir / key[:2] / f"{src.stem[:60]}-{key}.npy"

    def is_cached(self, path: str | Path) -> bool:
        """True when a cache entry for the current version of ``path`` exists."""
        return self.entry_path(path).is_file()

    def get(self, path: str | Path) -> np.ndarray:
        """Frames of ``path`` as a read-only memory-mapped ``(N, H, W, 3)`` uint8 array.

        Decodes (and stores) on first use; later calls, in any process, only map the file.
        """
        entry = self.entry_path(path)
        if entry.is_file():
            frames = _load(entry)
            if frames is not None:
                return frames
        self._store(path, entry)
        frames = _load(entry)
        if frames is None:
            raise VideoDecodeError(path, f"cache entry {entry} unreadable right after writing it")
        return frames

    def _store(self, path: str | Path, entry: Path) -> None:
        frames = read_video(path, resize=self.resize)
        with atomic_path(entry) as tmp:
            np.save(tmp, np.ascontiguousarray(frames), allow_pickle=False)

    def warm(
        self, paths: Sequence[Path], *, workers: int = 0, desc: str = "decode", progress: bool = True
    ) -> list[tuple[Path, str]]:
        """Decode every not-yet-cached video in ``paths``; return ALL failures as ``(path, reason)``.

        Run it before training so bad files are reported together up front (instead of one crash
        per epoch), and so DataLoader workers only ever memory-map. ``workers > 0`` decodes in a
        process pool (each worker with OpenCV single-threaded to avoid oversubscription).
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
        bar = tqdm(total=len(todo), desc=desc, unit="video", disable=not progress)
        jobs = [(str(self.cache_dir), self.resize, str(p)) for p in todo]
        try:
            if workers > 0:
                # Threads, not processes: OpenCV releases the GIL while decoding and resizing, so
                # threads scale; and forked children of a process that already ran OpenCV/OpenMP
                # threads can deadlock, while spawned ones re-import the caller's __main__.
                with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                    for p, reason in pool.map(_warm_one, jobs):
                        _record(failures, p, reason, bar)
            else:
                for job in jobs:
                    p, reason = _warm_one(job)
                    _record(failures, p, reason, bar)
        finally:
            bar.close()
        return failures


def _record(failures: dict[Path, str], p: str, reason: str | None, bar: tqdm) -> None:
    if reason is not None:
        failures[Path(p)] = reason
        bar.set_postfix(failed=len(failures))
    bar.update(1)


def _load(entry: Path) -> np.ndarray | None:
    """Memory-map a cache entry; ``None`` if it is unreadable (e.g. a foreign/corrupt file)."""
    try:
        frames = np.load(entry, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        return None
    return frames


def _warm_one(job: tuple[str, tuple[int, int], str]) -> tuple[str, str | None]:
    """Pool task: decode one video into the cache; report a failure reason instead of raising."""
    cache_dir, resize, path = job
    cache = FrameCache(cache_dir, resize=resize)
    try:
        cache.get(path)
    except VideoDecodeError as e:
        return path, e.reason
    except (OSError, ValueError, MemoryError) as e:  # disk full, permission, odd frames: still report all
        return path, f"{type(e).__name__}: {e}"
    return path, None
