"""Export a video classifier to ONNX, and prove the export computes what the model computes.

Every edge engine (ONNX Runtime, OpenVINO, TensorRT) is built from this one file, so it must be
exact: FP32, a dynamic batch axis named ``batch``, input ``clip`` ``(N, C, T, H, W)`` and output
``logits`` ``(N, K)``, checked by ``onnx.checker``, simplified by onnxsim only when onnxsim's own
numeric check passes, and written atomically so a failed export never clobbers a good file.

A model that streams (``edgekd.models.streaming_models()``, the online TSM) also gets its per-frame
*step* graph (:func:`export_step_onnx`): ``frame`` and its carried state in, this frame's logits
and the new state out, every tensor named and with a dynamic batch axis, plus a step spec beside
it (``<stem>.json``, the runtime's ``edgekd-step-v1``: names, shapes, dtypes, the window T) that
the streaming runtime, the engines and the bench read. :func:`check_stream_parity` streams a
clip's frames through it and compares the running mean with the model's clip logits.

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

from edgekd.runtime.online import (
    FrameStream,
    OnnxRuntimeStep,
    StateTensor,
    StepSpec,
    step_spec_path,
)
from edgekd.utils.atomic import atomic_path, write_json

__all__ = ["BATCH_AXIS", "INPUT_NAME", "OUTPUT_NAME", "check_parity", "check_stream_parity", "export_onnx",
           "export_step_onnx"]

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
        _torchscript_export(model, (dummy,), tmp, opset, [INPUT_NAME], [OUTPUT_NAME])
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        if simplify:
            proto = _simplify(proto, {INPUT_NAME: [_TRACE_BATCH, *shape]}, path)
            onnx.checker.check_model(proto, full_check=True)
        _check_interface(proto, path, [INPUT_NAME], [OUTPUT_NAME])
        onnx.save(proto, str(tmp))
    return path


def export_step_onnx(
    model: nn.Module,
    frame_shape: tuple[int, int, int],
    path: str | Path,
    *,
    window: int,
    opset: int = 17,
    simplify: bool = True,
) -> Path:
    """Export the per-frame step graph of a streaming ``model`` for frames ``(C, H, W)`` to ``path``
    and write its step spec beside it (:func:`~edgekd.runtime.online.step_spec_path`).

    ``model.step_module()`` is a module ``(frame, *state) -> (logits, *new_state)`` with
    ``input_names()`` / ``output_names()`` (frame and logits first, then the state tensors, paired by
    position) and ``initial_buffers(batch, h, w)`` (the zero state). ``window`` is T, the number of
    per-frame logits the streaming prediction averages (the clip length the model was trained on).
    Every input and output keeps a dynamic batch axis (one stream per row). Returns the ONNX path.
    """
    if not hasattr(model, "step_module"):
        raise TypeError(f"export_step_onnx: {type(model).__name__} has no step_module(): it does not stream")
    if window < 1:
        raise ValueError(f"export_step_onnx: window must be >= 1, got {window}")
    if len(frame_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in frame_shape):
        raise ValueError(f"export_step_onnx: frame_shape must be (C, H, W) positive ints, got {frame_shape!r}")
    c, h, w = frame_shape
    _require_fp32(model)
    path = Path(path)
    step = model.step_module()
    names_in, names_out = list(step.input_names()), list(step.output_names())
    device = _module_device(model)
    state = [b.to(device) for b in step.initial_buffers(_TRACE_BATCH, h, w)]
    dummy = (torch.randn(_TRACE_BATCH, c, h, w, device=device), *(torch.randn_like(b) for b in state))
    with _eval_mode(model), torch.no_grad():
        logits, *new_state = step(*dummy)
    if len(names_in) != len(names_out) or len(new_state) != len(state) or len(names_in) != len(state) + 1:
        raise RuntimeError(f"export_step_onnx: step of {type(model).__name__} names inputs {names_in} and outputs "
                           f"{names_out} for {len(state)} state tensors; they must pair up")
    with atomic_path(path) as tmp, _eval_mode(model):
        _torchscript_export(step, dummy, tmp, opset, names_in, names_out)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        if simplify:
            proto = _simplify(proto, {n: list(t.shape) for n, t in zip(names_in, dummy)}, path)
            onnx.checker.check_model(proto, full_check=True)
        _check_interface(proto, path, names_in, names_out)
        onnx.save(proto, str(tmp))
    spec = StepSpec(frame=names_in[0], frame_shape=(c, h, w), logits=names_out[0], num_classes=int(logits.shape[1]),
                    state=tuple(StateTensor(i, o, tuple(int(d) for d in b.shape[1:]))
                                for i, o, b in zip(names_in[1:], names_out[1:], state)),
                    window=window)
    write_json(step_spec_path(path), {**spec.to_dict(), "model": path.name, "opset": opset, "simplified": simplify,
                                      "source": type(model).__name__})
    return path


def check_stream_parity(model: nn.Module, step_onnx: str | Path, clips: np.ndarray) -> dict[str, Any]:
    """Stream each clip's T frames through the step ONNX (ONNX Runtime CPU, zero state first) and
    compare with PyTorch: the running mean after the last frame against the model's clip logits
    (``max_abs_delta``: streaming equals the clip), and every frame's logits against the PyTorch
    step's (``max_abs_delta_frames``). ``clips`` is ``(N, C, T, H, W)`` float32 with T the window."""
    clips = _validate_clips(clips)
    spec = StepSpec.load(step_spec_path(step_onnx))
    if clips.shape[2] != spec.window or (clips.shape[1], *clips.shape[3:]) != spec.frame_shape:
        raise ValueError(f"check_stream_parity: clips {clips.shape} do not fit the step spec (frames "
                         f"{spec.frame_shape}, window {spec.window})")
    runner = OnnxRuntimeStep(step_onnx, spec)
    stream = FrameStream(runner, batch=len(clips))
    step = model.step_module()
    device = _module_device(model)
    state = [b.to(device) for b in step.initial_buffers(len(clips), *spec.frame_shape[1:])]
    frame_delta = 0.0
    with _eval_mode(model), torch.no_grad():
        for t in range(spec.window):
            frame = np.ascontiguousarray(clips[:, :, t])
            mean = stream.push(frame)
            want, *state = step(torch.from_numpy(frame).to(device), *state)
            frame_delta = max(frame_delta, float(np.abs(stream.last_logits - want.float().cpu().numpy()).max()))
        ref = model(torch.from_numpy(clips).to(device)).float().cpu().numpy()
    delta = np.abs(ref.astype(np.float64) - mean.astype(np.float64))
    return {"n_clips": len(clips), "frames": spec.window, "max_abs_delta": float(delta.max()),
            "max_abs_delta_frames": frame_delta, "top1_agreement": float(np.mean(ref.argmax(1) == mean.argmax(1))),
            "onnxruntime_version": runner.version, "compared": "running mean of T streamed frames vs clip logits"}


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


