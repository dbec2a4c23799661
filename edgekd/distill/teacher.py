"""Frozen-teacher runners: one call maps a batch of teacher inputs to the teacher's logits (and,
for feature KD, its tapped features), never building an autograd graph.

* ``TorchTeacher`` runs the PyTorch module in eval mode under the student's precision and memory
  format (bf16 autocast + channels_last_3d where the CPU has AMX).
* ``OpenVinoTeacher`` converts the module once (``openvino.convert_model`` on the torch module,
  dynamic batch, logits and features as two outputs) and runs it with an explicit inference
  precision that is read back and checked, because the CPU plugin's default on AMX CPUs is bf16.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from edgekd.distill.taps import FeatureTap
from edgekd.train.perf import autocast, to_memory_format

OPENVINO_PRECISIONS = ("f32", "bf16", "int8")


@dataclass
class TeacherOutput:
    logits: torch.Tensor  # (B, K) float32
    features: torch.Tensor | None  # (B, D) float32, when a feature tap was asked for


class Teacher(Protocol):
    feature_dim: int | None

    def __call__(self, x: torch.Tensor) -> TeacherOutput: ...

    def describe(self) -> dict[str, Any]: ...


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout, frozen batch-norm statistics) and no gradients."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class TorchTeacher:
    """The frozen PyTorch teacher. ``precision`` is ``fp32`` or ``bf16`` (autocast).

    ``device`` is where it computes (the rank's GPU under NCCL): inputs are moved there, so a
    flow teacher fed CPU-side extras and an RGB teacher fed the student's device batch both work.
    """

    def __init__(self, model: nn.Module, *, input_shape: tuple[int, ...], feature_tap: str | None = None,
                 precision: str = "fp32", channels_last: bool = False, device: torch.device | None = None) -> None:
        self.device = device or torch.device("cpu")
        self.model = to_memory_format(freeze(model).to(self.device), channels_last)
        self.precision = precision
        self.channels_last = channels_last
        self.tap = FeatureTap(self.model, feature_tap) if feature_tap else None  # type: ignore[arg-type]
        self.feature_dim = None if self.tap is None else int(self(torch.zeros(1, *input_shape)).features.shape[1])  # type: ignore[union-attr]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> TeacherOutput:
        x = x.to(self.device)
        with autocast(self.precision, self.device.type):
            logits = self.model(to_memory_format(x, self.channels_last)).float()  # type: ignore[operator]
        features = None if self.tap is None else self.tap.pop().float()
        return TeacherOutput(logits, features)

    def describe(self) -> dict[str, Any]:
        return {"backend": "pytorch", "precision": self.precision, "channels_last": self.channels_last,
                "feature_tap": None if self.tap is None else self.tap.spec, "feature_dim": self.feature_dim}


class _LogitsAndFeatures(nn.Module):
    """Wraps a model so one forward returns ``(logits, tapped features)``: the graph OpenVINO converts."""

    def __init__(self, model: nn.Module, feature_tap: str) -> None:
        super().__init__()
        self.model = model
        self.tap = FeatureTap(model, feature_tap)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, self.tap.pop()


class OpenVinoTeacher:
    """The frozen teacher converted to OpenVINO and compiled for CPU with an explicit precision.

    ``precision`` is an OpenVINO inference precision hint (``f32`` or ``bf16``); the hint the
    compiled model reports is checked against it, so an "f32" teacher never silently runs bf16.
    """

    def __init__(self, model: nn.Module, *, input_shape: tuple[int, ...], feature_tap: str | None = None,
                 precision: str = "f32", threads: int | None = None,
                 calibration: np.ndarray | None = None) -> None:
        import openvino as ov

        from edgekd.engines.openvino_engine import supported_precision_hints

        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"OpenVINO teacher precision must be one of {list(OPENVINO_PRECISIONS)}, got {precision!r}")
        core = ov.Core()
        hint = "f32" if precision == "int8" else precision  # INT8: quantized ops run int8, the rest f32
        if precision == "int8" and (calibration is None or len(calibration) == 0):
            raise ValueError("the INT8 OpenVINO teacher needs calibration clips (N, C, T, H, W) from the training split")
        if hint not in supported_precision_hints(core):
            raise RuntimeError(f"this CPU cannot run OpenVINO inference precision {precision!r} "
                               f"(supported: {supported_precision_hints(core)})")
        model = freeze(model).float().to(memory_format=torch.contiguous_format)
        graph: nn.Module = _LogitsAndFeatures(model, feature_tap) if feature_tap else model
        start = time.perf_counter()
        example = torch.zeros(2, *input_shape)
        with torch.no_grad():
            ov_model = ov.convert_model(graph, example_input=example, input=[ov.PartialShape([-1, *input_shape])])
        self.calibration_clips = 0
        if precision == "int8":
            assert calibration is not None
            ov_model = _quantize_int8(ov_model, calibration)
            self.calibration_clips = len(calibration)
        from edgekd.engines.openvino_engine import compile_config, ir_precision

        self.ir_precision = ir_precision(ov_model)  # "int8" when NNCF inserted quantizers
        self.compiled = core.compile_model(ov_model, "CPU", compile_config(threads or torch.get_num_threads(), hint))
        self.convert_s = time.perf_counter() - start
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if got != hint:
            raise RuntimeError(f"OpenVINO compiled the teacher with inference precision {got!r}, requested {hint!r}")
        self.precision = precision
        self.feature_tap = feature_tap
        self._request = self.compiled.create_infer_request()
        self.feature_dim = None if not feature_tap else int(self(torch.zeros(1, *input_shape)).features.shape[1])  # type: ignore[union-attr]

    def __call__(self, x: torch.Tensor) -> TeacherOutput:
        batch = np.ascontiguousarray(x.detach().float().contiguous().numpy())
        self._request.infer([batch])
        logits = torch.from_numpy(self._request.get_output_tensor(0).data.copy())
        features = None
        if self.feature_tap:
            features = torch.from_numpy(self._request.get_output_tensor(1).data.copy()).flatten(1)
        return TeacherOutput(logits, features)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openvino", "precision": self.precision, "ir_precision": self.ir_precision,
                "calibration_clips": self.calibration_clips,
                "feature_tap": self.feature_tap,
                "feature_dim": self.feature_dim, "convert_s": round(self.convert_s, 2),
                "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS"))}


def _quantize_int8(ov_model: Any, calibration: np.ndarray) -> Any:
    """NNCF post-training INT8 of the converted teacher, the engines stage's settings (PERFORMANCE
    preset, CPU target, classifier head kept f32), on clips of the training split. Why: a fill
    epoch of the teacher-output cache pays one teacher forward per clip, and INT8 on this CPU's
    AMX halves the bf16 teacher's time (quickstart bench: C3D 19.9 ms vs 39.4 ms per clip)."""
    from edgekd.engines.openvino_engine import quantize_int8

    clips = [np.ascontiguousarray(c[None], dtype=np.float32) for c in calibration]
    return quantize_int8(ov_model, clips, what="the teacher")[0]


