"""Dataset splits: which video is in train / val / test, and with which label.

A split is computed once and saved as JSON next to the run, so that training, distillation,
calibration and evaluation all see exactly the same files with exactly the same labels, and a
report can say where the split came from (``DatasetSplit.source``). Two readers exist:

* ``read_ucf101``: the official UCF101 split files (``classInd.txt``, ``trainlistNN.txt``,
  ``testlistNN.txt``). UCF101 has no validation list, so one is carved from train, grouped by the
  ``_gXX_`` id because clips of one group come from the same long video and would leak.
* ``read_folder_tree``: any ``root/<class>/<video>`` tree, split per class by seeded ratios,
  optionally keeping groups (a regular expression on the file name) on one side.

HMDB51, UCF11 and UCF50 readers live in ``edgekd.data.readers`` and reuse the helpers here.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from edgekd.utils.atomic import write_json

__all__ = [
    "VIDEO_EXTENSIONS",
    "DatasetSplit",
    "SplitError",
    "VideoItem",
    "group_id",
    "load_split",
    "read_folder_tree",
    "read_ucf101",
    "resolve_local",
    "safe_rel",
    "save_split",
    "split_groups",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mkv", ".gif", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
SUBSETS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_FORMAT = "edgekd.split/v1"
_GROUP_RE = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)


class SplitError(ValueError):
    """The split files or folder tree are inconsistent; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoItem:
    """One video: ``rel`` is a POSIX path relative to the dataset root, ``label`` a 0-based class index."""

    rel: str
    label: int


