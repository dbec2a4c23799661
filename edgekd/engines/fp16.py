"""FP16 ONNX for TensorRT's strongly typed builds, checked against the FP32 ONNX on ONNX Runtime CPU.

Why a second ONNX: TensorRT 11 removed weak typing (``BuilderFlag.FP16``, trtexec ``--fp16``);
every network is strongly typed and runs in the types its ONNX declares. So an FP16 engine needs
an FP16 ONNX. TensorRT 10 offers both ways; edgekd builds strongly typed there too, so 10.x and
11.x engines come from the same file, and which layer runs in which precision is decided here, where
it is checked on CPU, rather than by the builder's per-layer speed search. TensorRT 8.x (JetPack 4/5)
has no strongly typed networks and keeps ``BuilderFlag.FP16`` on the FP32 ONNX
(:func:`edgekd.runtime.tensorrt_build.build_plan` decides, by what the installed TensorRT offers).

**Converter: onnxconverter-common's** ``float16.convert_float_to_float16``, Microsoft's ONNX
converter tools, pure Python on numpy, onnx and protobuf (which edgekd already has), so installing
it changes nothing else. It already handles what a hand-written pass would have to rediscover:
Constant nodes and tensor attributes, sub-graphs, ``value_info``, Casts around the ops kept in
FP32, and removing back-to-back Casts. NVIDIA's own route, ModelOpt AutoCast, was not used for
the reason :mod:`edgekd.engines.qdq` gives (it pulls CUDA torch, cupy and onnxruntime-gpu).
What edgekd adds is :func:`fp16_summary`, which re-reads the result and refuses it unless it is
what was asked for, and :func:`fp16_parity`. Settings:

* ``keep_io_types``: the graph's input and output stay FP32 (the runtime feeds and reads float32;
  the Casts at the edges run on the GPU);
* :data:`FP32_OPS` stay FP32: softmax, every reduction (``GlobalAveragePool`` is a mean over
  T x H x W) and the normalisations that compute statistics, because a long sum or an exponential
  in FP16 loses digits or overflows, plus the converter's own list (ops without FP16 kernels);
* range: a weight beyond FP16's largest finite value (65504) would become inf, so a node holding
  one is kept FP32 and listed; a weight below the smallest subnormal (2^-24) is raised to it
  instead of being flushed to zero (``min_positive_val``); nothing else is clamped.

**Tolerance.** FP16 keeps 11 significant bits: its unit roundoff is u = 2^-11 (about 4.9e-4).
The FP16 graph rounds each weight once and each op's output once (ONNX Runtime's CPU kernels and
TensorRT's FP16 kernels accumulate a dot product in FP32 before rounding its result), so to first
order each op adds at most 2u of relative error, and L ops in a chain at most 2 * L * u. L is
counted from the file (:func:`fp16_summary`, ``rounding_ops``: FP16 nodes other than the exact
ones of :data:`EXACT_OPS`, max pooling, ReLU, reshapes). The bound is compared with the largest
logit error relative to the largest logit magnitude over the parity clips: a per-logit relative
error is meaningless where the logit itself is near zero. Top-1 may differ only on a clip whose
FP32 margin between its first two classes is within twice the absolute tolerance (each logit may
move by the tolerance); any other flip fails the check. ONNX Runtime's CPU provider may run an
FP16 node through an FP32 kernel behind Casts (its ``InsertCastTransformer``), so this check bounds
the error of the FP16 graph itself: rounded weights and activations. What the GPU's kernels add
is measured by the TensorRT parity check against this same FP16 ONNX.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine
from edgekd.utils.atomic import atomic_path

__all__ = ["EXACT_OPS", "FP16_UNIT_ROUNDOFF", "FP32_OPS", "FP16ParityError", "build_fp16_onnx", "compare_logits",
           "fp16_parity", "fp16_summary", "fp16_tolerance"]

FP16_UNIT_ROUNDOFF = 2.0**-11  # half the spacing of FP16 numbers in [1, 2): 10 stored + 1 implicit bit
FP16_MAX = 65504.0  # largest finite FP16
FP16_MIN_SUBNORMAL = 2.0**-24

# Ops computed in FP32 inside the FP16 graph: softmax (exponentials overflow FP16 beyond e^11),
# reductions (a long FP16 sum loses the small terms), normalisations that compute statistics.
FP32_OPS = (
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceProd", "GlobalAveragePool", "GlobalLpPool",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization",
)
# Ops whose FP16 result is exact given FP16 inputs (they select, move or reshape values): no rounding.
EXACT_OPS = frozenset({
    "Relu", "MaxPool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze",
    "Concat", "Slice", "Gather", "Split", "Pad", "Dropout", "Neg", "Abs", "ReduceMax", "ReduceMin",
})
_FP16_COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # at least one must be FP16, or nothing was converted


class FP16ParityError(RuntimeError):
    """The FP16 ONNX disagrees with the FP32 ONNX by more than FP16 rounding explains."""


def build_fp16_onnx(onnx_path: str | Path, out_path: str | Path, *, parity_clips: np.ndarray,
                    fp32_ops: tuple[str, ...] = FP32_OPS, batch_size: int = 8,
                    threads: int | None = None) -> dict[str, Any]:
    """Write the FP16 copy of the FP32 ONNX ``onnx_path`` to ``out_path``, only if it passes parity.

    ``parity_clips`` is ``(N, C, T, H, W)`` float32 (normalised). Returns ``{"model": path,
    "conversion": fp16_summary(...), "parity": fp16_parity(...)}``; raises :class:`FP16ParityError`
    (and writes nothing) when the FP16 model disagrees beyond :func:`fp16_tolerance`.
    """
    from onnxconverter_common import float16

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    model = onnx.load(str(onnx_path))
    _require_fp32_source(model, onnx_path)
    out_of_range, underflow = _range_scan(model)
    keep = set(fp32_ops) | set(float16.DEFAULT_OP_BLOCK_LIST)
    with warnings.catch_warnings():  # its per-tensor clamping warnings: what it clamps is counted above instead
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=sorted(keep), node_block_list=out_of_range,
            min_positive_val=FP16_MIN_SUBNORMAL, max_finite_val=FP16_MAX)
    _restore_fp32_outputs(converted)
    onnx.checker.check_model(converted, full_check=True)
    with atomic_path(out_path) as tmp:
        onnx.save(converted, str(tmp))
        summary = fp16_summary(tmp, fp32_ops=tuple(sorted(keep)))
        parity = fp16_parity(onnx_path, tmp, parity_clips, fp32_ops=tuple(sorted(keep)), batch_size=batch_size,
                             threads=threads)
        if not parity["passed"]:
            raise FP16ParityError(
                f"the FP16 copy of {onnx_path} disagrees with it beyond FP16 rounding: max |delta logit| "
                f"{parity['max_abs_delta']:.3g} = {parity['relative_delta']:.3g} of the largest logit "
                f"{parity['reference_scale']:.3g} (bound 2*L*u = {parity['tolerance_relative']:.3g} for L = "
                f"{parity['rounding_ops']} rounding ops), {parity['flips_beyond_tolerance']} top-1 flips beyond "
                f"the tolerance, non-finite outputs: {not parity['finite']}; keep the offending ops in FP32 "
                "(fp32_ops) or leave onnxruntime_fp16 and tensorrt_fp16 out of engines.build")
    summary.update(fp32_op_types=list(fp32_ops), also_fp32="onnxconverter-common float16.DEFAULT_OP_BLOCK_LIST",
                   kept_fp32_for_range=out_of_range, weights_raised_to_min_subnormal=underflow,
                   converter=f"onnxconverter-common {_version('onnxconverter-common')} "
                             "float16.convert_float_to_float16 (keep_io_types)")
    return {"model": out_path, "conversion": summary, "parity": parity}


def fp16_summary(path: str | Path, *, fp32_ops: tuple[str, ...] = FP32_OPS) -> dict[str, Any]:
    """What the FP16 file computes in which precision, read back from the file; raises unless it
    has FP32 inputs and outputs, keeps every ``fp32_ops`` node in FP32 and runs some weighted op in FP16."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    edges = [(v.name, "input") for v in graph.input] + [(v.name, "output") for v in graph.output]
    problems = [f"graph {kind} {name!r} is {TensorProto.DataType.Name(types.get(name, TensorProto.UNDEFINED))}, "
                "not FLOAT"
                for name, kind in edges if types.get(name) != TensorProto.FLOAT]
    fp16, fp32 = Counter(), Counter()
    rounding = 0
    for node in graph.node:
        outs = [types.get(o) for o in node.output if o]
        ins = [types.get(i) for i in node.input if i]
        if node.op_type == "Cast":
            rounding += int(TensorProto.FLOAT16 in outs and TensorProto.FLOAT in ins)  # FP32 -> FP16 rounds
            continue
        if node.op_type in fp32_ops and TensorProto.FLOAT16 in ins + outs:
            problems.append(f"{node.op_type} node {node.name!r} was to stay FP32 but has FP16 tensors")
        if TensorProto.FLOAT16 in outs:
            fp16[node.op_type] += 1
            rounding += node.op_type not in EXACT_OPS
        elif TensorProto.FLOAT in outs:
            fp32[node.op_type] += 1
    if not any(fp16[op] for op in _FP16_COMPUTE):
        problems.append(f"no {'/'.join(_FP16_COMPUTE)} node computes in FP16: nothing was converted")
    if problems:
        raise ValueError(f"{path} is not the FP16 model asked for: " + "; ".join(problems))
    casts = sum(n.op_type == "Cast" for n in graph.node)
    return {"fp16_nodes": dict(sorted(fp16.items())), "fp32_nodes": dict(sorted(fp32.items())), "casts": casts,
            "fp32_op_types": list(fp32_ops), "rounding_ops": rounding, "io": "float32"}


