"""Engines agree with PyTorch within their precision, say which precision ran, and fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.engines import (
    DESCRIBE_KEYS,
    ENGINES,
    OnnxRuntimeEngine,
    OpenVinoEngine,
    TensorRTUnavailable,
    TorchEngine,
    build_openvino_fp32,
    build_openvino_int8,
    engine_status,
    get_engine,
    require_tensorrt,
    supported_precision_hints,
    tensorrt_status,
)
from edgekd.export import export_onnx

SHAPE = (3, 8, 32, 32)
NUM_CLASSES = 4
THREADS = 2
# Class k is a clip whose per-channel means are shifted by _OFFSETS[k]: learnable by
# conv + global pooling in a few steps, so the trained model has real decision margins.
_OFFSETS = np.array([[1, 1, 0], [-1, 0, 1], [0, -1, -1], [1, -1, 1]], dtype=np.float32)


def _clips(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, NUM_CLASSES, n)
    noise = rng.standard_normal((n, *SHAPE)).astype(np.float32)
    return (noise + _OFFSETS[labels][:, :, None, None, None]).astype(np.float32), labels


def _trained_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(3, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, NUM_CLASSES),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    rng = np.random.default_rng(0)
    for _ in range(15):
        x, y = _clips(16, rng)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("engines")
    model = _trained_model()
    onnx_path = export_onnx(model, SHAPE, root / "model.onnx")
    test_x, test_y = _clips(64, np.random.default_rng(1))
    with torch.no_grad():
        reference = model(torch.from_numpy(test_x)).numpy()
    assert (reference.argmax(1) == test_y).mean() >= 0.9, "tiny model did not learn; INT8 test would be meaningless"
    return {"root": root, "model": model, "onnx": onnx_path, "x": test_x, "ref": reference}


@pytest.fixture(scope="module")
def fp32_ir(artifacts: dict) -> Path:
    return build_openvino_fp32(artifacts["onnx"], artifacts["root"] / "ov_fp32")


def _assert_describe(engine, precision: str) -> dict:
    info = engine.describe()
    assert set(DESCRIBE_KEYS) <= set(info)
    assert info["precision"] == precision
    assert info["name"] == engine.name
    return info


def test_torch_engine(artifacts: dict) -> None:
    engine = TorchEngine(artifacts["model"], threads=THREADS)
    logits = engine.infer(artifacts["x"])
    assert logits.dtype == np.float32 and logits.shape == (64, NUM_CLASSES)
    np.testing.assert_allclose(logits, artifacts["ref"], atol=1e-6)
    info = _assert_describe(engine, "fp32")
    assert info["threads"] == THREADS and info["backend"] == "pytorch"


def test_onnxruntime_matches_torch(artifacts: dict) -> None:
    engine = OnnxRuntimeEngine(artifacts["onnx"], threads=THREADS)
    for batch in (1, 5):  # dynamic batch survives into the engine
        assert engine.infer(artifacts["x"][:batch]).shape == (batch, NUM_CLASSES)
    logits = engine.infer(artifacts["x"])
    assert np.abs(logits - artifacts["ref"]).max() < 1e-4
    info = _assert_describe(engine, "fp32")
    assert info["threads"] == THREADS and info["model_file"] == str(artifacts["onnx"])


def test_openvino_fp32_forces_f32(artifacts: dict, fp32_ir: Path) -> None:
    assert fp32_ir.is_file() and fp32_ir.with_suffix(".bin").is_file()
    engine = OpenVinoEngine(fp32_ir, threads=THREADS)
    logits = engine.infer(artifacts["x"])
    assert np.abs(logits - artifacts["ref"]).max() < 1e-3
    info = _assert_describe(engine, "fp32")
    assert info["inference_precision_hint"] == "f32"
    assert info["ir_precision"] == "fp32"
    assert info["threads"] == THREADS and info["performance_hint"] == "LATENCY"
    assert engine.name == "openvino_fp32"


def test_openvino_bf16_hint(artifacts: dict, fp32_ir: Path) -> None:
    if "bf16" not in supported_precision_hints():
        pytest.skip("this CPU has no BF16 support")
    engine = OpenVinoEngine(fp32_ir, threads=THREADS, precision_hint="bf16")
    delta = np.abs(engine.infer(artifacts["x"]) - artifacts["ref"]).max()
    assert 0 < delta < 0.1  # bf16 really ran (not exact), and stayed close
    info = _assert_describe(engine, "bf16")
    assert info["inference_precision_hint"] == "bf16" and engine.name == "openvino_bf16"


def test_openvino_default_hint_is_reported_not_assumed(fp32_ir: Path) -> None:
    engine = OpenVinoEngine(fp32_ir, threads=THREADS, precision_hint=None)
    info = engine.describe()
    assert info["requested_precision_hint"] is None
    assert info["inference_precision_hint"] in {"f32", "bf16", "f16"}
    assert info["name"] == f"openvino_{info['precision']}"


def test_openvino_int8_agrees_with_fp32(artifacts: dict) -> None:
    calibration = (clip[None] for clip in _clips(32, np.random.default_rng(2))[0])  # a generator on purpose
    xml = build_openvino_int8(artifacts["onnx"], calibration, artifacts["root"] / "ov_int8", subset_size=32)
    assert (xml.parent / "build.json").is_file()
    engine = OpenVinoEngine(xml, threads=THREADS)
    logits = engine.infer(artifacts["x"])
    agreement = (logits.argmax(1) == artifacts["ref"].argmax(1)).mean()
    assert agreement >= 0.9, f"INT8 top-1 agreement with FP32 only {agreement:.2f}"
    relative_error = np.abs(logits - artifacts["ref"]).mean() / np.abs(artifacts["ref"]).mean()
    assert 0 < relative_error < 0.05  # int8 really ran; the FP32 classifier head keeps logits close
    assert json.loads((xml.parent / "build.json").read_text())["kept_fp32"]
    info = _assert_describe(engine, "int8")
    assert info["ir_precision"] == "int8"
    assert info["inference_precision_hint"] == "f32"  # the unquantized parts stay FP32 by default
    assert "int8" in info["notes"].lower()


def test_int8_calibration_errors(artifacts: dict) -> None:
    few = [c[None] for c in _clips(4, np.random.default_rng(3))[0]]
    with pytest.raises(ValueError, match="subset_size"):
        build_openvino_int8(artifacts["onnx"], few, artifacts["root"] / "bad", subset_size=8)
    wrong = [c.astype(np.float64) for c in few]
    with pytest.raises(ValueError, match="item 0"):
        build_openvino_int8(artifacts["onnx"], wrong, artifacts["root"] / "bad", subset_size=4)
    assert not (artifacts["root"] / "bad").exists()


def test_engines_reject_wrong_input(artifacts: dict, fp32_ir: Path) -> None:
    engine = OnnxRuntimeEngine(artifacts["onnx"])
    with pytest.raises(TypeError, match="float32"):
        engine.infer(artifacts["x"].astype(np.float64))
    with pytest.raises(ValueError, match="N, C, T, H, W"):
        engine.infer(artifacts["x"][0])
    with pytest.raises(FileNotFoundError, match=r"nope\.xml"):
        OpenVinoEngine(artifacts["root"] / "nope.xml")
    with pytest.raises(ValueError, match="precision_hint"):
        OpenVinoEngine(fp32_ir, precision_hint="fp32")


def test_backend_table() -> None:
    status = engine_status()
    assert all(status[n][0] for n in ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_int8"))
    names = [r.name for r in ENGINES]
    assert len(names) == len(set(names))
    for row in ENGINES:  # names say (backend, precision); every row opens, and builds unless it reuses a file
        assert row.name.startswith(f"{row.backend}_{row.precision}")
        assert callable(row.loader()) and (row.build is None) == (row.name in ("pytorch_fp32", "onnxruntime_fp32",
                                                                                "openvino_bf16", "onnxruntime_fp32_stream"))
    bf16 = get_engine("openvino_bf16")
    assert bf16.needs == ("openvino_fp32",) and bf16.artifact == get_engine("openvino_fp32").artifact
    assert get_engine("tensorrt_int8_qdq").needs == ("onnxruntime_int8",)
    # TensorRT >= 10 builds FP16 strongly typed from the FP16 ONNX row, which the engines stage builds first
    fp16 = get_engine("onnxruntime_fp16")
    assert get_engine("tensorrt_fp16").needs == ("onnxruntime_fp16",) and fp16.edge and status["onnxruntime_fp16"][0]
    assert fp16.artifact == "engines/{model}/onnxruntime_fp16/model.onnx" and names.index("onnxruntime_fp16") < names.index(
        "tensorrt_fp16")
    # streaming rows: the step graph export writes, and its IR; each timed against its backend's clip row
    streaming = {r.name: r.stream_of for r in ENGINES if r.stream_of}
    assert streaming == {"onnxruntime_fp32_stream": "onnxruntime_fp32", "openvino_fp32_stream": "openvino_fp32",
                         "openvino_int8_stream": "openvino_int8"}
    assert get_engine("onnxruntime_fp32_stream").artifact == "export/{model}_step.onnx"
    with pytest.raises(ValueError, match="did you mean 'openvino_int8'"):
        get_engine("openvino_in8")
    with pytest.raises(ValueError, match="one row per precision"):
        get_engine("tensorrt")


def test_tensorrt_unavailable_here_is_explained() -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed; covered by test_tensorrt_available")
    ok, reason = tensorrt_status()
    assert ok is False
    assert "not installed" in reason
    with pytest.raises(TensorRTUnavailable, match="not installed"):
        require_tensorrt()
    assert not any(ok for name, (ok, _) in engine_status().items() if name.startswith("tensorrt"))


@pytest.mark.tensorrt
def test_tensorrt_available() -> None:
    trt = pytest.importorskip("tensorrt")
    ok, reason = tensorrt_status()
    if not ok:
        pytest.skip(reason)
    assert reason.startswith(f"TensorRT {trt.__version__}")
    assert require_tensorrt() is trt
