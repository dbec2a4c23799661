"""Contrastive loss of the self-supervised pretraining (Camarena et al. Eq. 2-4, NT-Xent).

Two clips of the same video are a positive pair; clips of the other videos in the batch are the
negatives. Similarities are cosine similarities of the projected features divided by a temperature,
so ``D(a, b) = exp(cos(a, b) / temperature)`` in Camarena's notation (their D must be positive for
the ratio to be a probability).

``negatives="all"`` is NT-Xent (SimCLR): each of the 2N clips is an anchor, and every other clip in
the batch except its positive is a negative (2N - 2 of them). ``negatives="same_view"`` is Camarena
Eq. 3-4 as printed: the anchor ``z1_i`` is contrasted only with ``z1_j`` (j != i) and ``z2_i`` only
with ``z2_j``. Either way the loss is the mean over the 2N anchors, so Eq. 2's per-video sum is
``2 *`` this value.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.07,
                     negatives: Literal["all", "same_view"] = "all") -> torch.Tensor:
    """``z1[i]`` and ``z2[i]`` are projections of two clips of video ``i``; shapes ``(N, D)``, N >= 2."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError("contrastive loss needs at least 2 videos per batch (the others are the negatives)")
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    eye = torch.eye(n, dtype=torch.bool, device=z1.device)
    pos = (z1 * z2).sum(1) / temperature  # (N,)
    if negatives == "same_view":
        losses = []
        for z in (z1, z2):
            sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))  # s(z_i, z_j), j != i
            logits = torch.cat([pos[:, None], sim], dim=1)
            losses.append(torch.logsumexp(logits, dim=1) - pos)
        return torch.cat(losses).mean()
    if negatives == "all":
        z = torch.cat([z1, z2])  # (2N, D)
        sim = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # index of each anchor's positive
        return F.cross_entropy(sim, target)
    raise ValueError(f"negatives must be 'all' or 'same_view', got {negatives!r}")
