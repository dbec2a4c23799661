"""C3D teacher/student: the paper's parameter counts, shapes at any input size, gradients."""

import pytest
import torch

from edgekd.models import build_model, list_models
from edgekd.models.complexity import count_macs, count_params


def test_paper_parameter_counts_at_101_classes():
    # Ullah & Munir: ~78.4M teacher (the original C3D), ~7.3M student, at UCF101's 101 classes.
    teacher = build_model("c3d_teacher", num_classes=101)
    student = build_model("c3d_student", num_classes=101)
    assert count_params(teacher) == 78_409_573
    assert count_params(student) == 7_298_405
    assert teacher.flat_features == 8192 and student.flat_features == 2048


def test_fc6_sizes_and_original_pooling():
    t = build_model("c3d_teacher", num_classes=101)
    assert t.fc6.in_features == 8192 and t.fc6.out_features == 4096 and t.fc7.out_features == 4096
    s = build_model("c3d_student", num_classes=101)
    assert (s.fc6.in_features, s.fc6.out_features, s.fc7.out_features) == (2048, 2048, 1024)
    assert t.features.pool1.kernel_size == (1, 2, 2)
    assert t.features.pool5.padding == (0, 1, 1)
    convs = [m.out_channels for m in s.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs == [16, 32, 32, 32, 64, 64, 128, 128]


def test_c3d_macs_match_the_published_38_5_gmacs():
    # C3D at 16x112x112 is the well-known ~38.5 GMAC network.
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        m = build_model("c3d_teacher", num_classes=101)
    assert count_macs(m, (3, 16, 112, 112)) / 1e9 == pytest.approx(38.55, abs=0.05)


@pytest.mark.parametrize("size", [(16, 112, 112), (8, 56, 56), (4, 20, 30), (1, 7, 9), (16, 64, 48)])
def test_any_input_size_works(size):
    m = build_model("c3d_student", num_classes=5, input_size=size)
    out = m(torch.randn(2, 3, *size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient():
    m = build_model("c3d_student", num_classes=4, input_size=(8, 32, 32), width_mult=0.5)
    loss = m(torch.randn(2, 3, 8, 32, 32)).logsumexp(1).sum()
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_width_mult_scales_layers():
    m = build_model("c3d_teacher", num_classes=3, input_size=(8, 32, 32), width_mult=0.25)
    assert [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv3d)][:2] == [16, 32]


def test_registry_suggests_close_name():
    assert {"c3d_teacher", "c3d_student"} <= set(list_models())
    with pytest.raises(KeyError, match="did you mean 'c3d_student'"):
        build_model("c3d_studnet", num_classes=3)


@pytest.mark.parametrize("size", [(16, 32, 40), (5, 13, 17), (8, 56, 56)])
def test_odd_sizes_export_to_onnx_with_the_same_shapes(tmp_path, size):
    # Ceil-mode pooling once gave fc6 2048 inputs in PyTorch but 3072 in ONNX at 32x40.
    import numpy as np
    import onnxruntime as ort

    from edgekd.export.onnx_export import export_onnx

    m = build_model("c3d_student", num_classes=4, input_size=size, width_mult=0.5).eval()
    path = export_onnx(m, (3, *size), tmp_path / "m.onnx")
    x = torch.randn(2, 3, *size)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"clip": x.numpy()})[0]
    with torch.no_grad():
        want = m(x).numpy()
    assert got.shape == (2, 4)
    assert np.abs(got - want).max() < 1e-4


def test_c3d_bn_variants_add_one_batch_norm_per_conv_and_drop_conv_biases():
    """c3d_*_bn: same layers as the paper's C3D plus BatchNorm3d after each of the 8 convolutions;
    a conv bias before batch norm is redundant, so the parameter delta is exactly
    sum(2 * width) (BN affine) - sum(width) (conv biases) = sum(widths)."""
    import torch.nn as nn

    from edgekd.models.c3d import STUDENT_WIDTHS, TEACHER_WIDTHS

    for plain, bn, widths in (("c3d_teacher", "c3d_teacher_bn", TEACHER_WIDTHS),
                              ("c3d_student", "c3d_student_bn", STUDENT_WIDTHS)):
        a, b = build_model(plain, num_classes=10), build_model(bn, num_classes=10)
        n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert n(b) - n(a) == sum(widths)
        assert sum(isinstance(m, nn.BatchNorm3d) for m in b.modules()) == 8
    m = build_model("c3d_student_bn", num_classes=4, input_size=(8, 32, 40), width_mult=0.5).eval()
    assert m(torch.randn(2, 3, 8, 32, 40)).shape == (2, 4)
