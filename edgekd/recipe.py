"""Typed, strict recipes.

A recipe is YAML loaded into frozen dataclasses, one per section. Loading is strict on purpose: an
unknown or misspelled key, a wrong type or an out-of-range value is an error naming its dotted path
(with a close-match suggestion), and every error in the file is reported at once rather than one
per run. Nothing falls back silently to a default when the user wrote something the loader did not
expect.

Each section checks its own values (its ``errors(path)`` method, next to the fields); the recipe
checks what spans sections (:meth:`Recipe.errors`). Names that index other packages' tables
(stages, engines, KD losses, models) are checked by ``edgekd.stages.validate``, because this module
imports nothing but ``edgekd.utils``. A section may keep *blocks*: mappings under keys named after
entries of such a table (``distill.<method>``), kept raw here and checked by the table's owner.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from edgekd.utils.hashing import stable_hash

BLOCKS = {"blocks": True}  # field metadata: the section's unknown keys are kept in this field as raw blocks


class RecipeError(ValueError):
    """Every problem found in a recipe, one per line, each with its dotted path."""

    def __init__(self, errors: list[str], source: str = "recipe") -> None:
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} error(s)\n{lines}")


class _Errors(list):
    """Collects ``"path: message"`` lines for a section's ``errors``."""

    def need(self, cond: bool, message: str) -> None:
        if not cond:
            self.append(message)


DataSource = Literal["synthetic", "ucf101", "hmdb51", "ucf11", "ucf50", "folder"]
AugmentKind = Literal["none", "camarena", "hu"]
FlowMethod = Literal["none", "tvl1", "farneback"]
CacheFormatName = Literal["raw", "jpeg", "webp"]  # the rows of edgekd/data/formats.py
Optimizer = Literal["adam", "adamw", "sgd"]
Precision = Literal["auto", "fp32", "bf16"]
PretextTransform = Literal["none", "rotation", "spatial_permutation", "temporal_adjacent_swap", "temporal_segment_replace"]
TeacherBackend = Literal["pytorch", "openvino", "openvino_int8"]
SweepTable = Literal["generic", "ullah", "camarena", "hu"]

AUGMENT_KINDS: tuple[str, ...] = get_args(AugmentKind)
PRETEXT_TRANSFORMS: tuple[str, ...] = get_args(PretextTransform)


@dataclass(frozen=True)
class SynthConfig:
    """The built-in synthetic action videos (used when ``data.source: synthetic``)."""

    classes: tuple[str, ...] | None = None  # None: all built-in actions
    per_class: int = 12
    num_frames: int = 48
    size: tuple[int, int] = (160, 120)  # width, height of the written videos
    clips_per_group: int = 4
    # null: the last ~25% of per_class's actor groups are the test set; a number: per_class clips all
    # train and this many more per class (unseen actors) are the test set, for tight intervals
    test_per_class: int | None = None

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.per_class >= (1 if self.test_per_class else 2),
               f"{path}.per_class: must be >= {1 if self.test_per_class else 2}, got {self.per_class}")
        e.need(self.test_per_class is None or self.test_per_class >= 1,
               f"{path}.test_per_class: must be >= 1 or null, got {self.test_per_class}")
        e.need(self.num_frames >= 1, f"{path}.num_frames: must be >= 1, got {self.num_frames}")
        e.need(self.clips_per_group >= 1, f"{path}.clips_per_group: must be >= 1, got {self.clips_per_group}")
        e.need(min(self.size) >= 8, f"{path}.size: width and height must be >= 8, got {list(self.size)}")
        return e


@dataclass(frozen=True)
class AugmentParams:
    """The photometric augmentation's parameters (``data.augment: camarena``), Camarena et al.'s
    values by default; the one class both the recipe and ``edgekd.data.augment`` use."""

    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        for key in ("jitter_p", "grayscale_p", "blur_p"):
            e.need(0 <= getattr(self, key) <= 1, f"{path}.{key}: must be in [0, 1], got {getattr(self, key)}")
        for key in ("brightness", "contrast", "saturation"):
            e.need(getattr(self, key) >= 0, f"{path}.{key}: must be >= 0, got {getattr(self, key)}")
        e.need(0 <= self.hue <= 0.5, f"{path}.hue: must be in [0, 0.5], got {self.hue}")
        e.need(0 < self.blur_sigma[0] <= self.blur_sigma[1],
               f"{path}.blur_sigma: must be 0 < min <= max, got {list(self.blur_sigma)}")
        return e


