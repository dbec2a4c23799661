"""Typed, strict recipes.

A recipe is YAML loaded into frozen dataclasses. Loading is strict on purpose: an unknown or
misspelled key, a wrong type or an out-of-range value is an error naming its dotted path (with a
close-match suggestion), and every error in the file is reported at once rather than one per run.
Nothing falls back silently to a default when the user wrote something the loader did not expect.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from edgekd.utils.hashing import stable_hash


class RecipeError(ValueError):
    """Every problem found in a recipe, one per line, each with its dotted path."""

    def __init__(self, errors: list[str], source: str = "recipe") -> None:
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} error(s)\n{lines}")


@dataclass(frozen=True)
class SynthConfig:
    """The built-in synthetic action videos (used when ``data.source: synthetic``)."""

    classes: tuple[str, ...] | None = None  # None: all built-in actions
    per_class: int = 12
    num_frames: int = 48
    size: tuple[int, int] = (160, 120)  # width, height of the written videos
    clips_per_group: int = 4


@dataclass(frozen=True)
class DataConfig:
    """Where videos come from, how they are split and how clips are cut from them."""

    source: Literal["synthetic", "ucf101", "folder"] = "synthetic"
    root: str | None = None  # dataset root for ucf101/folder
    split: int = 1  # official split number (ucf101 layout)
    splits_dir: str | None = None
    val_fraction: float = 0.1  # carved from train when the dataset has no val list
    on_missing: Literal["error", "skip"] = "error"
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    clip_len: int = 16
    frame_interval: int = 1
    resize: tuple[int, int] = (128, 171)  # H, W frames are resized to (and cached at)
    crop: tuple[int, int] = (112, 112)
    hflip: bool = True
    eval_clips: int = 1  # clips per video averaged at evaluation
    workers: int = 2
    cache_dir: str = "runs/_cache"


@dataclass(frozen=True)
class TrainConfig:
    """One network and how it is trained. ``student`` settings also drive the distilled student,
    so the scratch baseline and the KD student differ only in the loss."""

    model: str = "c3d_student"
    width_mult: float = 1.0
    dropout: float = 0.5
    epochs: int = 10
    batch_size: int = 8
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4  # Ullah & Munir: Adam, static 1e-4
    weight_decay: float = 0.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the CPU has AMX/AVX512-BF16
    channels_last: bool = True
    max_steps_per_epoch: int | None = None


@dataclass(frozen=True)
class DistillConfig:
    """Ullah & Munir Eq. 5: alpha*CE(student, y) + (1-alpha)*CE(softmax(t/T), softmax(s/T))."""

    alpha: float = 0.1
    temperature: float = 10.0


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    simplify: bool = True
    parity_clips: int = 16  # real test-split clips used for the PyTorch vs ONNX Runtime check


@dataclass(frozen=True)
class EnginesConfig:
    openvino_fp32: bool = True
    openvino_int8: bool = True
    tensorrt: bool = True  # built by a later stage; reported as skipped where TensorRT/CUDA is absent
    calibration_clips: int = 300  # from the training split; all of them if fewer


@dataclass(frozen=True)
class BenchConfig:
    threads: int = 2
    batch_size: int = 8  # for the throughput column
    min_time_s: float = 1.0  # per latency measurement, after warm-up
    reference_cpu_mhz: float = 2500.0  # Ullah & Munir section 4.5
    engines: tuple[str, ...] = ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_int8")


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int = 0
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(model="c3d_teacher"))
    student: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """Stable hash of the named sections (plus the seed): what a stage's reuse key is built from."""
        payload = {s: _jsonable(getattr(self, s)) for s in sections}
        payload["seed"] = self.seed
        return stable_hash(payload)


