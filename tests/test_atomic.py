"""Atomic artifacts and safe loading: a failed or killed write never replaces a good file, and no
loader in the package runs pickled code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgekd.train.checkpoint import load_checkpoint, save_checkpoint
from edgekd.train.loop import ResumeSpec, load_resume_state
from edgekd.utils.atomic import atomic_dir, atomic_path, write_json

REPO = Path(__file__).resolve().parents[1]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"good": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"trunc')  # half-written, then the writer fails
            raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"good": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_temporary_is_a_hidden_sibling_with_the_suffix(tmp_path):
    with atomic_path(tmp_path / "model.onnx") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.") and tmp.suffix == ".onnx"
        assert not (tmp_path / "model.onnx").exists()  # nothing under the final name until complete
        tmp.write_bytes(b"x" * 10)
    assert (tmp_path / "model.onnx").read_bytes() == b"x" * 10


def test_atomic_dir_swaps_a_complete_directory(tmp_path):
    ir = tmp_path / "openvino_fp32"
    with atomic_dir(ir) as tmp:
        (tmp / "model.xml").write_text("v1")
        (tmp / "model.bin").write_bytes(b"1")
    with pytest.raises(ValueError):
        with atomic_dir(ir) as tmp:
            (tmp / "model.xml").write_text("v2 half")
            raise ValueError("conversion failed")
    assert (ir / "model.xml").read_text() == "v1" and (ir / "model.bin").read_bytes() == b"1"
    with atomic_dir(ir) as tmp:
        (tmp / "model.xml").write_text("v2")
    assert [p.name for p in ir.iterdir()] == ["model.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["openvino_fp32"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_loaders_refuse_pickled_code(tmp_path):
    evil = tmp_path / "ckpt.pt"
    torch.save({"format": "edgekd-checkpoint-v1", "payload": _Evil()}, evil)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        load_checkpoint(evil)
    state, why = load_resume_state(ResumeSpec(evil, "k"))
    assert state is None and "unreadable resume checkpoint" in why


def test_checkpoint_roundtrip_under_weights_only(tmp_path):
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 4, 8, 8))
    save_checkpoint(tmp_path / "ckpt.pt", model, model_name="m", model_kwargs={"size": (4, 8)},
                    classes=["a", "b"], input_spec={"crop": (8, 8)}, metrics={"val_top1": 0.5})
    ck = load_checkpoint(tmp_path / "ckpt.pt")
    assert ck.model_kwargs == {"size": [4, 8]} and ck.metrics == {"val_top1": 0.5}
    assert all(torch.equal(ck.state_dict[k], v) for k, v in model.state_dict().items())


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every ``name(`` call (parentheses balanced)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
    return out


def test_no_unsafe_loading_anywhere_in_the_package():
    """Source audit: every torch.load passes weights_only=True; no yaml.load / pickle loads."""
    offenders = []
    sources = [p for d in ("edgekd", "benchmarks", "deploy", "scripts") for p in sorted((REPO / d).rglob("*.py"))]
    assert len(sources) > 20
    for path in sources:
        text = path.read_text()
        for args in _calls(text, "torch.load"):
            if "weights_only=True" not in args:
                offenders.append(f"{path.relative_to(REPO)}: torch.load({args})")
        for bad in ("yaml.load(", "yaml.unsafe_load(", "pickle.load(", "pickle.loads(", "allow_pickle=True"):
            if bad in text:
                offenders.append(f"{path.relative_to(REPO)}: {bad}")
    assert offenders == []


_WRITER = """
import sys, torch, torch.nn as nn
from edgekd.train.checkpoint import save_checkpoint
model = nn.Linear(1024, 2048)  # ~8 MB: each save takes a while, so kills land mid-write
i = 0
while True:
    with torch.no_grad():
        model.bias.fill_(i)
    save_checkpoint(sys.argv[1], model, model_name="linear", model_kwargs={}, classes=["a"], input_spec={},
                    metrics={"i": i})
    i += 1
    print(i, flush=True)
"""


@pytest.mark.slow
def test_sigkill_while_writing_never_leaves_a_truncated_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "ckpt.pt"
    delays = (0.07, 0.31)
    for k, delay in enumerate(delays):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        assert proc.stdout is not None
        proc.stdout.readline()  # one complete checkpoint exists
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ck = load_checkpoint(target)  # always a complete file: the last one renamed into place
        assert ck.metrics["i"] >= 0 and torch.equal(ck.state_dict["bias"], torch.full((2048,), float(ck.metrics["i"])))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
    assert all(n.startswith(".ckpt.") for n in leftovers)  # at most hidden temporaries, never the artifact
