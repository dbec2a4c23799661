"""PNG plots of a run: training curves, ROC curves, accuracy vs latency, latency bars, sweeps.

Figures are built with ``matplotlib.figure.Figure`` (the Agg canvas), never ``pyplot``: no GUI
backend, no global figure state shared between threads, and nothing to close. Every function
takes plain data and an output path and writes the file atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgekd.utils.atomic import atomic_path

__all__ = ["pareto_front", "plot_accuracy_vs_latency", "plot_differences", "plot_latency_bars", "plot_roc",
           "plot_sweep", "plot_training_curves", "read_metrics_jsonl"]


def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, out_path: Path) -> Path:
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    return out_path


def read_metrics_jsonl(path: Path) -> list[dict[str, Any]]:
    """The per-epoch rows the training loop appends (``epoch``, ``train_loss``, ``val_top1``, ...)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], out_path: Path) -> Path:
    """Training loss and validation top-1 per epoch, one line per model (teacher, scratch, KD)."""
    if not histories:
        raise ValueError("plot_training_curves: no histories given")
    fig = _figure(9.0, 3.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for label, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["train_loss"] for r in rows], marker=".", label=label)
        acc_ax.plot(epochs, [r["val_top1"] for r in rows], marker=".", label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="validation top-1", title="validation top-1", ylim=(0, 1.02))
    acc_ax.legend(fontsize=8)
    return _save(fig, out_path)


def plot_roc(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], out_path: Path, *,
             title: str = "one-vs-rest ROC") -> Path:
    """ROC curves, ``{label: (fpr, tpr, auc)}``, with the chance diagonal (Ullah & Munir Fig. 6)."""
    fig = _figure(5.2, 5.0)
    ax = fig.subplots()
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.2, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out_path)


_MODEL_COLOURS = {"teacher": "tab:blue", "student_scratch": "tab:orange", "student_kd": "tab:green"}
_MARKERS = "osD^v<>p*hX"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower latency x, higher accuracy
    y), ordered by latency: the accuracy/latency trade-offs worth deploying."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_accuracy_vs_latency(rows: Sequence[Mapping[str, Any]], out_path: Path, *, min_span: float = 0.2) -> Path:
    """Pareto chart: test top-1 (95% Wilson interval as error bars) against batch-1 p50 latency
    (log scale), one marker per model and engine (colour: model, shape: engine, in the legend, no
    labels on the points), the Pareto front as a step line. The y-range covers the intervals and at
    least ``min_span`` (20 points), so a 2-point difference is not drawn as a cliff."""
    fig = _figure(7.6, 4.8)
    ax = fig.subplots()
    models = list(dict.fromkeys(r["model"] for r in rows))
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    ys, los, his = [], [], []
    for r in rows:
        y = float(r["top1"])
        lo, hi = float(r.get("top1_lo", y)), float(r.get("top1_hi", y))
        ys.append(y)
        los.append(lo)
        his.append(hi)
        colour = _MODEL_COLOURS.get(r["model"], f"C{models.index(r['model']) % 10}")
        ax.errorbar(r["p50_ms"], y, yerr=[[max(y - lo, 0.0)], [max(hi - y, 0.0)]], fmt=_MARKERS[engines.index(
            r["engine"]) % len(_MARKERS)], color=colour, markersize=6, capsize=2, elinewidth=0.8, alpha=0.9)
    front = pareto_front([(float(r["p50_ms"]), float(r["top1"])) for r in rows])
    if len(front) > 1:
        ax.step([rows[i]["p50_ms"] for i in front], [rows[i]["top1"] for i in front], where="post", color="grey",
                linewidth=0.8, linestyle="--", label="Pareto front")
    ax.set_xscale("log")
    lo_all, hi_all = (min(los), max(his)) if rows else (0.0, 1.0)
    centre, span = (lo_all + hi_all) / 2, max(hi_all - lo_all + 0.04, min_span)
    bottom = min(max(0.0, centre - span / 2), 1.0 - span)
    ax.set_ylim(max(0.0, bottom), min(1.0, max(0.0, bottom) + span))
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_MODEL_COLOURS.get(m, f"C{i % 10}"), marker="o", linestyle="", label=m)
               for i, m in enumerate(models)]
    handles += [Line2D([], [], color="black", marker=_MARKERS[i % len(_MARKERS)], linestyle="", label=e)
                for i, e in enumerate(engines)]
    if len(front) > 1:
        handles.append(Line2D([], [], color="grey", linestyle="--", label="Pareto front"))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set(xlabel="batch-1 latency p50 (ms, log scale)", ylabel="test top-1 (95% Wilson interval)",
           title="accuracy vs latency, per model and engine")
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    return _save(fig, out_path)


