"""TensorRT plan loading and execution without torch: TensorRT's Python API plus cuda-python.

Version gates, all decided by :func:`api_level` from the version string so tests can feed
strings instead of installing TensorRT:

* TensorRT >= 8.5 (JetPack 5 ships 8.5.2; 10.x on x86): the tensor-name API
  (``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``).
* older TensorRT (8.0-8.4, JetPack 4.6): the binding API (``num_bindings``,
  ``binding_is_input``, ``set_binding_shape``, ``execute_async_v2``).

A plan file is only valid for the TensorRT version and GPU (compute capability) that built it,
unless it was built version compatible (``BuilderFlag.VERSION_COMPATIBLE``, 8.6+): then it also
loads on later TensorRT versions (a 10.x plan on an 11.x runtime), still on the same GPU. The
sidecar JSON written beside it records all three; :func:`check_sidecar` compares them with this
machine before deserialising and raises :class:`EngineMismatch` telling the user to rebuild,
instead of TensorRT's opaque "serialization assertion" failure.

Device memory comes from cuda-python (``cuda.bindings.runtime`` since 12.6, ``cuda.cudart``
before), which ships as a plain wheel on Jetson and x86 alike; pycuda needs a compiler on the box.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ApiLevel", "CudaDevice", "EngineMismatch", "TensorRTRunner", "api_level", "check_sidecar", "parse_version"]


class EngineMismatch(RuntimeError):
    """The plan was built for another TensorRT version or GPU; it must be rebuilt on this device."""


def parse_version(version: str) -> tuple[int, int, int]:
    """``"8.5.2.2"`` -> ``(8, 5, 2)``; ``"10.3.0.post1"`` -> ``(10, 3, 0)``. Raises on nonsense."""
    parts: list[int] = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    if not parts:
        raise ValueError(f"cannot parse a TensorRT version from {version!r}")
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


@dataclass(frozen=True)
class ApiLevel:
    """What the installed TensorRT offers, derived from its version string alone."""

    version: tuple[int, int, int]

    @property
    def tensor_io_api(self) -> bool:
        """Tensor-name I/O + ``execute_async_v3`` (8.5+); else the binding API."""
        return self.version >= (8, 5, 0)

    @property
    def explicit_batch_flag(self) -> bool:
        """``EXPLICIT_BATCH`` must be passed to ``create_network`` before 10.0 (10.0 made it the only mode and deprecated the flag)."""
        return self.version < (10, 0, 0)

    @property
    def memory_pool_api(self) -> bool:
        """``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`` (8.4+); before: ``max_workspace_size``."""
        return self.version >= (8, 4, 0)

    @property
    def implicit_int8_deprecated(self) -> bool:
        """10.1 deprecated ``IInt8Calibrator`` in favour of explicit Q/DQ; later releases drop it."""
        return self.version >= (10, 1, 0)


def api_level(version: str) -> ApiLevel:
    return ApiLevel(parse_version(version))


# ----------------------------------------------------------------------------- CUDA (cuda-python)


def _cudart() -> ModuleType:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeError("cuda-python is not installed (pip install cuda-python matching the CUDA major version)")


class CudaDevice:
    """The few CUDA runtime calls a TensorRT engine needs: device info, malloc, copies, a stream."""

    def __init__(self, index: int = 0) -> None:
        self.rt = _cudart()
        self.index = index
        self._check(self.rt.cudaSetDevice(index), "cudaSetDevice")
        props = self._check(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = props.name
        self.name = (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()
        self.compute_capability = f"{props.major}.{props.minor}"
        version = self._check(self.rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
        self.cuda_version = f"{version // 1000}.{(version % 1000) // 10}"
        self.stream = self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA {what} failed: {err}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def htod(self, dst: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, array.ctypes.data, array.nbytes, kind, self.stream), "cudaMemcpyAsync H2D")
        self.synchronize()  # the host array may be freed right after: copy must be complete

    def dtoh(self, array: np.ndarray, src: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, src, array.nbytes, kind, self.stream), "cudaMemcpyAsync D2H")
        self.synchronize()

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    @property
    def stream_handle(self) -> int:
        return int(self.stream)


# ----------------------------------------------------------------------------- sidecar checks


def check_sidecar(sidecar: dict[str, Any], *, tensorrt_version: str, gpu_name: str, compute_capability: str,
                  plan_path: str | Path = "engine") -> None:
    """Raise :class:`EngineMismatch` when the plan was built with another TensorRT or GPU.

    TensorRT plans are tied to the exact TensorRT version (build number included) and to the
    GPU's compute capability; the GPU name is compared too because two boards of one compute
    capability can still differ in tactics (TensorRT warns, we refuse: timings would lie). A plan
    built version compatible loads on its own TensorRT version and later ones, never earlier.
    """
    built = sidecar.get("tensorrt_version")
    gpu = sidecar.get("gpu", {})
    problems = []
    if built != tensorrt_version:
        if not sidecar.get("version_compatible"):  # sidecars older than this field: not version compatible
            problems.append(f"TensorRT {built} (this device has {tensorrt_version})")
        elif parse_version(tensorrt_version) < parse_version(str(built)):
            problems.append(f"TensorRT {built}, version compatible with {built} and later only "
                            f"(this device has {tensorrt_version})")
    if gpu.get("compute_capability") != compute_capability:
        problems.append(f"compute capability {gpu.get('compute_capability')} (this GPU: {compute_capability})")
    if gpu.get("name") != gpu_name:
        problems.append(f"GPU {gpu.get('name')!r} (this GPU: {gpu_name!r})")
    if problems:
        raise EngineMismatch(
            f"{plan_path} was built for {', '.join(problems)}; TensorRT plans are not portable: "
            "rebuild the engine on this device (build_engine.sh in the bundle, or edgekd engines)"
        )


# ----------------------------------------------------------------------------- runner


class TensorRTRunner:
    """Deserialize a plan (after the sidecar check) and run ``(N, C, T, H, W)`` float32 batches.

    Buffers are allocated for the profile's maximum batch once; each call sets the input shape
    (dynamic batch) and copies in/out on one stream.
    """

    def __init__(self, plan_path: str | Path, *, sidecar_path: str | Path | None = None, device: int = 0) -> None:
        try:
            import tensorrt as trt  # lazily: only Jetson/GPU boxes have it
        except ImportError as exc:
            raise RuntimeError(
                f"TensorRT Python package not available ({exc}): this bundle targets a Jetson/NVIDIA GPU "
                "with TensorRT (use the L4T TensorRT image, see deploy/README.md), or pack --target cpu"
            ) from exc

        self.trt = trt
        self.plan_path = Path(plan_path)
        if not self.plan_path.is_file():
            raise FileNotFoundError(f"TensorRT plan not found: {self.plan_path} (build it first)")
        sidecar_path = Path(sidecar_path) if sidecar_path else self.plan_path.with_suffix(".json")
        if not sidecar_path.is_file():
            raise FileNotFoundError(f"sidecar not found: {sidecar_path}; without it the plan's origin is unknown, rebuild")
        self.sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        self.cuda = CudaDevice(device)
        self.api = api_level(trt.__version__)
        check_sidecar(self.sidecar, tensorrt_version=trt.__version__, gpu_name=self.cuda.name,
                      compute_capability=self.cuda.compute_capability, plan_path=self.plan_path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if self.sidecar.get("version_compatible"):
            # such a plan carries its own lean runtime (host code), which TensorRT runs only when allowed;
            # this plan's sidecar names the ONNX it was built from: it is ours, not a downloaded one
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise EngineMismatch(f"TensorRT could not deserialize {self.plan_path}: rebuild the engine on this device")
        self.context = self.engine.create_execution_context()
        self.max_batch = int(self.sidecar["batch"]["max"])
        self._inputs, self._outputs = self._io()
        if len(self._inputs) != 1 or len(self._outputs) != 1:
            raise RuntimeError(f"{self.plan_path}: expected one input and one output, got {self._inputs} / {self._outputs}")
        self._buffers = {name: self.cuda.malloc(self._nbytes(name, self.max_batch)) for name in self._inputs + self._outputs}

    def _io(self) -> tuple[list[str], list[str]]:
        trt, e = self.trt, self.engine
        if self.api.tensor_io_api:
            names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
            inputs = [n for n in names if e.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        else:
            names = [e.get_binding_name(i) for i in range(e.num_bindings)]
            inputs = [e.get_binding_name(i) for i in range(e.num_bindings) if e.binding_is_input(i)]
        return inputs, [n for n in names if n not in inputs]

    def _shape_dtype(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        e = self.engine
        if self.api.tensor_io_api:
            return tuple(e.get_tensor_shape(name)), np.dtype(self.trt.nptype(e.get_tensor_dtype(name)))
        idx = e.get_binding_index(name)
        return tuple(e.get_binding_shape(idx)), np.dtype(self.trt.nptype(e.get_binding_dtype(idx)))

    def _nbytes(self, name: str, batch: int) -> int:
        shape, dtype = self._shape_dtype(name)
        return int(np.prod([batch if d < 0 else d for d in shape])) * dtype.itemsize

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != np.float32 or batch.ndim != 5:
            raise TypeError(f"expected a float32 (N, C, T, H, W) batch, got {batch.dtype} {batch.shape}")
        n = batch.shape[0]
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"batch {n} is outside the engine's profile [1, {self.max_batch}]")
        (inp,), (out,) = self._inputs, self._outputs
        self.cuda.htod(self._buffers[inp], batch)
        if self.api.tensor_io_api:
            self.context.set_input_shape(inp, tuple(batch.shape))
            for name, ptr in self._buffers.items():
                self.context.set_tensor_address(name, ptr)
            out_shape = tuple(self.context.get_tensor_shape(out))
            ok = self.context.execute_async_v3(self.cuda.stream_handle)
        else:
            self.context.set_binding_shape(self.engine.get_binding_index(inp), tuple(batch.shape))
            bindings = [self._buffers[self.engine.get_binding_name(i)] for i in range(self.engine.num_bindings)]
            out_shape = tuple(self.context.get_binding_shape(self.engine.get_binding_index(out)))
            ok = self.context.execute_async_v2(bindings, self.cuda.stream_handle)
        if not ok:
            raise RuntimeError(f"TensorRT execution of {self.plan_path} failed")
        _, out_dtype = self._shape_dtype(out)
        logits = np.empty(out_shape, dtype=out_dtype)
        self.cuda.dtoh(logits, self._buffers[out])
        return logits.astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        return {"backend": "tensorrt", "backend_version": self.trt.__version__, "precision": self.sidecar.get("precision"),
                "device": f"{self.cuda.name} (sm {self.cuda.compute_capability}, CUDA {self.cuda.cuda_version})",
                "model_file": str(self.plan_path)}

    def close(self) -> None:
        for ptr in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers = {}
