"""The whole check of a recipe: its own schema and ranges, every name it takes from another
package's table, and every variant of its sweep.

``edgekd.recipe`` checks what a recipe can check alone (it imports nothing but ``edgekd.utils``).
Names that live in tables owned elsewhere (stages, engines, KD losses, models) are checked here,
where those tables are visible, and so is each sweep variant, as the complete recipe it will run
as. The CLI, sweeps and tests load recipes through :func:`load_recipe` / :func:`parse_recipe`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from edgekd.recipe import (
    Recipe,
    RecipeCheck,
    RecipeError,
    apply_overrides,
    expand_grid,
    read_recipe_data,
    variant_data,
    variant_slugs,
)
from edgekd.recipe import parse_recipe as parse_schema
from edgekd.stages.table import MODEL_ROLES, STAGE_NAMES

__all__ = ["check_tables", "check_variants", "load_recipe", "parse_recipe"]


def _names(path: str, values: tuple[str, ...] | list[str], known: tuple[str, ...] | list[str], what: str) -> list[str]:
    errs = []
    for i, v in enumerate(values):
        if v not in known:
            close = difflib.get_close_matches(str(v), list(known), n=1)
            hint = f", did you mean {close[0]!r}?" if close else f" ({what}: {', '.join(known)})"
            errs.append(f"{path}[{i}]: unknown {what[:-1] if what.endswith('s') else what} {v!r}{hint}")
    return errs


def check_tables(recipe: Recipe) -> list[str]:
    """Every recipe value that names an entry of another package's table."""
    from edgekd.distill.losses import (
        recipe_errors as kd_loss_errors,  # the KD-loss registry (imports torch)
    )
    from edgekd.engines.table import engine_name_errors  # the backend table
    from edgekd.models import list_models  # the model registry

    errs: list[str] = kd_loss_errors(recipe.distill)
    errs += engine_name_errors("engines.build", recipe.engines.build, buildable=True)
    errs += engine_name_errors("bench.engines", recipe.bench.engines)
    errs += _names("sweep.stages", recipe.sweep.stages, STAGE_NAMES, "stages")
    errs += _names("sweep.deploy_stages", recipe.sweep.deploy_stages, STAGE_NAMES, "stages")
    errs += _names("engines.edge_models", recipe.engines.edge_models, MODEL_ROLES, "trained models")
    models = list_models()
    for sec in ("teacher", "student"):
        name = getattr(recipe, sec).model
        if name not in models:
            close = difflib.get_close_matches(name, models, n=1)
            errs.append(f"{sec}.model: unknown model {name!r}" + (f", did you mean {close[0]!r}?" if close else
                                                                  f" (models: {', '.join(models)})"))
    return errs + _streaming_errors(recipe)


def _streaming_errors(recipe: Recipe) -> list[str]:
    """``export.streaming`` against the models (true: every edge model streams) and the engine rows
    that run the step graph (false: none may be listed, nothing would write their file)."""
    from edgekd.engines.table import ENGINE_NAMES, get_engine
    from edgekd.models import streaming_models

    errs: list[str] = []
    if recipe.export.streaming is False:
        for path, names in (("engines.build", recipe.engines.build), ("bench.engines", recipe.bench.engines)):
            for i, name in enumerate(names):
                if name in ENGINE_NAMES and get_engine(name).stream_of is not None:
                    errs.append(f"{path}[{i}]: {name!r} runs the per-frame step graph, which export.streaming: "
                                "false does not write")
    if recipe.export.streaming is True:
        for role in recipe.engines.edge_models:
            section = "teacher" if role == "teacher" else "student"
            name = getattr(recipe, section).model
            if role in MODEL_ROLES and name not in streaming_models():
                errs.append(f"export.streaming: true needs every engines.edge_models model to stream; {role} is "
                            f"{section}.model {name!r} (models that stream: {', '.join(streaming_models())})")
    return errs


def _mark_errors(base: Recipe, v: Recipe) -> list[str]:
    out = []
    for mark, epoch in base.sweep.epoch_marks.items():
        if epoch > v.student.epochs:
            out.append(f"sweep.epoch_marks.{mark}: epoch {epoch} is past student.epochs ({v.student.epochs})")
    return out


def check_variants(recipe: Recipe) -> list[str]:
    """Every variant of the sweep grid, checked as the recipe it runs as; each error names it."""
    if not recipe.sweep.swept_keys:
        return []
    combos = expand_grid(recipe.sweep.grid, recipe.sweep.exclude, recipe.sweep.points)
    if not combos:
        return ["sweep: sweep.exclude removes every combination of sweep.grid"]
    errs: list[str] = []
    for combo, slug in zip(combos, variant_slugs(combos)):
        try:
            v = parse_schema(variant_data(recipe, combo, slug), source=f"sweep variant {slug}", checks=[check_tables])
        except RecipeError as e:
            errs += [f"sweep variant {slug}: {m}" for m in e.errors]
            continue
        errs += [f"sweep variant {slug}: {m}" for m in _mark_errors(recipe, v)]
    return errs


CHECKS: tuple[RecipeCheck, ...] = (check_tables, check_variants)


def parse_recipe(data: Any, *, source: str = "recipe") -> Recipe:
    """A recipe from plain data, fully checked (RecipeError lists every problem)."""
    return parse_schema(data, source=source, checks=CHECKS)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """A YAML recipe with ``--set`` overrides applied, fully checked."""
    return parse_recipe(apply_overrides(read_recipe_data(path), overrides or []), source=str(path))