def _jsonable(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


# ----------------------------------------------------------------------------- checks


def _check_ranges(r: Recipe) -> list[str]:
    """Cross-field and range checks; each message names the field and the value."""
    errs: list[str] = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            errs.append(msg)

    d = r.data
    need(d.clip_len > 0, f"data.clip_len: must be > 0, got {d.clip_len}")
    need(d.frame_interval > 0, f"data.frame_interval: must be > 0, got {d.frame_interval}")
    need(0 <= d.val_fraction < 1, f"data.val_fraction: must be in [0, 1), got {d.val_fraction}")
    need(d.eval_clips >= 1, f"data.eval_clips: must be >= 1, got {d.eval_clips}")
    need(d.workers >= 0, f"data.workers: must be >= 0, got {d.workers}")
    need(d.crop[0] <= d.resize[0] and d.crop[1] <= d.resize[1],
         f"data.crop {list(d.crop)} must fit inside data.resize {list(d.resize)}")
    need(d.source == "synthetic" or d.root is not None, f"data.root: required when data.source is {d.source!r}")
    need(d.synthetic.per_class >= 2, f"data.synthetic.per_class: must be >= 2, got {d.synthetic.per_class}")
    for sec in ("teacher", "student"):
        t: TrainConfig = getattr(r, sec)
        need(t.epochs >= 1, f"{sec}.epochs: must be >= 1, got {t.epochs}")
        need(t.batch_size >= 1, f"{sec}.batch_size: must be >= 1, got {t.batch_size}")
        need(t.lr > 0, f"{sec}.lr: must be > 0, got {t.lr}")
        need(0 <= t.dropout < 1, f"{sec}.dropout: must be in [0, 1), got {t.dropout}")
    need(r.distill.temperature > 0, f"distill.temperature: must be > 0, got {r.distill.temperature}")
    need(0 <= r.distill.alpha <= 1, f"distill.alpha: must be in [0, 1], got {r.distill.alpha}")
    need(r.export.opset >= 17, f"export.opset: must be >= 17, got {r.export.opset}")
    need(r.engines.calibration_clips >= 1, f"engines.calibration_clips: must be >= 1, got {r.engines.calibration_clips}")
    need(r.bench.reference_cpu_mhz > 0, f"bench.reference_cpu_mhz: must be > 0, got {r.bench.reference_cpu_mhz}")
    need(r.bench.threads >= 1, f"bench.threads: must be >= 1, got {r.bench.threads}")
    need(bool(r.name) and "/" not in r.name, f"name: must be a non-empty folder name, got {r.name!r}")
    return errs


# ----------------------------------------------------------------------------- strict conversion


def _convert(tp: Any, value: Any, path: str, errs: list[str]) -> Any:
    """Convert a YAML value to annotation ``tp``; append an error (and return None) when it does not fit."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, errs)
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            errs.append(f"{path}: {value!r} is not one of {list(args)}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, errs)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            errs.append(f"{path}: expected a list, got {value!r}")
            return None
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", errs) for i, v in enumerate(value))
        if len(value) != len(args):
            errs.append(f"{path}: expected {len(args)} values, got {len(value)} ({value!r})")
            return None
        return tuple(_convert(a, v, f"{path}[{i}]", errs) for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            errs.append(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errs.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errs.append(f"{path}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errs.append(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"recipe loader does not handle type {tp!r} at {path}")  # a bug in this module


def _build(cls: type, data: Any, path: str, errs: list[str]) -> Any:
    prefix = f"{path}." if path else ""
    if not isinstance(data, dict):
        errs.append(f"{path or 'recipe'}: expected a mapping, got {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f", did you mean {prefix}{close[0]}?" if close else f" (known: {', '.join(fields)})"
            errs.append(f"{prefix}{key}: unknown key{hint}")
            continue
        kwargs[key] = _convert(hints[key], value, f"{prefix}{key}", errs)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errs.append(f"{prefix}{name}: required key is missing")
    try:
        return cls(**kwargs)
    except TypeError:  # a required key was missing: already reported above
        return None


def parse_recipe(data: Any, *, source: str = "recipe") -> Recipe:
    """Build a Recipe from plain data, raising RecipeError with every problem found."""
    errs: list[str] = []
    recipe = _build(Recipe, data, "", errs)
    if not errs and recipe is not None:
        errs.extend(_check_ranges(recipe))
    if errs or recipe is None:
        raise RecipeError(errs, source)
    return recipe


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to the raw recipe mapping."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError([f"--set {item!r}: expected KEY=VALUE with a dotted KEY"], "command line")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError([f"--set {key}: {part} is not a section"], "command line")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe (safe_load), apply ``--set`` overrides and validate strictly."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"recipe not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError([f"invalid YAML: {e}"], str(p)) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError([f"top level must be a mapping, got {type(data).__name__}"], str(p))
    return parse_recipe(apply_overrides(data, overrides or []), source=str(p))
