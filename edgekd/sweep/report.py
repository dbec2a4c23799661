"""The summary table of a sweep, laid out like the papers' tables, with mean +/- 95% CI over seeds.

Intervals use the Student t-distribution (``edgekd.utils.stats``) over the n seeds at
``sweep.confidence`` (0.95). With one seed there is no interval ("n/a").

Rows group the variants by the swept keys a model actually depends on: a teacher row ignores
``distill.*`` and ``student.*`` keys (one teacher serves a whole temperature sweep), a scratch
student ignores ``teacher.*`` and ``distill.*``. Runs shared between variants (same stage key)
count once, so n is the number of distinct trainings, i.e. of seeds.

Layouts (``sweep.table``):

* ``ullah`` (Ullah & Munir Tables 3-6): Model | Dataset | Accuracy: scratch student, teacher(s),
  then one KD student row per configuration (e.g. "Student-KD (T = 10)"); best and runner-up
  KD rows in bold and italic, as in the paper.
* ``camarena`` (Camarena et al. Tables 3-7): Method | Student | Teacher | Dataset | Data % |
  accuracy at the early / mid / late epochs (``sweep.epoch_marks``; default 25/75/100% of the
  student's epochs) | test accuracy. Accuracy at an epoch is the best validation top-1 reached up
  to that epoch (the kept checkpoint's view); the last column is the test top-1 of the kept
  checkpoint.
* ``hu`` (Hu et al. Tables 2-4): one row per configuration (e.g. excitation type/position,
  lambda1/lambda2): parameters, top-1 and top-5 (where the stage records it) of each model.
* ``generic``: one row per configuration, test top-1 of each model.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.distill.losses import kd_loss_labels
from edgekd.recipe import Recipe
from edgekd.stages.rundir import upstream_of
from edgekd.stages.table import MODEL_ROLES, get_stage
from edgekd.sweep.plan import SEED_KEYS, sweep_root
from edgekd.utils.atomic import write_json, write_text
from edgekd.utils.stats import Stat, paired_stat

ROLE_TITLES = {"teacher": "Teacher", "student_scratch": "Student without KD", "student_kd": "Student-KD"}
_CORE_LABELS = {"distill.method": "method", "data.fraction": "data %", "teacher.model": "teacher",
                "student.model": "student", "pretrain.enabled": "SSL pretraining"}


def short_label(key: str) -> str:
    """A swept key's column label: the KD-loss registry's label for loss parameters (``T`` for
    ``distill.ullah.temperature``), a few core ones, else the key's last part."""
    return {**_CORE_LABELS, **kd_loss_labels()}.get(key, key.split(".")[-1])


# ----------------------------------------------------------------------------- statistics


# ----------------------------------------------------------------------------- reading runs


def reaches(key: str, sections: set[str]) -> bool:
    """Whether recipe key ``key`` is inside one of ``sections`` (whole sections or dotted keys)."""
    return any(key == s or key.startswith(s + ".") or s.startswith(key + ".") for s in sections)


def stage_sections(recipe: Recipe, role: str) -> set[str]:
    """Recipe sections whose values can change ``role``'s result: its own and every upstream stage's."""
    seen, todo, out = set(), [role], set()
    while todo:
        stage = todo.pop()
        if stage in seen:
            continue
        seen.add(stage)
        out.update(get_stage(stage).sections)
        todo.extend(upstream_of(recipe, stage))
    return out


@dataclass
class RoleRun:
    """What one variant's stage recorded: reuse key, outputs, per-epoch metrics."""

    key: str
    outputs: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float | None = None  # the stage's wall time
    cpu_seconds: float | None = None  # its CPU time (None in records older than the field)

    def metric(self, name: str) -> float | None:
        v = self.outputs.get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def best_val_until(self, epoch: int) -> float | None:
        """Best val top-1 over epochs 1..epoch; None when the run has not reached ``epoch``."""
        rows = [r for r in self.epochs if r.get("epoch", 0) <= epoch and "val_top1" in r]
        if not rows or max(r["epoch"] for r in rows) < epoch:
            return None
        return max(float(r["val_top1"]) for r in rows)


