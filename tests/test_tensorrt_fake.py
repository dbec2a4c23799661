"""The TensorRT build and run code paths against recording stand-ins for TensorRT and CUDA.

TensorRT cannot be installed here, so these tests check the wiring our code owns, on the API
surface of each line it supports: 8.2 (binding API), 8.5 (tensor API, JetPack 5), 10.3 (opt-in
strongly typed networks) and 11.4 (what ``pip install tensorrt`` serves: strongly typed only).
They check which flags and limits the builder gets and which ONNX it parses, the optimisation
profile, timing-cache reuse, the calibrator being driven to exhaustion and its cache written, the
sidecar, the runner's buffers, shapes and copies, and version-compatible plans crossing 10 -> 11.
The real library is exercised by the ``tensorrt``-marked tests in test_tensorrt.py.

Each stand-in exposes only what its line's Python API has (:data:`API`); an attribute our code
touches that the line lacks raises AttributeError here as it would there. The 11.x surface is taken
from NVIDIA's "Migrating from TensorRT 10.x to 11.x" Python API reference and the 11.0 Python API
pages: ``BuilderFlag.FP16/INT8/BF16/FP8/INT4/FP4/OBEY_PRECISION_CONSTRAINTS/
PREFER_PRECISION_CONSTRAINTS/DIRECT_IO``, ``IBuilderConfig.int8_calibrator`` and
``set_calibration_profile``, ``Builder.platform_has_fast_fp16/int8/tf32`` and the ``IInt8*Calibrator``
classes are removed; ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is gone and ``STRONGLY_TYPED``
stays as an ignored, deprecated member. Enum values are the stand-ins' own (our code only reads
them through the enums).
"""

from __future__ import annotations

import ctypes
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgekd.runtime import tensorrt_runner
from edgekd.runtime.tensorrt_build import (
    BuildOptions,
    TensorRTFeatureUnavailable,
    build_engine,
    build_plan,
    detect_features,
)
from edgekd.runtime.tensorrt_runner import EngineMismatch, TensorRTRunner

INPUT = (3, 4, 16, 16)
K = 5


@dataclass(frozen=True)
class Api:
    """One TensorRT line's Python API, as far as edgekd's build and run code can reach it."""

    network_flags: dict[str, int]
    builder_flags: tuple[str, ...]
    calibrator: bool  # IInt8EntropyCalibrator2, IBuilderConfig.int8_calibrator and set_calibration_profile
    tensor_io: bool  # num_io_tensors / execute_async_v3 (8.5+), else the binding API
    platform_queries: bool  # Builder.platform_has_fast_fp16 / platform_has_fast_int8 / platform_has_tf32
    engine_host_code: bool  # Runtime.engine_host_code_allowed (8.6+), needed to load version-compatible plans
    memory_pool: bool = True  # IBuilderConfig.set_memory_pool_limit (8.4+); before, max_workspace_size


