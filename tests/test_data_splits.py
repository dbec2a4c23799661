"""Splits: folder-tree ratios and determinism, official UCF101 lists, val carving, JSON round-trip."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from edgekd.data.splits import (
    DatasetSplit,
    SplitError,
    VideoItem,
    group_id,
    load_split,
    read_folder_tree,
    read_ucf101,
    save_split,
)

UCF = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "ucf101"


def make_tree(root: Path, counts: dict[str, int], ext: str = ".avi") -> Path:
    """Empty placeholder videos: splitting never decodes, so zero-byte files are enough."""
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"v_{cls}_g{i:02d}_c01{ext}").touch()
    return root


def rels(items: list[VideoItem]) -> set[str]:
    return {i.rel for i in items}


# ---------------------------------------------------------------- folder tree


def test_folder_tree_counts_per_class(tmp_path: Path) -> None:
    split = read_folder_tree(make_tree(tmp_path, {"b_walk": 10, "a_run": 10, "c_jump": 10}))
    assert split.classes == ["a_run", "b_walk", "c_jump"]  # sorted names -> labels
    for name, expected in (("train", 7), ("val", 2), ("test", 1)):
        assert Counter(i.label for i in split.subset(name)) == {0: expected, 1: expected, 2: expected}
    for it in split.train + split.val + split.test:
        assert it.rel.startswith(split.classes[it.label] + "/")
        assert split.path(it).is_file()
    assert split.source == "folder tree, stratified 70/20/10 (seed 0)"
    assert split.missing == []


def test_folder_tree_deterministic_disjoint_and_seeded(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"a": 10, "b": 10})
    s1, s2 = read_folder_tree(root, seed=0), read_folder_tree(root, seed=0)
    assert (s1.train, s1.val, s1.test) == (s2.train, s2.val, s2.test)
    assert not rels(s1.train) & rels(s1.val)
    assert not rels(s1.train) & rels(s1.test)
    assert not rels(s1.val) & rels(s1.test)
    assert len(rels(s1.train) | rels(s1.val) | rels(s1.test)) == 20
    s3 = read_folder_tree(root, seed=1)
    assert (rels(s3.val), rels(s3.test)) != (rels(s1.val), rels(s1.test))


def test_folder_tree_small_classes(tmp_path: Path) -> None:
    split = read_folder_tree(make_tree(tmp_path, {"one": 1, "three": 3, "two": 2}))
    train, val, test = (Counter(i.label for i in split.subset(n)) for n in ("train", "val", "test"))
    # labels: one=0, three=1, two=2
    assert (train[0], val[0], test[0]) == (1, 0, 0)
    assert (train[1], val[1], test[1]) == (1, 1, 1)
    assert train[2] >= 1 and train[2] + val[2] + test[2] == 2


def test_folder_tree_errors(tmp_path: Path) -> None:
    with pytest.raises(SplitError, match="no class sub-folders"):
        read_folder_tree(tmp_path)
    make_tree(tmp_path, {"a": 3})
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(SplitError, match="empty_class"):
        read_folder_tree(tmp_path)
    with pytest.raises(ValueError, match="ratios"):
        read_folder_tree(tmp_path, ratios=(0.5, 0.2, 0.2))


# ---------------------------------------------------------------- UCF101 lists (synthetic)


def make_ucf(root: Path, *, train_lines: list[str], test_lines: list[str], files: list[str]) -> Path:
    splits = root / "splits"
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("1 Alpha\r\n2 Beta\r\n")
    (splits / "trainlist01.txt").write_text("\r\n".join(train_lines) + "\r\n")
    (splits / "testlist01.txt").write_text("\r\n".join(test_lines) + "\r\n")
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return root


def test_ucf101_avi_listed_mp4_local_and_group_carving(tmp_path: Path) -> None:
    train = [f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi {lab}" for lab, c in ((1, "Alpha"), (2, "Beta"))
             for g in range(8, 26) for k in (1, 2, 3)]
    test = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in ("Alpha", "Beta") for g in range(1, 8)]
    files = [line.split()[0].replace(".avi", ".mp4") for line in train + test]
    split = read_ucf101(make_ucf(tmp_path, train_lines=train, test_lines=test, files=files), val_fraction=0.1)
    assert split.missing == []
    assert len(split.test) == 14 and all(i.rel.endswith(".mp4") for i in split.test)
    assert len(split.train) + len(split.val) == 108
    for label in (0, 1):  # 54 train videos/class -> target round(5.4)=5 -> two groups of 3
        assert sum(i.label == label for i in split.val) == 6
    train_groups = {group_id(i.rel) for i in split.train}
    assert not train_groups & {group_id(i.rel) for i in split.val}
    again = read_ucf101(tmp_path, val_fraction=0.1)
    assert again.val == split.val
    assert rels(read_ucf101(tmp_path, val_fraction=0.1, seed=5).val) != rels(split.val)


def test_ucf101_wrong_label_column_rejected(tmp_path: Path) -> None:
    root = make_ucf(tmp_path, train_lines=["Alpha/v_Alpha_g01_c01.avi 2"], test_lines=["Beta/v_Beta_g01_c01.avi"],
                    files=["Alpha/v_Alpha_g01_c01.avi", "Beta/v_Beta_g01_c01.avi"])
    with pytest.raises(SplitError, match=r"trainlist01\.txt:1: .*label column 2 \(Beta\).*Alpha = 1"):
        read_ucf101(root)


@pytest.mark.parametrize("bad", ["../Alpha/v_Alpha_g01_c01.avi", "/etc/Alpha/x.avi", "Alpha/../../x.avi"])
def test_ucf101_path_escape_rejected(tmp_path: Path, bad: str) -> None:
    root = make_ucf(tmp_path, train_lines=[f"{bad} 1"], test_lines=["Beta/v_Beta_g01_c01.avi"], files=[])
    with pytest.raises(SplitError, match="escape|absolute"):
        read_ucf101(root, on_missing="skip")


def test_ucf101_missing_lists_all(tmp_path: Path) -> None:
    train = [f"Alpha/v_Alpha_g{g:02d}_c01.avi 1" for g in range(1, 31)]
    root = make_ucf(tmp_path, train_lines=train, test_lines=["Beta/v_Beta_g01_c01.avi"],
                    files=["Alpha/v_Alpha_g01_c01.avi"])
    with pytest.raises(SplitError) as info:
        read_ucf101(root)
    msg = str(info.value)
    assert msg.startswith("30 of 31 videos listed")
    assert "Alpha/v_Alpha_g02_c01.avi" in msg and "... and 10 more" in msg
    skipped = read_ucf101(root, on_missing="skip")
    assert len(skipped.missing) == 30
    assert rels(skipped.train + skipped.val) == {"Alpha/v_Alpha_g01_c01.avi"}


def test_subset_name_checked(tmp_path: Path) -> None:
    split = read_folder_tree(make_tree(tmp_path, {"a": 3}))
    with pytest.raises(KeyError, match="validation"):
        split.subset("validation")


def test_save_load_round_trip(tmp_path: Path) -> None:
    split = read_folder_tree(make_tree(tmp_path / "data", {"a": 5, "b": 4}))
    split.missing = ["a/gone.avi"]
    save_split(split, tmp_path / "out" / "split.json")
    loaded = load_split(tmp_path / "out" / "split.json")
    assert loaded == split
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left behind


def test_from_json_rejects_escape_and_bad_label() -> None:
    good = DatasetSplit(Path("/d"), ["a"], [VideoItem("a/x.avi", 0)], [], [], "test").to_json()
    bad = dict(good, train=[["../x.avi", 0]])
    with pytest.raises(SplitError, match="escape"):
        DatasetSplit.from_json(bad)
    with pytest.raises(SplitError, match="label"):
        DatasetSplit.from_json(dict(good, train=[["a/x.avi", 3]]))


# ---------------------------------------------------------------- UCF101 lists (real shared data)


def _real_ucf() -> Path:
    if not (UCF / "splits" / "classInd.txt").is_file():
        pytest.skip(f"shared UCF101 clips not present at {UCF}")
    return UCF


def test_real_ucf101_skip_missing() -> None:
    root = _real_ucf()
    split = read_ucf101(root, split=1, on_missing="skip")
    class_ind = {line.split()[1]: int(line.split()[0]) - 1
                 for line in (root / "splits" / "classInd.txt").read_text().splitlines() if line.strip()}
    assert len(split.classes) == 101 == len(class_ind)
    everything = split.train + split.val + split.test
    assert everything, "no local clip matched the official lists"
    for it in everything:
        assert split.path(it).is_file()
        assert it.label == class_ind[it.rel.split("/")[0]]
    assert not rels(split.train) & rels(split.test)
    assert not rels(split.val) & (rels(split.train) | rels(split.test))
    assert split.val
    assert not {group_id(i.rel) for i in split.val} & {group_id(i.rel) for i in split.train}
    n_listed = sum(1 for p in ("trainlist01.txt", "testlist01.txt")
                   for line in (root / "splits" / p).read_text().splitlines() if line.strip())
    assert len(split.missing) + len(everything) == n_listed
    assert "ucf101 split 1" in split.source


def test_real_ucf101_missing_is_an_error() -> None:
    root = _real_ucf()
    with pytest.raises(SplitError, match=r"videos listed in the UCF101 split files are missing") as info:
        read_ucf101(root, split=2)
    assert "... and" in str(info.value) and ".avi" in str(info.value)