def fp16_tolerance(rounding_ops: int) -> float:
    """First-order bound on the logit error relative to the logit scale: 2u per rounding op (module docstring)."""
    if rounding_ops < 1:
        raise ValueError(f"rounding_ops must be >= 1, got {rounding_ops}")
    return 2.0 * rounding_ops * FP16_UNIT_ROUNDOFF


def fp16_parity(fp32_onnx: str | Path, fp16_onnx: str | Path, clips: np.ndarray, *,
                fp32_ops: tuple[str, ...] = FP32_OPS, batch_size: int = 8, threads: int | None = None) -> dict[str, Any]:
    """Both models on ONNX Runtime CPU on the same clips, compared at :func:`fp16_tolerance` of the
    FP16 file's rounding ops (``fp32_ops``: the op types it was asked to keep in FP32)."""
    if not isinstance(clips, np.ndarray) or clips.ndim != 5 or not len(clips):
        raise ValueError(f"parity clips must be a non-empty (N, C, T, H, W) array, got {getattr(clips, 'shape', clips)}")
    rounding_ops = fp16_summary(fp16_onnx, fp32_ops=fp32_ops)["rounding_ops"]
    ref = OnnxRuntimeEngine(fp32_onnx, threads=threads, name="onnxruntime_fp32")
    half = OnnxRuntimeEngine(fp16_onnx, threads=threads, name="onnxruntime_fp16")
    a, b = [], []
    for i in range(0, len(clips), batch_size):
        batch = np.ascontiguousarray(clips[i : i + batch_size], dtype=np.float32)
        a.append(ref.infer(batch))
        b.append(half.infer(batch))
    result = compare_logits(np.concatenate(a), np.concatenate(b), fp16_tolerance(rounding_ops))
    return {"reference": str(fp32_onnx), "rounding_ops": rounding_ops, "unit_roundoff": FP16_UNIT_ROUNDOFF,
            **result, "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider"}


