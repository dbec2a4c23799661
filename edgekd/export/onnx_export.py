"""Export a video classifier to ONNX, and prove the export computes what the model computes.

Every edge engine (ONNX Runtime, OpenVINO, TensorRT) is built from this one file, so it must be
exact: FP32, a dynamic batch axis named ``batch``, input ``clip`` ``(N, C, T, H, W)`` and output
``logits`` ``(N, K)``, checked by ``onnx.checker``, simplified by onnxsim only when onnxsim's own
numeric check passes, and written atomically so a failed export never clobbers a good file.

Exporter choice (torch 2.13): the TorchScript exporter (``dynamo=False``). The default
torch.export-based exporter needs ``onnxscript`` (not a dependency here), takes ~1 s even for a
toy model, and could not honour opset 17 (its down-conversion from 18 failed and it silently
emitted opset 18). The TorchScript exporter is deterministic, fast and emits the requested opset;
its deprecation warnings are silenced deliberately.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edgekd.utils.atomic import atomic_path

__all__ = ["BATCH_AXIS", "INPUT_NAME", "OUTPUT_NAME", "check_parity", "export_onnx"]

INPUT_NAME = "clip"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
# Traced with batch 2, not 1, so no shape arithmetic gets specialised to a size-1 batch.
_TRACE_BATCH = 2
_SIMPLIFY_CHECK_N = 3


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    path: str | Path,
    *,
    opset: int = 17,
    simplify: bool = True,
) -> Path:
    """Export ``model`` (eval, FP32) for clips of ``input_shape = (C, T, H, W)`` to ``path``.

    The model's train/eval mode is restored afterwards. Returns the written path.
    """
    shape = _validate_input_shape(input_shape)
    _require_fp32(model)
    path = Path(path)
    dummy = torch.randn(_TRACE_BATCH, *shape, device=_module_device(model))
    with atomic_path(path) as tmp, _eval_mode(model):
        _torchscript_export(model, dummy, tmp, opset)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        if simplify:
            proto = _simplify(proto, shape, path)
            onnx.checker.check_model(proto, full_check=True)
        _check_interface(proto, path)
        onnx.save(proto, str(tmp))
    return path


def check_parity(
    model: nn.Module,
    onnx_path: str | Path,
    clips: np.ndarray,
    *,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Run ``model`` (FP32, eval, no_grad) and ONNX Runtime CPU on the same clips and compare.

    Returns ``n_clips``, ``max_abs_delta``, ``mean_abs_delta`` (over all logits),
    ``top1_agreement`` (fraction of clips with the same argmax), ``onnxruntime_version`` and
    ``provider``. The thresholds are the caller's call; this only measures.
    """
    import onnxruntime as ort

    clips = _validate_clips(clips)
    if batch_size < 1:
        raise ValueError(f"check_parity: batch_size must be >= 1, got {batch_size}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"check_parity: ONNX model not found: {onnx_path}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    device = _module_device(model)
    torch_out, ort_out = [], []
    with _eval_mode(model), torch.no_grad():
        for start in range(0, len(clips), batch_size):
            chunk = clips[start : start + batch_size]
            torch_out.append(model(torch.from_numpy(chunk).to(device)).float().cpu().numpy())
            ort_out.append(session.run(None, {input_name: chunk})[0])
    ref, got = np.concatenate(torch_out), np.concatenate(ort_out)
    if ref.shape != got.shape:
        raise RuntimeError(f"check_parity: torch logits {ref.shape} vs ONNX Runtime {got.shape} for {onnx_path}")
    delta = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return {
        "n_clips": len(clips),
        "max_abs_delta": float(delta.max()),
        "mean_abs_delta": float(delta.mean()),
        "top1_agreement": float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1))),
        "onnxruntime_version": ort.__version__,
        "provider": session.get_providers()[0],
    }


# --------------------------------------------------------------------------------------------


def _torchscript_export(model: nn.Module, dummy: torch.Tensor, out: Path, opset: int) -> None:
    dynamic = {INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed.*", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(out),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _simplify(proto: onnx.ModelProto, shape: tuple[int, ...], path: Path) -> onnx.ModelProto:
    """onnxsim with its random-input numeric check; a failed check is an error, not a fallback."""
    import onnxsim

    with contextlib.redirect_stdout(io.StringIO()):  # onnxsim prints "Checking i/n..." per run
        simplified, ok = onnxsim.simplify(
            proto,
            check_n=_SIMPLIFY_CHECK_N,
            test_input_shapes={INPUT_NAME: [_TRACE_BATCH, *shape]},
        )
    if not ok:
        raise RuntimeError(
            f"onnxsim's check failed for {path}: the simplified graph disagrees with the exported one; "
            "export with simplify=False to keep the unsimplified model"
        )
    return simplified


def _check_interface(proto: onnx.ModelProto, path: Path) -> None:
    """The contract every engine builder relies on: names, FP32 and a symbolic batch axis."""
    inputs = [i for i in proto.graph.input if i.name not in {init.name for init in proto.graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in proto.graph.output] != [OUTPUT_NAME]:
        raise RuntimeError(
            f"{path}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got "
            f"{[i.name for i in inputs]} -> {[o.name for o in proto.graph.output]}"
        )
    for value in (inputs[0], proto.graph.output[0]):
        tensor = value.type.tensor_type
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            raise RuntimeError(
                f"{path}: {value.name} is {onnx.TensorProto.DataType.Name(tensor.elem_type)}, expected FLOAT"
            )
        if tensor.shape.dim[0].dim_param != BATCH_AXIS:
            raise RuntimeError(f"{path}: batch axis of {value.name} is not dynamic ({tensor.shape.dim[0]})")


def _validate_input_shape(input_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"export_onnx: input_shape must be (C, T, H, W) positive ints, got {input_shape!r}")
    return shape  # type: ignore[return-value]


def _validate_clips(clips: np.ndarray) -> np.ndarray:
    if not isinstance(clips, np.ndarray) or clips.dtype != np.float32 or clips.ndim != 5 or len(clips) == 0:
        got = f"{type(clips).__name__} {getattr(clips, 'dtype', '')} {getattr(clips, 'shape', '')}"
        raise ValueError(f"check_parity: clips must be a non-empty (N, C, T, H, W) float32 array, got {got}")
    return np.ascontiguousarray(clips)


def _require_fp32(model: nn.Module) -> None:
    """An FP32 export of a half/double model would be a silent precision change: refuse it."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise TypeError(f"export_onnx: parameter/buffer {name!r} is {tensor.dtype}; export needs a float32 model")


def _module_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, then each submodule's own train/eval flag back (e.g. frozen BN)."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training
