"""The TensorRT build and run code paths against a recording stand-in for TensorRT and CUDA.

TensorRT cannot be installed here, so these tests check the wiring our code owns, on the API
surface it uses (8.2 binding API, 8.5 tensor API, 10.x strongly typed): which flags and limits the
builder gets, the optimisation profile, timing-cache reuse, the calibrator being driven to
exhaustion and its cache written, the sidecar, and the runner's buffers, shapes and copies. The
real library is exercised by the ``tensorrt``-marked tests in test_tensorrt.py.
"""

from __future__ import annotations

import ctypes
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.runtime import tensorrt_runner
from edgekd.runtime.tensorrt_build import BuildOptions, build_engine
from edgekd.runtime.tensorrt_runner import EngineMismatch, TensorRTRunner

INPUT = (3, 4, 16, 16)
K = 5


class FakeCudart:
    """cuda-python's runtime module as far as CudaDevice uses it; device memory is bytearrays."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, gpu: bytes = b"Fake Orin\0\0\0", cc: tuple[int, int] = (8, 7)) -> None:
        self.mem: dict[int, bytearray] = {}
        self.gpu, self.cc = gpu, cc

    def cudaSetDevice(self, i: int) -> tuple[int]:
        return (0,)

    def cudaGetDeviceProperties(self, i: int) -> tuple[int, Any]:
        return 0, types.SimpleNamespace(name=self.gpu, major=self.cc[0], minor=self.cc[1])

    def cudaRuntimeGetVersion(self) -> tuple[int, int]:
        return 0, 11040

    def cudaStreamCreate(self) -> tuple[int, int]:
        return 0, 77

    def cudaStreamSynchronize(self, s: int) -> tuple[int]:
        return (0,)

    def cudaMalloc(self, n: int) -> tuple[int, int]:
        ptr = 0x1000 * (len(self.mem) + 1)
        self.mem[ptr] = bytearray(n)
        return 0, ptr

    def cudaFree(self, ptr: int) -> tuple[int]:
        del self.mem[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: int, stream: int) -> tuple[int]:
        assert stream == 77
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.mem[dst][:n] = ctypes.string_at(src, n)
        else:
            ctypes.memmove(dst, bytes(self.mem[src][:n]), n)
        return (0,)


def expected_logits(x: np.ndarray) -> np.ndarray:
    return (x.reshape(len(x), -1).mean(1)[:, None] * np.arange(1, K + 1)).astype(np.float32)


def make_trt(version: str, cudart: FakeCudart, log: dict[str, Any]) -> types.ModuleType:
    """A recording ``tensorrt`` module: builder side and runtime side."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    tensor_api = tuple(int(v) for v in version.split(".")[:2]) >= (8, 5)
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: np.float32
    if version.startswith("8."):
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            self.shapes = (name, lo, opt, hi)

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return b"timing:" + self.data

    class Config:
        def __init__(self) -> None:
            self.flags: list[str] = []
            self.profiles: list[Profile] = []
            self.int8_calibrator = None
            log["config"] = self

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pool = (pool, size)

        def add_optimization_profile(self, p: Profile) -> None:
            self.profiles.append(p)

        def set_calibration_profile(self, p: Profile) -> None:
            self.calibration_profile = p

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

        def create_timing_cache(self, data: bytes) -> TimingCache:
            log["timing_cache_in"] = data
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> None:
            self.timing_cache = cache

        def get_timing_cache(self) -> TimingCache:
            return self.timing_cache

    class Network:
        def __init__(self, flags: int) -> None:
            log["network_flags"] = flags
            self.input = types.SimpleNamespace(name="clip", shape=(-1, *INPUT))

        def get_input(self, i: int) -> Any:
            return self.input

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            calib = config.int8_calibrator
            # what TensorRT does: use a valid cache, else request batches until None, then write the cache
            if calib is not None and calib.read_calibration_cache() is None:
                names = [network.input.name]
                log["calibration_batches"] = 0
                while calib.get_batch(names) is not None:
                    log["calibration_batches"] += 1
                calib.write_calibration_cache(b"TRT-8502-EntropyCalibration2\nclip: 3c010a14\n")
            return b"PLAN"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Any) -> None:
            pass

        def parse(self, data: bytes) -> bool:
            log["parsed"] = data
            return True

    class Context:
        def __init__(self) -> None:
            self.addr: dict[str, int] = {}
            self.shape: tuple[int, ...] = ()

        def set_input_shape(self, name: str, shape: tuple) -> None:
            self.shape = tuple(shape)

        def set_tensor_address(self, name: str, ptr: int) -> None:
            self.addr[name] = ptr

        def get_tensor_shape(self, name: str) -> tuple:
            return (self.shape[0], K)

        def set_binding_shape(self, idx: int, shape: tuple) -> None:
            self.shape = tuple(shape)

        def get_binding_shape(self, idx: int) -> tuple:
            return (self.shape[0], K)

        def _run(self, src: int, dst: int) -> bool:
            n = int(np.prod(self.shape))
            x = np.frombuffer(bytes(cudart.mem[src][: n * 4]), np.float32).reshape(self.shape)
            y = expected_logits(x).tobytes()
            cudart.mem[dst][: len(y)] = y
            return True

        def execute_async_v3(self, stream: int) -> bool:
            assert tensor_api and stream == 77
            return self._run(self.addr["clip"], self.addr["logits"])

        def execute_async_v2(self, bindings: list[int], stream: int) -> bool:
            assert not tensor_api
            return self._run(bindings[0], bindings[1])

    class Engine:
        names = ("clip", "logits")
        shapes = ((-1, *INPUT), (-1, K))

        def create_execution_context(self) -> Context:
            return Context()

        if tensor_api:
            num_io_tensors = 2

            def get_tensor_name(self, i: int) -> str:
                return self.names[i]

            def get_tensor_mode(self, name: str) -> str:
                return "in" if name == "clip" else "out"

            def get_tensor_shape(self, name: str) -> tuple:
                return self.shapes[self.names.index(name)]

            def get_tensor_dtype(self, name: str) -> str:
                return "float"
        else:
            num_bindings = 2

            def get_binding_name(self, i: int) -> str:
                return self.names[i]

            def binding_is_input(self, i: int) -> bool:
                return i == 0

            def get_binding_index(self, name: str) -> int:
                return self.names.index(name)

            def get_binding_shape(self, i: int) -> tuple:
                return self.shapes[i]

            def get_binding_dtype(self, i: int) -> str:
                return "float"

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if data == b"PLAN" else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> tuple[types.ModuleType, FakeCudart, dict]:
    cudart, log = FakeCudart(), {}
    trt = make_trt(request.param, cudart, log)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tensorrt_runner, "_cudart", lambda: cudart)
    return trt, cudart, log


