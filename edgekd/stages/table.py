"""The stage table: every pipeline stage declared once.

The runner, the run directory's reuse keys, the CLI's subcommands, sweeps, their reports and recipe
validation all read this table; none lists stages again. Adding a stage is one :class:`Stage` row
here plus its module with an entry function ``run(rd: RunDir) -> dict`` (its outputs, recorded in
``<stage>/stage.json``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["MODEL_ROLES", "STAGES", "STAGE_NAMES", "Stage", "cli_commands", "get_stage"]


@dataclass(frozen=True)
class Stage:
    """One stage: what it reads, what it writes, where it runs and how to start it."""

    name: str
    summary: str
    sections: tuple[str, ...]  # recipe sections whose values go into its reuse key
    upstream: tuple[str, ...]  # stages whose recorded keys and artifacts go into its reuse key
    entry: str  # "module:function", imported only when the stage runs (keeps `edgekd validate` light)
    commands: tuple[str, ...]  # CLI subcommands that run it (every stage also runs under `edgekd run`)
    # files downstream stages consume (globs relative to the stage directory); None: every file but
    # the bookkeeping ones (stage.json, metrics.jsonl, the resume checkpoint, hidden files)
    artifacts: tuple[str, ...] | None = None
    distributed: bool = False  # runs data-parallel on every rank under torchrun (rank 0 alone otherwise)
    model_role: bool = False  # trains a model that export, engines, bench and pack consume
    # (stage, recipe key) pairs: the stage is upstream as well when that boolean recipe key is true
    upstream_when: tuple[tuple[str, str], ...] = ()
    # recipe keys naming files outside the run directory (pretrained weights): their sha256 joins the key
    external_inputs: tuple[str, ...] = ()


_STUDENT_PRETRAIN = (("pretrain", "pretrain.student_enabled"),)  # students start from pretrain/ckpt.pt then

STAGES: tuple[Stage, ...] = (
    Stage("data", "synthetic videos, split, frame cache (and optical flow), bad-video report",
          ("data",), (), "edgekd.stages.data_stage:run_data", ("data",),
          artifacts=("split.json", "unlabeled.json")),
    Stage("pretrain", "self-supervised pretraining of the student network (when pretrain.enabled)",
          ("pretrain", "student"), ("data",), "edgekd.stages.pretrain_stage:run_pretrain", ("pretrain", "train")),
    Stage("pretrain_teacher", "self-supervised pretraining of the teacher network (pretrain.networks)",
          ("pretrain", "teacher"), ("data",), "edgekd.stages.pretrain_stage:run_pretrain_teacher", ("pretrain", "train")),
    Stage("teacher", "the teacher, trained with cross-entropy", ("teacher",), ("data",),
          "edgekd.stages.train_stage:run_teacher", ("train", "teacher"), distributed=True, model_role=True,
          upstream_when=(("pretrain_teacher", "pretrain.teacher_enabled"),), external_inputs=("teacher.pretrained",)),
    Stage("student_scratch", "the student with cross-entropy only: the baseline", ("student",), ("data",),
          "edgekd.stages.train_stage:run_student_scratch", ("train",), distributed=True, model_role=True,
          upstream_when=_STUDENT_PRETRAIN, external_inputs=("student.pretrained",)),
    Stage("teacher_outputs", "the frozen teacher's outputs on every (video, variant) KD will train on, computed once",
          ("distill.method", "distill.teacher_backend", "distill.teacher_calibration_clips", "distill.cache",
           "distill.unlabeled_ratio", "distill.transfer_variants", "student.aug_variants", "student.aug_schedule", "student.batch_size",
           "student.modality", "student.model", "student.width_mult", "student.precision", "student.channels_last"),
          ("data", "teacher"), "edgekd.stages.distill_stage:run_teacher_outputs", ("distill",)),
    Stage("student_kd", "the student distilled from the frozen teacher", ("student", "distill"),
          ("data", "teacher"),
          "edgekd.stages.distill_stage:run_student_kd", ("distill",), distributed=True, model_role=True,
          upstream_when=(*_STUDENT_PRETRAIN, ("teacher_outputs", "precomputes_teacher_outputs")),
          external_inputs=("student.pretrained",)),
    Stage("export", "simplified ONNX of every model, checked against PyTorch", ("export",),
          ("data", "teacher", "student_scratch", "student_kd"), "edgekd.stages.export_stage:run_export", ("export",)),
    Stage("engines", "inference engines of the backend table (OpenVINO, Q/DQ ONNX, TensorRT)", ("engines",),
          ("data", "export"), "edgekd.stages.engines_stage:run_engines", ("engines",)),
    Stage("bench", "accuracy with intervals, latency, SPF/FPS, scaling and plots per model and engine", ("bench",),
          ("data", "teacher", "student_scratch", "student_kd", "export", "engines"),
          "edgekd.stages.bench_stage:run_bench", ("bench",)),
)

_BY_NAME: Mapping[str, Stage] = MappingProxyType({s.name: s for s in STAGES})
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
MODEL_ROLES: tuple[str, ...] = tuple(s.name for s in STAGES if s.model_role)


def get_stage(name: str) -> Stage:
    """The table row of ``name``; an unknown name gets the closest one and the full list."""
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown stage {name!r}{hint} (stages: {', '.join(STAGE_NAMES)})") from None


def cli_commands() -> dict[str, tuple[str, ...]]:
    """``{subcommand: stages it runs, in pipeline order}`` for every stage subcommand of the CLI."""
    out: dict[str, list[str]] = {}
    for stage in STAGES:
        for cmd in stage.commands:
            out.setdefault(cmd, []).append(stage.name)
    return {cmd: tuple(stages) for cmd, stages in out.items()}


def recipe_value(recipe: Any, key: str) -> Any:
    """``recipe.a.b`` for ``key = "a.b"``."""
    value = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_table() -> None:
    """The table's own consistency, checked at import: upstream stages come earlier, names are unique."""
    seen: set[str] = set()
    for s in STAGES:
        if s.name in seen:
            raise AssertionError(f"stage {s.name!r} is declared twice")
        for up in (*s.upstream, *(u for u, _ in s.upstream_when)):
            if up not in seen:
                raise AssertionError(f"stage {s.name!r}: upstream {up!r} must be declared before it")
        seen.add(s.name)


_check_table()