def _torchscript_export(model: nn.Module, dummy: tuple[torch.Tensor, ...], out: Path, opset: int,
                        input_names: list[str], output_names: list[str]) -> None:
    dynamic = {name: {0: BATCH_AXIS} for name in (*input_names, *output_names)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed.*", category=DeprecationWarning)
        torch.onnx.export(
            model,
            dummy,
            str(out),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _simplify(proto: onnx.ModelProto, shapes: dict[str, list[int]], path: Path) -> onnx.ModelProto:
    """onnxsim with its random-input numeric check; a failed check is an error, not a fallback."""
    import onnxsim

    with contextlib.redirect_stdout(io.StringIO()):  # onnxsim prints "Checking i/n..." per run
        simplified, ok = onnxsim.simplify(proto, check_n=_SIMPLIFY_CHECK_N, test_input_shapes=shapes)
    if not ok:
        raise RuntimeError(
            f"onnxsim's check failed for {path}: the simplified graph disagrees with the exported one; "
            "export with simplify=False to keep the unsimplified model"
        )
    return simplified


def _check_interface(proto: onnx.ModelProto, path: Path, input_names: list[str], output_names: list[str]) -> None:
    """The contract every engine builder relies on: names, FP32 and a symbolic batch axis."""
    inputs = [i for i in proto.graph.input if i.name not in {init.name for init in proto.graph.initializer}]
    if [i.name for i in inputs] != input_names or [o.name for o in proto.graph.output] != output_names:
        raise RuntimeError(
            f"{path}: expected inputs {input_names} and outputs {output_names}, got "
            f"{[i.name for i in inputs]} -> {[o.name for o in proto.graph.output]}"
        )
    for value in (*inputs, *proto.graph.output):
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
