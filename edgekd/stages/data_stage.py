"""Data stage: materialise the dataset (synthetic videos when asked), fix the split, decode every
video once into the frame cache, and report every bad file at once."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgekd.data.cache import FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, make_loader
from edgekd.data.splits import DatasetSplit, load_split, read_folder_tree, read_ucf101, save_split
from edgekd.recipe import Recipe
from edgekd.stages.rundir import RunDir


class DataError(RuntimeError):
    """Bad or missing videos; the message lists every one with its reason."""


def dataset_root(rd: RunDir) -> Path:
    d = rd.recipe.data
    if d.source == "synthetic":
        return rd.stage_dir("data") / "synthetic"
    assert d.root is not None  # enforced by the recipe checks
    return Path(d.root).expanduser()


def run_data(rd: RunDir) -> dict[str, object]:
    r = rd.recipe
    d = r.data
    start = time.perf_counter()
    root = dataset_root(rd)
    if d.source == "synthetic":
        _make_synthetic(r, root)
    if d.source in ("synthetic", "ucf101"):
        split = read_ucf101(root, split=d.split if d.source == "ucf101" else 1, splits_dir=d.splits_dir,
                            val_fraction=d.val_fraction, seed=r.seed, on_missing=d.on_missing)
    else:
        split = read_folder_tree(root, seed=r.seed)
    if not split.train or not split.test:
        raise DataError(f"{root}: the split has {len(split.train)} train and {len(split.test)} test videos; need both")
    save_split(split, rd.stage_dir("data") / "split.json")
    cache = FrameCache(d.cache_dir, resize=d.resize)
    items = split.train + split.val + split.test
    failures = cache.warm([split.path(i) for i in items], workers=d.workers, desc="decode")
    if failures:
        lines = "\n".join(f"  {p}: {reason}" for p, reason in failures)
        raise DataError(f"{len(failures)} video(s) could not be decoded:\n{lines}")
    return {"root": str(root), "classes": len(split.classes), "train": len(split.train), "val": len(split.val),
            "test": len(split.test), "missing": len(split.missing), "decode_s": round(time.perf_counter() - start, 2)}


def _make_synthetic(r: Recipe, root: Path) -> None:
    from edgekd.data.synth import generate_dataset

    s = r.data.synthetic
    marker = root / "synth.json"
    if marker.is_file() and (root / "classInd.txt").is_file():
        meta = json.loads(marker.read_text())
        wanted = {"seed": r.seed, "per_class": s.per_class, "num_frames": s.num_frames, "size": list(s.size)}
        if all(meta.get(k) == v for k, v in wanted.items()) and (s.classes is None or meta.get("classes") == list(s.classes)):
            return
    generate_dataset(root, classes=s.classes, per_class=s.per_class, seed=r.seed, num_frames=s.num_frames,
                     size=s.size, clips_per_group=s.clips_per_group)


@dataclass
class DataContext:
    """What training, export and bench stages need from the data stage's outputs."""

    recipe: Recipe
    split: DatasetSplit
    cache: FrameCache
    spec: ClipSpec

    @classmethod
    def load(cls, rd: RunDir) -> DataContext:
        d = rd.recipe.data
        split_path = rd.stage_dir("data") / "split.json"
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path} is missing: run the data stage first")
        spec = ClipSpec(clip_len=d.clip_len, frame_interval=d.frame_interval, crop=d.crop)
        return cls(rd.recipe, load_split(split_path), FrameCache(d.cache_dir, resize=d.resize), spec)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (3, self.spec.clip_len, *self.spec.crop)

    def input_spec(self) -> dict[str, object]:
        d = self.recipe.data
        return {"clip_len": d.clip_len, "frame_interval": d.frame_interval, "resize": list(d.resize),
                "crop": list(d.crop), "mean": list(self.spec.mean), "std": list(self.spec.std), "layout": "NCTHW", "color": "RGB"}

    def dataset(self, subset: str, *, train: bool, clips_per_video: int = 1) -> ClipDataset:
        return ClipDataset(self.split, subset, self.cache, self.spec, train=train,
                           hflip=self.recipe.data.hflip, clips_per_video=clips_per_video)

    def train_loader(self, batch_size: int) -> DataLoader:
        return make_loader(self.dataset("train", train=True), batch_size=batch_size, shuffle=True,
                           workers=self.recipe.data.workers, seed=self.recipe.seed, drop_last=False)

    def eval_loader(self, subset: str, batch_size: int) -> DataLoader:
        ds = self.dataset(subset, train=False, clips_per_video=self.recipe.data.eval_clips)
        return make_loader(ds, batch_size=batch_size, shuffle=False, workers=self.recipe.data.workers, seed=self.recipe.seed)

    def eval_array(self, subset: str, *, clips_per_video: int = 1, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic eval clips as one float32 array: (N, C, T, H, W) for one clip per video,
        (N, K, C, T, H, W) for K. Used for parity checks, calibration and engine accuracy."""
        ds = self.dataset(subset, train=False, clips_per_video=clips_per_video)
        n = len(ds) if limit is None else min(limit, len(ds))
        clips, labels = [], []
        for i in range(n):
            x, y = ds[i]
            clips.append(x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
            labels.append(int(y))
        return np.stack(clips).astype(np.float32), np.asarray(labels, dtype=np.int64)
