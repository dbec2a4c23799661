"""OpenVINO CPU engine and the builders of its FP32 and INT8 IRs.

Precision is the trap on this backend: on CPUs with AMX/AVX512-BF16 the CPU plugin runs FP32
IRs in bf16 unless told otherwise, so an "FP32" row measured with defaults is really bf16. The
engine therefore always sets ``INFERENCE_PRECISION_HINT`` (f32 unless asked), reads the hint back
from the compiled model, refuses a mismatch, and names itself after the precision that runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgekd.engines.base import Engine, check_batch, check_logits
from edgekd.utils.atomic import atomic_dir, write_json
from edgekd.utils.cpu import cpu_info

__all__ = ["OpenVinoEngine", "build_openvino_fp32", "build_openvino_int8", "classifier_head", "compile_config",
           "ir_precision", "quantize_int8", "supported_precision_hints"]

_DEVICE = "CPU"
# precision hint -> (device capability it needs, label of what then runs)
_HINTS = {"f32": ("FP32", "fp32"), "bf16": ("BF16", "bf16"), "f16": ("FP16", "fp16")}
_IR_NAME = "model.xml"


class OpenVinoEngine(Engine):
    """A compiled OpenVINO IR on CPU with latency hint, explicit threads and explicit precision.

    ``precision_hint=None`` leaves the plugin default (bf16 on AMX CPUs); whatever runs is read
    back and reported, never assumed. For INT8 IRs the hint governs the layers NNCF left
    unquantized; it stays f32 by default so that only the quantized layers lose precision.
    """

    def __init__(
        self,
        xml_path: str | Path,
        *,
        threads: int | None = None,
        precision_hint: str | None = "f32",
        name: str | None = None,
    ) -> None:
        self.xml_path = _require_ir(xml_path)
        if threads is not None and threads < 1:
            raise ValueError(f"OpenVINO engine for {self.xml_path}: threads must be >= 1, got {threads}")
        core = ov.Core()
        _require_hint_supported(core, precision_hint)
        model = core.read_model(str(self.xml_path))
        self.ir_precision = ir_precision(model)
        self.requested_hint = precision_hint
        self.compiled = core.compile_model(model, _DEVICE, compile_config(threads, precision_hint))
        self.hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if precision_hint is not None and self.hint != precision_hint:
            raise RuntimeError(
                f"OpenVINO compiled {self.xml_path} with inference precision {self.hint!r}, "
                f"requested {precision_hint!r}"
            )
        self.precision = "int8" if self.ir_precision == "int8" else _HINTS.get(self.hint, ("", self.hint))[1]
        self.name = name or f"openvino_{self.precision}"
        self._device_name = core.get_property(_DEVICE, "FULL_DEVICE_NAME")
        self._request = self.compiled.create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.name)
        # share the caller's (C-contiguous float32) buffer instead of copying it into the request:
        # the copy cost ~0.4 ms per call, a third of a small student's latency (benchmark_app cross-check)
        self._request.set_input_tensor(ov.Tensor(np.ascontiguousarray(batch), shared_memory=True))
        self._request.infer()
        logits = self._request.get_output_tensor(0).data.copy()
        return check_logits(logits, batch.shape[0], self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": "openvino",
            "backend_version": ov.get_version(),
            "precision": self.precision,
            "ir_precision": self.ir_precision,
            "inference_precision_hint": self.hint,
            "requested_precision_hint": self.requested_hint,
            "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "device": f"{_DEVICE} ({self._device_name})",
            "model_file": str(self.xml_path),
            "notes": self._notes(),
        }

    def _notes(self) -> str:
        if self.ir_precision == "int8":
            return f"INT8 IR: quantized layers run in int8; layers left unquantized by NNCF run in {self.hint}"
        if self.requested_hint is None:
            return f"no precision hint set; the CPU plugin chose {self.hint}"
        return f"inference precision forced to {self.hint}"


def build_openvino_fp32(onnx_path: str | Path, out_dir: str | Path) -> Path:
    """Convert ONNX to an FP32 IR at ``out_dir/model.xml`` (+ ``.bin``) and return the xml path.

    ``compress_to_fp16=False`` because ``save_model`` otherwise stores FP16 weights, which would
    make the "FP32" IR a weight-compressed one. ``out_dir`` is replaced as a whole.
    """
    onnx_path = _require_file(onnx_path, "ONNX model")
    model = ov.convert_model(str(onnx_path))
    return _save_ir(model, Path(out_dir), metadata={"source_onnx": str(onnx_path), "precision": "fp32"})


def build_openvino_int8(
    onnx_path: str | Path,
    calibration: Iterable[np.ndarray],
    out_dir: str | Path,
    *,
    subset_size: int,
    fast_bias_correction: bool = True,
    transformer: bool = False,
    keep_head_fp32: bool = True,
) -> Path:
    """Post-training INT8 quantization with NNCF; writes ``out_dir/model.xml`` and returns it.

    Each calibration item is one ``(1, C, T, H, W)`` float32 clip; the first ``subset_size`` are
    used and there must be that many (asking for more than is given is a configuration error).
    Settings: PERFORMANCE preset (symmetric weights and activations, what the CPU INT8 kernels
    prefer), CPU target. ``transformer=True`` selects NNCF's transformer model type (SmoothQuant,
    attention-aware ignored ops) for ViT-style students; the default suits 3D CNNs. NNCF collects
    statistics with an f32 precision hint, so calibration is not done in bf16. ``build.json`` next
    to the IR records the settings.

    ``keep_head_fp32`` leaves the last MatMul/Convolution (the classifier head) unquantized: it
    is a negligible share of a video model's compute but, quantized, it put the largest error on
    the logits (tiny test CNN: mean relative logit error 8.6% quantized vs 0.2% kept FP32, while
    ``fast_bias_correction`` True/False and the MIXED preset changed nothing measurable).
    """
    import nncf  # imported here: it takes seconds and only this builder needs it

    onnx_path = _require_file(onnx_path, "ONNX model")
    if subset_size < 1:
        raise ValueError(f"build_openvino_int8: subset_size must be >= 1, got {subset_size}")
    model = ov.convert_model(str(onnx_path))
    clips = _calibration_clips(calibration, subset_size, _static_input_shape(model))
    quantized, kept_fp32 = quantize_int8(model, clips, keep_head_fp32=keep_head_fp32,
                                         fast_bias_correction=fast_bias_correction, transformer=transformer,
                                         what=str(onnx_path))
    metadata = {
        "source_onnx": str(onnx_path),
        "precision": "int8",
        "nncf_version": nncf.__version__,
        "openvino_version": ov.get_version(),
        "preset": "performance",
        "target_device": "CPU",
        "subset_size": subset_size,
        "fast_bias_correction": fast_bias_correction,
        "model_type": "transformer" if transformer else "cnn (nncf default)",
        "kept_fp32": kept_fp32,
    }
    return _save_ir(quantized, Path(out_dir), metadata=metadata)


def ir_precision(model: ov.Model) -> str:
    """Classify an IR by its contents: quantizers or int8 weights -> "int8", f16 weights -> "fp16", else "fp32"."""
    has_f16 = False
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            return "int8"
        if kind == "Constant":
            elem = op.get_output_element_type(0)
            if elem in (ov.Type.i8, ov.Type.u8):
                return "int8"
            has_f16 = has_f16 or elem == ov.Type.f16
    return "fp16" if has_f16 else "fp32"


def quantize_int8(model: ov.Model, clips: list[np.ndarray], *, keep_head_fp32: bool = True,
                  fast_bias_correction: bool = True, transformer: bool = False,
                  what: str = "the model") -> tuple[ov.Model, list[str]]:
    """NNCF post-training INT8 of an OpenVINO model: the one place edgekd calls ``nncf.quantize``
    (the engines stage's INT8 IRs and the INT8 KD teacher both come through here).

    PERFORMANCE preset (symmetric weights and activations, what CPU INT8 kernels prefer), CPU
    target, calibrated on ``clips`` (each ``(1, C, T, H, W)`` float32). ``keep_head_fp32`` leaves
    the classifier head in float (see :func:`build_openvino_int8`). Returns the quantized model and
    the names kept in float; refuses a result without quantizers rather than calling it INT8."""
    import nncf  # imported here: it takes seconds and only INT8 paths need it

    kept_fp32 = classifier_head(model) if keep_head_fp32 else []
    quantized = nncf.quantize(
        model,
        nncf.Dataset(clips),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(clips),
        fast_bias_correction=fast_bias_correction,
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        ignored_scope=nncf.IgnoredScope(names=kept_fp32) if kept_fp32 else None,
    )
    if ir_precision(quantized) != "int8":
        raise RuntimeError(f"NNCF inserted no quantizers into {what}; refusing to call it INT8")
    return quantized, kept_fp32


def classifier_head(model: ov.Model) -> list[str]:
    """Friendly name of the last MatMul/Convolution in execution order: the classifier head."""
    weighted = [op for op in model.get_ordered_ops() if op.get_type_name() in ("MatMul", "Convolution")]
    return [weighted[-1].get_friendly_name()] if weighted else []


def _save_ir(model: ov.Model, out_dir: Path, *, metadata: dict[str, Any]) -> Path:
    """Save ``model`` as ``out_dir/model.xml`` atomically, with a JSON note of how it was built."""
    with atomic_dir(out_dir) as tmp:
        ov.save_model(model, str(tmp / _IR_NAME), compress_to_fp16=False)
        write_json(tmp / "build.json", metadata)
    return out_dir / _IR_NAME


def _calibration_clips(
    calibration: Iterable[np.ndarray], subset_size: int, shape: tuple[int, ...] | None
) -> list[np.ndarray]:
    """Take and validate the first ``subset_size`` clips (materialized: NNCF iterates more than once)."""
    clips = list(itertools.islice(iter(calibration), subset_size))
    if len(clips) < subset_size:
        raise ValueError(
            f"build_openvino_int8: calibration yielded {len(clips)} clips, subset_size={subset_size}; "
            "pass a subset_size no larger than the calibration set"
        )
    for i, clip in enumerate(clips):
        if not isinstance(clip, np.ndarray) or clip.dtype != np.float32 or clip.ndim != 5 or clip.shape[0] != 1:
            got = f"{type(clip).__name__} {getattr(clip, 'dtype', '')} {getattr(clip, 'shape', '')}"
            raise ValueError(
                f"build_openvino_int8: calibration item {i} must be a (1,C,T,H,W) float32 array, got {got}"
            )
        if shape is not None and tuple(clip.shape[1:]) != shape:
            raise ValueError(
                f"build_openvino_int8: calibration item {i} has shape {clip.shape}, model expects (1, {shape})"
            )
    return clips


def _static_input_shape(model: ov.Model) -> tuple[int, ...] | None:
    """The model's (C, T, H, W) when static, to validate calibration clips against."""
    pshape = model.inputs[0].get_partial_shape()
    if pshape.rank.is_dynamic or any(dim.is_dynamic for dim in list(pshape)[1:]):
        return None
    return tuple(dim.get_length() for dim in list(pshape)[1:])


def compile_config(threads: int | None, precision_hint: str | None) -> dict[str, Any]:
    """The CPU plugin configuration every edgekd OpenVINO model is compiled with: latency hint,
    explicit threads and an explicit inference precision (the deploy runtime keeps a copy, held
    identical by a test, because it cannot import edgekd)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision_hint is not None:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    return config


def supported_precision_hints(core: ov.Core | None = None) -> list[str]:
    """Precision hints this machine's CPU plugin can honour (e.g. ``bf16`` needs AVX512-BF16/AMX).

    The plugin reports its capabilities from the CPU's flags, but its oneDNN kernels obey
    ``ONEDNN_MAX_CPU_ISA``: capped below AVX512_CORE_BF16 it still reports BF16 and then fails to
    compile a bf16 max-pool ("Supported primitive descriptors list is empty"). So a cap that rules
    out bf16 kernels removes the bf16 hint, as on a CPU that really lacks them."""
    capabilities = (core or ov.Core()).get_property(_DEVICE, "OPTIMIZATION_CAPABILITIES")
    hints = [hint for hint, (capability, _) in _HINTS.items() if capability in capabilities]
    cpu = cpu_info()
    if "bf16" in hints and cpu.is_x86 and cpu.onednn_cap and not cpu.isa_at_least("AVX512_CORE_BF16"):
        hints.remove("bf16")
    return hints


def _require_hint_supported(core: ov.Core, precision_hint: str | None) -> None:
    """Reject unknown hints, and hints this CPU cannot honour, before compiling."""
    if precision_hint is None:
        return
    if precision_hint not in _HINTS:
        raise ValueError(f"OpenVINO precision_hint must be one of {sorted(_HINTS)} or None, got {precision_hint!r}")
    if precision_hint not in supported_precision_hints(core):
        capabilities = core.get_property(_DEVICE, "OPTIMIZATION_CAPABILITIES")
        cap = cpu_info().onednn_cap
        raise RuntimeError(
            f"OpenVINO {_DEVICE} cannot honour hint {precision_hint!r} here (capabilities {capabilities}"
            + (f", kernels capped by ONEDNN_MAX_CPU_ISA={cap}" if cap else "") + ")"
        )


def _require_ir(xml_path: str | Path) -> Path:
    xml = _require_file(xml_path, "OpenVINO IR")
    if not xml.with_suffix(".bin").is_file():
        raise FileNotFoundError(f"OpenVINO IR weights missing: {xml.with_suffix('.bin')} (next to {xml})")
    return xml


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path
