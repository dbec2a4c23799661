"""Builders, loaders and availability checks of the backend table's rows (``table.py`` names them).

A builder takes a :class:`BuildContext` (the model's FP32 ONNX, calibration and test clips, the
common sidecar, the recipe's engine options) and writes its row's artifact with an ``engine.json``
sidecar beside it; it returns the record the engines stage keeps in ``engines/engines.json``, or
raises :class:`EngineSkipped` with the reason when this machine cannot build it. A loader opens an
artifact as an :class:`~edgekd.engines.base.Engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.engines.base import Engine
from edgekd.engines.table import EngineRow, get_engine
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import sha256_file

__all__ = ["BuildContext", "EngineSkipped"]


class EngineSkipped(RuntimeError):
    """A row this machine cannot build or run (no TensorRT, no bf16 kernels): reported, not an error."""


@dataclass
class BuildContext:
    """What a row's builder needs, for one trained model of a run."""

    row: EngineRow
    model: str  # teacher | student_scratch | student_kd
    run_dir: Path
    onnx: Path  # the model's FP32 export
    sidecar: dict[str, Any]  # common sidecar fields: source ONNX and its sha256, input spec, classes, versions
    options: Any  # the recipe's engines section (EnginesConfig)
    calibration: np.ndarray | None = None  # (N, C, T, H, W) training-split clips
    test: tuple[np.ndarray, np.ndarray] | None = None  # test-split clips (N, K, C, T, H, W) and labels
    parity_clips: np.ndarray | None = None
    input_spec: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        """This row's artifact path."""
        return self.row.path(self.run_dir, self.model)

    def artifact(self, name: str) -> Path:
        """The artifact of another row for the same model (one this row ``needs``)."""
        return get_engine(name).path(self.run_dir, self.model)

    def require_calibration(self) -> np.ndarray:
        if self.calibration is None or not len(self.calibration):
            raise ValueError(f"{self.row.name}: INT8 calibration needs training clips")
        return self.calibration


# ----------------------------------------------------------------------------- builders


def build_openvino_fp32(ctx: BuildContext) -> dict[str, Any]:
    from edgekd.engines.openvino_engine import build_openvino_fp32 as build

    xml = build(ctx.onnx, ctx.out.parent)
    write_json(xml.parent / "engine.json", {**ctx.sidecar, "backend": "openvino", "precision": "fp32", "model": xml.name})
    return {"status": "built", "artifact": str(xml)}


def build_openvino_int8(ctx: BuildContext) -> dict[str, Any]:
    """NNCF INT8 IR, then run on the parity clips (batch 1 and all at once) beside the FP32 ONNX in
    ONNX Runtime: an IR the CPU plugin cannot run is removed and the row skipped with the plugin's
    error (OpenVINO 2026.4 failed on TSM INT8 IRs whose last stages see 1x1 maps), and the
    agreement with FP32 goes into the sidecar."""
    import shutil

    from edgekd.engines.openvino_engine import build_openvino_int8 as build

    calib = ctx.require_calibration()
    xml = build(ctx.onnx, (c[None] for c in calib), ctx.out.parent, subset_size=len(calib))
    clips = ctx.parity_clips if ctx.parity_clips is not None else calib[:8]
    try:
        parity = _int8_vs_fp32(xml, ctx.onnx, clips)
    except RuntimeError as exc:
        shutil.rmtree(xml.parent)
        reason = str(exc).strip().splitlines()
        raise EngineSkipped(f"the OpenVINO CPU plugin cannot run the INT8 IR of {ctx.model}: "
                            f"{' '.join(line.strip() for line in reason[-2:])}") from exc
    write_json(xml.parent / "engine.json", {**ctx.sidecar, "backend": "openvino", "precision": "int8", "model": xml.name,
                                            "calibration": {"subset": "train", "clips": len(calib),
                                                            "tool": "nncf.quantize"}, "parity_vs_fp32_onnx": parity})
    return {"status": "built", "artifact": str(xml), "parity": parity}


