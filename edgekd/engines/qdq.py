"""Explicit-quantization (Q/DQ) INT8 ONNX for TensorRT, calibrated on training-split clips.

TensorRT 10.1 deprecated implicit INT8 calibration; the supported path is an ONNX graph that
already carries QuantizeLinear/DequantizeLinear pairs, which TensorRT then fuses into INT8
kernels (as a strongly typed network on 10.x).

**Quantizer used: ONNX Runtime's** ``quantize_static`` **with** ``QuantFormat.QDQ``. NVIDIA Model
Optimizer (``nvidia-modelopt[onnx]``, ``modelopt.onnx.quantization``) was tried first in a
throwaway venv: its dependency set requires ``torch>=2.8`` (pip resolved the 539 MB torch 2.15
CUDA wheel plus the nvidia-cusolver/cublas/... CUDA runtime wheels), ``cupy-cuda12x``,
``onnxruntime-gpu~=1.24`` and ``onnx~=1.21``, which would replace this project's pinned CPU torch
and ONNX stack, so it was not installed. ONNX Runtime's quantizer is maintained, already a
dependency, runs on CPU, and is configured here to emit exactly what TensorRT accepts:

* INT8 activations and weights, both **symmetric** (zero point 0: TensorRT supports no other);
* **per-channel** weight scales (per output channel, axis 0 for Conv);
* weights kept as FP32 initializers followed by a Q -> DQ pair (``AddQDQPairToWeight``), the
  form TensorRT 8.5 (JetPack 5) and 10.x both fold; biases left in FP32 (``QuantizeBias: False``);
* only Conv/Gemm/MatMul are quantized (TensorRT propagates through ReLU/MaxPool itself), and the
  classifier head stays FP32 by default, as in the OpenVINO INT8 build (it was the largest source
  of logit error there).

The Q/DQ model also runs on ONNX Runtime's CPU provider, which is how its accuracy is checked
before any GPU sees it: :func:`qdq_accuracy` compares it with the FP32 ONNX on the test split.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine, onnx_precision
from edgekd.utils.atomic import atomic_path, write_json

__all__ = ["CALIBRATION_METHODS", "build_qdq_int8", "qdq_accuracy", "qdq_summary"]

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
_QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]


class _ClipReader(CalibrationDataReader):
    """Feeds ``(1, C, T, H, W)`` clips to the calibrator one at a time, restartable."""

    def __init__(self, input_name: str, clips: list[np.ndarray]) -> None:
        self.input_name = input_name
        self.clips = clips
        self._it = iter(clips)

    def get_next(self) -> dict[str, np.ndarray] | None:
        clip = next(self._it, None)
        return None if clip is None else {self.input_name: clip}

    def rewind(self) -> None:
        self._it = iter(self.clips)


def build_qdq_int8(
    onnx_path: str | Path,
    calibration: Iterable[np.ndarray],
    out_path: str | Path,
    *,
    subset_size: int,
    method: str = "minmax",
    keep_head_fp32: bool = True,
) -> Path:
    """Write a TensorRT-compatible symmetric Q/DQ INT8 ONNX of ``onnx_path`` to ``out_path``.

    ``calibration`` yields ``(1, C, T, H, W)`` float32 normalised clips from the training split;
    the first ``subset_size`` are used. A ``build.json`` next to the model records how it was made.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"build_qdq_int8: method must be one of {sorted(CALIBRATION_METHODS)}, got {method!r}")
    clips = _take_clips(calibration, subset_size)
    model = onnx.load(str(onnx_path))
    input_name = model.graph.input[0].name
    excluded = _head_nodes(model) if keep_head_fp32 else []
    with tempfile.TemporaryDirectory(prefix=".qdq-prep.", dir=out_path.parent if out_path.parent.exists() else None) as tmpdir:
        prep = Path(tmpdir) / "prep.onnx"
        # Shape inference + graph clean-up first, as ONNX Runtime recommends before static quantization.
        quant_pre_process(str(onnx_path), str(prep), skip_symbolic_shape=False)
        with atomic_path(out_path) as tmp:
            quantize_static(
                str(prep), str(tmp), _ClipReader(input_name, clips),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=_QUANTIZED_OPS,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=CALIBRATION_METHODS[method],
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "AddQDQPairToWeight": True, "QuantizeBias": False},
            )
            summary = qdq_summary(tmp)
            if summary["quantize_linear"] == 0:
                raise RuntimeError(f"the quantizer inserted no Q/DQ nodes into {onnx_path}; refusing to save it")
            if summary["nonzero_zero_points"]:
                raise RuntimeError(f"{summary['nonzero_zero_points']} Q/DQ zero points are not 0; TensorRT needs symmetric INT8")
    write_json(out_path.with_name("build.json"), {
        "source_onnx": str(onnx_path), "precision": "int8", "format": "onnx_qdq",
        "quantizer": f"onnxruntime.quantization.quantize_static {ort.__version__}",
        "calibration_method": method, "calibration_clips": len(clips), "per_channel_weights": True,
        "symmetric": True, "quantized_op_types": _QUANTIZED_OPS, "kept_fp32": excluded, **summary,
    })
    return out_path