@dataclass(frozen=True)
class UnlabeledConfig:
    """The unlabelled transfer set: videos without labels, used only by pretraining and by
    distillation (the teacher's soft targets), never by the labelled splits."""

    # none | folder: every video under root, any layout | synthetic: `count` built-in videos of new
    # actors | train_rest: the training videos data.fraction leaves out (their labels unused; none
    # at 100%, where distillation then runs on the labelled clips alone)
    source: Literal["none", "folder", "synthetic", "train_rest"] = "none"
    root: str | None = None
    count: int = 200  # synthetic: how many videos
    max_videos: int | None = None  # use at most this many (a fixed sample, sorted by path)

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.source != "folder" or self.root is not None, f"{path}.root: required when {path}.source is 'folder'")
        e.need(self.root is None or self.source == "folder",
               f"{path}.root: only used with {path}.source 'folder', got source {self.source!r}")
        e.need(self.count >= 1, f"{path}.count: must be >= 1, got {self.count}")
        e.need(self.max_videos is None or self.max_videos >= 1,
               f"{path}.max_videos: must be >= 1 or null, got {self.max_videos}")
        return e

    @property
    def enabled(self) -> bool:
        return self.source != "none"


@dataclass(frozen=True)
class DataConfig:
    """Where videos come from, how they are split and how clips are cut from them."""

    source: DataSource = "synthetic"
    root: str | None = None  # dataset root for every source but synthetic
    split: int = 1  # official split number (ucf101, hmdb51)
    splits_dir: str | None = None
    val_fraction: float = 0.1  # carved from train when the dataset has no val list
    on_missing: Literal["error", "skip"] = "error"  # a video named by the official lists but absent
    on_bad_video: Literal["error", "skip"] = "error"  # undecodable/too short: error lists all; skip drops
    min_frames: int = 1  # videos with fewer decoded frames are bad (flow needs >= 2)
    group_regex: str | None = None  # folder source: file-name regex whose match keeps a group on one side
    fraction: float = 100.0  # percent of each class's train videos kept (Camarena et al.: 100/50/25/2)
    augment: AugmentKind = "none"  # training augmentation preset (edgekd/data/augment.py)
    augment_params: AugmentParams = field(default_factory=AugmentParams)
    flow: FlowMethod = "none"  # optical flow cached by the data stage
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    unlabeled: UnlabeledConfig = field(default_factory=UnlabeledConfig)
    clip_len: int = 16
    frame_interval: int = 1
    resize: tuple[int, int] = (128, 171)  # H, W frames are resized to (and cached at)
    crop: tuple[int, int] = (112, 112)
    hflip: bool = True
    eval_clips: int = 1  # clips per video averaged at evaluation
    workers: int = 2
    cache_dir: str = "runs/_cache"
    # how the frame cache stores frames (and flow): webp/jpeg images packed one file per video, read by
    # frame index (lossy; ~2.7x / ~3.8x the source video on UCF101 at 128x171), or raw uint8 arrays
    # (lossless, ~38x). webp meets the loader's throughput goals here (docs/notes.md, 2026-11-29)
    cache_format: CacheFormatName = "webp"
    cache_quality: int | None = None  # jpeg/webp quality 1..100; null: the format's default (90)

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.clip_len > 0, f"{path}.clip_len: must be > 0, got {self.clip_len}")
        e.need(self.frame_interval > 0, f"{path}.frame_interval: must be > 0, got {self.frame_interval}")
        e.need(0 <= self.val_fraction < 1, f"{path}.val_fraction: must be in [0, 1), got {self.val_fraction}")
        e.need(self.eval_clips >= 1, f"{path}.eval_clips: must be >= 1, got {self.eval_clips}")
        e.need(self.workers >= 0, f"{path}.workers: must be >= 0, got {self.workers}")
        e.need(self.crop[0] <= self.resize[0] and self.crop[1] <= self.resize[1],
               f"{path}.crop {list(self.crop)} must fit inside {path}.resize {list(self.resize)}")
        e.need(self.source == "synthetic" or self.root is not None,
               f"{path}.root: required when {path}.source is {self.source!r}")
        e.need(self.split in (1, 2, 3), f"{path}.split: must be 1, 2 or 3, got {self.split}")
        e.need(self.min_frames >= 1, f"{path}.min_frames: must be >= 1, got {self.min_frames}")
        e.need(0 < self.fraction <= 100, f"{path}.fraction: must be a percentage in (0, 100], got {self.fraction}")
        e.need(self.group_regex is None or self.source == "folder",
               f"{path}.group_regex: only used with {path}.source 'folder', got source {self.source!r}")
        if self.group_regex is not None:
            try:
                re.compile(self.group_regex)
            except re.error as exc:
                e.append(f"{path}.group_regex: {self.group_regex!r} is not a valid regular expression ({exc})")
        e += self.augment_params.errors(f"{path}.augment_params")
        e += self.synthetic.errors(f"{path}.synthetic")
        e += self.unlabeled.errors(f"{path}.unlabeled")
        e.need(self.cache_quality is None or 1 <= self.cache_quality <= 100,
               f"{path}.cache_quality: must be in 1..100 or null, got {self.cache_quality}")
        e.need(self.cache_quality is None or self.cache_format != "raw",
               f"{path}.cache_quality: only used with a lossy {path}.cache_format (jpeg, webp), got 'raw'")
        return e


