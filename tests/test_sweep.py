"""Sweeps: grid expansion, key validation, stage sharing between variants (stub stages, fast), the
t-interval numbers against hand computation, and the paper-style summary tables."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from edgekd.recipe import RecipeError, expand_grid, variant_slug
from edgekd.stages import runner
from edgekd.stages.validate import parse_recipe
from edgekd.sweep import plan_sweep, run_sweep, sweep_root
from edgekd.utils.stats import Stat, mean_ci, t_cdf, t_quantile

T975 = {1: 12.706204736174698, 2: 4.302652729911275, 4: 2.7764451051977987, 9: 2.2621571627409915,
        29: 2.045229642132703}  # Student t 0.975 quantiles (statistical tables / scipy.stats.t.ppf)


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("df, q", sorted(T975.items()))
def test_t_quantile_matches_published_values(df: int, q: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(q, rel=1e-9)
    assert t_cdf(q, df) == pytest.approx(0.975, abs=1e-10)
    assert t_quantile(0.025, df) == pytest.approx(-q, rel=1e-9)


def test_t_quantile_agrees_with_scipy_over_a_range() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 7, 12, 50):
        for p in (0.9, 0.95, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-8)


def test_confidence_interval_by_hand_for_three_seeds() -> None:
    # values 0.5, 0.6, 0.7: mean 0.6, sample sd 0.1, half-width t(0.975, 2) * 0.1 / sqrt(3)
    mean, half, n = mean_ci([0.5, 0.6, 0.7])
    assert (mean, n) == (pytest.approx(0.6), 3)
    assert half == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3), rel=1e-9)
    assert half == pytest.approx(0.248413, abs=1e-6)
    # 90% interval over 5 values uses t(0.95, 4) = 2.131846786326649
    vals = [0.80, 0.82, 0.85, 0.79, 0.84]
    m = sum(vals) / 5
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / 4)
    assert Stat(tuple(vals), 0.90).half == pytest.approx(2.131846786326649 * sd / math.sqrt(5), rel=1e-9)
    assert mean_ci([0.7]) == (0.7, None, 1)  # one seed: no interval


# ----------------------------------------------------------------------------- grid and validation


def test_grid_expansion_order_exclusion_and_slugs() -> None:
    combos = expand_grid({"teacher.model": ["a", "b"], "student.model": ["a", "b"], "seed": [0, 1]},
                         exclude=[{"teacher.model": "a", "student.model": "a"}, {"teacher.model": "b", "student.model": "b"}])
    assert [(c["teacher.model"], c["student.model"], c["seed"]) for c in combos] == [
        ("a", "b", 0), ("a", "b", 1), ("b", "a", 0), ("b", "a", 1)]
    assert len(expand_grid({"distill.ullah.temperature": [1, 5, 10, 15, 20], "seed": [0, 1, 2]})) == 15
    assert variant_slug({"distill.ullah.temperature": 5.0, "seed": 0}) == "distill.ullah.temperature-5_seed-0"
    assert variant_slug({"data.crop": [32, 40]}) == "data.crop-32x40"
    assert "/" not in variant_slug({"data.root": "/a/b c"})


def _raw(tmp_path: Path, grid: dict[str, Any], **sweep: Any) -> dict[str, Any]:
    return {"name": "sw", "runs_dir": str(tmp_path / "runs"), "student": {"epochs": 3},
            "sweep": {"grid": grid, **sweep}}


def test_unknown_swept_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe(_raw(tmp_path, {"distil.ullah.temperature": [1, 5], "studnet.model": ["c3d_student"],
                                     "data.synthetic": [1], "name": ["x"], "seed": []}))
    msg = str(e.value)
    assert "sweep.grid.distil.ullah.temperature: unknown recipe key 'distil.ullah.temperature'; did you mean distill?" in msg
    assert "did you mean student?" in msg
    assert "'data.synthetic' is a whole section" in msg
    assert "'name' cannot be swept" in msg
    assert "sweep.grid.seed: needs at least one value" in msg
    # a key inside a KD loss's block is checked by the loss, in every variant
    with pytest.raises(RecipeError) as e:
        parse_recipe(_raw(tmp_path, {"distill.ullah.temprature": [1, 5]}))
    assert "sweep variant distill.ullah.temprature-1: distill.ullah.temprature: unknown key, did you mean " \
           "distill.ullah.temperature?" in str(e.value)


def test_every_variant_must_validate(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe(_raw(tmp_path, {"distill.ullah.temperature": [0, 5], "distill.ullah.alpha": [0.5, 2]}))
    msg = str(e.value)
    assert "sweep variant distill.ullah.temperature-0_distill.ullah.alpha-0.5: distill.ullah.temperature: must be > 0, got 0.0" in msg
    assert "sweep variant distill.ullah.temperature-5_distill.ullah.alpha-2: distill.ullah.alpha: must be in [0, 1], got 2.0" in msg
    assert msg.count("sweep variant") == 4  # (0, 0.5): 1 error, (0, 2): 2, (5, 2): 1; (5, 0.5) is fine
    with pytest.raises(RecipeError, match="epoch 5 is past student.epochs"):
        parse_recipe(_raw(tmp_path, {"seed": [0]}, epoch_marks={"early": 1, "late": 5}))
    with pytest.raises(RecipeError, match=r"sweep.exclude\[0\].seed: not a swept key \(distill.ullah.temperature\)"):
        parse_recipe(_raw(tmp_path, {"distill.ullah.temperature": [1]}, exclude=[{"seed": 0}]))


def test_variants_run_in_their_own_folders_with_the_values_set(tmp_path: Path) -> None:
    r = parse_recipe(_raw(tmp_path, {"distill.ullah.temperature": [1, 5], "seed": [0, 1]}))
    variants = plan_sweep(r)
    assert [v.slug for v in variants] == ["distill.ullah.temperature-1_seed-0", "distill.ullah.temperature-1_seed-1",
                                          "distill.ullah.temperature-5_seed-0", "distill.ullah.temperature-5_seed-1"]
    v = variants[3]
    assert (_temperature(v.recipe), v.recipe.seed) == (5.0, 1)
    assert v.recipe.run_dir == tmp_path / "runs" / "sw" / "sweep" / v.slug
    assert not v.recipe.sweep.grid and v.recipe.student.epochs == 3
    assert v.config == {"distill.ullah.temperature": 5}


# ----------------------------------------------------------------------------- sharing (stub stages)


def _temperature(recipe: Any) -> float:
    from edgekd.distill.losses import resolve

    return resolve(recipe.distill)[1].temperature


def _fake_acc(rd: Any, role: str) -> float:
    """A deterministic 'accuracy' that depends on exactly what the role depends on."""
    r = rd.recipe
    base = {"teacher": 0.9, "student_scratch": 0.6, "student_kd": 0.7}[role] + 0.01 * r.seed
    if role != "teacher":  # a lucky student seed helps both of its students alike
        base += 0.02 * (r.student.seed or 0)
    if role == "student_kd":
        base += 0.001 * _temperature(r)
    return base


@pytest.fixture
def stub_stages(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    def make(stage: str):
        def fn(rd: Any) -> dict[str, Any]:
            calls.append((stage, rd.recipe.name))
            out = rd.stage_dir(stage)
            out.mkdir(parents=True, exist_ok=True)
            if stage == "data":
                (out / "split.json").write_text(json.dumps({"seed": rd.recipe.seed}))
                return {"train": 10}
            if stage in ("pretrain", "pretrain_teacher", "teacher_outputs", "export"):
                return {"enabled": False}
            acc = _fake_acc(rd, stage)
            (out / "ckpt.pt").write_bytes(f"{stage}-{acc}".encode())
            rows = [{"epoch": e, "val_top1": acc - 0.1 * (3 - e) + (0.05 if e == 2 else 0)} for e in (1, 2, 3)]
            (out / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
            return {"test_top1": acc, "params": 1_500_000 if stage == "teacher" else 250_000}
        return fn

    monkeypatch.setattr(runner, "_stage_fn", make)
    return calls


def test_a_temperature_sweep_trains_each_teacher_once(tmp_path: Path, stub_stages: list) -> None:
    r = parse_recipe(_raw(tmp_path, {"distill.ullah.temperature": [1, 5], "seed": [0, 1, 2]}, table="ullah"))
    summary = run_sweep(r)
    ran = [s for s, _ in stub_stages]
    assert ran.count("data") == 3 and ran.count("teacher") == 3 and ran.count("student_scratch") == 3
    assert ran.count("student_kd") == 6
    root = sweep_root(r)
    a, b = root / "distill.ullah.temperature-1_seed-0", root / "distill.ullah.temperature-5_seed-0"
    assert (a / "teacher" / "ckpt.pt").stat().st_ino == (b / "teacher" / "ckpt.pt").stat().st_ino  # hard link
    assert (b / "teacher" / "metrics.jsonl").stat().st_ino != (a / "teacher" / "metrics.jsonl").stat().st_ino  # copy
    assert json.loads((b / "teacher" / "stage.json").read_text())["key"] == \
        json.loads((a / "teacher" / "stage.json").read_text())["key"]
    # a second invocation reuses every stage of every variant
    stub_stages.clear()
    run_sweep(r)
    assert stub_stages == []
    # Ullah-style table: scratch student, teacher, then one KD row per T; mean +/- CI over 3 seeds
    labels = [row[0] for row in summary["rows"]]
    assert labels == ["Student without KD", "Teacher", "*Student-KD (T = 1)*", "**Student-KD (T = 5)**"]
    kd5 = summary["rows"][3][2]
    assert kd5["n"] == 3 and kd5["values"] == pytest.approx([0.705, 0.715, 0.725])
    assert kd5["mean"] == pytest.approx(0.715)
    assert kd5["ci_half_width"] == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3), rel=1e-6)
    teacher = summary["rows"][1][2]
    assert teacher["n"] == 3 and teacher["mean"] == pytest.approx(0.91)  # shared runs counted once
    md = (root / "summary.md").read_text()
    assert "| **Student-KD (T = 5)** | synthetic | 71.50 ± 2.48 (n=3) |" in md
    assert "Student t-distribution with n-1 degrees of freedom" in md
    rows = list(csv.reader(io.StringIO((root / "summary.csv").read_text())))
    assert rows[0] == ["Model", "Dataset", "Accuracy (%) mean", "Accuracy (%) ci95", "Accuracy (%) n"]
    assert rows[4][2:] == ["0.715", f"{4.302652729911275 * 0.01 / math.sqrt(3):.6g}", "3"]
    status = json.loads((root / "variants.json").read_text())
    assert {v["status"] for v in status} == {"done"} and len(status) == 6


def test_camarena_table_reads_accuracy_at_epoch_marks(tmp_path: Path, stub_stages: list) -> None:
    raw = _raw(tmp_path, {"teacher.model": ["c3d_teacher", "c3d_student"], "student.model": ["c3d_teacher", "c3d_student"],
                          "seed": [0, 1]}, table="camarena", epoch_marks={"early": 1, "mid": 2, "late": 3},
               exclude=[{"teacher.model": "c3d_teacher", "student.model": "c3d_teacher"},
                        {"teacher.model": "c3d_student", "student.model": "c3d_student"}])
    summary = run_sweep(parse_recipe(raw))
    ran = [s for s, _ in stub_stages]
    assert ran.count("teacher") == 4 and ran.count("student_scratch") == 4 and ran.count("student_kd") == 4
    assert summary["columns"] == ["Method", "Student", "Teacher", "Dataset", "Data %", "Early (ep 1)", "Mid (ep 2)",
                                  "Late (ep 3)", "Test top-1 (%)"]
    first = summary["rows"][0]
    assert first[:5] == ["KD", "c3d_student", "c3d_teacher", "synthetic", "100"]
    # stub val curve: acc-0.2, acc-0.05 (+0.05 bump), acc; best-so-far at epochs 1, 2, 3
    acc = [0.7 + 0.001 * 10 + 0.01 * s for s in (0, 1)]  # default temperature 10
    assert first[5]["values"] == pytest.approx([a - 0.2 for a in acc])
    assert first[6]["values"] == pytest.approx([a - 0.05 for a in acc])
    assert first[7]["values"] == pytest.approx(acc) and first[8]["values"] == pytest.approx(acc)
    scratch = [r for r in summary["rows"] if r[0] == "Scratch"]
    assert [r[1] for r in scratch] == ["c3d_student", "c3d_teacher"]  # students in order of first appearance
    assert all(r[2] == "None" for r in scratch)


def test_hu_table_has_one_row_per_configuration_with_params(tmp_path: Path, stub_stages: list) -> None:
    raw = _raw(tmp_path, {"distill.hu.lambda1": [1, 50], "distill.hu.lambda2": [200], "seed": [0, 1]}, table="hu",
               stages=["data", "teacher", "student_kd"])
    summary = run_sweep(parse_recipe(raw))
    assert summary["columns"] == ["lambda1", "lambda2", "Teacher params (M)", "Teacher top-1 (%)",
                                  "Student-KD params (M)", "Student-KD top-1 (%)"]
    assert [r[:2] for r in summary["rows"]] == [["1", "200"], ["50", "200"]]
    assert summary["rows"][0][2]["params"]["mean"] == 1_500_000
    assert summary["rows"][0][5]["n"] == 2
    assert "| 1 | 200 | 1.50 | 90.50 ± 6.35 (n=2) |" in (sweep_root(parse_recipe(raw)) / "summary.md").read_text()


def test_points_give_paired_values_crossed_with_the_grid(tmp_path: Path) -> None:
    pairs = [{"distill.hu.lambda1": 1, "distill.hu.lambda2": 1}, {"distill.hu.lambda1": 50, "distill.hu.lambda2": 200}]
    combos = expand_grid({"seed": [0, 1]}, points=pairs)
    assert [(c["distill.hu.lambda1"], c["distill.hu.lambda2"], c["seed"]) for c in combos] == [
        (1, 1, 0), (1, 1, 1), (50, 200, 0), (50, 200, 1)]
    r = parse_recipe(_raw(tmp_path, {"seed": [0, 1]}, points=pairs))
    assert r.sweep.swept_keys == ["distill.hu.lambda1", "distill.hu.lambda2", "seed"]
    assert [v.slug for v in plan_sweep(r)][-1] == "distill.hu.lambda1-50_distill.hu.lambda2-200_seed-1"
    with pytest.raises(RecipeError) as e:
        parse_recipe(_raw(tmp_path, {"seed": [0]}, points=[{"distil.hu.lambda1": 1}, {"seed": 3}]))
    assert "sweep.points[0].distil.hu.lambda1: unknown recipe key 'distil.hu.lambda1'; did you mean distill?" in str(e.value)
    assert "sweep.points[1].seed: 'seed' is also in sweep.grid" in str(e.value)


def test_cli_lists_variants_and_refuses_single_stage_commands_on_a_sweep(tmp_path: Path, capsys) -> None:
    from edgekd.cli import main

    recipe = tmp_path / "s.yaml"
    recipe.write_text(f"name: s\nruns_dir: {tmp_path / 'runs'}\nsweep:\n  grid:\n    distill.ullah.temperature: [1, 5]\n")
    assert main(["validate", str(recipe)]) == 0
    assert "a sweep of 2 variants" in capsys.readouterr().out
    assert main(["sweep", str(recipe), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"distill.ullah.temperature-1: {tmp_path / 'runs' / 's' / 'sweep' / 'distill.ullah.temperature-1'}",
                   f"distill.ullah.temperature-5: {tmp_path / 'runs' / 's' / 'sweep' / 'distill.ullah.temperature-5'}"]
    assert main(["distill", str(recipe)]) == 2
    assert "is a sweep" in capsys.readouterr().err


def test_the_summary_leaves_out_runs_that_are_stale_for_the_recipe(tmp_path: Path, stub_stages: list) -> None:
    from edgekd.sweep.report import write_summary

    raw = _raw(tmp_path, {"distill.ullah.temperature": [1, 5]}, table="ullah")
    run_sweep(parse_recipe(raw))
    raw["student"]["epochs"] = 4  # edited after the run: the students' results no longer describe it
    edited = parse_recipe(raw)
    summary = write_summary(edited, plan_sweep(edited))
    assert [row[0] for row in summary["rows"]] == ["Teacher"]
    assert any("Not in the table (not run, failed, or stale for this recipe): distill.ullah.temperature-1/student_scratch"
               in note for note in summary["notes"])
    timing = json.loads((sweep_root(edited) / "timing.json").read_text())
    assert timing["wall_s"] >= 0 and timing["process_cpu_s"] >= 0
    assert any(note.startswith("Last `edgekd sweep` run:") for note in summary["notes"])


def test_a_failing_variant_is_recorded_and_the_rest_still_run(tmp_path: Path, stub_stages: list,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stub = runner._stage_fn

    def flaky(stage: str):
        fn = stub(stage)

        def run(rd: Any) -> dict[str, Any]:
            if stage == "student_kd" and _temperature(rd.recipe) == 5:
                raise RuntimeError("boom")
            return fn(rd)
        return run

    monkeypatch.setattr(runner, "_stage_fn", flaky)
    r = parse_recipe(_raw(tmp_path, {"distill.ullah.temperature": [5, 10]}, table="ullah"))
    summary = run_sweep(r)
    assert summary["failed"] == ["distill.ullah.temperature-5"]
    status = {v["slug"]: v["status"] for v in json.loads((sweep_root(r) / "variants.json").read_text())}
    assert status == {"distill.ullah.temperature-5": "failed: RuntimeError: boom", "distill.ullah.temperature-10": "done"}
    assert [row[0] for row in summary["rows"]][-1] == "**Student-KD (T = 10)**"


# ----------------------------------------------------------------------------- parallel variants (--jobs)


def test_stage_lock_makes_a_second_holder_wait(tmp_path: Path) -> None:
    """Two holders of the same stage key are serialised (flock on separate opens), other keys are not."""
    import threading

    from edgekd.sweep import StagePool

    class FakeRd:
        def __init__(self, key: str) -> None:
            self._key = key

        def key(self, stage: str) -> str:
            return self._key

    pool = StagePool(tmp_path)
    events: list[str] = []
    entered = threading.Event()

    def second() -> None:
        with pool.lock(FakeRd("k1"), "teacher"):
            events.append("second")

    with pool.lock(FakeRd("k1"), "teacher"):
        t = threading.Thread(target=second)
        t.start()
        with pool.lock(FakeRd("k2"), "teacher"):  # another key: not blocked (or this would deadlock)
            entered.set()
        t.join(timeout=0.5)
        assert t.is_alive() and events == []  # still waiting for the first holder
        events.append("first")
    t.join(timeout=10)
    assert not t.is_alive() and events == ["first", "second"] and entered.is_set()
    assert (tmp_path / ".locks" / "teacher-k1.lock").is_file()


def test_parallel_sweep_runs_a_shared_stage_once(tmp_path: Path) -> None:
    """``edgekd sweep --jobs 2``: two worker processes, the real data stage (tiny synthetic set).
    Both variants need the same data stage (its key ignores distill.*): one runs it, the other
    waits on the lock and shares it; each variant's log is in its folder and the timing records
    the jobs. Run as the CLI (a fresh interpreter), the way sweeps are launched. This file runs
    in a pytest process of its own (scripts/test.sh): inside the full suite's process, which holds
    every native thread pool the other tests loaded, the fork that starts a child segfaulted."""
    import subprocess
    import sys

    import yaml

    raw = {"name": "par", "runs_dir": str(tmp_path / "runs"),
           "data": {"cache_dir": str(tmp_path / "cache"), "clip_len": 4, "resize": [24, 32], "crop": [16, 16],
                    "synthetic": {"classes": ["walk", "squat"], "per_class": 3, "num_frames": 8, "size": [64, 48]}},
           "sweep": {"grid": {"distill.ullah.temperature": [1, 5]}, "stages": ["data"]}}
    path = tmp_path / "par.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "edgekd.cli", "sweep", "--jobs", "2", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 variants, 2 at a time, 1 thread(s) each" in proc.stdout
    assert "stages every variant shares (data) first" in proc.stdout  # on every core, before the pool
    r = parse_recipe(raw)
    root = sweep_root(r)
    logs = [(root / v.slug / "sweep.log").read_text() for v in plan_sweep(r)]
    assert sum("data: running" in log for log in logs) == 1, logs
    assert sum("data: shared" in log for log in logs) == 1, logs
    keys = {json.loads((root / v.slug / "data" / "stage.json").read_text())["key"] for v in plan_sweep(r)}
    assert len(keys) == 1
    assert json.loads((root / "timing.json").read_text())["jobs"] == 2
    assert [v["status"] for v in json.loads((root / "variants.json").read_text())] == ["done", "done"]
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_sweep(r, jobs=0)


def test_common_stages_are_those_no_swept_key_reaches() -> None:
    from edgekd.sweep.run import common_stages

    def plan(grid: dict) -> Any:
        r = parse_recipe({"name": "c", "sweep": {"grid": grid, "stages": ["data", "pretrain", "teacher",
                                                                          "student_scratch", "student_kd"]}})
        return r, plan_sweep(r)

    assert common_stages(*plan({"student.seed": [0, 1]})) == ["data", "teacher"]  # pretrain reads the student
    assert common_stages(*plan({"distill.ullah.temperature": [1, 5]})) == ["data", "pretrain", "teacher",
                                                                           "student_scratch"]
    assert common_stages(*plan({"seed": [0, 1]})) == []  # the recipe seed reaches every stage


def test_student_seeds_share_one_teacher(tmp_path: Path, stub_stages: list) -> None:
    """student.seed repeats the student, not the teacher: the teacher's key ignores it, so a sweep
    over three student seeds trains one teacher and three students of each kind."""
    r = parse_recipe(_raw(tmp_path, {"student.seed": [0, 1, 2]}, table="ullah"))
    summary = run_sweep(r)
    assert [s for s, _ in stub_stages].count("teacher") == 1
    assert [s for s, _ in stub_stages].count("student_scratch") == 3
    rows = {row[0]: row[2] for row in summary["rows"]}
    assert rows["Teacher"]["n"] == 1 and rows["Student without KD"]["n"] == 3
    # paired by seed, the seed's luck cancels: KD - scratch is 0.1 + 0.001 * T for every seed
    paired = summary["paired"][0]
    kd = paired["KD - scratch"]
    assert kd["n"] == 3 and kd["mean"] == pytest.approx(0.11) and kd["ci_half_width"] == pytest.approx(0, abs=1e-12)
    te = paired["teacher - scratch"]
    assert te["values"] == pytest.approx([0.3, 0.28, 0.26]) and te["ci_half_width"] > 0
    md = (sweep_root(r) / "summary.md").read_text()
    assert "## Paired differences (same seed, same data)" in md and "+11.0 [+11.0, +11.0] (n=3; shown)" in md
    assert (sweep_root(r) / "paired_differences.png").stat().st_size > 0


def test_deploy_stages_run_only_for_the_matching_variant(tmp_path: Path, stub_stages: list) -> None:
    """The quickstart's shape: three student seeds train for the table, one of them also runs the
    deployment stages (here a stub export), and the summary names it."""
    r = parse_recipe(_raw(tmp_path, {"student.seed": [0, 1, 2]}, table="ullah", deploy_stages=["export"],
                          deploy_where={"student.seed": 1}))
    run_sweep(r)
    exported = [name for stage, name in stub_stages if stage == "export"]
    assert exported == ["student.seed-1"]
    assert {v["status"] for v in json.loads((sweep_root(r) / "variants.json").read_text())} == {"done"}
    md = (sweep_root(r) / "summary.md").read_text()
    assert "Deployed (export): student.seed-1." in md


def test_deploy_where_is_checked_against_the_grid(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe(_raw(tmp_path, {"student.seed": [0, 1]}, deploy_stages=["exprot"],
                          deploy_where={"student.seed": 5, "teacher.seed": 0}))
    msg = str(e.value)
    assert "sweep.deploy_where.teacher.seed: not a swept key (student.seed)" in msg
    assert "sweep.deploy_where.student.seed: 5 is not one of its grid values [0, 1], so no variant would deploy" in msg
    assert "sweep.deploy_stages" in msg and "exprot" in msg
    with pytest.raises(RecipeError, match="sweep.deploy_where: set sweep.deploy_stages too"):
        parse_recipe(_raw(tmp_path, {"student.seed": [0, 1]}, deploy_where={"student.seed": 0}))


def test_kd_cost_charges_the_shared_teacher_pass_once_per_run(tmp_path: Path, stub_stages: list) -> None:
    """Three seeds share one teacher_outputs stage: one student pays all of it, the whole run once."""
    from edgekd.sweep import write_summary

    r = parse_recipe(_raw(tmp_path, {"student.seed": [0, 1, 2]}, table="ullah"))
    run_sweep(r)
    root = sweep_root(r)
    times = {"student_scratch": (10.0, 12.0), "student_kd": (14.0, 15.0), "teacher_outputs": (9.0, 6.0)}
    for v in plan_sweep(r):
        for stage, (cpu, wall) in times.items():
            rec_path = root / v.slug / stage / "stage.json"
            rec = json.loads(rec_path.read_text())
            rec.update(cpu_seconds=cpu, seconds=wall)
            rec_path.write_text(json.dumps(rec))
    summary = write_summary(r, plan_sweep(r))
    (cost,) = summary["kd_cost"]
    cpu = cost["cpu_seconds"]
    assert cpu["n_scratch"] == cpu["n_kd"] == 3 and cpu["teacher_outputs"] == 9.0  # one shared pass
    assert cpu["per_student"] == pytest.approx((14 + 9) / 10)
    assert cpu["whole_run"] == pytest.approx((3 * 14 + 9) / (3 * 10))
    assert cost["seconds"]["whole_run"] == pytest.approx((3 * 15 + 6) / (3 * 12))
    md = (root / "summary.md").read_text()
    assert "## What KD costs (stage times)" in md and "| all | CPU s | 10.0 (mean of 3) | 14.0 (mean of 3) | 9.0 | 2.30x | 1.70x |" in md


def test_deployed_variants_share_one_accuracy_latency_table(tmp_path: Path, stub_stages: list,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Several students deployed by one sweep (the edge recipe's shape): each deployed variant's bench
    rows land in one table and one Pareto chart, labelled by the variant's configuration, the teacher's
    once, fastest first; variants that do not deploy contribute nothing."""
    fake = {"c3d_student": (0.50, 0.40), "x3d_xs": (0.55, 0.10)}  # top-1, latency in ms

    def bench(rd: Any) -> dict[str, Any]:
        stub_stages.append(("bench", rd.recipe.name))
        out = rd.stage_dir("bench")
        out.mkdir(parents=True, exist_ok=True)
        top1, ms = fake[rd.recipe.student.model]
        rows = [{"model": "teacher", "engine": "openvino_fp32", "top1": 0.6, "top1_lo": 0.5, "top1_hi": 0.7, "p50_ms": 9.0},
                {"model": "student_kd", "engine": "openvino_int8", "top1": top1, "top1_lo": top1 - 0.05,
                 "top1_hi": top1 + 0.05, "p50_ms": ms}]
        (out / "report.json").write_text(json.dumps({"meta": {}, "rows": rows}))
        return {"rows": len(rows)}

    make = runner._stage_fn
    monkeypatch.setattr(runner, "_stage_fn", lambda stage: bench if stage == "bench" else
                        (lambda rd: {"built": []}) if stage == "engines" else make(stage))
    r = parse_recipe(_raw(tmp_path, {"student.model": ["c3d_student", "x3d_xs"], "student.seed": [0, 1]},
                          table="ullah", deploy_stages=["export", "engines", "bench"],
                          deploy_where={"student.seed": 0}))
    summary = run_sweep(r)
    benched = sorted(n for s, n in stub_stages if s == "bench")
    assert len(benched) == 2 and all(n.endswith("student.seed-0") for n in benched)
    deployed = summary["deployed"]
    assert [(d["model"], d["engine"]) for d in deployed] == [
        ("teacher", "openvino_fp32"), ("student_kd (student = c3d_student)", "openvino_int8"),
        ("student_kd (student = x3d_xs)", "openvino_int8")]
    md = (sweep_root(r) / "summary.md").read_text()
    table = md.split("## Deployed models: test top-1 against batch-1 latency")[1]
    assert table.index("x3d_xs") < table.index("c3d_student") < table.index("| teacher |")  # fastest first
    assert "| student_kd (student = x3d_xs) | openvino_int8 | 55.0 [50.0, 60.0] | 0.100 | - |" in table
    assert (sweep_root(r) / "deployed_accuracy_vs_latency.png").stat().st_size > 0


def test_a_parallel_sweep_deploys_after_training_and_only_what_trained(tmp_path: Path) -> None:
    """With --jobs > 1 the deployment stages wait until every variant has trained (the bench then
    times engines with nothing training beside it); a variant that failed to train deploys nothing,
    and a sweep without deployment stages has no such phase."""
    from edgekd.sweep.run import deploy_phase

    r = parse_recipe(_raw(tmp_path, {"student.seed": [0, 1, 2]}, deploy_stages=["export", "engines", "bench"],
                          deploy_where={"student.seed": 1}))
    variants = plan_sweep(r)
    done = {v.slug: "done" for v in variants}
    assert [v.slug for v in deploy_phase(r, variants, done)] == ["student.seed-1"]
    assert deploy_phase(r, variants, {**done, "student.seed-1": "failed: boom"}) == []
    plain = parse_recipe(_raw(tmp_path, {"student.seed": [0, 1]}))
    assert deploy_phase(plain, plan_sweep(plain), {v.slug: "done" for v in plan_sweep(plain)}) == []
