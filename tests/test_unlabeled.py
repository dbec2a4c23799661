"""The unlabelled transfer set: listed, decoded and reported like labelled videos, never sharing a
video with the labelled splits; mixed into KD batches at a fixed ratio and a fixed step count."""

from __future__ import annotations

import json

import pytest
import torch
from test_data_stage import LEVELS, make_tree, recipe_for, write_class_video

from edgekd.data.mixing import MixedBatchSampler, split_batch_size
from edgekd.data.synth import generate_unlabeled
from edgekd.stages.data_stage import DataContext, DataError, run_data
from edgekd.stages.rundir import RunDir


def test_batches_keep_the_scratch_step_count_and_mix_at_the_ratio():
    assert split_batch_size(4, 0.5) == (2, 2) and split_batch_size(4, 0.0) == (4, 0)
    assert split_batch_size(4, 0.9) == (1, 3) and split_batch_size(1, 0.5) == (1, 0)
    gen = torch.Generator().manual_seed(0)
    s = MixedBatchSampler(10, 7, batch_size=4, ratio=0.5, generator=gen)
    batches = list(s)
    assert len(batches) == len(s) == 3  # ceil(10 / 4): the scratch loader's batches per epoch
    for b in batches:
        assert len(b) == 4 and sum(i < 10 for i in b) == 2 and all(i < 17 for i in b)
    labelled = [i for b in batches for i in b if i < 10]
    assert len(set(labelled)) == len(labelled) == 6  # no repeats within a pass
    again = list(MixedBatchSampler(10, 7, batch_size=4, ratio=0.5, generator=torch.Generator().manual_seed(0)))
    assert again == batches  # a function of the generator (restored on resume)


def test_synthetic_unlabelled_videos_hide_their_labels(tmp_path):
    paths = generate_unlabeled(tmp_path / "u", count=3, classes=["walk", "squat"], num_frames=8, size=(64, 48),
                               show_progress=False)
    assert [p.name for p in paths] == ["u_00000.avi", "u_00001.avi", "u_00002.avi"]
    meta = json.loads((tmp_path / "u" / "synth_unlabeled.json").read_text())
    assert set(meta["actions"]) <= {"walk", "squat"} and len(meta["actions"]) == 3
    assert not any("walk" in p.name or "squat" in p.name for p in paths)  # nothing in a path tells the class


def test_folder_transfer_set_leaves_out_labelled_videos_and_reports_bad_ones(tmp_path):
    root = make_tree(tmp_path / "videos", per_class=4)
    extra = tmp_path / "footage"
    for i in range(3):
        write_class_video(extra / "cam1" / f"clip_{i}.avi", LEVELS["beta"], seed=i)
    (extra / "cam2").mkdir()
    (extra / "cam2" / "broken.avi").write_bytes(b"not a video" * 20)
    # a labelled video copied into the footage folder is still labelled: the path differs, so it
    # counts as footage; the labelled tree itself, pointed at as footage, is left out entirely
    rd = RunDir(recipe_for(tmp_path, root, unlabeled={"source": "folder", "root": str(extra)}, on_bad_video="skip"))
    out = run_data(rd)
    report = json.loads((rd.stage_dir("data") / "report.json").read_text())["unlabeled"]
    assert out["unlabeled"] == 3 and report["bad_videos"]["count"] == 1
    assert report["bad_videos"]["videos"][0]["path"].endswith("broken.avi")
    ctx = DataContext.load(rd)
    ds = ctx.unlabeled_dataset()
    clip, label, extras = ds[0]
    assert label == -1 and clip.shape == (3, 4, 16, 16)
    assert int(extras["clip_key"][0]) == len(ctx.split.train)  # keys past the labelled ones
    rd2 = RunDir(recipe_for(tmp_path / "b", root, unlabeled={"source": "folder", "root": str(root)}))
    with pytest.raises(DataError, match="no usable video"):
        run_data(rd2)


def test_bad_unlabelled_videos_raise_under_the_error_policy(tmp_path):
    root = make_tree(tmp_path / "videos", per_class=3)
    extra = tmp_path / "footage"
    extra.mkdir()
    (extra / "broken.avi").write_bytes(b"")
    rd = RunDir(recipe_for(tmp_path, root, unlabeled={"source": "folder", "root": str(extra)}))
    with pytest.raises(DataError, match=r"(?s)1 unlabelled video\(s\) could not be used.*broken.avi: file is empty"):
        run_data(rd)


def test_train_rest_is_what_the_fraction_leaves_out(tmp_path):
    root = make_tree(tmp_path / "videos", per_class=8)
    rd = RunDir(recipe_for(tmp_path, root, fraction=50, unlabeled={"source": "train_rest"}))
    run_data(rd)
    split = json.loads((rd.stage_dir("data") / "split.json").read_text())
    transfer = json.loads((rd.stage_dir("data") / "unlabeled.json").read_text())
    labelled = {rel for sub in ("train", "val", "test") for rel, _ in split[sub]}
    assert transfer["videos"] and not labelled & set(transfer["videos"])
    kept = json.loads((rd.stage_dir("data") / "fraction.json").read_text())
    assert len(transfer["videos"]) == kept["train_before"] - kept["train_after"]


def test_kd_batches_mix_transfer_clips_and_the_loss_uses_their_soft_term_only(tmp_path):
    root = make_tree(tmp_path / "videos", per_class=4)
    extra = tmp_path / "footage"
    for i in range(5):
        write_class_video(extra / f"c{i}.avi", LEVELS["alpha"], seed=i)
    rd = RunDir(recipe_for(tmp_path, root, unlabeled={"source": "folder", "root": str(extra)}))
    run_data(rd)
    ctx = DataContext.load(rd)
    loader = ctx.mixed_train_loader(4, 0.5, seed=3)
    n_l = len(ctx.split.train)
    batches = list(loader)
    assert len(batches) == len(ctx.train_loader(4)) and all(b[0].shape[0] == 4 for b in batches)
    for clips, labels, extras in batches:
        assert int((labels == -1).sum()) == 2 and bool((extras["clip_key"][labels == -1, 0] >= n_l).all())