def _int8_vs_fp32(xml: Path, onnx: Path, clips: np.ndarray) -> dict[str, Any]:
    from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine
    from edgekd.engines.openvino_engine import OpenVinoEngine

    engine = OpenVinoEngine(xml, name="openvino_int8")
    one = engine.infer(np.ascontiguousarray(clips[:1]))
    got = engine.infer(np.ascontiguousarray(clips))
    if np.abs(one - got[:1]).max() > 1e-3 * max(1.0, float(np.abs(got).max())):
        raise RuntimeError("batch 1 and batch N logits of the same clip differ")
    ref = OnnxRuntimeEngine(onnx, name="onnxruntime_fp32").infer(np.ascontiguousarray(clips))
    return {"n_clips": len(clips), "max_abs_delta": float(np.abs(got - ref).max()),
            "median_max_abs_delta": float(np.median(np.abs(got - ref).max(axis=1))),
            "top1_agreement": float(np.mean(got.argmax(1) == ref.argmax(1))),
            "compared": "INT8 IR (OpenVINO CPU) vs the FP32 ONNX (ONNX Runtime CPU)"}


def build_onnx_int8_qdq(ctx: BuildContext) -> dict[str, Any]:
    """Q/DQ INT8 ONNX + its accuracy against the FP32 ONNX on the test split (ONNX Runtime CPU)."""
    from edgekd.engines.qdq import build_qdq_int8, qdq_accuracy

    calib = ctx.require_calibration()
    method = ctx.options.qdq_calibration
    model = build_qdq_int8(ctx.onnx, (c[None] for c in calib), ctx.out, subset_size=len(calib), method=method)
    record: dict[str, Any] = {"status": "built", "artifact": str(model)}
    sidecar = {**ctx.sidecar, "backend": "onnxruntime", "precision": "int8", "format": "onnx_qdq",
               "model": model.name, "model_sha256": sha256_file(model),
               "calibration": {"subset": "train", "clips": len(calib), "method": method,
                               "tool": "onnxruntime.quantization.quantize_static (QDQ, symmetric)"}}
    if ctx.test is not None:
        accuracy = qdq_accuracy(ctx.onnx, model, *ctx.test)
        sidecar["accuracy_test_split"] = record["accuracy_test_split"] = accuracy
        print(f"[engines] {ctx.model} Q/DQ INT8 ONNX: test top-1 {accuracy['int8_qdq_top1']:.3f} vs FP32 "
              f"{accuracy['fp32_top1']:.3f} (drop {accuracy['top1_drop']:+.3f}, agreement "
              f"{accuracy['top1_agreement']:.3f})")
    write_json(model.parent / "engine.json", sidecar)
    return record


def build_openvino_fp32_stream(ctx: BuildContext) -> dict[str, Any]:
    """FP32 IR of the model's per-frame step graph (written by the export stage for models that
    stream), its step spec beside it, checked against the step ONNX in ONNX Runtime: the same clips
    streamed through both, running means compared."""
    import shutil

    from edgekd.engines.openvino_engine import build_openvino_fp32 as build
    from edgekd.runtime.online import step_spec_path

    step_onnx = _step_onnx(ctx)
    xml = build(step_onnx, ctx.out.parent)
    shutil.copy2(step_spec_path(step_onnx), step_spec_path(xml))
    clips = ctx.parity_clips if ctx.parity_clips is not None else ctx.require_calibration()[:8]
    parity = _stream_parity(step_onnx, xml, clips, "running mean of the streamed frames, OpenVINO IR vs the step ONNX "
                                                   "in ONNX Runtime")
    write_json(xml.parent / "engine.json", {
        **ctx.sidecar, "backend": "openvino", "precision": "fp32", "model": xml.name, "mode": "stream",
        "step_spec": step_spec_path(xml).name, "source_step_onnx": str(step_onnx),
        "source_step_onnx_sha256": sha256_file(step_onnx), "parity_vs_step_onnx": parity})
    print(f"[engines] {ctx.model} OpenVINO step IR: streamed {parity['n_clips']} clips, max |delta| of the running "
          f"mean vs the step ONNX {parity['max_abs_delta']:.2e}")
    return {"status": "built", "artifact": str(xml), "parity": parity}


