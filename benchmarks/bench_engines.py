"""pytest-benchmark: inference latency of every available engine, teacher and student, batch 1 and 8.

    .venv/bin/python -m pytest benchmarks/bench_engines.py --benchmark-json=runs/bench_engines.json
    .venv/bin/python benchmarks/compare.py runs/bench_engines.json

Engines: every row of the backend table (``edgekd/engines/table.py``), opened with the row's own
loader: PyTorch eager FP32, ONNX Runtime FP32 and Q/DQ INT8, OpenVINO FP32 (hint f32 set
explicitly), BF16 (the FP32 IR with hint bf16) and INT8 (NNCF PTQ), TensorRT where present; a row
this machine cannot run is skipped with the reason. By default the models are the paper's
C3D teacher and student with random weights, exported and converted in a temporary directory
(latency does not depend on the weights' values; the INT8 IR is calibrated on random clips, which
changes its accuracy, not its speed). ``EDGEKD_BENCH_RUN=runs/<name>`` benchmarks a finished run's
teacher and KD student instead (its ``export/`` and ``engines/`` files; input shape from its recipe).

Threads are pinned (``EDGEKD_BENCH_THREADS``, default 2) and read back into ``extra_info`` with the
OpenVINO precision hint. Other knobs: ``EDGEKD_BENCH_INPUT`` (TxHxW, default 16x32x40, the
quickstart's input), ``EDGEKD_BENCH_BATCHES`` (default "1,8"), ``EDGEKD_BENCH_ROUNDS`` (default 20).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.engines.rows import BuildContext, EngineSkipped
from edgekd.engines.table import ENGINES as TABLE
from edgekd.engines.table import get_engine
from edgekd.export.onnx_export import export_onnx
from edgekd.models import build_model
from edgekd.models.complexity import count_macs
from edgekd.recipe import EnginesConfig
from edgekd.train.checkpoint import load_checkpoint, save_checkpoint

THREADS = int(os.environ.get("EDGEKD_BENCH_THREADS", "2"))
BATCHES = [int(b) for b in os.environ.get("EDGEKD_BENCH_BATCHES", "1,8").split(",")]
ROUNDS = int(os.environ.get("EDGEKD_BENCH_ROUNDS", "20"))
RUN_DIR = os.environ.get("EDGEKD_BENCH_RUN")
ENGINES = tuple(row.name for row in TABLE)  # every row of the backend table; those that cannot run here skip
MODELS = ("teacher", "student_kd")


@dataclass
class Artifacts:
    """One model in a run directory laid out as the pipeline lays it out (rows find their files)."""

    run: Path
    role: str
    input_shape: tuple[int, int, int, int]
    source: str


def _input_shape() -> tuple[int, int, int, int]:
    if RUN_DIR:
        from edgekd.stages.validate import load_recipe

        d = load_recipe(Path(RUN_DIR) / "recipe.yaml").data
        return (3, d.clip_len, *d.crop)
    t, h, w = (int(v) for v in os.environ.get("EDGEKD_BENCH_INPUT", "16x32x40").split("x"))
    return (3, t, h, w)


def _from_run(role: str) -> Artifacts:
    run = Path(RUN_DIR)  # type: ignore[arg-type]
    return Artifacts(run, role, _input_shape(), f"run {run} ({role})")


def _build_fresh(role: str, tmp: Path) -> Artifacts:
    """The paper's C3D (random weights) as a one-model run directory, every buildable CPU row built
    by the engines stage's own builders."""
    shape = _input_shape()
    torch.manual_seed(0)
    name = "c3d_teacher" if role == "teacher" else "c3d_student"
    kwargs = {"num_classes": 10, "input_size": list(shape[1:])}
    model = build_model(name, **kwargs).eval()
    save_checkpoint(tmp / role / "ckpt.pt", model, model_name=name, model_kwargs=kwargs, classes=[str(i) for i in range(10)],
                    input_spec={}, metrics={})
    onnx_path = export_onnx(model, shape, tmp / "export" / f"{role}.onnx")
    calib = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
    for row in TABLE:
        if row.build is None or row.backend == "tensorrt" or not row.status()[0]:
            continue
        try:
            row.builder()(BuildContext(row, role, tmp, onnx_path, {}, EnginesConfig(), calibration=calib))
        except EngineSkipped:  # e.g. the streaming rows: C3D has no per-frame step graph (bench_streaming.py)
            continue
    return Artifacts(tmp, role, shape, f"{name}, random weights, built in a temporary directory")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifacts]:
    torch.set_num_threads(THREADS)
    tmp = tmp_path_factory.mktemp("engines")
    return {role: (_from_run(role) if RUN_DIR else _build_fresh(role, tmp / role)) for role in MODELS}


def _open(engine: str, art: Artifacts):
    """The row's engine through the backend table, or a skip saying why it cannot run here."""
    row = get_engine(engine)
    ok, why = row.status()
    if not ok:
        pytest.skip(why)
    path = row.path(art.run, art.role)
    if not path.is_file():
        pytest.skip(f"{path} was not built ({row.summary})")
    return row.loader()(path, threads=THREADS, name=engine)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("role", MODELS)
def test_engine_latency(benchmark, artifacts: dict[str, Artifacts], role: str, engine_name: str, batch: int) -> None:
    art = artifacts[role]
    engine = _open(engine_name, art)
    x = np.random.default_rng(1).standard_normal((batch, *art.input_shape)).astype(np.float32)
    desc = engine.describe()
    benchmark.group = f"{role} batch {batch}"
    benchmark.extra_info.update({
        "kind": "engine_latency", "model": role, "engine": engine_name, "batch": batch,
        "threads_requested": THREADS, "threads": desc.get("threads"), "precision": desc.get("precision"),
        "inference_precision_hint": desc.get("inference_precision_hint"), "input": list(art.input_shape),
        "gmacs_per_clip": count_macs(load_checkpoint(art.run / role / "ckpt.pt").build(), art.input_shape) / 1e9,
        "source": art.source,
        "backend_version": desc.get("backend_version"),
    })
    logits = benchmark.pedantic(engine.infer, args=(x,), rounds=ROUNDS, warmup_rounds=3, iterations=1)
    assert logits.shape == (batch, 10) or RUN_DIR  # a run's class count differs
    assert np.isfinite(logits).all()
