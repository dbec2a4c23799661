"""Resume after a real SIGKILL: ``edgekd train`` killed mid-teacher and again mid-student, then run
to completion, ends with the same metrics and weights as an uninterrupted run of the same recipe
(both in fp32, where bit-equality is a fair promise on any CPU).

The runs are subprocesses started before this module imports anything heavy (forking a process
that holds OpenVINO/ONNX Runtime threads crashed before; see DEVELOPERS.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMING_KEYS = ("clips_per_s", "epoch_s")  # wall-clock columns differ between any two runs

RECIPE = """\
name: resume
seed: 3
runs_dir: {root}/runs
data:
  source: synthetic
  synthetic:
    classes: [walk, jumping_jack, sit_down, stand_up]
    per_class: 6
    clips_per_group: 2
    num_frames: 16
    size: [64, 48]
  clip_len: 8
  frame_interval: 2
  resize: [32, 42]
  crop: [32, 32]
  val_fraction: 0.25
  workers: 0
  cache_dir: {root}/cache
teacher:
  model: c3d_student
  width_mult: 0.125
  epochs: 2
  batch_size: 4
  lr: 0.001
  lr_schedule: cosine
  precision: fp32
student:
  model: c3d_student
  width_mult: 0.125
  dropout: 0.3
  epochs: 2
  batch_size: 4
  lr: 0.001
  precision: fp32
