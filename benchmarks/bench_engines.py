"""pytest-benchmark: inference latency of every available engine, teacher and student, batch 1 and 8.

    .venv/bin/python -m pytest benchmarks/bench_engines.py --benchmark-json=runs/bench_engines.json
    .venv/bin/python benchmarks/compare.py runs/bench_engines.json

Engines (from the backend table in ``edgekd.engines``): PyTorch eager FP32, ONNX Runtime FP32,
OpenVINO FP32 (hint f32 set explicitly), BF16 (the FP32 IR with hint bf16) and INT8 (NNCF PTQ),
TensorRT where present (skipped with the reason otherwise). By default the models are the paper's
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

from edgekd.engines import (
    BACKENDS,
    OnnxRuntimeEngine,
    OpenVinoEngine,
    TorchEngine,
    build_openvino_fp32,
    build_openvino_int8,
    supported_precision_hints,
    tensorrt_status,
)
from edgekd.export.onnx_export import export_onnx
from edgekd.models import build_model
from edgekd.models.complexity import count_macs

THREADS = int(os.environ.get("EDGEKD_BENCH_THREADS", "2"))
BATCHES = [int(b) for b in os.environ.get("EDGEKD_BENCH_BATCHES", "1,8").split(",")]
ROUNDS = int(os.environ.get("EDGEKD_BENCH_ROUNDS", "20"))
RUN_DIR = os.environ.get("EDGEKD_BENCH_RUN")
ENGINES = ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_bf16", "openvino_int8", "tensorrt")
MODELS = ("teacher", "student")


@dataclass
class Artifacts:
    """One model's files: the module, its ONNX, its FP32 and INT8 IRs."""

    model: torch.nn.Module
    onnx: Path
    ir_fp32: Path
    ir_int8: Path
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
    from edgekd.train.checkpoint import load_checkpoint

    run = Path(RUN_DIR)  # type: ignore[arg-type]
    role = "teacher" if role == "teacher" else "student_kd"
    eng = run / "engines" / role
    return Artifacts(load_checkpoint(run / role / "ckpt.pt").build(), run / "export" / f"{role}.onnx",
                     eng / "openvino_fp32" / "model.xml", eng / "openvino_int8" / "model.xml", _input_shape(),
                     f"run {run} ({role})")


def _build_fresh(role: str, tmp: Path) -> Artifacts:
    shape = _input_shape()
    torch.manual_seed(0)
    name = "c3d_teacher" if role == "teacher" else "c3d_student"
    model = build_model(name, num_classes=10, input_size=shape[1:]).eval()
    onnx_path = export_onnx(model, shape, tmp / f"{role}.onnx")
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, *shape)).astype(np.float32) for _ in range(8)]
    return Artifacts(model, onnx_path, build_openvino_fp32(onnx_path, tmp / role / "fp32"),
                     build_openvino_int8(onnx_path, calib, tmp / role / "int8", subset_size=8), shape,
                     f"{name}, random weights, built in a temporary directory")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifacts]:
    torch.set_num_threads(THREADS)
    tmp = tmp_path_factory.mktemp("engines")
    return {role: (_from_run(role) if RUN_DIR else _build_fresh(role, tmp)) for role in MODELS}


def _open(engine: str, art: Artifacts):
    if engine == "pytorch_fp32":
        return TorchEngine(art.model, threads=THREADS)
    if engine == "onnxruntime_fp32":
        return OnnxRuntimeEngine(art.onnx, threads=THREADS)
    if engine.startswith("openvino_"):
        precision = engine.split("_", 1)[1]
        hint = BACKENDS["openvino"].options_for(precision)["precision_hint"]
        if hint not in supported_precision_hints():
            pytest.skip(f"this CPU cannot honour OpenVINO precision hint {hint!r}")
        ir = art.ir_int8 if precision == "int8" else art.ir_fp32
        return OpenVinoEngine(ir, threads=THREADS, precision_hint=hint, name=engine)
    ok, reason = tensorrt_status()
    pytest.skip(reason if not ok else "TensorRT engine building is not part of this version")


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
        "gmacs_per_clip": count_macs(art.model, art.input_shape) / 1e9, "source": art.source,
        "backend_version": desc.get("backend_version"),
    })
    logits = benchmark.pedantic(engine.infer, args=(x,), rounds=ROUNDS, warmup_rounds=3, iterations=1)
    assert logits.shape == (batch, 10) or RUN_DIR  # a run's class count differs
    assert np.isfinite(logits).all()