def compare_logits(reference: np.ndarray, candidate: np.ndarray, tolerance_relative: float) -> dict[str, Any]:
    """Max |delta| relative to the largest |reference| logit, against ``tolerance_relative``; top-1
    flips are allowed only where the reference's top-2 margin is within twice the absolute tolerance."""
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(f"logits must be two equal (N, K) arrays, got {reference.shape} and {candidate.shape}")
    finite = bool(np.isfinite(candidate).all())
    delta = float(np.abs(reference - candidate).max()) if finite else float("inf")
    scale = float(np.abs(reference).max())
    relative = delta / scale if scale > 0 else (0.0 if delta == 0 else float("inf"))
    tol_abs = tolerance_relative * scale
    top_ref, top_cand = reference.argmax(1), candidate.argmax(1)
    ordered = np.sort(reference, axis=1)
    margins = ordered[:, -1] - ordered[:, -2] if reference.shape[1] > 1 else np.full(len(reference), np.inf)
    flips = top_ref != top_cand
    beyond = int((flips & (margins > 2 * tol_abs)).sum())
    return {"n_clips": len(reference), "max_abs_delta": delta, "reference_scale": scale, "relative_delta": relative,
            "tolerance_relative": tolerance_relative, "tolerance_abs": tol_abs,
            "top1_agreement": float((~flips).mean()), "top1_flips": int(flips.sum()), "flips_beyond_tolerance": beyond,
            "finite": finite, "passed": finite and relative <= tolerance_relative and beyond == 0}


