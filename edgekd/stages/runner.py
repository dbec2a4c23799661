"""Run stages in order, reusing those whose inputs are unchanged.

Under torchrun every rank runs this loop. Stages in ``DISTRIBUTED_STAGES`` run on every rank (data
parallel); the others run on rank 0 only while the other ranks wait. Only rank 0 writes the run
manifest and stage records, and a barrier after each stage makes its files visible to every rank
before the next freshness check.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, ContextManager

import yaml

from edgekd import distributed as dist
from edgekd.recipe import Recipe
from edgekd.stages.rundir import STAGES, RunDir
from edgekd.utils.atomic import write_text

# stages that run data-parallel on every rank under torchrun (training); the rest run on rank 0
DISTRIBUTED_STAGES = {"teacher", "student_scratch", "student_kd"}


def _stage_fn(stage: str) -> Callable[[RunDir], dict[str, Any]]:
    """Import lazily so `edgekd validate` and `--help` do not pay for torch/OpenVINO imports."""
    if stage == "data":
        from edgekd.stages.data_stage import run_data
        return run_data
    if stage == "pretrain":
        from edgekd.stages.pretrain_stage import run_pretrain
        return run_pretrain
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


# share(rd, stage) -> the directory a finished stage with rd.key(stage) was copied from, or None
ShareFn = Callable[[RunDir, str], Any]
# lock(rd, stage) -> a context held while a stage is looked up in ``share`` and, if not found, run:
# sweeps running variants in parallel take a per-stage-key lock so a shared stage runs only once
LockFn = Callable[[RunDir, str], ContextManager[Any]]


def run_pipeline(recipe: Recipe, stages: Sequence[str] | None = None, *, force: bool = False,
                 share: ShareFn | None = None, lock: LockFn | None = None) -> RunDir:
    """Run ``stages`` (all by default, in pipeline order). The data stage always runs first (it is
    reused when fresh) because every other stage reads the split and the frame cache. ``share``
    (used by sweeps) may supply a stage that another run already finished with the same key;
    ``lock`` (parallel sweeps) is held from that lookup until the stage is recorded."""
    selected = list(STAGES) if stages is None else ["data", *[s for s in STAGES if s in stages and s != "data"]]
    unknown = set(stages or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)} (known: {', '.join(STAGES)})")
    rd = RunDir(recipe)
    main = dist.is_main()
    if main:
        rd.root.mkdir(parents=True, exist_ok=True)
        write_text(rd.root / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        rd.write_manifest()
    total = time.perf_counter()
    for i, stage in enumerate(selected, 1):
        tag = f"[{i}/{len(selected)}] {stage}"
        dist.barrier()  # every rank sees the previous stage's record before deciding
        if not force and rd.is_fresh(stage):
            if main:
                print(f"{tag}: reused (inputs unchanged: {rd.stage_dir(stage) / 'stage.json'})", flush=True)
            continue
        rd.key(stage)  # raises StageNotReady, naming the missing upstream stage, before any work
        with (lock(rd, stage) if lock is not None and not dist.is_distributed() else contextlib.nullcontext()):
            if share is not None and not dist.is_distributed() and (source := share(rd, stage)) is not None:
                print(f"{tag}: shared (same inputs as {source})", flush=True)
                continue
            if not main and stage not in DISTRIBUTED_STAGES:
                continue  # rank 0 runs it; this rank waits at the next barrier
            if main:
                print(f"{tag}: running" + (f" on {dist.world_size()} processes" if stage in DISTRIBUTED_STAGES
                                           and dist.is_distributed() else ""), flush=True)
            start = time.perf_counter()
            outputs = _stage_fn(stage)(rd)
            if main:
                rd.mark_done(stage, seconds=time.perf_counter() - start, outputs=outputs)
                print(f"{tag}: done in {time.perf_counter() - start:.1f} s", flush=True)
    dist.barrier()
    if main:
        print(f"run {recipe.name}: {time.perf_counter() - total:.1f} s, artifacts in {rd.root}", flush=True)
        report = rd.stage_dir("bench") / "report.md"
        if "bench" in selected and report.is_file():
            print(report.read_text())
    return rd
