"""Running a sweep: every variant (``edgekd.sweep.plan``) in ``runs/<name>/sweep/<variant>/``,
one at a time or several in parallel processes, then the summary table (``edgekd.sweep.report``).

Each variant is an ordinary recipe (the base recipe with the grid values set, ``sweep`` emptied). Variants share work through the stage reuse keys
(``RunDir.key``): before a stage runs, a finished stage with the same key in another variant is
copied in (large files hard-linked) instead. The key covers the recipe sections the stage reads and
its upstream stages' keys and artifacts, so a temperature sweep trains each seed's teacher and
scratch student once, and a student sweep trains each teacher once.

Artifacts (checkpoints, videos, engines) are only ever replaced by atomic renames in edgekd
(``utils.atomic``), never rewritten in place, so they are hard-linked: a hard-linked file is never
changed under another variant. Text files are copied (``metrics.jsonl`` is truncated and appended
to in place when a stage re-runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import shutil
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from edgekd.recipe import Recipe
from edgekd.sweep.plan import Variant, plan_sweep, sweep_root
from edgekd.sweep.report import stage_sections, write_summary
from edgekd.utils.atomic import atomic_dir, write_json
from edgekd.utils.cpu_clock import CpuClock

COPIED_SUFFIXES = {".json", ".jsonl", ".txt", ".md", ".csv", ".yaml", ".log"}  # copied; other files hard-linked


# ----------------------------------------------------------------------------- stage sharing


class StagePool:
    """Finds a finished stage with a given key among the variants of one sweep and copies it in.

    ``since``: only stages finished after this time qualify (``--force`` re-runs each shared stage
    once per invocation, then shares that fresh result).
    """

    def __init__(self, root: Path, since: float | None = None) -> None:
        self.root = root
        self.since = since

    def find(self, stage: str, key: str, exclude: Path) -> Path | None:
        for rec_path in sorted(self.root.glob(f"*/{stage}/stage.json")):
            src = rec_path.parent
            if src.parent.resolve() == exclude.resolve():
                continue
            if self.since is not None and rec_path.stat().st_mtime < self.since:
                continue
            try:
                if json.loads(rec_path.read_text()).get("key") == key:
                    return src
            except (OSError, json.JSONDecodeError):
                continue
        return None

    def __call__(self, rd: Any, stage: str) -> Path | None:
        """The runner's ``share`` hook: adopt a finished copy of ``stage`` into ``rd`` if one exists."""
        src = self.find(stage, rd.key(stage), rd.root)
        if src is None:
            return None
        copy_stage(src, rd.stage_dir(stage))
        return src

    @contextlib.contextmanager
    def lock(self, rd: Any, stage: str) -> Iterator[None]:
        """The runner's ``lock`` hook: an exclusive ``flock`` on ``.locks/<stage>-<key>`` in the sweep
        folder, held while the stage is looked up and run. A parallel variant that needs the same
        stage blocks here, then finds it finished and shares it, instead of training it again. (The
        kernel drops the lock if the holder dies, so a crashed variant leaves nothing stuck.)"""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{stage}-{rd.key(stage)}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def copy_stage(src: Path, dst: Path) -> None:
    """Copy a stage directory (text files copied, the rest hard-linked), swapped in atomically."""
    with atomic_dir(dst) as tmp:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if any(part.startswith(".") for part in rel.parts):
                continue  # temporaries and resume files of a stage still running
            target = tmp / rel
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix not in COPIED_SUFFIXES:
                try:
                    os.link(path, target)
                    continue
                except OSError:
                    pass  # another filesystem, or links not supported: copy
            shutil.copy2(path, target)


# ----------------------------------------------------------------------------- running