def qdq_summary(path: str | Path) -> dict[str, Any]:
    """Counts of Q/DQ nodes, which ops they quantize, and any non-zero zero points (must be none)."""
    model = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    nonzero = 0
    for node in q + dq:
        if len(node.input) > 2 and node.input[2] in inits:
            zp = inits[node.input[2]]
            nonzero += int(np.count_nonzero(zp))
            if zp.dtype != np.int8:
                nonzero += 1  # uint8 zero points are not symmetric INT8 either
    consumers = {node.output[0] for node in dq}
    quantized = sorted({n.op_type for n in model.graph.node if any(i in consumers for i in n.input)} - {"QuantizeLinear"})
    return {"quantize_linear": len(q), "dequantize_linear": len(dq), "nonzero_zero_points": nonzero,
            "ops_fed_by_dq": quantized}


def qdq_accuracy(fp32_onnx: str | Path, qdq_onnx: str | Path, clips: np.ndarray, labels: np.ndarray, *,
                 batch_size: int = 8, threads: int | None = None) -> dict[str, Any]:
    """Top-1 of the FP32 and Q/DQ models on ONNX Runtime CPU, the drop, and their agreement.

    ``clips`` is ``(N, C, T, H, W)`` (one clip per video) or ``(N, K, C, T, H, W)`` (K clips averaged).
    """
    fp32 = OnnxRuntimeEngine(fp32_onnx, threads=threads, name="onnxruntime_fp32")
    int8 = OnnxRuntimeEngine(qdq_onnx, threads=threads, name="onnxruntime_int8_qdq")
    if int8.describe()["precision"] != "int8" or onnx_precision(qdq_onnx) != "int8":
        raise RuntimeError(f"{qdq_onnx} holds no quantization nodes")
    a, b = _video_logits(fp32, clips, batch_size), _video_logits(int8, clips, batch_size)
    top_a, top_b = a.argmax(1), b.argmax(1)
    acc_a, acc_b = float((top_a == labels).mean()), float((top_b == labels).mean())
    return {"n_videos": len(labels), "fp32_top1": acc_a, "int8_qdq_top1": acc_b, "top1_drop": acc_a - acc_b,
            "top1_agreement": float((top_a == top_b).mean()), "max_abs_logit_delta": float(np.abs(a - b).max()),
            "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider"}


def _video_logits(engine: OnnxRuntimeEngine, clips: np.ndarray, batch_size: int) -> np.ndarray:
    flat = clips.reshape(-1, *clips.shape[-4:]) if clips.ndim == 6 else clips
    out = np.concatenate([engine.infer(np.ascontiguousarray(flat[i : i + batch_size]))
                          for i in range(0, len(flat), batch_size)])
    return out.reshape(clips.shape[0], clips.shape[1], -1).mean(1) if clips.ndim == 6 else out


def _take_clips(calibration: Iterable[np.ndarray], subset_size: int) -> list[np.ndarray]:
    if subset_size < 1:
        raise ValueError(f"build_qdq_int8: subset_size must be >= 1, got {subset_size}")
    clips = list(itertools.islice(iter(calibration), subset_size))
    if len(clips) < subset_size:
        raise ValueError(f"build_qdq_int8: calibration yielded {len(clips)} clips, subset_size={subset_size}")
    for i, clip in enumerate(clips):
        if not isinstance(clip, np.ndarray) or clip.dtype != np.float32 or clip.ndim != 5 or clip.shape[0] != 1:
            raise ValueError(f"build_qdq_int8: calibration item {i} must be a (1,C,T,H,W) float32 array, "
                             f"got {getattr(clip, 'dtype', type(clip))} {getattr(clip, 'shape', '')}")
    return clips


def _head_nodes(model: onnx.ModelProto) -> list[str]:
    """Name of the last Gemm/MatMul/Conv: the classifier head, kept in FP32."""
    weighted = [n for n in model.graph.node if n.op_type in _QUANTIZED_OPS]
    if weighted and not weighted[-1].name:
        raise ValueError("the classifier head node has no name; cannot exclude it from quantization")
    return [weighted[-1].name] if weighted else []
