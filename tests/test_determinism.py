"""Deterministic mode: seeds, torch deterministic algorithms and seeded loader workers make two
runs of one recipe produce identical metrics on CPU, in fp32 (bit-equality is a fair promise of
fp32 kernels; bf16 kernels need not repeat themselves on every CPU, which the precision probe
checks, see test_precision.py); RNG snapshots survive weights-only loading."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.stages.runner import run_pipeline
from edgekd.stages.table import cli_commands
from edgekd.stages.validate import parse_recipe
from edgekd.utils.rng import capture_rng_state, deterministic_mode, restore_rng_state


def _draws(gen: torch.Generator) -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.normal(size=2).tolist(),
            [random.random() for _ in range(3)], random.gauss(0, 1), torch.randint(0, 10**9, (3,), generator=gen).tolist())


def test_rng_snapshot_roundtrip_through_weights_only_load(tmp_path):
    gen = torch.Generator().manual_seed(7)
    np.random.normal()  # leave a cached gaussian in numpy's legacy state
    random.gauss(0, 1)
    state = capture_rng_state(gen, None)
    torch.save({"rng": state}, tmp_path / "s.pt")
    first = _draws(gen)
    _draws(gen)  # move every stream on
    restore_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"], gen, None)
    assert _draws(gen) == first


def test_rng_snapshot_refuses_mismatched_loaders():
    state = capture_rng_state(torch.Generator())
    with pytest.raises(ValueError, match="1 loader generator"):
        restore_rng_state(state, torch.Generator(), torch.Generator())


def test_deterministic_mode_is_scoped():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_mode(False):
        assert torch.are_deterministic_algorithms_enabled() == before


def _run(root: Path) -> Path:
    recipe = parse_recipe({
        "name": "det", "seed": 5, "deterministic": True, "runs_dir": str(root / "runs"),
        "data": {"source": "synthetic", "synthetic": {"classes": ["walk", "sit_down", "stand_up"], "per_class": 6,
                                                      "clips_per_group": 2, "num_frames": 16, "size": [64, 48]},
                 "clip_len": 8, "frame_interval": 2, "resize": [32, 42], "crop": [32, 32], "val_fraction": 0.25,
                 "workers": 2, "cache_dir": str(root / "cache")},  # forked workers: their seeding is under test
        "teacher": {"model": "c3d_student", "width_mult": 0.125, "dropout": 0.3, "epochs": 2, "batch_size": 4, "lr": 0.002,
                    "precision": "fp32"},
        "student": {"model": "c3d_student", "width_mult": 0.125, "dropout": 0.3, "epochs": 2, "batch_size": 4, "lr": 0.002,
                    "precision": "fp32"},
    })
    return run_pipeline(recipe, cli_commands()["train"]).root


@pytest.mark.slow
def test_two_deterministic_runs_give_identical_metrics(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    for stage in ("teacher", "student_scratch"):
        rows = []
        for run in (a, b):
            lines = (run / stage / "metrics.jsonl").read_text().splitlines()
            rows.append([{k: v for k, v in json.loads(x).items() if k not in ("clips_per_s", "epoch_s")} for x in lines])
        assert len(rows[0]) == 2 and rows[0] == rows[1], stage
        sa = torch.load(a / stage / "ckpt.pt", weights_only=True)["state_dict"]
        sb = torch.load(b / stage / "ckpt.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), stage
        assert json.loads((a / stage / "stage.json").read_text())["outputs"] == \
            json.loads((b / stage / "stage.json").read_text())["outputs"]