@dataclass
class DatasetSplit:
    """Train/val/test lists over one dataset root, plus provenance (``source``) and skipped files."""

    root: Path
    classes: list[str]
    train: list[VideoItem]
    val: list[VideoItem]
    test: list[VideoItem]
    source: str
    missing: list[str] = field(default_factory=list)

    def path(self, item: VideoItem) -> Path:
        """Absolute location of ``item`` (relative paths were validated not to escape ``root``)."""
        return Path(self.root) / safe_rel(item.rel)

    def subset(self, name: str) -> list[VideoItem]:
        """The list for ``"train"``, ``"val"`` or ``"test"``."""
        if name not in SUBSETS:
            raise KeyError(f"unknown subset {name!r}; expected one of {', '.join(SUBSETS)}")
        return getattr(self, name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; items are ``[rel, label]`` pairs to keep files small and diffable."""
        return {
            "format": _SPLIT_FORMAT,
            "root": str(self.root),
            "source": self.source,
            "classes": list(self.classes),
            **{name: [[it.rel, it.label] for it in self.subset(name)] for name in SUBSETS},
            "missing": list(self.missing),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetSplit:
        """Inverse of ``to_json``; validates format, labels and relative paths."""
        if d.get("format") != _SPLIT_FORMAT:
            raise SplitError(f"not an edgekd split (format={d.get('format')!r}, expected {_SPLIT_FORMAT!r})")
        classes = [str(c) for c in d["classes"]]
        lists = {name: [_item_from_json(pair, len(classes), name) for pair in d[name]] for name in SUBSETS}
        return cls(
            root=Path(d["root"]),
            classes=classes,
            source=str(d["source"]),
            missing=[str(m) for m in d.get("missing", [])],
            **lists,
        )


def _item_from_json(pair: Any, n_classes: int, subset: str) -> VideoItem:
    rel, label = pair
    if not isinstance(label, int) or not 0 <= label < n_classes:
        raise SplitError(f"{subset} item {rel!r} has label {label!r} outside 0..{n_classes - 1}")
    return VideoItem(safe_rel(rel), label)


def save_split(split: DatasetSplit, path: str | Path) -> None:
    """Write ``split`` as JSON atomically (a crash never leaves a half-written split)."""
    write_json(path, split.to_json())


def load_split(path: str | Path) -> DatasetSplit:
    """Read a split written by ``save_split``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SplitError(f"cannot read split {path}: {e}") from e
    try:
        return DatasetSplit.from_json(data)
    except (KeyError, TypeError, ValueError) as e:
        raise SplitError(f"invalid split {path}: {e}") from e


def safe_rel(rel: str) -> str:
    """Normalise ``rel`` to a POSIX relative path; reject anything that could escape the root.

    Split files are data, possibly downloaded; ``../../etc`` or ``/abs`` in them must not make us read
    (or later write cache entries for) files outside the dataset.
    """
    text = str(rel).strip().replace("\\", "/")
    if not text:
        raise SplitError("empty video path")
    p = PurePosixPath(text)
    if p.is_absolute() or PureWindowsPath(str(rel)).drive:
        raise SplitError(f"video path {rel!r} is absolute; paths must be relative to the dataset root")
    if any(part == ".." for part in p.parts):
        raise SplitError(f"video path {rel!r} contains '..' and could escape the dataset root")
    parts = [part for part in p.parts if part != "."]
    if not parts:
        raise SplitError(f"video path {rel!r} names no file")
    return "/".join(parts)


def group_id(rel: str) -> str:
    """The UCF101/HMDB-style group key (``_g08_`` -> ``"<class>/g08"``), or ``rel`` itself.

    Clips of one group are cut from one source video; keeping a group on one side of a split stops
    near-duplicate frames leaking from train into val.
    """
    name = PurePosixPath(rel).name
    m = _GROUP_RE.search(name)
    if m is None:
        return rel
    return f"{PurePosixPath(rel).parent}/g{int(m.group(1)):02d}"


# ----------------------------------------------------------------------------------------------
# UCF101 official lists


def read_ucf101(
    root: str | Path,
    *,
    split: int = 1,
    splits_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    on_missing: str = "error",
) -> DatasetSplit:
    """Build a split from the official UCF101 list files.

    Lists name ``.avi`` files; a listed ``X.avi`` that is absent locally is matched to ``X.<ext>``
    for the other video extensions (transcoded copies are often ``.mp4``). ``on_missing="error"``
    raises one error naming every missing file (first 20 + count); ``"skip"`` drops them and records
    their listed names in ``.missing``.
    """
    root = Path(root)
    if split not in (1, 2, 3):
        raise SplitError(f"UCF101 split must be 1, 2 or 3, got {split!r}")
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if not root.is_dir():
        raise SplitError(f"UCF101 root {root} is not a directory")
    class_file = _find_list_file("classInd.txt", root, splits_dir)
    classes = _read_class_ind(class_file)
    index = {name: i for i, name in enumerate(classes)}
    train_file = _find_list_file(f"trainlist{split:02d}.txt", root, splits_dir)
    test_file = _find_list_file(f"testlist{split:02d}.txt", root, splits_dir)
    train_listed = _read_list(train_file, index, classes)
    test_listed = _read_list(test_file, index, classes)
    _check_disjoint(train_listed, test_listed, train_file, test_file)

    train, missing = resolve_local(root, train_listed)
    test, missing_test = resolve_local(root, test_listed)
    missing += missing_test
    if missing and on_missing == "error":
        raise SplitError(missing_message("UCF101", root, missing, len(train_listed) + len(test_listed)))
    train, val = carve_val(train, val_fraction=val_fraction, seed=seed)
    source = f"ucf101 split {split}, val carved {val_fraction:.0%} from train by group (seed {seed})"
    if missing:
        source += f"; {len(missing)} of {len(train_listed) + len(test_listed)} listed videos absent locally, skipped"
    return DatasetSplit(root, classes, train, val, test, source, missing)


def _find_list_file(name: str, root: Path, splits_dir: str | Path | None) -> Path:
    """Locate a list file: ``splits_dir`` only when given, else ``root`` then ``root/splits``."""
    candidates = [Path(splits_dir)] if splits_dir is not None else [root, root / "splits"]
    for d in candidates:
        if (d / name).is_file():
            return d / name
    where = ", ".join(str(d) for d in candidates)
    raise SplitError(f"UCF101 list file {name} not found in {where}")


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    """Non-blank lines as (1-based line number, whitespace-split fields); tolerates CRLF and BOM."""
    text = path.read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            yield lineno, fields


def _read_class_ind(path: Path) -> list[str]:
    entries: dict[int, str] = {}
    for lineno, fields in _lines(path):
        if len(fields) != 2 or not fields[0].isdigit():
            raise SplitError(f"{path}:{lineno}: expected '<index> <ClassName>', got {' '.join(fields)!r}")
        idx, name = int(fields[0]), fields[1]
        if idx in entries or name in entries.values():
            raise SplitError(f"{path}:{lineno}: duplicate class entry {idx} {name}")
        entries[idx] = name
    if not entries:
        raise SplitError(f"{path}: no classes listed")
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise SplitError(f"{path}: class indices must be exactly 1..{len(entries)} (1-based, no gaps)")
    return [entries[i] for i in range(1, len(entries) + 1)]


def _read_list(path: Path, index: dict[str, int], classes: Sequence[str]) -> list[VideoItem]:
    """Parse ``Class/v_x.avi [label]``; the label comes from classInd via the folder, and a label
    column, when present, must agree (a clip must never silently get the wrong label)."""
    items: list[VideoItem] = []
    seen: set[str] = set()
    for lineno, fields in _lines(path):
        if len(fields) > 2:
            raise SplitError(f"{path}:{lineno}: expected '<Class>/<video> [label]', got {' '.join(fields)!r}")
        try:
            rel = safe_rel(fields[0])
        except SplitError as e:
            raise SplitError(f"{path}:{lineno}: {e}") from None
        cls_name = rel.split("/")[0] if "/" in rel else ""
        if cls_name not in index:
            raise SplitError(f"{path}:{lineno}: {rel!r} is not under a class folder listed in classInd.txt")
        label = index[cls_name]
        if len(fields) == 2:
            _check_label_column(path, lineno, rel, fields[1], label, classes)
        if rel in seen:
            raise SplitError(f"{path}:{lineno}: {rel!r} is listed twice")
        seen.add(rel)
        items.append(VideoItem(rel, label))
    if not items:
        raise SplitError(f"{path}: no videos listed")
    return items


def _check_label_column(path: Path, lineno: int, rel: str, col: str, label: int, classes: Sequence[str]) -> None:
    if not col.isdigit() or int(col) - 1 != label:
        listed = classes[int(col) - 1] if col.isdigit() and 1 <= int(col) <= len(classes) else "?"
        raise SplitError(
            f"{path}:{lineno}: {rel!r} has label column {col} ({listed}) but its folder is "
            f"{classes[label]} = {label + 1} in classInd.txt"
        )


def _check_disjoint(train: list[VideoItem], test: list[VideoItem], train_file: Path, test_file: Path) -> None:
    both = sorted({i.rel for i in train} & {i.rel for i in test})
    if both:
        raise SplitError(f"{len(both)} videos are in both {train_file} and {test_file}, e.g. {both[:5]}")


def resolve_local(root: Path, listed: list[VideoItem]) -> tuple[list[VideoItem], list[str]]:
    """Map listed names to files present under ``root``; unmatched listed names are returned as missing."""
    found: list[VideoItem] = []
    missing: list[str] = []
    dir_cache: dict[str, dict[str, str]] = {}
    for item in listed:
        local = _local_name(root, item.rel, dir_cache)
        if local is None:
            missing.append(item.rel)
        else:
            found.append(VideoItem(local, item.label))
    return found, missing


def _local_name(root: Path, rel: str, dir_cache: dict[str, dict[str, str]]) -> str | None:
    """The listed file if present, else the same stem with another video extension (listed order)."""
    parent, _, name = rel.rpartition("/")
    if parent not in dir_cache:
        d = root / parent
        dir_cache[parent] = {p.name: p.name for p in d.iterdir() if p.is_file()} if d.is_dir() else {}
    files = dir_cache[parent]
    if name in files:
        return rel
    stem = PurePosixPath(name).stem
    for ext in VIDEO_EXTENSIONS:
        if f"{stem}{ext}" in files:
            return f"{parent}/{stem}{ext}"
    return None


def missing_message(dataset: str, root: Path, missing: list[str], n_listed: int) -> str:
    """One error naming every listed-but-absent video (first 20 + a count), and the way out."""
    head = "\n  ".join(missing[:20])
    more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
    return (
        f"{len(missing)} of {n_listed} videos listed in the {dataset} split files are missing under {root} "
        f"(also tried other extensions: {', '.join(VIDEO_EXTENSIONS)}):\n  {head}{more}\n"
        "Pass on_missing='skip' to use only the videos present."
    )


def carve_val(
    train: list[VideoItem], *, val_fraction: float, seed: int, group_fn: Callable[[str], str] = group_id
) -> tuple[list[VideoItem], list[VideoItem]]:
    """Move about ``val_fraction`` of each class's train videos to val, whole groups at a time.

    Per class: groups (``group_id``) are listed sorted, permuted by a generator seeded with
    ``(seed, label)`` (so one class's carve does not depend on which other classes exist), and moved
    to val until the target ``max(1, round(fraction * n))`` is reached (may overshoot by less than one
    group). A class with a single group keeps it all in train. ``group_fn`` maps a relative path to
    its group key (UCF's ``_gXX_`` by default; HMDB51 groups by source movie).
    """
    if val_fraction <= 0:
        return list(train), []
    by_class: dict[int, list[VideoItem]] = defaultdict(list)
    for it in train:
        by_class[it.label].append(it)
    val_rels: set[str] = set()
    for label, items in sorted(by_class.items()):
        val_rels.update(_carve_class(items, label, val_fraction, seed, group_fn))
    return [i for i in train if i.rel not in val_rels], [i for i in train if i.rel in val_rels]


def _carve_class(items: list[VideoItem], label: int, fraction: float, seed: int,
                 group_fn: Callable[[str], str]) -> set[str]:
    groups: dict[str, list[str]] = defaultdict(list)
    for it in items:
        groups[group_fn(it.rel)].append(it.rel)
    keys = sorted(groups)
    if len(keys) < 2:
        return set()
    order = np.random.default_rng([seed, label]).permutation(len(keys))
    target = max(1, _round_half_up(fraction * len(items)))
    chosen: set[str] = set()
    taken_groups = 0
    for k in order:
        if len(chosen) >= target or taken_groups == len(keys) - 1:
            break
        chosen.update(groups[keys[k]])
        taken_groups += 1
    return chosen


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# ----------------------------------------------------------------------------------------------
# Generic class-per-folder tree


def read_folder_tree(
    root: str | Path,
    *,
    ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
    seed: int = 0,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    group_regex: str | None = None,
) -> DatasetSplit:
    """Split ``root/<class>/**/<video>`` per class into train/val/test by ``ratios``.

    Deterministic: files are listed sorted, then permuted by a generator seeded with ``(seed, label)``.
    Every class keeps at least one train video and, when it has at least 3 videos, at least one val and
    one test video (for non-zero ratios), so per-class metrics exist on every subset.

    ``group_regex`` (searched in each file name; its first capture group, or the whole match, is the
    group key) keeps every group on one side: clips cut from one source video must not leak from
    train into val/test. Every file must match, so a mistyped pattern is an error, not a silent
    ungrouped split.
    """
    root = Path(root)
    ratios = _check_ratios(ratios)
    pattern = _compile_group_regex(group_regex)
    videos_by_class = list_class_videos(root, extensions)
    group_fn = None
    if pattern is not None:
        unmatched = [rel for rels in videos_by_class.values() for rel in rels
                     if pattern.search(PurePosixPath(rel).name) is None]
        if unmatched:
            raise SplitError(f"{len(unmatched)} file name(s) under {root} do not match group_regex "
                             f"{group_regex!r}, e.g. {unmatched[:5]}")
        group_fn = _regex_group_fn(pattern, root)
    split = split_class_videos(root, videos_by_class, ratios=ratios, seed=seed, group_fn=group_fn)
    r_train, r_val, r_test = ratios
    split.source = f"folder tree, stratified {_pct(r_train)}/{_pct(r_val)}/{_pct(r_test)} (seed {seed})"
    if group_regex is not None:
        split.source += f", grouped by {group_regex!r}"
    return split


def list_class_videos(root: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> dict[str, list[str]]:
    """``{class: sorted relative video paths}`` for every ``root/<class>/`` folder (hidden ones skipped)."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    if not root.is_dir():
        raise SplitError(f"dataset root {root} is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise SplitError(f"dataset root {root} has no class sub-folders (expected root/<class>/<video>)")
    out: dict[str, list[str]] = {}
    for d in class_dirs:
        videos = sorted(p.relative_to(root).as_posix() for p in d.rglob("*") if _is_video(p, exts))
        if not videos:
            raise SplitError(f"class folder {d} contains no videos with extensions {sorted(exts)}")
        out[d.name] = videos
    return out


def split_class_videos(
    root: Path,
    videos_by_class: dict[str, list[str]],
    *,
    ratios: tuple[float, float, float],
    seed: int,
    group_fn: Callable[[str], str] | None = None,
) -> DatasetSplit:
    """Stratified split of ``{class: videos}``; with ``group_fn`` whole groups move together."""
    r_train, r_val, r_test = ratios
    subsets: dict[str, list[VideoItem]] = {name: [] for name in SUBSETS}
    for label, videos in enumerate(videos_by_class.values()):
        if group_fn is None:
            n_train, n_val, _ = _class_counts(len(videos), r_train, r_val, r_test)
            perm = np.random.default_rng([seed, label]).permutation(len(videos))
            picked = [videos[k] for k in perm]
            parts = {"train": picked[:n_train], "val": picked[n_train : n_train + n_val],
                     "test": picked[n_train + n_val :]}
        else:
            parts = split_groups(videos, group_fn, label=label, ratios=ratios, seed=seed)
        for name, rels in parts.items():
            subsets[name].extend(VideoItem(rel, label) for rel in sorted(rels))
    return DatasetSplit(root, list(videos_by_class), subsets["train"], subsets["val"], subsets["test"], "", [])


def split_groups(
    videos: Sequence[str], group_fn: Callable[[str], str], *, label: int,
    ratios: tuple[float, float, float], seed: int,
) -> dict[str, list[str]]:
    """One class's videos into train/val/test, whole groups at a time.

    Groups (sorted, then permuted by ``(seed, label)``) go one by one to the subset furthest below
    its target video count (targets as in the ungrouped split). Train always keeps at least one
    group; with fewer than 3 groups the held-out subsets may be empty.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for rel in videos:
        groups[group_fn(rel)].append(rel)
    keys = sorted(groups)
    n_train, n_val, n_test = _class_counts(len(videos), *ratios)
    targets = {"test": n_test, "val": n_val, "train": n_train}  # dict order breaks ties: test first
    parts: dict[str, list[str]] = {name: [] for name in SUBSETS}
    for k in np.random.default_rng([seed, label]).permutation(len(keys)):
        name = max(targets, key=lambda n: targets[n] - len(parts[n]))
        parts[name].extend(groups[keys[k]])
    if not parts["train"]:  # keep training data for every class: move back the smaller held-out group
        donor = min((n for n in ("val", "test") if parts[n]), key=lambda n: len(parts[n]))
        donor_groups = sorted({group_fn(r) for r in parts[donor]}, key=lambda g: len(groups[g]))
        moved = set(groups[donor_groups[0]])
        parts["train"] = sorted(moved)
        parts[donor] = [r for r in parts[donor] if r not in moved]
    return parts


def _compile_group_regex(group_regex: str | None) -> re.Pattern[str] | None:
    if group_regex is None:
        return None
    try:
        return re.compile(group_regex)
    except re.error as e:
        raise ValueError(f"group_regex {group_regex!r} is not a valid regular expression: {e}") from None


def _regex_group_fn(pattern: re.Pattern[str], root: Path) -> Callable[[str], str]:
    def group_of(rel: str) -> str:
        m = pattern.search(PurePosixPath(rel).name)
        if m is None:
            raise SplitError(f"{root / rel}: file name does not match group_regex {pattern.pattern!r}")
        return f"{PurePosixPath(rel).parts[0]}/{m.group(1) if pattern.groups else m.group(0)}"

    return group_of


def _is_video(p: Path, exts: set[str]) -> bool:
    return p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")


def _pct(r: float) -> str:
    return f"{r * 100:g}"


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0:
        raise ValueError(f"ratios must be 3 non-negative numbers summing to 1 with train > 0, got {ratios!r}")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def _class_counts(n: int, r_train: float, r_val: float, r_test: float) -> tuple[int, int, int]:
    """(train, val, test) counts for a class of ``n`` videos, honouring the minimums."""
    n_val = _round_half_up(n * r_val)
    n_test = _round_half_up(n * r_test)
    if n >= 3:
        n_val = max(n_val, 1 if r_val > 0 else 0)
        n_test = max(n_test, 1 if r_test > 0 else 0)
    while n_val + n_test > n - 1:  # keep at least one train video; shrink the larger held-out part
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test
