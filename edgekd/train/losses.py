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


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``KL(softmax(p_logits) || softmax(q_logits)) = sum_k p_k (log p_k - log q_k)``."""
    log_p = F.log_softmax(p_logits.float(), dim=1)
    log_q = F.log_softmax(q_logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def camarena_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    weight: float = 1.0,
    tau: float = 4.0,
) -> torch.Tensor:
    """Camarena et al. 2024, Eq. 6-7: ``CE(student, y) + lambda * tau^2 * KL(p_t || p_s)``.

    ``p = softmax(logits / tau)``; ``weight`` is the paper's lambda (its value is not given in the
    paper, hence 1 by default). Eq. 6 writes the soft term as the cross-entropy
    ``-sum p_t log p_s``; that differs from the KL only by the teacher's entropy, a constant for the
    student, so the gradients are identical and the KL form (0 when the student copies the teacher)
    is reported. The tau^2 factor keeps the soft gradients' scale independent of tau (Hinton et al.).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if weight < 0:
        raise ValueError(f"weight (lambda) must be >= 0, got {weight}")
    hard = F.cross_entropy(student_logits.float(), labels)
    soft = kl_divergence(teacher_logits.detach().float() / tau, student_logits.float() / tau)
    return hard + weight * tau * tau * soft


def hu_kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    *,
    lambda1: float = 50.0,
    lambda2: float = 200.0,
) -> torch.Tensor:
    """Hu et al. 2023, Eq. 8: ``CE(s, y) + lambda1 * ||f_s - f_t|| + lambda2 * KL(P(f_s) || P(f_t))``.

    ``f`` are the features fed to the last FC layer, flattened to ``(B, D)``; the student's must
    already be projected to the teacher's width. Choices the paper leaves open, and why:

    * ``||f_s - f_t||`` is the mean squared error over all elements (``F.mse_loss``). Hu et al.
      follow Crasto et al.'s MARS (they cite it for this loss), whose code weights
      ``nn.MSELoss()`` between the avgpool features by ``MARS_alpha = 50``: the same value as Hu's
      lambda1, and a sum-of-squares or unnormalised L2 norm would be ~D times larger at that weight.
    * ``P(f) = softmax(f)`` over the feature dimension (temperature 1): the paper calls P the
      features' probability distribution and gives no temperature.
    * The KL runs in the paper's direction, student first: ``sum P(f_s) (log P(f_s) - log P(f_t))``,
      averaged over the batch (Eq. 9 prints a ratio of logs, a typo for their difference).

    Teacher features are constants (detached).
    """
    if lambda1 < 0 or lambda2 < 0:
        raise ValueError(f"lambda1 and lambda2 must be >= 0, got {lambda1}, {lambda2}")
    f_s = student_features.float().flatten(1)
    f_t = teacher_features.detach().float().flatten(1)
    if f_s.shape != f_t.shape:
        raise ValueError(f"student features {tuple(f_s.shape)} and teacher features {tuple(f_t.shape)} differ; "
                         "project the student's to the teacher's width first")
    hard = F.cross_entropy(student_logits.float(), labels)
    return hard + lambda1 * F.mse_loss(f_s, f_t) + lambda2 * kl_divergence(f_s, f_t)
