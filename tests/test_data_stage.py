"""The data stage end to end on tiny trees: bad-video policy, label alignment, fraction, flow, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgekd.stages.data_stage import DataContext, DataError, run_data
from edgekd.stages.rundir import RunDir
from edgekd.stages.validate import parse_recipe

H, W = 24, 32
LEVELS = {"alpha": 40, "beta": 120, "gamma": 200}  # every frame of a class's videos has this grey level


def write_class_video(path: Path, level: int, n: int = 10, seed: int = 0) -> None:
    """A grey level identifying the class, plus a moving bright square (so there is motion)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    assert w.isOpened()
    for k in range(n):
        f = np.full((H, W, 3), level, np.uint8)
        x = (2 * k + seed) % (W - 6)
        f[8:14, x : x + 6] = min(255, level + 50)
        w.write(f)
    w.release()


def make_tree(root: Path, per_class: int = 6) -> Path:
    for cls, level in LEVELS.items():
        for i in range(per_class):
            write_class_video(root / cls / f"{cls}_{i}.avi", level, seed=i)
    return root


def recipe_for(tmp_path: Path, root: Path, **data: object):
    base = {"source": "folder", "root": str(root), "clip_len": 4, "resize": [H, W], "crop": [16, 16],
            "workers": 0, "cache_dir": str(tmp_path / "cache")}
    return parse_recipe({"name": "t", "runs_dir": str(tmp_path / "runs"), "data": {**base, **data}})


def break_some(root: Path) -> list[Path]:
    bad = [root / "alpha" / "alpha_1.avi", root / "beta" / "beta_4.avi", root / "gamma" / "gamma_2.avi"]
    bad[0].write_bytes(b"")
    bad[1].write_bytes(b"not a video" * 50)
    write_class_video(bad[2], LEVELS["gamma"], n=1)  # too short for flow / min_frames 2
    return bad


def test_on_bad_video_error_lists_all(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "videos")
    bad = break_some(root)
    rd = RunDir(recipe_for(tmp_path, root, min_frames=2))
    with pytest.raises(DataError) as info:
        run_data(rd)
    msg = str(info.value)
    assert msg.startswith("3 video(s) could not be used")
    for p in bad:
        assert str(p) in msg
    assert "0 bytes" in msg and "too short: 1 frame(s)" in msg


def test_on_bad_video_skip_counts_and_labels_stay_aligned(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "videos")
    bad = break_some(root)
    rd = RunDir(recipe_for(tmp_path, root, min_frames=2, on_bad_video="skip"))
    out = run_data(rd)
    assert out["bad_skipped"] == 3
    assert out["train"] + out["val"] + out["test"] == 18 - 3
    report = json.loads((rd.stage_dir("data") / "report.json").read_text())
    assert report["bad_videos"]["count"] == 3
    assert {v["path"] for v in report["bad_videos"]["videos"]} == {str(p) for p in bad}
    assert all(v["reason"] for v in report["bad_videos"]["videos"])
    ctx = DataContext.load(rd)
    assert not {str(ctx.split.path(i)) for i in ctx.split.train + ctx.split.val + ctx.split.test} & {str(p) for p in bad}
    # every clip's content (its class grey level) matches its label
    level_of = {ctx.split.classes.index(c): lv for c, lv in LEVELS.items()}
    for subset in ("train", "val", "test"):
        ds = ctx.dataset(subset, train=False)
        for i in range(len(ds)):
            raw = ds.raw_clip(i)
            assert abs(float(np.median(raw)) - level_of[ds.items[i].label]) < 8


def test_fraction_written_and_nested(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "videos", per_class=10)
    kept = {}
    for pct in (100, 50, 25):
        rd = RunDir(recipe_for(tmp_path, root, fraction=pct, val_fraction=0.1))
        out = run_data(rd)
        rec = json.loads((rd.stage_dir("data") / "fraction.json").read_text())
        split = json.loads((rd.stage_dir("data") / "split.json").read_text())
        assert rec["percent"] == pct and sorted(rec["kept"]) == sorted(r for r, _ in split["train"])
        assert out["train"] == rec["train_after"]
        kept[pct] = set(rec["kept"])
        for counts in rec["per_class"].values():  # 7 train videos per class (70 %)
            assert counts == {"train": 7, "kept": {100: 7, 50: 4, 25: 2}[pct]}
    assert kept[25] <= kept[50] <= kept[100]


