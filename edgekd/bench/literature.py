"""Ullah & Munir (J. Imaging 2023) run-time tables as data, and a comparison with this run.

Table 15 lists seconds per frame (SPF) and FPS on GPU and CPU as each paper reported them;
Table 16 scales them to the authors' 2.5 GHz CPU and 585 MHz GPU by the clock ratio. The paper
does not print the clocks it assumed for the other methods; they follow from the two tables:
``implied = reference x SPF_table16 / SPF_table15`` (about 1000 MHz for most GPU rows). Our own
rows are scaled by the same formula with the clock measured on this machine, so every row of the
comparison answers one question: how long would this take per frame at the reference clock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["LiteratureRow", "comparison_rows", "format_comparison", "implied_clock_mhz", "load_ullah_munir"]

_DATA = "ullah_munir_2023_runtime.json"
_FIELDS = ("spf_gpu", "spf_cpu", "fps_gpu", "fps_cpu")


@dataclass(frozen=True)
class LiteratureRow:
    method: str
    ref: str
    year: int
    cite: str
    table15: dict[str, float | None]
    table16: dict[str, float | None]


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return json.loads(resources.files("edgekd.bench").joinpath("data", _DATA).read_text(encoding="utf-8"))


def load_ullah_munir() -> tuple[dict[str, float], list[LiteratureRow]]:
    """``(reference_clocks {"cpu_mhz", "gpu_mhz"}, rows)`` from the shipped data file, validated."""
    raw = _raw()
    rows = []
    for i, m in enumerate(raw["methods"]):
        for table in ("table15", "table16"):
            missing = set(_FIELDS) - set(m[table])
            if missing:
                raise ValueError(f"{_DATA}: methods[{i}].{table} lacks {sorted(missing)}")
        rows.append(LiteratureRow(m["method"], m["ref"], int(m["year"]), m["cite"], dict(m["table15"]), dict(m["table16"])))
    ref = raw["reference_clocks"]
    return {"cpu_mhz": float(ref["cpu_mhz"]), "gpu_mhz": float(ref["gpu_mhz"])}, rows


def implied_clock_mhz(row: LiteratureRow, device: str, reference_mhz: float) -> float | None:
    """The clock (MHz) a method's Table 16 entry implies: reference x scaled SPF / raw SPF."""
    raw, scaled = row.table15[f"spf_{device}"], row.table16[f"spf_{device}"]
    if raw is None or scaled is None:
        return None
    return reference_mhz * scaled / raw


def _scale(spf: float | None, clock: float | None, reference: float) -> float | None:
    return None if spf is None or clock is None else spf * clock / reference


def comparison_rows(ours: list[dict[str, Any]], *, reference_cpu_mhz: float = 2500.0,
                    reference_gpu_mhz: float = 585.0) -> list[dict[str, Any]]:
    """Literature rows re-scaled to the given references, then ``ours``.

    Each of ``ours`` has ``label``, ``spf_cpu``/``cpu_mhz`` and optionally ``spf_gpu``/``gpu_mhz``
    (raw SPF and the clock it was measured at). With the paper's references the literature rows
    reproduce Table 16 up to its rounding.
    """
    paper_ref, rows = load_ullah_munir()
    out = []
    for r in rows:
        cpu_clk = implied_clock_mhz(r, "cpu", paper_ref["cpu_mhz"])
        gpu_clk = implied_clock_mhz(r, "gpu", paper_ref["gpu_mhz"])
        if r.ref == "ours":  # Ullah & Munir's own rows are measured at the reference clocks
            cpu_clk, gpu_clk = paper_ref["cpu_mhz"], paper_ref["gpu_mhz"]
        out.append({
            "method": r.method if r.ref == "ours" else f"{r.method} {r.ref}", "year": r.year,
            "source": f"Ullah & Munir {r.cite}",
            "spf_gpu": r.table15["spf_gpu"], "gpu_mhz": gpu_clk,
            "scaled_spf_gpu": _scale(r.table15["spf_gpu"], gpu_clk, reference_gpu_mhz),
            "spf_cpu": r.table15["spf_cpu"], "cpu_mhz": cpu_clk,
            "scaled_spf_cpu": _scale(r.table15["spf_cpu"], cpu_clk, reference_cpu_mhz),
        })
    for o in ours:
        out.append({
            "method": o["label"], "year": "this run", "source": o.get("source", "bench/report.json"),
            "spf_gpu": o.get("spf_gpu"), "gpu_mhz": o.get("gpu_mhz"),
            "scaled_spf_gpu": _scale(o.get("spf_gpu"), o.get("gpu_mhz"), reference_gpu_mhz),
            "spf_cpu": o.get("spf_cpu"), "cpu_mhz": o.get("cpu_mhz"),
            "scaled_spf_cpu": _scale(o.get("spf_cpu"), o.get("cpu_mhz"), reference_cpu_mhz),
        })
    for row in out:
        for dev in ("gpu", "cpu"):
            s = row[f"scaled_spf_{dev}"]
            row[f"scaled_fps_{dev}"] = 1.0 / s if s else None
    return out


def format_comparison(rows: list[dict[str, Any]], *, reference_cpu_mhz: float, reference_gpu_mhz: float) -> str:
    """Markdown table of :func:`comparison_rows`."""
    def f(v: Any, digits: int) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    def spf(v: Any) -> str:  # 4 significant digits: edge SPFs go well below 1e-4
        return "-" if v is None else f"{v:.4g}"

    head = ("| method | year | GPU SPF | GPU MHz | GPU SPF @ref | GPU FPS @ref | CPU SPF | CPU MHz | CPU SPF @ref "
            "| CPU FPS @ref |")
    lines = [
        f"Scaled by the clock ratio to {reference_gpu_mhz:.0f} MHz GPU / {reference_cpu_mhz:.0f} MHz CPU "
        "(SPF @ref = SPF x clock / reference). Literature clocks are those Ullah & Munir's Table 16 implies.",
        "", head, "| " + " | ".join("---" for _ in range(10)) + " |",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['year']} | {spf(r['spf_gpu'])} | {f(r['gpu_mhz'], 0)} | "
                     f"{spf(r['scaled_spf_gpu'])} | {f(r['scaled_fps_gpu'], 1)} | {spf(r['spf_cpu'])} | "
                     f"{f(r['cpu_mhz'], 0)} | {spf(r['scaled_spf_cpu'])} | {f(r['scaled_fps_cpu'], 1)} |")
    return "\n".join(lines)
