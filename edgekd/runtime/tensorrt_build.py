"""Build TensorRT plans from ONNX with the Python API (torch-free: runs on the Jetson itself).

Which TensorRT is installed is read from the module itself, by what its Python API offers
(:func:`detect_features`: does ``BuilderFlag.FP16`` exist? ``STRONGLY_TYPED``? the calibrator?),
not from its version number, and :func:`build_plan` turns that into flags and the ONNX to build:

* ``fp32``: the FP32 ONNX, no precision flags.
* ``fp16``: where strongly typed networks exist (10.x: the ``STRONGLY_TYPED`` network flag; 11.x:
  always, its weak-typing API is gone), the FP16 ONNX (``edgekd.engines.fp16``: FP32 inputs and
  outputs, softmax and reductions kept FP32), built strongly typed so every layer runs in the type
  that file gives it; where they do not (8.x, JetPack 4/5), the FP32 ONNX with ``BuilderFlag.FP16``.
* ``int8_qdq``: the Q/DQ ONNX (explicit quantization); strongly typed where possible, so the Q/DQ
  nodes alone decide what runs in INT8; on 8.x parsed normally with ``BuilderFlag.INT8``.
* ``int8_calib``: implicit INT8 with ``IInt8EntropyCalibrator2`` and a calibration cache, only
  where the installed TensorRT still has the calibrator, ``IBuilderConfig.int8_calibrator`` and
  ``BuilderFlag.INT8`` (8.x; 10.x, deprecated since 10.1; 11.x removed all three).

``version_compatible`` adds ``BuilderFlag.VERSION_COMPATIBLE`` (8.6+): the plan carries its own
lean runtime and also loads on later TensorRT versions (a 10.x plan on an 11.x runtime), for fleets
that upgrade runtimes before rebuilding; such plans can be slower than plans built for one version.

Every build uses an optimisation profile for a dynamic batch (min/opt/max), a workspace limit and
a timing cache that is read before and written after the build (named per TensorRT version and
GPU, because caches do not transfer). The plan is a plain TensorRT plan; a sidecar JSON beside it
records TensorRT/CUDA versions, GPU name and compute capability, input spec, labels, the sha256 of
the ONNX it was built from, how the precision was obtained (``route``) and whether the network was
strongly typed, which :mod:`tensorrt_runner` checks on load.

Command line (inside a bundle: ``python -m edgekd_runtime.tensorrt_build ...``)::

    python -m edgekd.runtime.tensorrt_build model.onnx --fp16-onnx model_fp16.onnx --precision fp16 \\
        --out engines/model_fp16.plan
    python -m edgekd.runtime.tensorrt_build model.onnx --fp16-onnx model_fp16.onnx --precision fp16 \\
        --out engines/model_fp16.plan --trtexec-flags    # prints the ONNX and trtexec flags instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .bundle import sha256_file
from .tensorrt_runner import CudaDevice, api_level

__all__ = [
    "PRECISIONS",
    "BuildOptions",
    "BuildPlan",
    "CalibrationBatchStream",
    "CalibrationCache",
    "TensorRTFeatureUnavailable",
    "TensorRTFeatures",
    "build_engine",
    "build_plan",
    "capabilities",
    "describe_plan",
    "detect_features",
    "has_entropy_calibrator",
    "make_entropy_calibrator",
    "make_sidecar",
    "select_source",
    "sidecar_for_plan",
    "tensorrt_version_code",
    "timing_cache_path",
    "trtexec_flags",
]

PRECISIONS = ("fp32", "fp16", "int8_qdq", "int8_calib")


class TensorRTFeatureUnavailable(RuntimeError):
    """The installed TensorRT lacks what the requested precision needs (e.g. implicit INT8 on 10.x)."""


# ----------------------------------------------------------------------------- calibration data


class CalibrationBatchStream:
    """Fixed-size, C-contiguous float32 batches of calibration clips, in the given order.

    TensorRT's calibrator asks for exactly ``get_batch_size()`` clips each time, so a remainder
    smaller than one batch is dropped (and reported in :attr:`dropped`) rather than padded with
    copies that would bias the activation histograms. Each ``iter()`` restarts from the first clip.
    """

    def __init__(self, clips: np.ndarray, batch_size: int) -> None:
        if not isinstance(clips, np.ndarray) or clips.ndim != 5:
            raise ValueError(f"calibration clips must be an (N, C, T, H, W) array, got {getattr(clips, 'shape', type(clips))}")
        if clips.dtype != np.float32:
            raise ValueError(f"calibration clips must be float32 (normalised), got {clips.dtype}")
        if batch_size < 1:
            raise ValueError(f"calibration batch_size must be >= 1, got {batch_size}")
        if len(clips) < batch_size:
            raise ValueError(f"{len(clips)} calibration clips are fewer than one batch of {batch_size}")
        self.clips = clips
        self.batch_size = batch_size
        self.num_batches = len(clips) // batch_size
        self.dropped = len(clips) - self.num_batches * batch_size

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return (self.batch_size, *self.clips.shape[1:])

    @property
    def batch_nbytes(self) -> int:
        return int(np.prod(self.batch_shape)) * 4

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in range(self.num_batches):
            yield np.ascontiguousarray(self.clips[b * self.batch_size : (b + 1) * self.batch_size], dtype=np.float32)

    def __len__(self) -> int:
        return self.num_batches


class CalibrationCache:
    """The calibrator's cache file: read when valid for this TensorRT, written atomically.

    TensorRT writes a text header such as ``TRT-8502-EntropyCalibration2``; a cache from another
    TensorRT version (or another calibrator) is ignored so it is recomputed, not misapplied.
    """

    def __init__(self, path: str | Path, tensorrt_version: str) -> None:
        self.path = Path(path)
        self.expected_header = f"TRT-{tensorrt_version_code(tensorrt_version)}-EntropyCalibration2"

    def read(self) -> bytes | None:
        if not self.path.is_file():
            return None
        data = self.path.read_bytes()
        if not data:
            return None
        header = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
        if header != self.expected_header:
            return None
        return data

    def write(self, data: bytes) -> None:
        _atomic_write_bytes(self.path, bytes(data))


def tensorrt_version_code(version: str) -> int:
    """``NV_TENSORRT_VERSION`` as TensorRT writes it into calibration-cache headers.

    8.x: ``major*1000 + minor*100 + patch`` (8.5.2 -> 8502); 10.x: ``major*10000 + minor*100 + patch``
    (10.3.0 -> 100300), the formula changed when the major version reached two digits.
    """
    major, minor, patch = api_level(version).version
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def has_entropy_calibrator(trt: ModuleType) -> bool:
    """Whether implicit INT8 calibration is still available in this TensorRT module."""
    return hasattr(trt, "IInt8EntropyCalibrator2")


def make_entropy_calibrator(trt: ModuleType, stream: CalibrationBatchStream, cache: CalibrationCache,
                            device: Any) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``stream`` through one device buffer.

    The class is built here because its base class exists only once TensorRT is imported (and only
    on versions that still have it). ``device`` needs ``malloc(nbytes) -> int`` and ``htod(ptr, array)``.
    """
    if not has_entropy_calibrator(trt):
        raise TensorRTFeatureUnavailable(
            f"TensorRT {getattr(trt, '__version__', '?')} has no IInt8EntropyCalibrator2: use int8_qdq (explicit Q/DQ)"
        )

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(stream)
            self._buffer = device.malloc(stream.batch_nbytes)
            self.batches_served = 0

        def get_batch_size(self) -> int:
            return stream.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None  # tells TensorRT calibration data is exhausted
            device.htod(self._buffer, batch)
            self.batches_served += 1
            return [self._buffer] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return cache.read()

        def write_calibration_cache(self, data: Any) -> None:
            cache.write(bytes(data))

    return EntropyCalibrator()


