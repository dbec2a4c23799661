"""Distillation losses as pure functions of logits and labels (no module state), so each can be
checked against hand-computed values."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(target_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k p_k log softmax(logits)_k``."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def ullah_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """Ullah & Munir 2023, Eq. 1-5.

    ``alpha * CE(student, y) + (1 - alpha) * CE(softmax(teacher / T), softmax(student / T))``.
    The paper applies no T^2 factor to the soft term, so neither does this; the teacher's
    probabilities are treated as constants (no gradient flows into the teacher).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    hard = F.cross_entropy(student_logits.float(), labels)
    p_teacher = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    soft = soft_cross_entropy(p_teacher, student_logits.float() / temperature)
    return alpha * hard + (1.0 - alpha) * soft