def read_role(run_dir: Path, role: str) -> RoleRun | None:
    rec_path = run_dir / role / "stage.json"
    if not rec_path.is_file():
        return None
    try:
        rec = json.loads(rec_path.read_text())
    except json.JSONDecodeError:
        return None
    rows = []
    metrics = run_dir / role / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut by a crash
    return RoleRun(str(rec.get("key")), dict(rec.get("outputs") or {}), rows, rec.get("seconds"), rec.get("cpu_seconds"))


# ----------------------------------------------------------------------------- grouping


@dataclass
class Group:
    """Variants that share a model's configuration; ``runs`` is keyed by stage key (dedup)."""

    role: str
    config: dict[str, Any]
    recipe: Recipe  # of the first variant in the group (for model names, dataset, epochs)
    runs: dict[str, RoleRun] = field(default_factory=dict)

    def stat(self, fn: Any, confidence: float) -> Stat:
        vals = [fn(r) for r in self.runs.values()]
        return Stat(tuple(float(v) for v in vals if v is not None), confidence)


def fresh_role(variant: Any, role: str) -> RoleRun | None:
    """The variant's finished ``role`` run if it is fresh for the variant's recipe (its key matches
    today's inputs): a run left over from an edited recipe is not reported as this recipe's result."""
    from edgekd.stages.rundir import RunDir

    run = read_role(variant.recipe.run_dir, role)
    if run is None or not RunDir(variant.recipe).is_fresh(role):
        return None
    return run


def group_runs(variants: list[Any], role: str) -> list[Group]:
    groups: dict[str, Group] = {}
    for v in variants:
        run = fresh_role(v, role)
        if run is None:
            continue
        relevant = stage_sections(v.recipe, role)
        config = {k: val for k, val in v.config.items() if reaches(k, relevant)}
        gk = json.dumps(config, sort_keys=False, default=str)
        g = groups.setdefault(gk, Group(role, config, v.recipe))
        g.runs[run.key] = run
    return list(groups.values())


def _fmt_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt_value(x) for x in v)
    return str(v)


def config_label(config: dict[str, Any]) -> str:
    return ", ".join(f"{short_label(k)} = {_fmt_value(v)}" for k, v in config.items())


def dataset_name(recipe: Recipe) -> str:
    d = recipe.data
    return "synthetic" if d.source == "synthetic" or not d.root else Path(d.root).name or str(d.root)


# ----------------------------------------------------------------------------- tables


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]  # each cell: str, or Stat (accuracy, shown in %), or ("params", Stat)
    notes: list[str] = field(default_factory=list)


def _acc(run: RoleRun) -> float | None:
    return run.metric("test_top1")


def _top5(run: RoleRun) -> float | None:
    return run.metric("test_top5")


def _params(run: RoleRun) -> float | None:
    return run.metric("params")


def ullah_table(recipe: Recipe, variants: list[Any]) -> Table:
    c = recipe.sweep.confidence
    rows: list[list[Any]] = []
    for role in ("student_scratch", "teacher"):
        for g in group_runs(variants, role):
            label = ROLE_TITLES[role] + (f" ({config_label(g.config)})" if g.config else "")
            rows.append([label, dataset_name(g.recipe), g.stat(_acc, c)])
    kd_rows = []
    for g in group_runs(variants, "student_kd"):
        label = ROLE_TITLES["student_kd"] + (f" ({config_label(g.config)})" if g.config else "")
        kd_rows.append([label, dataset_name(g.recipe), g.stat(_acc, c)])
    ranked = sorted((r for r in kd_rows if r[2].n), key=lambda r: -r[2].mean)
    for r, mark in zip(ranked, ("**", "*")):
        r[0] = f"{mark}{r[0]}{mark}"
    notes = ["Best and runner-up KD students in bold and italic, as in Ullah & Munir Tables 3-6."] if ranked else []
    return Table("Accuracy with and without knowledge distillation (Ullah & Munir Tables 3-6)",
                 ["Model", "Dataset", "Accuracy (%)"], rows + kd_rows, notes)