# ----------------------------------------------------------------------------- build plan (pure)


@dataclass(frozen=True)
class TensorRTFeatures:
    """What the installed TensorRT's Python API offers, as far as building edgekd's plans goes.

    Read by :func:`detect_features` from the module (``hasattr``), because what decides a build is
    whether an API exists, and the version number says that only for releases we know of. The one
    use of the version: ``EXPLICIT_BATCH`` is passed only before 10.0, where it is required (10.x
    keeps it as a deprecated no-op, 11.x removed it).
    """

    version: str
    explicit_batch_flag: bool  # pass NetworkDefinitionCreationFlag.EXPLICIT_BATCH (8.x)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists (10.x opt-in; 11.x deprecated no-op)
    fp16_flag: bool  # BuilderFlag.FP16: weak typing (8.x, 10.x; removed in 11.x)
    int8_flag: bool  # BuilderFlag.INT8 (8.x, 10.x; removed in 11.x)
    calibration_missing: tuple[str, ...]  # what implicit INT8 calibration needs and this TensorRT lacks
    version_compatible_flag: bool  # BuilderFlag.VERSION_COMPATIBLE (8.6+)

    @property
    def always_strongly_typed(self) -> bool:
        """No weak-typing precision flag is left (11.x): every network is strongly typed."""
        return not (self.fp16_flag or self.int8_flag)

    @property
    def strongly_typed(self) -> bool:
        return self.always_strongly_typed or self.strongly_typed_flag

    @property
    def calibrator(self) -> bool:
        return not self.calibration_missing

    @property
    def line(self) -> str:
        """The release line, e.g. ``"11.x"`` (JetPack 5 ships the 8.x line, ``pip install tensorrt`` 11.x)."""
        return f"{api_level(self.version).version[0]}.x"


