"""Data stage: materialise the dataset (synthetic videos when asked), fix the split, decode every
video once into the frame cache (and its optical flow when asked), and report every bad file at once.

Before a long decode it prints how big the cache will grow and how long filling it will take,
estimated from a sample of the videos (``edgekd.data.estimate``), and refuses to start when the
cache would not fit in the free space, naming both numbers; ``edgekd data RECIPE --estimate``
prints the same and stops (:func:`estimate_data`).

Outputs in ``runs/<name>/data/``: ``split.json`` (the final lists, after skipping and the training
fraction), ``report.json`` (listed-but-missing videos, bad videos with reasons, counts, the cache's
format, estimate and size), ``fraction.json`` (which training videos the class-balanced fraction
kept) and ``flow.json`` (the optical-flow cost, ms per frame pair) when ``data.flow`` is set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgekd.data.augment import normalization_for
from edgekd.data.cache import FrameCache
from edgekd.data.clips import MODALITIES, ClipDataset, ClipSpec, make_loader
from edgekd.data.decode import VideoDecodeError
from edgekd.data.estimate import CacheEstimate, check_space, estimate_cache
from edgekd.data.flow import FlowCache
from edgekd.data.fractions import apply_fraction
from edgekd.data.mixing import MixedBatchSampler, MixedDataset
from edgekd.data.readers import read_dataset
from edgekd.data.splits import (
    VIDEO_EXTENSIONS,
    DatasetSplit,
    VideoItem,
    load_split,
    read_ucf101,
    save_split,
)
from edgekd.recipe import DataConfig, Recipe
from edgekd.stages.rundir import RunDir
from edgekd.utils.atomic import write_json


class DataError(RuntimeError):
    """Bad or missing videos; the message lists every one with its reason."""


def dataset_root(rd: RunDir) -> Path:
    d = rd.recipe.data
    if d.source == "synthetic":
        return rd.stage_dir("data") / "synthetic"
    assert d.root is not None  # enforced by the recipe checks
    return Path(d.root).expanduser()


def read_split(r: Recipe, root: Path) -> DatasetSplit:
    """The split the recipe asks for (synthetic data is written in the UCF101 layout)."""
    d = r.data
    if d.source == "synthetic":
        return read_ucf101(root, split=1, splits_dir=d.splits_dir, val_fraction=d.val_fraction, seed=r.seed,
                           on_missing=d.on_missing)
    return read_dataset(d.source, root, split=d.split, splits_dir=d.splits_dir, val_fraction=d.val_fraction,
                        seed=r.seed, on_missing=d.on_missing, group_regex=d.group_regex)


def frame_cache(d: DataConfig) -> FrameCache:
    """The frame cache the recipe's ``data`` section describes (directory, size, format, quality)."""
    return FrameCache(d.cache_dir, resize=d.resize, format=d.cache_format, quality=d.cache_quality)


ESTIMATE_SAMPLE = 8  # videos decoded to estimate the cache; fewer than 2x this to decode: no estimate


def estimate_data(recipe: Recipe, *, sample: int = ESTIMATE_SAMPLE) -> CacheEstimate:
    """``edgekd data RECIPE --estimate``: the cache's projected size and decode time for every video
    the data stage would decode (the split's and a folder transfer set's), from ``sample`` of them;
    nothing is written to the cache (a synthetic dataset is generated first: it is what gets cached)."""
    rd = RunDir(recipe)
    root = dataset_root(rd)
    if recipe.data.source == "synthetic":
        _make_synthetic(recipe, root)
    split = read_split(recipe, root)
    return estimate_cache(frame_cache(recipe.data), _paths_to_cache(rd, split), sample=sample,
                          threads=recipe.data.workers, flow=recipe.data.flow, seed=recipe.seed)


def _paths_to_cache(rd: RunDir, split: DatasetSplit) -> list[Path]:
    """Every video the stage decodes: the split's, then a folder transfer set's (a synthetic one is
    small and generated later; train_rest's videos are in the split already)."""
    paths = [split.path(i) for i in split.train + split.val + split.test]
    if rd.recipe.data.unlabeled.source == "folder":
        root, rels, _ = _folder_transfer(rd, split)
        paths += [root / rel for rel in rels]
    return paths


