"""ONNX export: a valid, opset>=17, dynamic-batch, numerically faithful and atomically written file."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgekd.export import check_parity, export_onnx

SHAPE = (3, 8, 32, 32)
NUM_CLASSES = 5


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(3, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, NUM_CLASSES),
    )


def _clips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, object]:
    model = _tiny_model()
    path = export_onnx(model, SHAPE, tmp_path_factory.mktemp("export") / "tiny.onnx")
    return model, path


def test_export_writes_valid_model(exported) -> None:
    _, path = exported
    assert path.is_file() and path.stat().st_size > 0
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = {o.domain: o.version for o in proto.opset_import}[""]
    assert opset >= 17
    assert [i.name for i in proto.graph.input] == ["clip"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_export_batch_axis_is_dynamic(exported) -> None:
    _, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        (logits,) = session.run(None, {"clip": _clips(batch)})
        assert logits.shape == (batch, NUM_CLASSES)
        assert logits.dtype == np.float32


def test_parity_with_torch(exported) -> None:
    model, path = exported
    report = check_parity(model, path, _clips(10, seed=1), batch_size=4)
    assert report["n_clips"] == 10
    assert report["max_abs_delta"] < 1e-4
    assert 0 <= report["mean_abs_delta"] <= report["max_abs_delta"]
    assert report["top1_agreement"] == 1.0
    assert report["provider"] == "CPUExecutionProvider"
    assert report["onnxruntime_version"] == ort.__version__


def test_export_restores_training_mode(tmp_path) -> None:
    model = _tiny_model().train()
    export_onnx(model, SHAPE, tmp_path / "m.onnx", simplify=False)
    assert model.training


def test_failed_export_keeps_existing_file(exported, tmp_path, monkeypatch) -> None:
    _, good = exported
    target = tmp_path / "model.onnx"
    target.write_bytes(good.read_bytes())
    before = target.read_bytes()

    def broken_export(*args, **kwargs):
        out = args[2]
        with open(out, "wb") as handle:  # a half-written file, as a crash would leave
            handle.write(b"partial")
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(RuntimeError, match="simulated exporter crash"):
        export_onnx(_tiny_model(), SHAPE, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp file left


def test_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="input_shape"):
        export_onnx(_tiny_model(), (3, 8, 32), tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float64"):
        export_onnx(_tiny_model().double(), SHAPE, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ValueError, match="float32"):
        check_parity(_tiny_model(), tmp_path / "m.onnx", _clips(2).astype(np.float64))


def test_step_export_of_a_streaming_model(tmp_path) -> None:
    """``export_step_onnx``: the online TSM's per-frame graph with its step spec beside it (names,
    state shapes, the window), every tensor with a dynamic batch axis; ``check_stream_parity``
    streams clips through it and compares with the clip logits (FP32: reassociation only)."""
    import json

    from edgekd.export import check_stream_parity, export_step_onnx
    from edgekd.models import build_model

    torch.manual_seed(0)
    model = build_model("tsm_mobilenetv2_online", num_classes=3, input_size=(4, 32, 32), width_mult=0.5).eval()
    with torch.no_grad():
        model.cls_head.fc_cls.weight.normal_(0, 0.05)  # logits of order 1, not the fresh head's ~1e-3
    path = export_step_onnx(model, (3, 32, 32), tmp_path / "m_step.onnx", window=4)
    spec = json.loads((tmp_path / "m_step.json").read_text())
    assert spec["format"] == "edgekd-step-v1" and spec["model"] == "m_step.onnx" and spec["window"] == 4
    assert spec["logits"] == {"name": "logits", "classes": 3, "dtype": "float32"} and len(spec["state"]) == 10
    proto = onnx.load(str(path))
    names = [i.name for i in proto.graph.input] + [o.name for o in proto.graph.output]
    assert names == ["frame", *(f"shift_in_{i}" for i in range(10)), "logits", *(f"shift_out_{i}" for i in range(10))]
    assert all(v.type.tensor_type.shape.dim[0].dim_param == "batch" for v in (*proto.graph.input, *proto.graph.output))
    clips = np.random.default_rng(0).standard_normal((3, 3, 4, 32, 32)).astype(np.float32)
    report = check_stream_parity(model, path, clips)
    assert report["n_clips"] == 3 and report["frames"] == 4 and report["top1_agreement"] == 1.0
    assert report["max_abs_delta"] <= 1e-4 and report["max_abs_delta_frames"] <= 1e-4
    with pytest.raises(ValueError, match="do not fit the step spec"):
        check_stream_parity(model, path, clips[:, :, :3])


def test_step_export_refuses_what_cannot_stream(tmp_path) -> None:
    from edgekd.export import export_step_onnx
    from edgekd.models import build_model

    with pytest.raises(TypeError, match="does not stream"):
        export_step_onnx(_tiny_model(), (3, 32, 32), tmp_path / "s.onnx", window=4)
    offline = build_model("tsm_mobilenetv2", num_classes=3, input_size=(4, 32, 32), width_mult=0.5)
    with pytest.raises(ValueError, match="online TSM-MobileNetV2"):
        export_step_onnx(offline, (3, 32, 32), tmp_path / "s.onnx", window=4)
    online = build_model("tsm_mobilenetv2_online", num_classes=3, input_size=(4, 32, 32), width_mult=0.5)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        export_step_onnx(online, (3, 4, 32, 32), tmp_path / "s.onnx", window=4)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())
