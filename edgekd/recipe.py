"""Typed, strict recipes.

A recipe is YAML loaded into frozen dataclasses. Loading is strict on purpose: an unknown or
misspelled key, a wrong type or an out-of-range value is an error naming its dotted path (with a
close-match suggestion), and every error in the file is reported at once rather than one per run.
Nothing falls back silently to a default when the user wrote something the loader did not expect.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import itertools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence
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
class AugmentConfig:
    """Parameters of the photometric augmentation (``data.augment: camarena``); Camarena et al.'s values."""

    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


@dataclass(frozen=True)
class DataConfig:
    """Where videos come from, how they are split and how clips are cut from them."""

    source: Literal["synthetic", "ucf101", "hmdb51", "ucf11", "ucf50", "folder"] = "synthetic"
    root: str | None = None  # dataset root for every source but synthetic
    split: int = 1  # official split number (ucf101, hmdb51)
    splits_dir: str | None = None
    val_fraction: float = 0.1  # carved from train when the dataset has no val list
    on_missing: Literal["error", "skip"] = "error"  # a video named by the official lists but absent
    on_bad_video: Literal["error", "skip"] = "error"  # undecodable/too short: error lists all; skip drops
    min_frames: int = 1  # videos with fewer decoded frames are bad (flow needs >= 2)
    group_regex: str | None = None  # folder source: file-name regex whose match keeps a group on one side
    fraction: float = 100.0  # percent of each class's train videos kept (Camarena et al.: 100/50/25/2)
    augment: Literal["none", "camarena", "hu"] = "none"  # training augmentation preset (edgekd/data/augment.py)
    augment_params: AugmentConfig = field(default_factory=AugmentConfig)
    aug_variants: int | None = None  # V: sample params derive from (seed, video, v < V) -> cacheable teacher outputs
    # which v a training clip uses: random (drawn per sample) or cycle (v = (epoch + per-video offset) mod V,
    # so V consecutive epochs meet every (video, v) once and a teacher cache is full after V epochs)
    aug_schedule: Literal["random", "cycle"] = "random"
    flow: Literal["none", "tvl1", "farneback"] = "none"  # optical flow cached by the data stage
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
    # residual nets (R3D, R(2+1)D, MC3, 3D-ResNeXt): start each block as the identity (zeroed last BN)
    zero_init_residual: bool = False
    max_steps_per_epoch: int | None = None
    lr_schedule: Literal["constant", "cosine"] = "constant"  # per epoch; cosine decays to 0 at the last epoch
    # input the network trains on: RGB frames or 2-channel optical flow (Hu et al.'s flow teacher)
    modality: Literal["rgb", "flow"] = "rgb"
    # transfer learning (edgekd/models/pretrained.py): start from a local weights file, new head
    pretrained: str | None = None
    pretrained_layout: Literal["auto", "edgekd", "c3d_sports1m", "torchvision", "hara"] = "auto"
    # [] none; [backbone] every loaded weight but the head; or module prefixes, e.g. [stem, layer1]
    freeze: tuple[str, ...] = ()
    # RGB weights into a model with other in_channels (flow): first conv's filters averaged (TSN)
    pretrained_adapt_channels: bool = False