def _marks(recipe: Recipe, g: Group) -> dict[str, int]:
    if recipe.sweep.epoch_marks:
        return dict(recipe.sweep.epoch_marks)
    e = g.recipe.student.epochs
    return {"early": max(1, round(0.25 * e)), "mid": max(1, round(0.75 * e)), "late": e}


def camarena_table(recipe: Recipe, variants: list[Any]) -> Table:
    c = recipe.sweep.confidence
    named = {"student.model", "teacher.model", "data.fraction"}
    groups = [("KD", g) for g in group_runs(variants, "student_kd")] + \
             [("Scratch", g) for g in group_runs(variants, "student_scratch")]
    if not groups:
        return Table("Accuracy at early, mid and late training (Camarena et al. Tables 3-7)", [], [], [])
    marks = _marks(recipe, groups[0][1])
    other = any(set(g.config) - named for _, g in groups)
    cols = ["Method", "Student", "Teacher", "Dataset", "Data %"] + (["Config"] if other else []) + \
           [f"{name.capitalize()} (ep {e})" for name, e in marks.items()] + ["Test top-1 (%)"]
    order = {}
    for v in variants:
        order.setdefault(v.recipe.student.model, len(order))
    rows = []
    for method, g in sorted(groups, key=lambda mg: (order.get(mg[1].recipe.student.model, 0), mg[0] != "KD",
                                                     float(getattr(mg[1].recipe.data, "fraction", 100.0)))):
        r = g.recipe
        fraction = getattr(r.data, "fraction", None)
        row: list[Any] = [method, r.student.model, r.teacher.model if method == "KD" else "None", dataset_name(r),
                          _fmt_value(fraction) if fraction is not None else "100"]
        if other:
            row.append(config_label({k: v for k, v in g.config.items() if k not in named}) or "-")
        for e in _marks(recipe, g).values():
            row.append(g.stat(lambda run, e=e: run.best_val_until(e), c))
        row.append(g.stat(_acc, c))
        rows.append(row)
    notes = [("Early/mid/late: best validation top-1 reached up to that epoch (Camarena et al. report test accuracy "
              "at 50/150/200 of 200 epochs); Test: test top-1 of the checkpoint kept on validation.")]
    return Table("Accuracy at early, mid and late training (Camarena et al. Tables 3-7)", cols, rows, notes)


def config_table(recipe: Recipe, variants: list[Any], *, hu: bool) -> Table:
    """One row per configuration; per model its accuracy (and, for ``hu``, parameters and top-5)."""
    c = recipe.sweep.confidence
    keys = [k for k in recipe.sweep.swept_keys if k not in SEED_KEYS]
    roles = [r for r in MODEL_ROLES if r in recipe.sweep.stages]
    by_role = {r: group_runs(variants, r) for r in roles}
    has_top5 = {r: any(run.metric("test_top5") is not None for g in gs for run in g.runs.values())
                for r, gs in by_role.items()}
    cols = [short_label(k) for k in keys]
    for r in roles:
        if hu:
            cols.append(f"{ROLE_TITLES[r]} params (M)")
        cols.append(f"{ROLE_TITLES[r]} top-1 (%)")
        if hu and has_top5[r]:
            cols.append(f"{ROLE_TITLES[r]} top-5 (%)")
    rows, seen = [], set()
    for v in variants:
        ck = json.dumps(v.config, default=str)
        if ck in seen:
            continue
        seen.add(ck)
        row: list[Any] = [_fmt_value(v.config[k]) for k in keys]
        for r in roles:
            g = next((g for g in by_role[r] if all(v.config.get(k) == val for k, val in g.config.items())), None)
            empty = Stat(())
            if hu:
                row.append(("params", g.stat(_params, c) if g else empty))
            row.append(g.stat(_acc, c) if g else empty)
            if hu and has_top5[r]:
                row.append(g.stat(_top5, c) if g else empty)
        rows.append(row)
    title = "Ablations (Hu et al. Tables 2-4)" if hu else "Sweep summary"
    return Table(title, cols, rows, [])


