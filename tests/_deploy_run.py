"""A minimal run directory for the deploy tests: a tiny untrained student, exported and converted.

Built directly (checkpoint -> ONNX -> OpenVINO FP32 IR -> FP16 ONNX -> Q/DQ ONNX, each with the sidecar the
engines stage writes) instead of running the pipeline, so pack/runtime tests take seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.engines.fp16 import build_fp16_onnx
from edgekd.engines.openvino_engine import build_openvino_fp32
from edgekd.engines.qdq import build_qdq_int8
from edgekd.export.onnx_export import export_onnx
from edgekd.models import build_model
from edgekd.train.checkpoint import save_checkpoint
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import sha256_file

CLASSES = ["walk", "jumping_jack", "sit_down"]
SPEC = {"clip_len": 4, "frame_interval": 2, "resize": [24, 30], "crop": [16, 16],
        "mean": [0.43216, 0.394666, 0.37645], "std": [0.22803, 0.22145, 0.216989], "layout": "NCTHW", "color": "RGB"}


def make_run(root: Path, *, qdq: bool = True, seed: int = 0) -> Path:
    """``root`` laid out like ``runs/<name>`` for the student_kd model; returns ``root``."""
    torch.manual_seed(seed)
    t, (h, w) = SPEC["clip_len"], SPEC["crop"]
    kwargs = {"input_size": [t, h, w], "width_mult": 0.25, "dropout": 0.0}
    model = build_model("c3d_student", num_classes=len(CLASSES), **kwargs).eval()
    save_checkpoint(root / "student_kd" / "ckpt.pt", model, model_name="c3d_student", model_kwargs=kwargs,
                    classes=CLASSES, input_spec=SPEC, metrics={"test_top1": 0.0})
    onnx_path = export_onnx(model, (3, t, h, w), root / "export" / "student_kd.onnx", opset=17, simplify=True)
    sidecar = {"source_onnx": str(onnx_path), "source_onnx_sha256": sha256_file(onnx_path), "input_spec": SPEC,
               "classes": CLASSES, "versions": {}}
    d = root / "engines" / "student_kd" / "openvino_fp32"
    build_openvino_fp32(onnx_path, d)
    write_json(d / "engine.json", {**sidecar, "backend": "openvino", "precision": "fp32", "model": "model.xml"})
    d = root / "engines" / "student_kd" / "onnxruntime_fp16"  # what TensorRT >= 10 builds FP16 from
    clips = np.random.default_rng(seed).standard_normal((4, 3, t, h, w), dtype=np.float32)
    built = build_fp16_onnx(onnx_path, d / "model.onnx", parity_clips=clips)
    write_json(d / "engine.json", {**sidecar, "backend": "onnxruntime", "precision": "fp16", "format": "onnx_fp16",
                                   "conversion": built["conversion"], "parity_vs_fp32_onnx": built["parity"]})
    if qdq:
        rng = np.random.default_rng(seed)
        calib = [rng.standard_normal((1, 3, t, h, w), dtype=np.float32) for _ in range(8)]
        d = root / "engines" / "student_kd" / "onnxruntime_int8"
        build_qdq_int8(onnx_path, calib, d / "model.onnx", subset_size=8)
        write_json(d / "engine.json", {**sidecar, "backend": "onnxruntime", "precision": "int8", "format": "onnx_qdq"})
    return root


def make_stream_run(root: Path, *, seed: int = 0, build_step_ir: bool = True) -> Path:
    """Like :func:`make_run`, for an online TSM student (a model that streams): its clip ONNX and
    IR, its per-frame step graph with the step spec, and the step IR built by the engines stage's
    own row builder. Weights are deterministic ramps with calibrated BN statistics and the classifier
    rescaled to logits of order 1 (a fresh network answers nearly the same for every frame, which
    would make every comparison of scores pass trivially)."""
    from test_models_x3d import (  # deterministic weights (tests/ is on sys.path)
        calibrate_bn,
        ramp_clip,
        ramp_fill,
    )

    from edgekd.engines.rows import BuildContext, build_openvino_fp32_stream
    from edgekd.engines.table import get_engine
    from edgekd.export.onnx_export import export_step_onnx

    torch.manual_seed(seed)
    t, (h, w) = SPEC["clip_len"], SPEC["crop"]
    kwargs = {"num_classes": len(CLASSES), "input_size": [t, h, w], "width_mult": 0.5, "dropout": 0.0}
    model = build_model("tsm_mobilenetv2_online", **kwargs).eval()
    ramp_fill(model)
    x = ramp_clip(4, 3, t, h, w)
    calibrate_bn(model, x)
    with torch.no_grad():  # logits of order 1
        scale = model.forward_frames(x).abs().max()
        model.cls_head.fc_cls.weight /= scale
        model.cls_head.fc_cls.bias /= scale
    save_checkpoint(root / "student_kd" / "ckpt.pt", model, model_name="tsm_mobilenetv2_online", model_kwargs=kwargs,
                    classes=CLASSES, input_spec=SPEC, metrics={"test_top1": 0.0})
    onnx_path = export_onnx(model, (3, t, h, w), root / "export" / "student_kd.onnx", opset=17, simplify=True)
    export_step_onnx(model, (3, h, w), root / "export" / "student_kd_step.onnx", window=t)
    sidecar = {"source_onnx": str(onnx_path), "source_onnx_sha256": sha256_file(onnx_path), "input_spec": SPEC,
               "classes": CLASSES, "versions": {}}
    d = root / "engines" / "student_kd" / "openvino_fp32"
    build_openvino_fp32(onnx_path, d)
    write_json(d / "engine.json", {**sidecar, "backend": "openvino", "precision": "fp32", "model": "model.xml"})
    if build_step_ir:
        clips = np.random.default_rng(seed).standard_normal((2, 3, t, h, w), dtype=np.float32)
        build_openvino_fp32_stream(BuildContext(get_engine("openvino_fp32_stream"), "student_kd", root, onnx_path,
                                                sidecar, options=None, parity_clips=clips))
    return root