def plot_differences(rows: Sequence[Mapping[str, Any]], out_path: Path, *, title: str,
                     xlabel: str = "difference in test top-1 (points)") -> Path:
    """One line per comparison (``label``): its mean difference and interval (``mean``, ``lo``,
    ``hi``, in accuracy units) as a horizontal bar, the per-seed values (``values``) as dots, and
    the zero line: an interval clear of zero is a difference the data shows."""
    if not rows:
        raise ValueError("plot_differences: nothing to plot")
    fig = _figure(7.0, 1.2 + 0.55 * len(rows))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        mean = 100 * float(r["mean"])
        lo = 100 * float(r["lo"]) if r.get("lo") is not None else mean
        hi = 100 * float(r["hi"]) if r.get("hi") is not None else mean
        colour = "tab:green" if lo > 0 else ("tab:red" if hi < 0 else "tab:grey")
        ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="s", color=colour, capsize=4, markersize=6)
        for v in r.get("values", ()):
            ax.plot(100 * float(v), y + 0.18, marker=".", color="black", alpha=0.6, linestyle="")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [str(r["label"]) for r in reversed(rows)], fontsize=8)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    return _save(fig, out_path)


def plot_latency_bars(rows: Sequence[Mapping[str, Any]], out_path: Path) -> Path:
    """Grouped bars of p50 latency per model and backend, with the p90 as the whisker top."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    fig = _figure(max(6.4, 1.6 * len(models) + 2), 4.2)
    ax = fig.subplots()
    width = 0.8 / max(len(engines), 1)
    for j, engine in enumerate(engines):
        xs, p50, err = [], [], []
        for i, model in enumerate(models):
            row = next((r for r in rows if r["model"] == model and r["engine"] == engine), None)
            if row is None:
                continue
            xs.append(i + (j - (len(engines) - 1) / 2) * width)
            p50.append(row["p50_ms"])
            err.append(max(row.get("p90_ms", row["p50_ms"]) - row["p50_ms"], 0.0))
        ax.bar(xs, p50, width=width, yerr=[[0] * len(err), err], capsize=2, label=engine)
    ax.set_xticks(range(len(models)), models)
    ax.set_yscale("log")
    ax.set(ylabel="batch-1 latency (ms, p50; whisker to p90)", title="latency per backend")
    ax.legend(fontsize=7)
    return _save(fig, out_path)


def plot_sweep(rows: Sequence[Mapping[str, Any]], x_key: str, y_key: str, out_path: Path, *,
               group_key: str | None = None, title: str | None = None) -> Path:
    """``y_key`` against ``x_key`` (e.g. test top-1 against distillation temperature T).

    ``rows`` are plain dicts, one per sweep point; ``group_key`` draws one line per value of that
    key (e.g. alpha). Rows missing a key raise, naming it and the row index.
    """
    if not rows:
        raise ValueError("plot_sweep: no rows")
    for i, r in enumerate(rows):
        for k in (x_key, y_key, *([group_key] if group_key else [])):
            if k not in r:
                raise KeyError(f"plot_sweep: row {i} has no key {k!r} (keys: {sorted(r)})")
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[group_key] if group_key else None, []).append(r)
    fig = _figure()
    ax = fig.subplots()
    for g, members in groups.items():
        pts = sorted((float(m[x_key]), float(m[y_key])) for m in members if not math.isnan(float(m[y_key])))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                label=f"{group_key}={g}" if group_key else None)
    ax.set(xlabel=x_key, ylabel=y_key, title=title or f"{y_key} vs {x_key}")
    if group_key:
        ax.legend(fontsize=8)
    return _save(fig, out_path)