def build_openvino_int8_stream(ctx: BuildContext) -> dict[str, Any]:
    """NNCF INT8 IR of the per-frame step graph. A step's inputs are a frame and the carried shift
    buffers, so calibration streams training clips through the FP32 step ONNX (ONNX Runtime) and
    records every frame's inputs, state included: the quantizers see the state a running stream
    carries, not zeros. Checked like :func:`build_openvino_fp32_stream`, against the FP32 step
    ONNX on the parity clips (running means of the streamed frames); an IR the CPU plugin cannot
    run is removed and the row skipped with the plugin's message, as for the clip INT8 IR."""
    import shutil

    import openvino as ov

    from edgekd.engines.openvino_engine import _save_ir, quantize_int8
    from edgekd.runtime.online import step_spec_path

    step_onnx = _step_onnx(ctx)
    calib = ctx.require_calibration()
    samples = _step_calibration(step_onnx, calib[:_STEP_CALIBRATION_CLIPS])
    model = ov.convert_model(str(step_onnx))
    quantized, kept_fp32 = quantize_int8(model, samples, what=str(step_onnx))
    xml = _save_ir(quantized, ctx.out.parent, metadata={
        "source_step_onnx": str(step_onnx), "precision": "int8", "preset": "performance", "target_device": "CPU",
        "calibration_frames": len(samples), "kept_fp32": kept_fp32})
    shutil.copy2(step_spec_path(step_onnx), step_spec_path(xml))
    clips = ctx.parity_clips if ctx.parity_clips is not None else calib[:8]
    try:
        parity = _stream_parity(step_onnx, xml, clips, "running mean of the streamed frames, INT8 step IR (OpenVINO "
                                                       "CPU) vs the FP32 step ONNX (ONNX Runtime CPU)")
    except RuntimeError as exc:
        shutil.rmtree(xml.parent)
        reason = str(exc).strip().splitlines()
        raise EngineSkipped(f"the OpenVINO CPU plugin cannot run the INT8 step IR of {ctx.model}: "
                            f"{' '.join(line.strip() for line in reason[-2:])}") from exc
    write_json(xml.parent / "engine.json", {
        **ctx.sidecar, "backend": "openvino", "precision": "int8", "model": xml.name, "mode": "stream",
        "step_spec": step_spec_path(xml).name, "source_step_onnx": str(step_onnx),
        "source_step_onnx_sha256": sha256_file(step_onnx),
        "calibration": {"subset": "train", "clips": min(len(calib), _STEP_CALIBRATION_CLIPS),
                        "frames": len(samples), "tool": "nncf.quantize"},
        "parity_vs_fp32_step_onnx": parity})
    print(f"[engines] {ctx.model} OpenVINO INT8 step IR: top-1 agreement with the FP32 step ONNX "
          f"{parity['top1_agreement']:.3f} on {parity['n_clips']} streamed clips")
    return {"status": "built", "artifact": str(xml), "parity": parity}


# training clips streamed for the INT8 step's calibration: every one of their frames is a sample
# (at T = 16, 32 clips give 512 frames, each with the state the frames before it left)
_STEP_CALIBRATION_CLIPS = 32


