"""Stage manifests and reuse: a stage re-runs when its inputs changed, including an upstream
artifact replaced by hand, and not otherwise. Stage functions are replaced by fakes that write one
file each, so the runner's bookkeeping is tested without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.stages import runner
from edgekd.stages.rundir import RESUME_FILE, RunDir
from edgekd.stages.table import STAGE_NAMES as STAGES
from edgekd.stages.table import get_stage
from edgekd.stages.validate import parse_recipe


def _downstream(stage: str) -> set[str]:
    """Every stage that consumes ``stage``, directly or not."""
    out: set[str] = set()
    frontier = {stage}
    while frontier:
        frontier = {s for s in STAGES if set(get_stage(s).upstream) & frontier} - out
        out |= frontier
    return out


@pytest.fixture
def fake_stages(monkeypatch):
    calls: list[str] = []

    def make(stage: str):
        def run(rd: RunDir) -> dict:
            calls.append(stage)
            d = rd.stage_dir(stage)
            d.mkdir(parents=True, exist_ok=True)
            name = "split.json" if stage == "data" else "artifact.bin"
            (d / name).write_text(f"{stage} output")
            (d / RESUME_FILE).write_bytes(b"resume state")  # a training stage's leftover
            return {"wrote": name}
        return run

    monkeypatch.setattr(runner, "_stage_fn", make)
    return calls


def _recipe(tmp_path: Path, **over):
    return parse_recipe({"name": "r", "runs_dir": str(tmp_path / "runs"), **over})


def test_stage_manifest_records_inputs_hashes_versions_and_commit(tmp_path, fake_stages):
    rd = runner.run_pipeline(_recipe(tmp_path))
    assert fake_stages == list(STAGES)
    for stage in STAGES:
        rec = json.loads((rd.stage_dir(stage) / "stage.json").read_text())
        assert rec["key"] == rd.key(stage)
        assert rec["recipe_hash"] == rd.recipe_hash() and len(rec["recipe_hash"]) == 16
        assert rec["packages"]["torch"].startswith("2.") and "python" in rec and "git_commit" in rec
        assert set(rec["inputs"]["upstream"]) == set(get_stage(stage).upstream)
        for up, info in rec["inputs"]["upstream"].items():
            up_rec = json.loads((rd.stage_dir(up) / "stage.json").read_text())
            assert info["key"] == up_rec["key"]
            assert info["files"] == up_rec["artifacts"]  # sha256 of what the upstream stage left
            assert all(len(h) == 64 for h in info["files"].values())
        assert not (rd.stage_dir(stage) / RESUME_FILE).exists()  # dropped once done
    assert set(json.loads((rd.stage_dir("teacher") / "stage.json").read_text())["artifacts"]) == {"artifact.bin"}


def test_unchanged_inputs_reuse_every_stage(tmp_path, fake_stages):
    runner.run_pipeline(_recipe(tmp_path))
    fake_stages.clear()
    runner.run_pipeline(_recipe(tmp_path))
    assert fake_stages == []


def test_upstream_file_replaced_by_hand_reruns_its_consumers_only(tmp_path, fake_stages):
    rd = runner.run_pipeline(_recipe(tmp_path))
    (rd.stage_dir("teacher") / "artifact.bin").write_text("a teacher checkpoint from somewhere else")
    assert rd.is_fresh("teacher")  # the user's replacement is kept, not overwritten
    assert not rd.is_fresh("student_kd")
    fake_stages.clear()
    runner.run_pipeline(_recipe(tmp_path))
    assert set(fake_stages) == _downstream("teacher") and "student_kd" in fake_stages
    assert (rd.stage_dir("teacher") / "artifact.bin").read_text() == "a teacher checkpoint from somewhere else"


def test_deleted_artifact_and_changed_section_rerun(tmp_path, fake_stages):
    rd = runner.run_pipeline(_recipe(tmp_path))
    (rd.stage_dir("export") / "artifact.bin").unlink()
    assert not rd.is_fresh("export")
    fake_stages.clear()
    runner.run_pipeline(_recipe(tmp_path))
    # keys follow content: the re-made file is byte-identical, so the stages after export are reused
    assert fake_stages == ["export"]
    fake_stages.clear()
    runner.run_pipeline(_recipe(tmp_path, distill={"ullah": {"temperature": 4}}))
    assert set(fake_stages) == {"student_kd"} | _downstream("student_kd")


def test_damaged_record_means_not_done(tmp_path, fake_stages):
    rd = runner.run_pipeline(_recipe(tmp_path))
    (rd.stage_dir("data") / "stage.json").write_text('{"stage": "da')  # a torn write (cannot happen atomically)
    assert rd.record("data") is None and not rd.is_fresh("bench")


def test_external_weights_file_is_an_input(tmp_path, fake_stages):
    weights = tmp_path / "sports1m.pt"
    weights.write_bytes(b"weights v1")
    rd = runner.run_pipeline(_recipe(tmp_path, teacher={"pretrained": str(weights)}))
    rec = json.loads((rd.stage_dir("teacher") / "stage.json").read_text())
    assert list(rec["inputs"]["external_files"]) == [str(weights)]
    weights.write_bytes(b"weights v2, replaced")
    fake_stages.clear()
    runner.run_pipeline(_recipe(tmp_path, teacher={"pretrained": str(weights)}))
    assert "teacher" in fake_stages and "student_scratch" not in fake_stages


def test_edited_stage_code_reruns_it_and_its_consumers_and_the_log_says_why(tmp_path, fake_stages, monkeypatch,
                                                                             capsys):
    from edgekd.stages import rundir

    runner.run_pipeline(_recipe(tmp_path))
    real = rundir.code_fingerprint

    def edited(module: str) -> dict:
        fp = dict(real(module))
        if "edgekd/distill/losses/soft_ce.py" in fp:  # the code of the KD student (and nothing upstream of it)
            fp["edgekd/distill/losses/soft_ce.py"] = "edited"
        return fp

    monkeypatch.setattr(rundir, "code_fingerprint", edited)
    fake_stages.clear()
    capsys.readouterr()
    runner.run_pipeline(_recipe(tmp_path))
    # the KD stage's module also holds the teacher_outputs stage (it reads the loss for its feature tap)
    assert set(fake_stages) == {"teacher_outputs", "student_kd"} | _downstream("student_kd")
    out = capsys.readouterr().out
    assert "student_kd: running (code changed: edgekd/distill/losses/soft_ce.py)" in out
    assert "teacher: reused" in out and "export: running (upstream stage student_kd changed)" in out


def test_code_fingerprint_follows_code_not_comments(tmp_path):
    from edgekd.stages.codehash import _code_hash, code_fingerprint

    a = tmp_path / "a.py"
    a.write_text('"""Docs."""\n\ndef f(x):\n    """More docs."""\n    return x + 1  # a comment\n')
    h = _code_hash(a)
    a.write_text('"""Other docs."""\n\n\ndef f(x):\n    return x + 1\n')
    assert _code_hash(a) == h  # docstrings, comments and blank lines do not count
    a.write_text('def f(x):\n    return x + 2\n')
    assert _code_hash(a) != h
    teacher = code_fingerprint("edgekd.stages.train_stage")
    kd = code_fingerprint("edgekd.stages.distill_stage")
    assert "edgekd/train/loop.py" in teacher and "edgekd/models/c3d.py" in teacher
    assert not any(f.startswith("edgekd/distill/") for f in teacher)  # a KD edit does not retrain the teacher
    # the loss registry imports its modules at run time: importing the package counts them all
    assert {"edgekd/distill/losses/soft_ce.py", "edgekd/distill/losses/kl_tau2.py"} <= set(kd)
    assert not any(f in teacher for f in ("edgekd/stages/table.py", "edgekd/stages/rundir.py", "edgekd/recipe.py"))
