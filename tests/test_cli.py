"""The thin CLI: validate, synth, clear errors with exit code 2."""

from pathlib import Path

import cv2

from edgekd.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_validate_ok_and_bad(tmp_path, capsys):
    assert main(["validate", str(REPO / "recipes" / "quickstart.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\ndistill:\n  ullah:\n    temprature: 3\nteacher:\n  modle: c3d_teacher\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "distill.ullah.temprature: unknown key, did you mean distill.ullah.temperature?" in err
    assert "teacher.modle: unknown key, did you mean teacher.model?" in err


def test_set_override_is_validated(capsys):
    assert main(["validate", str(REPO / "recipes" / "tiny.yaml"), "--set", "distill.ullah.alpha=2"]) == 2
    assert "distill.ullah.alpha: must be in [0, 1], got 2.0" in capsys.readouterr().err


def test_missing_recipe_is_named(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe not found" in capsys.readouterr().err


def test_stage_without_its_inputs_says_what_to_run(tmp_path, capsys):
    rc = main(["distill", str(REPO / "recipes" / "tiny.yaml"), "--set", f"runs_dir={tmp_path}",
               "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.synthetic.per_class=2",
               "--set", "data.synthetic.num_frames=8"])
    assert rc == 2
    assert "needs stage 'teacher' first" in capsys.readouterr().err


def test_synth_writes_ucf101_layout(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--classes", "sit_down,stand_up", "--per-class", "2", "--seed", "3",
                 "--frames", "8", "--size", "64x48"]) == 0
    assert "2 classes" in capsys.readouterr().out
    assert (out / "classInd.txt").read_text().split() == ["1", "sit_down", "2", "stand_up"]
    videos = sorted(out.glob("*/*.avi"))
    assert len(videos) == 4
    cap = cv2.VideoCapture(str(videos[0]))
    ok, frame = cap.read()
    assert ok and frame.shape == (48, 64, 3)
    assert main(["synth", str(tmp_path / "x"), "--classes", "sitdown"]) == 2
    assert "sit_down" in capsys.readouterr().err


def test_manifest_records_the_git_commit_without_a_subprocess(monkeypatch):
    import subprocess

    from edgekd.utils import versions

    def refuse(*a, **k):
        raise AssertionError("no subprocess: forking a process holding OpenVINO/ORT threads crashed")

    monkeypatch.setattr(subprocess, "run", refuse)
    commit = versions.git_commit()
    git_dir = REPO / ".git"
    if git_dir.exists():
        assert commit is not None and len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)