def _onnx(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes")
    return path


@pytest.mark.parametrize("fake", ["10.3.0"], indirect=True)
def test_strongly_typed_qdq_build_with_profile_workspace_and_timing_cache(fake: Any, tmp_path: Path) -> None:
    _, _, log = fake
    options = BuildOptions("int8_qdq", (1, 2, 8), 256, str(tmp_path / "cache"))
    plan = tmp_path / "out" / "model.plan"
    side = build_engine(_onnx(tmp_path), plan, options, input_spec={"clip_len": 4}, labels=list("abcde"))
    cfg = log["config"]
    assert log["network_flags"] == 1 << 5 and cfg.flags == []  # STRONGLY_TYPED only: no precision flags
    assert cfg.pool == ("WORKSPACE", 256 << 20)
    assert cfg.profiles[0].shapes == ("clip", (1, *INPUT), (2, *INPUT), (8, *INPUT))
    assert plan.read_bytes() == b"PLAN" and json.loads(plan.with_suffix(".json").read_text()) == side
    assert (side["gpu"], side["cuda_version"], side["tensorrt_version"]) == (
        {"name": "Fake Orin", "compute_capability": "8.7"}, "11.4", "10.3.0")
    assert side["labels"] == list("abcde") and side["input"]["shape"] == [-1, *INPUT]
    cache = Path(side["timing_cache"])
    assert log["timing_cache_in"] == b"" and cache.read_bytes() == b"timing:"
    build_engine(_onnx(tmp_path), plan, options)  # the second build starts from the saved cache
    assert log["timing_cache_in"] == b"timing:" and cache.read_bytes() == b"timing:timing:"


@pytest.mark.parametrize("fake", ["8.5.2.2"], indirect=True)
def test_fp16_and_qdq_builds_on_tensorrt_8(fake: Any, tmp_path: Path) -> None:
    _, _, log = fake
    build_engine(_onnx(tmp_path), tmp_path / "fp16.plan", BuildOptions("fp16"))
    assert log["network_flags"] == 1 << 0 and log["config"].flags == ["FP16"]  # EXPLICIT_BATCH + FP16
    build_engine(_onnx(tmp_path), tmp_path / "int8.plan", BuildOptions("int8_qdq"))
    assert log["network_flags"] == 1 << 0 and log["config"].flags == ["INT8"]


@pytest.mark.parametrize("fake", ["8.5.2.2"], indirect=True)
def test_implicit_int8_runs_calibrator_and_reuses_its_cache(fake: Any, tmp_path: Path) -> None:
    _, cudart, log = fake
    clips = np.random.default_rng(0).standard_normal((10, *INPUT), dtype=np.float32)
    options = BuildOptions("int8_calib", (1, 4, 8), calibration_batch_size=4)
    side = build_engine(_onnx(tmp_path), tmp_path / "c.plan", options, calibration_clips=clips)
    cfg = log["config"]
    assert cfg.flags == ["INT8"] and cfg.int8_calibrator is not None
    assert cfg.calibration_profile.shapes == ("clip", (4, *INPUT), (4, *INPUT), (4, *INPUT))
    assert log["calibration_batches"] == 2 and side["calibration"]["clips"] == 8 and side["calibration"]["dropped"] == 2
    buffer = bytes(cudart.mem[max(cudart.mem)])  # the calibrator's device buffer holds the last batch
    np.testing.assert_array_equal(np.frombuffer(buffer, np.float32).reshape(4, *INPUT), clips[4:8])
    assert (tmp_path / "c.calib").read_bytes().startswith(b"TRT-8502-EntropyCalibration2")
    del log["calibration_batches"]
    build_engine(_onnx(tmp_path), tmp_path / "c.plan", options, calibration_clips=clips)
    assert "calibration_batches" not in log  # the valid cache was read: no batches requested


@pytest.mark.parametrize("fake", ["8.5.2.2", "8.2.1.8"], indirect=True)
def test_runner_tensor_and_binding_apis(fake: Any, tmp_path: Path) -> None:
    trt, cudart, _ = fake
    plan = tmp_path / "m.plan"
    build_engine(_onnx(tmp_path), plan, BuildOptions("fp16", (1, 2, 4)))
    runner = TensorRTRunner(plan)
    assert runner.api.tensor_io_api == (trt.__version__ == "8.5.2.2")
    x = np.random.default_rng(1).standard_normal((3, *INPUT), dtype=np.float32)
    np.testing.assert_allclose(runner.infer(x), expected_logits(x), rtol=1e-6)
    np.testing.assert_allclose(runner.infer(x[:1]), expected_logits(x[:1]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"outside the engine's profile \[1, 4\]"):
        runner.infer(np.zeros((5, *INPUT), np.float32))
    runner.close()
    assert cudart.mem == {}


@pytest.mark.parametrize("fake", ["8.5.2.2"], indirect=True)
def test_runner_refuses_a_plan_from_another_gpu(fake: Any, tmp_path: Path) -> None:
    _, cudart, _ = fake
    plan = tmp_path / "m.plan"
    build_engine(_onnx(tmp_path), plan, BuildOptions("fp16"))
    cudart.gpu, cudart.cc = b"NVIDIA H100\0", (9, 0)
    with pytest.raises(EngineMismatch, match="rebuild the engine on this device"):
        TensorRTRunner(plan)
    plan.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar not found"):
        TensorRTRunner(plan)
