"""Feature distillation: ``CE + lambda1 * ||f_s - f_t|| + lambda2 * KL(P(f_s) || P(f_t))`` (Hu et al.
2023, Eq. 8).

``f`` are the features fed to the last FC layer (tapped by module path, ``student_features`` /
``teacher_features``; default each model's ``feature_path``), flattened to ``(B, D)``; the
student's are projected to the teacher's width first (``edgekd.distill.projection``). Choices the
paper leaves open, and why:

* ``||f_s - f_t||`` is the mean squared error (``F.mse_loss``). Hu et al. follow Crasto et al.'s
  MARS (they cite it for this loss), whose code weights ``nn.MSELoss()`` between the avgpool
  features by ``MARS_alpha = 50``: the same value as Hu's lambda1; a sum of squares or an
  unnormalised L2 norm would be ~D times larger at that weight.
* ``P(f) = softmax(f)`` over the feature dimension (temperature 1): the paper calls P the
  features' probability distribution and gives no temperature.
* The KL runs in the paper's direction, student first: ``sum P(f_s) (log P(f_s) - log P(f_t))``
  (Eq. 9 prints a ratio of logs, a typo for their difference).

Teacher features are constants (detached).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgekd.distill.losses import Terms, combine, register_kd_loss
from edgekd.distill.losses.functional import kl_per_clip


@dataclass(frozen=True)
class FeatureMseKlParams:
    lambda1: float = 50.0  # feature MSE weight
    lambda2: float = 200.0  # feature-distribution KL weight
    # module paths tapped ("path" = output, "path:input" = input); None: the model's feature_path
    student_features: str | None = None
    teacher_features: str | None = None

    def errors(self, path: str) -> list[str]:
        return [f"{path}.{k}: must be >= 0, got {getattr(self, k)}" for k in ("lambda1", "lambda2")
                if getattr(self, k) < 0]


@register_kd_loss("feature_mse_kl", FeatureMseKlParams, aliases=("hu",),
                  labels={"lambda1": "lambda1", "lambda2": "lambda2"}, features=True,
                  summary="CE + lambda1*MSE(proj(f_s), f_t) + lambda2*KL(P(f_s) || P(f_t))",
                  source="Hu et al. 2023, Eq. 8")
def feature_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, params: FeatureMseKlParams,
                  student_features: torch.Tensor | None = None, teacher_features: torch.Tensor | None = None) -> Terms:
    if student_features is None or teacher_features is None:
        raise ValueError("feature_mse_kl needs the student's (projected) and the teacher's features")
    f_s = student_features.float().flatten(1)
    f_t = teacher_features.detach().float().flatten(1)
    if f_s.shape != f_t.shape:
        raise ValueError(f"student features {tuple(f_s.shape)} and teacher features {tuple(f_t.shape)} differ; "
                         "project the student's to the teacher's width first")
    mse = (f_s - f_t).pow(2).mean(dim=1)
    return Terms(1.0, ((params.lambda1, mse), (params.lambda2, kl_per_clip(f_s, f_t))))


def hu_kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, student_features: torch.Tensor,
               teacher_features: torch.Tensor, *, lambda1: float = 50.0, lambda2: float = 200.0) -> torch.Tensor:
    """The whole loss on a labelled batch (what training computes through the registry)."""
    params = FeatureMseKlParams(lambda1, lambda2)
    if errs := params.errors("feature_mse_kl"):
        raise ValueError("; ".join(errs))
    return combine(feature_terms(student_logits, None, params, student_features, teacher_features),
                   student_logits, labels)
