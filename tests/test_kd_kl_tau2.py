"""kl_tau2 (Camarena et al.'s loss, alias ``camarena``) against hand-computed values."""

import math

import pytest
import torch

from edgekd.distill.losses.functional import kl_divergence
from edgekd.distill.losses.kl_tau2 import camarena_kd_loss


def test_camarena_matches_hand_computed_value():
    # s = [1, 2, 3], t = [3, 2, 1], y = 2, tau = 2, lambda = 0.5.
    # CE = lse(1, 2, 3) - 3 = log(1 + e^-1 + e^-2) = 0.4076060.
    # s/tau and t/tau are permutations of each other, so their log-sum-exps are equal and
    # log p_t - log p_s = (t - s) / tau = [1, 0, -1]; KL = p_t[0] - p_t[2] with
    # p_t = softmax([1.5, 1, 0.5]) = [4.481689, 2.718282, 1.648721] / 8.848692 -> KL = 0.5064804 - 0.1863238 = 0.3201567.
    # loss = 0.4076060 + 0.5 * 2^2 * 0.3201567 = 1.0479193
    s, t = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]])
    loss = camarena_kd_loss(s, t, torch.tensor([2]), weight=0.5, tau=2.0)
    assert loss.item() == pytest.approx(1.0479193, abs=1e-6)


def test_camarena_kl_is_zero_for_a_copying_student_and_default_tau_is_4():
    t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(t, y).item()
    assert camarena_kd_loss(t.clone(), t, y, weight=3.0).item() == pytest.approx(ce, abs=1e-6)
    s = torch.zeros(2, 3)
    p_t = torch.softmax(t / 4, 1)  # default tau = 4 -> factor 16
    kl = (p_t * (p_t.log() - torch.log(torch.full((2, 3), 1 / 3)))).sum(1).mean().item()
    want = torch.nn.functional.cross_entropy(s, y).item() + 16 * kl
    assert camarena_kd_loss(s, t, y).item() == pytest.approx(want, rel=1e-6)


def test_camarena_teacher_gets_no_gradient_and_rejects_bad_values():
    s, t = torch.randn(2, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)
    camarena_kd_loss(s, t, torch.tensor([0, 1])).backward()
    assert t.grad is None and s.grad is not None
    with pytest.raises(ValueError, match="tau"):
        camarena_kd_loss(s, t, torch.tensor([0, 1]), tau=0.0)
    with pytest.raises(ValueError, match="weight"):
        camarena_kd_loss(s, t, torch.tensor([0, 1]), weight=-1.0)


def test_kl_divergence_hand_value():
    # KL([.5, .5] || [.75, .25]) = .5 ln(.5/.75) + .5 ln(.5/.25) = .5 ln(4/3) = 0.1438410
    p, q = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    assert kl_divergence(p, q).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-7)