@dataclass(frozen=True)
class TrainConfig:
    """One network and how it is trained. ``student`` settings also drive the distilled student,
    so the scratch baseline and the KD student differ only in the loss."""

    model: str = "c3d_student"  # a name of the model registry (edgekd/models/__init__.py)
    # this network's initialisation and batch order; null: the recipe's seed. A sweep over
    # student.seed trains several students against one teacher (the teacher's key ignores it)
    seed: int | None = None
    width_mult: float = 1.0
    dropout: float = 0.5
    epochs: int = 10
    batch_size: int = 8
    optimizer: Optimizer = "adam"
    lr: float = 1e-4  # Ullah & Munir: Adam, static 1e-4
    weight_decay: float = 0.0
    # auto: bf16 autocast only where the precision probe finds bf16 sound and faster here (edgekd/train/precision.py)
    precision: Precision = "auto"
    channels_last: bool = True
    # residual nets (R3D, R(2+1)D, MC3, 3D-ResNeXt): start each block as the identity (zeroed last BN)
    zero_init_residual: bool = False
    max_steps_per_epoch: int | None = None
    lr_schedule: Literal["constant", "cosine"] = "constant"  # per epoch; cosine decays to 0 at the last epoch
    # the weights the stage keeps: best_val (highest val top-1, ties to lower val loss) or last (the
    # final epoch: with a cosine schedule the converged model; a val set of a few videos picks noise)
    keep: Literal["best_val", "last"] = "best_val"
    # V fixed augmentation variants per training video (every random choice of a clip derives from
    # (seed, video, v < V)), so a frozen teacher's outputs can be cached per (video, variant); null:
    # a fresh random draw per sample. A teacher trains best on random draws; the students (scratch
    # and KD alike, so they differ only in the loss) take variants when KD caches its teacher.
    aug_variants: int | None = None
    # which v a clip uses: random (drawn per sample) or cycle (v = (epoch + per-video offset) mod V,
    # so V consecutive epochs meet every (video, v) once and a teacher cache is full after V epochs)
    aug_schedule: Literal["random", "cycle"] = "random"
    # input the network trains on: RGB frames or 2-channel optical flow (Hu et al.'s flow teacher)
    modality: Literal["rgb", "flow"] = "rgb"
    # transfer learning (edgekd/models/pretrained.py): start from a local weights file, new head
    pretrained: str | None = None
    pretrained_layout: Literal["auto", "edgekd", "c3d_sports1m", "torchvision", "hara", "pytorchvideo",
                               "mmaction2"] = "auto"
    # [] none; [backbone] every loaded weight but the head; or module prefixes, e.g. [stem, layer1]
    freeze: tuple[str, ...] = ()
    # RGB weights into a model with other in_channels (flow): first conv's filters averaged (TSN)
    pretrained_adapt_channels: bool = False

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.epochs >= 1, f"{path}.epochs: must be >= 1, got {self.epochs}")
        e.need(self.batch_size >= 1, f"{path}.batch_size: must be >= 1, got {self.batch_size}")
        e.need(self.lr > 0, f"{path}.lr: must be > 0, got {self.lr}")
        e.need(0 <= self.dropout < 1, f"{path}.dropout: must be in [0, 1), got {self.dropout}")
        e.need(self.width_mult > 0, f"{path}.width_mult: must be > 0, got {self.width_mult}")
        e.need(self.weight_decay >= 0, f"{path}.weight_decay: must be >= 0, got {self.weight_decay}")
        e.need(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
               f"{path}.max_steps_per_epoch: must be >= 1 or null, got {self.max_steps_per_epoch}")
        e.need(self.aug_variants is None or self.aug_variants >= 1,
               f"{path}.aug_variants: must be >= 1 or null, got {self.aug_variants}")
        e.need(self.aug_schedule == "random" or self.aug_variants is not None,
               f"{path}.aug_schedule: 'cycle' needs {path}.aug_variants (the number of variants to cycle through)")
        e.need(not self.freeze or self.pretrained is not None,
               f"{path}.freeze: {list(self.freeze)} needs {path}.pretrained (freezing random weights trains nothing)")
        e.need("backbone" not in self.freeze or len(self.freeze) == 1,
               f"{path}.freeze: 'backbone' cannot be combined with module prefixes, got {list(self.freeze)}")
        return e


