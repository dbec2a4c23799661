"""The KD-loss registry: each loss declared once with its own parameter block; the papers' names
load and mean what they always meant; old flat keys fail with the exact rewrite."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from edgekd.distill import losses as L
from edgekd.recipe import DistillConfig, RecipeError
from edgekd.stages import parse_recipe


def test_every_loss_is_registered_once_with_checked_defaults():
    names = [loss.name for loss in L.kd_losses()]
    assert names == sorted(set(names), key=names.index)
    assert {"soft_ce_T", "kl_tau2", "feature_mse_kl"} <= set(names)
    for loss in L.kd_losses():
        defaults = loss.params()
        assert defaults.errors(f"distill.{loss.name}") == []
        assert set(loss.labels) <= {f.name for f in dataclasses.fields(loss.params)}
        for alias in loss.aliases:
            assert L.get_kd_loss(alias) is loss


@pytest.mark.parametrize("paper, mechanism, defaults", [
    ("ullah", "soft_ce_T", {"alpha": 0.1, "temperature": 10.0}),
    ("camarena", "kl_tau2", {"tau": 4.0, "weight": 1.0}),
    ("hu", "feature_mse_kl", {"lambda1": 50.0, "lambda2": 200.0, "student_features": None, "teacher_features": None}),
])
def test_the_papers_names_still_load_and_mean_the_same(paper, mechanism, defaults):
    loss, params = L.resolve(DistillConfig(method=paper))
    assert loss.name == mechanism and dataclasses.asdict(params) == defaults
    first = next(iter(defaults))
    value = 0.5 if first == "alpha" else 3.0
    r = parse_recipe({"name": "x", "distill": {"method": paper, paper: {first: value}}})
    assert getattr(L.resolve(r.distill)[1], first) == value


def test_combine_is_the_papers_formula_on_labelled_batches_and_soft_only_on_unlabelled_clips():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    loss, params = L.resolve(DistillConfig(method="ullah", blocks={"ullah": {"alpha": 0.3, "temperature": 2.0}}))
    terms = loss.term(s, t, params)
    soft = -(F.softmax(t / 2, 1) * F.log_softmax(s / 2, 1)).sum(1)
    want = 0.3 * F.cross_entropy(s, y) + 0.7 * soft.mean()
    assert torch.equal(L.combine(terms, s, y), want)  # the same operations: bit-equal
    labelled = torch.tensor([True, True, False, False])
    mixed = L.combine(terms, s, y, labelled)
    assert torch.allclose(mixed, 0.3 * F.cross_entropy(s[:2], y[:2]) + 0.7 * soft.mean())
    none = L.combine(terms, s, y, torch.zeros(4, dtype=torch.bool))
    assert torch.allclose(none, 0.7 * soft.mean())  # no labels at all: the soft term alone


def _errors(distill: dict) -> str:
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": distill})
    return str(e.value)


def test_recipe_errors_name_the_block_key_and_the_rewrite_of_old_flat_keys():
    assert "distill.method: unknown KD loss 'camarna', did you mean 'camarena'?" in _errors({"method": "camarna"})
    assert "distill.ullah.temprature: unknown key, did you mean distill.ullah.temperature?" in \
        _errors({"method": "ullah", "ullah": {"temprature": 4}})
    assert "distill.camarena.tau: must be > 0, got 0.0" in _errors({"method": "camarena", "camarena": {"tau": 0}})
    msg = _errors({"method": "ullah", "alpha": 0.5, "temperature": 10})
    assert "distill.temperature: KD loss parameters now live in the method's own block; write " \
           "`distill: {method: ullah, ullah: {temperature: ...}}`" in msg and "distill.alpha:" in msg
    assert "blocks hu, feature_mse_kl set the same loss" in _errors({"method": "hu", "hu": {}, "feature_mse_kl": {}})
    # an old sweep key gets the same rewrite, per variant
    with pytest.raises(RecipeError, match=r"distill\.temperature: KD loss parameters now live"):
        parse_recipe({"name": "x", "sweep": {"grid": {"distill.temperature": [1, 5]}}})


def test_a_new_loss_is_one_registration(monkeypatch):
    """What a new loss file does: a parameter dataclass and a registered term; recipes, resolve and
    training read it from the registry with nothing else changed."""
    monkeypatch.setattr(L, "_REGISTRY", dict(L._REGISTRY))

    @dataclass(frozen=True)
    class Params:
        beta: float = 2.0

        def errors(self, path: str) -> list[str]:
            return [] if self.beta > 0 else [f"{path}.beta: must be > 0, got {self.beta}"]

    @L.register_kd_loss("logit_mse", Params, labels={"beta": "beta"})
    def term(student_logits, teacher_logits, params, student_features=None, teacher_features=None):
        return L.Terms(1.0, ((params.beta, (student_logits - teacher_logits).pow(2).mean(1)),))

    r = parse_recipe({"name": "x", "distill": {"method": "logit_mse", "logit_mse": {"beta": 0.5}}})
    loss, params = L.resolve(r.distill)
    s, t, y = torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([0, 1])
    assert L.combine(loss.term(s, t, params), s, y).item() == pytest.approx(F.cross_entropy(s, y).item() + 0.5)
    assert "distill.logit_mse.beta: must be > 0" in _errors({"method": "logit_mse", "logit_mse": {"beta": -1}})
    assert L.kd_loss_labels()["distill.logit_mse.beta"] == "beta"