def _require_fp32_source(model: onnx.ModelProto, path: Path) -> None:
    """The converter needs an FP32 graph: an FP16 or Q/DQ input is a wiring mistake, not something to convert again."""
    bad = sorted({n.op_type for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")})
    half = [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
    if bad or half:
        raise ValueError(f"{path} is not an FP32 ONNX (it has {bad or f'{len(half)} FP16 initializers'}): "
                         "convert the FP32 export")


def _restore_fp32_outputs(model: onnx.ModelProto) -> None:
    """Undo a converter slip: when an op kept in FP32 produces a graph output (a final Softmax),
    onnxconverter-common 1.16 casts its result to FP16 and types the output FP16 before it handles
    outputs, so ``keep_io_types`` does not hold. Drop that Cast: the op's FP32 result is the output.
    :func:`fp16_summary` then checks that every output is FP32, whatever the cause."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    for out in graph.output:
        cast = producers.get(out.name)
        if out.type.tensor_type.elem_type != TensorProto.FLOAT16 or cast is None or cast.op_type != "Cast":
            continue
        source = producers.get(cast.input[0])
        if source is None or source.op_type == "Cast" or helper.get_attribute_value(cast.attribute[0]) != TensorProto.FLOAT16:
            continue
        source.output[list(source.output).index(cast.input[0])] = out.name
        graph.node.remove(cast)
        for info in [v for v in graph.value_info if v.name == cast.input[0]]:
            graph.value_info.remove(info)
        out.type.tensor_type.elem_type = TensorProto.FLOAT


def _range_scan(model: onnx.ModelProto) -> tuple[list[str], int]:
    """Nodes whose FP32 weights exceed FP16's range (kept FP32), and how many nonzero weights lie
    below FP16's smallest subnormal (raised to it)."""
    big, tiny = set(), 0
    for t in model.graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        w = np.abs(numpy_helper.to_array(t))
        tiny += int(((w > 0) & (w < FP16_MIN_SUBNORMAL)).sum())
        if (w > FP16_MAX).any():
            big.add(t.name)
    nodes = sorted({n.name for n in model.graph.node if big & set(n.input)})
    if big and any(not n for n in nodes):
        raise ValueError("a node holding weights beyond FP16's range has no name; cannot keep it in FP32")
    return nodes, tiny


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)