def run_sweep(recipe: Recipe, *, force: bool = False, keep_going: bool = True, jobs: int = 1) -> dict[str, Any]:
    """Run every variant (sharing stages), then write ``summary.md/json/csv`` in the sweep folder.

    ``jobs`` > 1 runs that many variants at once, each in its own process with
    ``cores // jobs`` threads (at least 1) and its output in ``<variant>/sweep.log``. Why: small
    models do not scale across threads (and under CPU steal one thread beats two), so on a 2-core
    box two 1-thread trainings finish a sweep in about half the wall time of one 2-thread run.
    Shared stages stay single: a per-stage-key lock makes the second variant wait and share.

    A variant that fails is recorded (and the sweep goes on when ``keep_going``); the summary then
    covers the variants that finished. Returns the summary."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    variants = plan_sweep(recipe)
    root = sweep_root(recipe)
    root.mkdir(parents=True, exist_ok=True)
    pool = StagePool(root, since=time.time() if force else None)
    status: dict[str, str] = {}
    clock = CpuClock.start()
    if jobs == 1:
        for i, v in enumerate(variants, 1):
            print(f"=== sweep {recipe.name}: variant {i}/{len(variants)} {v.slug}", flush=True)
            status[v.slug] = _run_variant(v, variant_stages(recipe, v), pool, force)
            if status[v.slug] != "done":
                print(f"=== variant {v.slug} {status[v.slug]}", flush=True)
                if not keep_going:
                    _write_variants(root, variants, status)
                    raise RuntimeError(f"sweep {recipe.name}: variant {v.slug} {status[v.slug]}")
            _write_variants(root, variants, status)
    else:
        _run_parallel(recipe, variants, pool, force=force, keep_going=keep_going, jobs=jobs, status=status)
    timing = {**clock.read(), "jobs": jobs}
    write_json(root / "timing.json", timing)  # this invocation only: stages shared from earlier runs cost nothing here
    print(f"sweep {recipe.name}: {clock.line()}" + (f" ({jobs} variants at a time)" if jobs > 1 else ""), flush=True)
    summary = write_summary(recipe, variants)
    failed = [s for s, st in status.items() if st != "done"]
    if failed:
        print(f"sweep {recipe.name}: {len(failed)} variant(s) failed: {', '.join(failed)}", flush=True)
    return {**summary, "failed": failed}


def _run_variant(v: Variant, stages: list[str], pool: StagePool, force: bool) -> str:
    """Run one variant's stages; ``"done"`` or ``"failed: <error>"`` (errors are kept, not raised).
    The runner is imported here, in the process that runs the variant: the parent of parallel
    workers stays free of torch/OpenVINO thread pools (see DEVELOPERS.md on forking)."""
    from edgekd.stages.runner import run_pipeline

    try:
        run_pipeline(v.recipe, stages, force=force, share=pool, lock=pool.lock)
        return "done"
    except Exception as e:  # noqa: BLE001 - one variant's failure is recorded, the sweep goes on
        traceback.print_exc()  # the whole story in the log; the status line keeps the message
        return f"failed: {type(e).__name__}: {e}"


def _worker_init(threads: int) -> None:
    """Runs first in each parallel sweep worker (a fresh ``spawn`` process, before torch is imported)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _worker_run(v: Variant, stages: list[str], pool: StagePool, force: bool, log: str) -> str:
    """One variant in a worker process, its stdout and stderr (progress bars) sent to ``log``."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        status = _run_variant(v, stages, pool, force)
        print(f"=== {v.slug}: {status}", flush=True)
    return status


def _run_parallel(recipe: Recipe, variants: list[Variant], pool: StagePool, *, force: bool, keep_going: bool,
                  jobs: int, status: dict[str, str]) -> None:
    root = sweep_root(recipe)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(f"=== sweep {recipe.name}: {len(variants)} variants, {jobs} at a time, {threads} thread(s) each; "
          f"each variant's output goes to <variant>/sweep.log", flush=True)
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold torch/OpenMP state
    common = common_stages(recipe, variants)
    if common and len(variants) > 1:
        # Stages every variant shares (data, one teacher) run first, alone, with every core: in the
        # pool one worker would train them on cores/N threads while the others wait on its lock.
        cores = max(1, os.cpu_count() or 1)
        log = root / variants[0].slug / "sweep.log"
        print(f"=== sweep {recipe.name}: stages every variant shares ({', '.join(common)}) first, {cores} thread(s) "
              f"(log: {log})", flush=True)
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_worker_init, initargs=(cores,)) as ex:
            first = ex.submit(_worker_run, variants[0], common, pool, force, str(log)).result()
        if first != "done":
            print(f"=== sweep {recipe.name}: the shared stages failed ({first}); each variant will try them", flush=True)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as ex:
        pending: dict[Future[str], Variant] = {}
        queue = list(enumerate(variants, 1))
        stop = False
        while queue or pending:
            while queue and len(pending) < jobs and not stop:
                i, v = queue.pop(0)
                log = root / v.slug / "sweep.log"
                print(f"=== sweep {recipe.name}: variant {i}/{len(variants)} {v.slug} started (log: {log})", flush=True)
                pending[ex.submit(_worker_run, v, list(recipe.sweep.stages), pool, force, str(log))] = v
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                v = pending.pop(fut)
                try:
                    status[v.slug] = fut.result()
                except Exception as e:  # noqa: BLE001 - the worker process itself died
                    status[v.slug] = f"failed: {type(e).__name__}: {e}"
                print(f"=== sweep {recipe.name}: {v.slug} {status[v.slug]}", flush=True)
                if status[v.slug] != "done" and not keep_going:
                    stop = True
            _write_variants(root, variants, status)
    if stop:
        failed = [s for s, st in status.items() if st != "done"]
        raise RuntimeError(f"sweep {recipe.name}: variant(s) failed: {', '.join(failed)}")
    deploying = deploy_phase(recipe, variants, status)
    if deploying:
        # Deployment stages run after every variant has trained, one variant at a time on every
        # core: the bench's latencies are then measured with no training on the other cores.
        cores = max(1, os.cpu_count() or 1)
        print(f"=== sweep {recipe.name}: {', '.join(recipe.sweep.deploy_stages)} of {len(deploying)} variant(s), "
              f"one at a time, {cores} thread(s), with nothing training beside them", flush=True)
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_worker_init, initargs=(cores,)) as ex:
            for v in deploying:
                log = root / v.slug / "sweep.log"
                status[v.slug] = ex.submit(_worker_run, v, variant_stages(recipe, v), pool, force, str(log)).result()
                print(f"=== sweep {recipe.name}: {v.slug} deployment {status[v.slug]}", flush=True)
                _write_variants(root, variants, status)


def deploy_phase(recipe: Recipe, variants: list[Variant], status: dict[str, str]) -> list[Variant]:
    """The variants whose deployment stages a parallel sweep runs after all training: those matching
    ``sweep.deploy_where`` whose training stages finished (a failed variant has nothing to deploy)."""
    if not [s for s in recipe.sweep.deploy_stages if s not in recipe.sweep.stages]:
        return []
    return [v for v in variants if recipe.sweep.deploys(v.overrides) and status.get(v.slug) == "done"]


def variant_stages(recipe: Recipe, v: Variant) -> list[str]:
    """``sweep.stages``, then ``sweep.deploy_stages`` when the variant matches ``sweep.deploy_where``."""
    extra = [s for s in recipe.sweep.deploy_stages if s not in recipe.sweep.stages]
    return list(recipe.sweep.stages) + (extra if recipe.sweep.deploys(v.overrides) else [])


def common_stages(recipe: Recipe, variants: list[Variant]) -> list[str]:
    """The stages of ``sweep.stages`` whose inputs no swept key touches: every variant has the same
    values in the recipe sections of the stage and of every stage upstream of it (so they all get
    the same reuse key and share one run)."""
    out = []
    for stage in recipe.sweep.stages:
        sections = stage_sections(variants[0].recipe, stage)
        if all(v.recipe.section_hash(*sorted(stage_sections(v.recipe, stage))) ==
               variants[0].recipe.section_hash(*sorted(sections)) for v in variants):
            out.append(stage)
    return out


def _write_variants(root: Path, variants: list[Variant], status: dict[str, str]) -> None:
    write_json(root / "variants.json", [{"slug": v.slug, "overrides": v.overrides, "status": status.get(v.slug, "pending")}
                                        for v in variants])
