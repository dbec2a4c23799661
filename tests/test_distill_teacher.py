"""Frozen-teacher runners: OpenVINO against PyTorch (parity), flow input, refusals."""

import pytest
import torch

from edgekd.distill.taps import default_feature_path
from edgekd.distill.teacher import OpenVinoTeacher, TorchTeacher, make_teacher
from edgekd.engines.openvino_engine import supported_precision_hints
from edgekd.models import build_model

SHAPE = (3, 4, 16, 16)


def _teacher(in_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("c3d_teacher", num_classes=6, input_size=SHAPE[1:], width_mult=0.125, dropout=0.0,
                       in_channels=in_channels)


def test_openvino_f32_teacher_matches_pytorch_logits_and_features():
    """Tolerance: 1e-4 absolute on logits and features (both fp32; measured ~2e-7 here)."""
    x = torch.randn(5, *SHAPE)  # a batch size the conversion example did not use: dynamic batch
    tap = default_feature_path(_teacher())  # C3D: relu7, an in-place ReLU
    ref = TorchTeacher(_teacher(), input_shape=SHAPE, feature_tap=tap)(x)
    ov = OpenVinoTeacher(_teacher(), input_shape=SHAPE, feature_tap=tap, precision="f32")
    got = ov(x)
    assert got.logits.shape == ref.logits.shape == (5, 6) and got.features.shape == ref.features.shape == (5, 512)
    assert (got.logits - ref.logits).abs().max().item() < 1e-4
    assert (got.features - ref.features).abs().max().item() < 1e-4
    assert torch.equal(got.logits.argmax(1), ref.logits.argmax(1))
    assert ov.describe()["precision"] == "f32" and ov.describe()["ir_precision"] == "fp32" and ov.feature_dim == 512


@pytest.mark.skipif("bf16" not in supported_precision_hints(), reason="CPU without native bf16")
def test_openvino_bf16_teacher_agrees_with_pytorch_bf16_autocast():
    """bf16 on both sides (different kernels): agreement within 5% of the logit range."""
    x = torch.randn(4, *SHAPE)
    ref = TorchTeacher(_teacher(), input_shape=SHAPE, precision="bf16")(x).logits
    got = make_teacher("openvino", _teacher(), input_shape=SHAPE, feature_tap=None, precision="bf16",
                       channels_last=False)(x).logits
    assert (got - ref).abs().max().item() <= 0.05 * (ref.max() - ref.min()).item()


def test_flow_teacher_takes_two_channel_clips():
    t = TorchTeacher(_teacher(in_channels=2), input_shape=(2, *SHAPE[1:]))
    assert t(torch.randn(3, 2, *SHAPE[1:])).logits.shape == (3, 6)
    assert all(not p.requires_grad for p in t.model.parameters()) and not t.model.training


def test_unknown_backend_and_precision_are_refused():
    with pytest.raises(ValueError, match="backend"):
        make_teacher("tensorrt", _teacher(), input_shape=SHAPE, feature_tap=None, precision="fp32", channels_last=False)
    with pytest.raises(ValueError, match="precision"):
        OpenVinoTeacher(_teacher(), input_shape=SHAPE, precision="f16")
    with pytest.raises(ValueError, match="calibration clips"):
        make_teacher("openvino_int8", _teacher(), input_shape=SHAPE, feature_tap=None, precision="fp32",
                     channels_last=False)


def test_openvino_int8_teacher_is_quantized_and_close_to_the_fp32_teacher():
    """NNCF INT8 of the teacher, calibrated on 32 clips: the IR really holds int8 ops, logits and
    features stay close to PyTorch fp32 (max error measured 3.5% of the logit range here; the
    test allows 15%), and the describe() record says what it is."""
    torch.manual_seed(1)
    calib = torch.rand(32, *SHAPE).numpy()
    x = torch.rand(8, *SHAPE)
    tap = default_feature_path(_teacher())
    ref = TorchTeacher(_teacher(), input_shape=SHAPE, feature_tap=tap)(x)
    q = make_teacher("openvino_int8", _teacher(), input_shape=SHAPE, feature_tap=tap, precision="fp32",
                     channels_last=False, calibration=calib)
    got = q(x)
    d = q.describe()
    assert (d["precision"], d["ir_precision"], d["calibration_clips"]) == ("int8", "int8", 32)
    assert got.logits.shape == ref.logits.shape and got.features.shape == ref.features.shape
    span = (ref.logits.max() - ref.logits.min()).item()
    err = (got.logits - ref.logits).abs().max().item()
    print(f"int8 teacher: max |logit error| {err:.4g} of range {span:.4g}")
    assert err <= 0.15 * span
    f_span = (ref.features.max() - ref.features.min()).item()
    assert (got.features - ref.features).abs().max().item() <= 0.15 * f_span
