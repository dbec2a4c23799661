"""Tests for the synthetic action-video generator (tiny sizes so the whole file runs in seconds)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgekd
from edgekd.data import synth
from edgekd.data.synth import (
    ACTIONS,
    JOINTS,
    SynthResult,
    generate_dataset,
    pose_trajectory,
    render_video,
    sample_params,
)

SMALL = (64, 48)  # (width, height)


def _decode(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)


def _hashes(frames: np.ndarray) -> list[str]:
    return sorted(hashlib.sha1(f.tobytes()).hexdigest() for f in frames)


# ---------------------------------------------------------------------------------------------
# render_video
# ---------------------------------------------------------------------------------------------


def test_actions_list() -> None:
    assert isinstance(ACTIONS, tuple)
    assert len(ACTIONS) >= 8
    assert len(set(ACTIONS)) == len(ACTIONS)
    assert {"sit_down", "stand_up", "walk", "run", "jumping_jack"} <= set(ACTIONS)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", a) for a in ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
def test_render_shape_dtype_and_motion(action: str) -> None:
    frames = render_video(action, np.random.default_rng(1), num_frames=12, size=SMALL)
    assert frames.shape == (12, 48, 64, 3)
    assert frames.dtype == np.uint8
    clean = render_video(action, np.random.default_rng(1), num_frames=12, size=SMALL, _clean=True)
    # Something moves between frames even without noise or shake: the figure itself.
    motion = np.abs(np.diff(clean.astype(np.int16), axis=0)).sum(axis=(1, 2, 3))
    assert (motion > 0).sum() >= 6, f"{action}: figure barely moves ({motion})"
    # Noise/shake only perturb the clean picture: same scene, small average difference.
    assert 0 < np.abs(frames.astype(np.int16) - clean).mean() < 25


def test_figure_contrasts_with_background() -> None:
    """The figure must survive downscaling: its pixels are far from the background's."""
    params = sample_params("jumping_jack", np.random.default_rng(3), size=(160, 120))
    lay = synth._layout("jumping_jack", params, 4)
    assert lay.thickness >= 2
    clean = render_video("jumping_jack", np.random.default_rng(3), num_frames=4, size=(160, 120), _clean=True)
    pelvis = np.rint(lay.joints[0, JOINTS.index("pelvis")]).astype(int)
    on_figure = clean[0, pelvis[1], pelvis[0]].astype(float).mean()
    corner = clean[0, :5, :5].astype(float).mean()
    assert abs(on_figure - corner) > 40


def test_same_seed_same_frames_different_seed_different_frames() -> None:
    a = render_video("run", np.random.default_rng(42), num_frames=10, size=SMALL)
    b = render_video("run", np.random.default_rng(42), num_frames=10, size=SMALL)
    c = render_video("run", np.random.default_rng(43), num_frames=10, size=SMALL)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(np.int16) - c).mean() > 5


def test_size_is_width_height() -> None:
    frames = render_video("walk", np.random.default_rng(0), num_frames=3, size=(50, 30))
    assert frames.shape == (3, 30, 50, 3)


def test_bad_action_and_arguments_raise() -> None:
    with pytest.raises(ValueError, match=r"'sitdown'.*Did you mean 'sit_down'"):
        render_video("sitdown", np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_frames"):
        render_video("walk", np.random.default_rng(0), num_frames=1)
    with pytest.raises(ValueError, match=r"size"):
        render_video("walk", np.random.default_rng(0), size=(8, 8))


# ---------------------------------------------------------------------------------------------
# sit_down / stand_up: identical frames, opposite order
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_stand_up_trajectory_is_sit_down_reversed(seed: int) -> None:
    sit_params = sample_params("sit_down", np.random.default_rng(seed), size=SMALL)
    stand_params = sample_params("stand_up", np.random.default_rng(seed), size=SMALL)
    assert sit_params == stand_params  # parameter draws do not depend on the action

    sit = pose_trajectory("sit_down", sit_params, 20)
    stand = pose_trajectory("stand_up", sit_params, 20)
    assert sit.shape == (20, len(JOINTS), 2)
    np.testing.assert_array_equal(stand, sit[::-1])
    # Not a palindrome, so the order of frames really is the only difference.
    assert not np.allclose(sit, sit[::-1])
    # Sitting lowers the pelvis (image y grows downward) by a good fraction of the figure.
    pelvis = JOINTS.index("pelvis")
    head = JOINTS.index("head")
    figure_height = sit[0, :, 1].max() - sit[0, head, 1]
    assert sit[-1, pelvis, 1] - sit[0, pelvis, 1] > 0.15 * figure_height


def test_stand_up_frames_are_sit_down_frames_reversed() -> None:
    sit = render_video("sit_down", np.random.default_rng(7), num_frames=16, size=(80, 60), _clean=True)
    stand = render_video("stand_up", np.random.default_rng(7), num_frames=16, size=(80, 60), _clean=True)
    # Same multiset of frames: no single frame can tell the classes apart ...
    assert _hashes(sit) == _hashes(stand)
    # ... yet the clips differ, only in order, and the clip is far from static.
    assert not np.array_equal(sit, stand)
    np.testing.assert_array_equal(stand, sit[::-1])
    assert len(set(_hashes(sit))) >= 8


def test_periodic_actions_depend_on_phase() -> None:
    """Random phase: two clips of the same actor start at different points of the cycle."""
    actor = synth.sample_actor(np.random.default_rng(0))
    a = pose_trajectory("squat", sample_params("squat", np.random.default_rng(1), size=SMALL, actor=actor), 8)
    b = pose_trajectory("squat", sample_params("squat", np.random.default_rng(2), size=SMALL, actor=actor), 8)
    assert not np.allclose(a, b)


# ---------------------------------------------------------------------------------------------
# generate_dataset
# ---------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _group(rel: str) -> int:
    m = re.search(r"_g(\d+)_c(\d+)\.avi$", rel)
    assert m, rel
    return int(m.group(1))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    out = tmp_path_factory.mktemp("synth") / "ds"
    # Classes deliberately out of ACTIONS order: labels must follow ACTIONS order anyway.
    return generate_dataset(out, classes=["stand_up", "walk", "jump"], per_class=4, seed=3, num_frames=16,
                            size=SMALL, show_progress=False)


def test_dataset_result_and_class_index(dataset: SynthResult) -> None:
    assert dataset.classes == ("walk", "jump", "stand_up")
    assert dataset.num_frames == 16
    assert dataset.size == SMALL
    assert dataset.num_train + dataset.num_test == 12
    assert dataset.num_train == 6 and dataset.num_test == 6  # 2 groups of 2 clips: one trains, one tests
    assert _lines(dataset.root / "classInd.txt") == ["1 walk", "2 jump", "3 stand_up"]


def test_dataset_lists_cover_files_and_split_by_group(dataset: SynthResult) -> None:
    root = dataset.root
    train = [line.split(" ") for line in _lines(root / "trainlist01.txt")]
    test = _lines(root / "testlist01.txt")
    assert all(len(parts) == 2 for parts in train)
    train_rel = [rel for rel, _ in train]
    for rel, label in train:
        cls = rel.split("/")[0]
        assert int(label) == dataset.classes.index(cls) + 1
        assert rel == f"{cls}/v_{cls}_g{_group(rel):02d}_c{int(rel[-6:-4]):02d}.avi"
    assert all(" " not in rel for rel in test)
    assert len(train_rel) == dataset.num_train and len(test) == dataset.num_test
    assert not set(train_rel) & set(test)

    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.avi"))
    assert on_disk == sorted(train_rel + test)
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]  # no leftovers from atomic writes

    train_groups, test_groups = {_group(r) for r in train_rel}, {_group(r) for r in test}
    assert train_groups == {1} and test_groups == {2}  # the last group is held out
    for cls in dataset.classes:  # every class is in both subsets
        assert any(r.startswith(cls + "/") for r in train_rel)
        assert any(r.startswith(cls + "/") for r in test)


