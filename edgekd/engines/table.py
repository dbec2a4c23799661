"""The backend table: every inference engine edgekd builds, benchmarks or ships, keyed by
(backend, precision) and declared once.

The engines stage builds the rows a recipe lists in ``engines.build``, the bench stage opens the
rows of ``bench.engines``, ``edgekd pack`` ships the rows that name a bundle target, ``edgekd
doctor`` asks each row whether it can run here, and recipe validation checks names against it.
Streaming rows (``stream_of``) hold a model's per-frame step graph instead of its clip graph; their
loaders still take clips (streamed frame by frame), and the bench times them per frame against
their clip row; a bundle ships its target's streaming row beside the clip model.
Adding a backend or a precision is one :class:`EngineRow` here plus its builder and loader
(``edgekd/engines/rows.py``, or a module of its own); nothing else lists engines.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["ENGINES", "ENGINE_NAMES", "EngineRow", "bundle_rows", "bundle_stream_rows", "engine_name_errors", "get_engine"]


@dataclass(frozen=True)
class EngineRow:
    """One engine: where its file is, how it is built and opened, and what it is compared against."""

    name: str  # what recipes, reports and bundles call it: <backend>_<precision>[_<variant>]
    backend: str  # pytorch | onnxruntime | openvino | tensorrt
    precision: str  # fp32 | bf16 | fp16 | int8
    artifact: str  # its file, relative to the run directory; {model} is the trained model (teacher, ...)
    load: str  # "module:function(path, *, threads, name) -> Engine"
    peak: str  # the GEMM peak its efficiency is measured against (fp32 | bf16 | fp16 | int8)
    build: str | None = None  # "module:function(BuildContext) -> record"; None: made by another stage or row
    needs: tuple[str, ...] = ()  # rows whose artifacts its build (or, without a build, its load) reads
    edge: bool = False  # built only for engines.edge_models (the deployable students)
    bundle: str | None = None  # the `edgekd pack` target that ships it (cpu | jetson)
    available: str | None = None  # "module:function() -> (ok, reason)": can it run on this machine?
    summary: str = ""
    # a streaming row: its artifact is the per-frame step graph of a model that streams (the online
    # TSM), run frame by frame with the state carried; names the clip row it is timed against
    stream_of: str | None = None

    def path(self, run_dir: Path, model: str) -> Path:
        return run_dir / self.artifact.format(model=model)

    def status(self) -> tuple[bool, str]:
        """``(True, "")`` where this row can run here, else ``(False, why)``; never raises."""
        if self.available is None:
            return True, ""
        try:
            return _resolve(self.available)()
        except Exception as exc:  # a broken install is reported, not raised
            return False, f"{type(exc).__name__}: {exc}"

    def builder(self) -> Callable[..., dict[str, Any]] | None:
        return None if self.build is None else _resolve(self.build)

    def loader(self) -> Callable[..., Any]:
        return _resolve(self.load)


def _resolve(ref: str) -> Any:
    """``"module:function"`` -> the function, imported only when used (OpenVINO, NNCF and TensorRT
    are slow or absent imports; reading the table must stay cheap)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_R = "edgekd.engines.rows:"
_IR = "engines/{model}/%s/model.xml"
_ONNX = "engines/{model}/%s/model.onnx"
_PLAN = "engines/{model}/%s/model.plan"

