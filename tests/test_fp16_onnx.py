"""The FP16 ONNX (what TensorRT >= 10 builds FP16 from, strongly typed): FP32 inputs and outputs,
softmax and reductions kept FP32, weights rounded exactly as IEEE FP16 rounds them, and parity with
the FP32 ONNX on ONNX Runtime CPU at the tolerance FP16 arithmetic allows (edgekd/engines/fp16.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from edgekd.engines import fp16
from edgekd.engines.fp16 import (
    FP16_UNIT_ROUNDOFF,
    FP16ParityError,
    build_fp16_onnx,
    compare_logits,
    fp16_parity,
    fp16_summary,
    fp16_tolerance,
)
from edgekd.export import export_onnx

SHAPE = (3, 4, 16, 16)


class _Net(nn.Module):
    """Conv -> ReLU -> global average pool (a reduction) -> Linear -> Softmax: every case the
    conversion distinguishes, in five ops."""

    def __init__(self, head_scale: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():
            self.fc.weight.mul_(head_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(self.pool(torch.relu(self.conv(x))).flatten(1)), dim=1)


def _export(tmp: Path, name: str, head_scale: float = 1.0) -> Path:
    torch.manual_seed(0)
    return export_onnx(_Net(head_scale).eval(), SHAPE, tmp / f"{name}.onnx", opset=17, simplify=True)


def _clips(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, *SHAPE), dtype=np.float32)


def _types(path: Path) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    out = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]}
    return {**out, **{t.name: t.data_type for t in g.initializer}}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("fp16")
    src = _export(tmp, "model")
    return {"src": src, **build_fp16_onnx(src, tmp / "out" / "model.onnx", parity_clips=_clips())}


def test_io_stays_fp32_softmax_and_reductions_stay_fp32_the_rest_is_fp16(converted: dict) -> None:
    model = onnx.load(str(converted["model"]))
    types = _types(converted["model"])
    assert types["clip"] == types["logits"] == TensorProto.FLOAT  # the runtime feeds and reads float32
    ops = {n.op_type: n for n in model.graph.node}
    for op in ("GlobalAveragePool", "Softmax"):
        assert all(types[t] == TensorProto.FLOAT for t in (*ops[op].input, *ops[op].output)), op
    for op in ("Conv", "Gemm", "Relu"):
        assert all(types[t] == TensorProto.FLOAT16 for t in ops[op].output), op
    s = converted["conversion"]
    assert s["fp16_nodes"] == {"Conv": 1, "Flatten": 1, "Gemm": 1, "Relu": 1}
    assert s["fp32_nodes"] == {"GlobalAveragePool": 1, "Softmax": 1}
    # rounding: the clip's Cast to FP16, Conv, the pooled mean's Cast back to FP16, Gemm (ReLU, Flatten are exact)
    assert s["rounding_ops"] == 4 and s["kept_fp32_for_range"] == []
    assert s["converter"].startswith("onnxconverter-common 1.")


def test_weights_are_rounded_to_nearest_fp16_and_nothing_else(converted: dict) -> None:
    """Bit-exact: the FP16 weights are numpy's round-to-nearest-even of the FP32 ones (every weight
    here lies inside FP16's normal range, so no clamping applies)."""
    src = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(converted["src"])).graph.initializer}
    out = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(converted["model"])).graph.initializer}
    weights = [n for n, w in src.items() if w.dtype == np.float32]
    assert len(weights) == 4  # conv and fc, weight and bias
    for name in weights:
        assert out[name].dtype == np.float16
        np.testing.assert_array_equal(out[name].view(np.uint16), src[name].astype(np.float16).view(np.uint16))


def test_parity_is_within_the_fp16_bound_and_fp16_changed_something(converted: dict) -> None:
    p = converted["parity"]
    assert p["tolerance_relative"] == fp16_tolerance(4) == 8 * FP16_UNIT_ROUNDOFF  # 2 * L * u, L = 4
    assert 0 < p["relative_delta"] <= p["tolerance_relative"]  # nonzero: the model really computes in FP16
    assert p["passed"] and p["finite"] and p["top1_agreement"] == 1.0 and p["n_clips"] == 6
    assert p["max_abs_delta"] == pytest.approx(p["relative_delta"] * p["reference_scale"], rel=1e-12)


def test_a_wrong_fp16_model_fails_parity_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                converted: dict) -> None:
    """Head weights 50% off move these softmax outputs by about 3% of their scale, far beyond
    2*L*u = 0.39%: the check must see it, and the build must not land."""
    from onnxconverter_common import float16

    real = float16.convert_float_to_float16

    def off_by_half(model: onnx.ModelProto, **kwargs: object) -> onnx.ModelProto:
        out = real(model, **kwargs)
        for t in out.graph.initializer:
            w = numpy_helper.to_array(t)
            if w.dtype == np.float16 and w.shape == (5, 8):  # the head's weight
                t.CopyFrom(numpy_helper.from_array((w * np.float16(1.5)).astype(np.float16), t.name))
        return out

    monkeypatch.setattr(float16, "convert_float_to_float16", off_by_half)
    out = tmp_path / "bad" / "model.onnx"
    with pytest.raises(FP16ParityError, match=r"beyond FP16 rounding.*bound 2\*L\*u = 0\.0039.*L = 4"):
        build_fp16_onnx(converted["src"], out, parity_clips=_clips())
    assert not out.exists() and not [p for p in out.parent.iterdir()]  # no model, no temporary left behind


