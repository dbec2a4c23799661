"""Transfer learning: synthetic files in each layout land on the right tensors; a new head; freezing;
every mismatch listed in one error."""

from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from edgekd.models import build_model
from edgekd.models.pretrained import (
    PretrainedMismatchError,
    detect_layout,
    freeze_parameters,
    load_pretrained,
)
from edgekd.train.checkpoint import save_checkpoint

SIZE = (8, 32, 32)


def tiny(name: str, num_classes: int, seed: int, **kw) -> nn.Module:
    torch.manual_seed(seed)
    width = 0.25 if name.startswith(("resnext", "c3d")) else 0.125
    return build_model(name, num_classes=num_classes, input_size=SIZE, width_mult=width, **kw)


def randomise_bn(model: nn.Module) -> nn.Module:
    """Non-default running stats, so a test can tell loaded buffers from fresh ones."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def assert_backbone_equal(src_state: dict, model: nn.Module, rename=lambda k: k, skip=("fc.", "fc8.")) -> int:
    own = model.state_dict()
    n = 0
    for k, v in src_state.items():
        k2 = rename(k)
        if k2.startswith(skip) or k2.endswith("num_batches_tracked"):
            continue
        assert torch.equal(own[k2], v), k2
        n += 1
    return n


def test_edgekd_checkpoint_new_head_for_other_classes(tmp_path):
    src = randomise_bn(tiny("r3d_18", 5, seed=0))
    save_checkpoint(tmp_path / "ckpt.pt", src, model_name="r3d_18", model_kwargs={}, classes=list("abcde"),
                    input_spec={}, metrics={})
    dst = tiny("r3d_18", 3, seed=1)
    fresh_head = dst.fc.weight.clone()
    report = load_pretrained(dst, tmp_path / "ckpt.pt")
    assert report.layout == "edgekd" and report.meta["classes"] == list("abcde")
    assert report.head_reset == ["fc.bias", "fc.weight"]
    n = assert_backbone_equal(src.state_dict(), dst)
    assert n == len([k for k in report.loaded if not k.endswith("num_batches_tracked")]) and n > 50
    assert torch.equal(dst.fc.weight, fresh_head)  # the head keeps its fresh init
    assert not any(k.startswith("fc.") for k in report.loaded)


def test_same_class_count_loads_the_head_unless_reset(tmp_path):
    src = tiny("r3d_18", 4, seed=0)
    torch.save(src.state_dict(), tmp_path / "tv.pth")
    dst = tiny("r3d_18", 4, seed=1)
    load_pretrained(dst, tmp_path / "tv.pth")
    assert torch.equal(dst.fc.weight, src.fc.weight)
    dst2 = tiny("r3d_18", 4, seed=1)
    report = load_pretrained(dst2, tmp_path / "tv.pth", reset_head=True)
    assert report.head_reset == ["fc.bias", "fc.weight"]
    assert not torch.equal(dst2.fc.weight, src.fc.weight)


def test_c3d_sports1m_port_layout_maps_onto_features(tmp_path):
    src = tiny("c3d_teacher", 487, seed=0)  # Sports-1M has 487 classes
    port = OrderedDict((k.removeprefix("features."), v) for k, v in src.state_dict().items())
    assert {"conv1.weight", "conv3a.bias", "conv5b.weight", "fc6.weight", "fc7.bias", "fc8.weight"} <= set(port)
    torch.save(port, tmp_path / "c3d.pickle")
    assert detect_layout(torch.load(tmp_path / "c3d.pickle", weights_only=True)) == "c3d_sports1m"
    dst = tiny("c3d_teacher", 10, seed=1)
    report = load_pretrained(dst, tmp_path / "c3d.pickle")
    assert report.layout == "c3d_sports1m" and report.head_reset == ["fc8.bias", "fc8.weight"]
    assert torch.equal(dst.features.conv3a.weight, port["conv3a.weight"])
    assert torch.equal(dst.fc6.weight, port["fc6.weight"]) and torch.equal(dst.fc7.bias, port["fc7.bias"])
    assert len(report.loaded) == 8 * 2 + 2 * 2  # eight convs and fc6, fc7, each weight + bias
    assert dst.fc8.out_features == 10


def test_c3d_file_for_another_input_size_names_fc6(tmp_path):
    src = tiny("c3d_teacher", 487, seed=0)
    torch.save({k.removeprefix("features."): v for k, v in src.state_dict().items()}, tmp_path / "c3d.pth")
    torch.manual_seed(0)
    dst = build_model("c3d_teacher", num_classes=10, input_size=(8, 64, 64), width_mult=0.25)
    with pytest.raises(PretrainedMismatchError) as e:
        load_pretrained(dst, tmp_path / "c3d.pth")
    msg = str(e.value)  # 8x32x32 leaves a 1x2x2 map of 128 channels, 8x64x64 a 1x3x3 one
    assert "shape differs (1):\n    fc6.weight: file [1024, 512] vs model [1024, 1152]" in msg
    assert "missing" not in msg and "not in the model" not in msg


def test_torchvision_state_dict_without_bn_counters(tmp_path):
    src = randomise_bn(tiny("r2plus1d_18", 400, seed=0))
    # torchvision's files are plain state dicts; older ones lack num_batches_tracked
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "r2plus1d_18.pth")
    dst = tiny("r2plus1d_18", 51, seed=1)
    report = load_pretrained(dst, tmp_path / "r2plus1d_18.pth")
    assert report.layout == "torchvision"
    assert assert_backbone_equal(state, dst) == len(state) - 2
    assert all(k.endswith("num_batches_tracked") or k.startswith("fc.") for k in report.kept_fresh)
    assert torch.equal(dst.stem[3].weight, state["stem.3.weight"])


def test_hara_checkpoint_with_module_prefix_into_a_ce_network(tmp_path):
    src = randomise_bn(tiny("resnext3d_50", 400, seed=0))
    inner = {f"module.{k}": v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 200, "arch": "resnext-50", "state_dict": inner, "optimizer": {"state": {}, "param_groups": []}},
               tmp_path / "resnext-50-kinetics.pth")
    dst = tiny("resnext3d_50", 101, seed=1, excitation="ce")
    ce_before = dst.excite.res3.conv.weight.clone()
    report = load_pretrained(dst, tmp_path / "resnext-50-kinetics.pth")
    assert report.layout == "hara" and report.meta == {"arch": "resnext-50", "epoch": 200}
    assert assert_backbone_equal(inner, dst, rename=lambda k: k.removeprefix("module.")) == len(inner) - 2
    assert torch.equal(dst.layer2[0].conv2.weight, inner["module.layer2.0.conv2.weight"])
    assert torch.equal(dst.excite.res3.conv.weight, ce_before)  # new module, kept fresh
    assert {f"excite.res{s}.conv.weight" for s in (2, 3, 4, 5)} <= set(report.kept_fresh)


def test_pytorchvideo_x3d_checkpoint(tmp_path):
    """The hub's X3D_*.pyth is ``{"model_state": state dict of create_x3d}``; names are x3d.py's as
    they are, so every tensor but the 400-class head lands on the same key."""
    src = randomise_bn(build_model("x3d_xs", num_classes=400, input_size=(4, 32, 32), width_mult=0.25))
    state = src.state_dict()
    torch.save({"model_state": state, "epoch": 300}, tmp_path / "X3D_XS.pyth")
    dst = build_model("x3d_xs", num_classes=6, input_size=(4, 32, 32), width_mult=0.25)
    report = load_pretrained(dst, tmp_path / "X3D_XS.pyth")
    assert report.layout == "pytorchvideo" and report.meta == {"epoch": 300}
    assert report.head_reset == ["blocks.5.proj.bias", "blocks.5.proj.weight"]
    counted = [k for k in state if not k.endswith("num_batches_tracked")]
    assert assert_backbone_equal(state, dst, skip=("blocks.5.proj.",)) == len(counted) - 2 > 300
    assert torch.equal(dst.blocks[0].conv.conv_xy.weight, state["blocks.0.conv.conv_xy.weight"])
    # a file without model_state cannot be read as pytorchvideo's
    torch.save(state, tmp_path / "plain.pth")
    with pytest.raises(ValueError, match="layout 'pytorchvideo' needs a file with a 'model_state'"):
        load_pretrained(dst, tmp_path / "plain.pth", layout="pytorchvideo")


def test_mmaction2_tsm_checkpoint_is_told_from_haras(tmp_path):
    """MMAction2's .pth is ``{"meta", "state_dict"}`` like Hara's, but with backbone./cls_head. keys
    (DDP-saved: under ``module.``); it goes through ``tsm.mmaction2_state_dict``."""
    kw = {"input_size": (4, 32, 32), "width_mult": 0.5}
    src = randomise_bn2d(build_model("tsm_mobilenetv2", num_classes=400, **kw))
    state = src.state_dict()
    payload = {"meta": {"epoch": 100, "mmaction2_version": "1.2.0"},
               "state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(payload, tmp_path / "tsm_mobilenetv2.pth")
    assert detect_layout(payload) == "mmaction2"
    dst = build_model("tsm_mobilenetv2_online", num_classes=5, **kw)  # the online net keeps the names
    report = load_pretrained(dst, tmp_path / "tsm_mobilenetv2.pth")
    assert report.layout == "mmaction2" and report.meta["meta"]["epoch"] == 100
    assert report.head_reset == ["cls_head.fc_cls.bias", "cls_head.fc_cls.weight"]
    counted = [k for k in state if not k.endswith("num_batches_tracked")]
    assert assert_backbone_equal(state, dst, skip=("cls_head.fc_cls.",)) == len(counted) - 2 > 200
    assert torch.equal(dst.backbone.layer2[1].conv[0].net.bn.running_var,
                       state["backbone.layer2.1.conv.0.net.bn.running_var"])
    # Hara's file (module.-prefixed ResNet keys beside "arch") is still Hara's
    assert detect_layout({"arch": "resnet-18", "state_dict": {"module.conv1.weight": torch.zeros(1)}}) == "hara"


def randomise_bn2d(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model


def test_wrong_architecture_lists_every_bad_key(tmp_path):
    torch.save(tiny("r3d_18", 4, seed=0).state_dict(), tmp_path / "r3d.pth")
    with pytest.raises(PretrainedMismatchError) as e:
        load_pretrained(tiny("resnext3d_50", 4, seed=0), tmp_path / "r3d.pth")
    msg = str(e.value)
    assert "missing from the file" in msg and "in the file but not in the model" in msg
    assert "    stem.0.weight" in msg and "    layer1.0.conv1.0.weight" in msg  # unexpected
    assert "    conv1.weight" in msg and "    layer4.2.bn3.running_var" in msg  # missing


def test_one_error_lists_a_renamed_key_and_a_wrong_shape(tmp_path):
    src = tiny("r3d_18", 4, seed=0)
    state = dict(src.state_dict())
    state["layer1.0.conv1.0.weightt"] = state.pop("layer1.0.conv1.0.weight")
    state["layer2.1.conv2.1.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.pth")
    dst = tiny("r3d_18", 4, seed=1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(PretrainedMismatchError) as e:
        load_pretrained(dst, tmp_path / "bad.pth")
    msg = str(e.value)
    assert "missing from the file (1):\n    layer1.0.conv1.0.weight" in msg
    assert "in the file but not in the model (1):\n    layer1.0.conv1.0.weightt" in msg
    assert "shape differs (1):\n    layer2.1.conv2.1.bias: file [7] vs model [16]" in msg
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in before.items())  # nothing half-loaded


def test_layout_errors(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="cannot tell the weights layout"):
        load_pretrained(tiny("r3d_18", 4, seed=0), tmp_path / "odd.pth")
    torch.save(tiny("r3d_18", 4, seed=0).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(ValueError, match="layout 'edgekd' needs"):
        load_pretrained(tiny("r3d_18", 4, seed=0), tmp_path / "tv.pth", layout="edgekd")
    with pytest.raises(ValueError, match="did you mean 'torchvision'"):
        load_pretrained(tiny("r3d_18", 4, seed=0), tmp_path / "tv.pth", layout="torchvison")
    with pytest.raises(FileNotFoundError):
        load_pretrained(tiny("r3d_18", 4, seed=0), tmp_path / "absent.pth")


def test_rgb_weights_into_a_flow_model_need_the_adapt_option(tmp_path):
    src = tiny("r3d_18", 400, seed=0)
    torch.save(src.state_dict(), tmp_path / "rgb.pth")
    with pytest.raises(PretrainedMismatchError, match=r"stem.0.weight: file \[8, 3, 3, 7, 7\] vs model \[8, 2, 3, 7, 7\]"):
        load_pretrained(tiny("r3d_18", 10, seed=1, in_channels=2), tmp_path / "rgb.pth")
    flow = tiny("r3d_18", 10, seed=1, in_channels=2)
    report = load_pretrained(flow, tmp_path / "rgb.pth", adapt_in_channels=True)
    assert report.adapted == ["stem.0.weight: 3 -> 2 channels"]
    mean = src.stem[0].weight.mean(dim=1)
    assert torch.allclose(flow.stem[0].weight[:, 0], mean) and torch.allclose(flow.stem[0].weight[:, 1], mean)


def test_freeze_backbone_trains_only_head_and_new_modules(tmp_path):
    src = randomise_bn(tiny("resnext3d_50", 400, seed=0))
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "h.pth")
    model = tiny("resnext3d_50", 6, seed=1, excitation="ce")
    report = load_pretrained(model, tmp_path / "h.pth", freeze="backbone")
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["excite.res2.conv.weight", "excite.res3.conv.weight", "excite.res4.conv.weight",
                         "excite.res5.conv.weight", "fc.bias", "fc.weight"]
    assert len(report.frozen) == sum(1 for _ in model.parameters()) - 6
    # one optimiser step in train mode: frozen weights and BN running stats stay the pretrained ones
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("fc.", "excite."))}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(2, 3, 4, 16, 16) * 3 + 1
    model(x).logsumexp(1).sum().backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in frozen_before.items())
    assert not model.bn1.training and not model.layer3[0].bn2.training  # kept in eval by the hook
    assert model.training


def test_freeze_prefixes_and_unknown_prefix():
    model = tiny("r2plus1d_18", 3, seed=0)
    frozen = freeze_parameters(model, ["stem", "layer1"])
    assert frozen and all(n.startswith(("stem.", "layer1.")) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith(("layer2.", "fc.")))
    with pytest.raises(ValueError, match="no module named 'layr2' \\(did you mean 'layer2'\\?\\)"):
        freeze_parameters(model, ["layr2"])


def test_a_bad_freeze_prefix_fails_before_anything_is_loaded(tmp_path):
    torch.save(tiny("r3d_18", 3, seed=0).state_dict(), tmp_path / "tv.pth")
    model = tiny("r3d_18", 3, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no module named 'stemm'"):
        load_pretrained(model, tmp_path / "tv.pth", freeze=["stemm", "layer1"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="freeze must be 'none', 'backbone' or a list"):
        load_pretrained(model, tmp_path / "tv.pth", freeze="all")


def test_recipe_keys_and_build_for_wiring(tmp_path):
    from edgekd.recipe import RecipeError
    from edgekd.stages.train_stage import build_for
    from edgekd.stages.validate import parse_recipe

    src = tiny("r3d_18", 400, seed=0)
    torch.save(src.state_dict(), tmp_path / "k400.pth")
    with pytest.raises(RecipeError, match="teacher.freeze: \\['backbone'\\] needs teacher.pretrained"):
        parse_recipe({"name": "x", "teacher": {"freeze": ["backbone"]}})
    with pytest.raises(RecipeError, match="teacher.pretrained_layout: 'hra' is not one of"):
        parse_recipe({"name": "x", "teacher": {"pretrained": "a.pth", "pretrained_layout": "hra"}})
    r = parse_recipe({"name": "x", "teacher": {"model": "r3d_18", "width_mult": 0.125, "pretrained":
                                               str(tmp_path / "k400.pth"), "freeze": ["backbone"]}})
    assert r.teacher.freeze == ("backbone",) and r.teacher.pretrained_layout == "auto"
    ctx = SimpleNamespace(spec=SimpleNamespace(clip_len=SIZE[0], crop=SIZE[1:]))
    model, kwargs = build_for(r.teacher, 7, ctx)
    assert model.fc.out_features == 7 and "pretrained" not in kwargs
    assert torch.equal(model.layer3[1].conv2[0].weight, src.layer3[1].conv2[0].weight)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