_COMMON = ("DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE")
_WEAK_8 = ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")
API = {
    "8.2": Api({"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1}, (*_WEAK_8, *_COMMON, "STRICT_TYPES"),
               calibrator=True, tensor_io=False, platform_queries=True, engine_host_code=False, memory_pool=False),
    "8.5": Api({"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1}, (*_WEAK_8, *_COMMON, "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS"),
               calibrator=True, tensor_io=True, platform_queries=True, engine_host_code=False),
    "10.3": Api({"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3},
                (*_WEAK_8, *_COMMON, "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME",
                 "FP8", "BF16", "INT4", "ERROR_ON_TIMING_CACHE_MISS", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN",
                 "REFIT_IDENTICAL", "WEIGHT_STREAMING"),
                calibrator=True, tensor_io=True, platform_queries=True, engine_host_code=True),
    "11.4": Api({"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 1, "PREFER_JIT_PYTHON_PLUGINS": 2},
                (*_COMMON, "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS",
                 "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING", "REFIT_INDIVIDUAL",
                 "STRICT_NANS", "MONITOR_MEMORY", "EDITABLE_TIMING_CACHE", "DISTRIBUTIVE_INDEPENDENCE",
                 "REQUIRE_USER_ALLOCATION"),
                calibrator=False, tensor_io=True, platform_queries=False, engine_host_code=True),
}
VERSIONS = {"8.2": "8.2.1.8", "8.5": "8.5.2.2", "10.3": "10.3.0", "11.4": "11.4.0"}


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
    """What every stand-in engine computes, and what :func:`tiny_onnx` computes too."""
    return (x.reshape(len(x), -1).mean(1)[:, None] * np.arange(1, K + 1)).astype(np.float32)


def tiny_onnx(path: Path, kind: str = "fp32") -> Path:
    """A real ONNX computing :func:`expected_logits` (mean over C, T, H, W times 1..K): ``fp32``, or
    ``qdq`` with a symmetric INT8 Q/DQ pair on the input. The stand-in parser reads its types."""
    x = helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["batch", *INPUT])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", K])
    inits = [helper.make_tensor("w", TensorProto.FLOAT, (1, K), np.arange(1, K + 1, dtype=np.float32)),
             helper.make_tensor("shape", TensorProto.INT64, (2,), [-1, 1])]
    nodes, first = [], "clip"
    if kind == "qdq":
        inits += [helper.make_tensor("s", TensorProto.FLOAT, (), [0.05]), helper.make_tensor("z", TensorProto.INT8, (), [0])]
        nodes += [helper.make_node("QuantizeLinear", ["clip", "s", "z"], ["q"], name="q"),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq")]
        first = "dq"
    nodes += [helper.make_node("ReduceMean", [first], ["m"], name="mean", axes=[1, 2, 3, 4], keepdims=1),
              helper.make_node("Reshape", ["m", "shape"], ["m2"], name="flat"),
              helper.make_node("MatMul", ["m2", "w"], ["logits"], name="head")]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_fp16_onnx(fp32: Path, path: Path) -> Path:
    """The FP16 copy of :func:`tiny_onnx`, made the way the onnxruntime_fp16 row makes it."""
    from edgekd.engines.fp16 import build_fp16_onnx

    clips = np.random.default_rng(3).standard_normal((4, *INPUT), dtype=np.float32)
    return build_fp16_onnx(fp32, path, parity_clips=clips)["model"]


def make_trt(version: str, cudart: FakeCudart, log: dict[str, Any]) -> types.ModuleType:
    """A recording ``tensorrt`` module with the Python API of ``version``'s line (:data:`API`)."""
    api = API[".".join(version.split(".")[:2])]
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**api.network_flags)
    trt.BuilderFlag = types.SimpleNamespace(**{f: f for f in api.builder_flags})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.DataType = types.SimpleNamespace(FLOAT="float", HALF="half", INT8="int8")
    trt.LayerType = types.SimpleNamespace(REDUCE="reduce", MATRIX_MULTIPLY="matmul", QUANTIZE="q", DEQUANTIZE="dq",
                                          CAST="cast")
    trt.nptype = lambda dtype: np.float32
    if api.calibrator:
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            self.shapes = (name, lo, opt, hi)

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return b"timing:" + self.data

    def config_init(self: Any) -> None:
        self.flags, self.profiles = [], []
        if api.calibrator:
            self.int8_calibrator = None
        log["config"] = self

    def set_calibration_profile(self: Any, p: Profile) -> None:
        self.calibration_profile = p

    # __slots__: like the pybind11 classes, assigning an attribute the line lacks raises AttributeError
    config_methods: dict[str, Any] = {
        "__slots__": ("flags", "profiles", "pool", "timing_cache",
                      *(("int8_calibrator", "calibration_profile") if api.calibrator else ()),
                      *(() if api.memory_pool else ("max_workspace_size",))),
        "__init__": config_init,
        "add_optimization_profile": lambda self, p: self.profiles.append(p),
        "set_flag": lambda self, flag: self.flags.append(flag),
        "create_timing_cache": lambda self, data: (log.__setitem__("timing_cache_in", data), TimingCache(data))[1],
        "set_timing_cache": lambda self, cache, ignore_mismatch: setattr(self, "timing_cache", cache),
        "get_timing_cache": lambda self: self.timing_cache,
    }
    if api.calibrator:
        config_methods["set_calibration_profile"] = set_calibration_profile
    if api.memory_pool:
        config_methods["set_memory_pool_limit"] = lambda self, pool, size: setattr(self, "pool", (pool, size))
    Config = type("IBuilderConfig", (), config_methods)

    class Layer:
        def __init__(self, kind: str, dtype: str) -> None:
            self.type, self.num_outputs, self._dtype = kind, 1, dtype

        def get_output(self, i: int) -> Any:
            return types.SimpleNamespace(dtype=self._dtype)

    class Network:
        def __init__(self, flags: int) -> None:
            log["network_flags"] = flags
            self.input = types.SimpleNamespace(name="clip", shape=(-1, *INPUT))
            self.layers: list[Layer] = []

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, i: int) -> Layer:
            return self.layers[i]

        def get_input(self, i: int) -> Any:
            return self.input

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Any:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Any) -> bytes:
            calib = getattr(config, "int8_calibrator", None)
            # what TensorRT does: use a valid cache, else request batches until None, then write the cache
            if calib is not None and calib.read_calibration_cache() is None:
                names = [network.input.name]
                log["calibration_batches"] = 0
                while calib.get_batch(names) is not None:
                    log["calibration_batches"] += 1
                calib.write_calibration_cache(b"TRT-8502-EntropyCalibration2\nclip: 3c010a14\n")
            return b"VCPLAN" if "VERSION_COMPATIBLE" in config.flags else b"PLAN"

    if api.platform_queries:
        Builder.platform_has_fast_fp16 = True  # type: ignore[attr-defined]
        Builder.platform_has_fast_int8 = True  # type: ignore[attr-defined]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Any) -> None:
            self.network = network

        def parse(self, data: bytes) -> bool:
            """One layer per ONNX node, its output typed as the ONNX types it (FP16 -> HALF)."""
            log["parsed"] = data
            graph = onnx.shape_inference.infer_shapes(onnx.load_from_string(data)).graph
            types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.output]}
            for node in graph.node:
                kind = {"QuantizeLinear": "q", "DequantizeLinear": "dq", "Cast": "cast"}.get(node.op_type, "other")
                self.network.layers.append(Layer(kind, "half" if types.get(node.output[0]) == TensorProto.FLOAT16
                                                 else "float"))
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
            assert api.tensor_io and stream == 77
            return self._run(self.addr["clip"], self.addr["logits"])

        def execute_async_v2(self, bindings: list[int], stream: int) -> bool:
            assert not api.tensor_io
            return self._run(bindings[0], bindings[1])

    class Engine:
        names = ("clip", "logits")
        shapes = ((-1, *INPUT), (-1, K))

        def create_execution_context(self) -> Context:
            return Context()

        if api.tensor_io:
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

    def runtime_init(self: Any, logger: Any) -> None:
        if api.engine_host_code:
            self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self: Any, data: bytes) -> Engine | None:
        # a version-compatible plan embeds a lean runtime (host code): TensorRT runs it only when allowed
        ok = data == b"PLAN" or (data == b"VCPLAN" and getattr(self, "engine_host_code_allowed", False))
        return Engine() if ok else None

    trt.Runtime = type("Runtime", (), {"__slots__": ("engine_host_code_allowed",) if api.engine_host_code else (),
                                       "__init__": runtime_init, "deserialize_cuda_engine": deserialize_cuda_engine})
    trt.Builder, trt.OnnxParser, trt.IBuilderConfig = Builder, OnnxParser, Config
    return trt


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> tuple[types.ModuleType, FakeCudart, dict]:
    cudart, log = FakeCudart(), {}
    trt = make_trt(request.param, cudart, log)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(tensorrt_runner, "_cudart", lambda: cudart)
    return trt, cudart, log


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx")
    fp32 = tiny_onnx(root / "model.onnx")
    return {"fp32": fp32, "fp16": tiny_fp16_onnx(fp32, root / "model_fp16.onnx"),
            "qdq": tiny_onnx(root / "model_int8_qdq.onnx", "qdq")}


