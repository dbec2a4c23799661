"""Sweeps: run every combination of a recipe's ``sweep.grid`` and summarise them in one table.

Each variant is an ordinary recipe (the base recipe with the grid values set, ``sweep`` emptied)
that runs into ``runs/<name>/sweep/<variant>/``. Variants share work through the stage reuse keys
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

import copy
import itertools
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.recipe import Recipe, RecipeError, parse_recipe
from edgekd.utils.atomic import atomic_dir, write_json
from edgekd.utils.cpu_clock import CpuClock
from edgekd.utils.hashing import stable_hash

COPIED_SUFFIXES = {".json", ".jsonl", ".txt", ".md", ".csv", ".yaml", ".log"}  # copied; other files hard-linked


@dataclass(frozen=True)
class Variant:
    """One grid point: its folder name, the values it sets (grid order) and its recipe."""

    slug: str
    overrides: dict[str, Any]
    recipe: Recipe

    @property
    def config(self) -> dict[str, Any]:
        """The overrides other than ``seed``: what identifies a row of the summary table."""
        return {k: v for k, v in self.overrides.items() if k != "seed"}


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


def sweep_root(recipe: Recipe) -> Path:
    return Path(recipe.runs_dir) / recipe.name / "sweep"


def _variant_data(recipe: Recipe, overrides: dict[str, Any], slug: str) -> dict[str, Any]:
    data = recipe.to_dict()
    data.pop("sweep")
    for key, value in overrides.items():
        set_dotted(data, key, value)
    data["name"] = slug
    data["runs_dir"] = str(sweep_root(recipe))
    return data


def _slugs(combos: list[dict[str, Any]]) -> list[str]:
    slugs, seen = [], set()
    for c in combos:
        s = variant_slug(c)
        while s in seen:  # two values that print alike (1 and "1") still get their own folders
            s = f"{s}-{stable_hash(c)[:6]}"
        seen.add(s)
        slugs.append(s)
    return slugs


def variant_errors(recipe: Recipe, raw: Any = None) -> list[str]:
    """Validate every variant recipe; each error names the variant. (``raw`` is unused: variants
    are built from the validated base recipe, so defaults and overrides are already applied.)"""
    combos = expand_grid(recipe.sweep.grid, recipe.sweep.exclude, recipe.sweep.points)
    if not combos:
        return ["sweep: sweep.exclude removes every combination of sweep.grid"]
    errs: list[str] = []
    for combo, slug in zip(combos, _slugs(combos)):
        try:
            v = parse_recipe(_variant_data(recipe, combo, slug), source=f"sweep variant {slug}")
        except RecipeError as e:
            errs += [f"sweep variant {slug}: {m}" for m in e.errors]
            continue
        errs += [f"sweep variant {slug}: {m}" for m in _mark_errors(recipe, v)]
    return errs


def _mark_errors(base: Recipe, v: Recipe) -> list[str]:
    out = []
    for mark, epoch in base.sweep.epoch_marks.items():
        if epoch > v.student.epochs:
            out.append(f"sweep.epoch_marks.{mark}: epoch {epoch} is past student.epochs ({v.student.epochs})")
    return out


def plan_sweep(recipe: Recipe) -> list[Variant]:
    """Every variant of ``recipe.sweep.grid``, validated (RecipeError lists every bad variant)."""
    if not recipe.sweep.swept_keys:
        raise ValueError(f"recipe {recipe.name!r} has no sweep.grid or sweep.points")
    errs = variant_errors(recipe)
    if errs:
        raise RecipeError(errs, f"sweep of {recipe.name}")
    combos = expand_grid(recipe.sweep.grid, recipe.sweep.exclude, recipe.sweep.points)
    return [Variant(slug, combo, parse_recipe(_variant_data(recipe, combo, slug), source=f"sweep variant {slug}"))
            for combo, slug in zip(combos, _slugs(combos))]


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


def run_sweep(recipe: Recipe, *, force: bool = False, keep_going: bool = True) -> dict[str, Any]:
    """Run every variant (sharing stages), then write ``summary.md/json/csv`` in the sweep folder.

    A variant that fails is recorded (and the sweep goes on when ``keep_going``); the summary then
    covers the variants that finished. Returns the summary."""
    from edgekd.stages.runner import run_pipeline
    from edgekd.sweep_report import write_summary

    variants = plan_sweep(recipe)
    root = sweep_root(recipe)
    root.mkdir(parents=True, exist_ok=True)
    pool = StagePool(root, since=time.time() if force else None)
    status: dict[str, str] = {}
    clock = CpuClock.start()
    for i, v in enumerate(variants, 1):
        print(f"=== sweep {recipe.name}: variant {i}/{len(variants)} {v.slug}", flush=True)
        try:
            run_pipeline(v.recipe, recipe.sweep.stages, force=force, share=pool)
            status[v.slug] = "done"
        except Exception as e:
            status[v.slug] = f"failed: {type(e).__name__}: {e}"
            print(f"=== variant {v.slug} failed: {e}", flush=True)
            if not keep_going:
                _write_variants(root, variants, status)
                raise
        _write_variants(root, variants, status)
    timing = clock.read()
    write_json(root / "timing.json", timing)  # this invocation only: stages shared from earlier runs cost nothing here
    print(f"sweep {recipe.name}: {clock.line()}", flush=True)
    summary = write_summary(recipe, variants)
    failed = [s for s, st in status.items() if st != "done"]
    if failed:
        print(f"sweep {recipe.name}: {len(failed)} variant(s) failed: {', '.join(failed)}", flush=True)
    return {**summary, "failed": failed}


def _write_variants(root: Path, variants: list[Variant], status: dict[str, str]) -> None:
    write_json(root / "variants.json", [{"slug": v.slug, "overrides": v.overrides, "status": status.get(v.slug, "pending")}
                                        for v in variants])