def build_table(recipe: Recipe, variants: list[Any]) -> Table:
    style = recipe.sweep.table
    if style == "ullah":
        return ullah_table(recipe, variants)
    if style == "camarena":
        return camarena_table(recipe, variants)
    return config_table(recipe, variants, hu=style == "hu")


# ----------------------------------------------------------------------------- rendering


def _cell_text(cell: Any) -> str:
    if isinstance(cell, tuple) and cell and cell[0] == "params":
        s: Stat = cell[1]
        return f"{s.mean / 1e6:.2f}" if s.n else "-"
    if isinstance(cell, Stat):
        if not cell.n:
            return "-"
        half = cell.half
        return f"{100 * cell.mean:.2f} ± {100 * half:.2f} (n={cell.n})" if half is not None else \
            f"{100 * cell.mean:.2f} ± n/a (n=1)"
    return str(cell)


def _ci_note(confidence: float) -> str:
    pct = f"{100 * confidence:g}%"
    return (f"Values: mean ± half-width of the {pct} confidence interval over n seeds, Student t-distribution with "
            f"n-1 degrees of freedom (mean ± t(n-1) · s/√n, s the sample standard deviation); n/a when n = 1. "
            "Accuracy is video-level top-1 on the test split, in %, unless the column says otherwise.")


def render_markdown(table: Table, confidence: float) -> str:
    lines = [f"# {table.title}", "", "| " + " | ".join(table.columns) + " |",
             "| " + " | ".join("---" for _ in table.columns) + " |"]
    lines += ["| " + " | ".join(_cell_text(c) for c in row) + " |" for row in table.rows]
    lines += ["", _ci_note(confidence), *table.notes, ""]
    return "\n".join(lines)


def _cell_json(cell: Any) -> Any:
    if isinstance(cell, tuple) and cell and cell[0] == "params":
        return {"params": cell[1].to_json()}
    return cell.to_json() if isinstance(cell, Stat) else cell


def render_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    header: list[str] = []
    sample = table.rows[0] if table.rows else [""] * len(table.columns)
    for col, cell in zip(table.columns, sample):
        header += [f"{col} mean", f"{col} ci95", f"{col} n"] if _is_stat(cell) else [col]
    w.writerow(header)
    for row in table.rows:
        out: list[Any] = []
        for cell in row:
            s = cell[1] if isinstance(cell, tuple) else cell
            if isinstance(s, Stat):
                out += [f"{s.mean:.6g}" if s.n else "", f"{s.half:.6g}" if s.half is not None else "", s.n]
            else:
                out.append(cell)
        w.writerow(out)
    return buf.getvalue()


def _is_stat(cell: Any) -> bool:
    return isinstance(cell, Stat) or (isinstance(cell, tuple) and bool(cell) and cell[0] == "params")


# ----------------------------------------------------------------------------- paired evidence

PAIRS = (("student_kd", "student_scratch", "KD - scratch"), ("teacher", "student_scratch", "teacher - scratch"),
         ("student_kd", "teacher", "KD - teacher"))