def test_weights_beyond_fp16_range_keep_their_node_fp32(tmp_path: Path) -> None:
    """A weight above 65504 would become inf in FP16: its node stays FP32 and is listed, the rest converts."""
    src = _export(tmp_path, "wide", head_scale=1e6)
    fc = next(t for t in onnx.load(str(src)).graph.initializer if numpy_helper.to_array(t).shape == (5, 8))
    assert np.abs(numpy_helper.to_array(fc)).max() > fp16.FP16_MAX
    built = build_fp16_onnx(src, tmp_path / "out.onnx", parity_clips=_clips(4))
    gemm = next(n for n in onnx.load(str(built["model"])).graph.node if n.op_type == "Gemm")
    assert built["conversion"]["kept_fp32_for_range"] == [gemm.name]
    assert _types(built["model"])[fc.name] == TensorProto.FLOAT
    assert built["conversion"]["fp16_nodes"]["Conv"] == 1 and built["parity"]["passed"]


def test_compare_logits_allows_flips_only_within_the_tolerance_margin() -> None:
    ref = np.array([[1.0, 0.999, 0.0], [1.0, 0.0, 0.0]], np.float32)
    near_tie = np.array([[0.999, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)  # moved 1e-3 <= tol 1e-2: allowed
    r = compare_logits(ref, near_tie, 0.01)
    assert (r["top1_flips"], r["flips_beyond_tolerance"], r["passed"]) == (1, 0, True)
    assert r["tolerance_abs"] == pytest.approx(0.01) and r["relative_delta"] == pytest.approx(1e-3, rel=1e-3)
    clear_flip = np.array([[1.0, 0.999, 0.0], [0.0, 1.0, 0.0]], np.float32)  # margin 1 > 2 * tol
    r = compare_logits(ref, clear_flip, 0.01)
    assert (r["flips_beyond_tolerance"], r["passed"]) == (1, False)
    r = compare_logits(ref, np.full_like(ref, np.nan), 0.01)
    assert (r["finite"], r["passed"], r["max_abs_delta"]) == (False, False, float("inf"))


def test_refuses_what_it_should_not_convert(tmp_path: Path, converted: dict) -> None:
    with pytest.raises(ValueError, match="is not an FP32 ONNX"):
        build_fp16_onnx(converted["model"], tmp_path / "again.onnx", parity_clips=_clips(2))
    with pytest.raises(ValueError, match="nothing was converted"):
        fp16_summary(converted["src"])  # the FP32 file read as if it were the FP16 one
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        fp16_parity(converted["src"], converted["model"], _clips(2)[0])
    with pytest.raises(FileNotFoundError):
        build_fp16_onnx(tmp_path / "missing.onnx", tmp_path / "x.onnx", parity_clips=_clips(2))


def test_engines_row_writes_model_and_sidecar(tmp_path: Path, converted: dict) -> None:
    from edgekd.engines.rows import BuildContext, build_onnx_fp16, load_onnxruntime
    from edgekd.engines.table import get_engine
    from edgekd.recipe import EnginesConfig

    onnx_path = tmp_path / "export" / "student_kd.onnx"
    onnx_path.parent.mkdir()
    onnx_path.write_bytes(converted["src"].read_bytes())
    ctx = BuildContext(get_engine("onnxruntime_fp16"), "student_kd", tmp_path, onnx_path,
                       {"source_onnx": str(onnx_path), "source_onnx_sha256": "abc"}, EnginesConfig(),
                       parity_clips=_clips())
    record = build_onnx_fp16(ctx)
    model = tmp_path / "engines" / "student_kd" / "onnxruntime_fp16" / "model.onnx"
    assert record["artifact"] == str(model) and record["parity"]["passed"]
    side = json.loads((model.parent / "engine.json").read_text())
    assert (side["precision"], side["format"], side["source_onnx_sha256"]) == ("fp16", "onnx_fp16", "abc")
    assert side["parity_vs_fp32_onnx"] == record["parity"] and side["conversion"]["rounding_ops"] == 4
    engine = load_onnxruntime(model, threads=1, name="onnxruntime_fp16")
    x = _clips(2)
    np.testing.assert_allclose(engine.infer(x), load_onnxruntime(onnx_path, threads=1, name="fp32").infer(x),
                               atol=record["parity"]["tolerance_abs"], rtol=0)
