"""The `edgekd` command: a thin layer over library functions, one subcommand per stage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

STAGE_COMMANDS = {
    "run": None,  # every stage
    "data": ("data",),
    "train": ("teacher", "student_scratch"),
    "distill": ("student_kd",),
    "export": ("export",),
    "engines": ("engines",),
    "bench": ("bench",),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekd", description="Video action recognition: recipe -> distilled edge engines.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, stages in STAGE_COMMANDS.items():
        help_ = "run the whole pipeline" if stages is None else f"run stage(s): {', '.join(stages)}"
        s = sub.add_parser(name, help=help_)
        s.add_argument("recipe", help="recipe YAML")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe key, e.g. --set distill.temperature=5 (repeatable)")
        s.add_argument("--force", action="store_true", help="re-run the stages even if their inputs are unchanged")
    v = sub.add_parser("validate", help="check a recipe without running it")
    v.add_argument("recipe")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("synth", help="write built-in synthetic action videos in the UCF101 layout")
    s.add_argument("out")
    s.add_argument("--classes", default=None, help="comma-separated action names (default: all)")
    s.add_argument("--per-class", type=int, default=12)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--frames", type=int, default=48)
    s.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from edgekd.recipe import RecipeError, load_recipe

    try:
        if args.command == "synth":
            return _synth(args)
        recipe = load_recipe(args.recipe, args.overrides)
        if args.command == "validate":
            print(f"{args.recipe}: OK (run directory {recipe.run_dir})")
            return 0
        from edgekd.stages.runner import run_pipeline

        run_pipeline(recipe, STAGE_COMMANDS[args.command], force=args.force)
        return 0
    except (RecipeError, FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f"edgekd: error: {e}", file=sys.stderr)
        return 2


def _synth(args: argparse.Namespace) -> int:
    from edgekd.data.synth import generate_dataset

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be WIDTHxHEIGHT, got {args.size!r}") from None
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    res = generate_dataset(args.out, classes=classes, per_class=args.per_class, seed=args.seed,
                           num_frames=args.frames, size=(w, h))
    print(f"wrote {res.num_train} train + {res.num_test} test videos of {len(res.classes)} classes to {res.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
