"""Dataset readers for the papers' benchmarks, and the one dispatcher the data stage calls.

* HMDB51: the 51 official ``<class>_test_splitN.txt`` files, one line ``<video> <id>`` per video,
  id 1 = train, 2 = test, 0 = unused in that split. Videos are ``root/<class>/<video>``.
* UCF11 (YouTube actions): ``root/<class>/<group>/<video>``; the group folder is one source video.
* UCF50: ``root/<class>/v_<Class>_gXX_cYY.avi``; ``gXX`` is the group.
* UCF101 and the generic folder tree are in ``edgekd.data.splits``.

UCF11, UCF50 and folder trees have no official lists; Ullah & Munir use a 70/20/10 split, made here
per class and, where groups exist, whole groups at a time (clips of one group come from one long
video; splitting a group leaks near-identical frames from train into test).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from edgekd.data.splits import (
    DatasetSplit,
    SplitError,
    VideoItem,
    carve_val,
    list_class_videos,
    missing_message,
    read_folder_tree,
    read_ucf101,
    resolve_local,
    safe_rel,
    split_class_videos,
)

__all__ = ["DATASET_SOURCES", "hmdb_group", "read_dataset", "read_hmdb51", "read_ucf11", "read_ucf50"]

DATASET_SOURCES: tuple[str, ...] = ("ucf101", "hmdb51", "ucf11", "ucf50", "folder")
_HMDB_SPLIT_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>[123])\.txt$")
_UCF50_GROUP_RE = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)
_HMDB_SPLIT_DIRS = ("splits", "testTrainMulti_7030_splits")


def read_dataset(
    source: str,
    root: str | Path,
    *,
    split: int = 1,
    splits_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    on_missing: str = "error",
    group_regex: str | None = None,
) -> DatasetSplit:
    """The split of ``root`` for ``source`` (one of ``DATASET_SOURCES``), as the recipe selects it."""
    if source == "ucf101":
        return read_ucf101(root, split=split, splits_dir=splits_dir, val_fraction=val_fraction, seed=seed,
                           on_missing=on_missing)
    if source == "hmdb51":
        return read_hmdb51(root, split=split, splits_dir=splits_dir, val_fraction=val_fraction, seed=seed,
                           on_missing=on_missing)
    if source == "ucf11":
        return read_ucf11(root, seed=seed)
    if source == "ucf50":
        return read_ucf50(root, seed=seed)
    if source == "folder":
        return read_folder_tree(root, seed=seed, group_regex=group_regex)
    raise ValueError(f"unknown dataset source {source!r}; expected one of {', '.join(DATASET_SOURCES)}")


# ----------------------------------------------------------------------------------------------
# HMDB51


def read_hmdb51(
    root: str | Path,
    *,
    split: int = 1,
    splits_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    on_missing: str = "error",
) -> DatasetSplit:
    """Build a split from the official HMDB51 ``<class>_test_split<N>.txt`` files.

    Classes are the sorted class names of the split-N files (the official 51 give the usual
    alphabetical label order). A video's label is the class of the file that lists it; a video
    listed by two classes is an error. Val is carved from train grouped by source movie
    (``hmdb_group``). ``on_missing`` as in ``read_ucf101`` (other extensions are tried too).
    """
    root = Path(root)
    if split not in (1, 2, 3):
        raise SplitError(f"HMDB51 split must be 1, 2 or 3, got {split!r}")
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if not root.is_dir():
        raise SplitError(f"HMDB51 root {root} is not a directory")
    files = _hmdb_split_files(root, splits_dir, split)
    classes = sorted(files)
    listed: dict[str, list[VideoItem]] = {"train": [], "test": []}
    owner: dict[str, str] = {}
    for label, cls in enumerate(classes):
        for sub, item in _read_hmdb_file(files[cls], cls, label):
            name = PurePosixPath(item.rel).name
            if name in owner:
                raise SplitError(f"{files[cls]}: {name!r} is also listed for class {owner[name]!r}")
            owner[name] = cls
            listed[sub].append(item)
    n_listed = len(listed["train"]) + len(listed["test"])
    train, missing = resolve_local(root, listed["train"])
    test, missing_test = resolve_local(root, listed["test"])
    missing += missing_test
    if missing and on_missing == "error":
        raise SplitError(missing_message("HMDB51", root, missing, n_listed))
    train, val = carve_val(train, val_fraction=val_fraction, seed=seed, group_fn=hmdb_group)
    source = f"hmdb51 split {split}, val carved {val_fraction:.0%} from train by source movie (seed {seed})"
    if missing:
        source += f"; {len(missing)} of {n_listed} listed videos absent locally, skipped"
    return DatasetSplit(root, classes, train, val, test, source, missing)


def _hmdb_split_files(root: Path, splits_dir: str | Path | None, split: int) -> dict[str, Path]:
    candidates = [Path(splits_dir)] if splits_dir is not None else [root / d for d in _HMDB_SPLIT_DIRS] + [root]
    for d in candidates:
        if not d.is_dir():
            continue
        found = {}
        for p in sorted(d.iterdir()):
            m = _HMDB_SPLIT_RE.match(p.name)
            if m and int(m.group("n")) == split and p.is_file():
                found[m.group("cls")] = p
        if found:
            return found
    where = ", ".join(str(d) for d in candidates)
    raise SplitError(f"no HMDB51 files <class>_test_split{split}.txt found in {where}")


def _read_hmdb_file(path: Path, cls: str, label: int) -> list[tuple[str, VideoItem]]:
    """``(subset, item)`` for the lines with id 1 (train) and 2 (test); id 0 lines are dropped."""
    out: list[tuple[str, VideoItem]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise SplitError(f"{path}:{lineno}: expected '<video> <0|1|2>', got {line.strip()!r}")
        name = fields[0]
        try:
            rel = safe_rel(f"{cls}/{name}")
        except SplitError as e:
            raise SplitError(f"{path}:{lineno}: {e}") from None
        if "/" in name.replace("\\", "/") or rel.count("/") != 1:
            raise SplitError(f"{path}:{lineno}: {name!r} must be a bare file name (videos are root/<class>/<file>)")
        if name in seen:
            raise SplitError(f"{path}:{lineno}: {name!r} is listed twice")
        seen.add(name)
        if fields[1] != "0":
            out.append(("train" if fields[1] == "1" else "test", VideoItem(rel, label)))
    if not out:
        raise SplitError(f"{path}: no video is marked 1 (train) or 2 (test)")
    return out


def hmdb_group(rel: str) -> str:
    """Source-movie key of an HMDB51 clip: the file name up to ``_<class>_``.

    HMDB names are ``<movie>_<class>_<tags>_<n>.avi``; clips of one movie share scenes and actors.
    """
    p = PurePosixPath(rel)
    cls = p.parts[0]
    stem = p.stem
    cut = stem.rfind(f"_{cls}_")
    return f"{cls}/{stem[:cut]}" if cut > 0 else rel


# ----------------------------------------------------------------------------------------------
# UCF11 and UCF50: no official lists; grouped stratified 70/20/10


def read_ucf11(root: str | Path, *, ratios: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0,
               extensions: Sequence[str] | None = None) -> DatasetSplit:
    """UCF11 (``root/<class>/<group>/<video>``): grouped by the group folder.

    Files outside a group folder are an error (the layout is wrong or the archive is incomplete);
    the ``Annotation`` folders of the original archive hold no videos and are ignored.
    """
    root = Path(root)
    videos = _class_videos(root, extensions)
    flat = [rel for rels in videos.values() for rel in rels if len(PurePosixPath(rel).parts) != 3]
    if flat:
        raise SplitError(f"UCF11 expects root/<class>/<group>/<video>; {len(flat)} file(s) are not in a group "
                         f"folder under {root}, e.g. {flat[:5]}")
    split = split_class_videos(root, videos, ratios=ratios, seed=seed, group_fn=lambda r: str(PurePosixPath(r).parent))
    split.source = f"ucf11, grouped by group folder, stratified {_pcts(ratios)} (seed {seed})"
    return split


def read_ucf50(root: str | Path, *, ratios: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0,
               extensions: Sequence[str] | None = None) -> DatasetSplit:
    """UCF50 (``root/<class>/v_<Class>_gXX_cYY.avi``): grouped by ``gXX`` within each class."""
    root = Path(root)
    videos = _class_videos(root, extensions)
    bad = [rel for rels in videos.values() for rel in rels if not _UCF50_GROUP_RE.search(PurePosixPath(rel).name)]
    if bad:
        raise SplitError(f"UCF50 file names must carry a group id '_gXX_cYY'; {len(bad)} under {root} do not, "
                         f"e.g. {bad[:5]}")

    def group_of(rel: str) -> str:
        m = _UCF50_GROUP_RE.search(PurePosixPath(rel).name)
        assert m is not None  # checked above
        return f"{PurePosixPath(rel).parts[0]}/g{int(m.group(1)):02d}"

    split = split_class_videos(root, videos, ratios=ratios, seed=seed, group_fn=group_of)
    split.source = f"ucf50, grouped by _gXX_, stratified {_pcts(ratios)} (seed {seed})"
    return split


def _class_videos(root: Path, extensions: Sequence[str] | None) -> dict[str, list[str]]:
    return list_class_videos(root) if extensions is None else list_class_videos(root, extensions)


def _pcts(ratios: tuple[float, float, float]) -> str:
    return "/".join(f"{r * 100:g}" for r in ratios)