# ----------------------------------------------------------------------------- the stand-ins' API, as detected


@pytest.mark.parametrize(("line", "expected"), [
    # (EXPLICIT_BATCH passed, STRONGLY_TYPED exists, BuilderFlag.FP16 exists, calibrator, VERSION_COMPATIBLE)
    ("8.2", (True, False, True, True, False)),
    ("8.5", (True, False, True, True, False)),
    ("10.3", (False, True, True, True, True)),
    ("11.4", (False, True, False, False, True)),
])
def test_features_are_read_from_each_lines_api(line: str, expected: tuple[bool, ...]) -> None:
    f = detect_features(make_trt(VERSIONS[line], FakeCudart(), {}))
    got = (f.explicit_batch_flag, f.strongly_typed_flag, f.fp16_flag, f.calibrator, f.version_compatible_flag)
    assert got == expected and f.line == f"{line.split('.')[0]}.x"
    assert f.always_strongly_typed == (line == "11.4")
    if line == "11.4":  # all three pieces of implicit INT8 are gone, and each is named
        assert f.calibration_missing == ("IInt8EntropyCalibrator2", "IBuilderConfig.int8_calibrator", "BuilderFlag.INT8")


# ----------------------------------------------------------------------------- builds


@pytest.mark.parametrize("fake", ["10.3.0", "11.4.0"], indirect=True)
def test_strongly_typed_qdq_build_with_profile_workspace_and_timing_cache(fake: Any, tmp_path: Path,
                                                                          onnx_files: dict[str, Path]) -> None:
    trt, _, log = fake
    options = BuildOptions("int8_qdq", (1, 2, 8), 256, str(tmp_path / "cache"))
    plan = tmp_path / "out" / "model.plan"
    side = build_engine(onnx_files["qdq"], plan, options, input_spec={"clip_len": 4}, labels=list("abcde"))
    cfg = log["config"]
    # 10.x opts in with STRONGLY_TYPED (value 1 in the 10.3 stand-in); 11.x is strongly typed without a flag
    assert log["network_flags"] == (1 << 1 if trt.__version__ == "10.3.0" else 0) and cfg.flags == []
    assert log["parsed"] == onnx_files["qdq"].read_bytes()
    assert (side["route"], side["strongly_typed"], side["network"]) == (
        "strongly_typed", True, {"layers": 5, "fp16_layers": 0, "qdq_layers": 2})
    assert cfg.pool == ("WORKSPACE", 256 << 20)
    assert cfg.profiles[0].shapes == ("clip", (1, *INPUT), (2, *INPUT), (8, *INPUT))
    assert plan.read_bytes() == b"PLAN" and json.loads(plan.with_suffix(".json").read_text()) == side
    assert (side["gpu"], side["cuda_version"], side["tensorrt_version"]) == (
        {"name": "Fake Orin", "compute_capability": "8.7"}, "11.4", trt.__version__)
    assert side["labels"] == list("abcde") and side["input"]["shape"] == [-1, *INPUT]
    cache = Path(side["timing_cache"])
    assert log["timing_cache_in"] == b"" and cache.read_bytes() == b"timing:"
    build_engine(onnx_files["qdq"], plan, options)  # the second build starts from the saved cache
    assert log["timing_cache_in"] == b"timing:" and cache.read_bytes() == b"timing:timing:"