def test_flow_stage_and_aligned_rgb_flow_batches(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "videos", per_class=4)
    rd = RunDir(recipe_for(tmp_path, root, flow="farneback", augment="hu"))
    out = run_data(rd)
    stats = json.loads((rd.stage_dir("data") / "flow.json").read_text())
    assert stats["method"] == "farneback" and stats["frame_pairs"] == 12 * 9
    assert stats["ms_per_pair"] > 0 and out["flow_ms_per_pair"] == stats["ms_per_pair"]
    ctx = DataContext.load(rd)
    spec = ctx.input_spec("flow")
    assert spec["modality"] == "flow" and spec["mean"] == [0.5, 0.5] and spec["flow"] == "farneback"
    assert ctx.input_spec()["normalization"] == "activitynet_mean"
    torch.manual_seed(0)
    clips, _labels, extras = next(iter(ctx.train_loader(4, modality="rgb+flow", aug_variants=3)))
    assert clips.shape == (4, 3, 4, 16, 16) and extras["flow"].shape == (4, 2, 4, 16, 16)
    assert extras["clip_key"].shape == (4, 2) and extras["clip_key"].dtype == torch.long
    assert ((extras["clip_key"][:, 1] >= 0) & (extras["clip_key"][:, 1] < 3)).all()
    # Hu: flow - 127.5 and RGB minus the ActivityNet mean, in pixel units
    assert float(extras["flow"].abs().max()) <= 127.5
    flow_x, _ = ctx.eval_array("test", modality="flow")
    assert flow_x.shape == (len(ctx.split.test), 2, 4, 16, 16)
    rgb, y, flow = ctx.eval_array("test", modality="rgb+flow", limit=2)
    np.testing.assert_array_equal(flow, flow_x[:2])
    assert rgb.shape == (2, 3, 4, 16, 16) and y.shape == (2,)


def test_clip_key_reproduces_clip(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "videos", per_class=4)
    rd = RunDir(recipe_for(tmp_path, root, augment="camarena"))
    run_data(rd)
    ds = DataContext.load(rd).dataset("train", train=True, aug_variants=2)
    seen: dict[tuple[int, int], torch.Tensor] = {}
    torch.manual_seed(1)
    for _ in range(6):
        for i in range(len(ds)):
            clip, label, extras = ds[i]
            key = tuple(extras["clip_key"].tolist())
            assert key[0] == i and label == ds.items[i].label
            if key in seen:
                assert torch.equal(seen[key], clip)
            seen[key] = clip
    assert {k[1] for k in seen} == {0, 1}
    # no variants: clip_key's variant is -1 and repeated draws differ
    rd2 = RunDir(recipe_for(tmp_path, root))
    ds2 = DataContext.load(rd2).dataset("train", train=True)
    torch.manual_seed(1)
    a, b = ds2[0], ds2[0]
    assert a[2]["clip_key"].tolist() == [0, -1] and not torch.equal(a[0], b[0])


def test_flow_modality_without_flow_is_a_clear_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "videos", per_class=3)
    rd = RunDir(recipe_for(tmp_path, root))
    run_data(rd)
    with pytest.raises(ValueError, match="set data.flow"):
        DataContext.load(rd).train_loader(2, modality="flow")


def test_clip_keys_identical_across_worker_processes(tmp_path: Path) -> None:
    """A (video, variant) key names the same clip in forked workers as in the main process."""
    root = make_tree(tmp_path / "videos", per_class=3)
    rd = RunDir(recipe_for(tmp_path, root, augment="camarena", flow="farneback", workers=2))
    run_data(rd)
    ctx = DataContext.load(rd)
    ds = ctx.dataset("train", train=True, modality="rgb+flow", aug_variants=2)
    batches = list(ctx.train_loader(4, modality="rgb+flow", aug_variants=2))
    assert sum(b[0].shape[0] for b in batches) == len(ds)
    for rgb, labels, extras in batches:
        for j, (i, v) in enumerate(extras["clip_key"].tolist()):
            rng = np.random.default_rng([rd.recipe.seed, i, v])
            ref_rgb, ref_flow = ds._train_sample(i, rng)
            assert labels[j] == ds.items[i].label
            torch.testing.assert_close(rgb[j], ds._norm_rgb(ref_rgb), rtol=0, atol=0)
            torch.testing.assert_close(extras["flow"][j], ds._norm_flow(ref_flow), rtol=0, atol=0)
