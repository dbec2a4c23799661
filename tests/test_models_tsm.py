"""TSM: MMAction2's parameter names (a synthetic checkpoint in that layout loads strictly), published
counts, the reference's outputs, the shift itself, the online model's frame-by-frame step (and its
ONNX export with the shift buffers as named inputs and outputs), the model contract.

The reference numbers in ``fixtures/mmaction2_tsm.json`` were recorded by running MMAction2's own
backbone and head classes (see the fixture's "source").
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from _contract import check_feature_tap
from test_models_x3d import (  # deterministic weights, clips (tests/ is on sys.path)
    calibrate_bn,
    ramp_clip,
    ramp_fill,
)

from edgekd.models import build_model, list_models
from edgekd.models.complexity import count_macs, count_params
from edgekd.models.tsm import (
    TSM,
    StreamingTSM,
    TSMStep,
    mmaction2_state_dict,
    temporal_shift,
    temporal_shift_step,
)

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "mmaction2_tsm.json").read_text())
TSMS = ["tsm_mobilenetv2", "tsm_mobilenetv2_online", "tsm_resnet50"]
SIZE = (4, 32, 32)  # tiny clips: 4 frames of 32x32 (a 1x1 map after the /32 backbones)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def meta(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, **kw)


def unit_logits(model: TSM, x: torch.Tensor) -> None:
    """Scale the classifier so the clip's largest |per-frame logit| is 1: ramp weights give logits
    of arbitrary scale, and an absolute tolerance should mean the same thing for every model."""
    with torch.no_grad():
        scale = model.forward_frames(x).abs().max()
        model.cls_head.fc_cls.weight /= scale
        model.cls_head.fc_cls.bias /= scale


def ramp_model(name: str, width_mult: float = 1.0, num_classes: int = 5, size: tuple[int, int, int] = SIZE) -> TSM:
    """Deterministic weights, BN statistics of a ramp clip: unlike a fresh network's identity BNs."""
    model = build_model(name, num_classes=num_classes, input_size=size, width_mult=width_mult).eval()
    ramp_fill(model)
    calibrate_bn(model, ramp_clip(2, 3, *size))
    return model


# --- names and counts ------------------------------------------------------------------------


@pytest.mark.parametrize("name, layout", [("tsm_mobilenetv2", "tsm_mobilenetv2"),
                                          ("tsm_mobilenetv2_online", "tsm_mobilenetv2"),
                                          ("tsm_resnet50", "tsm_resnet50")])
def test_state_dict_is_key_for_key_mmaction2s(name, layout):
    # MMAction2's Recognizer2D (backbone + cls_head) at 400 classes: same keys, order and shapes;
    # the online model keeps the offline names
    want = [(k, tuple(shape)) for k, shape in FIXTURE["models"][layout]]
    got = [(k, tuple(v.shape)) for k, v in meta(name, num_classes=400).state_dict().items()]
    assert got == want


@pytest.mark.parametrize("name, layout", [("tsm_mobilenetv2", "tsm_mobilenetv2"),
                                          ("tsm_resnet50", "tsm_resnet50")])
