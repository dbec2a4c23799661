"""Teacher-output cache keyed by (video, augmentation variant).

With ``student.aug_variants = V`` every random parameter of a training clip (start, crop, flip, ...)
derives from ``(seed, video, v)`` with ``v < V``, and batches carry ``extras["clip_key"]``, a
``(B, 2)`` LongTensor of ``(video index, v)``; ``v = -1`` marks a clip that is not reproducible.
The frozen teacher's output for a key is then a pure function of the key, so after the first
epoch that meets a key its logits (and tapped features) are replayed instead of recomputed, and
the loss is exactly the one a fresh teacher forward would give (tested, bit for bit).

When keys are first met depends on ``student.aug_schedule``. With ``random`` each sample draws its
``v``, so a video's last variant is met late (coupon collector) and epochs stay partly "fill"
epochs for long. With ``cycle`` the variant is ``(epoch + per-video offset) mod V``: the first V
epochs meet every key exactly once (every batch a full miss) and from epoch V + 1 on every batch
hits, so a whole training pays the teacher for V epochs' worth of clips and no more. The backend
behind the cache (PyTorch or OpenVINO, ``distill.teacher_backend``) is any ``Teacher``: both are
deterministic at a fixed batch size, so replay is exact for either (tested).

Exactness needs one more rule. The teacher's kernels round differently at different batch sizes
(oneDNN/GEMM blocking: a row's fc7 features moved by ~5e-9 between batch 4 and batch 1 here,
while permuting rows at the same size changed nothing). So the teacher always runs at one batch
size: a batch with any miss goes through the teacher whole (not just its misses), and a batch
smaller than the largest seen (the last one of an epoch) is padded with zero clips. Uncached runs
(no clip keys, ``distill.cache: off``) follow the same rule, so both paths compute alike. The price
is that a batch with a single miss pays a full teacher forward: the savings come once whole
batches hit.

The cache can be persisted (``save``/``load``): the file records a fingerprint of everything the
outputs depend on (teacher weights, data section, seed, backend, precision, tap), and a file whose
fingerprint differs is ignored rather than trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgekd.distill.teacher import Teacher, TeacherOutput
from edgekd.utils.atomic import atomic_path

FORMAT = "edgekd-teacher-cache-v1"


class CachedTeacher:
    """Wraps a ``Teacher``; ``__call__(x, clip_key)`` replays stored outputs for known keys."""

    def __init__(self, teacher: Teacher, *, fingerprint: str = "") -> None:
        self.teacher = teacher
        self.feature_dim = teacher.feature_dim
        self.fingerprint = fingerprint
        self._store: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.hits = self.misses = self.uncacheable = 0
        self._batch = 0  # largest batch seen: the size the teacher always runs at

    def __len__(self) -> int:
        return len(self._store)

    def __call__(self, x: torch.Tensor, clip_key: torch.Tensor | None = None) -> TeacherOutput:
        if clip_key is None:
            self.uncacheable += x.shape[0]
            return self._run(x)
        if clip_key.shape != (x.shape[0], 2):
            raise ValueError(f"clip_key must have shape ({x.shape[0]}, 2) = (video, variant) per clip, "
                             f"got {tuple(clip_key.shape)}")
        keys = [(int(v), int(a)) for v, a in clip_key.tolist()]
        todo = [i for i, k in enumerate(keys) if k not in self._store]
        self.uncacheable += sum(1 for i in todo if keys[i][1] < 0)
        self.misses += sum(1 for i in todo if keys[i][1] >= 0)
        self.hits += len(keys) - len(todo)
        fresh: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        if todo:
            out = self._run(x)  # the whole batch: see the module docstring
            for i in todo:
                row = (out.logits[i].clone(), None if out.features is None else out.features[i].clone())
                fresh[i] = row
                if keys[i][1] >= 0:
                    self._store[keys[i]] = row
        rows = [fresh[i] if i in fresh else self._store[k] for i, k in enumerate(keys)]
        logits = torch.stack([r[0] for r in rows])
        features = None if rows[0][1] is None else torch.stack([r[1] for r in rows])  # type: ignore[misc]
        return TeacherOutput(logits, features)

    def _run(self, x: torch.Tensor) -> TeacherOutput:
        """The teacher at a fixed batch size: smaller batches are padded with zero clips."""
        b = x.shape[0]
        self._batch = max(self._batch, b)
        if b == self._batch:
            return self.teacher(x)
        pad = x.new_zeros((self._batch - b, *x.shape[1:]))
        out = self.teacher(torch.cat([x, pad]))
        return TeacherOutput(out.logits[:b], None if out.features is None else out.features[:b])

    def fall_back_to_fp32(self) -> None:
        """Training switched from bf16 to fp32 after a non-finite loss: a PyTorch teacher computing in
        bf16 switches too (its bf16 forward may be what failed), and the outputs it stored in bf16
        are dropped so replayed and fresh outputs never mix precisions. An OpenVINO teacher runs its
        own kernels, which the failure says nothing about, and is kept."""
        if getattr(self.teacher, "precision", None) == "bf16" and hasattr(self.teacher, "channels_last"):
            self.teacher.precision = "fp32"  # type: ignore[attr-defined]
            self._store.clear()
            self.fingerprint = f"{self.fingerprint}+fp32-fallback"

    def stats(self) -> dict[str, Any]:
        seen = self.hits + self.misses + self.uncacheable
        return {"entries": len(self), "hits": self.hits, "misses": self.misses, "uncacheable": self.uncacheable,
                "hit_rate": round(self.hits / seen, 4) if seen else 0.0}

    def save(self, path: str | Path) -> None:
        """Write every entry atomically, with the fingerprint it is valid for."""
        keys = list(self._store)
        payload: dict[str, Any] = {"format": FORMAT, "fingerprint": self.fingerprint,
                                   "keys": torch.tensor(keys, dtype=torch.long).reshape(-1, 2),
                                   "logits": torch.stack([self._store[k][0] for k in keys]) if keys else torch.empty(0),
                                   "features": None}
        if keys and self._store[keys[0]][1] is not None:
            payload["features"] = torch.stack([self._store[k][1] for k in keys])  # type: ignore[misc]
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    def load(self, path: str | Path) -> bool:
        """Add the entries of a saved cache whose fingerprint matches; False (nothing loaded) otherwise."""
        p = Path(path)
        if not p.is_file():
            return False
        payload = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("fingerprint") != self.fingerprint:
            return False
        feats = payload["features"]
        if (feats is None) != (self.feature_dim is None):
            return False
        for i, (v, a) in enumerate(payload["keys"].tolist()):
            self._store[(v, a)] = (payload["logits"][i], None if feats is None else feats[i])
        return True
