"""ONNX Runtime CPU engine: the portable baseline for an exported ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from edgekd.engines.base import Engine, check_batch, check_logits

__all__ = ["OnnxRuntimeEngine", "onnx_precision"]

_PROVIDER = "CPUExecutionProvider"
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


class OnnxRuntimeEngine(Engine):
    """An ``InferenceSession`` pinned to the CPU provider with explicit intra-op threads.

    Only the CPU provider is requested: silently landing on another provider (or falling back
    from one) would make latency rows incomparable. ``inter_op_num_threads`` is 1 because these
    graphs are sequential chains; ``threads=None`` keeps ORT's default (one per physical core).
    """

    def __init__(self, onnx_path: str | Path, *, threads: int | None = None, name: str = "onnxruntime_fp32") -> None:
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"{name}: ONNX model not found: {self.onnx_path}")
        if threads is not None and threads < 1:
            raise ValueError(f"{name}: threads must be >= 1, got {threads}")
        self.name = name
        self.threads = threads
        self._precision = onnx_precision(self.onnx_path)
        self.session = ort.InferenceSession(str(self.onnx_path), _session_options(threads), providers=[_PROVIDER])
        if self.session.get_providers()[0] != _PROVIDER:
            raise RuntimeError(
                f"{name}: session for {self.onnx_path} runs on {self.session.get_providers()}, not {_PROVIDER}"
            )
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.name)
        (logits,) = self.session.run([self._output], {self._input: batch})
        return check_logits(np.asarray(logits), batch.shape[0], self.name)

    def describe(self) -> dict[str, Any]:
        options = self.session.get_session_options()
        return {
            "name": self.name,
            "backend": "onnxruntime",
            "backend_version": ort.__version__,
            "precision": self._precision,
            # ORT's CPU provider computes FP32 graphs in FP32 (no implicit bf16 on x86).
            "inference_precision_hint": "f32",
            "threads": options.intra_op_num_threads or "default",
            "device": f"cpu ({self.session.get_providers()[0]})",
            "model_file": str(self.onnx_path),
        }


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def onnx_precision(onnx_path: str | Path) -> str:
    """Read the precision from the file: QDQ/QLinear graphs -> "int8", half inputs or half weights
    (the FP16 ONNX keeps FP32 inputs and outputs) -> "fp16", else "fp32"."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    if any(node.op_type in _QUANT_OPS for node in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    elem = model.graph.input[0].type.tensor_type.elem_type if model.graph.input else onnx.TensorProto.FLOAT
    return "fp16" if elem == onnx.TensorProto.FLOAT16 else "fp32"