def _step_calibration(step_onnx: Path, clips: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Every frame of ``clips`` streamed one clip at a time through the FP32 step ONNX, as the
    step's input dict (frame and carried state, by input name) at that frame."""
    from edgekd.runtime.online import FrameStream, load_step

    stream = FrameStream(load_step("onnxruntime", step_onnx, batch=1))
    spec = stream.spec
    samples = []
    for clip in clips:
        stream.reset()
        for t in range(clip.shape[1]):
            frame = np.ascontiguousarray(clip[None, :, t], dtype=np.float32)
            samples.append({spec.frame: frame, **{s.input: a for s, a in zip(spec.state, stream.state)}})
            stream.push(frame)
    return samples


def _step_onnx(ctx: BuildContext) -> Path:
    """The model's exported step graph, or a skip saying why a model has none."""
    step_onnx = ctx.artifact("onnxruntime_fp32_stream")
    if not step_onnx.is_file():
        raise EngineSkipped(f"{ctx.model} has no per-frame step graph ({step_onnx.name}): export writes one only "
                            "for models that stream (edgekd.models.streaming_models()) unless export.streaming is false")
    return step_onnx


def _stream_parity(step_onnx: Path, xml: Path, clips: np.ndarray, compared: str) -> dict[str, Any]:
    """``clips`` streamed frame by frame through the step ONNX (ONNX Runtime) and the step IR
    (OpenVINO); the running means after the last frame compared."""
    from edgekd.runtime.online import FrameStream, load_step

    means = []
    for backend, path in (("onnxruntime", step_onnx), ("openvino", xml)):
        stream = FrameStream(load_step(backend, path, batch=len(clips)), batch=len(clips))
        for t in range(clips.shape[2]):
            mean = stream.push(np.ascontiguousarray(clips[:, :, t]))
        means.append(mean.astype(np.float64))
    return {"n_clips": len(clips), "frames": int(clips.shape[2]),
            "max_abs_delta": float(np.abs(means[0] - means[1]).max()),
            "top1_agreement": float(np.mean(means[0].argmax(1) == means[1].argmax(1))), "compared": compared}


def build_onnx_fp16(ctx: BuildContext) -> dict[str, Any]:
    """FP16 ONNX (FP32 inputs and outputs, softmax and reductions FP32), written only if it agrees
    with the FP32 ONNX on ONNX Runtime CPU within FP16 rounding (``edgekd/engines/fp16.py``)."""
    from edgekd.engines.fp16 import build_fp16_onnx

    clips = ctx.parity_clips if ctx.parity_clips is not None else ctx.require_calibration()[:16]
    built = build_fp16_onnx(ctx.onnx, ctx.out, parity_clips=clips)
    model, parity = built["model"], built["parity"]
    write_json(model.parent / "engine.json", {
        **ctx.sidecar, "backend": "onnxruntime", "precision": "fp16", "format": "onnx_fp16", "model": model.name,
        "model_sha256": sha256_file(model), "conversion": built["conversion"], "parity_vs_fp32_onnx": parity})
    print(f"[engines] {ctx.model} FP16 ONNX: max |delta logit| vs FP32 ONNX {parity['max_abs_delta']:.2e} "
          f"({parity['relative_delta']:.1e} of the largest logit, bound {parity['tolerance_relative']:.1e} for "
          f"{parity['rounding_ops']} FP16 rounding ops), top-1 agreement {parity['top1_agreement']:.3f}")
    return {"status": "built", "artifact": str(model), "parity": parity}


def build_tensorrt(ctx: BuildContext) -> dict[str, Any]:
    """A TensorRT plan for the row's precision, checked against ONNX Runtime on the ONNX it was built from.

    Which ONNX that is depends on the installed TensorRT (``tensorrt_build.build_plan``): for fp16
    the FP16 ONNX where it builds strongly typed (10.x, 11.x), the FP32 ONNX with
    ``BuilderFlag.FP16`` where it cannot (8.x); the row needs onnxruntime_fp16 for the former.
    """
    from edgekd.engines.tensorrt_engine import (
        TensorRTEngine,
        TensorRTUnavailable,
        check_tensorrt_parity,
        require_tensorrt,
    )
    from edgekd.runtime.tensorrt_build import (
        BuildOptions,
        TensorRTFeatureUnavailable,
        build_engine,
        detect_features,
    )

    try:
        trt = require_tensorrt()
    except TensorRTUnavailable as exc:
        raise EngineSkipped(str(exc)) from exc
    features = detect_features(trt)
    precision = ctx.row.name.removeprefix("tensorrt_")
    onnx = ctx.artifact("onnxruntime_int8") if precision == "int8_qdq" else ctx.onnx
    fp16_onnx = ctx.artifact("onnxruntime_fp16") if "onnxruntime_fp16" in ctx.row.needs else None
    o = ctx.options
    options = BuildOptions(precision, tuple(o.tensorrt_batch), o.tensorrt_workspace_mb, o.tensorrt_timing_cache_dir,
                           calibration_batch_size=min(o.tensorrt_batch[2], 8),
                           calibration_cache=str(ctx.out.with_name("calibration.cache")))
    try:
        sidecar = build_engine(onnx, ctx.out, options, fp16_onnx=fp16_onnx, calibration_clips=ctx.calibration,
                               input_spec=ctx.input_spec, labels=ctx.labels)
        parity = check_tensorrt_parity(TensorRTEngine(ctx.out), sidecar["source_onnx"], ctx.parity_clips
                                       if ctx.parity_clips is not None else ctx.require_calibration()[:16])
    except (TensorRTFeatureUnavailable, TensorRTUnavailable) as exc:
        raise EngineSkipped(str(exc)) from exc
    print(f"[engines] {ctx.row.name} ({ctx.model}): TensorRT {features.version} ({features.line} line), "
          f"{sidecar['route_description']}; built {ctx.out}, max |delta logit| vs ONNX Runtime on that ONNX "
          f"{parity['max_abs_delta']:.2e}, top-1 agreement {parity['top1_agreement']:.3f}")
    return {"status": "built", "artifact": str(ctx.out), "tensorrt_line": features.line, "route": sidecar["route"],
            "strongly_typed": sidecar["strongly_typed"], "sidecar": sidecar, "parity": parity}


# ----------------------------------------------------------------------------- loaders


def load_pytorch(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.torch_engine import TorchEngine
    from edgekd.train.checkpoint import load_checkpoint

    return TorchEngine(load_checkpoint(path).build(), threads=threads, name=name)


def load_onnxruntime(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, threads=threads, name=name)


def load_openvino_f32(path: Path, *, threads: int, name: str) -> Engine:
    """FP32 and INT8 IRs with hint f32 (INT8: the layers NNCF left in float stay f32)."""
    from edgekd.engines.openvino_engine import OpenVinoEngine

    return OpenVinoEngine(path, threads=threads, precision_hint="f32", name=name)


def load_openvino_bf16(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.openvino_engine import OpenVinoEngine

    return OpenVinoEngine(path, threads=threads, precision_hint="bf16", name=name)


def load_onnxruntime_stream(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.streaming_engine import StreamingEngine

    return StreamingEngine("onnxruntime", path, threads=threads, name=name)


def load_openvino_stream(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.streaming_engine import StreamingEngine

    return StreamingEngine("openvino", path, threads=threads, name=name)


def load_openvino_int8_stream(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.streaming_engine import StreamingEngine

    return StreamingEngine("openvino", path, threads=threads, name=name, precision="int8")


def load_tensorrt(path: Path, *, threads: int, name: str) -> Engine:
    from edgekd.engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(path, name=name)


# ----------------------------------------------------------------------------- availability


def pytorch_status() -> tuple[bool, str]:
    import torch

    return True, f"PyTorch {torch.__version__}"


def onnxruntime_status() -> tuple[bool, str]:
    import onnxruntime as ort

    return True, f"ONNX Runtime {ort.__version__}, providers {ort.get_available_providers()}"


def openvino_status() -> tuple[bool, str]:
    import openvino as ov

    return True, f"OpenVINO {ov.get_version()}"


def openvino_int8_status() -> tuple[bool, str]:
    from importlib import metadata

    import openvino as ov

    return True, f"OpenVINO {ov.get_version()}, NNCF {metadata.version('nncf')}"


def openvino_bf16_status() -> tuple[bool, str]:
    from edgekd.engines.openvino_engine import supported_precision_hints

    hints = supported_precision_hints()
    return ("bf16" in hints, "OpenVINO CPU plugin runs bf16 here" if "bf16" in hints else
            f"this CPU cannot honour OpenVINO inference precision hint 'bf16' (supported: {hints})")


def onnxruntime_fp16_status() -> tuple[bool, str]:
    from importlib import metadata

    import onnxruntime as ort

    try:
        converter = metadata.version("onnxconverter-common")
    except metadata.PackageNotFoundError:
        return False, "onnxconverter-common is not installed (pip install onnxconverter-common): it writes the FP16 ONNX"
    return True, f"ONNX Runtime {ort.__version__}, onnxconverter-common {converter}"


def tensorrt_row_status() -> tuple[bool, str]:
    from edgekd.engines.tensorrt_engine import tensorrt_status

    return tensorrt_status()


def tensorrt_calib_status() -> tuple[bool, str]:
    """TensorRT usable here, and it still has implicit INT8 calibration (11.x removed it)."""
    import importlib

    from edgekd.engines.tensorrt_engine import tensorrt_status
    from edgekd.runtime.tensorrt_build import TensorRTFeatureUnavailable, build_plan, detect_features

    ok, why = tensorrt_status()
    if not ok:
        return ok, why
    try:
        build_plan("int8_calib", detect_features(importlib.import_module("tensorrt")))
    except TensorRTFeatureUnavailable as exc:
        return False, str(exc)
    return True, why
