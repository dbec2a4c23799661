"""soft_ce_T (Ullah & Munir's loss, alias ``ullah``) against hand-computed values."""

import math

import pytest
import torch

from edgekd.distill.losses.soft_ce import ullah_kd_loss


def _hand(s, t, y, alpha, T):
    lse = lambda v: math.log(sum(math.exp(x) for x in v))  # noqa: E731
    ce = -(s[y] - lse(s))
    p_t = [math.exp(x / T - lse([v / T for v in t])) for x in t]
    log_q = [x / T - lse([v / T for v in s]) for x in s]
    return alpha * ce - (1 - alpha) * sum(p * q for p, q in zip(p_t, log_q))


def test_matches_precomputed_value():
    s, t = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]])
    loss = ullah_kd_loss(s, t, torch.tensor([2]), alpha=0.5, temperature=2.0)
    # 0.5 * 0.407606 (hard CE) + 0.5 * 1.340348 (soft CE at T=2), computed by hand
    assert loss.item() == pytest.approx(0.8739770, abs=1e-6)


@pytest.mark.parametrize("alpha,T", [(0.0, 1.0), (0.1, 5.0), (0.7, 10.0), (1.0, 20.0), (0.3, 15.0)])
def test_matches_hand_formula_on_a_batch(alpha, T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 6, generator=g) * 3, torch.randn(4, 6, generator=g) * 3
    y = torch.tensor([0, 5, 2, 3])
    want = sum(_hand(s[i].tolist(), t[i].tolist(), int(y[i]), alpha, T) for i in range(4)) / 4
    assert ullah_kd_loss(s, t, y, alpha=alpha, temperature=T).item() == pytest.approx(want, rel=1e-5)


def test_alpha_one_is_plain_cross_entropy_and_teacher_gets_no_gradient():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([1, 0, 3])
    loss = ullah_kd_loss(s, t, y, alpha=1.0, temperature=4.0)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item(), rel=1e-6)
    ullah_kd_loss(s, t, y, alpha=0.2, temperature=4.0).backward()
    assert t.grad is None and s.grad is not None


def test_soft_term_is_minimised_when_student_copies_teacher():
    t = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([0])
    same = ullah_kd_loss(t.clone(), t, y, alpha=0.0, temperature=5.0).item()
    other = ullah_kd_loss(torch.tensor([[0.0, 1.0, 0.0]]), t, y, alpha=0.0, temperature=5.0).item()
    assert same < other


def test_rejects_bad_hyperparameters():
    s = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="temperature"):
        ullah_kd_loss(s, s, torch.tensor([0]), alpha=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        ullah_kd_loss(s, s, torch.tensor([0]), alpha=1.5, temperature=1.0)
