"""Clip sampling: turn cached videos into normalised ``(C, T, H, W)`` training/eval tensors.

The eval path (centre crop, centred/evenly spaced temporal windows) is fully deterministic and is
exposed as ``raw_clip`` in uint8, so calibration data and deploy-time parity checks feed engines
exactly the frames the PyTorch model was evaluated on. ``normalize_clip`` is numpy-only so the
torch-free edge runtime can share it byte for byte.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.data.cache import FrameCache
from edgekd.data.splits import DatasetSplit

__all__ = [
    "ClipDataset",
    "ClipSpec",
    "clip_starts",
    "crop_box",
    "frame_indices",
    "make_loader",
    "normalize_clip",
]


@dataclass(frozen=True)
class ClipSpec:
    """What a model consumes: ``clip_len`` frames ``frame_interval`` apart, cropped and normalised.

    Defaults are the Kinetics-400 statistics used by torchvision's R(2+1)D/R3D video models.
    """

    clip_len: int = 16
    frame_interval: int = 1
    crop: tuple[int, int] = (112, 112)
    mean: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
    std: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.frame_interval < 1:
            raise ValueError(f"clip_len and frame_interval must be >= 1, got {self.clip_len}, {self.frame_interval}")
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise ValueError(f"crop must be a positive (height, width) pair, got {self.crop!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must have 3 entries and std > 0, got {self.mean!r}, {self.std!r}")

    @property
    def span(self) -> int:
        """Frames covered by one clip, first to last sampled frame inclusive."""
        return (self.clip_len - 1) * self.frame_interval + 1


def normalize_clip(frames_uint8: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(3, T, H, W)`` float32 ``(x / 255 - mean) / std`` (numpy only).

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


def frame_indices(n_frames: int, start: int, spec: ClipSpec) -> np.ndarray:
    """Indices of one clip; videos shorter than the span loop (indices modulo ``n_frames``)."""
    if n_frames < 1:
        raise ValueError("video has no frames")
    return (start + np.arange(spec.clip_len, dtype=np.int64) * spec.frame_interval) % n_frames


def clip_starts(n_frames: int, spec: ClipSpec, k: int) -> list[int]:
    """Deterministic eval starts: ``k == 1`` centres the clip; ``k > 1`` spreads them evenly."""
    max_start = max(0, n_frames - spec.span)
    if k == 1:
        return [max_start // 2]
    return [int(round(s)) for s in np.linspace(0, max_start, k)]


def crop_box(height: int, width: int, spec: ClipSpec) -> tuple[int, int]:
    """Top-left corner of the centre crop (floor division: same convention as torchvision)."""
    ch, cw = spec.crop
    return (height - ch) // 2, (width - cw) // 2


class ClipDataset(Dataset):
    """``(clip, label)`` pairs over one subset of a split, frames read from a ``FrameCache``.

    Train: random temporal start, random crop (same for every frame), optional horizontal flip.
    Eval: centre crop and ``clips_per_video`` evenly spaced windows (``(K, C, T, H, W)`` when K > 1).

    Randomness comes from one draw of torch's RNG per sample (seeding a numpy Generator for that
    sample), so it follows ``torch.manual_seed`` in the main process and the per-worker seeds that a
    DataLoader derives from its generator in workers: the same loader seed gives the same batches.
    """

    def __init__(
        self,
        split: DatasetSplit,
        subset: str,
        cache: FrameCache,
        spec: ClipSpec,
        *,
        train: bool,
        hflip: bool = True,
        clips_per_video: int = 1,
    ) -> None:
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        if train and clips_per_video != 1:
            raise ValueError("clips_per_video > 1 is an evaluation option; training samples one random clip")
        self.split = split
        self.subset = subset
        self.items = list(split.subset(subset))
        self.cache = cache
        self.spec = spec
        self.train = train
        self.hflip = hflip
        self.clips_per_video = clips_per_video
        ch, cw = spec.crop
        if ch > cache.resize[0] or cw > cache.resize[1]:
            raise ValueError(f"crop {spec.crop} is larger than the cached frame size {cache.resize}")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        """Label of every item, in dataset order (for class-balanced samplers and confusion matrices)."""
        return [it.label for it in self.items]

    def _frames(self, i: int) -> np.ndarray:
        return self.cache.get(self.split.path(self.items[i]))

    def raw_clip(self, i: int) -> np.ndarray:
        """The deterministic eval clip(s) of item ``i`` as uint8 before normalisation.

        ``(T, H, W, 3)`` when ``clips_per_video == 1``, else ``(K, T, H, W, 3)``; independent of
        ``train``. ``normalize_clip`` of it equals the eval ``__getitem__`` tensor.
        """
        frames = self._frames(i)
        n, h, w, _ = frames.shape
        y, x = crop_box(h, w, self.spec)
        ch, cw = self.spec.crop
        clips = [
            np.ascontiguousarray(frames[frame_indices(n, s, self.spec), y : y + ch, x : x + cw])
            for s in clip_starts(n, self.spec, self.clips_per_video)
        ]
        return clips[0] if self.clips_per_video == 1 else np.stack(clips)

    def _train_clip(self, i: int) -> np.ndarray:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        frames = self._frames(i)
        n, h, w, _ = frames.shape
        ch, cw = self.spec.crop
        start = int(rng.integers(0, max(0, n - self.spec.span) + 1))
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        clip = frames[frame_indices(n, start, self.spec), y : y + ch, x : x + cw]
        if self.hflip and rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        return np.ascontiguousarray(clip)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        label = self.items[i].label
        if self.train:
            return torch.from_numpy(normalize_clip(self._train_clip(i), self.spec)), label
        raw = self.raw_clip(i)
        if self.clips_per_video == 1:
            return torch.from_numpy(normalize_clip(raw, self.spec)), label
        return torch.from_numpy(np.stack([normalize_clip(c, self.spec) for c in raw])), label


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose order and (with ``workers > 0``) augmentation follow ``seed`` only.

    With ``workers == 0`` augmentation draws come from torch's global RNG: call
    ``torch.manual_seed`` as well for a fully reproducible run.

    Workers are forked and only memory-map cached frames (the data stage decodes everything
    first). They must not touch OpenCV's thread pool: after the parent has used it, even
    ``cv2.setNumThreads`` in a forked child can deadlock on a lock held by a vanished thread.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=gen,
        # Not persistent: with forked workers a new pool per epoch costs ~0.1 s, and no worker
        # outlives its loader (lingering workers were part of a SIGSEGV; see DEVELOPERS.md).
        persistent_workers=False,
        pin_memory=False,
        drop_last=drop_last,
    )