@dataclass(frozen=True)
class DistillConfig:
    """How ``student_kd`` learns from the frozen teacher: which KD loss (a name of the KD-loss
    registry, ``edgekd/distill/losses/``: a mechanism such as ``soft_ce_T`` or a paper's name
    such as ``ullah``), its parameters in a block of their own (``distill.<method>: {...}``, kept
    in :attr:`blocks` and checked by the registry), and how the teacher runs."""

    method: str = "ullah"
    # openvino: same precision as training (f32 | bf16); openvino_int8: NNCF-quantized on training
    # clips, about 2x cheaper than bf16 on AMX CPUs, outputs differ by the quantization error
    teacher_backend: TeacherBackend = "pytorch"
    teacher_calibration_clips: int = 64  # openvino_int8: training-split clips NNCF calibrates on
    # replay teacher outputs per (video, augmentation variant); needs student.aug_variants. memory:
    # filled during training; disk: computed once by the teacher_outputs stage before training and
    # read by every KD student of the run (other seeds and temperatures share them)
    cache: Literal["off", "memory", "disk"] = "memory"
    # with data.unlabeled: share of each KD batch drawn from the transfer set (soft term only); the rest are labelled clips
    # (hard and soft terms). Batches keep student.batch_size and epochs their step count, so KD
    # costs the scratch student's steps plus the teacher's passes
    unlabeled_ratio: float = 0.5
    # augmentation variants per transfer-set video; null: student.aug_variants. The transfer set is
    # usually much larger than the labelled one, so each of its videos is drawn only a few times in
    # a training and 1-2 variants cover it while keeping the teacher's passes (teacher_outputs) down
    transfer_variants: int | None = None
    # distill.<method>: {param: value}: parameter blocks of KD losses, by loss name
    blocks: dict[str, Any] = field(default_factory=dict, metadata=BLOCKS)

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.teacher_calibration_clips >= 1,
               f"{path}.teacher_calibration_clips: must be >= 1, got {self.teacher_calibration_clips}")
        e.need(0 <= self.unlabeled_ratio < 1, f"{path}.unlabeled_ratio: must be in [0, 1), got {self.unlabeled_ratio}")
        e.need(self.transfer_variants is None or self.transfer_variants >= 1,
               f"{path}.transfer_variants: must be >= 1 or null, got {self.transfer_variants}")
        return e


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    simplify: bool = True
    parity_clips: int = 16  # real test-split clips used for the PyTorch vs ONNX Runtime check
    # the per-frame step graph (<model>_step.onnx + its spec) of models that stream (the online TSM):
    # auto: for every such model; true: also, every engines.edge_models model must stream; false: never
    streaming: Literal["auto", True, False] = "auto"

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.opset >= 17, f"{path}.opset: must be >= 17, got {self.opset}")
        e.need(self.parity_clips >= 1, f"{path}.parity_clips: must be >= 1, got {self.parity_clips}")
        # the Literal check lets 1 and 0 through (1 == True); anything else it has reported already
        e.need(isinstance(self.streaming, bool) or self.streaming not in (0, 1),
               f"{path}.streaming: must be auto, true or false, got {self.streaming!r}")
        return e