def make_teacher(backend: str, model: nn.Module, *, input_shape: tuple[int, ...], feature_tap: str | None,
                 precision: str, channels_last: bool, device: torch.device | None = None,
                 calibration: np.ndarray | None = None) -> Teacher:
    """``backend`` pytorch | openvino. ``precision`` is the training precision (fp32 | bf16); the
    OpenVINO teacher maps it to the matching inference hint (f32 | bf16) so both backends compute
    at the precision the student trains at. ``openvino_int8`` quantizes the teacher with NNCF on
    ``calibration`` (training-split clips): the cheapest teacher, but its outputs differ from the
    trained teacher's by the quantization error (the bench's ``agree_fp32`` column measures it)."""
    if backend == "pytorch":
        return TorchTeacher(model, input_shape=input_shape, feature_tap=feature_tap, precision=precision,
                            channels_last=channels_last, device=device)
    if backend == "openvino":
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        return OpenVinoTeacher(model, input_shape=input_shape, feature_tap=feature_tap, precision=hint)
    if backend == "openvino_int8":
        return OpenVinoTeacher(model, input_shape=input_shape, feature_tap=feature_tap, precision="int8",
                               calibration=calibration)
    raise ValueError(f"unknown teacher backend {backend!r} (pytorch, openvino, openvino_int8)")
