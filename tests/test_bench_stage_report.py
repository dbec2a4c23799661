"""Bench stage pieces without a pipeline: accuracy block, agreement, and the written report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgekd.stages.bench_stage import (
    _agreement,
    accuracy_block,
    literature_table,
    write_reports,
)


def test_accuracy_block_numbers() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 0])  # class 2 absent; 2 of 4 correct
    acc = accuracy_block(probs, labels)
    assert acc["top1"] == pytest.approx(0.5)
    # Wilson 95% for 2/4: centre (0.5 + 0.4802)/1.9604 = 0.5, half 0.4198 -> [0.1500, 0.8500]
    assert acc["top1_lo"] == pytest.approx(0.1500, abs=1e-3) and acc["top1_hi"] == pytest.approx(0.8500, abs=1e-3)
    assert math.isnan(acc["top5"])  # 3 classes
    # class 0: pos 0.7, 0.2 vs neg 0.1, 0.5 -> 3/4; class 1: pos 0.8, 0.4 vs neg 0.2, 0.3 -> 4/4
    assert acc["macro_auc"] == pytest.approx(0.875)
    assert acc["auc_classes"] == 2 and acc["auc_undefined"] == [2]


def test_agreement_with_fp32_rows() -> None:
    import numpy as np

    ref = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.9, 1.0]])
    # INT8: every logit off by 0.1 or less, which flips only video 3 (FP32 margin 0.1, a near-tie)
    q = ref + np.array([[0.1, 0, 0], [0, -0.1, 0], [0, 0.05, 0], [0, 0.1, 0]])
    rows = [{"model": "m", "engine": "pytorch_fp32", "pred": [0, 1, 2, 2], "logits": ref},
            {"model": "m", "engine": "openvino_int8", "pred": [0, 1, 2, 1], "logits": q},
            {"model": "n", "engine": "openvino_int8", "pred": [0], "logits": ref[:1]}]
    _agreement(rows)
    assert [r["agree_fp32"] for r in rows[:2]] == [1.0, 0.75]
    # median error 0.1: videos with an FP32 margin > 0.2 are "decided" (3 of 4), and all of them agree
    assert rows[1]["logit_delta_p50"] == pytest.approx(0.1) and rows[1]["n_decided"] == 3
    assert rows[1]["agree_fp32_decided"] == 1.0
    assert math.isnan(rows[2]["agree_fp32"]) and "pred" not in rows[0] and "logits" not in rows[0]


def _meta() -> dict:
    return {"threads": 2, "batch_size": 4, "warmup": 3, "clip_len": 8, "input_shape": [3, 8, 32, 32],
            "test_videos": 8, "eval_clips": 1, "e2e_videos": 2, "classes": ["a", "b"],
            "clock": {"effective_mhz": 2400.0, "nominal_mhz": 2000.0, "method": "x86_64_add_chain", "notes": "",
                      "used_mhz": 2400.0, "used": "effective (measured)", "reference_mhz": 2500.0},
            "gpu_clock": {"available": False, "name": None, "sm_mhz": None, "max_sm_mhz": None,
                          "reason": "not available: pynvml is not installed", "reference_mhz": 585.0},
            "peak": {"fp32": {"gmacs_per_s": 90.0, "notes": ""}, "int8": {"gmacs_per_s": None, "notes": "not measured: x"}},
            "skipped_engines": {"tensorrt": "tensorrt: no GPU"},
            "accuracy_ci": "95% Wilson score interval of top-1 (binomial, n = test videos)"}


def test_reports_link_plots_and_compare_literature(tmp_path: Path) -> None:
    row = {"model": "student_kd", "engine": "openvino_fp32", "precision": "fp32", "hint": "f32", "threads": 2,
           "top1": 0.5, "top1_lo": 0.2, "top1_hi": 0.8, "top5": math.nan, "macro_auc": 0.7, "agree_fp32": 1.0,
           "p50_ms": 4.0, "p90_ms": 5.0, "p99_ms": 6.0, "throughput_clips_s": 300.0, "spf": 0.0005, "fps": 2000.0,
           "scaled_spf": 0.00048, "scaled_fps": 2083.3, "gmacs_per_s": 10.0, "efficiency": 0.111,
           "e2e_p50_ms": 9.0, "e2e_p90_ms": 10.0, "e2e_p99_ms": 11.0, "e2e_decode_ms": 4.0, "e2e_preprocess_ms": 1.0,
           "e2e_infer_ms": 4.0, "e2e_spf": 0.001125, "e2e_fps": 888.9}
    write_reports(tmp_path, [row], _meta(), {"ROC student_kd": "roc_student_kd.png"})
    md = (tmp_path / "report.md").read_text()
    assert "[ROC student_kd](roc_student_kd.png)" in md and "![ROC student_kd](roc_student_kd.png)" in md
    assert "Wilson" in md and "[0.200, 0.800]" in md and "tensorrt: no GPU" in md
    assert "| student_kd | openvino_fp32 | 4.00 | 1.00 | 4.00 | 9.00 | 10.00 | 11.00 |" in md
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["rows"][0]["efficiency"] == pytest.approx(0.111)
    lit = (tmp_path / "literature.md").read_text()
    # ours: 0.0005 s x 2400 / 2500 = 0.00048 s -> 2083.3 FPS at the reference clock
    assert "| student_kd openvino_fp32 (this run) | this run | - | - | - | - | 0.0005 | 2400 | 0.00048 | 2083.3 |" in lit
    assert "| OFF [69] | 2018 | 0.0048 | 999 | 0.0082 |" in lit
    assert lit == literature_table(report) + ""
    assert (tmp_path / "report.csv").read_text().splitlines()[0].startswith("model,engine,precision")


def test_cli_bench_accepts_compare_literature() -> None:
    from edgekd.cli import _parser

    args = _parser().parse_args(["bench", "recipes/tiny.yaml", "--compare-literature"])
    assert args.compare_literature is True
    assert _parser().parse_args(["bench", "recipes/tiny.yaml"]).compare_literature is False


def test_paired_evidence_bootstraps_the_same_videos_for_both_models() -> None:
    import numpy as np

    from edgekd.stages.bench_stage import paired_evidence
    from edgekd.utils.stats import paired_bootstrap

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    rows = [{"model": "student_scratch", "engine": "pytorch_fp32", "pred": [0, 1, 0, 1, 1, 0, 0, 2, 2, 1]},
            {"model": "student_kd", "engine": "openvino_int8", "pred": [9] * 10},  # not the reference engine
            {"model": "student_kd", "engine": "pytorch_fp32", "pred": [0, 1, 2, 0, 1, 0, 0, 1, 2, 1]},
            {"model": "teacher", "engine": "pytorch_fp32", "pred": list(labels)}]
    out = paired_evidence(rows, labels)
    kd = out["student_kd - student_scratch"]
    assert kd["mean"] == pytest.approx(0.3) and (kd["a_only"], kd["b_only"]) == (3, 0)
    assert kd["lo"] <= 0.3 <= kd["hi"] and kd["n"] == 10
    assert out["teacher - student_scratch"]["mean"] == pytest.approx(0.5)
    same = paired_bootstrap(np.ones(50), np.ones(50))
    assert (same["mean"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)  # identical models: no spread at all


def test_streaming_and_int8_sections_of_the_report(tmp_path: Path) -> None:
    base = {"precision": "fp32", "hint": "f32", "threads": 1, "top1": 0.5, "p50_ms": 4.0, "spf": 0.0005}
    rows = [{**base, "model": "student_kd", "engine": "openvino_fp32_stream", "stream_frame_p50_ms": 0.5,
             "stream_frame_p90_ms": 0.6, "stream_clip_row": "openvino_fp32", "stream_window": 8,
             "clip_per_frame_p50_ms": 6.0, "stream_vs_clip": 0.5 / 6.0},
            {**base, "model": "teacher", "engine": "onnxruntime_fp32_stream", "stream_frame_p50_ms": 0.4,
             "stream_frame_p90_ms": 0.5, "stream_clip_row": "onnxruntime_fp32", "stream_window": 8,
             "stream_note": "no clip engine to compare with (onnxruntime_fp32: x)"},
            {**base, "model": "student_kd", "engine": "openvino_int8", "precision": "int8",
             "int8_note": "27 grouped/depthwise 3D convolutions (27 depthwise, 14.1% of the MACs): a known case"}]
    write_reports(tmp_path, rows, _meta(), {})
    md = (tmp_path / "report.md").read_text()
    assert "## Streaming: per-frame cost" in md
    assert "| student_kd | openvino_fp32_stream | openvino_fp32 | 8 | 0.500 | 6.000 | 0.083 (1/12.0) |" in md
    assert "| teacher | onnxruntime_fp32_stream | onnxruntime_fp32 | 8 | 0.400 | - | no clip engine" in md
    assert "## INT8 and grouped/depthwise 3D convolutions" in md
    assert "- student_kd / openvino_int8: 27 grouped/depthwise 3D convolutions" in md
    write_reports(tmp_path, [{**base, "model": "m", "engine": "openvino_fp32"}], _meta(), {})
    assert "Streaming" not in (tmp_path / "report.md").read_text()


def test_stream_timing_against_the_clip_engine(tmp_path: Path) -> None:
    """A streaming row's engine answers clips like the clip engine (the running mean of T streamed
    frames is the online model's clip logits) and is timed per frame beside recomputing the clip."""
    from types import SimpleNamespace

    import numpy as np
    from _deploy_run import make_stream_run

    from edgekd.engines.rows import load_openvino_f32, load_openvino_stream
    from edgekd.engines.table import get_engine
    from edgekd.stages.bench_stage import stream_timing

    run = make_stream_run(tmp_path / "run")
    row = get_engine("openvino_fp32_stream")
    engine = load_openvino_stream(row.path(run, "student_kd"), threads=1, name=row.name)
    clip_engine = load_openvino_f32(get_engine("openvino_fp32").path(run, "student_kd"), threads=1, name="openvino_fp32")
    clips = np.random.default_rng(0).standard_normal((3, 3, 4, 16, 16)).astype(np.float32)
    assert np.abs(engine.infer(clips) - clip_engine.infer(clips)).max() <= 1e-4
    info = engine.describe()
    assert (info["mode"], info["window"], info["precision"], info["inference_precision_hint"]) == ("stream", 4, "fp32", "f32")
    cfg = SimpleNamespace(warmup=1, min_time_s=0.05, threads=1)
    out = stream_timing(SimpleNamespace(root=run), "student_kd", row, engine, clips[:1], cfg)
    assert out["stream_clip_row"] == "openvino_fp32" and out["stream_window"] == 4
    assert out["stream_frame_p50_ms"] > 0 and out["clip_per_frame_p50_ms"] > 0
    assert out["stream_vs_clip"] == pytest.approx(out["stream_frame_p50_ms"] / out["clip_per_frame_p50_ms"])
    (run / "engines/student_kd/openvino_fp32/model.xml").unlink()
    out = stream_timing(SimpleNamespace(root=run), "student_kd", row, engine, clips[:1], cfg)
    assert "clip_per_frame_p50_ms" not in out and "add openvino_fp32 to engines.build" in out["stream_note"]