@dataclass(frozen=True)
class EnginesConfig:
    """Which engines of the backend table (``edgekd/engines/table.py``) the engines stage builds."""

    # names of the backend table; edge rows (Q/DQ ONNX, FP16 ONNX, TensorRT) are built for edge_models
    # only; TensorRT rows are recorded as skipped, with the reason, where TensorRT and a GPU are absent
    build: tuple[str, ...] = ("openvino_fp32", "openvino_int8", "onnxruntime_int8", "onnxruntime_fp16",
                              "tensorrt_fp16", "tensorrt_int8_qdq")
    calibration_clips: int = 300  # from the training split; all of them if fewer
    edge_models: tuple[str, ...] = ("student_kd",)  # the deployable students
    qdq_calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    tensorrt_batch: tuple[int, int, int] = (1, 1, 8)  # optimisation profile: min, opt, max batch
    tensorrt_workspace_mb: int = 1024
    tensorrt_timing_cache_dir: str | None = "runs/_cache/tensorrt"  # reused across runs; None: no timing cache

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.calibration_clips >= 1, f"{path}.calibration_clips: must be >= 1, got {self.calibration_clips}")
        lo, opt, hi = self.tensorrt_batch
        e.need(1 <= lo <= opt <= hi, f"{path}.tensorrt_batch: must satisfy 1 <= min <= opt <= max, got {[lo, opt, hi]}")
        e.need(self.tensorrt_workspace_mb >= 1,
               f"{path}.tensorrt_workspace_mb: must be >= 1, got {self.tensorrt_workspace_mb}")
        e.need(len(set(self.build)) == len(self.build), f"{path}.build: lists an engine twice: {list(self.build)}")
        return e


