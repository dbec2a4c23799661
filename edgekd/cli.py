"""The `edgekd` command: a thin layer over library functions, one subcommand per stage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _stage_commands() -> dict[str, tuple[str, ...] | None]:
    """``run`` (every stage) and one subcommand per entry of the stage table's ``commands``."""
    from edgekd.stages.table import cli_commands

    return {"run": None, **cli_commands()}


def _parser() -> argparse.ArgumentParser:
    from edgekd.engines.table import (
        ENGINES,  # the backend table: which targets and precisions bundles carry
    )

    p = argparse.ArgumentParser(prog="edgekd", description="Video action recognition: recipe -> distilled edge engines.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, stages in _stage_commands().items():
        help_ = "run the whole pipeline" if stages is None else f"run stage(s): {', '.join(stages)}"
        s = sub.add_parser(name, help=help_)
        s.add_argument("recipe", help="recipe YAML")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe key, e.g. --set distill.temperature=5 (repeatable)")
        s.add_argument("--force", action="store_true", help="re-run the stages even if their inputs are unchanged")
        if name == "bench":
            s.add_argument("--compare-literature", action="store_true",
                           help="print Ullah & Munir Tables 15-16 beside this run's KD student, scaled alike")
        if name == "data":
            s.add_argument("--estimate", action="store_true",
                           help="print the frame cache's expected size and decode time, from a sample of the "
                                "videos, and the free disk space; refuse (exit 2) if it would not fit; decode nothing")
    w = sub.add_parser("sweep", help="run every variant of the recipe's sweep.grid and write the summary table")
    w.add_argument("recipe", help="recipe YAML with a sweep section")
    w.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--force", action="store_true", help="re-run every stage once (shared stages still run once)")
    w.add_argument("--list", action="store_true", help="print the variants and their run folders, run nothing")
    w.add_argument("--report", action="store_true", help="only rebuild summary.md/json/csv from finished variants")
    w.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="run N variants at once, each with cores/N threads and its log in <variant>/sweep.log "
                        "(default: the recipe's sweep.jobs, 1 unless set; 2 on a 2-core box roughly halves a "
                        "sweep of small models)")
    v = sub.add_parser("validate", help="check a recipe without running it")
    v.add_argument("recipe")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    k = sub.add_parser("pack", help="make a deploy bundle (directory + .tar.gz) from a finished run")
    k.add_argument("run_dir", help="run directory, e.g. runs/quickstart")
    k.add_argument("--target", required=True, choices=sorted({r.bundle for r in ENGINES if r.bundle}))
    k.add_argument("--precision", choices=sorted({r.precision for r in ENGINES if r.bundle}), default=None,
                   help="cpu: fp32 (default) or int8; jetson: fp16 (default), fp32 or int8 (Q/DQ)")
    k.add_argument("--model", default="student_kd", help="which trained model to ship (default student_kd)")
    k.add_argument("--out", default=None, help="bundle directory (default RUN_DIR/deploy/<model>_<target>_<precision>)")
    d = sub.add_parser("doctor", help="print what this machine offers: engines, devices, CPU ISA, clock")
    d.add_argument("--json", action="store_true", help="print the facts as JSON")
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
    from edgekd.recipe import RecipeError
    from edgekd.stages.validate import load_recipe

    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "pack":
            return _pack(args)
        if args.command == "doctor":
            from edgekd.doctor import run_doctor

            return run_doctor(as_json=args.json)
        recipe = load_recipe(args.recipe, args.overrides)
        if args.command == "validate":
            n = f", a sweep of {len(_variants(recipe))} variants" if recipe.sweep.swept_keys else ""
            print(f"{args.recipe}: OK (run directory {recipe.run_dir}{n})")
            return 0
        if getattr(args, "estimate", False):
            from edgekd.data.estimate import check_space
            from edgekd.stages.data_stage import estimate_data

            estimate = estimate_data(recipe)
            print(estimate.report())
            check_space(estimate)  # CacheSpaceError names both numbers
            return 0
        if args.command == "sweep" or (args.command == "run" and recipe.sweep.swept_keys):
            return _sweep(recipe, args)
        if recipe.sweep.swept_keys:
            raise ValueError(f"{args.recipe} is a sweep ({len(recipe.sweep.swept_keys)} swept keys): use `edgekd sweep` "
                             "or `edgekd run`, which run every variant")
        from edgekd.stages.runner import run_pipeline
        from edgekd.utils import distributed

        distributed.init_from_env()  # under torchrun: join the process group (gloo on CPU, NCCL on GPU)
        try:
            run_pipeline(recipe, _stage_commands()[args.command], force=args.force)
        finally:
            distributed.shutdown()
        if getattr(args, "compare_literature", False):
            _print_literature(recipe.run_dir)
        return 0
    except (RecipeError, FileNotFoundError, ValueError, KeyError, RuntimeError, FloatingPointError) as e:
        print(f"edgekd: error: {e}", file=sys.stderr)
        return 2


def _variants(recipe: object) -> list:
    from edgekd.sweep import plan_sweep

    return plan_sweep(recipe)  # type: ignore[arg-type]


def _sweep(recipe: object, args: argparse.Namespace) -> int:
    from edgekd.sweep import run_sweep, sweep_root, write_summary

    variants = _variants(recipe)
    if getattr(args, "list", False):
        for v in variants:
            print(f"{v.slug}: {v.recipe.run_dir}")
        return 0
    failed: list[str] = []
    if getattr(args, "report", False):
        write_summary(recipe, variants)  # type: ignore[arg-type]
    else:
        jobs = getattr(args, "jobs", None) or recipe.sweep.jobs  # type: ignore[attr-defined]
        failed = run_sweep(recipe, force=args.force, jobs=jobs)["failed"]  # type: ignore[arg-type]
    print((sweep_root(recipe) / "summary.md").read_text())  # type: ignore[arg-type]
    return 1 if failed else 0


def _pack(args: argparse.Namespace) -> int:
    from edgekd.deploy import pack_bundle

    res = pack_bundle(args.run_dir, target=args.target, precision=args.precision, out=args.out, model=args.model)
    print(f"bundle {res.directory} ({len(res.manifest['files'])} files, {res.manifest['target']} "
          f"{res.manifest['precision']}) and {res.tarball}")
    return 0


def _print_literature(run_dir: Path) -> None:
    import json

    from edgekd.stages.bench_stage import literature_table

    report = run_dir / "bench" / "report.json"
    if not report.is_file():
        raise FileNotFoundError(f"{report} is missing: the bench stage did not write it")
    print(literature_table(json.loads(report.read_text())))


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
