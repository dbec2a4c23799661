"""The KD losses (Ullah & Munir, Camarena et al., Hu et al.) against hand-computed values."""

import math

import pytest
import torch

from edgekd.train.losses import camarena_kd_loss, hu_kd_loss, kl_divergence, ullah_kd_loss


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


# ----------------------------------------------------------------------------- Camarena et al.


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


# ----------------------------------------------------------------------------- Hu et al.


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