@pytest.mark.parametrize(("fake", "network_flags", "builder_flags", "source", "route"), [
    ("8.2.1.8", 1 << 0, ["FP16"], "fp32", "builder_flag"),  # EXPLICIT_BATCH + BuilderFlag.FP16 on the FP32 ONNX
    ("8.5.2.2", 1 << 0, ["FP16"], "fp32", "builder_flag"),
    ("10.3.0", 1 << 1, [], "fp16", "strongly_typed"),  # STRONGLY_TYPED, the FP16 ONNX, no precision flag
    ("11.4.0", 0, [], "fp16", "strongly_typed"),  # always strongly typed: no flag at all
], indirect=["fake"])
def test_fp16_route_per_tensorrt_line(fake: Any, tmp_path: Path, onnx_files: dict[str, Path], network_flags: int,
                                      builder_flags: list[str], source: str, route: str) -> None:
    _, _, log = fake
    side = build_engine(onnx_files["fp32"], tmp_path / "fp16.plan", BuildOptions("fp16"), fp16_onnx=onnx_files["fp16"])
    assert (log["network_flags"], log["config"].flags) == (network_flags, builder_flags)
    assert log["parsed"] == onnx_files[source].read_bytes()
    assert side["source_onnx"] == str(onnx_files[source]) and side["route"] == route
    assert side["strongly_typed"] == (route == "strongly_typed") and side["precision"] == "fp16"
    # FP16 ONNX: the Cast after the FP32 ReduceMean, the Reshape and the MatMul head are FP16
    assert side["network"] == {"layers": 5 if source == "fp16" else 3, "fp16_layers": 3 if source == "fp16" else 0,
                               "qdq_layers": 0}


