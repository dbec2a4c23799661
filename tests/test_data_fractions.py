"""Class-balanced training fractions: per-class counts, at least one per class, seeded, nested."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from edgekd.data.fractions import apply_fraction, fraction_counts
from edgekd.data.splits import DatasetSplit, VideoItem


def split_with(counts: list[int]) -> DatasetSplit:
    train = [VideoItem(f"c{c}/v{i:03d}.avi", c) for c, n in enumerate(counts) for i in range(n)]
    test = [VideoItem(f"c{c}/t.avi", c) for c in range(len(counts))]
    return DatasetSplit(Path("/d"), [f"c{c}" for c in range(len(counts))], train, [test[0]], test, "src")


@pytest.mark.parametrize(("n", "pct", "kept"), [(100, 2, 2), (70, 2, 1), (9, 2, 1), (9, 25, 2), (10, 25, 3),
                                                (10, 50, 5), (7, 50, 4), (7, 100, 7), (1, 2, 1), (0, 50, 0)])
def test_counts(n: int, pct: float, kept: int) -> None:
    assert fraction_counts(n, pct) == kept


def test_bad_percent_rejected() -> None:
    for pct in (0, -5, 100.5):
        with pytest.raises(ValueError, match="percentage"):
            fraction_counts(10, pct)


def test_per_class_balanced_seeded_and_nested() -> None:
    split = split_with([100, 40, 3])
    subsets = {}
    for pct in (100, 50, 25, 2):
        reduced, record = apply_fraction(split, pct, seed=4)
        per = Counter(it.label for it in reduced.train)
        assert [per[c] for c in range(3)] == [fraction_counts(n, pct) for n in (100, 40, 3)]
        assert record["per_class"]["c1"] == {"train": 40, "kept": fraction_counts(40, pct)}
        assert record["kept"] == [it.rel for it in reduced.train] and record["train_after"] == len(reduced.train)
        assert reduced.val == split.val and reduced.test == split.test  # never reduced
        subsets[pct] = {it.rel for it in reduced.train}
        assert (pct < 100) == ("reduced to" in reduced.source)
    assert subsets[2] <= subsets[25] <= subsets[50] <= subsets[100]
    again, _ = apply_fraction(split, 25, seed=4)
    other, _ = apply_fraction(split, 25, seed=5)
    assert {it.rel for it in again.train} == subsets[25] != {it.rel for it in other.train}