def test_a_checkpoint_in_mmaction2s_layout_loads_strictly(name, layout):
    # an MMAction2 .pth is {"meta": ..., "state_dict": {...}}; DDP-saved files prefix "module."
    state = {k: (torch.full(shape, float(i)) if shape else torch.tensor(i, dtype=torch.long))
             for i, (k, shape) in enumerate(FIXTURE["models"][layout])}
    ckpt = {"meta": {"epoch": 100}, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    model = build_model(name, num_classes=400)
    model.load_state_dict(mmaction2_state_dict(ckpt), strict=True)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    assert mmaction2_state_dict(state).keys() == state.keys()  # a bare state dict passes through


def test_the_wrapped_names_sit_where_mmaction2_puts_them():
    mb = {k: tuple(v.shape) for k, v in meta("tsm_mobilenetv2", num_classes=400).state_dict().items()}
    assert mb["backbone.layer1.0.conv.0.conv.weight"] == (32, 1, 3, 3)  # expand ratio 1: no expansion, no shift
    assert mb["backbone.layer2.0.conv.0.conv.weight"] == (96, 16, 1, 1)  # strided: not shifted
    assert mb["backbone.layer2.1.conv.0.net.conv.weight"] == (144, 24, 1, 1)  # shifted: wrapped as .net
    assert mb["backbone.layer2.1.conv.0.net.bn.running_var"] == (144,)
    assert mb["backbone.conv2.conv.weight"] == (1280, 320, 1, 1)
    assert mb["cls_head.fc_cls.weight"] == (400, 1280)
    r50 = {k: tuple(v.shape) for k, v in meta("tsm_resnet50", num_classes=400).state_dict().items()}
    assert r50["backbone.conv1.conv.weight"] == (64, 3, 7, 7)
    assert r50["backbone.layer2.0.conv1.conv.net.weight"] == (128, 256, 1, 1)  # only the conv is wrapped
    assert r50["backbone.layer2.0.conv1.bn.weight"] == (128,)
    assert r50["backbone.layer4.0.downsample.conv.weight"] == (2048, 1024, 1, 1)
    assert r50["cls_head.fc_cls.weight"] == (400, 2048)


def test_which_blocks_are_shifted():
    m = meta("tsm_mobilenetv2", num_classes=4)
    shifted = [n for n, mod in m.backbone.named_modules() if hasattr(mod, "shifted") and mod.shifted]
    assert shifted == ["layer2.1", "layer3.1", "layer3.2", "layer4.1", "layer4.2", "layer4.3", "layer5.1", "layer5.2",
                       "layer6.1", "layer6.2"]  # every inverted residual that expands and keeps its shape
    r50 = meta("tsm_resnet50", num_classes=4)
    wrapped = [n for n, mod in r50.backbone.named_modules() if n.endswith("conv1.conv.net")]
    assert len(wrapped) == 3 + 4 + 6 + 3  # "blockres": every bottleneck


# MMAction2's model zoo (configs/recognition/tsm/README.md): TSM-MobileNetV2 2.736M parameters at
# Kinetics-400's 400 classes; TSM-R50 23.87M in every row, which fits the 174-class
# Something-Something-V2 head (23,864,558) rather than Kinetics' 400 classes (24,327,632). At 1000 classes
# the backbones are torchvision's ImageNet networks exactly (mobilenet_v2 3,504,872; resnet50
# 25,557,032) with their per-image MACs (0.30 G: MobileNetV2's "300M multiply-adds"; 4.09 G).
def test_published_parameter_counts():
    assert count_params(meta("tsm_mobilenetv2", num_classes=400)) == 2_736_272
    assert count_params(meta("tsm_mobilenetv2_online", num_classes=400)) == 2_736_272
    assert count_params(meta("tsm_mobilenetv2", num_classes=400)) / 1e6 == pytest.approx(2.736, rel=0.01)
    assert count_params(meta("tsm_resnet50", num_classes=400)) == 24_327_632
    assert count_params(meta("tsm_resnet50", num_classes=174)) / 1e6 == pytest.approx(23.87, rel=0.001)
    assert count_params(meta("tsm_mobilenetv2", num_classes=1000)) == 3_504_872
    assert count_params(meta("tsm_resnet50", num_classes=1000)) == 25_557_032


def test_macs_are_the_2d_networks_per_frame():
    one = (3, 1, 224, 224)
    mb = count_macs(meta("tsm_mobilenetv2", num_classes=1000, input_size=one[1:]), one)
    r50 = count_macs(meta("tsm_resnet50", num_classes=1000, input_size=one[1:]), one)
    assert mb / 1e9 == pytest.approx(0.30, rel=0.01) and r50 / 1e9 == pytest.approx(4.09, rel=0.01)
    # T frames cost T times the backbone; the classifier runs once, on the mean feature
    clip = meta("tsm_resnet50", num_classes=400, input_size=(8, 224, 224))
    per_frame = r50 - 2048 * 1000
    assert count_macs(clip, (3, 8, 224, 224)) == 8 * per_frame + 2048 * 400
    # MMAction2 prints 32.88 G for TSM-R50 8x224x224, 0.6% more (its counter is not ours; its 3.27 G
    # for TSM-MobileNetV2, 36% above the 2.40 G of multiply-adds, counts more than those: not compared)
    assert count_macs(clip, (3, 8, 224, 224)) / 1e9 == pytest.approx(32.88, rel=0.01)


# --- the shift -------------------------------------------------------------------------------


def test_shift_moves_one_fold_each_way_and_online_takes_the_past_only():
    n, t, c = 2, 3, 16  # fold 2: channels 0-1 from t+1, 2-3 from t-1, 4-15 stay
    x = torch.randn(n, t, c, 2, 2)
    # the in-place formulation of the TSM authors' ops/temporal_shift.py, as the reference
    want = torch.zeros_like(x)
    want[:, :-1, :2] = x[:, 1:, :2]
    want[:, 1:, 2:4] = x[:, :-1, 2:4]
    want[:, :, 4:] = x[:, :, 4:]
    got = temporal_shift(x.flatten(0, 1), t, fold=2).unflatten(0, (n, t))
    assert torch.equal(got, want)
    want[:, :, :2] = 0  # online: the fold that would come from the future is zeros
    assert torch.equal(temporal_shift(x.flatten(0, 1), t, fold=2, online=True).unflatten(0, (n, t)), want)
    # the step: frame t with frame t-1's channels 2-3 as the buffer gives the same frame, and
    # hands on its own channels 2-3
    buffer = torch.zeros(n, 2, 2, 2)
    for i in range(t):
        frame, buffer = temporal_shift_step(x[:, i], buffer, fold=2)
        assert torch.equal(frame, want[:, i]) and torch.equal(buffer, x[:, i, 2:4])


@pytest.mark.parametrize("name", ["tsm_mobilenetv2", "tsm_resnet50"])
def test_outputs_match_mmaction2s_recognizer(name):
    """The fixture's logits are MMAction2's own backbone and TSMHead (per-frame fc, then the mean)
    with the same weights on the same clip.

    Same arithmetic in another order (the mean taken before ``fc_cls`` instead of after, other
    kernels, other thread counts): measured at most 1.3e-6 of the largest logit. The bound is
    X3D's (1e-3 of it, see test_models_x3d.py); what it guards against is far larger: with the
    same weights the online shift is 0.34 (MobileNetV2) and 0.51 (R50) off, a shift in the
    reversed time direction 0.31 and 0.06.
    """
    fx = FIXTURE["parity"][name]
    model = build_model(name, **fx["build"]).eval()
    x = ramp_clip(*fx["clip"])
    ramp_fill(model)
    want = torch.tensor(fx["logits"])
    with torch.no_grad():
        assert (model(x) - want).abs().max() <= 1e-3 * want.abs().max()
        if name == "tsm_mobilenetv2":
            online = build_model("tsm_mobilenetv2_online", **fx["build"]).eval()
            online.load_state_dict(model.state_dict())  # the same weights and statistics
            assert (online(x) - want).abs().max() > 1e-2 * want.abs().max()


# --- clip logits, per-frame logits, streaming -------------------------------------------------


@pytest.mark.parametrize("name", TSMS)
def test_clip_logits_are_the_mean_of_the_per_frame_logits(name):
    """fc(mean of features) vs mean of fc(features): equal by linearity; in FP32 they differ by
    reassociation of sums of ~1280 products, far below 1e-5 on unit-scale logits."""
    model = ramp_model(name, width_mult=0.5)
    x = ramp_clip(2, 3, *SIZE)
    unit_logits(model, x)
    with torch.no_grad():
        frames, clip = model.forward_frames(x), model(x)
    assert frames.shape == (2, 4, 5) and clip.shape == (2, 5)
    assert (frames.mean(dim=1) - clip).abs().max() <= 1e-5


def test_online_frames_depend_on_the_past_only():
    online, offline = ramp_model("tsm_mobilenetv2_online"), ramp_model("tsm_mobilenetv2")
    x = ramp_clip(1, 3, *SIZE)
    later = x.clone()
    later[:, :, 2:] = torch.randn_like(later[:, :, 2:])  # change frames 2 and 3
    with torch.no_grad():
        # online: frames 0 and 1 are bit-identical (nothing they read changed)
        assert torch.equal(online.forward_frames(x)[:, :2], online.forward_frames(later)[:, :2])
        # offline: frame 1 reads frame 2 through the shift
        assert not torch.allclose(offline.forward_frames(x)[:, 1], offline.forward_frames(later)[:, 1])


def test_step_module_reproduces_the_clip_frame_by_frame():
    """Streaming the frames through TSMStep gives the clip's per-frame logits, and the streaming
    prediction (running mean of the last T per-frame logits) gives the clip logits at frame T-1.

    The step copies exactly the values the clip's shift copies, so the arithmetic is the same; only
    the convolutions run on batches of N frames instead of N*T, which may change how a kernel
    blocks its sums: reassociation, a few ulp (~1e-7) on unit-scale logits at worst. Measured: 0,
    bit-identical, with 1 and 2 threads on this CPU. Bound: 1e-4.
    """
    t = 6
    model = ramp_model("tsm_mobilenetv2_online", size=(t, 64, 64))
    x = ramp_clip(2, 3, t, 64, 64)
    unit_logits(model, x)
    step = TSMStep(model).eval()
    assert step.buffer_shapes(64, 64) == [(3, 16, 16), (4, 8, 8), (4, 8, 8), (8, 4, 4), (8, 4, 4), (8, 4, 4),
                                          (12, 4, 4), (12, 4, 4), (20, 2, 2), (20, 2, 2)]  # C/8 at stride 4..32
    stream = StreamingTSM(step, window=t, batch=2, height=64, width=64)
    buffers = step.initial_buffers(2, 64, 64)
    per_frame, running = [], []
    with torch.no_grad():
        want_frames, want_clip = model.forward_frames(x), model(x)
        for i in range(t):
            logits, *buffers = step(x[:, :, i], *buffers)
            per_frame.append(logits)
            running.append(stream.push(x[:, :, i]))
    per_frame = torch.stack(per_frame, dim=1)
    assert (per_frame - want_frames).abs().max() <= 1e-4
    for i in range(t):  # before T frames the window holds the frames seen so far
        assert (running[i] - want_frames[:, :i + 1].mean(dim=1)).abs().max() <= 1e-4
    assert (running[-1] - want_clip).abs().max() <= 1e-4


def test_streaming_window_slides_and_resets():
    step = TSMStep(ramp_model("tsm_mobilenetv2_online", width_mult=0.5))
    frames = ramp_clip(1, 3, 5, 32, 32)
    buffers, per_frame = step.initial_buffers(1, 32, 32), []
    with torch.no_grad():
        for i in range(5):
            logits, *buffers = step(frames[:, :, i], *buffers)
            per_frame.append(logits)
    stream = StreamingTSM(step, window=2, batch=1, height=32, width=32)
    outs = [stream.push(frames[:, :, i]) for i in range(5)]
    assert torch.equal(outs[0], per_frame[0])  # the same call on the same inputs
    assert torch.allclose(outs[4], (per_frame[3] + per_frame[4]) / 2)  # the last 2 frames only
    stream.reset()
    assert torch.equal(stream.push(frames[:, :, 0]), per_frame[0])  # zero buffers, empty window again


def test_step_needs_an_online_mobilenet_and_the_right_buffers():
    with pytest.raises(ValueError, match="online TSM-MobileNetV2"):
        TSMStep(build_model("tsm_mobilenetv2", num_classes=3, input_size=SIZE, width_mult=0.5))
    step = TSMStep(build_model("tsm_mobilenetv2_online", num_classes=3, input_size=SIZE, width_mult=0.5))
    with pytest.raises(ValueError, match="expected 10 shift buffers, got 9"):
        step(torch.zeros(1, 3, 32, 32), *step.initial_buffers(1, 32, 32)[:9])


def test_a_clip_of_another_length_is_refused():
    model = build_model("tsm_mobilenetv2", num_classes=3, input_size=SIZE, width_mult=0.5)
    with pytest.raises(ValueError, match=r"clips of 4 frames expects \(N, C, 4, H, W\), got \(1, 3, 8, 32, 32\)"):
        model(torch.zeros(1, 3, 8, 32, 32))


# --- the model contract ------------------------------------------------------------------------


@pytest.mark.parametrize("name", TSMS)
def test_factory_takes_the_common_arguments_and_declares_its_taps(name):
    m = meta(name, num_classes=7, input_size=(16, 112, 112), width_mult=1.0, dropout=0.2, in_channels=2)
    modules = dict(m.named_modules())
    assert isinstance(modules[m.head_path], nn.Linear) and modules[m.head_path].out_features == 7
    assert m.feature_path in modules
    assert m.backbone.conv1.conv.in_channels == 2
    assert m.num_segments == 16 and m.input_size == (16, 112, 112)
    assert name in list_models()


@pytest.mark.parametrize("name, width", [("tsm_mobilenetv2", 0.5), ("tsm_mobilenetv2_online", 0.5),
                                         ("tsm_resnet50", 0.125)])
def test_features_tap_equals_head_input_and_forward(name, width):
    m = build_model(name, num_classes=5, input_size=SIZE, width_mult=width, in_channels=2).eval()
    x = torch.randn(2, 2, *SIZE)
    logits, feats = check_feature_tap(m, x)
    assert logits.shape == (2, 5) and feats.shape == (2, m.feature_dim)


@pytest.mark.parametrize("name, width", [("tsm_mobilenetv2_online", 0.5), ("tsm_resnet50", 0.125)])
def test_every_parameter_gets_a_gradient(name, width):
    torch.manual_seed(0)
    m = build_model(name, num_classes=3, input_size=SIZE, width_mult=width)
    m(torch.randn(2, 3, *SIZE)).logsumexp(1).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_trainer_memory_format_keeps_a_2d_backbone_trainable_and_its_outputs():
    """The trainer's channels_last switch (on by default) must not break a 2-D backbone:
    channels_last_3d needs rank-5 weights and raised on TSM; channels_last is a layout change
    only, so the logits agree to fp32 reordering noise (a few ulps of logits near 1)."""
    from edgekd.train.perf import to_memory_format

    m = ramp_model("tsm_mobilenetv2", width_mult=0.5)
    x = ramp_clip(2, 3, *SIZE)
    unit_logits(m, x)
    with torch.no_grad():
        before = m(x)
    m = to_memory_format(m, True)
    assert m.backbone.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        after = m(to_memory_format(x, True))
    assert torch.allclose(before, after, atol=1e-5)
    m.train()
    m(to_memory_format(x, True)).logsumexp(1).sum().backward()


def test_width_mult():
    mb = meta("tsm_mobilenetv2", num_classes=3, width_mult=0.5)
    assert (mb.backbone.conv1.conv.out_channels, mb.backbone.layer7[0].conv[2].conv.out_channels) == (16, 160)
    assert mb.feature_dim == 1280  # the last conv keeps 1280 below width 1 (MMAction2, torchvision)
    assert meta("tsm_mobilenetv2", num_classes=3, width_mult=1.5).feature_dim == 1920
    r50 = meta("tsm_resnet50", num_classes=3, width_mult=0.5)
    assert (r50.backbone.conv1.conv.out_channels, r50.feature_dim) == (32, 1024)
    with pytest.raises(ValueError, match="at least 8 channels"):
        meta("tsm_resnet50", num_classes=3, width_mult=0.0625)  # a 4-channel stem has no fold to shift


# --- ONNX --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, width", [("tsm_mobilenetv2", 1.0), ("tsm_mobilenetv2_online", 0.5),
                                         ("tsm_resnet50", 0.125)])