@pytest.mark.parametrize("fake", ["8.5.2.2"], indirect=True)
def test_qdq_build_on_tensorrt_8_uses_the_int8_flag(fake: Any, tmp_path: Path, onnx_files: dict[str, Path]) -> None:
    _, _, log = fake
    side = build_engine(onnx_files["qdq"], tmp_path / "int8.plan", BuildOptions("int8_qdq"))
    assert log["network_flags"] == 1 << 0 and log["config"].flags == ["INT8"]
    assert (side["route"], side["strongly_typed"]) == ("builder_flag", False)


@pytest.mark.parametrize("fake", ["8.5.2.2"], indirect=True)
def test_implicit_int8_runs_calibrator_and_reuses_its_cache(fake: Any, tmp_path: Path,
                                                            onnx_files: dict[str, Path]) -> None:
    _, cudart, log = fake
    clips = np.random.default_rng(0).standard_normal((10, *INPUT), dtype=np.float32)
    options = BuildOptions("int8_calib", (1, 4, 8), calibration_batch_size=4)
    side = build_engine(onnx_files["fp32"], tmp_path / "c.plan", options, calibration_clips=clips)
    cfg = log["config"]
    assert cfg.flags == ["INT8"] and cfg.int8_calibrator is not None and side["route"] == "calibrator"
    assert cfg.calibration_profile.shapes == ("clip", (4, *INPUT), (4, *INPUT), (4, *INPUT))
    assert log["calibration_batches"] == 2 and side["calibration"]["clips"] == 8 and side["calibration"]["dropped"] == 2
    buffer = bytes(cudart.mem[max(cudart.mem)])  # the calibrator's device buffer holds the last batch
    np.testing.assert_array_equal(np.frombuffer(buffer, np.float32).reshape(4, *INPUT), clips[4:8])
    assert (tmp_path / "c.calib").read_bytes().startswith(b"TRT-8502-EntropyCalibration2")
    del log["calibration_batches"]
    build_engine(onnx_files["fp32"], tmp_path / "c.plan", options, calibration_clips=clips)
    assert "calibration_batches" not in log  # the valid cache was read: no batches requested


@pytest.mark.parametrize("fake", ["11.4.0"], indirect=True)
def test_tensorrt_11_refuses_implicit_int8_naming_version_and_qdq(fake: Any, tmp_path: Path,
                                                                  onnx_files: dict[str, Path]) -> None:
    _, _, log = fake
    clips = np.zeros((8, *INPUT), np.float32)
    with pytest.raises(TensorRTFeatureUnavailable, match=r"TensorRT 11\.4\.0 cannot calibrate.*"
                                                         r"IInt8EntropyCalibrator2.*build int8_qdq from the Q/DQ ONNX"):
        build_engine(onnx_files["fp32"], tmp_path / "c.plan", BuildOptions("int8_calib"), calibration_clips=clips)
    assert "network_flags" not in log and not (tmp_path / "c.plan").exists()  # refused before any build


@pytest.mark.parametrize("fake", ["11.4.0"], indirect=True)
def test_strongly_typed_fp16_refuses_an_onnx_without_fp16_layers(fake: Any, tmp_path: Path,
                                                                 onnx_files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="no FP16 layers: built strongly typed it would be an FP32 engine"):
        build_engine(onnx_files["fp32"], tmp_path / "m.plan", BuildOptions("fp16"), fp16_onnx=onnx_files["fp32"])
    with pytest.raises(ValueError, match="no Q/DQ layers"):
        build_engine(onnx_files["fp32"], tmp_path / "m.plan", BuildOptions("int8_qdq"))
    assert not (tmp_path / "m.plan").exists()


@pytest.mark.parametrize("fake", ["10.3.0"], indirect=True)
def test_fp16_without_the_fp16_onnx_says_which_file_is_missing(fake: Any, tmp_path: Path,
                                                               onnx_files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"give the FP16 ONNX \(--fp16-onnx"):
        build_engine(onnx_files["fp32"], tmp_path / "m.plan", BuildOptions("fp16"))


# ----------------------------------------------------------------------------- runner


