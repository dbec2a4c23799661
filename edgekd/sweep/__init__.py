"""Sweeps: every combination of a recipe's ``sweep.grid``, run with stages shared between variants
that have the same inputs, and summarised in one table like the papers' (mean +/- CI over seeds).

    plan.py     the variants, each a fully checked recipe in its own folder
    run.py      running them (one at a time or ``--jobs N`` processes), sharing stages by reuse key
    report.py   the summary table (``summary.md/json/csv``)
"""

from edgekd.sweep.plan import Variant, plan_sweep, sweep_root
from edgekd.sweep.report import write_summary
from edgekd.sweep.run import StagePool, copy_stage, run_sweep

__all__ = ["StagePool", "Variant", "copy_stage", "plan_sweep", "run_sweep", "sweep_root", "write_summary"]