"""


def _write_recipe(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    p = root / "recipe.yaml"
    p.write_text(RECIPE.format(root=root))
    return p


def _cmd(recipe: Path) -> list[str]:
    return [sys.executable, "-m", "edgekd.cli", "train", str(recipe)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}


def _run_to_end(recipe: Path, log: Path) -> str:
    with log.open("w") as f:
        proc = subprocess.run(_cmd(recipe), cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def _kill_when(recipe: Path, trigger: Path, log: Path) -> None:
    """Start a run and SIGKILL it as soon as ``trigger`` (a resume checkpoint) appears."""
    with log.open("w") as f:
        proc = subprocess.Popen(_cmd(recipe), cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        try:
            while not trigger.exists():
                assert proc.poll() is None, f"run ended (rc {proc.returncode}) before {trigger} appeared:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{trigger} never appeared"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _metrics(run: Path, stage: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.mark.slow
def test_killed_twice_then_resumed_equals_uninterrupted(tmp_path):
    straight = _write_recipe(tmp_path / "straight")
    killed = _write_recipe(tmp_path / "killed")
    run_a, run_b = tmp_path / "straight/runs/resume", tmp_path / "killed/runs/resume"

    _run_to_end(straight, tmp_path / "straight.log")

    # kill 1: right after the teacher's first epoch checkpoint
    _kill_when(killed, run_b / "teacher/last.pt", tmp_path / "kill1.log")
    assert not (run_b / "teacher/stage.json").exists()
    assert len(_metrics(run_b, "teacher")) in (1, 2)  # killed after epoch 1 (at most 2 written)
    # kill 2: the re-run resumes the teacher, finishes it, and is killed in the student's first epoch
    _kill_when(killed, run_b / "student_scratch/last.pt", tmp_path / "kill2.log")
    log2 = (tmp_path / "kill2.log").read_text()
    assert "] data: reused" in log2
    assert "[teacher] resuming from" in log2 and "after epoch" in log2
    assert (run_b / "teacher/stage.json").exists() and not (run_b / "teacher/last.pt").exists()
    # the last run reuses data and teacher and resumes the student
    log3 = _run_to_end(killed, tmp_path / "final.log")
    assert "] teacher: reused" in log3 and "[student_scratch] resuming from" in log3

    for stage in ("teacher", "student_scratch"):
        a, b = _metrics(run_a, stage), _metrics(run_b, stage)
        assert [r["epoch"] for r in b] == list(range(1, len(a) + 1)) and len(a) >= 2
        assert a == b, stage  # every loss, accuracy and val number identical, not just close
        out_a = json.loads((run_a / stage / "stage.json").read_text())["outputs"]
        out_b = json.loads((run_b / stage / "stage.json").read_text())["outputs"]
        assert out_a == out_b
        assert not (run_b / stage / "last.pt").exists()  # dropped once the stage is done

    import torch  # only now: the subprocesses above are done

    for stage in ("teacher", "student_scratch"):
        sa = torch.load(run_a / stage / "ckpt.pt", weights_only=True)["state_dict"]
        sb = torch.load(run_b / stage / "ckpt.pt", weights_only=True)["state_dict"]
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), stage


# ----------------------------------------------------------------------------- in-process units
# (torch imported inside the tests, so the module's subprocess test forks a torch-free process)


def _tiny_fit(tmp_path: Path, *, epochs: int, key: str, loss_fn=None, seed: int = 0):
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset

    from edgekd.train.loop import FitOptions, ResumeSpec, cross_entropy_loss, fit

    data = TensorDataset(torch.randn(8, 3, 4, 8, 8, generator=torch.Generator().manual_seed(123)), torch.arange(8) % 2)
    torch.manual_seed(seed)  # the process's RNG state and the model's initialisation
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(), nn.Linear(4 * 2 * 6 * 6, 2))
    proj = nn.Linear(2, 2)  # an extra module, as a KD projection would be
    loaders = [DataLoader(data, batch_size=2, shuffle=s, generator=torch.Generator().manual_seed(1)) for s in (True, False)]
    saved: list[int] = []
    best = fit(model, *loaders, FitOptions(epochs=epochs, lr=0.01, precision="fp32", channels_last=False, desc="t"),
               loss_fn=loss_fn or cross_entropy_loss, extra_modules=[proj],
               on_best=lambda m, row: saved.append(row["epoch"]), metrics_path=tmp_path / "metrics.jsonl",
               resume=ResumeSpec(tmp_path / "last.pt", key))
    return best, model, proj


def test_in_process_resume_equals_straight_and_other_key_is_discarded(tmp_path, capsys):
    import torch

    from edgekd.train.loop import ResumeSpec, load_resume_state

    straight, m_straight, p_straight = _tiny_fit(tmp_path / "a", epochs=3, key="k")
    _tiny_fit(tmp_path / "b", epochs=1, key="k")  # as if killed after epoch 1
    # a new process: another initialisation and RNG state, all replaced by the checkpoint's
    resumed, m_resumed, p_resumed = _tiny_fit(tmp_path / "b", epochs=3, key="k", seed=9)
    assert "resuming from" in capsys.readouterr().out
    assert {k: v for k, v in resumed.items() if k not in TIMING_KEYS} == \
        {k: v for k, v in straight.items() if k not in TIMING_KEYS}
    assert _metrics(tmp_path, "a") == _metrics(tmp_path, "b")
    assert all(torch.equal(a, b) for a, b in zip(m_straight.state_dict().values(), m_resumed.state_dict().values()))
    assert torch.equal(p_straight.weight, p_resumed.weight)
    assert (tmp_path / "a/metrics.jsonl").read_text().count("\n") == 3
    state, _ = load_resume_state(ResumeSpec(tmp_path / "b/last.pt", "k"))
    assert state is not None and state["epoch"] == 3 and len(state["rows"]) == 3

    _tiny_fit(tmp_path / "b", epochs=1, key="other recipe")
    assert "discarding" in capsys.readouterr().out
    state, why = load_resume_state(ResumeSpec(tmp_path / "b/last.pt", "k"))
    assert state is None and "other inputs" in why
    assert (tmp_path / "b/metrics.jsonl").read_text().count("\n") == 1  # a fresh log


def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(tmp_path):
    import torch

    from edgekd.train.loop import (
        NonFiniteLossError,
        ResumeSpec,
        cross_entropy_loss,
        load_resume_state,
    )

    calls = {"n": 0}

    def explodes(logits, labels, clips, extras):
        calls["n"] += 1
        loss = cross_entropy_loss(logits, labels, clips, extras)
        return loss * float("nan") if calls["n"] == 7 else loss  # epoch 2 (4 steps per epoch), step 2

    with pytest.raises(NonFiniteLossError) as e:
        _tiny_fit(tmp_path, epochs=3, key="k", loss_fn=explodes)
    msg = str(e.value)
    assert "non-finite loss (nan) at epoch 2, step 2 of the epoch (global step 7)" in msg
    assert f"last good checkpoint: {tmp_path / 'last.pt'} (after epoch 1" in msg
    state, _ = load_resume_state(ResumeSpec(tmp_path / "last.pt", "k"))
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())

    calls["n"] = -10**9  # stops exploding: running again resumes after epoch 1 and finishes
    best, _, _ = _tiny_fit(tmp_path, epochs=3, key="k", loss_fn=explodes)
    assert best["epoch"] >= 1 and (tmp_path / "metrics.jsonl").read_text().count("\n") == 3

    calls["n"] = 0
    with pytest.raises(NonFiniteLossError, match=r"last good checkpoint: none \(no epoch finished yet\)"):
        _tiny_fit(tmp_path / "fresh", epochs=3, key="k",
                  loss_fn=lambda *a: cross_entropy_loss(*a) * float("inf"))
