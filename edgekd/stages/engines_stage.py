"""Engines stage: OpenVINO IR in FP32 and INT8 (NNCF post-training quantisation calibrated on
training-split clips) for every exported model; for the edge models (``engines.edge_models``) a
symmetric Q/DQ INT8 ONNX checked on the test split with ONNX Runtime, and TensorRT engines where
TensorRT and a CUDA GPU exist (``engines/tensorrt.json`` says what was built or why it was
skipped). Every engine directory gets a sidecar ``engine.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.engines.openvino_engine import build_openvino_fp32, build_openvino_int8
from edgekd.engines.qdq import build_qdq_int8, qdq_accuracy
from edgekd.engines.tensorrt_build import build_tensorrt_engines
from edgekd.engines.tensorrt_engine import tensorrt_status
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir
from edgekd.stages.table import MODEL_ROLES
from edgekd.utils.versions import package_versions
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import sha256_file


def run_engines(rd: RunDir) -> dict[str, Any]:
    cfg = rd.recipe.engines
    ctx = DataContext.load(rd)
    out = rd.stage_dir("engines")
    built: dict[str, Any] = {}
    calib = None
    if cfg.openvino_int8 or cfg.qdq_int8 or cfg.tensorrt:
        calib, _ = ctx.eval_array("train", limit=cfg.calibration_clips)
        print(f"[engines] INT8 calibration on {len(calib)} training-split clips (asked for {cfg.calibration_clips})")
    test = ctx.eval_array("test", clips_per_video=rd.recipe.data.eval_clips) if cfg.qdq_int8 else None
    trt_models: dict[str, Any] = {}
    for role in MODEL_ROLES:
        onnx_path = rd.stage_dir("export") / f"{role}.onnx"
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{onnx_path} is missing: run the export stage first")
        sidecar = {"source_onnx": str(onnx_path), "source_onnx_sha256": sha256_file(onnx_path),
                   "input_spec": ctx.input_spec(), "classes": ctx.split.classes, "versions": package_versions()}
        if cfg.openvino_fp32:
            d = out / role / "openvino_fp32"
            xml = build_openvino_fp32(onnx_path, d)
            write_json(d / "engine.json", {**sidecar, "backend": "openvino", "precision": "fp32", "model": xml.name})
            built[f"{role}/openvino_fp32"] = str(xml)
        if cfg.openvino_int8 and calib is not None:
            d = out / role / "openvino_int8"
            xml = build_openvino_int8(onnx_path, (c[None] for c in calib), d, subset_size=len(calib))
            write_json(d / "engine.json", {**sidecar, "backend": "openvino", "precision": "int8",
                                           "calibration": {"subset": "train", "clips": len(calib), "tool": "nncf.quantize"},
                                           "model": xml.name})
            built[f"{role}/openvino_int8"] = str(xml)
        if role not in cfg.edge_models:
            continue
        qdq = None
        if cfg.qdq_int8 and calib is not None and test is not None:
            qdq = _build_qdq(onnx_path, out / role / "onnx_int8_qdq", calib, test, sidecar, cfg.qdq_calibration)
            built[f"{role}/onnx_int8_qdq"] = str(qdq)
        if cfg.tensorrt:
            trt_models[role] = build_tensorrt_engines(
                onnx_path, qdq, out / role, precisions=cfg.tensorrt_precisions, batch=cfg.tensorrt_batch,
                workspace_mb=cfg.tensorrt_workspace_mb, timing_cache_dir=cfg.tensorrt_timing_cache_dir,
                calibration=calib, parity_clips=calib[: rd.recipe.export.parity_clips] if calib is not None else None,
                input_spec=ctx.input_spec(), labels=ctx.split.classes)
    trt = _tensorrt_record(cfg.tensorrt, trt_models)
    write_json(out / "tensorrt.json", trt)
    return {"built": built, "tensorrt": {k: v for k, v in trt.items() if k != "models"}}


def _build_qdq(onnx_path: Path, d: Path, calib: np.ndarray, test: tuple[np.ndarray, np.ndarray],
               sidecar: dict[str, Any], method: str) -> Path:
    """Q/DQ INT8 ONNX + its accuracy against the FP32 ONNX on the test split (ONNX Runtime CPU)."""
    model = build_qdq_int8(onnx_path, (c[None] for c in calib), d / "model.onnx", subset_size=len(calib), method=method)
    accuracy = qdq_accuracy(onnx_path, model, *test)
    write_json(d / "engine.json", {**sidecar, "backend": "onnxruntime", "precision": "int8", "format": "onnx_qdq",
                                   "model": model.name, "model_sha256": sha256_file(model),
                                   "calibration": {"subset": "train", "clips": len(calib), "method": method,
                                                   "tool": "onnxruntime.quantization.quantize_static (QDQ, symmetric)"},
                                   "accuracy_test_split": accuracy})
    print(f"[engines] {onnx_path.stem} Q/DQ INT8 ONNX: test top-1 {accuracy['int8_qdq_top1']:.3f} vs FP32 "
          f"{accuracy['fp32_top1']:.3f} (drop {accuracy['top1_drop']:+.3f}, agreement {accuracy['top1_agreement']:.3f})")
    return model


def _tensorrt_record(requested: bool, models: dict[str, Any]) -> dict[str, Any]:
    """``tensorrt.json``: overall status (built / skipped with the reason) plus one row per model and precision."""
    if not requested:
        return {"requested": False, "status": "skipped", "reason": "engines.tensorrt is false", "models": {}}
    rows = [row for per in models.values() for row in per.values()]
    if any(row["status"] == "built" for row in rows):
        return {"requested": True, "status": "built", "reason": None, "models": models}
    reasons = sorted({row["reason"] for row in rows}) or [tensorrt_status()[1]]
    reason = "; ".join(reasons)
    print(f"[engines] tensorrt: skipped ({reason})")
    return {"requested": True, "status": "skipped", "reason": reason, "models": models}
