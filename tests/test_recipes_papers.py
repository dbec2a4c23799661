"""Every shipped recipe validates, the paper recipes sweep what the papers varied, and each paper
recipe names a toy twin that runs on synthetic data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgekd.cli import main
from edgekd.distill.losses import resolve
from edgekd.stages.validate import load_recipe
from edgekd.sweep import plan_sweep

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = sorted(RECIPES.rglob("*.yaml"))
PAPERS = sorted((RECIPES / "papers").glob("*.yaml"))
TOYS = sorted((RECIPES / "toy").glob("*.yaml"))


def _id(p: Path) -> str:
    return p.relative_to(RECIPES).as_posix()


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_every_recipe_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out


def test_there_is_a_paper_recipe_per_experiment_and_toy_twins() -> None:
    names = {p.stem for p in PAPERS}
    assert {"ullah_ucf101", "ullah_hmdb51", "ullah_ucf11", "ullah_ucf50", "camarena_ucf101",
            "camarena_ucf101_fractions", "hu_imrs_ucf101", "hu_imrs_hmdb51", "hu_table2_ce_position",
            "hu_table3_excitation", "hu_table4_lambdas"} <= names
    for p in PAPERS:
        twin = re.search(r"Toy twin: (recipes/toy/\S+\.yaml)", p.read_text())
        assert twin, f"{_id(p)} names no toy twin"
        assert (RECIPES.parent / twin.group(1)).is_file(), f"{_id(p)}: {twin.group(1)} is missing"


@pytest.mark.parametrize("path", TOYS, ids=_id)
def test_toy_twins_run_on_synthetic_data(path: Path) -> None:
    r = load_recipe(path)
    assert r.data.source == "synthetic" and r.sweep.swept_keys
    # sized like the quickstart or smaller: what fits the 20-minute budget of a 2-core CPU
    assert r.data.crop[0] * r.data.crop[1] <= 32 * 40 and r.data.clip_len <= 16
    assert r.data.synthetic.classes is not None and len(r.data.synthetic.classes) * r.data.synthetic.per_class <= 160


@pytest.mark.parametrize("path", sorted((RECIPES / "papers").glob("ullah_*.yaml")), ids=_id)
def test_ullah_recipes_sweep_the_papers_temperatures(path: Path) -> None:
    r = load_recipe(path)
    assert r.data.source != "synthetic" and (r.data.clip_len, r.data.crop) == (16, (112, 112))
    assert (r.teacher.model, r.student.model, r.distill.method) == ("c3d_teacher", "c3d_student", "ullah")
    assert (r.teacher.lr, r.student.lr, r.student.epochs) == (1e-4, 1e-4, 100)
    assert r.sweep.grid["distill.ullah.temperature"] == (1, 5, 10, 15, 20) and r.sweep.table == "ullah"


def test_camarena_recipes_cross_teachers_students_and_fractions() -> None:
    full = load_recipe(RECIPES / "papers" / "camarena_ucf101.yaml")
    pairs = {(v.recipe.teacher.model, v.recipe.student.model) for v in plan_sweep(full)}
    archs = {"c3d_teacher", "r3d_18", "r2plus1d_18"}
    assert pairs == {(t, s) for t in archs for s in archs if t != s}  # Camarena Table 2
    assert full.pretrain.enabled and full.pretrain.contrastive_weight == 0.5
    assert (full.distill.method, resolve(full.distill)[1].tau) == ("camarena", 4.0)
    assert dict(full.sweep.epoch_marks) == {"early": 50, "mid": 150, "late": 200} and full.student.epochs == 200
    low = load_recipe(RECIPES / "papers" / "camarena_ucf101_fractions.yaml")
    assert low.sweep.grid["data.fraction"] == (2, 25, 50)
    assert len(plan_sweep(low)) == 6 * 3 * 3


def test_hu_recipes_flow_teacher_rgb_student_and_lambda_pairs() -> None:
    imrs = load_recipe(RECIPES / "papers" / "hu_imrs_ucf101.yaml")
    assert (imrs.teacher.modality, imrs.student.modality, imrs.data.flow) == ("flow", "rgb", "tvl1")
    assert imrs.teacher.model == imrs.student.model == "resnext3d_101_ce"
    params = resolve(imrs.distill)[1]
    assert (imrs.distill.method, params.lambda1, params.lambda2) == ("hu", 50, 200)
    lam = load_recipe(RECIPES / "papers" / "hu_table4_lambdas.yaml")
    got = [(resolve(v.recipe.distill)[1].lambda1, resolve(v.recipe.distill)[1].lambda2)
           for v in plan_sweep(lam) if v.recipe.seed == 0]
    assert got == [(1, 1), (10, 10), (50, 50), (50, 100), (50, 200), (50, 300)]  # Hu Table 4
    exc = load_recipe(RECIPES / "papers" / "hu_table3_excitation.yaml")
    assert exc.sweep.grid["student.model"] == ("resnext3d_101", "resnext3d_101_se", "resnext3d_101_ce")
    pos = load_recipe(RECIPES / "papers" / "hu_table2_ce_position.yaml")
    models = pos.sweep.grid["student.model"]
    assert set(models) == {"resnext3d_101", "resnext3d_101_ce", *(f"resnext3d_101_ce_res{k}" for k in (2, 3, 4, 5))}
    from edgekd.models import build_model
    from edgekd.models.resnext3d import ChannelExcitation

    ce_counts = {m: sum(isinstance(x, ChannelExcitation) for x in build_model(m, num_classes=51, width_mult=0.25).modules())
                 for m in models}
    assert ce_counts == {"resnext3d_101": 0, "resnext3d_101_ce": 4, **{f"resnext3d_101_ce_res{k}": 1 for k in (2, 3, 4, 5)}}
