"""Per-operation time of a compiled model, read from the backend's own counters.

What it is for: an INT8 engine is faster than FP32 only where the backend has INT8 kernels that
pay. Grouped and depthwise 3D convolutions (X3D's 3x3x3 ``conv_b``, its 5x1x1 stem) are a known
exception: little arithmetic per byte, and a backend may run them in float inside an INT8 graph
(ONNX Runtime keeps a Q/DQ depthwise Conv3d as dequantize -> float Conv) or in INT8 kernels that
gain little. So the bench times these operations in the FP32 and the INT8 engine of the same
backend and says, beside the INT8 row, what INT8 did for them. Each :class:`OpTime` says whether
the operation is a grouped/depthwise 3D convolution (from the shapes the backend reports) and in
which precision the backend ran it.

OpenVINO: ``PERF_COUNT`` profiling info, joined with the compiled (runtime) model for shapes.
ONNX Runtime: the session profiler's per-node events (``input_type_shape``). Both time the same
clip ``runs`` times after ``warmup`` untimed calls; per-node times are medians over the runs.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OpTime", "grouped_conv3d_summary", "profile_onnxruntime", "profile_openvino"]

_INT_TYPES = ("int8", "uint8", "i8", "u8")


@dataclass(frozen=True)
class OpTime:
    name: str
    op_type: str
    ms: float  # median per run
    grouped_conv3d: bool  # a 3D convolution with groups > 1 (depthwise included)
    int8: bool  # the backend ran it with 8-bit inputs


def profile_openvino(xml: str | Path, clip: np.ndarray, *, threads: int | None = None, runs: int = 5,
                     warmup: int = 2) -> list[OpTime]:
    """Per-node times of the IR ``xml`` on ``clip`` (CPU, f32 hint for layers left in float)."""
    import openvino as ov

    from edgekd.engines.openvino_engine import compile_config

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {**compile_config(threads, "f32"), "PERF_COUNT": True})
    # the profiler names the node type (GroupConvolution); the runtime model gives its output rank
    rank5 = {op.get_friendly_name() for op in compiled.get_runtime_model().get_ordered_ops()
             if op.get_output_partial_shape(0).rank.get_length() == 5}
    request = compiled.create_infer_request()
    samples: dict[tuple[str, str, bool], list[float]] = defaultdict(list)
    for i in range(warmup + runs):
        request.infer([np.ascontiguousarray(clip)])
        if i < warmup:
            continue
        for p in request.get_profiling_info():
            if p.status != p.Status.EXECUTED:
                continue
            low = p.exec_type.lower()
            samples[(p.node_name, p.node_type, any(f"_{t}" in low for t in _INT_TYPES))].append(
                p.real_time.total_seconds() * 1e3)
    return [OpTime(name, kind, float(np.median(ms)), kind == "GroupConvolution" and name in rank5, int8)
            for (name, kind, int8), ms in samples.items()]


def profile_onnxruntime(onnx: str | Path, clip: np.ndarray, *, threads: int | None = None, runs: int = 5,
                        warmup: int = 2) -> list[OpTime]:
    """Per-node kernel times of ``onnx`` on ``clip`` in ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgekd-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(clip)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    grouped = _onnx_grouped_conv3d(onnx)
    per_node: dict[tuple[str, str, bool, bool], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"].removesuffix("_kernel_time")
        shapes = e["args"].get("input_type_shape", [])
        # ORT renames the nodes it rewrites (QLinearConv in NHWC: "<name>_token_<n>", weights prepacked)
        is_grouped = re.sub(r"_token_\d+$", "", name) in grouped or _ort_grouped_conv3d(e["args"]["op_name"], shapes)
        key = (name, e["args"]["op_name"], is_grouped, bool(shapes) and next(iter(shapes[0])) in _INT_TYPES)
        per_node[key].append(e["dur"] / 1e3)
    return [OpTime(name, kind, float(np.median(ms[warmup:] or ms)), grouped, int8)
            for (name, kind, grouped, int8), ms in per_node.items()]


def _onnx_grouped_conv3d(path: str | Path) -> set[str]:
    """Names of the graph's 3D convolutions with ``group`` > 1."""
    import onnx

    out = set()
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if "Conv" in node.op_type and attrs.get("group", 1) > 1 and len(attrs.get("kernel_shape", ())) == 3:
            out.add(node.name)
    return out


def _ort_grouped_conv3d(op_name: str, shapes: list[dict[str, list[int]]]) -> bool:
    """A float NCDHW convolution (ORT's own fused nodes) whose rank-5 kernel sees fewer input
    channels than the activation holds."""
    if "Conv" not in op_name or not shapes or next(iter(shapes[0])) != "float":
        return False
    dims = [next(iter(s.values())) for s in shapes]
    x, kernels = dims[0], [d for d in dims[1:] if len(d) == 5]
    return len(x) == 5 and bool(kernels) and kernels[0][1] != x[1]


def grouped_conv3d_summary(times: Iterable[OpTime]) -> dict[str, float | int]:
    """Time in grouped/depthwise 3D convolutions vs everything else, and how many ran in 8 bits."""
    times = list(times)
    grouped = [t for t in times if t.grouped_conv3d]
    return {"grouped_conv3d_ops": len(grouped), "grouped_conv3d_ms": sum(t.ms for t in grouped),
            "grouped_conv3d_int8_ops": sum(t.int8 for t in grouped),
            "other_ms": sum(t.ms for t in times if not t.grouped_conv3d)}
