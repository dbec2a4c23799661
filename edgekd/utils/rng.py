"""Seeding, deterministic mode, and RNG state snapshots a resume checkpoint can hold.

A resumed run is bit-identical to an uninterrupted one only if every random stream continues where
it stopped: torch's global generator (dropout, augmentation draws with ``workers == 0``), numpy's and
Python's global generators, and each DataLoader's own generator (shuffling order, and the base seed
its workers derive their seeds from). The snapshots are tensors and plain Python values, because
resume checkpoints are read with ``torch.load(weights_only=True)``, which refuses numpy arrays and
arbitrary pickles.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (CUDA included when present)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` (and cuDNN's deterministic settings) inside the
    block, restored afterwards so a library caller's global state is left as it was.

    Worker seeding needs nothing extra: a DataLoader built by ``make_loader`` has a generator seeded
    from the recipe seed, each worker's torch/numpy/random seeds are derived from a base seed drawn
    from that generator, and the generator's state is saved in resume checkpoints.
    """
    if not enabled:
        yield
        return
    was = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    # CUDA matmuls are deterministic only with a fixed cuBLAS workspace (PyTorch raises otherwise)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def capture_rng_state(*generators: torch.Generator | None) -> dict[str, Any]:
    """Global torch/numpy/Python RNG states plus the states of ``generators`` (``None`` kept as
    ``None``), as tensors and plain values only."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "generators": [None if g is None else g.get_state() for g in generators],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], *generators: torch.Generator | None) -> None:
    """Inverse of :func:`capture_rng_state` (generators in the same order)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(f"resume state holds {len(saved)} loader generator(s), the loaders have {len(generators)}")
    for g, s in zip(generators, saved):
        if (g is None) != (s is None):
            raise ValueError("resume state and loaders disagree on which loaders have a generator")
        if g is not None:
            g.set_state(s)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
