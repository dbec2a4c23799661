"""Build TensorRT plans from ONNX with the Python API (torch-free: runs on the Jetson itself).

Precisions (see :func:`build_plan` for the exact flags per TensorRT version):

* ``fp32`` / ``fp16``: the FP32 ONNX; ``fp16`` sets ``BuilderFlag.FP16``.
* ``int8_qdq``: the Q/DQ ONNX (explicit quantization), the current way. On TensorRT >= 10 the
  network is created ``STRONGLY_TYPED`` so the Q/DQ nodes alone decide what runs in INT8 (no
  precision flags are allowed then); on 8.x it is parsed normally with ``BuilderFlag.INT8``.
* ``int8_calib``: implicit INT8 with ``IInt8EntropyCalibrator2`` and a calibration cache, only
  where the installed TensorRT still has that class (JetPack 5's 8.5 does; 10.1 deprecated it).

Every build uses an optimisation profile for a dynamic batch (min/opt/max), a workspace limit and
a timing cache that is read before and written after the build (named per TensorRT version and
GPU, because caches do not transfer). The plan is a plain TensorRT plan; a sidecar JSON beside it
records TensorRT/CUDA versions, GPU name and compute capability, input spec, labels and the sha256
of the source ONNX, which :mod:`tensorrt_runner` checks on load.

Command line (inside a bundle: ``python -m edgekd_runtime.tensorrt_build ...``)::

    python -m edgekd.runtime.tensorrt_build model.onnx --precision fp16 --out engines/model_fp16.plan
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .bundle import sha256_file
from .tensorrt_runner import ApiLevel, CudaDevice, api_level

__all__ = [
    "PRECISIONS",
    "BuildOptions",
    "BuildPlan",
    "CalibrationBatchStream",
    "CalibrationCache",
    "TensorRTFeatureUnavailable",
    "build_engine",
    "build_plan",
    "has_entropy_calibrator",
    "make_entropy_calibrator",
    "make_sidecar",
    "sidecar_for_plan",
    "tensorrt_version_code",
    "timing_cache_path",
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
class BuildOptions:
    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 1, 8)  # min, opt, max
    workspace_mb: int = 1024
    timing_cache_dir: str | None = None
    calibration_batch_size: int = 8
    calibration_cache: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {self.precision!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch profile must satisfy 1 <= min <= opt <= max, got {list(self.batch)}")
        if self.workspace_mb < 1:
            raise ValueError(f"workspace_mb must be >= 1, got {self.workspace_mb}")


@dataclass(frozen=True)
class BuildPlan:
    """Which flags a build uses, decided from the precision and the TensorRT version alone."""

    precision: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    calibrator: bool
    notes: tuple[str, ...] = field(default=())


def build_plan(precision: str, api: ApiLevel, *, has_calibrator: bool) -> BuildPlan:
    """Network-creation and builder flags for ``precision`` on TensorRT ``api.version``.

    Raises :class:`TensorRTFeatureUnavailable` for ``int8_calib`` when the calibrator class is gone.
    """
    net = ["EXPLICIT_BATCH"] if api.explicit_batch_flag else []
    notes: list[str] = []
    if precision == "fp32":
        return BuildPlan(precision, tuple(net), (), False)
    if precision == "fp16":
        return BuildPlan(precision, tuple(net), ("FP16",), False)
    if precision == "int8_qdq":
        if api.strongly_typed:
            return BuildPlan(precision, (*net, "STRONGLY_TYPED"), (), False,
                             ("strongly typed: Q/DQ nodes set INT8, other layers keep the ONNX types",))
        return BuildPlan(precision, tuple(net), ("INT8",), False,
                         ("TensorRT < 10: explicit quantization via the Q/DQ nodes with BuilderFlag.INT8",))
    if precision == "int8_calib":
        if not has_calibrator:
            raise TensorRTFeatureUnavailable(
                f"TensorRT {'.'.join(map(str, api.version))} no longer has IInt8EntropyCalibrator2; "
                "build int8_qdq from the Q/DQ ONNX instead"
            )
        if api.implicit_int8_deprecated:
            notes.append("implicit INT8 calibration is deprecated since TensorRT 10.1")
        return BuildPlan(precision, tuple(net), ("INT8",), True, tuple(notes))
    raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {precision!r}")


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
        "calibration": calibration,
        "notes": list(plan.notes),
        "build_seconds": None if build_seconds is None else round(build_seconds, 2),
        "host": platform.node(),
    }


# ----------------------------------------------------------------------------- the build


def build_engine(onnx_path: str | Path, plan_path: str | Path, options: BuildOptions, *,
                 calibration_clips: np.ndarray | None = None, input_spec: dict[str, Any] | None = None,
                 labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Build ``plan_path`` (+ ``.json`` sidecar) from ``onnx_path``; returns the sidecar.

    Needs TensorRT and a CUDA GPU (raises ImportError/RuntimeError saying so otherwise).
    """
    import tensorrt as trt

    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    api = api_level(trt.__version__)
    plan = build_plan(options.precision, api, has_calibrator=has_entropy_calibrator(trt))
    device = CudaDevice(0)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n  {errors}")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    static = shape[1:]
    if any(d < 0 for d in static):
        raise ValueError(f"{onnx_path}: only the batch axis may be dynamic, input shape is {shape}")
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
    calibration = None
    if plan.calibrator:
        if calibration_clips is None:
            raise ValueError("int8_calib needs calibration clips (an (N, C, T, H, W) float32 array)")
        stream = CalibrationBatchStream(calibration_clips, options.calibration_batch_size)
        cache = CalibrationCache(options.calibration_cache or plan_path.with_suffix(".calib"), trt.__version__)
        config.int8_calibrator = make_entropy_calibrator(trt, stream, cache, device)
        calib_profile = builder.create_optimization_profile()
        cb = (stream.batch_size, *static)
        calib_profile.set_shape(inp.name, cb, cb, cb)
        config.set_calibration_profile(calib_profile)
        calibration = {"clips": stream.num_batches * stream.batch_size, "dropped": stream.dropped,
                       "batch_size": stream.batch_size, "cache": str(cache.path), "calibrator": "IInt8EntropyCalibrator2"}
    cache_file = None
    if options.timing_cache_dir:
        cache_file = timing_cache_path(options.timing_cache_dir, trt.__version__, device.name, device.compute_capability)
        timing_cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {options.precision} engine from {onnx_path} (see the log above)")
    if cache_file is not None:
        _atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    sidecar = make_sidecar(onnx_path=onnx_path, precision=options.precision, plan=plan, options=options,
                           tensorrt_version=trt.__version__, cuda_version=device.cuda_version, gpu_name=device.name,
                           compute_capability=device.compute_capability, input_name=inp.name, input_shape=shape,
                           input_spec=input_spec, labels=labels, build_seconds=seconds, calibration=calibration)
    sidecar["timing_cache"] = str(cache_file) if cache_file else None
    sidecar["builder"] = "tensorrt python api"
    _atomic_write_bytes(plan_path, bytes(serialized))
    _atomic_write_bytes(plan_path.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar


def sidecar_for_plan(onnx_path: str | Path, plan_path: str | Path, options: BuildOptions, *, builder: str,
                     input_spec: dict[str, Any] | None = None, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the sidecar of a plan built elsewhere (``trtexec``), after checking this TensorRT loads it."""
    import tensorrt as trt

    plan_path = Path(plan_path)
    api = api_level(trt.__version__)
    plan = build_plan(options.precision, api, has_calibrator=has_entropy_calibrator(trt))
    device = CudaDevice(0)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT {trt.__version__} cannot deserialize {plan_path}")
    if api.tensor_io_api:
        name = engine.get_tensor_name(0)
        shape = tuple(engine.get_tensor_shape(name))
    else:
        name = engine.get_binding_name(0)
        shape = tuple(engine.get_binding_shape(0))
    sidecar = make_sidecar(onnx_path=onnx_path, precision=options.precision, plan=plan, options=options,
                           tensorrt_version=trt.__version__, cuda_version=device.cuda_version, gpu_name=device.name,
                           compute_capability=device.compute_capability, input_name=name, input_shape=shape,
                           input_spec=input_spec, labels=labels)
    sidecar["builder"] = builder
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
    p.add_argument("onnx")
    p.add_argument("--out", required=True, help="plan file to write (the sidecar goes beside it as .json)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--batch", default="1,1,8", help="min,opt,max batch of the optimisation profile")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--timing-cache-dir", default=None)
    p.add_argument("--calibration", default=None, help=".npy of (N, C, T, H, W) float32 clips (int8_calib only)")
    p.add_argument("--calibration-batch", type=int, default=8)
    p.add_argument("--preprocess", default=None, help="preprocess.json to record in the sidecar")
    p.add_argument("--labels", default=None, help="labels.json to record in the sidecar")
    p.add_argument("--sidecar-only", default=None, metavar="BUILDER",
                   help="do not build: write the sidecar of an existing --out plan made by BUILDER (e.g. trtexec)")
    a = p.parse_args(argv)
    batch = tuple(int(v) for v in a.batch.split(","))
    if len(batch) != 3:
        p.error(f"--batch needs min,opt,max, got {a.batch!r}")
    options = BuildOptions(a.precision, batch, a.workspace_mb, a.timing_cache_dir, a.calibration_batch)  # type: ignore[arg-type]
    clips = np.load(a.calibration) if a.calibration else None
    spec = json.loads(Path(a.preprocess).read_text()) if a.preprocess else None
    labels = json.loads(Path(a.labels).read_text()) if a.labels else None
    if a.sidecar_only:
        sidecar = sidecar_for_plan(a.onnx, a.out, options, builder=a.sidecar_only, input_spec=spec, labels=labels)
        print(f"wrote {Path(a.out).with_suffix('.json')} for {a.out} (built by {a.sidecar_only})")
        return 0
    sidecar = build_engine(a.onnx, a.out, options, calibration_clips=clips, input_spec=spec, labels=labels)
    print(f"built {a.out}: TensorRT {sidecar['tensorrt_version']}, {sidecar['precision']}, "
          f"GPU {sidecar['gpu']['name']} (sm {sidecar['gpu']['compute_capability']}) in {sidecar['build_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