def paired_differences(recipe: Recipe, variants: list[Any]) -> list[dict[str, Any]]:
    """Per configuration (the swept keys but the seeds), each pair of models' test top-1
    difference within a variant (same seeds, same data), over the variants of that configuration:
    mean and paired t-interval (``utils.stats.paired_stat``). A pair of runs is counted once even
    when several variants share both (one teacher serves every student seed)."""
    c = recipe.sweep.confidence
    groups: dict[str, dict[str, Any]] = {}
    for v in variants:
        runs = {role: fresh_role(v, role) for role in MODEL_ROLES}
        g = groups.setdefault(json.dumps(v.config, default=str), {"config": v.config, "pairs": {}})
        for a, b, label in PAIRS:
            ra, rb = runs.get(a), runs.get(b)
            if ra is None or rb is None or _acc(ra) is None or _acc(rb) is None:
                continue
            g["pairs"].setdefault(label, {})[(ra.key, rb.key)] = (_acc(ra), _acc(rb))
    out = []
    for g in groups.values():
        row: dict[str, Any] = {"config": g["config"], "label": config_label(g["config"]) or "all"}
        for label, pairs in g["pairs"].items():
            a, b = zip(*pairs.values())
            row[label] = paired_stat(list(a), list(b), c)
        if len(row) > 2:
            out.append(row)
    return out


def kd_cost(variants: list[Any]) -> list[dict[str, Any]]:
    """Per configuration: what the scratch students, the KD students and the teacher's passes
    (the teacher_outputs stage, run once and shared by every KD student that reads it) cost, in
    CPU seconds (the work, whoever else was running) and wall seconds. ``per_student`` is one KD
    student with the whole teacher pass charged to it; ``whole_run`` charges the pass once against
    all students of the configuration, which is what a sweep over seeds (or a user training several
    students from one teacher) pays."""
    groups: dict[str, dict[str, Any]] = {}
    for v in variants:
        g = groups.setdefault(json.dumps(v.config, default=str), {"config": v.config, "runs": {}})
        for stage in ("student_scratch", "student_kd", "teacher_outputs"):
            run = fresh_role(v, stage)
            if run is not None and run.seconds is not None:
                g["runs"].setdefault(stage, {})[run.key] = run
    out = []
    for g in groups.values():
        runs = g["runs"]
        if not runs.get("student_scratch") or not runs.get("student_kd"):
            continue
        row: dict[str, Any] = {"config": g["config"], "label": config_label(g["config"]) or "all"}
        for clock in ("cpu_seconds", "seconds"):
            vals = {st: [getattr(r, clock) for r in rs.values()] for st, rs in runs.items()}
            if any(x is None for xs in vals.values() for x in xs):
                continue
            scratch, kd, teacher = vals["student_scratch"], vals["student_kd"], vals.get("teacher_outputs", [])
            pass_s = sum(teacher)
            if sum(scratch) <= 0:
                continue  # nothing measurable (records of stages that did no work)
            row[clock] = {"scratch_mean": sum(scratch) / len(scratch), "kd_mean": sum(kd) / len(kd),
                          "teacher_outputs": pass_s, "n_scratch": len(scratch), "n_kd": len(kd),
                          "per_student": (sum(kd) / len(kd) + pass_s) / (sum(scratch) / len(scratch)),
                          "whole_run": (sum(kd) + pass_s) / sum(scratch) * len(scratch) / len(kd)}
        if "cpu_seconds" in row or "seconds" in row:
            out.append(row)
    return out