@dataclass(frozen=True)
class BenchConfig:
    threads: int = 2
    batch_size: int = 8  # for the throughput column
    min_time_s: float = 1.0  # per latency measurement, after warm-up
    reference_cpu_mhz: float = 2500.0  # Ullah & Munir section 4.5
    reference_gpu_mhz: float = 585.0  # Ullah & Munir section 4.5
    # names of the backend table; one this machine cannot run is reported as skipped, with the reason
    engines: tuple[str, ...] = ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_bf16", "openvino_int8")
    warmup: int = 3  # untimed calls before each latency measurement
    e2e_videos: int = 4  # test videos timed end to end (decode + preprocess + inference); 0 skips it
    peak_gemm: bool = True  # GEMM micro-benchmark per precision for the efficiency column (cached per machine)

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        e.need(self.threads >= 1, f"{path}.threads: must be >= 1, got {self.threads}")
        e.need(self.batch_size >= 1, f"{path}.batch_size: must be >= 1, got {self.batch_size}")
        e.need(self.min_time_s >= 0, f"{path}.min_time_s: must be >= 0, got {self.min_time_s}")
        e.need(self.reference_cpu_mhz > 0, f"{path}.reference_cpu_mhz: must be > 0, got {self.reference_cpu_mhz}")
        e.need(self.reference_gpu_mhz > 0, f"{path}.reference_gpu_mhz: must be > 0, got {self.reference_gpu_mhz}")
        e.need(self.warmup >= 0, f"{path}.warmup: must be >= 0, got {self.warmup}")
        e.need(self.e2e_videos >= 0, f"{path}.e2e_videos: must be >= 0, got {self.e2e_videos}")
        return e


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining of the student's backbone before supervised training (Camarena et
    al. Sec. 3.2, after Tao et al.'s PCL): pretext (which transform was applied) + weight * contrastive.
    When enabled, ``student_scratch`` and ``student_kd`` start from its weights with a fresh head.
    Defaults are Camarena Table 1 (SGD 1e-2, momentum 0.9, weight decay 5e-4, contrastive weight 0.5)."""

    enabled: bool = False
    networks: tuple[Literal["student", "teacher"], ...] = ("student",)  # which networks are pretrained
    # clips it learns from: the labelled training videos (labels unused), the unlabelled transfer set, or both
    data: Literal["labeled", "unlabeled", "both"] = "labeled"
    epochs: int = 200
    batch_size: int = 16
    optimizer: Optimizer = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    max_steps_per_epoch: int | None = None
    # pretext classes, in label order (see edgekd.ssl.transforms for exactly what each one does)
    transforms: tuple[PretextTransform, ...] = PRETEXT_TRANSFORMS  # type: ignore[assignment]
    contrastive_weight: float = 0.5
    temperature: float = 0.07  # of the contrastive softmax over cosine similarities
    # all: NT-Xent, every other clip in the batch is a negative; same_view: Camarena Eq. 3-4 literally
    negatives: Literal["all", "same_view"] = "all"
    projection_dim: int = 128
    hidden_dim: int = 512

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        if not self.enabled:
            return e
        for key in ("epochs", "projection_dim", "hidden_dim"):
            e.need(getattr(self, key) >= 1, f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        e.need(self.batch_size >= 2, f"{path}.batch_size: must be >= 2 (the other clips of a batch are the "
                                     f"contrastive negatives), got {self.batch_size}")
        e.need(self.lr > 0 and self.temperature > 0 and self.contrastive_weight >= 0,
               f"{path}: lr and temperature must be > 0 and contrastive_weight >= 0, got lr {self.lr}, "
               f"temperature {self.temperature}, contrastive_weight {self.contrastive_weight}")
        e.need(len(set(self.transforms)) == len(self.transforms) and len(self.transforms) >= 2,
               f"{path}.transforms: need at least 2 distinct pretext classes, got {list(self.transforms)}")
        e.need(bool(self.networks) and len(set(self.networks)) == len(self.networks),
               f"{path}.networks: list student and/or teacher once each, got {list(self.networks)}")
        return e

    @property
    def student_enabled(self) -> bool:
        return self.enabled and "student" in self.networks

    @property
    def teacher_enabled(self) -> bool:
        return self.enabled and "teacher" in self.networks


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
    stages: tuple[str, ...] = ("data", "pretrain", "pretrain_teacher", "teacher", "student_scratch", "teacher_outputs",
                               "student_kd")
    table: SweepTable = "generic"
    # camarena: named epochs at which accuracy is read (best val top-1 up to that epoch); empty: 25/75/100%
    epoch_marks: dict[str, int] = field(default_factory=dict)
    confidence: float = 0.95
    # variants run at once by `edgekd run`/`edgekd sweep` (--jobs overrides), each on cores/jobs
    # threads; the stages they all share run first, alone, on every core
    jobs: int = 1
    # stages run after ``stages`` by the variants matching every key/value of ``deploy_where`` (all
    # variants when empty): e.g. export, engines and bench for one seed, the model a user ships,
    # while the other seeds only train to give the table its intervals. With jobs > 1 they run after
    # every variant has trained, one variant at a time on every core, so bench latencies are quiet
    deploy_stages: tuple[str, ...] = ()
    deploy_where: dict[str, Any] = field(default_factory=dict)

    def deploys(self, overrides: dict[str, Any]) -> bool:
        """Whether the variant with these swept values runs ``deploy_stages``."""
        return all(k in overrides and overrides[k] == v for k, v in self.deploy_where.items())

    @property
    def swept_keys(self) -> list[str]:
        """Every key the sweep sets (points' keys, then the grid's), in order; empty: no sweep."""
        return list(dict.fromkeys([*(k for p in self.points for k in p), *self.grid]))

    def errors(self, path: str) -> list[str]:
        e = _Errors()
        for key, values in self.grid.items():
            problem = _swept_key_problem(key)
            if problem:
                e.append(f"{path}.grid.{key}: {problem}")
            e.need(bool(values), f"{path}.grid.{key}: needs at least one value")
        swept = set(self.grid)
        for i, point in enumerate(self.points):
            for key in point:
                problem = _swept_key_problem(key)
                if problem is None and key in self.grid:
                    problem = f"{key!r} is also in {path}.grid; set it in one place"
                if problem:
                    e.append(f"{path}.points[{i}].{key}: {problem}")
                swept.add(key)
        for i, entry in enumerate(self.exclude):
            for key in entry:
                e.need(key in swept, f"{path}.exclude[{i}].{key}: not a swept key "
                                     f"({', '.join(sorted(swept)) or 'nothing is swept'})")
        e.need(0 < self.confidence < 1, f"{path}.confidence: must be in (0, 1), got {self.confidence}")
        e.need(self.jobs >= 1, f"{path}.jobs: must be >= 1, got {self.jobs}")
        for key in self.deploy_where:
            e.need(key in swept, f"{path}.deploy_where.{key}: not a swept key "
                                 f"({', '.join(sorted(swept)) or 'nothing is swept'})")
        e.need(not self.deploy_where or bool(self.deploy_stages),
               f"{path}.deploy_where: set {path}.deploy_stages too (the stages the matching variants add)")
        for key in set(self.deploy_where) & set(self.grid):
            e.need(self.deploy_where[key] in self.grid[key],
                   f"{path}.deploy_where.{key}: {self.deploy_where[key]!r} is not one of its grid values "
                   f"{list(self.grid[key])}, so no variant would deploy")
        for mark, epoch in self.epoch_marks.items():
            e.need(epoch >= 1, f"{path}.epoch_marks.{mark}: must be >= 1, got {epoch}")
        return e


def _swept_key_problem(key: str) -> str | None:
    problem = dotted_key_error(key)
    if problem is None and key.split(".")[0] in ("name", "runs_dir", "sweep"):
        problem = f"{key!r} cannot be swept (it places the runs or defines the sweep)"
    return problem


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

    @property
    def precomputes_teacher_outputs(self) -> bool:
        """Whether the teacher_outputs stage computes the KD teacher's outputs before training
        (``distill.cache: disk`` with students on augmentation variants)."""
        return self.distill.cache == "disk" and self.student.aug_variants is not None

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain YAML-able data, in the shape it is written in (blocks back in place)."""
        return _to_data(self)

    def section_hash(self, *sections: str) -> str:
        """Stable hash of the named sections (plus the seed): what a stage's reuse key is built from.
        A dotted name (``student.aug_variants``) hashes that one value, for a stage that reads a
        few keys of a section whose other keys (``student.seed``) must not re-run it."""
        payload = {s: _to_data(_dotted(self, s)) for s in sections}
        payload["seed"] = self.seed
        return stable_hash(payload)

    def errors(self) -> list[str]:
        """Every section's own checks, then what spans sections; each message names the fields."""
        e = _Errors()
        e.need(bool(self.name) and "/" not in self.name, f"name: must be a non-empty folder name, got {self.name!r}")
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "errors"):
                e += section.errors(f.name)
        r, d, p = self, self.data, self.pretrain
        e.need(r.student.modality == "rgb" or r.teacher.modality == r.student.modality,
               f"student.modality: a {r.student.modality!r} student needs a {r.student.modality!r} teacher, "
               f"got teacher.modality {r.teacher.modality!r}")
        for sec in ("teacher", "student"):
            e.need(getattr(r, sec).modality == "rgb" or d.flow != "none",
                   f"{sec}.modality: 'flow' needs optical flow from the data stage; set data.flow (tvl1 or farneback)")
        e.need(d.unlabeled.source != "synthetic" or d.source == "synthetic",
               f"data.unlabeled.source: 'synthetic' shows the built-in actions, so data.source must be synthetic too, "
               f"got {d.source!r}")
        e.need(not (p.enabled and p.data != "labeled") or d.unlabeled.enabled,
               f"pretrain.data: {p.data!r} needs an unlabelled transfer set (data.unlabeled.source)")
        if p.enabled:
            e.need("rotation" not in p.transforms or d.crop[0] == d.crop[1],
                   f"pretrain.transforms: rotation needs a square data.crop (90 degrees swaps H and W), got {list(d.crop)}")
            e.need("spatial_permutation" not in p.transforms or not (d.crop[0] % 2 or d.crop[1] % 2),
                   f"pretrain.transforms: spatial_permutation needs an even data.crop, got {list(d.crop)}")
            e.need(not ({"temporal_adjacent_swap", "temporal_segment_replace"} & set(p.transforms)) or d.clip_len >= 4,
                   f"pretrain.transforms: temporal transforms cut clips into 4 segments; data.clip_len must be >= 4, "
                   f"got {d.clip_len}")
        return e


