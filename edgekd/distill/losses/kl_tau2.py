"""Hinton-style KD: ``CE + lambda * tau^2 * KL(p_t || p_s)`` at temperature tau (Camarena et al.
2024, Eq. 6-7).

``p = softmax(logits / tau)``; ``weight`` is the paper's lambda (its value is not given in the
paper, hence 1 by default). Eq. 6 writes the soft term as the cross-entropy ``-sum p_t log p_s``;
that differs from the KL only by the teacher's entropy, a constant for the student, so the
gradients are identical and the KL form (0 when the student copies the teacher) is reported. The
tau^2 factor keeps the soft gradients' scale independent of tau (Hinton et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgekd.distill.losses import Terms, combine, register_kd_loss
from edgekd.distill.losses.functional import kl_per_clip


@dataclass(frozen=True)
class KLTau2Params:
    tau: float = 4.0
    weight: float = 1.0  # Camarena et al.'s lambda

    def errors(self, path: str) -> list[str]:
        errs = []
        if not self.tau > 0:
            errs.append(f"{path}.tau: must be > 0, got {self.tau}")
        if self.weight < 0:
            errs.append(f"{path}.weight: must be >= 0, got {self.weight}")
        return errs


@register_kd_loss("kl_tau2", KLTau2Params, aliases=("camarena",), labels={"tau": "tau", "weight": "lambda"},
                  summary="CE + weight*tau^2*KL(p_t || p_s)", source="Camarena et al. 2024, Eq. 6-7")
def kl_tau2_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, params: KLTau2Params,
                  student_features: torch.Tensor | None = None, teacher_features: torch.Tensor | None = None) -> Terms:
    tau = params.tau
    soft = kl_per_clip(teacher_logits.detach().float() / tau, student_logits.float() / tau)
    return Terms(1.0, ((params.weight * tau * tau, soft),))


def camarena_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                     weight: float = 1.0, tau: float = 4.0) -> torch.Tensor:
    """The whole loss on a labelled batch (what training computes through the registry)."""
    params = KLTau2Params(tau, weight)
    if errs := params.errors("kl_tau2"):
        raise ValueError("; ".join(errs))
    return combine(kl_tau2_terms(student_logits, teacher_logits, params), student_logits, labels)
