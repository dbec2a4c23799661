"""Run stages in order, reusing those whose inputs are unchanged.

Under torchrun every rank runs this loop. Stages whose table row is ``distributed`` run on every rank
(data parallel); the others run on rank 0 only while the other ranks wait. Only rank 0 writes the run
manifest and stage records, and a barrier after each stage makes its files visible to every rank
before the next freshness check.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Sequence
from typing import Any, ContextManager

import yaml

from edgekd.recipe import Recipe
from edgekd.stages.rundir import RunDir
from edgekd.stages.table import STAGE_NAMES, get_stage
from edgekd.utils import distributed as dist
from edgekd.utils.atomic import write_text
from edgekd.utils.cpu_clock import process_cpu_s


def _stage_fn(stage: str) -> Callable[[RunDir], dict[str, Any]]:
    """The stage's entry function from its table row, imported only now, so `edgekd validate` and
    `--help` do not pay for torch/OpenVINO imports."""
    module, _, function = get_stage(stage).entry.partition(":")
    return getattr(importlib.import_module(module), function)


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
    for s in stages or ():
        get_stage(s)  # an unknown name is an error naming the closest stage
    selected = list(STAGE_NAMES) if stages is None else ["data", *[s for s in STAGE_NAMES if s in stages and s != "data"]]
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
            distributed = get_stage(stage).distributed
            if not main and not distributed:
                continue  # rank 0 runs it; this rank waits at the next barrier
            if main:
                why = "--force" if force else rd.why_stale(stage)
                print(f"{tag}: running" + (f" on {dist.world_size()} processes" if distributed
                                           and dist.is_distributed() else "") + f" ({why})", flush=True)
            start, cpu0 = time.perf_counter(), process_cpu_s()
            outputs = _stage_fn(stage)(rd)
            if main:
                rd.mark_done(stage, seconds=time.perf_counter() - start, cpu_seconds=process_cpu_s() - cpu0,
                             outputs=outputs)
                print(f"{tag}: done in {time.perf_counter() - start:.1f} s", flush=True)
    dist.barrier()
    if main:
        print(f"run {recipe.name}: {time.perf_counter() - total:.1f} s, artifacts in {rd.root}", flush=True)
        report = rd.stage_dir("bench") / "report.md"
        if "bench" in selected and report.is_file():
            print(report.read_text())
    return rd
