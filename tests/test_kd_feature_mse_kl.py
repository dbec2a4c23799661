"""feature_mse_kl (Hu et al.'s loss, alias ``hu``) against hand-computed values."""

import math

import pytest
import torch

from edgekd.distill.losses.feature_mse_kl import hu_kd_loss


def test_hu_matches_hand_computed_value():
    # logits [1, 2, 3], y = 2 -> CE = 0.4076060 (as above).
    # f_s = [0, 0], f_t = [ln 3, 0]: MSE = (ln 3)^2 / 2 = 0.6034745.
    # P(f_s) = [1/2, 1/2], P(f_t) = [3/4, 1/4]: KL(P(f_s) || P(f_t)) = 1/2 ln(4/3) = 0.1438410.
    # loss = 0.4076060 + 50 * 0.6034745 + 200 * 0.1438410 = 0.4076060 + 30.173725 + 28.768207 = 59.349537
    s = torch.tensor([[1.0, 2.0, 3.0]])
    f_s, f_t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    loss = hu_kd_loss(s, torch.tensor([2]), f_s, f_t)
    assert loss.item() == pytest.approx(59.349537, rel=1e-6)
    only_mse = hu_kd_loss(s, torch.tensor([2]), f_s, f_t, lambda1=1.0, lambda2=0.0)
    assert only_mse.item() == pytest.approx(0.4076060 + math.log(3.0) ** 2 / 2, abs=1e-6)


def test_hu_kl_runs_student_first_and_features_are_flattened():
    s, y = torch.zeros(2, 3), torch.tensor([0, 1])
    f_s = torch.tensor([[0.0, 0.0], [1.0, 0.0]]).view(2, 2, 1, 1, 1)  # a pooled conv map
    f_t = torch.tensor([[math.log(3.0), 0.0], [1.0, 0.0]])
    # row 1 identical (KL 0, MSE 0); row 0 as above. KL(P(f_t) || P(f_s)) would be
    # .75 ln 1.5 + .25 ln .5 = 0.1308 instead of 0.1438.
    want_kl = 0.5 * (0.5 * math.log(4 / 3))
    want_mse = math.log(3.0) ** 2 / 4
    got = hu_kd_loss(s, y, f_s, f_t, lambda1=0.0, lambda2=1.0).item() - math.log(3)
    assert got == pytest.approx(want_kl, abs=1e-6)
    got = hu_kd_loss(s, y, f_s, f_t, lambda1=1.0, lambda2=0.0).item() - math.log(3)
    assert got == pytest.approx(want_mse, abs=1e-6)


def test_hu_refuses_mismatched_widths_and_sends_no_gradient_to_the_teacher():
    s = torch.randn(2, 3, requires_grad=True)
    f_s, f_t = torch.randn(2, 5, requires_grad=True), torch.randn(2, 5, requires_grad=True)
    hu_kd_loss(s, torch.tensor([0, 2]), f_s, f_t).backward()
    assert f_t.grad is None and f_s.grad is not None and s.grad is not None
    with pytest.raises(ValueError, match="project"):
        hu_kd_loss(s, torch.tensor([0, 2]), torch.randn(2, 4), f_t)
