"""TensorRT builder and runner logic that needs no TensorRT: version gates, build plans per
TensorRT line (8.x weak typing, 10.x opt-in strong typing, 11.x strong typing only), trtexec flags,
the calibration batch stream and calibrator, cache files, sidecars and mismatch checks (version-
compatible plans included), and the clear errors where TensorRT is absent. Tests marked
``tensorrt`` need TensorRT + a GPU and skip here."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest

from edgekd.engines.rows import BuildContext, EngineSkipped, build_tensorrt
from edgekd.engines.table import get_engine
from edgekd.engines.tensorrt_engine import (
    TensorRTEngine,
    TensorRTUnavailable,
    tensorrt_status,
)
from edgekd.recipe import EnginesConfig
from edgekd.runtime.tensorrt_build import (
    BuildOptions,
    CalibrationBatchStream,
    CalibrationCache,
    TensorRTFeatures,
    TensorRTFeatureUnavailable,
    build_plan,
    capabilities,
    describe_plan,
    make_entropy_calibrator,
    make_sidecar,
    select_source,
    tensorrt_version_code,
    timing_cache_path,
    trtexec_flags,
)
from edgekd.runtime.tensorrt_runner import (
    EngineMismatch,
    TensorRTRunner,
    api_level,
    check_sidecar,
    parse_version,
)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
_CALIB = ("IInt8EntropyCalibrator2", "IBuilderConfig.int8_calibrator", "BuilderFlag.INT8")
# What each line's Python API offers (as detect_features reads it; the stand-ins in
# test_tensorrt_fake.py check that reading): JetPack 4.6 / JetPack 5 / x86 10.x / pip's 11.x.
LINES = {
    "8.2.1.8": TensorRTFeatures("8.2.1.8", True, False, True, True, (), False),
    "8.5.2.2": TensorRTFeatures("8.5.2.2", True, False, True, True, (), False),
    "10.3.0": TensorRTFeatures("10.3.0", False, True, True, True, (), True),
    "11.4.0": TensorRTFeatures("11.4.0", False, True, False, False, _CALIB, True),
}


# ----------------------------------------------------------------------------- version gates


@pytest.mark.parametrize(
    ("version", "expected"),
    [("8.5.2.2", (8, 5, 2)), ("8.2.1.8", (8, 2, 1)), ("10.3.0.post1", (10, 3, 0)), ("10.0", (10, 0, 0)), ("9", (9, 0, 0))],
)
def test_parse_version(version: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(version) == expected


def test_parse_version_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        parse_version("unknown")


def test_api_levels_by_version() -> None:
    jp46, jp5, trt10, trt101, trt11 = (api_level(v) for v in ("8.2.1.8", "8.5.2.2", "10.0.1.6", "10.1.0", "11.4.0"))
    assert (jp46.tensor_io_api, jp5.tensor_io_api, trt10.tensor_io_api, trt11.tensor_io_api) == (False, True, True, True)
    assert (jp5.explicit_batch_flag, trt10.explicit_batch_flag, trt11.explicit_batch_flag) == (True, False, False)
    assert (jp46.memory_pool_api, jp5.memory_pool_api) == (False, True)
    assert (trt10.implicit_int8_deprecated, trt101.implicit_int8_deprecated) == (False, True)


@pytest.mark.parametrize(("version", "net", "flags", "source", "route"), [
    ("8.2.1.8", ("EXPLICIT_BATCH",), ("FP16",), "fp32", "builder_flag"),
    ("8.5.2.2", ("EXPLICIT_BATCH",), ("FP16",), "fp32", "builder_flag"),
    ("10.3.0", ("STRONGLY_TYPED",), (), "fp16", "strongly_typed"),
    ("11.4.0", (), (), "fp16", "strongly_typed"),  # STRONGLY_TYPED is an ignored, deprecated member in 11.x
])
def test_fp16_plan_per_tensorrt_line(version: str, net: tuple[str, ...], flags: tuple[str, ...], source: str,
                                     route: str) -> None:
    plan = build_plan("fp16", LINES[version])
    assert (plan.network_flags, plan.builder_flags, plan.source, plan.route) == (net, flags, source, route)
    assert plan.strongly_typed == (route == "strongly_typed") and not plan.calibrator


def test_int8_plans_per_tensorrt_line() -> None:
    jp5, trt10, trt11 = LINES["8.5.2.2"], LINES["10.3.0"], LINES["11.4.0"]
    assert build_plan("fp32", jp5).network_flags == ("EXPLICIT_BATCH",)
    assert build_plan("fp32", trt11).strongly_typed and not build_plan("fp32", trt10).strongly_typed
    qdq8, qdq10, qdq11 = (build_plan("int8_qdq", f) for f in (jp5, trt10, trt11))
    assert (qdq8.network_flags, qdq8.builder_flags, qdq8.source) == (("EXPLICIT_BATCH",), ("INT8",), "qdq")
    assert (qdq10.network_flags, qdq10.builder_flags) == (("STRONGLY_TYPED",), ())
    assert (qdq11.network_flags, qdq11.builder_flags, qdq11.route) == ((), (), "strongly_typed")
    calib8 = build_plan("int8_calib", jp5)
    assert calib8.calibrator and calib8.builder_flags == ("INT8",) and calib8.notes == () and calib8.source == "fp32"
    calib10 = build_plan("int8_calib", trt10)
    assert calib10.calibrator and "deprecated" in calib10.notes[0]
    # decided by what the API has, not by the number: a 10.x build without the calibrator is refused too
    with pytest.raises(TensorRTFeatureUnavailable, match=r"TensorRT 10\.3\.0 cannot calibrate.*IInt8EntropyCalibrator2;"):
        build_plan("int8_calib", dataclasses.replace(trt10, calibration_missing=("IInt8EntropyCalibrator2",)))
    with pytest.raises(TensorRTFeatureUnavailable, match=r"TensorRT 11\.4\.0 cannot calibrate implicit INT8: it has no "
                                                         r"IInt8EntropyCalibrator2, IBuilderConfig\.int8_calibrator, "
                                                         r"BuilderFlag\.INT8 \(TensorRT 11 removed implicit INT8\); "
                                                         r"build int8_qdq from the Q/DQ ONNX"):
        build_plan("int8_calib", trt11)
    with pytest.raises(ValueError, match="precision"):
        build_plan("int4", trt10)


def test_trtexec_flags_per_tensorrt_line() -> None:
    """8.x keeps --fp16/--int8; 10.x --stronglyTyped; 11.x no precision flags at all (they were removed)."""
    got = {v: {p: trtexec_flags(build_plan(p, f)) for p in ("fp32", "fp16", "int8_qdq")} for v, f in LINES.items()}
    assert got["8.5.2.2"] == {"fp32": (), "fp16": ("--fp16",), "int8_qdq": ("--int8",)}
    assert got["10.3.0"] == {"fp32": (), "fp16": ("--stronglyTyped",), "int8_qdq": ("--stronglyTyped",)}
    assert got["11.4.0"] == {"fp32": (), "fp16": (), "int8_qdq": ()}
    assert trtexec_flags(build_plan("fp16", LINES["11.4.0"], version_compatible=True)) == ("--versionCompatible",)
    with pytest.raises(TensorRTFeatureUnavailable, match="Python builder"):
        trtexec_flags(build_plan("int8_calib", LINES["8.5.2.2"]))
    with pytest.raises(TensorRTFeatureUnavailable, match="VERSION_COMPATIBLE"):
        build_plan("fp16", LINES["8.5.2.2"], version_compatible=True)


def test_fp16_source_is_the_fp16_onnx_only_where_built_strongly_typed(tmp_path: Path) -> None:
    fp32, fp16 = tmp_path / "model.onnx", tmp_path / "model_fp16.onnx"
    assert select_source(build_plan("fp16", LINES["8.5.2.2"]), fp32, fp16) == fp32
    assert select_source(build_plan("fp16", LINES["11.4.0"]), fp32, fp16) == fp16
    assert select_source(build_plan("int8_qdq", LINES["11.4.0"]), fp32, fp16) == fp32  # the Q/DQ ONNX is given as onnx
    with pytest.raises(ValueError, match=r"give the FP16 ONNX \(--fp16-onnx"):
        select_source(build_plan("fp16", LINES["10.3.0"]), fp32, None)


def test_capabilities_name_the_line_and_each_route() -> None:
    c8, c11 = capabilities(LINES["8.5.2.2"]), capabilities(LINES["11.4.0"])
    assert c8["line"] == "8.x (TensorRT 8.5.2.2)" and c11["line"] == "11.x (TensorRT 11.4.0)"
    assert c8["fp16"] == "the FP32 ONNX, weak typing, BuilderFlag.FP16"
    assert c8["int8_calib"] == "the FP32 ONNX, BuilderFlag.INT8 + IInt8EntropyCalibrator2"
    assert c8["strong_typing"] == "no (weak typing only)"
    assert capabilities(LINES["10.3.0"])["fp16"] == "the FP16 ONNX, strongly typed (STRONGLY_TYPED network)"
    assert c11["fp16"] == "the FP16 ONNX, strongly typed (always, TensorRT >= 11)"
    assert c11["int8_qdq"] == "the Q/DQ INT8 ONNX, strongly typed (always, TensorRT >= 11)"
    assert c11["int8_calib"].startswith("no: TensorRT 11.4.0 cannot calibrate implicit INT8")
    assert c11["strong_typing"] == "always (weak typing removed)" and c11["version_compatible"] == "yes"
    assert describe_plan(build_plan("fp16", LINES["10.3.0"], version_compatible=True)).endswith(", version compatible")


def test_build_options_are_checked() -> None:
    assert BuildOptions("fp16", (1, 4, 8), 512).batch == (1, 4, 8)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BuildOptions("fp16", (4, 2, 8))
    with pytest.raises(ValueError, match="precision"):
        BuildOptions("bf16")
    with pytest.raises(ValueError, match="workspace_mb"):
        BuildOptions("fp16", workspace_mb=0)


# ----------------------------------------------------------------------------- calibration stream and calibrator


def _clips(n: int) -> np.ndarray:
    return np.arange(n * 3 * 2 * 4 * 4, dtype=np.float32).reshape(n, 3, 2, 4, 4)


def test_calibration_stream_batches_in_order_and_drops_the_remainder() -> None:
    clips = np.asfortranarray(_clips(10))  # not C-contiguous: the stream must fix that
    stream = CalibrationBatchStream(clips, batch_size=4)
    assert (len(stream), stream.dropped, stream.batch_shape) == (2, 2, (4, 3, 2, 4, 4))
    assert stream.batch_nbytes == 4 * 3 * 2 * 4 * 4 * 4
    batches = list(stream)
    assert len(batches) == 2
    for i, batch in enumerate(batches):
        assert batch.dtype == np.float32 and batch.flags.c_contiguous and batch.shape == (4, 3, 2, 4, 4)
        np.testing.assert_array_equal(batch, clips[4 * i : 4 * i + 4])
    np.testing.assert_array_equal(next(iter(stream)), clips[:4])  # iterating again restarts


def test_calibration_stream_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="float32"):
        CalibrationBatchStream(_clips(4).astype(np.float64), 2)
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        CalibrationBatchStream(_clips(4)[0], 2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        CalibrationBatchStream(_clips(3), 4)
    with pytest.raises(ValueError, match="batch_size"):
        CalibrationBatchStream(_clips(3), 0)


class _FakeDevice:
    """Stands in for CudaDevice: records what would be copied to the GPU."""

    def __init__(self) -> None:
        self.copies: list[tuple[int, np.ndarray]] = []
        self.allocated: list[int] = []

    def malloc(self, nbytes: int) -> int:
        self.allocated.append(nbytes)
        return 0xC0FFEE

    def htod(self, ptr: int, array: np.ndarray) -> None:
        self.copies.append((ptr, array.copy()))


class _FakeCalibratorBase:
    def __init__(self) -> None:
        self.base_initialised = True


def test_entropy_calibrator_serves_batches_then_signals_exhaustion(tmp_path: Path) -> None:
    trt = types.SimpleNamespace(__version__="8.5.2.2", IInt8EntropyCalibrator2=_FakeCalibratorBase)
    clips = _clips(9)
    stream = CalibrationBatchStream(clips, batch_size=4)
    cache = CalibrationCache(tmp_path / "calib.cache", trt.__version__)
    device = _FakeDevice()
    calib = make_entropy_calibrator(trt, stream, cache, device)
    assert isinstance(calib, _FakeCalibratorBase) and calib.base_initialised
    assert calib.get_batch_size() == 4 and device.allocated == [stream.batch_nbytes]
    assert calib.get_batch(["clip"]) == [0xC0FFEE]
    assert calib.get_batch(["clip"]) == [0xC0FFEE]
    assert calib.get_batch(["clip"]) is None  # 9 clips = 2 full batches; the 9th is dropped
    assert calib.batches_served == 2
    np.testing.assert_array_equal(device.copies[0][1], clips[:4])
    np.testing.assert_array_equal(device.copies[1][1], clips[4:8])
    assert calib.read_calibration_cache() is None
    payload = b"TRT-8502-EntropyCalibration2\nclip: 3c010a14\n"
    calib.write_calibration_cache(memoryview(payload))
    assert calib.read_calibration_cache() == payload
    assert [p.name for p in tmp_path.iterdir()] == ["calib.cache"]  # atomic write left no temp file


def test_entropy_calibrator_refused_when_tensorrt_dropped_it(tmp_path: Path) -> None:
    trt = types.SimpleNamespace(__version__="11.0.0")
    with pytest.raises(TensorRTFeatureUnavailable, match="int8_qdq"):
        make_entropy_calibrator(trt, CalibrationBatchStream(_clips(2), 2), CalibrationCache(tmp_path / "c", "11.0.0"),
                                _FakeDevice())


def test_calibration_cache_ignores_other_versions_and_empty_files(tmp_path: Path) -> None:
    assert (tensorrt_version_code("8.5.2.2"), tensorrt_version_code("8.6.1"), tensorrt_version_code("10.3.0"),
            tensorrt_version_code("11.4.0")) == (8502, 8601, 100300, 110400)
    path = tmp_path / "calib.cache"
    cache = CalibrationCache(path, "8.5.2.2")
    assert cache.read() is None  # absent
    path.write_bytes(b"")
    assert cache.read() is None  # empty
    path.write_bytes(b"TRT-8601-EntropyCalibration2\nclip: 3c010a14\n")
    assert cache.read() is None  # another TensorRT version: recalibrate
    path.write_bytes(b"TRT-8502-MinMaxCalibration\nclip: 3c010a14\n")
    assert cache.read() is None  # another calibrator
    good = b"TRT-8502-EntropyCalibration2\nclip: 3c010a14\n"
    path.write_bytes(good)
    assert cache.read() == good


# ----------------------------------------------------------------------------- sidecar and mismatch


def test_sidecar_records_versions_gpu_input_labels_and_onnx_hash(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not really onnx, but hashed all the same")
    options = BuildOptions("int8_qdq", (1, 2, 8), 256)
    plan = build_plan("int8_qdq", LINES["10.3.0"])
    spec = {"clip_len": 4, "frame_interval": 2}
    side = make_sidecar(onnx_path=onnx, precision="int8_qdq", plan=plan, options=options, tensorrt_version="10.3.0",
                        cuda_version="12.6", gpu_name="Orin", compute_capability="8.7", input_name="clip",
                        input_shape=(-1, 3, 4, 16, 16), input_spec=spec, labels=["a", "b"], build_seconds=1.234)
    assert side["source_onnx_sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert (side["tensorrt_version"], side["cuda_version"]) == ("10.3.0", "12.6")
    assert side["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert side["input"] == {"name": "clip", "shape": [-1, 3, 4, 16, 16], "dtype": "float32"}
    assert side["input_spec"] == spec and side["labels"] == ["a", "b"]
    assert side["batch"] == {"min": 1, "opt": 2, "max": 8} and side["workspace_mb"] == 256
    assert side["network_flags"] == ["STRONGLY_TYPED"] and side["build_seconds"] == 1.23
    assert (side["route"], side["strongly_typed"], side["version_compatible"]) == ("strongly_typed", True, False)
    assert side["route_description"] == "the Q/DQ INT8 ONNX, strongly typed (STRONGLY_TYPED network)"


def test_mismatched_plan_says_rebuild() -> None:
    side = {"tensorrt_version": "8.5.2.2", "gpu": {"name": "Orin", "compute_capability": "8.7"}}
    check_sidecar(side, tensorrt_version="8.5.2.2", gpu_name="Orin", compute_capability="8.7")  # same device: fine
    with pytest.raises(EngineMismatch, match=r"TensorRT 8\.5\.2\.2 \(this device has 10\.3\.0\).*rebuild"):
        check_sidecar(side, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")
    with pytest.raises(EngineMismatch, match=r"compute capability 8\.7 \(this GPU: 9\.0\).*rebuild"):
        check_sidecar(side, tensorrt_version="8.5.2.2", gpu_name="H100", compute_capability="9.0")


def test_version_compatible_plan_loads_on_later_tensorrt_only() -> None:
    side = {"tensorrt_version": "10.3.0", "version_compatible": True, "gpu": {"name": "L4", "compute_capability": "8.9"}}
    check_sidecar(side, tensorrt_version="11.4.0", gpu_name="L4", compute_capability="8.9")  # 10 -> 11: fine
    check_sidecar(side, tensorrt_version="10.3.1", gpu_name="L4", compute_capability="8.9")
    with pytest.raises(EngineMismatch, match=r"version compatible with 10\.3\.0 and later only \(this device has 8\.6\.1\)"):
        check_sidecar(side, tensorrt_version="8.6.1", gpu_name="L4", compute_capability="8.9")
    with pytest.raises(EngineMismatch, match=r"compute capability 8\.9 \(this GPU: 9\.0\)"):  # still tied to the GPU
        check_sidecar(side, tensorrt_version="11.4.0", gpu_name="L4", compute_capability="9.0")
    with pytest.raises(EngineMismatch, match=r"TensorRT 10\.3\.0 \(this device has 11\.4\.0\)"):
        check_sidecar({**side, "version_compatible": False}, tensorrt_version="11.4.0", gpu_name="L4",
                      compute_capability="8.9")


def test_timing_cache_is_per_version_and_gpu(tmp_path: Path) -> None:
    a = timing_cache_path(tmp_path, "8.5.2.2", "Orin (nvgpu)", "8.7")
    b = timing_cache_path(tmp_path, "10.3.0", "Orin (nvgpu)", "8.7")
    assert a.parent == tmp_path and a != b
    assert a.name == "timing-trt8.5.2.2-sm8.7-orin--nvgpu.cache"


# ----------------------------------------------------------------------------- without TensorRT


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_clear_errors_without_tensorrt(tmp_path: Path) -> None:
    ok, reason = tensorrt_status()
    assert not ok and "TensorRT" in reason
    for name in ("tensorrt_fp16", "tensorrt_int8_qdq", "tensorrt_fp32", "tensorrt_int8_calib"):
        assert get_engine(name).status() == (False, reason)  # the engines stage records this reason
    ctx = BuildContext(get_engine("tensorrt_fp16"), "student_kd", tmp_path, tmp_path / "m.onnx", {},
                       EnginesConfig(tensorrt_timing_cache_dir=None), parity_clips=_clips(2), labels=["a"])
    with pytest.raises(EngineSkipped, match="not installed"):
        build_tensorrt(ctx)
    with pytest.raises(TensorRTUnavailable, match="not installed"):
        TensorRTEngine(tmp_path / "model.plan")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"plan")
    with pytest.raises(RuntimeError, match="TensorRT Python package not available"):
        TensorRTRunner(plan)


# ----------------------------------------------------------------------------- with TensorRT and a GPU


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8_qdq", "int8_calib"])
def test_build_and_run_engine_matches_onnxruntime(tmp_path: Path, precision: str) -> None:
    """Every TensorRT row on the GPU at hand, through the engines stage's own builders: the FP16
    ONNX first (so fp16 takes whichever route this TensorRT offers), then the plan, compared with
    ONNX Runtime on the ONNX it was built from. int8_calib is refused where the line lacks it."""
    ok, reason = tensorrt_status()
    if not ok:
        pytest.skip(reason)
    from _deploy_run import SPEC, make_run

    from edgekd.engines.rows import build_onnx_fp16
    from edgekd.engines.tensorrt_engine import check_tensorrt_parity, tensorrt_capabilities

    run = make_run(tmp_path / "run")
    clips = np.random.default_rng(0).standard_normal((8, 3, 4, 16, 16), dtype=np.float32)
    options = EnginesConfig(tensorrt_batch=(1, 2, 4), tensorrt_workspace_mb=256,
                            tensorrt_timing_cache_dir=str(tmp_path / "cache"))

    def ctx(row: str) -> BuildContext:
        return BuildContext(get_engine(row), "student_kd", run, run / "export/student_kd.onnx", {}, options,
                            calibration=clips, parity_clips=clips, input_spec=SPEC, labels=["a", "b", "c"])

    fp16_onnx = build_onnx_fp16(ctx("onnxruntime_fp16"))
    caps = tensorrt_capabilities()
    assert caps is not None
    if precision == "int8_calib" and caps["int8_calib"].startswith("no:"):
        with pytest.raises(EngineSkipped, match="build int8_qdq from the Q/DQ ONNX"):
            build_tensorrt(ctx("tensorrt_int8_calib"))
        return
    row = build_tensorrt(ctx(f"tensorrt_{precision}"))
    print(f"\n{precision}: {caps['line']}, {row['sidecar']['route_description']}, parity {row['parity']}, "
          f"FP16 ONNX parity {fp16_onnx['parity']}")
    assert row["status"] == "built", row
    # TensorRT against the ONNX it was built from. FP16: TensorRT and ONNX Runtime compute the same
    # FP16 graph (or, on 8.x, TensorRT rounds where that graph rounds), each within L*u of it, so they
    # differ by at most 2*L*u of the logit scale: the FP16 ONNX's own tolerance. FP32: TensorRT uses
    # TF32 by default on Ampere and later, which rounds GEMM inputs to 10-bit mantissas, the same
    # u = 2^-11, so the same bound. INT8: as before, a few quantization steps of these small logits.
    tol = fp16_onnx["parity"]["tolerance_abs"]
    bound = {"fp32": tol, "fp16": tol, "int8_qdq": 0.2, "int8_calib": 0.2}
    assert row["parity"]["max_abs_delta"] < bound[precision]
    assert list((tmp_path / "cache").iterdir()), "timing cache was not written"
    engine = TensorRTEngine(row["artifact"])
    parity = check_tensorrt_parity(engine, row["sidecar"]["source_onnx"], np.zeros((4, 3, 4, 16, 16), np.float32),
                                   batch_size=4)
    assert parity["top1_agreement"] == 1.0