# Keys of earlier versions, and exactly how to write them now
MOVED_KEYS: dict[str, str] = {
    **{f"data.{k}": (f"data.{k}: augmentation variants are now set per network, teacher.{k} and student.{k}, so "
                     "the teacher can train on fresh random draws while the students' clips come in variants whose "
                     "teacher outputs are cached; write it under student (and teacher, to keep the old behaviour)")
       for k in ("aug_variants", "aug_schedule")},
    **{f"engines.{k}": (f"engines.{k}: engines are listed by name in engines.build (rows of the backend table, "
                        "edgekd/engines/table.py), e.g. build: [openvino_fp32, openvino_int8, onnxruntime_int8, "
                        "tensorrt_fp16, tensorrt_int8_qdq]")
       for k in ("openvino_fp32", "openvino_int8", "qdq_int8", "tensorrt", "tensorrt_precisions")},
}


def _dotted(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = obj.blocks if part == "blocks" else getattr(obj, part)
    return obj


def _to_data(obj: Any) -> Any:
    """Dataclasses as plain dicts, with block fields merged back into their section."""
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = _to_data(getattr(obj, f.name))
            if f.metadata.get("blocks"):
                out.update(value)
            else:
                out[f.name] = value
        return out
    if isinstance(obj, dict):
        return {k: _to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_data(v) for v in obj] if isinstance(obj, list) else tuple(_to_data(v) for v in obj)
    return copy.deepcopy(obj)


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


def build_section(cls: type, data: Any, path: str, errs: list[str]) -> Any:
    """``cls`` (a recipe dataclass) from plain ``data``, strictly: every problem is appended to
    ``errs`` with its dotted path under ``path``; returns None when the section cannot be built.
    Table owners use it for blocks (a KD loss's parameters) so they load exactly like sections."""
    return _build(cls, data, path, errs)


def _build(cls: type, data: Any, path: str, errs: list[str]) -> Any:
    prefix = f"{path}." if path else ""
    if not isinstance(data, dict):
        errs.append(f"{path or 'recipe'}: expected a mapping, got {data!r}")
        return None
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    blocks_field = next((f.name for f in fields.values() if f.metadata.get("blocks")), None)
    known = [n for n in fields if n != blocks_field]
    kwargs: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for key, value in data.items():
        if key == blocks_field or key not in fields:
            if f"{prefix}{key}" in MOVED_KEYS:
                errs.append(MOVED_KEYS[f"{prefix}{key}"])
            elif blocks_field is not None:
                blocks[key] = copy.deepcopy(value)  # checked by the owner of the table the key names
            else:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f", did you mean {prefix}{close[0]}?" if close else f" (known: {', '.join(known)})"
                errs.append(f"{prefix}{key}: unknown key{hint}")
            continue
        kwargs[key] = _convert(hints[key], value, f"{prefix}{key}", errs)
    if blocks_field is not None:
        kwargs[blocks_field] = blocks
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errs.append(f"{prefix}{name}: required key is missing")
    try:
        return cls(**kwargs)
    except TypeError:  # a required key was missing: already reported above
        return None



def dotted_key_error(key: str) -> str | None:
    """None when ``key`` (``distill.ullah.temperature``, ``seed``) names a recipe value, else why
    not, with the closest existing key (what sweeps use to check the keys they vary). A key inside a
    section's blocks (``distill.<method>.<param>``) is accepted here; the block's owner checks it when
    each variant is built."""
    cls: Any = Recipe
    parts = key.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        if not dataclasses.is_dataclass(cls):
            return f"unknown recipe key {key!r}: {prefix} is a value, not a section"
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields if not f.metadata.get("blocks")]
        if part not in names:
            if any(f.metadata.get("blocks") for f in fields):
                return None  # distill.<block>.<param>: the block's owner checks it in every variant
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else f" (known: {', '.join(names)})"
            return f"unknown recipe key {key!r}{hint}"
        cls = _type_hints(cls)[part]
    if dataclasses.is_dataclass(cls):
        return f"{key!r} is a whole section; vary one of its keys ({', '.join(f.name for f in dataclasses.fields(cls))})"
    return None


RecipeCheck = Callable[["Recipe"], list[str]]


def parse_recipe(data: Any, *, source: str = "recipe", checks: Sequence[RecipeCheck] = ()) -> Recipe:
    """Build a Recipe from plain data, raising RecipeError with every problem found.

    This checks what the recipe can check alone: keys, types, and each section's ranges and
    cross-field rules. Names that live in other packages' tables (stages, engines, KD losses,
    models) and every sweep variant are checked by ``checks``; ``edgekd.stages.parse_recipe`` and
    ``edgekd.stages.load_recipe`` pass them all, and are what the CLI uses."""
    errs: list[str] = []
    recipe = _build(Recipe, data, "", errs)
    if recipe is not None:
        typed = not errs  # with type errors some values are not what the checks expect
        for check in (Recipe.errors, *checks):
            try:
                errs.extend(check(recipe))
            except Exception:  # noqa: BLE001 - a check tripping over a value already reported as mistyped
                if typed:
                    raise
    if errs or recipe is None:
        raise RecipeError(list(dict.fromkeys(errs)), source)
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
