"""GEMM peak micro-benchmark and its cache, the PNG plots, and end-to-end timing on synthetic videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.bench import peak as peak_mod
from edgekd.bench.e2e import eval_clip_from_file, measure_end_to_end
from edgekd.bench.metrics import roc_curve
from edgekd.bench.plots import (
    pareto_front,
    plot_accuracy_vs_latency,
    plot_differences,
    plot_latency_bars,
    plot_roc,
    plot_sweep,
    plot_training_curves,
)
from edgekd.data.clips import ClipSpec
from edgekd.data.synth import generate_dataset
from edgekd.engines.base import Engine

PNG = b"\x89PNG\r\n\x1a\n"


def test_peak_measures_each_precision_and_caches(tmp_path: Path, monkeypatch) -> None:
    res = peak_mod.measure_peak(1, n=64, min_time_s=0.01)
    assert set(res) == {"fp32", "bf16", "int8"}
    fp32 = res["fp32"]
    assert fp32.gmacs_per_s is not None and fp32.gmacs_per_s > 0
    assert fp32.gmacs_per_s == pytest.approx(fp32.n ** 3 / (fp32.best_ms / 1e3) / 1e9)
    for r in res.values():  # measured, or a reason why not
        assert (r.gmacs_per_s is not None and r.gmacs_per_s > 0) or r.notes.startswith("not measured")

    cache = tmp_path / "peak_cache.json"
    first = peak_mod.cached_peak(cache, 1, n=64, min_time_s=0.01)
    calls = []
    monkeypatch.setattr(peak_mod, "measure_peak", lambda *a, **k: calls.append(a) or {})
    again = peak_mod.cached_peak(cache, 1, n=64, min_time_s=0.01)
    assert calls == [] and again == first  # second call read the cache
    assert len(json.loads(cache.read_text())) == 1
    peak_mod.cached_peak(cache, 2, n=64, min_time_s=0.01)  # other thread count: another key, measured again
    assert len(calls) == 1


def _is_png(p: Path) -> bool:
    return p.is_file() and p.read_bytes()[:8] == PNG and p.stat().st_size > 2000


def test_plots_write_pngs(tmp_path: Path) -> None:
    hist = {"teacher": [{"epoch": 1, "train_loss": 2.0, "val_top1": 0.3}, {"epoch": 2, "train_loss": 1.5, "val_top1": 0.5}],
            "student_kd": [{"epoch": 1, "train_loss": 2.2, "val_top1": 0.2}, {"epoch": 2, "train_loss": 1.9, "val_top1": 0.4}]}
    assert _is_png(plot_training_curves(hist, tmp_path / "train.png"))
    c = roc_curve([1, 0, 1, 0], [0.9, 0.8, 0.4, 0.1])
    assert _is_png(plot_roc({"walk": (c.fpr, c.tpr, 0.75)}, tmp_path / "roc.png"))
    rows = [{"model": m, "engine": e, "top1": t, "p50_ms": p, "p90_ms": p * 1.2}
            for m, e, t, p in [("teacher", "pytorch_fp32", 0.6, 30.0), ("teacher", "openvino_int8", 0.58, 8.0),
                               ("student_kd", "pytorch_fp32", 0.5, 5.0), ("student_kd", "openvino_int8", 0.49, 1.5)]]
    assert _is_png(plot_accuracy_vs_latency(rows, tmp_path / "acc_lat.png"))
    assert _is_png(plot_latency_bars(rows, tmp_path / "bars.png"))
    sweep = [{"T": t, "alpha": a, "top1": 0.3 + 0.01 * t} for t in (1, 5, 10) for a in (0.1, 0.5)]
    assert _is_png(plot_sweep(sweep, "T", "top1", tmp_path / "sweep.png", group_key="alpha"))
    with pytest.raises(KeyError, match="row 0 has no key 'temperature'"):
        plot_sweep(sweep, "temperature", "top1", tmp_path / "bad.png")
    diffs = [{"label": "KD - scratch", "mean": 0.07, "lo": 0.03, "hi": 0.11, "values": [0.05, 0.07, 0.09]},
             {"label": "teacher - scratch", "mean": 0.02, "lo": -0.01, "hi": 0.05}]
    assert _is_png(plot_differences(diffs, tmp_path / "diffs.png", title="t"))


def test_pareto_front_keeps_the_trade_offs_and_the_y_range_does_not_exaggerate(tmp_path: Path) -> None:
    pts = [(30.0, 0.60), (8.0, 0.58), (5.0, 0.50), (1.5, 0.49), (9.0, 0.40), (2.0, 0.49)]
    assert pareto_front(pts) == [3, 2, 1, 0]  # (9 ms, 0.40) and (2 ms, 0.49) are beaten by faster, better ones
    rows = [{"model": "student_kd", "engine": e, "top1": t, "top1_lo": t - 0.01, "top1_hi": t + 0.01, "p50_ms": p}
            for e, t, p in [("openvino_fp32", 0.440, 0.8), ("openvino_int8", 0.425, 0.3)]]
    from matplotlib.figure import Figure

    captured = {}
    orig = Figure.savefig

    def spy(self, *a, **k):
        captured["ylim"] = self.axes[0].get_ylim()
        return orig(self, *a, **k)

    Figure.savefig = spy
    try:
        plot_accuracy_vs_latency(rows, tmp_path / "p.png")
    finally:
        Figure.savefig = orig
    lo, hi = captured["ylim"]
    assert hi - lo >= 0.2 - 1e-9 and lo <= 0.415 and hi >= 0.45  # 2 points apart stay 2 points apart


class _CountingEngine(Engine):
    """Returns the clip mean as a 1-logit row, so the test can check the clip it was given."""

    name = "counting"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return np.full((batch.shape[0], 2), float(batch.mean()), dtype=np.float32)

    def describe(self) -> dict:
        return {"name": self.name}


def test_end_to_end_decodes_real_files(tmp_path: Path) -> None:
    ds = generate_dataset(tmp_path / "synth", classes=["walk", "squat"], per_class=2, seed=0, num_frames=12, size=(64, 48))
    videos = sorted((tmp_path / "synth").rglob("*.avi"))[:3]
    assert videos, f"no videos written under {ds.root}"
    spec = ClipSpec(clip_len=4, frame_interval=2, crop=(24, 32))
    engine = _CountingEngine()
    res = measure_end_to_end(engine, videos, spec, (32, 40), warmup=1, repeats=2)
    assert res.videos == 3 and res.repeats == 2 and res.total.n_iters == 6
    assert engine.shapes == [(1, 3, 4, 24, 32)] * 7  # 1 warm-up + 6 timed, each the eval clip of one file
    assert res.decode_ms > 0 and res.preprocess_ms > 0 and res.infer_ms >= 0
    assert res.total.mean_ms == pytest.approx(res.decode_ms + res.preprocess_ms + res.infer_ms, rel=0.05)
    clip = eval_clip_from_file(videos[0], spec, (32, 40))
    assert clip.shape == (1, 3, 4, 24, 32) and clip.dtype == np.float32
    with pytest.raises(ValueError, match="no videos"):
        measure_end_to_end(engine, [], spec, (32, 40))