@pytest.mark.parametrize("fake", ["8.5.2.2", "8.2.1.8", "10.3.0", "11.4.0"], indirect=True)
def test_runner_tensor_and_binding_apis(fake: Any, tmp_path: Path, onnx_files: dict[str, Path]) -> None:
    trt, cudart, _ = fake
    plan = tmp_path / "m.plan"
    build_engine(onnx_files["fp32"], plan, BuildOptions("fp16", (1, 2, 4)), fp16_onnx=onnx_files["fp16"])
    runner = TensorRTRunner(plan)
    assert runner.api.tensor_io_api == (trt.__version__ != "8.2.1.8")
    x = np.random.default_rng(1).standard_normal((3, *INPUT), dtype=np.float32)
    np.testing.assert_allclose(runner.infer(x), expected_logits(x), rtol=1e-6)
    np.testing.assert_allclose(runner.infer(x[:1]), expected_logits(x[:1]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"outside the engine's profile \[1, 4\]"):
        runner.infer(np.zeros((5, *INPUT), np.float32))
    runner.close()
    assert cudart.mem == {}


@pytest.mark.parametrize("fake", ["8.5.2.2"], indirect=True)
def test_runner_refuses_a_plan_from_another_gpu(fake: Any, tmp_path: Path, onnx_files: dict[str, Path]) -> None:
    _, cudart, _ = fake
    plan = tmp_path / "m.plan"
    build_engine(onnx_files["fp32"], plan, BuildOptions("fp16"))
    cudart.gpu, cudart.cc = b"NVIDIA H100\0", (9, 0)
    with pytest.raises(EngineMismatch, match="rebuild the engine on this device"):
        TensorRTRunner(plan)
    plan.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar not found"):
        TensorRTRunner(plan)


def test_version_compatible_plan_from_10_runs_on_an_11_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              onnx_files: dict[str, Path]) -> None:
    cudart, log = FakeCudart(), {}
    monkeypatch.setattr(tensorrt_runner, "_cudart", lambda: cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", make_trt("10.3.0", cudart, log))
    vc, pinned = tmp_path / "vc.plan", tmp_path / "pinned.plan"
    side = build_engine(onnx_files["fp32"], vc, BuildOptions("fp16", version_compatible=True),
                        fp16_onnx=onnx_files["fp16"])
    assert log["config"].flags == ["VERSION_COMPATIBLE"] and side["version_compatible"] is True
    build_engine(onnx_files["fp32"], pinned, BuildOptions("fp16"), fp16_onnx=onnx_files["fp16"])
    monkeypatch.setitem(sys.modules, "tensorrt", make_trt("11.4.0", cudart, log))  # the fleet upgraded its runtime
    runner = TensorRTRunner(vc)
    assert runner.runtime.engine_host_code_allowed is True  # the plan's embedded lean runtime may run
    x = np.random.default_rng(2).standard_normal((2, *INPUT), dtype=np.float32)
    np.testing.assert_allclose(runner.infer(x), expected_logits(x), rtol=1e-6)
    runner.close()
    with pytest.raises(EngineMismatch, match=r"TensorRT 10\.3\.0 \(this device has 11\.4\.0\).*rebuild"):
        TensorRTRunner(pinned)
    build_engine(onnx_files["fp32"], vc, BuildOptions("fp16", version_compatible=True), fp16_onnx=onnx_files["fp16"])
    monkeypatch.setitem(sys.modules, "tensorrt", make_trt("10.3.0", cudart, log))  # never backwards
    with pytest.raises(EngineMismatch, match=r"version compatible with 11\.4\.0 and later only"):
        TensorRTRunner(vc)


def test_version_compatible_needs_the_flag() -> None:
    features = detect_features(make_trt("8.5.2.2", FakeCudart(), {}))
    with pytest.raises(TensorRTFeatureUnavailable, match=r"TensorRT 8\.5\.2\.2 has no BuilderFlag\.VERSION_COMPATIBLE"):
        build_plan("fp16", features, version_compatible=True)


# ----------------------------------------------------------------------------- the engines stage's row builder


@pytest.mark.parametrize(("fake", "source", "route"), [
    ("8.5.2.2", "export/student_kd.onnx", "builder_flag"),
    ("11.4.0", "engines/student_kd/onnxruntime_fp16/model.onnx", "strongly_typed"),
], indirect=["fake"])
def test_engines_row_builds_fp16_from_the_onnx_the_line_needs(fake: Any, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path, source: str, route: str) -> None:
    """``build_tensorrt`` on a stand-in: the FP16 ONNX row first, then the plan, checked against
    ONNX Runtime on the very ONNX the plan was built from."""
    from edgekd.engines import tensorrt_engine
    from edgekd.engines.rows import BuildContext, build_onnx_fp16, build_tensorrt
    from edgekd.engines.table import get_engine
    from edgekd.recipe import EnginesConfig

    monkeypatch.setattr(tensorrt_engine, "_cuda_gpu", lambda: (True, "Fake Orin (1 visible)"))
    onnx_path = tiny_onnx(tmp_path / "export" / "student_kd.onnx")
    clips = np.random.default_rng(4).standard_normal((6, *INPUT), dtype=np.float32)
    options = EnginesConfig(tensorrt_batch=(1, 2, 4), tensorrt_timing_cache_dir=None)

    def ctx(row: str) -> BuildContext:
        return BuildContext(get_engine(row), "student_kd", tmp_path, onnx_path, {"source_onnx": str(onnx_path)},
                            options, parity_clips=clips, input_spec={"clip_len": 4}, labels=list("abcde"))

    fp16 = build_onnx_fp16(ctx("onnxruntime_fp16"))
    assert fp16["parity"]["passed"] and fp16["artifact"].endswith("engines/student_kd/onnxruntime_fp16/model.onnx")
    record = build_tensorrt(ctx("tensorrt_fp16"))
    assert record["status"] == "built" and record["route"] == route and record["sidecar"]["source_onnx"] == str(
        tmp_path / source)
    assert record["tensorrt_line"] == ("8.x" if route == "builder_flag" else "11.x")
    assert record["parity"]["reference"] == str(tmp_path / source)
    # the stand-in computes the FP32 function exactly: against the FP32 ONNX it agrees to float32
    # rounding; against the FP16 ONNX to within that file's own FP16 tolerance
    bound = 1e-6 if route == "builder_flag" else fp16["parity"]["tolerance_abs"]
    assert record["parity"]["max_abs_delta"] <= bound and record["parity"]["top1_agreement"] == 1.0


# ----------------------------------------------------------------------------- what doctor and the table say


@pytest.mark.parametrize("fake", ["8.5.2.2", "11.4.0"], indirect=True)
def test_doctor_and_table_name_the_line_and_what_it_builds(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd import doctor
    from edgekd.engines import tensorrt_engine
    from edgekd.engines.table import get_engine

    monkeypatch.setattr(tensorrt_engine, "_cuda_gpu", lambda: (True, "Fake Orin (1 visible)"))
    trt, _, _ = fake
    rows = dict(doctor._tensorrt_rows(doctor.tensorrt_facts()))
    calib = get_engine("tensorrt_int8_calib").status()
    if trt.__version__ == "8.5.2.2":
        assert (rows["usable"], rows["line"], rows["strong typing"]) == ("yes", "8.x (TensorRT 8.5.2.2)",
                                                                         "no (weak typing only)")
        assert rows["fp16"] == "the FP32 ONNX, weak typing, BuilderFlag.FP16"
        assert rows["int8 (Q/DQ)"] == "the Q/DQ INT8 ONNX, weak typing, BuilderFlag.INT8"
        assert rows["int8 calibrator"] == "the FP32 ONNX, BuilderFlag.INT8 + IInt8EntropyCalibrator2"
        assert calib == (True, "TensorRT 8.5.2.2, GPU Fake Orin (1 visible)")
    else:
        assert (rows["line"], rows["strong typing"]) == ("11.x (TensorRT 11.4.0)", "always (weak typing removed)")
        assert rows["fp16"] == "the FP16 ONNX, strongly typed (always, TensorRT >= 11)"
        assert rows["int8 (Q/DQ)"] == "the Q/DQ INT8 ONNX, strongly typed (always, TensorRT >= 11)"
        assert rows["int8 calibrator"].startswith("no: TensorRT 11.4.0 cannot calibrate implicit INT8")
        assert calib[0] is False and "build int8_qdq from the Q/DQ ONNX" in calib[1]  # the row says why, not skips blind
        assert get_engine("tensorrt_fp16").status() == (True, "TensorRT 11.4.0, GPU Fake Orin (1 visible)")
