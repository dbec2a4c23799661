"""Clip sampling: turn cached videos into normalised ``(C, T, H, W)`` training/eval tensors.

The eval path (centre crop, centred/evenly spaced temporal windows) is fully deterministic and is
exposed as ``raw_clip`` in uint8, so calibration data and deploy-time parity checks feed engines
exactly the frames the PyTorch model was evaluated on. ``normalize_clip`` is numpy-only so the
torch-free edge runtime can share it byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.data.augment import apply_photometric, draw_clip, flip_flow
from edgekd.data.cache import FrameCache, Frames
from edgekd.data.flow import FlowCache
from edgekd.data.splits import DatasetSplit
from edgekd.recipe import AugmentParams
from edgekd.runtime.preprocess import (
    normalize_clip,  # numpy-only, shared with deploy bundles
)

__all__ = [
    "MODALITIES",
    "ClipDataset",
    "ClipSpec",
    "clip_starts",
    "crop_box",
    "frame_indices",
    "make_loader",
    "normalize_clip",
    "normalize_flow",
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


MODALITIES: tuple[str, ...] = ("rgb", "flow", "rgb+flow")


def normalize_flow(flow_uint8: np.ndarray, mean: tuple[float, float], std: tuple[float, float]) -> np.ndarray:
    """``(T, H, W, 2)`` uint8 flow code -> ``(2, T, H, W)`` float32 ``(u / 255 - mean) / std``.

    A 256-entry table per channel, as ``normalize_clip`` does for RGB.
    """
    if flow_uint8.ndim != 4 or flow_uint8.shape[-1] != 2 or flow_uint8.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 2) uint8 flow, got {flow_uint8.shape} {flow_uint8.dtype}")
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    planar = np.ascontiguousarray(flow_uint8.transpose(3, 0, 1, 2))
    out = np.empty(planar.shape, dtype=np.float32)
    for c in range(2):
        out[c] = ((levels - np.float32(mean[c])) / np.float32(std[c]))[planar[c]]
    return out


class ClipDataset(Dataset):
    """``(clip, label)`` pairs over one subset of a split, frames read from a ``FrameCache``.

    Train: random temporal start, random crop (same for every frame), optional horizontal flip and
    the photometric augmentation of the ``augment`` preset with ``augment_params``
    (``edgekd.data.augment``), all drawn once per clip.
    Eval: centre crop and ``clips_per_video`` evenly spaced windows (``(K, C, T, H, W)`` when K > 1).

    ``modality``: ``"rgb"`` (3-channel clips), ``"flow"`` (2-channel flow clips from ``flow_cache``)
    or ``"rgb+flow"`` (the RGB clip, with the flow of exactly the same frames, crop and flip in the
    extras as ``"flow"``). With ``with_extras`` every sample is ``(clip, label, extras)``, extras
    holding ``"clip_key"`` = ``(index in this subset, variant)``.

    Randomness: with ``aug_variants=None`` one draw of torch's RNG per sample seeds a numpy Generator,
    so sampling follows ``torch.manual_seed`` in the main process and the per-worker seeds a
    DataLoader derives from its generator; the variant is -1 (not reproducible per video). With
    ``aug_variants=V`` torch's RNG only picks ``v`` in ``[0, V)`` and every parameter derives from
    ``(seed, index, v)``: the same (video, v) always gives the identical clip, so a teacher's outputs
    can be cached by ``clip_key``.

    ``aug_schedule`` picks that ``v``: ``"random"`` draws it from torch's RNG per sample;
    ``"cycle"`` takes ``v = (epoch + offset(seed, index)) mod V`` with the epoch given by
    ``set_epoch`` (``fit`` calls it before each epoch's iterator, so freshly forked workers see it).
    Any V consecutive epochs then meet every (video, v) exactly once, and epoch ``e + V`` repeats
    epoch ``e``'s clips: a teacher-output cache is full after V epochs instead of after the long
    tail of random draws. The per-video offset spreads the variants within one epoch.
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
        augment: str = "none",
        augment_params: AugmentParams | None = None,
        modality: str = "rgb",
        flow_cache: FlowCache | None = None,
        flow_norm: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.5), (0.5, 0.5)),
        aug_variants: int | None = None,
        aug_schedule: str = "random",
        seed: int = 0,
        with_extras: bool = False,
        key_offset: int = 0,
    ) -> None:
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        if train and clips_per_video != 1:
            raise ValueError("clips_per_video > 1 is an evaluation option; training samples one random clip")
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if modality != "rgb" and flow_cache is None:
            raise ValueError(f"modality {modality!r} needs a flow cache (set data.flow in the recipe)")
        if aug_variants is not None and aug_variants < 1:
            raise ValueError(f"aug_variants must be >= 1 or None, got {aug_variants}")
        if aug_schedule not in ("random", "cycle"):
            raise ValueError(f"aug_schedule must be 'random' or 'cycle', got {aug_schedule!r}")
        if aug_schedule == "cycle" and aug_variants is None:
            raise ValueError("aug_schedule 'cycle' needs aug_variants (the number of variants to cycle through)")
        self.split = split
        self.subset = subset
        self.items = list(split.subset(subset))
        self.cache = cache
        self.spec = spec
        self.train = train
        self.hflip = hflip
        self.clips_per_video = clips_per_video
        self.augment = augment  # preset: none | camarena | hu (edgekd.data.augment)
        self.augment_params = augment_params or AugmentParams()
        self.modality = modality
        self.flow_cache = flow_cache
        self.flow_norm = flow_norm
        self.aug_variants = aug_variants
        self.aug_schedule = aug_schedule
        self.epoch = 0
        self.seed = seed
        self.with_extras = with_extras
        # added to the video index in clip keys and augmentation seeds: a second dataset (the
        # unlabelled transfer set) mixed into the same batches gets keys and draws of its own
        self.key_offset = key_offset
        ch, cw = spec.crop
        if ch > cache.resize[0] or cw > cache.resize[1]:
            raise ValueError(f"crop {spec.crop} is larger than the cached frame size {cache.resize}")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        """Label of every item, in dataset order (for class-balanced samplers and confusion matrices)."""
        return [it.label for it in self.items]

    def _frames(self, i: int) -> Frames:
        return self.cache.get(self.split.path(self.items[i]))

    def _flow(self, i: int) -> Frames:
        assert self.flow_cache is not None
        return self.flow_cache.get(self.split.path(self.items[i]))

    def _source(self, i: int) -> tuple[Frames | None, Frames | None]:
        """The cached RGB frames and/or flow this modality needs, opened but not decoded: a clip then
        decodes only the frames it indexes (packed formats) or copies them from the mapped file (raw)."""
        rgb = self._frames(i) if self.modality != "flow" else None
        flow = self._flow(i) if self.modality != "rgb" else None
        if rgb is not None and flow is not None and rgb.shape[:3] != flow.shape[:3]:
            raise ValueError(f"{self.split.path(self.items[i])}: flow {flow.shape[:3]} and frames {rgb.shape[:3]} "
                             "are not aligned; re-run the data stage with --force")
        return rgb, flow

    def raw_clip(self, i: int) -> np.ndarray:
        """The deterministic eval clip(s) of item ``i`` as uint8 before normalisation.

        ``(T, H, W, 3)`` when ``clips_per_video == 1``, else ``(K, T, H, W, 3)``; independent of
        ``train``. ``normalize_clip`` of it equals the eval ``__getitem__`` tensor.
        """
        return self._eval_windows(self._frames(i))

    def raw_flow(self, i: int) -> np.ndarray:
        """Flow counterpart of ``raw_clip``: ``(T, H, W, 2)`` or ``(K, T, H, W, 2)`` uint8 code."""
        return self._eval_windows(self._flow(i))

    def _eval_windows(self, frames: Frames) -> np.ndarray:
        n, h, w, _ = frames.shape
        y, x = crop_box(h, w, self.spec)
        ch, cw = self.spec.crop
        clips = [
            np.ascontiguousarray(frames[frame_indices(n, s, self.spec), y : y + ch, x : x + cw])
            for s in clip_starts(n, self.spec, self.clips_per_video)
        ]
        return clips[0] if self.clips_per_video == 1 else np.stack(clips)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the ``cycle`` schedule derives variants from (no effect with ``random``)."""
        self.epoch = int(epoch)

    def variant(self, i: int) -> int:
        """The variant item ``i`` uses now: cycled by epoch, or drawn from torch's RNG (``random``)."""
        assert self.aug_variants is not None
        if self.aug_schedule == "cycle":
            # a seed sequence other than the clip's own [seed, i, v]: the offset is independent of the params
            offset = int(np.random.default_rng([self.seed, self.key_offset + i, 2**32]).integers(self.aug_variants))
            return (self.epoch + offset) % self.aug_variants
        return int(torch.randint(0, self.aug_variants, ()).item())

    def _rng(self, i: int) -> tuple[np.random.Generator, int]:
        """The generator of one training sample and its variant (-1: not reproducible per video)."""
        if self.aug_variants is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item())), -1
        v = self.variant(i)
        return np.random.default_rng([self.seed, self.key_offset + i, v]), v

    def _train_sample(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Augmented uint8 ``(T, H, W, 3)`` RGB and/or ``(T, H, W, 2)`` flow clips of one draw."""
        rgb, flow = self._source(i)
        ref = rgb if rgb is not None else flow
        assert ref is not None
        n, h, w, _ = ref.shape
        d = draw_clip(rng, n_frames=n, height=h, width=w, span=self.spec.span, crop=self.spec.crop,
                      hflip=self.hflip, kind=self.augment, params=self.augment_params)
        idx = frame_indices(n, d.start, self.spec)
        ch, cw = self.spec.crop
        rgb_clip = flow_clip = None
        if rgb is not None:
            rgb_clip = rgb[idx, d.y : d.y + ch, d.x : d.x + cw]
            if d.flip:
                rgb_clip = rgb_clip[:, :, ::-1]
            # no copy for the flip: normalisation gathers channel planes from any strided view
            rgb_clip = apply_photometric(rgb_clip, d)
        if flow is not None:
            flow_clip = flow[idx, d.y : d.y + ch, d.x : d.x + cw]
            flow_clip = flip_flow(flow_clip) if d.flip else np.ascontiguousarray(flow_clip)
        return rgb_clip, flow_clip

    def _train_clip(self, i: int) -> np.ndarray:
        """One augmented uint8 training clip of the dataset's main modality (a fresh draw)."""
        rgb, flow = self._train_sample(i, self._rng(i)[0])
        out = rgb if rgb is not None else flow
        assert out is not None
        return out

    def _norm_rgb(self, clip: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(normalize_clip(clip, self.spec))

    def _norm_flow(self, clip: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(normalize_flow(clip, *self.flow_norm))

    def _norm_eval(self, raw: np.ndarray, norm: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        if self.clips_per_video == 1:
            return norm(raw)
        return torch.stack([norm(c) for c in raw])

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return self._item(i, None)

    def variant_item(self, i: int, v: int) -> tuple[Any, ...]:
        """Training item ``i`` in augmentation variant ``v`` (what ``__getitem__`` returns whenever
        the schedule picks ``v`` for it): how a teacher's outputs are computed ahead of training."""
        if not self.train or self.aug_variants is None or not 0 <= v < self.aug_variants:
            raise ValueError(f"variant_item needs a training dataset with aug_variants and 0 <= v < "
                             f"{self.aug_variants}, got train={self.train}, v={v}")
        return self._item(i, v)

    def _item(self, i: int, forced_v: int | None) -> tuple[Any, ...]:
        label = self.items[i].label
        v = -1
        if self.train:
            if forced_v is None:
                rng, v = self._rng(i)
            else:
                v = forced_v
                rng = np.random.default_rng([self.seed, self.key_offset + i, v])
            rgb_u8, flow_u8 = self._train_sample(i, rng)
            rgb = None if rgb_u8 is None else self._norm_rgb(rgb_u8)
            flow = None if flow_u8 is None else self._norm_flow(flow_u8)
        else:
            rgb = None if self.modality == "flow" else self._norm_eval(self.raw_clip(i), self._norm_rgb)
            flow = None if self.modality == "rgb" else self._norm_eval(self.raw_flow(i), self._norm_flow)
        clip = flow if self.modality == "flow" else rgb
        extras: dict[str, torch.Tensor] = {}
        if self.modality == "rgb+flow":
            extras["flow"] = flow  # type: ignore[assignment]
        if self.with_extras:
            extras["clip_key"] = torch.tensor([self.key_offset + i, v], dtype=torch.long)
        if extras:
            return clip, label, extras
        return clip, label


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

    Workers are forked and only read the cache (the data stage decodes every video first): they
    memory-map raw entries, or decode a clip's frames from a packed one with Pillow. They must not
    touch OpenCV: after the parent has used its thread pool, even ``cv2.setNumThreads`` in a forked
    child can deadlock on a lock held by a vanished thread.
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
