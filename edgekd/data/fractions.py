"""Class-balanced training fractions (Camarena et al.: 100, 50, 25 and 2 % of the training data).

Each class keeps ``round(X% * n_class)`` of its training videos, at least one, so a 2 % run still
sees every class. The choice is seeded per class (``(seed, label)``) and takes a prefix of one fixed
permutation, so the subsets are nested: the 2 % videos are inside the 25 % ones, which are inside the
50 % ones. That keeps a fraction sweep a controlled experiment (more data, never different data).
Val and test are never reduced.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from edgekd.data.splits import DatasetSplit, VideoItem

__all__ = ["apply_fraction", "fraction_counts"]


def fraction_counts(n: int, percent: float) -> int:
    """How many of a class's ``n`` training videos a ``percent`` fraction keeps (>= 1 when n >= 1)."""
    if not 0 < percent <= 100:
        raise ValueError(f"fraction must be a percentage in (0, 100], got {percent!r}")
    if n == 0:
        return 0
    return min(n, max(1, math.floor(n * percent / 100 + 0.5)))


def apply_fraction(split: DatasetSplit, percent: float, *, seed: int) -> tuple[DatasetSplit, dict[str, Any]]:
    """``split`` with only ``percent`` % of each class's train videos, and a record of the choice.

    The record (written to ``data/fraction.json`` by the data stage) lists the kept videos and the
    per-class counts before and after.
    """
    by_class: dict[int, list[VideoItem]] = defaultdict(list)
    for it in split.train:
        by_class[it.label].append(it)
    kept: set[str] = set()
    per_class: dict[str, dict[str, int]] = {}
    for label, items in sorted(by_class.items()):
        ordered = sorted(items, key=lambda it: it.rel)
        perm = np.random.default_rng([seed, label]).permutation(len(ordered))
        k = fraction_counts(len(ordered), percent)
        kept.update(ordered[j].rel for j in perm[:k])
        per_class[split.classes[label]] = {"train": len(ordered), "kept": k}
    train = [it for it in split.train if it.rel in kept]
    reduced = DatasetSplit(split.root, split.classes, train, split.val, split.test, split.source, split.missing)
    if percent < 100:
        reduced.source += f"; train reduced to {percent:g}% per class (seed {seed})"
    record = {"percent": percent, "seed": seed, "train_before": len(split.train), "train_after": len(train),
              "per_class": per_class, "kept": [it.rel for it in train]}
    return reduced, record