def test_dataset_videos_decode_to_the_right_shape(dataset: SynthResult) -> None:
    videos = sorted(dataset.root.rglob("*.avi"))
    assert len(videos) == 12
    for path in videos:
        frames = _decode(path)
        assert frames.shape == (16, 48, 64, 3), path
        assert frames.std() > 5, f"{path} looks blank"


def test_dataset_metadata(dataset: SynthResult) -> None:
    meta = json.loads((dataset.root / "synth.json").read_text(encoding="utf-8"))
    assert meta["seed"] == 3
    assert meta["classes"] == ["walk", "jump", "stand_up"]
    assert meta["per_class"] == 4
    assert meta["num_frames"] == 16
    assert meta["size"] == [64, 48]
    assert meta["fps"] == 25.0
    assert meta["edgekd_version"] == edgekd.__version__


def test_dataset_is_reproducible_and_subset_stable(dataset: SynthResult, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", classes=["walk", "jump", "stand_up"], per_class=4, seed=3,
                             num_frames=16, size=SMALL, show_progress=False)
    subset = generate_dataset(tmp_path / "subset", classes=["jump"], per_class=4, seed=3, num_frames=16,
                              size=SMALL, show_progress=False)
    other = generate_dataset(tmp_path / "other", classes=["jump"], per_class=4, seed=4, num_frames=16,
                             size=SMALL, show_progress=False)
    for path in sorted(dataset.root.rglob("*.avi")):
        rel = path.relative_to(dataset.root)
        assert np.array_equal(_decode(path), _decode(again.root / rel)), rel
    for path in sorted(subset.root.rglob("*.avi")):
        rel = path.relative_to(subset.root)
        assert np.array_equal(_decode(path), _decode(dataset.root / rel)), rel
        assert not np.array_equal(_decode(path), _decode(other.root / rel)), rel
    assert _lines(subset.root / "classInd.txt") == ["1 jump"]
    assert _lines(subset.root / "testlist01.txt") == ["jump/v_jump_g02_c01.avi", "jump/v_jump_g02_c02.avi"]


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'jumping_jak'.*Did you mean 'jumping_jack'.*Valid: walk"):
        generate_dataset(tmp_path / "a", classes=["walk", "jumping_jak"], per_class=2, show_progress=False)
    with pytest.raises(ValueError, match="wave_one_arm' or 'wave_two_arms"):
        generate_dataset(tmp_path / "a", classes=["wave"], per_class=2, show_progress=False)
    with pytest.raises(ValueError, match="per_class"):
        generate_dataset(tmp_path / "a", classes=["walk"], per_class=1, show_progress=False)
    with pytest.raises(ValueError, match="seed"):
        generate_dataset(tmp_path / "a", classes=["walk"], seed=-1, show_progress=False)
    assert not (tmp_path / "a").exists()  # validation happens before anything is written


@pytest.mark.parametrize(
    ("per_class", "clips_per_group", "expected"),
    [(2, 4, [1, 1]), (4, 4, [2, 2]), (12, 4, [4, 4, 4]), (13, 4, [4, 4, 4, 1]), (6, 1, [1] * 6)],
)
def test_group_plan(per_class: int, clips_per_group: int, expected: list[int]) -> None:
    plan = synth._plan_groups(per_class, clips_per_group)
    assert plan == expected
    assert sum(plan) == per_class


def test_write_video_reports_unwritable_path(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    bad = tmp_path / "clip.not_a_video_format"
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        synth.write_video(bad, frames, 25.0)
    assert list(tmp_path.iterdir()) == []
