"""The one interface every inference backend is benchmarked and evaluated through.

Keeping each backend behind ``infer`` + ``describe`` means the evaluation and latency code never
branches on the backend, and every result row can carry an honest ``describe()``: which library
and version ran it, in which precision *as read back from the runtime* (not as requested), with
how many threads, on what device, from which file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["DESCRIBE_KEYS", "Engine", "check_batch", "check_logits"]

# Keys every describe() returns (adapters may add more).
DESCRIBE_KEYS = (
    "name",
    "backend",
    "backend_version",
    "precision",
    "inference_precision_hint",
    "threads",
    "device",
    "model_file",
)


class Engine(ABC):
    """A compiled model: ``(N, C, T, H, W)`` float32 clips in, ``(N, K)`` float32 logits out."""

    name: str

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for ``batch``; validates shape and dtype rather than casting silently."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance of this engine for reports; contains at least :data:`DESCRIBE_KEYS`."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.infer(batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_batch(batch: Any, engine_name: str) -> np.ndarray:
    """Return ``batch`` as a C-contiguous float32 ``(N, C, T, H, W)`` array or raise.

    Any other dtype is an error, not a cast: float64 -> float32 would be a silent precision change
    and integer pixels mean the caller forgot to normalise.
    """
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"{engine_name}: expected a numpy array, got {type(batch).__name__}")
    if batch.dtype != np.float32:
        raise TypeError(f"{engine_name}: expected float32 clips, got dtype {batch.dtype}")
    if batch.ndim != 5:
        raise ValueError(f"{engine_name}: expected (N, C, T, H, W), got shape {tuple(batch.shape)}")
    if batch.shape[0] < 1:
        raise ValueError(f"{engine_name}: empty batch, shape {tuple(batch.shape)}")
    return np.ascontiguousarray(batch)


def check_logits(logits: np.ndarray, batch_size: int, engine_name: str) -> np.ndarray:
    """Make sure a backend returned ``(N, K)`` float32; a different dtype is reported, not hidden."""
    if logits.ndim != 2 or logits.shape[0] != batch_size:
        raise RuntimeError(f"{engine_name}: expected logits (N={batch_size}, K), got shape {tuple(logits.shape)}")
    if logits.dtype != np.float32:
        raise RuntimeError(f"{engine_name}: backend returned {logits.dtype} logits, expected float32")
    return logits
