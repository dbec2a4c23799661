"""The variants of a sweep: every combination of ``sweep.grid`` (crossed with ``sweep.points``,
minus ``sweep.exclude``) as an ordinary, fully checked recipe that runs in its own folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.recipe import Recipe, RecipeError, expand_grid, variant_data, variant_slugs
from edgekd.stages.validate import check_variants, parse_recipe

__all__ = ["SEED_KEYS", "Variant", "plan_sweep", "sweep_root"]

# keys that repeat a configuration rather than change it: the summary's intervals are over their values
SEED_KEYS = ("seed", "student.seed", "teacher.seed")


@dataclass(frozen=True)
class Variant:
    """One grid point: its folder name, the values it sets (grid order) and its recipe."""

    slug: str
    overrides: dict[str, Any]
    recipe: Recipe

    @property
    def config(self) -> dict[str, Any]:
        """The overrides other than the seeds: what identifies a row of the summary table."""
        return {k: v for k, v in self.overrides.items() if k not in SEED_KEYS}


def sweep_root(recipe: Recipe) -> Path:
    """``runs/<name>/sweep``: where the variants, the shared-stage locks and the summary live."""
    return recipe.sweep_dir


def plan_sweep(recipe: Recipe) -> list[Variant]:
    """Every variant of ``recipe.sweep.grid``, checked (RecipeError lists every bad variant)."""
    if not recipe.sweep.swept_keys:
        raise ValueError(f"recipe {recipe.name!r} has no sweep.grid or sweep.points")
    errs = check_variants(recipe)
    if errs:
        raise RecipeError(errs, f"sweep of {recipe.name}")
    combos = expand_grid(recipe.sweep.grid, recipe.sweep.exclude, recipe.sweep.points)
    return [Variant(slug, combo, parse_recipe(variant_data(recipe, combo, slug), source=f"sweep variant {slug}"))
            for combo, slug in zip(combos, variant_slugs(combos))]
