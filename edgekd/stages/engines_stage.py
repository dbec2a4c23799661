"""Engines stage: OpenVINO IR in FP32 and INT8 (NNCF post-training quantisation calibrated on
training-split clips) for every exported model, and a TensorRT entry that says why it was skipped
where TensorRT or a CUDA GPU is absent. Every engine directory gets a sidecar ``engine.json``."""

from __future__ import annotations

from typing import Any

from edgekd.engines.openvino_engine import build_openvino_fp32, build_openvino_int8
from edgekd.engines.tensorrt_engine import tensorrt_status
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import MODEL_ROLES, RunDir, package_versions
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import sha256_file


def run_engines(rd: RunDir) -> dict[str, Any]:
    cfg = rd.recipe.engines
    ctx = DataContext.load(rd)
    out = rd.stage_dir("engines")
    built: dict[str, Any] = {}
    calib = None
    if cfg.openvino_int8:
        calib, _ = ctx.eval_array("train", limit=cfg.calibration_clips)
        print(f"[engines] INT8 calibration on {len(calib)} training-split clips (asked for {cfg.calibration_clips})")
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
    trt = {"requested": cfg.tensorrt}
    if cfg.tensorrt:
        ok, reason = tensorrt_status()
        trt.update({"status": "skipped", "reason": reason if not ok else
                    "TensorRT is present, but engine building arrives with the TensorRT issue; nothing was built"})
        print(f"[engines] tensorrt: skipped ({trt['reason']})")
    write_json(out / "tensorrt.json", trt)
    return {"built": built, "tensorrt": trt}
