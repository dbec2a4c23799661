"""pytest-benchmark: the edge students' OpenVINO INT8 latency against the paper's C3D student, batch 1,
at several input sizes (the edge issue's target: the fastest new student at most 1/3 of the C3D
student's INT8 latency).

    .venv/bin/python -m pytest benchmarks/bench_edge_students.py --benchmark-json=runs/bench_edge.json
    .venv/bin/python benchmarks/compare.py runs/bench_edge.json

Per spatial size (``EDGEKD_BENCH_EDGE_SIZES``, HxW list, default "32x40,64x64,112x112": the edge
recipe's crop, and two larger ones where per-call overhead matters less), one session times:

- ``c3d_student`` on 16 frames (the reference: what the papers deploy);
- ``x3d_xs`` and ``tsm_mobilenetv2_online`` on the same 16 frames, and on the frame counts they are
  published with (X3D-XS 4, TSM 8), which sample the same span more sparsely;
- ``tsm_mobilenetv2_online`` per streamed frame (its INT8 step graph, ``openvino_int8_stream``):
  what a camera runtime pays per prediction, where the others recompute a clip.

Models have random weights (latency does not depend on their values), laid out as a run directory
and built by the backend table's own rows (``openvino_int8``, ``openvino_int8_stream``), calibrated
on random clips. ``compare.py`` prints each case's median over the C3D student's median at the same
size. Knobs: ``EDGEKD_BENCH_THREADS`` (default 2), ``EDGEKD_BENCH_ROUNDS`` (default 30).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.engines.rows import BuildContext
from edgekd.engines.table import get_engine
from edgekd.export.onnx_export import export_onnx, export_step_onnx
from edgekd.models import build_model
from edgekd.models.complexity import count_macs

THREADS = int(os.environ.get("EDGEKD_BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("EDGEKD_BENCH_ROUNDS", "30"))
SIZES = [tuple(int(v) for v in s.split("x")) for s in os.environ.get("EDGEKD_BENCH_EDGE_SIZES",
                                                                       "32x40,64x64,112x112").split(",")]
# (case, model, frames, mode): mode "clip" times a T-frame clip, "stream" one more frame of a stream
CASES = [("c3d_student T16", "c3d_student", 16, "clip"),
         ("x3d_xs T16", "x3d_xs", 16, "clip"),
         ("x3d_xs T4", "x3d_xs", 4, "clip"),
         ("tsm_mobilenetv2_online T16", "tsm_mobilenetv2_online", 16, "clip"),
         ("tsm_mobilenetv2_online T8", "tsm_mobilenetv2_online", 8, "clip"),
         ("tsm_mobilenetv2_online stream", "tsm_mobilenetv2_online", 16, "stream")]
K = 10


def _build(tmp: Path, name: str, t: int, h: int, w: int, mode: str) -> tuple[object, float]:
    """The case's INT8 engine (built by its backend-table row in a one-model run directory) and its
    GMACs per call (a clip, or one frame of a stream)."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=K, input_size=[t, h, w]).eval()
    onnx_path = export_onnx(model, (3, t, h, w), tmp / "export" / "student_kd.onnx")
    calib = np.random.default_rng(0).standard_normal((8, 3, t, h, w)).astype(np.float32)
    macs = count_macs(model, (3, t, h, w)) / 1e9
    row = get_engine("openvino_int8")
    if mode == "stream":
        export_step_onnx(model, (3, h, w), tmp / "export" / "student_kd_step.onnx", window=t)
        row = get_engine("openvino_int8_stream")
        macs /= t  # TSM's per-frame 2-D network: a clip costs T frames, the shift costs no MACs
    record = row.builder()(BuildContext(row, "student_kd", tmp, onnx_path, {}, options=None, calibration=calib))
    return row.loader()(Path(record["artifact"]), threads=THREADS, name=row.name), macs


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(THREADS)
    return {"root": tmp_path_factory.mktemp("edge"), "built": {}}


@pytest.mark.parametrize("case", CASES, ids=[c[0].replace(" ", "-") for c in CASES])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_edge_student_int8_latency(benchmark, engines: dict, size: tuple[int, int], case: tuple) -> None:
    label, name, t, mode = case
    h, w = size
    key = (label, size)
    if key not in engines["built"]:
        engines["built"][key] = _build(engines["root"] / f"{label.replace(' ', '_')}_{h}x{w}", name, t, h, w, mode)
    engine, gmacs = engines["built"][key]
    desc = engine.describe()
    assert desc["precision"] == "int8" and desc["inference_precision_hint"] == "f32"
    benchmark.group = f"INT8 batch 1 at {h}x{w}"
    benchmark.extra_info.update({"kind": "edge_student", "case": label, "model": name, "frames": t, "mode": mode,
                                 "size": [h, w], "gmacs_per_call": gmacs, "threads_requested": THREADS,
                                 "threads": desc.get("threads"), "engine": desc["name"],
                                 "backend_version": desc.get("backend_version")})
    rng = np.random.default_rng(1)
    if mode == "stream":
        frame = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        engine.reset()
        for _ in range(t):  # a full window first: the timed frames run on carried state
            engine.push(frame)
        out = benchmark.pedantic(engine.push, args=(frame,), rounds=ROUNDS, warmup_rounds=3, iterations=1)
    else:
        clip = rng.standard_normal((1, 3, t, h, w)).astype(np.float32)
        out = benchmark.pedantic(engine.infer, args=(clip,), rounds=ROUNDS, warmup_rounds=3, iterations=1)
    assert out.shape == (1, K) and np.isfinite(out).all()
