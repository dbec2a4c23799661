"""Which epoch's weights a training keeps: the best on val (default) or the last one."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from edgekd.train.loop import FitOptions, fit


def _loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 2, 4, 4, generator=g)
    y = torch.arange(16) % 2
    xv = torch.randn(6, 3, 2, 4, 4, generator=g)
    yv = torch.arange(6) % 2  # random inputs: val top-1 wanders, so best and last epochs differ
    train = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
    val = DataLoader(TensorDataset(xv, yv), batch_size=6, generator=torch.Generator().manual_seed(2))
    return train, val


@pytest.mark.parametrize("keep", ["best_val", "last"])
def test_on_best_gets_the_best_val_epoch_or_every_epoch(tmp_path, keep):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(96, 2))
    train, val = _loaders()
    kept: list[int] = []
    best = fit(model, train, val, FitOptions(epochs=6, lr=0.05, channels_last=False, keep=keep),
               on_best=lambda m, row: kept.append(row["epoch"]), metrics_path=tmp_path / "m.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    if keep == "last":
        assert kept == [1, 2, 3, 4, 5, 6] and best["epoch"] == 6
    else:
        top = max(rows, key=lambda r: (r["val_top1"], -r["val_loss"]))
        assert best["epoch"] == top["epoch"] == kept[-1]
        # called only on improvements: each kept epoch beats every earlier one
        for a, b in zip(kept, kept[1:]):
            ra, rb = rows[a - 1], rows[b - 1]
            assert (rb["val_top1"], -rb["val_loss"]) > (ra["val_top1"], -ra["val_loss"])
