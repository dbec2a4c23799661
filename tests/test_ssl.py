"""Self-supervised pretraining: exact pretext transforms, the contrastive loss against hand-computed
values, and a tiny pretraining run whose loss goes down."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.models import build_model
from edgekd.recipe import PRETEXT_TRANSFORMS, RecipeError
from edgekd.ssl.losses import contrastive_loss
from edgekd.ssl.pretrain import (
    PretextPairDataset,
    PretrainNet,
    PretrainOptions,
    run_pretraining,
)
from edgekd.ssl.transforms import (
    apply_pretext,
    permute_quadrants,
    quadrants,
    replace_segment,
    rotate,
    sample_pretext,
    swap_adjacent_segments,
)
from edgekd.stages.validate import parse_recipe


def _clip(t: int = 8, h: int = 6, w: int = 6) -> torch.Tensor:
    """(C, T, H, W) with every value distinct, so any moved pixel is visible."""
    return torch.arange(3 * t * h * w, dtype=torch.float32).reshape(3, t, h, w)


def _frame_ids(x: torch.Tensor) -> list[int]:
    """Which source frame each output frame is (frame k of _clip starts at value k*H*W in channel 0)."""
    h, w = x.shape[-2:]
    return [int(v) // (h * w) for v in x[0, :, 0, 0]]


# ----------------------------------------------------------------------------- transforms


def test_four_quarter_turns_are_the_identity_and_one_turn_is_counter_clockwise() -> None:
    x = _clip()
    assert torch.equal(rotate(rotate(rotate(rotate(x, 1), 1), 1), 1), x)
    assert torch.equal(rotate(x, 2), x.flip(-1).flip(-2))
    r = rotate(x, 1)  # counter-clockwise: out[i, j] = in[j, W-1-i]
    w = x.shape[-1]
    for i, j in [(0, 0), (1, 4), (5, 2)]:
        assert torch.equal(r[..., i, j], x[..., j, w - 1 - i])
    assert not torch.equal(r, x)


def test_rotation_of_non_square_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        rotate(_clip(h=4, w=6), 1)


def test_quadrant_permutation_moves_whole_blocks() -> None:
    x = _clip(h=6, w=8)
    order = (3, 0, 2, 1)
    y = permute_quadrants(x, order)
    assert y.shape == x.shape
    src, dst = quadrants(x), quadrants(y)
    for pos in range(4):
        assert torch.equal(dst[pos], src[order[pos]])
    # the multiset of pixels is unchanged, and a 4-cycle applied 4 times is the identity
    assert torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values)
    cycle = (1, 2, 3, 0)
    z = x
    for _ in range(4):
        z = permute_quadrants(z, cycle)
    assert torch.equal(z, x)
    with pytest.raises(ValueError, match="permutation"):
        permute_quadrants(x, (0, 0, 1, 2))
    with pytest.raises(ValueError, match="even"):
        permute_quadrants(_clip(h=5, w=6), cycle)


@pytest.mark.parametrize("first, expected", [(0, [2, 3, 0, 1, 4, 5, 6, 7]), (1, [0, 1, 4, 5, 2, 3, 6, 7]),
                                             (2, [0, 1, 2, 3, 6, 7, 4, 5])])
def test_adjacent_segment_swap_swaps_exactly_those_frames(first: int, expected: list[int]) -> None:
    x = _clip(t=8)
    y = swap_adjacent_segments(x, first)
    assert _frame_ids(y) == expected
    assert torch.equal(y, x[:, expected])  # whole frames, every channel and pixel


def test_segment_swap_leaves_the_remainder_frames_in_place() -> None:
    x = _clip(t=10)  # segments of 2 frames; frames 8, 9 never move
    assert _frame_ids(swap_adjacent_segments(x, 2)) == [0, 1, 2, 3, 6, 7, 4, 5, 8, 9]


def test_segment_replace_puts_segment_four_in_place_of_segment_two() -> None:
    x = _clip(t=8)
    y = replace_segment(x)
    assert _frame_ids(y) == [0, 1, 6, 7, 4, 5, 6, 7]
    assert torch.equal(y[:, 2:4], x[:, 6:8]) and torch.equal(y[:, 6:8], x[:, 6:8])
    assert _frame_ids(replace_segment(_clip(t=16)))[:8] == [0, 1, 2, 3, 12, 13, 14, 15]


def test_sampled_transforms_cover_every_class_with_valid_parameters() -> None:
    rng = np.random.default_rng(0)
    x = _clip()
    seen: dict[int, set] = {}
    for _ in range(400):
        d = sample_pretext(rng)
        assert PRETEXT_TRANSFORMS[d.label] == d.name
        seen.setdefault(d.label, set()).add(d.param)
        y = apply_pretext(x, d)
        assert y.shape == x.shape
        assert torch.equal(y, x) == (d.name == "none")
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert seen[1] == {1, 2, 3}  # 90, 180, 270 degrees
    assert seen[3] == {0, 1, 2}
    assert len(seen[2]) > 10 and (0, 1, 2, 3) not in seen[2]
    # a configured subset relabels in its own order
    d = sample_pretext(np.random.default_rng(1), ("none", "temporal_segment_replace"))
    assert d.name == ("none", "temporal_segment_replace")[d.label]


# ----------------------------------------------------------------------------- contrastive loss


def test_contrastive_loss_matches_hand_computed_values() -> None:
    tau = 0.5
    c = 1 / math.sqrt(2)
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[2.0, 0.0], [3.0, 3.0]])  # lengths differ on purpose: cosine similarity
    e = math.exp
    # NT-Xent: anchors a0, a1, b0, b1 (cosines: a0.b0 = 1, a1.b1 = a0.b1 = b0.b1 = c, a0.a1 = a1.b0 = 0)
    all_ = [
        -math.log(e(1 / tau) / (e(1 / tau) + e(0) + e(c / tau))),  # a0: pos b0; negs a1, b1
        -math.log(e(c / tau) / (e(c / tau) + e(0) + e(0))),  # a1: pos b1; negs a0, b0
        -math.log(e(1 / tau) / (e(1 / tau) + e(0) + e(c / tau))),  # b0: pos a0; negs a1, b1
        math.log(3.0),  # b1: pos a1 and both negatives at cosine c
    ]
    got = contrastive_loss(z1, z2, temperature=tau, negatives="all")
    assert got.item() == pytest.approx(sum(all_) / 4, rel=1e-6)
    # Camarena Eq. 3-4: negatives from the anchor's own view only
    same = [
        -math.log(e(1 / tau) / (e(1 / tau) + e(0))),  # a0 vs a1
        -math.log(e(c / tau) / (e(c / tau) + e(0))),  # a1 vs a0
        -math.log(e(1 / tau) / (e(1 / tau) + e(c / tau))),  # b0 vs b1
        math.log(2.0),  # b1 vs b0: positive and negative both at cosine c
    ]
    got = contrastive_loss(z1, z2, temperature=tau, negatives="same_view")
    assert got.item() == pytest.approx(sum(same) / 4, rel=1e-6)


def test_contrastive_loss_rewards_matching_pairs_and_checks_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    matched = contrastive_loss(z, z + 0.01 * torch.randn(8, 16, generator=g))
    shuffled = contrastive_loss(z, z.roll(1, dims=0))
    assert matched.item() < 0.1 < shuffled.item()
    with pytest.raises(ValueError, match="at least 2"):
        contrastive_loss(z[:1], z[:1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        contrastive_loss(z, z[:, :8])


# ----------------------------------------------------------------------------- network and loop


class _NoForwardFeatures(nn.Module):
    """A model exposing its features only through ``feature_path`` (a hook target)."""

    feature_path = "pool"
    head_path = "fc"

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_pretrain_net_taps_feature_path_when_there_is_no_forward_features() -> None:
    net = PretrainNet(_NoForwardFeatures(), num_pretext=5, input_shape=(3, 4, 8, 8), projection_dim=6, hidden_dim=7)
    assert net.feature_dim == 4
    logits, z = net(torch.randn(2, 3, 4, 8, 8))
    assert logits.shape == (2, 5) and z.shape == (2, 6)


class _NoisyClips(torch.utils.data.Dataset):
    """Fixed videos with structure the transforms break (a brightness ramp that grows down, right
    and forward in time, per-video slopes and colours); every read adds fresh noise (two views)."""

    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        t, h, w = torch.meshgrid(torch.linspace(0, 1, 8), torch.linspace(0, 1, 16), torch.linspace(0, 1, 16),
                                 indexing="ij")
        slopes = 0.5 + torch.rand(n, 3, 3, generator=g)  # (video, channel, axis)
        self.videos = (slopes[..., 0, None, None, None] * t + slopes[..., 1, None, None, None] * h
                       + slopes[..., 2, None, None, None] * w)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.videos[i] + 0.1 * torch.randn(self.videos[i].shape), 0


class _TinyVideoNet(nn.Module):
    """Small 3D CNN with BatchNorm (C3D without normalisation sits on a plateau for many steps)."""

    feature_path = "pool"
    head_path = "fc"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(3, 16, 3, padding=1), nn.BatchNorm3d(16), nn.ReLU(),
                                  nn.Conv3d(16, 32, 3, stride=2, padding=1), nn.BatchNorm3d(32), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(32, 4)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


@pytest.mark.slow  # 20-35 s measured on the shared 2-core box under load
def test_tiny_pretraining_lowers_its_loss(tmp_path) -> None:
    torch.manual_seed(0)
    model = _TinyVideoNet()
    net = PretrainNet(model, num_pretext=len(PRETEXT_TRANSFORMS), input_shape=(3, 8, 16, 16), projection_dim=16,
                      hidden_dim=32)
    loader = torch.utils.data.DataLoader(PretextPairDataset(_NoisyClips()), batch_size=8, shuffle=True, drop_last=True)
    opts = PretrainOptions(epochs=15, lr=3e-3, optimizer="adam", weight_decay=0.0, temperature=0.2,
                           precision="fp32", channels_last=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = run_pretraining(net, loader, opts, metrics_path=tmp_path / "metrics.jsonl")
    assert len(history) == 15 and len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 15
    first, last = history[0], history[-1]
    for row in history:
        assert row["loss"] == pytest.approx(row["pretext_loss"] + 0.5 * row["contrastive_loss"], rel=1e-5)
    assert first["pretext_loss"] == pytest.approx(math.log(5), rel=0.2)  # chance level at the start
    assert last["loss"] < 0.8 * first["loss"], (first, last)
    assert last["contrastive_loss"] < first["contrastive_loss"]
    assert last["pretext_loss"] < 0.9 * first["pretext_loss"]  # the pretext task is learned too
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "body.0.weight" in changed  # the backbone itself learned
    assert "fc.weight" not in changed  # the classifier head is not part of pretraining


# ----------------------------------------------------------------------------- recipe checks


def _raw(**pretrain) -> dict:
    return {"name": "p", "data": {"crop": [32, 40], "resize": [40, 53], "clip_len": 8}, "pretrain": pretrain}


def test_pretrain_recipe_checks_name_the_problem() -> None:
    parse_recipe(_raw(enabled=False))  # disabled: a non-square crop is fine
    with pytest.raises(RecipeError) as e:
        parse_recipe(_raw(enabled=True, batch_size=1, transforms=["none", "rotation", "rotation"]))
    msg = str(e.value)
    assert "pretrain.batch_size: must be >= 2" in msg
    assert "rotation needs a square data.crop" in msg
    assert "at least 2 distinct pretext classes" in msg
    with pytest.raises(RecipeError, match=r"pretrain.transforms\[1\]: 'rotate' is not one of .* did you mean 'rotation'"):
        parse_recipe(_raw(enabled=True, transforms=["none", "rotate"]))
    r = parse_recipe(_raw(enabled=True, transforms=["none", "temporal_adjacent_swap", "spatial_permutation"]))
    assert r.pretrain.transforms == ("none", "temporal_adjacent_swap", "spatial_permutation")


def test_students_depend_on_pretrain_only_when_it_is_enabled() -> None:
    from edgekd.stages.rundir import upstream_of
    from edgekd.stages.table import STAGE_NAMES as STAGES

    on = parse_recipe({"name": "p", "pretrain": {"enabled": True}})
    off = parse_recipe({"name": "p"})
    assert STAGES.index("pretrain") < STAGES.index("student_scratch")
    assert "pretrain" in upstream_of(on, "student_kd") and "pretrain" in upstream_of(on, "student_scratch")
    assert "pretrain" not in upstream_of(off, "student_kd") and "pretrain" not in upstream_of(on, "teacher")


def test_students_start_from_the_pretrained_backbone_with_a_fresh_head(tmp_path) -> None:
    from edgekd.stages.rundir import RunDir
    from edgekd.stages.train_stage import init_from_pretrain
    from edgekd.train.checkpoint import save_checkpoint

    kwargs = {"num_classes": 4, "input_size": [8, 16, 16], "width_mult": 0.25, "dropout": 0.0}
    rd = RunDir(parse_recipe({"name": "p", "runs_dir": str(tmp_path), "pretrain": {"enabled": True}}))
    torch.manual_seed(1)
    pretrained = build_model("c3d_student", **kwargs)
    save_checkpoint(rd.stage_dir("pretrain") / "ckpt.pt", pretrained, model_name="c3d_student", model_kwargs=kwargs,
                    classes=list("abcd"), input_spec={}, metrics={})
    torch.manual_seed(2)
    student = build_model("c3d_student", **kwargs)
    fresh_head = student.fc8.weight.detach().clone()
    summary = init_from_pretrain(student, rd)
    assert "head re-initialised" in summary
    for name, value in student.state_dict().items():
        if name.startswith("fc8."):
            continue
        assert torch.equal(value, pretrained.state_dict()[name]), name
    assert torch.equal(student.fc8.weight, fresh_head) and not torch.equal(student.fc8.weight, pretrained.fc8.weight)
    other = build_model("c3d_teacher", **kwargs)  # another architecture: an error that lists the keys
    with pytest.raises(Exception, match="does not fit the model"):
        init_from_pretrain(other, rd)