@dataclass(frozen=True)
class DistillConfig:
    """Which KD loss trains ``student_kd`` and how its frozen teacher runs.

    ullah:    alpha*CE(student, y) + (1-alpha)*CE(softmax(t/T), softmax(s/T))   (Ullah & Munir Eq. 5)
    camarena: CE + weight * tau^2 * KL(p_t || p_s) at tau                       (Camarena et al. Eq. 6-7)
    hu:       CE + lambda1*MSE(proj(f_s), f_t) + lambda2*KL(P(f_s) || P(f_t))    (Hu et al. Eq. 8)
    """

    method: Literal["ullah", "camarena", "hu"] = "ullah"
    alpha: float = 0.1  # ullah
    temperature: float = 10.0  # ullah
    tau: float = 4.0  # camarena
    weight: float = 1.0  # camarena's lambda (not given in the paper)
    lambda1: float = 50.0  # hu: feature MSE weight
    lambda2: float = 200.0  # hu: feature-distribution KL weight
    # module paths tapped for hu ("path" = output, "path:input" = input); None: the model's feature_path
    student_features: str | None = None
    teacher_features: str | None = None
    # openvino: same precision as training (f32 | bf16); openvino_int8: NNCF-quantized on training
    # clips, about 2x cheaper than bf16 on AMX CPUs, outputs differ by the quantization error
    teacher_backend: Literal["pytorch", "openvino", "openvino_int8"] = "pytorch"
    teacher_calibration_clips: int = 64  # openvino_int8: training-split clips NNCF calibrates on
    # replay teacher outputs per (video, augmentation variant); needs data.aug_variants. disk also
    # persists them in the student_kd stage dir for later runs with the same teacher and data
    cache: Literal["off", "memory", "disk"] = "memory"


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    simplify: bool = True
    parity_clips: int = 16  # real test-split clips used for the PyTorch vs ONNX Runtime check


@dataclass(frozen=True)
class EnginesConfig:
    openvino_fp32: bool = True
    openvino_int8: bool = True
    tensorrt: bool = True  # built where TensorRT and a CUDA GPU exist; recorded as skipped (with the reason) elsewhere
    calibration_clips: int = 300  # from the training split; all of them if fewer
    # Edge engines (Q/DQ ONNX, TensorRT) are built for these models only (the deployable students).
    edge_models: tuple[str, ...] = ("student_kd",)
    qdq_int8: bool = True  # symmetric Q/DQ INT8 ONNX (what TensorRT INT8 runs), checked on the test split
    qdq_calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    tensorrt_precisions: tuple[Literal["fp32", "fp16", "int8_qdq", "int8_calib"], ...] = ("fp16", "int8_qdq")
    tensorrt_batch: tuple[int, int, int] = (1, 1, 8)  # optimisation profile: min, opt, max batch
    tensorrt_workspace_mb: int = 1024
    tensorrt_timing_cache_dir: str | None = "runs/_cache/tensorrt"  # reused across runs; None: no timing cache


@dataclass(frozen=True)
class BenchConfig:
    threads: int = 2
    batch_size: int = 8  # for the throughput column
    min_time_s: float = 1.0  # per latency measurement, after warm-up
    reference_cpu_mhz: float = 2500.0  # Ullah & Munir section 4.5
    reference_gpu_mhz: float = 585.0  # Ullah & Munir section 4.5
    # openvino_bf16: the FP32 IR with hint bf16 (skipped, with the reason, where the CPU lacks bf16); also "tensorrt"
    engines: tuple[str, ...] = ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_bf16", "openvino_int8")
    warmup: int = 3  # untimed calls before each latency measurement
    e2e_videos: int = 4  # test videos timed end to end (decode + preprocess + inference); 0 skips it
    peak_gemm: bool = True  # GEMM micro-benchmark per precision for the efficiency column (cached per machine)


BENCH_ENGINES = ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_bf16", "openvino_int8", "tensorrt")