ENGINES: tuple[EngineRow, ...] = (
    EngineRow("pytorch_fp32", "pytorch", "fp32", "{model}/ckpt.pt", _R + "load_pytorch", "fp32",
              available=_R + "pytorch_status", summary="PyTorch eager, strict fp32: the reference every other row is compared with"),
    EngineRow("onnxruntime_fp32", "onnxruntime", "fp32", "export/{model}.onnx", _R + "load_onnxruntime", "fp32",
              available=_R + "onnxruntime_status", summary="the exported, simplified ONNX in ONNX Runtime's CPU provider"),
    EngineRow("openvino_fp32", "openvino", "fp32", _IR % "openvino_fp32", _R + "load_openvino_f32", "fp32",
              build=_R + "build_openvino_fp32", bundle="cpu", available=_R + "openvino_status",
              summary="OpenVINO IR, inference precision forced to f32"),
    EngineRow("openvino_bf16", "openvino", "bf16", _IR % "openvino_fp32", _R + "load_openvino_bf16", "bf16",
              needs=("openvino_fp32",), available=_R + "openvino_bf16_status",
              summary="the FP32 IR with inference precision bf16 (CPUs with AVX512-BF16 or AMX)"),
    EngineRow("openvino_int8", "openvino", "int8", _IR % "openvino_int8", _R + "load_openvino_f32", "int8",
              build=_R + "build_openvino_int8", bundle="cpu", available=_R + "openvino_int8_status",
              summary="NNCF post-training INT8 IR (classifier head kept in float)"),
    EngineRow("onnxruntime_int8", "onnxruntime", "int8", _ONNX % "onnxruntime_int8", _R + "load_onnxruntime", "int8",
              build=_R + "build_onnx_int8_qdq", edge=True, available=_R + "onnxruntime_status",
              summary="symmetric Q/DQ INT8 ONNX (what TensorRT INT8 builds from), checked on the test split"),
    EngineRow("onnxruntime_fp16", "onnxruntime", "fp16", _ONNX % "onnxruntime_fp16", _R + "load_onnxruntime", "fp16",
              build=_R + "build_onnx_fp16", edge=True, available=_R + "onnxruntime_fp16_status",
              summary="FP16 ONNX, FP32 inputs/outputs, softmax and reductions FP32 (what TensorRT >= 10 builds FP16 "
                      "from, strongly typed), checked against the FP32 ONNX"),
    EngineRow("onnxruntime_fp32_stream", "onnxruntime", "fp32", "export/{model}_step.onnx", _R + "load_onnxruntime_stream",
              "fp32", bundle="jetson", available=_R + "onnxruntime_status", stream_of="onnxruntime_fp32",
              summary="the exported per-frame step graph (models that stream: the online TSM) in ONNX Runtime, "
                      "state carried between frames"),
    EngineRow("openvino_fp32_stream", "openvino", "fp32", _IR % "openvino_fp32_stream", _R + "load_openvino_stream",
              "fp32", build=_R + "build_openvino_fp32_stream", bundle="cpu", available=_R + "openvino_status",
              stream_of="openvino_fp32", summary="OpenVINO IR of the per-frame step graph, f32, compiled with a static "
                                                "batch, state carried between frames"),
    EngineRow("openvino_int8_stream", "openvino", "int8", _IR % "openvino_int8_stream", _R + "load_openvino_int8_stream",
              "int8", build=_R + "build_openvino_int8_stream", bundle="cpu", available=_R + "openvino_int8_status",
              stream_of="openvino_int8", summary="NNCF post-training INT8 IR of the per-frame step graph, calibrated "
                                                "on frames and carried state of streamed training clips"),
    EngineRow("tensorrt_fp32", "tensorrt", "fp32", _PLAN % "tensorrt_fp32", _R + "load_tensorrt", "fp32",
              build=_R + "build_tensorrt", edge=True, bundle="jetson", available=_R + "tensorrt_row_status",
              summary="TensorRT plan from the FP32 ONNX"),
    EngineRow("tensorrt_fp16", "tensorrt", "fp16", _PLAN % "tensorrt_fp16", _R + "load_tensorrt", "fp16",
              build=_R + "build_tensorrt", needs=("onnxruntime_fp16",), edge=True, bundle="jetson",
              available=_R + "tensorrt_row_status",
              summary="TensorRT FP16 plan: strongly typed from the FP16 ONNX (TensorRT 10.x, 11.x), "
                      "BuilderFlag.FP16 on the FP32 ONNX (8.x)"),
    EngineRow("tensorrt_int8_qdq", "tensorrt", "int8", _PLAN % "tensorrt_int8_qdq", _R + "load_tensorrt", "int8",
              build=_R + "build_tensorrt", needs=("onnxruntime_int8",), edge=True, bundle="jetson",
              available=_R + "tensorrt_row_status", summary="TensorRT plan from the Q/DQ INT8 ONNX (explicit quantization)"),
    EngineRow("tensorrt_int8_calib", "tensorrt", "int8", _PLAN % "tensorrt_int8_calib", _R + "load_tensorrt", "int8",
              build=_R + "build_tensorrt", edge=True, available=_R + "tensorrt_calib_status",
              summary="TensorRT implicit INT8 with an entropy calibrator (8.x; 10.x deprecated; removed in 11.x)"),
)

_BY_NAME: Mapping[str, EngineRow] = MappingProxyType({r.name: r for r in ENGINES})
ENGINE_NAMES: tuple[str, ...] = tuple(r.name for r in ENGINES)
# names of earlier versions, and what to write now
_RENAMED = {"tensorrt": "one row per precision: tensorrt_fp16, tensorrt_int8_qdq, tensorrt_fp32, tensorrt_int8_calib",
            "onnx_int8_qdq": "onnxruntime_int8"}


def get_engine(name: str) -> EngineRow:
    """The row called ``name``; an unknown name gets the closest row and the full list."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(_unknown(name)) from None


def _unknown(name: str) -> str:
    if name in _RENAMED:
        return f"engine {name!r} is now {_RENAMED[name]}"
    close = difflib.get_close_matches(name, ENGINE_NAMES, n=1)
    hint = f", did you mean {close[0]!r}?" if close else f" (engines: {', '.join(ENGINE_NAMES)})"
    return f"unknown engine {name!r}{hint}"


def engine_name_errors(path: str, names: tuple[str, ...], *, buildable: bool = False) -> list[str]:
    """Recipe errors for a list of engine names (``buildable``: each must be made by the engines
    stage, or be the same file another listed row makes)."""
    errs = []
    for i, name in enumerate(names):
        if name not in _BY_NAME:
            errs.append(f"{path}[{i}]: {_unknown(name)}")
        elif buildable and _BY_NAME[name].build is None:
            errs.append(f"{path}[{i}]: {name!r} is not built by the engines stage "
                        f"({_BY_NAME[name].summary}); list it in bench.engines instead")
    return errs


def bundle_rows(target: str) -> dict[str, EngineRow]:
    """``{precision: row}`` of the clip models ``edgekd pack --target target`` can ship."""
    return {r.precision: r for r in ENGINES if r.bundle == target and r.stream_of is None}


def bundle_stream_rows(target: str) -> dict[str, EngineRow]:
    """``{precision: row}`` of the per-frame step models ``edgekd pack --target target`` can ship
    beside the clip model (the bundle's precision when built, else its FP32 one)."""
    return {r.precision: r for r in ENGINES if r.bundle == target and r.stream_of is not None}


def _check_table() -> None:
    seen: set[str] = set()
    for r in ENGINES:
        if r.name in seen:
            raise AssertionError(f"engine {r.name!r} is declared twice")
        for need in r.needs:
            if need not in seen:
                raise AssertionError(f"engine {r.name!r}: {need!r} must be declared before it")
        if r.stream_of is not None and (r.stream_of not in seen or _BY_NAME[r.stream_of].backend != r.backend):
            raise AssertionError(f"engine {r.name!r}: stream_of {r.stream_of!r} must be an earlier row of its backend")
        seen.add(r.name)


_check_table()
