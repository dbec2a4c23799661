"""HMDB51, UCF11, UCF50 and grouped folder-tree readers: labels, grouping, missing videos, path escapes.

Splitting never decodes, so the fake trees hold empty placeholder files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from edgekd.data.readers import (
    hmdb_group,
    read_dataset,
    read_hmdb51,
    read_ucf11,
    read_ucf50,
)
from edgekd.data.splits import SplitError, VideoItem, group_id, read_folder_tree

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def touch(root: Path, rels: list[str]) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()


def rels(items: list[VideoItem]) -> set[str]:
    return {i.rel for i in items}


# ---------------------------------------------------------------- HMDB51 (fake tree)


def make_hmdb(root: Path, per_class: dict[str, list[tuple[str, int]]], *, present: bool = True) -> Path:
    (root / "splits").mkdir(parents=True)
    for cls, lines in per_class.items():
        text = "".join(f"{name} {sid} \n" for name, sid in lines)  # the official files end lines with a space
        (root / "splits" / f"{cls}_test_split1.txt").write_text(text)
        if present:
            touch(root, [f"{cls}/{name}" for name, sid in lines if sid != 0])
    return root


def hmdb_lines(cls: str) -> list[tuple[str, int]]:
    # 4 source movies x 3 clips: movies A, B train (1); C test (2); D unused (0)
    ids = {"A": 1, "B": 1, "C": 2, "D": 0, "E": 1, "F": 1}
    return [(f"Movie{m}_{cls}_f_cm_np1_fr_med_{k}.avi", sid) for m, sid in ids.items() for k in range(3)]


def test_hmdb51_ids_labels_and_movie_grouped_val(tmp_path: Path) -> None:
    root = make_hmdb(tmp_path, {"wave": hmdb_lines("wave"), "brush_hair": hmdb_lines("brush_hair")})
    split = read_hmdb51(root, val_fraction=0.2, seed=0)
    assert split.classes == ["brush_hair", "wave"]
    for it in split.train + split.val + split.test:
        assert it.label == split.classes.index(it.rel.split("/")[0])
        assert split.path(it).is_file()
    assert not any("MovieD" in r for r in rels(split.train + split.val + split.test))  # id 0 = unused
    assert Counter(i.label for i in split.test) == {0: 3, 1: 3}
    assert all("MovieC" in r for r in rels(split.test))
    assert len(split.train) + len(split.val) == 24
    # 12 train clips per class, target round(0.2 * 12) = 2 -> one whole movie (3 clips) per class in val
    assert Counter(i.label for i in split.val) == {0: 3, 1: 3}
    assert not {hmdb_group(r) for r in rels(split.val)} & {hmdb_group(r) for r in rels(split.train)}
    assert hmdb_group("wave/MovieA_wave_f_cm_np1_fr_med_2.avi") == "wave/MovieA"


def test_hmdb51_missing_error_lists_all_and_skip_counts(tmp_path: Path) -> None:
    root = make_hmdb(tmp_path, {"wave": hmdb_lines("wave")}, present=False)
    touch(root, ["wave/MovieA_wave_f_cm_np1_fr_med_0.mp4", "wave/MovieC_wave_f_cm_np1_fr_med_0.avi"])
    with pytest.raises(SplitError) as info:
        read_hmdb51(root)
    msg = str(info.value)
    assert msg.startswith("13 of 15 videos listed in the HMDB51 split files are missing")
    assert "wave/MovieB_wave_f_cm_np1_fr_med_2.avi" in msg
    split = read_hmdb51(root, on_missing="skip")
    assert len(split.missing) == 13
    assert rels(split.train + split.val) == {"wave/MovieA_wave_f_cm_np1_fr_med_0.mp4"}  # listed .avi, local .mp4
    assert rels(split.test) == {"wave/MovieC_wave_f_cm_np1_fr_med_0.avi"}


@pytest.mark.parametrize("line", ["../../etc/passwd 1", "/etc/passwd 1", "sub/x.avi 1", "a.avi 3", "a.avi"])
def test_hmdb51_bad_lines_rejected(tmp_path: Path, line: str) -> None:
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "wave_test_split1.txt").write_text(f"ok.avi 2\n{line}\n")
    with pytest.raises(SplitError, match=r"wave_test_split1\.txt:2: "):
        read_hmdb51(tmp_path, on_missing="skip")


def test_hmdb51_video_in_two_classes_rejected(tmp_path: Path) -> None:
    root = make_hmdb(tmp_path, {"a": [("x.avi", 1), ("y.avi", 2)], "b": [("x.avi", 1), ("z.avi", 2)]})
    with pytest.raises(SplitError, match="also listed for class 'a'"):
        read_hmdb51(root)


def test_hmdb51_split_number_and_files_checked(tmp_path: Path) -> None:
    make_hmdb(tmp_path, {"wave": hmdb_lines("wave")})
    with pytest.raises(SplitError, match="split must be 1, 2 or 3"):
        read_hmdb51(tmp_path, split=4)
    with pytest.raises(SplitError, match=r"test_split2\.txt found"):
        read_hmdb51(tmp_path, split=2)


# ---------------------------------------------------------------- HMDB51 (real official split files)


def _real(sub: str) -> Path:
    if not (REAL / sub).is_dir():
        pytest.skip(f"shared real data not present at {REAL / sub}")
    return REAL / sub


def test_real_hmdb51_official_lists() -> None:
    root = _real("hmdb51/splits").parent
    for n in (1, 2, 3):
        split = read_hmdb51(root, split=n, on_missing="skip")
        assert len(split.classes) == 51 and split.classes[0] == "brush_hair" and split.classes[-1] == "wave"
        everything = split.train + split.val + split.test
        # every class lists 70 train and 30 test videos in every official split
        assert len(everything) + len(split.missing) == 51 * 100
        for it in everything:
            assert split.path(it).is_file()
            assert it.label == split.classes.index(it.rel.split("/")[0])
    with pytest.raises(SplitError, match="of 5100 videos listed in the HMDB51 split files are missing"):
        read_hmdb51(root, split=1)


def test_real_hmdb51_known_clips_land_where_listed() -> None:
    root = _real("hmdb51/splits").parent
    split = read_hmdb51(root, split=1, on_missing="skip", val_fraction=0.0)
    # wave_test_split1.txt: RATRACE..._37 is 1 (train), TrumanShow..._26 is 2 (test), SchoolRules..._0 is 0
    assert "wave/RATRACE_wave_f_nm_np1_fr_goo_37.avi" in rels(split.train)
    assert "wave/TrumanShow_wave_f_nm_np1_fr_med_26.avi" in rels(split.test)
    assert not any("SchoolRules" in r for r in rels(split.train + split.test))
    assert "drink/50_FIRST_DATES_drink_u_nm_np1_fr_goo_29.mp4" in rels(split.test)  # listed .avi, local .mp4


def test_real_ucf101_via_dispatcher_has_mp4_and_avi() -> None:
    root = _real("ucf101/splits").parent
    split = read_dataset("ucf101", root, split=1, on_missing="skip")
    suffixes = {PurePosixPath(r).suffix for r in rels(split.train + split.val + split.test)}
    assert {".mp4", ".avi"} <= suffixes


# ---------------------------------------------------------------- UCF11 / UCF50 / grouped folder


def test_ucf11_groups_never_straddle_subsets(tmp_path: Path) -> None:
    files = [f"{cls}/v_{cls}_{g:02d}/v_{cls}_{g:02d}_{k:02d}.mpg" for cls in ("biking", "diving")
             for g in range(1, 11) for k in range(1, 4 + g % 3)]
    touch(tmp_path, files)
    (tmp_path / "biking" / "v_biking_01" / "Annotation").mkdir()  # original archive: no videos inside
    split = read_ucf11(tmp_path, seed=3)
    assert split.classes == ["biking", "diving"]
    groups = {name: {str(PurePosixPath(i.rel).parent) for i in split.subset(name)} for name in ("train", "val", "test")}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"] and not groups["val"] & groups["test"]
    assert len(split.train) + len(split.val) + len(split.test) == len(files)
    for label in (0, 1):
        n = sum(1 for f in files if f.startswith(split.classes[label]))
        n_train = sum(i.label == label for i in split.train)
        assert 0.5 * n <= n_train <= 0.85 * n  # whole groups: about 70 %
        assert any(i.label == label for i in split.val) and any(i.label == label for i in split.test)
    assert read_ucf11(tmp_path, seed=3) == split
    assert "ucf11" in split.source


def test_ucf11_flat_files_rejected(tmp_path: Path) -> None:
    touch(tmp_path, ["golf/v_golf_01/v_golf_01_01.mpg", "golf/stray.mpg"])
    with pytest.raises(SplitError, match="not in a group folder"):
        read_ucf11(tmp_path)


def test_ucf50_grouped_by_g_id(tmp_path: Path) -> None:
    files = [f"{cls}/v_{cls}_g{g:02d}_c{k:02d}.avi" for cls in ("Biking", "Diving", "PullUps")
             for g in range(1, 26) for k in range(1, 5)]
    touch(tmp_path, files)
    split = read_ucf50(tmp_path)
    train_groups = {group_id(i.rel) for i in split.train}
    assert not train_groups & {group_id(i.rel) for i in split.val}
    assert not train_groups & {group_id(i.rel) for i in split.test}
    assert not {group_id(i.rel) for i in split.val} & {group_id(i.rel) for i in split.test}
    for label in range(3):  # 100 videos/class in groups of 4: targets 70/20/10 are met exactly
        assert [sum(i.label == label for i in split.subset(s)) for s in ("train", "val", "test")] == [68, 20, 12]
    touch(tmp_path, ["Biking/no_group_here.avi"])
    with pytest.raises(SplitError, match="group id"):
        read_ucf50(tmp_path)


def test_folder_group_regex(tmp_path: Path) -> None:
    files = [f"{cls}/person{p}_take{t}.mp4" for cls in ("fall", "sit") for p in range(10) for t in range(3)]
    touch(tmp_path, files)
    split = read_folder_tree(tmp_path, group_regex=r"(person\d+)_")
    person = {name: {(i.label, i.rel.split("/")[1].split("_")[0]) for i in split.subset(name)}
              for name in ("train", "val", "test")}
    assert not person["train"] & person["val"] and not person["train"] & person["test"]
    assert [len(split.subset(s)) for s in ("train", "val", "test")] == [42, 12, 6]
    assert "grouped by" in split.source
    touch(tmp_path, ["sit/unnamed.mp4"])
    with pytest.raises(SplitError, match=r"1 file name\(s\) .* do not match group_regex"):
        read_folder_tree(tmp_path, group_regex=r"(person\d+)_")


def test_dispatcher_rejects_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset source 'kinetics'"):
        read_dataset("kinetics", tmp_path)