def _plan_cache(rd: RunDir, split: DatasetSplit, cache: FrameCache) -> CacheEstimate | None:
    """Print the estimate before a long decode and refuse to start, having written nothing, when it
    would not fit. Short lists skip it: decoding them is as quick as estimating."""
    d = rd.recipe.data
    paths = _paths_to_cache(rd, split)
    todo = sum(1 for p in dict.fromkeys(paths) if p.is_file() and not cache.is_cached(p))
    if todo < 2 * ESTIMATE_SAMPLE:
        return None
    est = estimate_cache(cache, paths, sample=ESTIMATE_SAMPLE, threads=d.workers, flow=d.flow, seed=rd.recipe.seed)
    print(est.report(), flush=True)
    check_space(est)
    return est


def run_data(rd: RunDir) -> dict[str, object]:
    r = rd.recipe
    d = r.data
    out = rd.stage_dir("data")
    start = time.perf_counter()
    root = dataset_root(rd)
    if d.source == "synthetic":
        _make_synthetic(r, root)
    split = read_split(r, root)
    cache = frame_cache(d)
    estimate = _plan_cache(rd, split, cache)
    items = split.train + split.val + split.test
    paths = [split.path(i) for i in items]
    bad = dict(cache.warm(paths, workers=d.workers, desc="decode"))
    bad.update(_too_short(cache, [p for p in paths if p not in bad], min_frames=_min_frames(d)))
    split = _drop_bad(split, bad, d.on_bad_video)
    full_train = list(split.train)
    split, fraction = apply_fraction(split, d.fraction, seed=r.seed)
    flow_stats = None
    if d.flow != "none":
        flow_cache = FlowCache(cache, d.flow)
        kept = [split.path(i) for i in split.train + split.val + split.test]
        flow_bad, flow_stats = flow_cache.warm(kept, workers=max(1, d.workers))
        if flow_bad:
            split = _drop_bad(split, dict(flow_bad), d.on_bad_video)
            bad.update(flow_bad)
        write_json(out / "flow.json", flow_stats)
    if not split.train or not split.test:
        raise DataError(f"{root}: the split has {len(split.train)} train and {len(split.test)} test videos; need both")
    unlabeled_report = None
    if d.unlabeled.enabled:
        transfer, unlabeled_report = _transfer_set(rd, split, full_train, cache)
        write_json(out / UNLABELED_FILE, transfer)
    else:
        (out / UNLABELED_FILE).unlink(missing_ok=True)
    save_split(split, out / "split.json")
    write_json(out / "fraction.json", fraction)
    report = {
        "source": split.source,
        "root": str(root),
        "missing": {"count": len(split.missing), "policy": d.on_missing, "videos": split.missing},
        "bad_videos": {"count": len(bad), "policy": d.on_bad_video,
                       "videos": [{"path": str(p), "reason": why} for p, why in bad.items()]},
        "counts": {"classes": len(split.classes), "train": len(split.train), "val": len(split.val),
                   "test": len(split.test)},
    }
    if unlabeled_report is not None:
        report["unlabeled"] = unlabeled_report
    report["cache"] = _cache_report(rd, split, cache, estimate)
    write_json(out / "report.json", report)
    outputs: dict[str, object] = {
        "root": str(root), "classes": len(split.classes), "train": len(split.train), "val": len(split.val),
        "test": len(split.test), "missing": len(split.missing), "bad_skipped": len(bad),
        "fraction": d.fraction, "decode_s": round(time.perf_counter() - start, 2),
        "cache_format": cache.label, "cache_bytes": report["cache"]["bytes"]}
    if flow_stats is not None:
        outputs["flow_ms_per_pair"] = flow_stats["ms_per_pair"]
    if unlabeled_report is not None:
        outputs["unlabeled"] = unlabeled_report["count"]
    return outputs


UNLABELED_FILE = "unlabeled.json"  # the transfer set: its root and videos (relative paths)