def test_onnx_export_matches_pytorch(tmp_path, name, width):
    """ONNX Runtime vs PyTorch in FP32 on unit-scale logits: the same arithmetic in other kernels
    (ORT folds BN into the convolutions), measured <= 1.1e-6; the export contract's bound is 1e-3."""
    import onnx
    import onnxruntime as ort

    from edgekd.export.onnx_export import export_onnx

    model = ramp_model(name, width_mult=width, num_classes=4)
    x = ramp_clip(3, 3, *SIZE)
    unit_logits(model, x)
    path = export_onnx(model, (3, *SIZE), tmp_path / "m.onnx")
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"clip": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, 4)
    assert np.abs(got - want).max() <= 1e-3
    # the shift exported as slices and concatenations, not index arithmetic and scatters
    assert "ScatterND" not in {node.op_type for node in onnx.load(str(path)).graph.node}


def test_step_exports_with_named_buffers_and_streams_like_pytorch(tmp_path):
    """The step graph (``export_step_onnx``, simplified, with its step spec): ``frame`` and
    ``shift_in_i`` in, ``logits`` and ``shift_out_i`` out, dynamic batch; fed its own buffers for 5 frames it tracks the PyTorch step within 1e-3 on unit-scale
    logits and buffers (FP32, other kernels: measured <= 5.4e-7 and 3.6e-7 of the buffers' size)."""
    import onnxruntime as ort

    from edgekd.export.onnx_export import export_step_onnx

    model = ramp_model("tsm_mobilenetv2_online", width_mult=0.5, size=(5, 32, 32))
    x = ramp_clip(2, 3, 5, 32, 32)
    unit_logits(model, x)
    step = TSMStep(model).eval()
    names_in, names_out = step.input_names(), step.output_names()
    assert names_in == ["frame"] + [f"shift_in_{i}" for i in range(10)]
    assert names_out == ["logits"] + [f"shift_out_{i}" for i in range(10)]
    path = export_step_onnx(model, (3, 32, 32), tmp_path / "step.onnx", window=5)  # what the export stage writes
    spec = json.loads((tmp_path / "step.json").read_text())
    assert spec["window"] == 5 and spec["frame"] == {"name": "frame", "shape": [3, 32, 32], "dtype": "float32"}
    assert [(b["input"], b["output"], tuple(b["shape"])) for b in spec["state"]] == [
        (i, o, shape) for i, o, shape in zip(names_in[1:], names_out[1:], step.buffer_shapes(32, 32))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == names_in
    assert [o.name for o in session.get_outputs()] == names_out
    torch_buffers = step.initial_buffers(1, 32, 32)  # batch 1: the dynamic axis at work
    ort_buffers = [b.numpy() for b in torch_buffers]
    for i in range(5):
        with torch.no_grad():
            want, *torch_buffers = step(x[:1, :, i], *torch_buffers)
        got, *ort_buffers = session.run(None, {"frame": x[:1, :, i].numpy(),
                                               **{f"shift_in_{j}": b for j, b in enumerate(ort_buffers)}})
        assert got.shape == (1, 5)
        assert np.abs(got - want.numpy()).max() <= 1e-3
        for a, b in zip(ort_buffers, torch_buffers):
            assert a.shape == tuple(b.shape)
            assert np.abs(a - b.numpy()).max() <= 1e-3 * max(1.0, float(b.abs().max()))