PRETEXT_TRANSFORMS = ("none", "rotation", "spatial_permutation", "temporal_adjacent_swap", "temporal_segment_replace")


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining of the student's backbone before supervised training (Camarena et
    al. Sec. 3.2, after Tao et al.'s PCL): pretext (which transform was applied) + weight * contrastive.
    When enabled, ``student_scratch`` and ``student_kd`` start from its weights with a fresh head.
    Defaults are Camarena Table 1 (SGD 1e-2, momentum 0.9, weight decay 5e-4, contrastive weight 0.5)."""

    enabled: bool = False
    epochs: int = 200
    batch_size: int = 16
    optimizer: Literal["adam", "adamw", "sgd"] = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    max_steps_per_epoch: int | None = None
    # pretext classes, in label order (see edgekd.ssl.transforms for exactly what each one does)
    transforms: tuple[Literal["none", "rotation", "spatial_permutation", "temporal_adjacent_swap",
                              "temporal_segment_replace"], ...] = PRETEXT_TRANSFORMS
    contrastive_weight: float = 0.5
    temperature: float = 0.07  # of the contrastive softmax over cosine similarities
    # all: NT-Xent, every other clip in the batch is a negative; same_view: Camarena Eq. 3-4 literally
    negatives: Literal["all", "same_view"] = "all"
    projection_dim: int = 128
    hidden_dim: int = 512


@dataclass(frozen=True)
class SweepConfig:
    """A grid over recipe keys (``edgekd sweep``) and the summary table it ends with.

    ``grid`` maps dotted recipe keys to value lists; every combination (crossed with each of ``points``)
    runs, minus ``exclude``, in
    ``runs/<name>/sweep/<variant>/``. ``seed`` in the grid gives the repeats that the table's
    mean +/- 95% CI is taken over."""

    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # explicit combinations (paired values, e.g. Hu Table 4's (lambda1, lambda2) pairs), each crossed with the grid
    points: tuple[dict[str, Any], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()  # drop variants matching every key/value of an entry
    # stages each variant runs (names from the stage table, edgekd/stages/table.py)
    stages: tuple[str, ...] = ("data", "pretrain", "teacher", "student_scratch", "student_kd")
    table: Literal["generic", "ullah", "camarena", "hu"] = "generic"
    # camarena: named epochs at which accuracy is read (best val top-1 up to that epoch); empty: 25/75/100%
    epoch_marks: dict[str, int] = field(default_factory=dict)
    confidence: float = 0.95

    @property
    def swept_keys(self) -> list[str]:
        """Every key the sweep sets (points' keys, then the grid's), in order; empty: no sweep."""
        return list(dict.fromkeys([*(k for p in self.points for k in p), *self.grid]))


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int = 0
    # torch deterministic algorithms during training (seeds and loader/worker seeding are always on)
    deterministic: bool = False
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TrainConfig = field(default_factory=lambda: TrainConfig(model="c3d_teacher"))
    student: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def sweep_dir(self) -> Path:
        """Where the variants of this recipe's sweep run (``<runs_dir>/<name>/sweep``)."""
        return self.run_dir / "sweep"

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
    need(d.split in (1, 2, 3), f"data.split: must be 1, 2 or 3, got {d.split}")
    need(d.min_frames >= 1, f"data.min_frames: must be >= 1, got {d.min_frames}")
    need(0 < d.fraction <= 100, f"data.fraction: must be a percentage in (0, 100], got {d.fraction}")
    need(d.aug_variants is None or d.aug_variants >= 1, f"data.aug_variants: must be >= 1 or null, got {d.aug_variants}")
    need(d.aug_schedule == "random" or d.aug_variants is not None,
         "data.aug_schedule: 'cycle' needs data.aug_variants (the number of variants to cycle through)")
    need(d.group_regex is None or d.source == "folder",
         f"data.group_regex: only used with data.source 'folder', got source {d.source!r}")
    if d.group_regex is not None:
        try:
            re.compile(d.group_regex)
        except re.error as e:
            errs.append(f"data.group_regex: {d.group_regex!r} is not a valid regular expression ({e})")
    a = d.augment_params
    for key in ("jitter_p", "grayscale_p", "blur_p"):
        need(0 <= getattr(a, key) <= 1, f"data.augment_params.{key}: must be in [0, 1], got {getattr(a, key)}")
    for key in ("brightness", "contrast", "saturation"):
        need(getattr(a, key) >= 0, f"data.augment_params.{key}: must be >= 0, got {getattr(a, key)}")
    need(0 <= a.hue <= 0.5, f"data.augment_params.hue: must be in [0, 0.5], got {a.hue}")
    need(0 < a.blur_sigma[0] <= a.blur_sigma[1],
         f"data.augment_params.blur_sigma: must be 0 < min <= max, got {list(a.blur_sigma)}")
    need(d.synthetic.per_class >= 2, f"data.synthetic.per_class: must be >= 2, got {d.synthetic.per_class}")
    for sec in ("teacher", "student"):
        t: TrainConfig = getattr(r, sec)
        need(t.epochs >= 1, f"{sec}.epochs: must be >= 1, got {t.epochs}")
        need(t.batch_size >= 1, f"{sec}.batch_size: must be >= 1, got {t.batch_size}")
        need(t.lr > 0, f"{sec}.lr: must be > 0, got {t.lr}")
        need(0 <= t.dropout < 1, f"{sec}.dropout: must be in [0, 1), got {t.dropout}")
        need(not t.freeze or t.pretrained is not None,
             f"{sec}.freeze: {list(t.freeze)} needs {sec}.pretrained (freezing random weights trains nothing)")
        need("backbone" not in t.freeze or len(t.freeze) == 1,
             f"{sec}.freeze: 'backbone' cannot be combined with module prefixes, got {list(t.freeze)}")
    need(r.distill.temperature > 0, f"distill.temperature: must be > 0, got {r.distill.temperature}")
    need(0 <= r.distill.alpha <= 1, f"distill.alpha: must be in [0, 1], got {r.distill.alpha}")
    need(r.distill.tau > 0, f"distill.tau: must be > 0, got {r.distill.tau}")
    need(r.distill.teacher_calibration_clips >= 1,
         f"distill.teacher_calibration_clips: must be >= 1, got {r.distill.teacher_calibration_clips}")
    for key in ("weight", "lambda1", "lambda2"):
        need(getattr(r.distill, key) >= 0, f"distill.{key}: must be >= 0, got {getattr(r.distill, key)}")
    need(r.student.modality == "rgb" or r.teacher.modality == r.student.modality,
         f"student.modality: a {r.student.modality!r} student needs a {r.student.modality!r} teacher, "
         f"got teacher.modality {r.teacher.modality!r}")
    for sec in ("teacher", "student"):
        need(getattr(r, sec).modality == "rgb" or r.data.flow != "none",
             f"{sec}.modality: 'flow' needs optical flow from the data stage; set data.flow (tvl1 or farneback)")
    need(r.export.opset >= 17, f"export.opset: must be >= 17, got {r.export.opset}")
    need(r.engines.calibration_clips >= 1, f"engines.calibration_clips: must be >= 1, got {r.engines.calibration_clips}")
    lo, opt, hi = r.engines.tensorrt_batch
    need(1 <= lo <= opt <= hi, f"engines.tensorrt_batch: must satisfy 1 <= min <= opt <= max, got {[lo, opt, hi]}")
    need(r.engines.tensorrt_workspace_mb >= 1,
         f"engines.tensorrt_workspace_mb: must be >= 1, got {r.engines.tensorrt_workspace_mb}")
    need(r.bench.reference_cpu_mhz > 0, f"bench.reference_cpu_mhz: must be > 0, got {r.bench.reference_cpu_mhz}")
    need(r.bench.threads >= 1, f"bench.threads: must be >= 1, got {r.bench.threads}")
    need(r.bench.reference_gpu_mhz > 0, f"bench.reference_gpu_mhz: must be > 0, got {r.bench.reference_gpu_mhz}")
    need(r.bench.warmup >= 0, f"bench.warmup: must be >= 0, got {r.bench.warmup}")
    need(r.bench.e2e_videos >= 0, f"bench.e2e_videos: must be >= 0, got {r.bench.e2e_videos}")
    need(r.bench.batch_size >= 1, f"bench.batch_size: must be >= 1, got {r.bench.batch_size}")
    need(r.bench.min_time_s >= 0, f"bench.min_time_s: must be >= 0, got {r.bench.min_time_s}")
    for i, e in enumerate(r.bench.engines):
        close = difflib.get_close_matches(str(e), BENCH_ENGINES, n=1)
        need(e in BENCH_ENGINES, f"bench.engines[{i}]: unknown engine {e!r}"
             + (f", did you mean {close[0]!r}?" if close else f" (known: {', '.join(BENCH_ENGINES)})"))
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
    if tp is Any:  # sweep values: checked when each variant recipe is built
        return value
    if origin is dict:
        if not isinstance(value, dict):
            errs.append(f"{path}: expected a mapping, got {value!r}")
            return None
        return {_convert(args[0], k, path, errs): _convert(args[1], v, f"{path}.{k}", errs) for k, v in value.items()}
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


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a recipe dataclass, once per class (a sweep builds many recipes)."""
    return typing.get_type_hints(cls)


def _build(cls: type, data: Any, path: str, errs: list[str]) -> Any:
    prefix = f"{path}." if path else ""
    if not isinstance(data, dict):
        errs.append(f"{path or 'recipe'}: expected a mapping, got {data!r}")
        return None
    hints = _type_hints(cls)
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


def dotted_key_error(key: str) -> str | None:
    """None when ``key`` (``distill.temperature``, ``seed``) names a recipe value, else why not,
    with the closest existing key (what sweeps use to check the keys they vary)."""
    cls: Any = Recipe
    parts = key.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        if not dataclasses.is_dataclass(cls):
            return f"unknown recipe key {key!r}: {prefix} is a value, not a section"
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else f" (known: {', '.join(names)})"
            return f"unknown recipe key {key!r}{hint}"
        cls = _type_hints(cls)[part]
    if dataclasses.is_dataclass(cls):
        return f"{key!r} is a whole section; vary one of its keys ({', '.join(f.name for f in dataclasses.fields(cls))})"
    return None


def _check_pretrain_sweep(r: Recipe) -> list[str]:
    """Pretraining needs clips its pretext transforms keep the shape of; sweep keys must exist."""
    errs: list[str] = []
    p, d = r.pretrain, r.data
    if p.enabled:
        for key in ("epochs", "projection_dim", "hidden_dim"):
            if getattr(p, key) < 1:
                errs.append(f"pretrain.{key}: must be >= 1, got {getattr(p, key)}")
        if p.batch_size < 2:
            errs.append(f"pretrain.batch_size: must be >= 2 (the other clips of a batch are the contrastive negatives), got {p.batch_size}")
        if p.lr <= 0 or p.temperature <= 0 or p.contrastive_weight < 0:
            errs.append(f"pretrain: lr and temperature must be > 0 and contrastive_weight >= 0, got lr {p.lr}, "
                        f"temperature {p.temperature}, contrastive_weight {p.contrastive_weight}")
        if len(set(p.transforms)) != len(p.transforms) or len(p.transforms) < 2:
            errs.append(f"pretrain.transforms: need at least 2 distinct pretext classes, got {list(p.transforms)}")
        if "rotation" in p.transforms and d.crop[0] != d.crop[1]:
            errs.append(f"pretrain.transforms: rotation needs a square data.crop (90 degrees swaps H and W), got {list(d.crop)}")
        if "spatial_permutation" in p.transforms and (d.crop[0] % 2 or d.crop[1] % 2):
            errs.append(f"pretrain.transforms: spatial_permutation needs an even data.crop, got {list(d.crop)}")
        if {"temporal_adjacent_swap", "temporal_segment_replace"} & set(p.transforms) and d.clip_len < 4:
            errs.append(f"pretrain.transforms: temporal transforms cut clips into 4 segments; data.clip_len must be >= 4, got {d.clip_len}")
    s = r.sweep
    for key, values in s.grid.items():
        problem = dotted_key_error(key)
        if problem is None and key.split(".")[0] in ("name", "runs_dir", "sweep"):
            problem = f"{key!r} cannot be swept (it places the runs or defines the sweep)"
        if problem:
            errs.append(f"sweep.grid.{key}: {problem}")
        if not values:
            errs.append(f"sweep.grid.{key}: needs at least one value")
    swept = set(s.grid)
    for i, point in enumerate(s.points):
        for key in point:
            problem = dotted_key_error(key)
            if problem is None and key.split(".")[0] in ("name", "runs_dir", "sweep"):
                problem = f"{key!r} cannot be swept (it places the runs or defines the sweep)"
            if problem is None and key in s.grid:
                problem = f"{key!r} is also in sweep.grid; set it in one place"
            if problem:
                errs.append(f"sweep.points[{i}].{key}: {problem}")
            swept.add(key)
    for i, entry in enumerate(s.exclude):
        for key in entry:
            if key not in swept:
                errs.append(f"sweep.exclude[{i}].{key}: not a swept key ({', '.join(sorted(swept)) or 'nothing is swept'})")
    if not 0 < s.confidence < 1:
        errs.append(f"sweep.confidence: must be in (0, 1), got {s.confidence}")
    for mark, epoch in s.epoch_marks.items():
        if epoch < 1:
            errs.append(f"sweep.epoch_marks.{mark}: must be >= 1, got {epoch}")
    return errs


RecipeCheck = Callable[["Recipe"], list[str]]


def parse_recipe(data: Any, *, source: str = "recipe", checks: Sequence[RecipeCheck] = ()) -> Recipe:
    """Build a Recipe from plain data, raising RecipeError with every problem found.

    This checks what the recipe can check alone: keys, types, and each section's ranges and
    cross-field rules. Names that live in other packages' tables (stages, engines, KD losses,
    models) and every sweep variant are checked by ``checks``; ``edgekd.stages.parse_recipe`` and
    ``edgekd.stages.load_recipe`` pass them all, and are what the CLI uses."""
    errs: list[str] = []
    recipe = _build(Recipe, data, "", errs)
    if not errs and recipe is not None:
        errs.extend(_check_ranges(recipe))
        errs.extend(_check_pretrain_sweep(recipe))
        if not errs:
            for check in checks:
                errs.extend(check(recipe))
    if errs or recipe is None:
        raise RecipeError(errs, source)
    return recipe


# ----------------------------------------------------------------------------- sweep grids


def expand_grid(grid: dict[str, tuple[Any, ...] | list[Any]],
                exclude: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
                points: tuple[dict[str, Any], ...] | list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Each of ``points`` (explicit combinations; none: one empty point) crossed with the cartesian
    product of the grid in key order (the last key varies fastest), minus every combination that
    matches all the key/values of an ``exclude`` entry."""
    keys = list(grid)
    combos = [{**p, **dict(zip(keys, values))} for p in (points or [{}])
              for values in itertools.product(*(grid[k] for k in keys))]
    return [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]


