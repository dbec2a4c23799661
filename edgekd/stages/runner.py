"""Run stages in order, reusing those whose inputs are unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from edgekd.recipe import Recipe
from edgekd.stages.rundir import STAGES, RunDir
from edgekd.utils.atomic import write_text


def _stage_fn(stage: str) -> Callable[[RunDir], dict[str, Any]]:
    """Import lazily so `edgekd validate` and `--help` do not pay for torch/OpenVINO imports."""
    if stage == "data":
        from edgekd.stages.data_stage import run_data
        return run_data
    if stage in ("teacher", "student_scratch", "student_kd"):
        from edgekd.stages.train_stage import run_train
        return lambda rd: run_train(rd, stage)
    if stage == "export":
        from edgekd.stages.export_stage import run_export
        return run_export
    if stage == "engines":
        from edgekd.stages.engines_stage import run_engines
        return run_engines
    if stage == "bench":
        from edgekd.stages.bench_stage import run_bench
        return run_bench
    raise ValueError(f"unknown stage {stage!r} (known: {', '.join(STAGES)})")


def run_pipeline(recipe: Recipe, stages: Sequence[str] | None = None, *, force: bool = False) -> RunDir:
    """Run ``stages`` (all by default, in pipeline order). The data stage always runs first (it is
    reused when fresh) because every other stage reads the split and the frame cache."""
    selected = list(STAGES) if stages is None else ["data", *[s for s in STAGES if s in stages and s != "data"]]
    unknown = set(stages or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)} (known: {', '.join(STAGES)})")
    rd = RunDir(recipe)
    rd.root.mkdir(parents=True, exist_ok=True)
    write_text(rd.root / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    rd.write_manifest()
    total = time.perf_counter()
    for i, stage in enumerate(selected, 1):
        tag = f"[{i}/{len(selected)}] {stage}"
        if not force and rd.is_fresh(stage):
            print(f"{tag}: reused (inputs unchanged: {rd.stage_dir(stage) / 'stage.json'})", flush=True)
            continue
        rd.key(stage)  # raises StageNotReady, naming the missing upstream stage, before any work
        print(f"{tag}: running", flush=True)
        start = time.perf_counter()
        outputs = _stage_fn(stage)(rd)
        rd.mark_done(stage, seconds=time.perf_counter() - start, outputs=outputs)
        print(f"{tag}: done in {time.perf_counter() - start:.1f} s", flush=True)
    print(f"run {recipe.name}: {time.perf_counter() - total:.1f} s, artifacts in {rd.root}", flush=True)
    report = rd.stage_dir("bench") / "report.md"
    if "bench" in selected and report.is_file():
        print(report.read_text())
    return rd