def render_cost(rows: list[dict[str, Any]]) -> str:
    lines = ["## What KD costs (stage times)", "",
             "| configuration | clock | scratch student | KD student | teacher passes (once) | KD / scratch, one "
             "student | KD / scratch, whole run |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for clock, name in (("cpu_seconds", "CPU s"), ("seconds", "wall s")):
            c = r.get(clock)
            if c is None:
                continue
            lines.append(f"| {r['label']} | {name} | {c['scratch_mean']:.1f} (mean of {c['n_scratch']}) | "
                         f"{c['kd_mean']:.1f} (mean of {c['n_kd']}) | {c['teacher_outputs']:.1f} | "
                         f"{c['per_student']:.2f}x | {c['whole_run']:.2f}x |")
    lines += ["", "One student: a KD student's stage plus the whole teacher pass, over a scratch student's stage. "
              "Whole run: the teacher pass counted once for all the KD students that share it. CPU seconds "
              "measure the work; wall seconds also count waiting for cores that other variants (or the host) held.",
              ""]
    return "\n".join(lines)


def _plot_paired(rows: list[dict[str, Any]], out: Path) -> None:
    """KD - scratch and teacher - scratch per configuration, with the per-seed values."""
    from edgekd.bench.plots import plot_differences

    items = []
    for r in rows:
        for label in ("KD - scratch", "teacher - scratch"):
            st = r.get(label)
            if st is None or not st.n:
                continue
            half = st.half
            items.append({"label": f"{label}" + (f" ({r['label']})" if r["label"] != "all" else ""), "mean": st.mean,
                          "lo": None if half is None else st.mean - half, "hi": None if half is None else st.mean + half,
                          "values": list(st.values)})
    if items:
        plot_differences(items, out, title="paired differences in test top-1 (mean, 95% t-interval; dots: seeds)")


def _diff_text(stat: Stat | None) -> str:
    if stat is None or not stat.n:
        return "-"
    half = stat.half
    if half is None:
        return f"{100 * stat.mean:+.1f} (n=1, no interval)"
    lo, hi = 100 * (stat.mean - half), 100 * (stat.mean + half)
    verdict = "shown" if lo > 0 or hi < 0 else "interval includes 0"
    return f"{100 * stat.mean:+.1f} [{lo:+.1f}, {hi:+.1f}] (n={stat.n}; {verdict})"


def render_paired(rows: list[dict[str, Any]], confidence: float) -> str:
    labels = [label for _, _, label in PAIRS if any(label in r for r in rows)]
    lines = ["## Paired differences (same seed, same data)", "",
             "| configuration | " + " | ".join(f"{lab} (points)" for lab in labels) + " |",
             "| --- | " + " | ".join("---" for _ in labels) + " |"]
    lines += ["| " + r["label"] + " | " + " | ".join(_diff_text(r.get(lab)) for lab in labels) + " |" for r in rows]
    lines += ["", f"Each cell: mean difference in test top-1 over the seeds, [{100 * confidence:g}% paired "
              "t-interval], from the per-seed differences between models trained on the same data with the same "
              "student seed. Where the interval includes 0 the sweep does not show a difference.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- deployed models

def deployed_rows(recipe: Recipe, variants: list[Any]) -> list[dict[str, Any]]:
    """The bench rows of every deployed variant (``sweep.deploy_stages`` with bench), one per model and
    engine, labelled with the variant's configuration: several students (``student.model`` swept)
    side by side on one accuracy-latency chart. The teacher's rows come from the first variant only
    (every variant benches the same teacher)."""
    if "bench" not in recipe.sweep.deploy_stages:
        return []
    root = sweep_root(recipe)
    out: list[dict[str, Any]] = []
    teacher_done = False
    for v in variants:
        if not recipe.sweep.deploys(v.overrides):
            continue
        path = root / v.slug / "bench" / "report.json"
        if not path.is_file():
            continue
        label = config_label({k: val for k, val in v.config.items() if k not in SEED_KEYS}) or v.slug
        rows = json.loads(path.read_text()).get("rows", [])
        for r in rows:
            if r.get("top1") is None or r.get("p50_ms") is None:
                continue
            if r["model"] == "teacher":
                if teacher_done:
                    continue
                name = "teacher"
            else:
                name = f"{r['model']} ({label})"
            out.append({**r, "model": name, "variant": v.slug})
        teacher_done = teacher_done or any(r.get("model") == "teacher" for r in rows)
    return out


def render_deployed(rows: list[dict[str, Any]]) -> str:
    lines = ["## Deployed models: test top-1 against batch-1 latency", "",
             "| model | engine | test top-1 [95% Wilson] | batch-1 p50 ms | stream ms/frame |",
             "| --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: float(r["p50_ms"])):
        lo, hi = r.get("top1_lo"), r.get("top1_hi")
        interval = "" if lo is None or hi is None else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
        stream = r.get("stream_frame_p50_ms")
        lines.append(f"| {r['model']} | {r['engine']} | {100 * r['top1']:.1f}{interval} | {float(r['p50_ms']):.3f} | "
                     f"{'-' if stream is None else f'{float(stream):.3f}'} |")
    lines += ["", "One row per model and engine of the deployed variants' `bench/report.json` (test top-1 of the "
              "engine itself, on the run's test videos; latency at the bench's threads), fastest first. The "
              "chart marks the Pareto front.", "", "![accuracy vs latency](deployed_accuracy_vs_latency.png)", ""]
    return "\n".join(lines)


def write_summary(recipe: Recipe, variants: list[Any]) -> dict[str, Any]:
    """Build the table from the variants' run folders and write summary.md/json/csv atomically."""
    root = sweep_root(recipe)
    table = build_table(recipe, variants)
    roles = [r for r in MODEL_ROLES if r in recipe.sweep.stages]
    missing = [f"{v.slug}/{r}" for v in variants for r in roles if fresh_role(v, r) is None]
    if missing:
        table.notes.append(f"Not in the table (not run, failed, or stale for this recipe): {', '.join(missing)}.")
    if recipe.sweep.deploy_stages:
        deployed = [v.slug for v in variants if recipe.sweep.deploys(v.overrides)]
        reports = [f"`{slug}/bench/report.md`" for slug in deployed if (root / slug / "bench" / "report.md").is_file()]
        table.notes.append(f"Deployed ({', '.join(recipe.sweep.deploy_stages)}): {', '.join(deployed)}"
                           + (f"; engines, latency and accuracy per engine in {', '.join(reports)}." if reports else "."))
    timing_path = root / "timing.json"
    if timing_path.is_file():  # written by run_sweep for the invocation that produced this table
        t = json.loads(timing_path.read_text())
        steal = "" if t.get("host_steal") is None else f"; the hypervisor took {t['host_steal']:.0%} of the host's CPU time"
        table.notes.append(f"Last `edgekd sweep` run: {t['wall_s'] / 60:.1f} min wall, {t['process_cpu_s'] / 60:.1f} "
                           f"min CPU on {t['cores']} cores{steal} (stages reused from earlier runs cost nothing).")
    summary = {
        "recipe": recipe.name,
        "table_style": recipe.sweep.table,
        "confidence": recipe.sweep.confidence,
        "interval": "Student t, n-1 degrees of freedom, over seeds",
        "title": table.title,
        "columns": table.columns,
        "rows": [[_cell_json(c) for c in row] for row in table.rows],
        "notes": table.notes,
        # per variant and stage: its outputs, or None when it has not run (or is stale for this recipe)
        "variants": [{"slug": v.slug, "overrides": v.overrides,
                      "roles": {r: (run.outputs if (run := fresh_role(v, r)) else None)
                                for r in (*MODEL_ROLES, "pretrain")}} for v in variants],
    }
    paired = paired_differences(recipe, variants)
    summary["paired"] = [{"config": r["config"], "label": r["label"],
                          **{lab: r[lab].to_json() for _, _, lab in PAIRS if lab in r}} for r in paired]
    markdown = render_markdown(table, recipe.sweep.confidence)
    if paired:
        markdown += "\n" + render_paired(paired, recipe.sweep.confidence)
        _plot_paired(paired, root / "paired_differences.png")
        markdown += "\n![paired differences](paired_differences.png)\n"
    cost = kd_cost(variants)
    summary["kd_cost"] = cost
    if cost:
        markdown += "\n" + render_cost(cost)
    deployed = deployed_rows(recipe, variants)
    summary["deployed"] = deployed
    if deployed:
        from edgekd.bench.plots import plot_accuracy_vs_latency

        plot_accuracy_vs_latency(deployed, root / "deployed_accuracy_vs_latency.png")
        markdown += "\n" + render_deployed(deployed)
    write_text(root / "summary.md", markdown)
    write_text(root / "summary.csv", render_csv(table))
    write_json(root / "summary.json", summary)
    return summary