def _cache_report(rd: RunDir, split: DatasetSplit, cache: FrameCache,
                  estimate: CacheEstimate | None) -> dict[str, Any]:
    """The cache's format, the estimate printed before decoding (if one was made), and the bytes its
    entries for the final split (and transfer set) take, against their source videos' bytes."""
    paths = [split.path(i) for i in split.train + split.val + split.test]
    transfer = rd.stage_dir("data") / UNLABELED_FILE
    if transfer.is_file():
        t = json.loads(transfer.read_text())
        paths += [Path(t["root"]) / rel for rel in t["videos"]]
    flow = FlowCache(cache, rd.recipe.data.flow) if rd.recipe.data.flow != "none" else None
    frames = flow_bytes = source = 0
    for p in dict.fromkeys(paths):
        source += p.stat().st_size
        frames += cache.entry_path(p).stat().st_size
        if flow is not None:
            flow_bytes += flow.entry_path(p).stat().st_size
    return {"format": cache.format.name, "quality": cache.quality, "lossless": cache.format.lossless,
            "dir": str(cache.cache_dir), "bytes": frames + flow_bytes, "flow_bytes": flow_bytes,
            "source_bytes": source, "per_source": round((frames + flow_bytes) / source, 3) if source else None,
            "estimate": None if estimate is None else estimate.to_dict()}


def _transfer_set(rd: RunDir, split: DatasetSplit, full_train: list[VideoItem],
                  cache: FrameCache) -> tuple[dict[str, Any], dict[str, Any]]:
    """The unlabelled transfer set (``data.unlabeled``): listed, decoded into the frame cache like
    the labelled videos, bad ones reported (and dropped or raised per ``data.on_bad_video``). It
    never shares a video with the labelled splits: a folder's videos that are also listed for
    train, val or test are left out and counted."""
    r, d = rd.recipe, rd.recipe.data
    u = d.unlabeled
    overlap = 0
    if u.source == "synthetic":
        from edgekd.data.synth import generate_unlabeled

        root = rd.stage_dir("data") / "unlabeled"
        s = d.synthetic
        wanted = {"seed": r.seed, "count": u.count, "num_frames": s.num_frames, "size": list(s.size),
                  "classes": list(split.classes)}
        marker = root / "synth_unlabeled.json"
        meta = json.loads(marker.read_text()) if marker.is_file() else {}
        if any(meta.get(k) != v for k, v in wanted.items()):
            generate_unlabeled(root, count=u.count, classes=split.classes, seed=r.seed, num_frames=s.num_frames,
                               size=s.size)
        rels = _at_most(rd, [f"u_{i:05d}.avi" for i in range(u.count)])
    elif u.source == "folder":
        root, rels, overlap = _folder_transfer(rd, split)
    else:  # train_rest: the training videos the fraction left out
        root = split.root
        kept = {it.rel for it in split.train}
        rels = _at_most(rd, [it.rel for it in full_train if it.rel not in kept])
    paths = [root / rel for rel in rels]
    bad = dict(cache.warm(paths, workers=d.workers, desc="decode unlabelled"))
    bad.update(_too_short(cache, [p for p in paths if p not in bad], min_frames=_min_frames(d)))
    if bad and d.on_bad_video == "error":
        lines = "\n".join(f"  {p}: {why}" for p, why in bad.items())
        raise DataError(f"{len(bad)} unlabelled video(s) could not be used (data.on_bad_video: error; set it to "
                        f"skip to drop them):\n{lines}")
    rels = [rel for rel, p in zip(rels, paths) if p not in bad]
    if d.flow != "none":
        flow_bad, _ = FlowCache(cache, d.flow).warm([root / rel for rel in rels], workers=max(1, d.workers))
        bad.update(dict(flow_bad))
        rels = [rel for rel in rels if root / rel not in bad]
    if not rels and u.source != "train_rest":  # train_rest at fraction 100 is empty by design
        raise DataError(f"data.unlabeled ({u.source}): no usable video under {root}")
    transfer = {"source": u.source, "root": str(root), "videos": rels}
    report = {"source": u.source, "root": str(root), "count": len(rels), "in_labelled_splits_left_out": overlap,
              "bad_videos": {"count": len(bad), "policy": d.on_bad_video,
                             "videos": [{"path": str(p), "reason": why} for p, why in bad.items()]}}
    return transfer, report


