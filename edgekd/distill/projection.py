"""Learned projection from the student's feature width to the teacher's (cross-architecture
feature KD). It lives on the student side, trains with the student (``fit(extra_modules=...)``)
and is saved next to the student checkpoint; it is not part of the deployed network."""

from __future__ import annotations

import torch.nn as nn


def feature_projection(student_dim: int, teacher_dim: int) -> nn.Module:
    """``nn.Linear(student_dim, teacher_dim)`` when the widths differ, else identity (no parameters:
    with equal widths the student matches the teacher's features directly, as in MARS/Hu)."""
    if student_dim < 1 or teacher_dim < 1:
        raise ValueError(f"feature widths must be >= 1, got student {student_dim}, teacher {teacher_dim}")
    if student_dim == teacher_dim:
        return nn.Identity()
    return nn.Linear(student_dim, teacher_dim)
