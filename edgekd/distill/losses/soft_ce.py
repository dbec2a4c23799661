"""Soft cross-entropy at temperature T, no T^2 factor: Ullah & Munir 2023, Eq. 1-5.

``alpha * CE(student, y) + (1 - alpha) * CE(softmax(teacher / T), softmax(student / T))``. The paper
applies no T^2 factor to the soft term, so neither does this; the teacher's probabilities are
constants (no gradient flows into the teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgekd.distill.losses import Terms, combine, register_kd_loss
from edgekd.distill.losses.functional import soft_cross_entropy


@dataclass(frozen=True)
class SoftCEParams:
    alpha: float = 0.1  # weight of the hard cross-entropy (Ullah & Munir give none; 0.1 as their code's default)
    temperature: float = 10.0  # the paper's best on UCF11

    def errors(self, path: str) -> list[str]:
        errs = []
        if not 0 <= self.alpha <= 1:
            errs.append(f"{path}.alpha: must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            errs.append(f"{path}.temperature: must be > 0, got {self.temperature}")
        return errs


@register_kd_loss("soft_ce_T", SoftCEParams, aliases=("ullah",), labels={"temperature": "T", "alpha": "alpha"},
                  summary="alpha*CE + (1-alpha)*CE(softmax(t/T), softmax(s/T))", source="Ullah & Munir 2023, Eq. 5")
def soft_ce_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, params: SoftCEParams,
                  student_features: torch.Tensor | None = None, teacher_features: torch.Tensor | None = None) -> Terms:
    p_teacher = F.softmax(teacher_logits.detach().float() / params.temperature, dim=1)
    soft = soft_cross_entropy(p_teacher, student_logits.float() / params.temperature)
    return Terms(params.alpha, ((1.0 - params.alpha, soft),))


def ullah_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                  alpha: float, temperature: float) -> torch.Tensor:
    """The whole loss on a labelled batch (what training computes through the registry)."""
    params = SoftCEParams(alpha, temperature)
    if errs := params.errors("soft_ce_T"):
        raise ValueError("; ".join(errs))
    return combine(soft_ce_terms(student_logits, teacher_logits, params), student_logits, labels)