def _slug_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_slug_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "none"


def variant_slug(overrides: dict[str, Any]) -> str:
    """Folder name of a variant, e.g. ``distill.temperature-5_seed-0`` (long names are shortened
    and made unique with a hash)."""
    slug = "_".join(f"{k}-{_slug_value(v)}" for k, v in overrides.items()) or "base"
    if len(slug) > 120:
        slug = f"{slug[:100]}-{stable_hash(overrides)[:12]}"
    return slug


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data[a][b][c] = value`` for ``key = "a.b.c"``, creating sections as needed."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)


def variant_data(recipe: Recipe, overrides: dict[str, Any], slug: str) -> dict[str, Any]:
    """The raw recipe of one sweep variant: the base recipe with ``overrides`` set, no sweep, its own
    name (``slug``) and the sweep folder as its runs_dir."""
    data = recipe.to_dict()
    data.pop("sweep")
    for key, value in overrides.items():
        set_dotted(data, key, value)
    data["name"] = slug
    data["runs_dir"] = str(recipe.sweep_dir)
    return data


def variant_slugs(combos: list[dict[str, Any]]) -> list[str]:
    """A unique folder name per combination (see :func:`variant_slug`)."""
    slugs, seen = [], set()
    for c in combos:
        s = variant_slug(c)
        while s in seen:  # two values that print alike (1 and "1") still get their own folders
            s = f"{s}-{stable_hash(c)[:6]}"
        seen.add(s)
        slugs.append(s)
    return slugs


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


def load_recipe(path: str | Path, overrides: list[str] | None = None, *,
                checks: Sequence[RecipeCheck] = ()) -> Recipe:
    """Read a YAML recipe (safe_load), apply ``--set`` overrides and validate strictly (see
    :func:`parse_recipe` for what ``checks`` add)."""
    return parse_recipe(apply_overrides(read_recipe_data(path), overrides or []), source=str(path), checks=checks)


def read_recipe_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML recipe file (``yaml.safe_load``), or RecipeError saying why not."""
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
    return data