def _folder_transfer(rd: RunDir, split: DatasetSplit) -> tuple[Path, list[str], int]:
    """A folder transfer set: its root, its videos (relative paths; none listed in the labelled
    splits, at most ``max_videos``) and how many labelled videos the folder held and were left out."""
    u = rd.recipe.data.unlabeled
    assert u.root is not None  # enforced by the recipe checks
    root = Path(u.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.unlabeled.root: {root} is not a directory")
    labelled = {split.path(it).resolve() for it in split.train + split.val + split.test}
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    rels = [p.relative_to(root).as_posix() for p in found if p.resolve() not in labelled]
    return root, _at_most(rd, rels), len(found) - len(rels)


def _at_most(rd: RunDir, rels: list[str]) -> list[str]:
    """``data.unlabeled.max_videos`` of ``rels``: a fixed sample (the recipe's seed), sorted by path."""
    u = rd.recipe.data.unlabeled
    if u.max_videos is None or len(rels) <= u.max_videos:
        return rels
    pick = np.random.default_rng([rd.recipe.seed, 31337]).permutation(len(rels))[: u.max_videos]
    return sorted(rels[i] for i in pick)


def _min_frames(d: DataConfig) -> int:
    return max(d.min_frames, 2 if d.flow != "none" else 1)


def _too_short(cache: FrameCache, paths: list[Path], *, min_frames: int) -> dict[Path, str]:
    """Videos that decoded but have fewer than ``min_frames`` frames (a still saved as a video)."""
    short: dict[Path, str] = {}
    for p in paths:
        try:
            n = cache.get(p).shape[0]
        except VideoDecodeError as e:
            short[p] = e.reason
            continue
        if n < min_frames:
            short[p] = f"too short: {n} frame(s), data.min_frames needs {min_frames}"
    return short


def _drop_bad(split: DatasetSplit, bad: dict[Path, str], policy: str) -> DatasetSplit:
    """``error``: raise listing every bad file; ``skip``: the split without them.

    Items are removed by identity, and each keeps the label it was listed with, so skipping can
    never shift a label onto another clip.
    """
    if not bad:
        return split
    if policy == "error":
        lines = "\n".join(f"  {p}: {reason}" for p, reason in bad.items())
        raise DataError(f"{len(bad)} video(s) could not be used (data.on_bad_video: error; set it to skip "
                        f"to drop them):\n{lines}")

    def keep(items: list[VideoItem]) -> list[VideoItem]:
        return [it for it in items if split.path(it) not in bad]

    source = f"{split.source}; {len(bad)} bad video(s) skipped (see report.json)"
    return DatasetSplit(split.root, split.classes, keep(split.train), keep(split.val), keep(split.test), source,
                        split.missing)


def _make_synthetic(r: Recipe, root: Path) -> None:
    from edgekd.data.synth import generate_dataset

    s = r.data.synthetic
    marker = root / "synth.json"
    if marker.is_file() and (root / "classInd.txt").is_file():
        meta = json.loads(marker.read_text())
        wanted = {"seed": r.seed, "per_class": s.per_class, "num_frames": s.num_frames, "size": list(s.size),
                  "clips_per_group": s.clips_per_group, "test_per_class": s.test_per_class}
        if all(meta.get(k) == v for k, v in wanted.items()) and (s.classes is None or meta.get("classes") == list(s.classes)):
            return
    generate_dataset(root, classes=s.classes, per_class=s.per_class, seed=r.seed, num_frames=s.num_frames,
                     size=s.size, clips_per_group=s.clips_per_group, test_per_class=s.test_per_class)


@dataclass
class DataContext:
    """What training, export and bench stages need from the data stage's outputs.

    Loaders take a ``modality``: ``"rgb"``, ``"flow"`` (2-channel flow clips) or ``"rgb+flow"``
    (batches ``(rgb, labels, {"flow": flow, ...})`` with flow of the same frames, crop and flip).
    Training batches are always ``(clips, labels, extras)`` with ``extras["clip_key"]`` = ``(B, 2)``
    ``(video index in the train subset, variant)``; the variant is -1 unless the network trains on
    augmentation variants (its ``aug_variants``; see ``ClipDataset``).
    """

    recipe: Recipe
    split: DatasetSplit
    cache: FrameCache
    spec: ClipSpec
    flow_cache: FlowCache | None = None
    # the unlabelled transfer set as a split whose train list holds its videos, labelled -1
    unlabeled: DatasetSplit | None = None

    @classmethod
    def load(cls, rd: RunDir) -> DataContext:
        d = rd.recipe.data
        split_path = rd.stage_dir("data") / "split.json"
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path} is missing: run the data stage first")
        norm = normalization_for(d.augment)
        spec = ClipSpec(clip_len=d.clip_len, frame_interval=d.frame_interval, crop=d.crop,
                        mean=norm["rgb_mean"], std=norm["rgb_std"])  # type: ignore[arg-type]
        cache = frame_cache(d)
        flow = FlowCache(cache, d.flow) if d.flow != "none" else None
        split = load_split(split_path)
        unlabeled = None
        transfer_path = rd.stage_dir("data") / UNLABELED_FILE
        if d.unlabeled.enabled:
            if not transfer_path.is_file():
                raise FileNotFoundError(f"{transfer_path} is missing: run the data stage (data.unlabeled is set)")
            t = json.loads(transfer_path.read_text())
            if t["videos"]:  # empty: train_rest at fraction 100
                unlabeled = DatasetSplit(Path(t["root"]), split.classes, [VideoItem(rel, -1) for rel in t["videos"]],
                                         [], [], f"unlabelled transfer set ({t['source']})")
        return cls(rd.recipe, split, cache, spec, flow, unlabeled)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (3, self.spec.clip_len, *self.spec.crop)

    def input_spec(self, modality: str = "rgb") -> dict[str, object]:
        """The model-input contract saved in checkpoints: shape, normalisation and modality.

        ``rgb``/``rgb+flow``: the RGB clip's mean/std (``rgb+flow`` adds ``flow_mean``/``flow_std``);
        ``flow``: ``mean``/``std`` are the 2 flow channels' and ``color`` is ``"FLOW_XY"``.
        """
        self._check_modality(modality)
        d = self.recipe.data
        norm = normalization_for(d.augment)
        spec: dict[str, object] = {
            "clip_len": d.clip_len, "frame_interval": d.frame_interval, "resize": list(d.resize), "crop": list(d.crop),
            "mean": list(self.spec.mean), "std": list(self.spec.std), "layout": "NCTHW", "color": "RGB",
            "modality": modality, "normalization": "activitynet_mean" if d.augment == "hu" else "kinetics"}
        if modality == "flow":
            spec.update(mean=list(norm["flow_mean"]), std=list(norm["flow_std"]), color="FLOW_XY")
        if modality != "rgb":
            spec.update(flow=d.flow, flow_bound=20.0)
        if modality == "rgb+flow":
            spec.update(flow_mean=list(norm["flow_mean"]), flow_std=list(norm["flow_std"]))
        return spec

    def _check_modality(self, modality: str) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if modality != "rgb" and self.flow_cache is None:
            raise ValueError(f"modality {modality!r} needs optical flow: set data.flow (tvl1 or farneback) in the "
                             "recipe and re-run the data stage")

    def dataset(self, subset: str, *, train: bool, clips_per_video: int = 1, modality: str = "rgb",
                aug_variants: int | None = None, aug_schedule: str = "random") -> ClipDataset:
        """Clips of ``subset``: training ones augmented (random draws, or ``aug_variants`` fixed
        variants per video under ``aug_schedule``), evaluation ones centred and deterministic."""
        self._check_modality(modality)
        d = self.recipe.data
        norm = normalization_for(d.augment)
        return ClipDataset(self.split, subset, self.cache, self.spec, train=train, hflip=d.hflip,
                           clips_per_video=clips_per_video, augment=d.augment if train else "none",
                           augment_params=d.augment_params, modality=modality,
                           flow_cache=self.flow_cache, flow_norm=(norm["flow_mean"], norm["flow_std"]),  # type: ignore[arg-type]
                           aug_variants=aug_variants if train else None, aug_schedule=aug_schedule if train else "random",
                           seed=self.recipe.seed, with_extras=train)

    def train_loader(self, batch_size: int, modality: str = "rgb", seed: int | None = None,
                     aug_variants: int | None = None, aug_schedule: str = "random") -> DataLoader:
        """Shuffled, augmented training batches; ``seed`` (default the recipe's) orders them."""
        ds = self.dataset("train", train=True, modality=modality, aug_variants=aug_variants, aug_schedule=aug_schedule)
        return make_loader(ds, batch_size=batch_size, shuffle=True, workers=self.recipe.data.workers,
                           seed=self.recipe.seed if seed is None else seed, drop_last=False)

    def unlabeled_dataset(self, modality: str = "rgb", aug_variants: int | None = None,
                          aug_schedule: str = "random") -> ClipDataset:
        """The transfer set as augmented training clips (label -1), with clip keys and augmentation
        draws of its own (offset past the labelled training videos)."""
        if self.unlabeled is None:
            raise ValueError("no unlabelled transfer set: set data.unlabeled in the recipe and re-run the data stage")
        self._check_modality(modality)
        d = self.recipe.data
        norm = normalization_for(d.augment)
        return ClipDataset(self.unlabeled, "train", self.cache, self.spec, train=True, hflip=d.hflip,
                           augment=d.augment, augment_params=d.augment_params, modality=modality,
                           flow_cache=self.flow_cache, flow_norm=(norm["flow_mean"], norm["flow_std"]),  # type: ignore[arg-type]
                           aug_variants=aug_variants, aug_schedule=aug_schedule, seed=self.recipe.seed,
                           with_extras=True, key_offset=len(self.split.train))

    def mixed_train_loader(self, batch_size: int, ratio: float, modality: str = "rgb", seed: int | None = None,
                           aug_variants: int | None = None, aug_schedule: str = "random",
                           transfer_variants: int | None = None) -> DataLoader:
        """Training batches mixing labelled clips with transfer-set clips (``edgekd.data.mixing``):
        as many batches of ``batch_size`` as :meth:`train_loader` gives, ``ratio`` of each unlabelled.
        ``transfer_variants`` (default ``aug_variants``): variants per transfer-set video."""
        labelled = self.dataset("train", train=True, modality=modality, aug_variants=aug_variants,
                                aug_schedule=aug_schedule)
        tv = aug_variants if transfer_variants is None else transfer_variants
        mixed = MixedDataset(labelled, self.unlabeled_dataset(modality, tv, aug_schedule))
        gen = torch.Generator()
        gen.manual_seed(self.recipe.seed if seed is None else seed)
        sampler = MixedBatchSampler(len(labelled), len(mixed.unlabelled), batch_size=batch_size, ratio=ratio,
                                    generator=gen)
        return DataLoader(mixed, batch_sampler=sampler, num_workers=self.recipe.data.workers, generator=gen,
                          persistent_workers=False, pin_memory=False)

    def eval_loader(self, subset: str, batch_size: int, modality: str = "rgb") -> DataLoader:
        ds = self.dataset(subset, train=False, clips_per_video=self.recipe.data.eval_clips, modality=modality)
        return make_loader(ds, batch_size=batch_size, shuffle=False, workers=self.recipe.data.workers, seed=self.recipe.seed)

    def eval_array(self, subset: str, *, clips_per_video: int = 1, limit: int | None = None,
                   modality: str = "rgb") -> Any:
        """Deterministic eval clips as one float32 array: (N, C, T, H, W) for one clip per video,
        (N, K, C, T, H, W) for K; C is 3 for ``rgb``, 2 for ``flow``. Used for parity checks,
        calibration and engine accuracy. Returns ``(clips, labels)``, or ``(rgb, labels, flow)`` for
        ``modality="rgb+flow"``."""
        ds = self.dataset(subset, train=False, clips_per_video=clips_per_video, modality=modality)
        n = len(ds) if limit is None else min(limit, len(ds))
        clips, flows, labels = [], [], []
        for i in range(n):
            sample = ds[i]
            clips.append(_np(sample[0]))
            labels.append(int(sample[1]))
            if modality == "rgb+flow":
                flows.append(_np(sample[2]["flow"]))
        x, y = np.stack(clips).astype(np.float32), np.asarray(labels, dtype=np.int64)
        if modality == "rgb+flow":
            return x, y, np.stack(flows).astype(np.float32)
        return x, y


def _np(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
