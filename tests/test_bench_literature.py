"""The shipped Ullah & Munir run-time tables parse, match cells checked against the paper, and rescale."""

from __future__ import annotations

import pytest

from edgekd.bench.literature import (
    comparison_rows,
    format_comparison,
    implied_clock_mhz,
    load_ullah_munir,
)


def _row(rows, name):
    return next(r for r in rows if r.method.startswith(name))


def test_shipped_data_parses_with_eleven_methods_plus_theirs() -> None:
    ref, rows = load_ullah_munir()
    assert ref == {"cpu_mhz": 2500.0, "gpu_mhz": 585.0}
    assert len(rows) == 12 and rows[-1].ref == "ours"
    assert all(r.cite.startswith("Table 15 row") for r in rows)
    # cells checked by hand against the paper (Table 15 / Table 16)
    off = _row(rows, "OFF")
    assert off.table15["spf_gpu"] == 0.0048 and off.table15["fps_gpu"] == 206 and off.table16["spf_gpu"] == 0.0082
    flow = _row(rows, "Optical-flow")
    assert flow.table15["spf_cpu"] == 0.18 and flow.table15["fps_cpu"] == 3.5 and flow.table16["spf_cpu"] == 0.23
    assert _row(rows, "IP-LSTM").table16["fps_gpu"] == 13.57
    theirs = rows[-1]
    assert theirs.table15 == {"spf_gpu": 0.0091, "spf_cpu": 0.0106, "fps_gpu": 110, "fps_cpu": 93}
    assert _row(rows, "STDAN").table15["spf_cpu"] is None  # '-' in the paper


def test_implied_clocks() -> None:
    _, rows = load_ullah_munir()
    # 585 x 0.0082 / 0.0048 = 999.4 MHz; TSN+TSM 585 x 0.0458 / 0.0167 = 1604 MHz; CPU 2500 x 0.23 / 0.18 = 3194
    assert implied_clock_mhz(_row(rows, "OFF"), "gpu", 585.0) == pytest.approx(999.375)
    assert implied_clock_mhz(_row(rows, "TSN"), "gpu", 585.0) == pytest.approx(1604.37, abs=0.01)
    assert implied_clock_mhz(_row(rows, "Optical-flow"), "cpu", 2500.0) == pytest.approx(3194.44, abs=0.01)
    assert implied_clock_mhz(_row(rows, "OFF"), "cpu", 2500.0) is None


def test_comparison_reproduces_table16_and_scales_ours_alike() -> None:
    _, lit = load_ullah_munir()
    ours = [{"label": "student (this run)", "spf_cpu": 0.002, "cpu_mhz": 2400.0}]
    rows = comparison_rows(ours, reference_cpu_mhz=2500.0, reference_gpu_mhz=585.0)
    assert len(rows) == 13
    for r, paper in zip(rows, lit):
        for dev in ("gpu", "cpu"):
            if paper.table16[f"spf_{dev}"] is not None:
                assert r[f"scaled_spf_{dev}"] == pytest.approx(paper.table16[f"spf_{dev}"], rel=1e-9)
    assert rows[-1]["scaled_spf_cpu"] == pytest.approx(0.002 * 2400 / 2500)
    assert rows[-1]["scaled_fps_cpu"] == pytest.approx(2500 / (0.002 * 2400))
    assert rows[-1]["scaled_spf_gpu"] is None
    # another reference clock rescales every row by the same ratio
    half = comparison_rows(ours, reference_cpu_mhz=5000.0, reference_gpu_mhz=1170.0)
    assert half[2]["scaled_spf_gpu"] == pytest.approx(rows[2]["scaled_spf_gpu"] / 2)
    assert half[-1]["scaled_spf_cpu"] == pytest.approx(rows[-1]["scaled_spf_cpu"] / 2)
    text = format_comparison(rows, reference_cpu_mhz=2500.0, reference_gpu_mhz=585.0)
    assert "| OFF [69] | 2018 | 0.0048 | 999 | 0.0082 |" in text
    assert "student (this run)" in text
