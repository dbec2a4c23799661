"""Per-clip building blocks of the KD losses, pure functions of logits (no module state)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(target_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per clip ``-sum_k p_k log softmax(logits)_k``, shape ``(B,)``."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1)


def kl_per_clip(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per clip ``KL(softmax(p_logits) || softmax(q_logits)) = sum_k p_k (log p_k - log q_k)``, shape ``(B,)``."""
    log_p = F.log_softmax(p_logits.float(), dim=1)
    log_q = F.log_softmax(q_logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of :func:`kl_per_clip`."""
    return kl_per_clip(p_logits, q_logits).mean()
