"""Q/DQ INT8 ONNX for TensorRT: symmetric INT8, per-channel weights, FP32 head, runs on ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine, onnx_precision
from edgekd.engines.qdq import build_qdq_int8, qdq_accuracy, qdq_summary
from edgekd.export.onnx_export import export_onnx
from edgekd.models import build_model

SHAPE = (3, 4, 16, 16)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("qdq")
    torch.manual_seed(0)
    model = build_model("c3d_student", num_classes=5, input_size=list(SHAPE[1:]), width_mult=0.25, dropout=0.0).eval()
    fp32 = export_onnx(model, SHAPE, root / "model.onnx", opset=17, simplify=True)
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((24, *SHAPE), dtype=np.float32)
    qdq = build_qdq_int8(fp32, (c[None] for c in clips[:16]), root / "qdq" / "model.onnx", subset_size=16)
    return fp32, qdq, clips


def test_qdq_model_is_symmetric_int8_with_per_channel_weights(models: tuple[Path, Path, np.ndarray]) -> None:
    fp32, qdq, _ = models
    assert onnx_precision(qdq) == "int8" and onnx_precision(fp32) == "fp32"
    model = onnx.load(str(qdq))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:
        # activation and weight both arrive through DequantizeLinear
        x_dq, w_dq = producers[conv.input[0]], producers[conv.input[1]]
        assert x_dq.op_type == w_dq.op_type == "DequantizeLinear"
        w_scale, w_zp = inits[w_dq.input[1]], inits[w_dq.input[2]]
        out_channels = inits[producers[w_dq.input[0]].input[0]].shape[0]  # float weight -> Q -> DQ
        assert w_scale.shape == (out_channels,), "weights must be quantized per output channel"
        assert w_zp.dtype == np.int8 and not w_zp.any()
        assert inits[x_dq.input[2]].dtype == np.int8 and not inits[x_dq.input[2]].any()
    summary = qdq_summary(qdq)
    assert summary["nonzero_zero_points"] == 0 and summary["quantize_linear"] == summary["dequantize_linear"] > 0
    # the classifier head (last Gemm) stays FP32: no DequantizeLinear feeds it
    head = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in head.input)
    build = json.loads((qdq.parent / "build.json").read_text())
    assert build["symmetric"] and build["per_channel_weights"] and build["calibration_clips"] == 16
    assert build["kept_fp32"] == [head.name]


def test_qdq_model_runs_on_onnxruntime_close_to_fp32(models: tuple[Path, Path, np.ndarray]) -> None:
    fp32, qdq, clips = models
    a = OnnxRuntimeEngine(fp32).infer(clips[16:])
    b = OnnxRuntimeEngine(qdq).infer(clips[16:])
    assert a.shape == b.shape == (8, 5)
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < rel < 0.25, f"relative logit error {rel:.3f}"  # quantized (not identical) but close


def test_qdq_accuracy_reports_drop_and_agreement(models: tuple[Path, Path, np.ndarray]) -> None:
    fp32, qdq, clips = models
    labels = OnnxRuntimeEngine(fp32).infer(clips).argmax(1)  # FP32 is right by construction
    acc = qdq_accuracy(fp32, qdq, clips, labels, batch_size=5)
    assert acc["n_videos"] == 24 and acc["fp32_top1"] == 1.0
    assert acc["int8_qdq_top1"] == pytest.approx(acc["top1_agreement"])
    assert acc["top1_drop"] == pytest.approx(1.0 - acc["int8_qdq_top1"])
    assert 0 < acc["max_abs_logit_delta"]
    # K clips per video are averaged: two identical views give the same answer as one
    twice = qdq_accuracy(fp32, qdq, np.stack([clips, clips], axis=1), labels)
    assert twice["int8_qdq_top1"] == pytest.approx(acc["int8_qdq_top1"])


def test_qdq_rejects_bad_calibration(models: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    fp32, _, clips = models
    with pytest.raises(ValueError, match="yielded 2 clips"):
        build_qdq_int8(fp32, (c[None] for c in clips[:2]), tmp_path / "m.onnx", subset_size=4)
    with pytest.raises(ValueError, match=r"\(1,C,T,H,W\) float32"):
        build_qdq_int8(fp32, [clips[:1].astype(np.float64)], tmp_path / "m.onnx", subset_size=1)
    with pytest.raises(ValueError, match="method"):
        build_qdq_int8(fp32, [clips[:1]], tmp_path / "m.onnx", subset_size=1, method="kl")
    assert not (tmp_path / "m.onnx").exists()
