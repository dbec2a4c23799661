"""Batches that mix labelled clips with clips of the unlabelled transfer set (for distillation).

A distilled student sees the same number of batches per epoch, of the same size, as the scratch
student it is compared with: ``ceil(n_labelled / batch_size)`` steps of ``batch_size`` clips. In
each, ``round(ratio * batch_size)`` clips come from the transfer set (label -1: the loss gives them
the teacher's soft term only) and the rest are labelled. So distillation costs the scratch
student's training steps plus the teacher's passes; the price is that each labelled clip is seen
``1 - ratio`` as often, and what it buys is clips the scratch student never sees.

Every random choice comes from the loader's ``torch.Generator``, one permutation per stream and
epoch, so the order is reproducible and a run resumed at an epoch boundary (which restores that
generator) continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

__all__ = ["MixedBatchSampler", "MixedDataset", "split_batch_size"]


def split_batch_size(batch_size: int, ratio: float) -> tuple[int, int]:
    """``(labelled, unlabelled)`` clips per batch: at least one of each when ``0 < ratio`` and
    ``batch_size >= 2``; ``ratio == 0`` keeps every clip labelled."""
    if batch_size < 1 or not 0 <= ratio < 1:
        raise ValueError(f"need batch_size >= 1 and 0 <= ratio < 1, got {batch_size}, {ratio}")
    if ratio == 0 or batch_size == 1:
        return batch_size, 0
    n_u = min(batch_size - 1, max(1, round(ratio * batch_size)))
    return batch_size - n_u, n_u


class MixedDataset(ConcatDataset):
    """The labelled training dataset followed by the transfer set; ``set_epoch`` reaches both
    (their augmentation variants follow the epoch under the ``cycle`` schedule)."""

    def __init__(self, labelled: Dataset, unlabelled: Dataset) -> None:
        super().__init__([labelled, unlabelled])
        self.labelled, self.unlabelled = labelled, unlabelled

    def set_epoch(self, epoch: int) -> None:
        for part in (self.labelled, self.unlabelled):
            fn = getattr(part, "set_epoch", None)
            if callable(fn):
                fn(epoch)


class MixedBatchSampler(Sampler[list[int]]):
    """Index batches over a :class:`MixedDataset`: ``n_l`` labelled then ``n_u`` unlabelled indices."""

    def __init__(self, n_labelled: int, n_unlabelled: int, *, batch_size: int, ratio: float,
                 generator: torch.Generator) -> None:
        if n_labelled < 1 or n_unlabelled < 1:
            raise ValueError(f"need labelled and unlabelled clips, got {n_labelled} and {n_unlabelled}")
        self.n_labelled, self.n_unlabelled = n_labelled, n_unlabelled
        self.per_batch = split_batch_size(batch_size, ratio)
        self.steps = math.ceil(n_labelled / batch_size)
        self.generator = generator

    def __len__(self) -> int:
        return self.steps

    def _stream(self, n: int, need: int) -> list[int]:
        """``need`` indices of ``range(n)``: whole shuffled passes, the last one cut short."""
        out: list[int] = []
        while len(out) < need:
            out += torch.randperm(n, generator=self.generator).tolist()
        return out[:need]

    def __iter__(self) -> Iterator[list[int]]:
        b_l, b_u = self.per_batch
        labelled = self._stream(self.n_labelled, self.steps * b_l)
        unlabelled = self._stream(self.n_unlabelled, self.steps * b_u)
        for s in range(self.steps):
            yield labelled[s * b_l:(s + 1) * b_l] + [self.n_labelled + u for u in unlabelled[s * b_u:(s + 1) * b_u]]
