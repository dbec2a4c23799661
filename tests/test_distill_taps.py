"""Feature taps by module path, the student-side projection and cross-architecture Hu KD."""

import pytest
import torch
import torch.nn as nn

from edgekd.distill.kd import build_kd
from edgekd.distill.losses.feature_mse_kl import hu_kd_loss
from edgekd.distill.projection import feature_projection
from edgekd.distill.taps import FeatureTap, default_feature_path, parse_tap
from edgekd.models import build_model
from edgekd.recipe import DistillConfig

SHAPE = (3, 4, 16, 16)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))


def test_tap_records_output_or_input_of_the_named_module():
    m = _mlp()
    x = torch.randn(2, 6)
    want = m[1](x)
    out_tap, in_tap = FeatureTap(m, "1"), FeatureTap(m, "3:input")
    m(x)
    assert torch.equal(out_tap.pop(), want)
    assert torch.equal(in_tap.pop(), torch.relu(want))
    with pytest.raises(RuntimeError, match="recorded nothing"):
        out_tap.pop()  # popping clears


def test_tap_refuses_a_module_that_runs_twice_and_unknown_paths():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(3, 3), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(self.act(x)))

    m = Twice()
    tap = FeatureTap(m, "act")
    m(torch.randn(1, 3))
    with pytest.raises(RuntimeError, match="ran 2 times"):
        tap.pop()
    with pytest.raises(ValueError, match="did you mean 'fc'"):
        FeatureTap(m, "fcc")
    with pytest.raises(ValueError, match="module path"):
        parse_tap("fc:weights")


def test_forwards_in_between_do_not_confuse_the_tap():
    m = _mlp()
    tap = FeatureTap(m, "1")
    with torch.no_grad():
        m(torch.randn(5, 6))  # e.g. a validation pass whose features nobody pops
    x = torch.randn(2, 6)
    want = m[1](x)  # a direct call of the submodule is not a forward of the model either
    m(x)
    assert torch.equal(tap.pop(), want)


def test_default_tap_is_the_models_feature_path_and_equals_forward_features():
    for name in ("c3d_student", "r3d_18"):
        m = build_model(name, num_classes=5, input_size=SHAPE[1:], width_mult=0.25).eval()
        tap = FeatureTap(m, default_feature_path(m))
        x = torch.randn(2, *SHAPE)
        with torch.no_grad():
            m(x)
            assert torch.equal(tap.pop(), m.forward_features(x).flatten(1)), name
    with pytest.raises(ValueError, match="declares no feature_path"):
        default_feature_path(_mlp())


def test_projection_only_when_widths_differ():
    assert isinstance(feature_projection(8, 8), nn.Identity)
    p = feature_projection(8, 12)
    assert isinstance(p, nn.Linear) and (p.in_features, p.out_features) == (8, 12)


@pytest.mark.parametrize("teacher_name,t_dim", [("c3d_teacher", 512), ("r3d_18", 64)])
def test_cross_architecture_hu_kd_trains_a_projection_with_the_student(teacher_name, t_dim):
    torch.manual_seed(0)
    teacher = build_model(teacher_name, num_classes=5, input_size=SHAPE[1:], width_mult=0.125, dropout=0.0)
    student = build_model("c3d_student", num_classes=5, input_size=SHAPE[1:], width_mult=0.25, dropout=0.0)
    kd = build_kd(DistillConfig(method="hu", cache="off"), teacher, student, teacher_input_shape=SHAPE,
                  student_input_shape=SHAPE, precision="fp32", channels_last=False)
    # teacher: C3D fc7 4096 x 0.125, R3D-18 avgpool 512 x 0.125; student fc7 1024 x 0.25
    assert kd.teacher.feature_dim == t_dim and isinstance(kd.projection, nn.Linear)
    assert kd.projection.in_features == 256 and kd.extra_modules == [kd.projection]
    x, y = torch.randn(3, *SHAPE), torch.tensor([0, 3, 4])
    logits = student(x)
    loss = kd.loss_fn(logits, y, x, {})
    with torch.no_grad():  # the same loss from features computed by hand
        f_t = teacher.eval().forward_features(x).flatten(1)
        student.eval()
        f_s = kd.projection(student.forward_features(x))
        want = hu_kd_loss(student(x), y, f_s, f_t)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert kd.projection.weight.grad is not None and kd.projection.weight.grad.abs().sum() > 0
    assert student.fc7.weight.grad is not None and student.fc7.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