def detect_features(trt: ModuleType) -> TensorRTFeatures:
    """:class:`TensorRTFeatures` of an imported ``tensorrt`` module (no GPU needed)."""
    version = str(trt.__version__)
    network_flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    builder_flags = getattr(trt, "BuilderFlag", None)
    needs = (("IInt8EntropyCalibrator2", has_entropy_calibrator(trt)),
             ("IBuilderConfig.int8_calibrator", hasattr(getattr(trt, "IBuilderConfig", None), "int8_calibrator")),
             ("BuilderFlag.INT8", hasattr(builder_flags, "INT8")))
    return TensorRTFeatures(
        version=version,
        explicit_batch_flag=hasattr(network_flags, "EXPLICIT_BATCH") and api_level(version).explicit_batch_flag,
        strongly_typed_flag=hasattr(network_flags, "STRONGLY_TYPED"),
        fp16_flag=hasattr(builder_flags, "FP16"),
        int8_flag=hasattr(builder_flags, "INT8"),
        calibration_missing=tuple(name for name, present in needs if not present),
        version_compatible_flag=hasattr(builder_flags, "VERSION_COMPATIBLE"),
    )


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max
    workspace_mb: int = 1024
    timing_cache_dir: str | None = None
    calibration_batch_size: int = 8
    calibration_cache: str | None = None
    version_compatible: bool = False  # BuilderFlag.VERSION_COMPATIBLE: the plan also loads on later TensorRT

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {self.precision!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch profile must satisfy 1 <= min <= opt <= max, got {list(self.batch)}")
        if self.workspace_mb < 1:
            raise ValueError(f"workspace_mb must be >= 1, got {self.workspace_mb}")


# which ONNX a build reads: the FP32 export, its FP16 copy, or the Q/DQ INT8 model given as the ONNX
SOURCES = ("fp32", "fp16", "qdq")
# how the precision is obtained
ROUTES = ("fp32", "builder_flag", "strongly_typed", "calibrator")


@dataclass(frozen=True)
class BuildPlan:
    """Which flags and which ONNX a build uses, decided from the precision and the TensorRT features alone."""

    precision: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    calibrator: bool
    route: str  # one of ROUTES
    source: str  # one of SOURCES
    strongly_typed: bool
    notes: tuple[str, ...] = field(default=())


def build_plan(precision: str, features: TensorRTFeatures, *, version_compatible: bool = False) -> BuildPlan:
    """Network-creation flags, builder flags and source ONNX for ``precision`` on this TensorRT.

    Raises :class:`TensorRTFeatureUnavailable` where the TensorRT lacks what ``precision`` (or
    ``version_compatible``) needs, naming the version and the alternative.
    """
    v = features.version
    net = ("EXPLICIT_BATCH",) if features.explicit_batch_flag else ()
    typed = (*net, "STRONGLY_TYPED") if not features.always_strongly_typed else net  # 11.x: always; flag is a no-op
    extra: tuple[str, ...] = ()
    if version_compatible:
        if not features.version_compatible_flag:
            raise TensorRTFeatureUnavailable(f"TensorRT {v} has no BuilderFlag.VERSION_COMPATIBLE (added in 8.6): "
                                             "build without version_compatible")
        extra = ("VERSION_COMPATIBLE",)
    always = ("strongly typed: TensorRT >= 11 has no weak typing",) if features.always_strongly_typed else ()
    if precision == "fp32":
        return BuildPlan(precision, net, extra, False, "fp32", "fp32", features.always_strongly_typed, always)
    if precision == "fp16":
        if features.strongly_typed:
            return BuildPlan(precision, typed, extra, False, "strongly_typed", "fp16", True,
                             (*always, ("strongly typed from the FP16 ONNX: every layer runs in the type that "
                                        "file gives it (softmax and reductions FP32)")))
        if features.fp16_flag:
            return BuildPlan(precision, net, ("FP16", *extra), False, "builder_flag", "fp32", False,
                             (("weak typing: BuilderFlag.FP16 on the FP32 ONNX (no STRONGLY_TYPED networks here); "
                               "TensorRT picks FP16 or FP32 per layer"),))
        raise TensorRTFeatureUnavailable(f"TensorRT {v} has neither STRONGLY_TYPED networks nor BuilderFlag.FP16: "
                                         "it cannot build fp16")
    if precision == "int8_qdq":
        if features.strongly_typed:
            return BuildPlan(precision, typed, extra, False, "strongly_typed", "qdq", True,
                             (*always, "strongly typed: the Q/DQ nodes set INT8, other layers keep the ONNX types"))
        if features.int8_flag:
            return BuildPlan(precision, net, ("INT8", *extra), False, "builder_flag", "qdq", False,
                             (("explicit quantization via the Q/DQ nodes with BuilderFlag.INT8 (no STRONGLY_TYPED "
                               "networks here)"),))
        raise TensorRTFeatureUnavailable(f"TensorRT {v} has neither STRONGLY_TYPED networks nor BuilderFlag.INT8: "
                                         "it cannot build int8_qdq")
    if precision == "int8_calib":
        if not features.calibrator:
            removed = " (TensorRT 11 removed implicit INT8)" if features.always_strongly_typed else ""
            raise TensorRTFeatureUnavailable(
                f"TensorRT {v} cannot calibrate implicit INT8: it has no {', '.join(features.calibration_missing)}"
                f"{removed}; build int8_qdq from the Q/DQ ONNX instead (engines row tensorrt_int8_qdq, "
                "`edgekd pack --target jetson --precision int8`)"
            )
        notes = ("implicit INT8 calibration is deprecated since TensorRT 10.1",) if (
            api_level(v).implicit_int8_deprecated) else ()
        return BuildPlan(precision, net, ("INT8", *extra), True, "calibrator", "fp32", False, notes)
    raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {precision!r}")


_ROUTE_WORDS = {"fp32": "no precision flags", "builder_flag": "weak typing, BuilderFlag.{flag}",
                "strongly_typed": "strongly typed{how}", "calibrator": "BuilderFlag.INT8 + IInt8EntropyCalibrator2"}
_SOURCE_WORDS = {"fp32": "the FP32 ONNX", "fp16": "the FP16 ONNX", "qdq": "the Q/DQ INT8 ONNX"}


def describe_plan(plan: BuildPlan) -> str:
    """One line for logs and reports, e.g. ``"the FP16 ONNX, strongly typed (STRONGLY_TYPED network)"``."""
    how = " (STRONGLY_TYPED network)" if "STRONGLY_TYPED" in plan.network_flags else " (always, TensorRT >= 11)"
    flag = next((f for f in plan.builder_flags if f in ("FP16", "INT8")), "")
    words = _ROUTE_WORDS[plan.route].format(flag=flag, how=how)
    vc = ", version compatible" if "VERSION_COMPATIBLE" in plan.builder_flags else ""
    return f"{_SOURCE_WORDS[plan.source]}, {words}{vc}"


def capabilities(features: TensorRTFeatures) -> dict[str, str]:
    """What this TensorRT builds, per precision, in words (``edgekd doctor``, the engines stage, build logs)."""
    out = {"line": f"{features.line} (TensorRT {features.version})",
           "strong_typing": ("always (weak typing removed)" if features.always_strongly_typed else
                             "opt-in (STRONGLY_TYPED network flag)" if features.strongly_typed_flag else
                             "no (weak typing only)"),
           "version_compatible": "yes" if features.version_compatible_flag else "no (BuilderFlag.VERSION_COMPATIBLE absent)"}
    for precision in PRECISIONS:
        try:
            out[precision] = describe_plan(build_plan(precision, features))
        except TensorRTFeatureUnavailable as exc:
            out[precision] = f"no: {exc}"
    return out


_TRTEXEC_FLAGS = {"STRONGLY_TYPED": "--stronglyTyped", "FP16": "--fp16", "INT8": "--int8",
                  "VERSION_COMPATIBLE": "--versionCompatible"}


def trtexec_flags(plan: BuildPlan) -> tuple[str, ...]:
    """trtexec's precision and typing flags for ``plan``: 8.x ``--fp16``/``--int8``, 10.x
    ``--stronglyTyped``, 11.x none (strongly typed is its only mode, ``--stronglyTyped`` unneeded)."""
    if plan.calibrator:
        raise TensorRTFeatureUnavailable("the trtexec path cannot run edgekd's calibrator: build int8_calib with the "
                                         "Python builder (or int8_qdq with trtexec)")
    # trtexec parses ONNX in explicit-batch mode on every version: EXPLICIT_BATCH has no trtexec flag
    return tuple(_TRTEXEC_FLAGS[f] for f in (*plan.network_flags, *plan.builder_flags) if f != "EXPLICIT_BATCH")


def select_source(plan: BuildPlan, onnx_path: str | Path, fp16_onnx: str | Path | None) -> Path:
    """The ONNX ``plan`` builds: ``fp16_onnx`` for a strongly typed fp16 build, else ``onnx_path``."""
    if plan.source != "fp16":
        return Path(onnx_path)
    if fp16_onnx is None:
        raise ValueError(f"{plan.precision} builds strongly typed here ({describe_plan(plan)}): give the FP16 ONNX "
                         "(--fp16-onnx; the engines stage's onnxruntime_fp16 row writes it)")
    return Path(fp16_onnx)


def timing_cache_path(cache_dir: str | Path, tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
    """One timing cache per TensorRT version and GPU: tactic timings do not transfer between them."""
    gpu = "".join(ch if ch.isalnum() else "-" for ch in gpu_name).strip("-").lower()
    return Path(cache_dir) / f"timing-trt{tensorrt_version}-sm{compute_capability}-{gpu}.cache"


def make_sidecar(*, onnx_path: str | Path, precision: str, plan: BuildPlan, options: BuildOptions,
                 tensorrt_version: str, cuda_version: str, gpu_name: str, compute_capability: str,
                 input_name: str, input_shape: Sequence[int], input_spec: dict[str, Any] | None,
                 labels: Sequence[str] | None, build_seconds: float | None = None,
                 calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON written beside a plan: everything needed to decide whether it is valid here."""
    lo, opt, hi = options.batch
    return {
        "format": "edgekd-tensorrt-engine-v1",
        "backend": "tensorrt",
        "precision": precision,
        "tensorrt_version": tensorrt_version,
        "cuda_version": cuda_version,
        "gpu": {"name": gpu_name, "compute_capability": compute_capability},
        "source_onnx": str(onnx_path),
        "source_onnx_sha256": sha256_file(onnx_path),
        "input": {"name": input_name, "shape": list(input_shape), "dtype": "float32"},
        "input_spec": input_spec,
        "labels": list(labels) if labels is not None else None,
        "batch": {"min": lo, "opt": opt, "max": hi},
        "workspace_mb": options.workspace_mb,
        "network_flags": list(plan.network_flags),
        "builder_flags": list(plan.builder_flags),
        "route": plan.route,
        "route_description": describe_plan(plan),
        "strongly_typed": plan.strongly_typed,
        "version_compatible": "VERSION_COMPATIBLE" in plan.builder_flags,
        "calibration": calibration,
        "notes": list(plan.notes),
        "build_seconds": None if build_seconds is None else round(build_seconds, 2),
        "host": platform.node(),
    }


# ----------------------------------------------------------------------------- the build


def build_engine(onnx_path: str | Path, plan_path: str | Path, options: BuildOptions, *,
                 fp16_onnx: str | Path | None = None, calibration_clips: np.ndarray | None = None,
                 input_spec: dict[str, Any] | None = None, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Build ``plan_path`` (+ ``.json`` sidecar); returns the sidecar.

    ``onnx_path`` is the FP32 ONNX (the Q/DQ ONNX for ``int8_qdq``); ``fp16_onnx`` its FP16 copy,
    which an ``fp16`` build reads where this TensorRT builds strongly typed (:func:`build_plan`).
    Needs TensorRT and a CUDA GPU (raises ImportError/RuntimeError saying so otherwise).
    """
    import tensorrt as trt

    plan_path = Path(plan_path)
    features = detect_features(trt)
    plan = build_plan(options.precision, features, version_compatible=options.version_compatible)
    source = select_source(plan, onnx_path, fp16_onnx)
    if not source.is_file():
        raise FileNotFoundError(f"ONNX model not found: {source}")
    api = api_level(trt.__version__)
    device = CudaDevice(0)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _parse(trt, builder, logger, plan, source)
    layers = _check_network_types(trt, network, plan, source)
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    static = shape[1:]
    if any(d < 0 for d in static):
        raise ValueError(f"{source}: only the batch axis may be dynamic, input shape is {shape}")
    lo, opt, hi = options.batch
    config = builder.create_builder_config()
    if api.memory_pool_api:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    else:
        config.max_workspace_size = options.workspace_mb << 20
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (lo, *static), (opt, *static), (hi, *static))
    config.add_optimization_profile(profile)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    calibration = _attach_calibrator(trt, builder, config, plan, options, inp.name, static, calibration_clips,
                                     plan_path, device) if plan.calibrator else None
    cache_file = None
    if options.timing_cache_dir:
        cache_file = timing_cache_path(options.timing_cache_dir, trt.__version__, device.name, device.compute_capability)
        timing_cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {options.precision} engine from {source} (see the log above)")
    if cache_file is not None:
        _atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    sidecar = make_sidecar(onnx_path=source, precision=options.precision, plan=plan, options=options,
                           tensorrt_version=trt.__version__, cuda_version=device.cuda_version, gpu_name=device.name,
                           compute_capability=device.compute_capability, input_name=inp.name, input_shape=shape,
                           input_spec=input_spec, labels=labels, build_seconds=seconds, calibration=calibration)
    sidecar.update(network=layers, timing_cache=str(cache_file) if cache_file else None, builder="tensorrt python api")
    _atomic_write_bytes(plan_path, bytes(serialized))
    _atomic_write_bytes(plan_path.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar


def _parse(trt: ModuleType, builder: Any, logger: Any, plan: BuildPlan, source: Path) -> Any:
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {source}:\n  {errors}")
    return network


def _check_network_types(trt: ModuleType, network: Any, plan: BuildPlan, source: Path) -> dict[str, int]:
    """Layer counts of the parsed network; refuses a file that cannot give the precision asked for.

    A strongly typed build runs each layer in the type its ONNX declares, so an FP32 file built
    "fp16" would be an FP32 engine labelled fp16, and a Q/DQ-free file built "int8_qdq" an FP32 one.
    """
    half = qdq = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        qdq += layer.type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
        half += any(layer.get_output(j).dtype == trt.DataType.HALF for j in range(layer.num_outputs))
    if plan.route == "strongly_typed" and plan.precision == "fp16" and not half:
        raise ValueError(f"{source} has no FP16 layers: built strongly typed it would be an FP32 engine labelled "
                         "fp16; give the FP16 ONNX (the onnxruntime_fp16 row, --fp16-onnx)")
    if plan.precision == "int8_qdq" and not qdq:
        raise ValueError(f"{source} has no Q/DQ layers: give the Q/DQ INT8 ONNX (the onnxruntime_int8 row)")
    return {"layers": int(network.num_layers), "fp16_layers": int(half), "qdq_layers": int(qdq)}


def _attach_calibrator(trt: ModuleType, builder: Any, config: Any, plan: BuildPlan, options: BuildOptions,
                       input_name: str, static: tuple[int, ...], clips: np.ndarray | None, plan_path: Path,
                       device: CudaDevice) -> dict[str, Any]:
    if clips is None:
        raise ValueError("int8_calib needs calibration clips (an (N, C, T, H, W) float32 array)")
    stream = CalibrationBatchStream(clips, options.calibration_batch_size)
    cache = CalibrationCache(options.calibration_cache or plan_path.with_suffix(".calib"), trt.__version__)
    config.int8_calibrator = make_entropy_calibrator(trt, stream, cache, device)
    calib_profile = builder.create_optimization_profile()
    cb = (stream.batch_size, *static)
    calib_profile.set_shape(input_name, cb, cb, cb)
    config.set_calibration_profile(calib_profile)
    return {"clips": stream.num_batches * stream.batch_size, "dropped": stream.dropped,
            "batch_size": stream.batch_size, "cache": str(cache.path), "calibrator": "IInt8EntropyCalibrator2"}


def sidecar_for_plan(onnx_path: str | Path, plan_path: str | Path, options: BuildOptions, *, builder: str,
                     fp16_onnx: str | Path | None = None, input_spec: dict[str, Any] | None = None,
                     labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the sidecar of a plan built elsewhere (``trtexec``), after checking this TensorRT loads it."""
    import tensorrt as trt

    plan_path = Path(plan_path)
    api = api_level(trt.__version__)
    plan = build_plan(options.precision, detect_features(trt), version_compatible=options.version_compatible)
    source = select_source(plan, onnx_path, fp16_onnx)
    device = CudaDevice(0)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if options.version_compatible:
        runtime.engine_host_code_allowed = True  # the plan carries its lean runtime (host code); we just built it
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT {trt.__version__} cannot deserialize {plan_path}")
    if api.tensor_io_api:
        name = engine.get_tensor_name(0)
        shape = tuple(engine.get_tensor_shape(name))
    else:
        name = engine.get_binding_name(0)
        shape = tuple(engine.get_binding_shape(0))
    sidecar = make_sidecar(onnx_path=source, precision=options.precision, plan=plan, options=options,
                           tensorrt_version=trt.__version__, cuda_version=device.cuda_version, gpu_name=device.name,
                           compute_capability=device.compute_capability, input_name=name, input_shape=shape,
                           input_spec=input_spec, labels=labels)
    sidecar["builder"] = builder
    if builder == "trtexec":
        sidecar["trtexec_flags"] = list(trtexec_flags(plan))
    _atomic_write_bytes(plan_path.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write beside ``path`` and rename (this module cannot import edgekd.utils: it ships alone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build a TensorRT plan (+ sidecar JSON) from an ONNX model.")
    p.add_argument("onnx", help="the FP32 ONNX (the Q/DQ ONNX for --precision int8_qdq)")
    p.add_argument("--fp16-onnx", default=None,
                   help="the FP16 ONNX: what --precision fp16 builds where TensorRT builds strongly typed (10.x, 11.x)")
    p.add_argument("--out", required=True, help="plan file to write (the sidecar goes beside it as .json)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--batch", default="1,1,8", help="min,opt,max batch of the optimisation profile")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--timing-cache-dir", default=None)
    p.add_argument("--version-compatible", action="store_true",
                   help="BuilderFlag.VERSION_COMPATIBLE: the plan also loads on later TensorRT versions (8.6+)")
    p.add_argument("--calibration", default=None, help=".npy of (N, C, T, H, W) float32 clips (int8_calib only)")
    p.add_argument("--calibration-batch", type=int, default=8)
    p.add_argument("--preprocess", default=None, help="preprocess.json to record in the sidecar")
    p.add_argument("--labels", default=None, help="labels.json to record in the sidecar")
    p.add_argument("--sidecar-only", default=None, metavar="BUILDER",
                   help="do not build: write the sidecar of an existing --out plan made by BUILDER (e.g. trtexec)")
    p.add_argument("--trtexec-flags", action="store_true",
                   help="do not build: print the ONNX to build and trtexec's precision flags for this TensorRT")
    a = p.parse_args(argv)
    batch = tuple(int(v) for v in a.batch.split(","))
    if len(batch) != 3:
        p.error(f"--batch needs min,opt,max, got {a.batch!r}")
    options = BuildOptions(a.precision, batch, a.workspace_mb, a.timing_cache_dir, a.calibration_batch,  # type: ignore[arg-type]
                           version_compatible=a.version_compatible)
    try:
        return _run(a, options)
    except (TensorRTFeatureUnavailable, ValueError, FileNotFoundError) as exc:  # what the user can fix: one line
        p.exit(2, f"{p.prog}: error: {exc}\n")


def _run(a: argparse.Namespace, options: BuildOptions) -> int:
    import tensorrt as trt

    features = detect_features(trt)
    plan = build_plan(a.precision, features, version_compatible=a.version_compatible)
    if a.trtexec_flags:
        print(" ".join([str(select_source(plan, a.onnx, a.fp16_onnx)), *trtexec_flags(plan)]))
        return 0
    print(f"TensorRT {features.version} ({features.line} line): {a.precision} from {describe_plan(plan)}",
          file=sys.stderr)
    clips = np.load(a.calibration) if a.calibration else None
    spec = json.loads(Path(a.preprocess).read_text()) if a.preprocess else None
    labels = json.loads(Path(a.labels).read_text()) if a.labels else None
    if a.sidecar_only:
        sidecar = sidecar_for_plan(a.onnx, a.out, options, builder=a.sidecar_only, fp16_onnx=a.fp16_onnx,
                                   input_spec=spec, labels=labels)
        print(f"wrote {Path(a.out).with_suffix('.json')} for {a.out} (built by {a.sidecar_only})")
        return 0
    sidecar = build_engine(a.onnx, a.out, options, fp16_onnx=a.fp16_onnx, calibration_clips=clips, input_spec=spec,
                           labels=labels)
    print(f"built {a.out}: TensorRT {sidecar['tensorrt_version']}, {sidecar['precision']} "
          f"({sidecar['route_description']}), GPU {sidecar['gpu']['name']} "
          f"(sm {sidecar['gpu']['compute_capability']}) in {sidecar['build_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
