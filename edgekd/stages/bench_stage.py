"""Bench stage: one table for the run, with the papers' metrics and two honest hardware scalings.

For each model (teacher, scratch student, KD student) and each engine of ``bench.engines``:

- accuracy on the test split: top-1 with its 95% Wilson interval, top-5, macro one-vs-rest ROC-AUC
  (ROC curves plotted, Ullah & Munir Fig. 6), the confusion matrix (csv) and top-1 agreement with
  the model's own PyTorch FP32 predictions;
- model-only latency at batch 1 (p50/p90/p99 after warm-up), throughput at ``bench.batch_size``,
  SPF/FPS, and end-to-end latency (decode + preprocess + inference of test videos from disk);
- scaling (a): SPF x measured clock / reference clock (the paper's method, 2500 MHz CPU);
  scaling (b): achieved GMAC/s over this machine's measured GEMM peak in the row's precision;
- streaming rows (the per-frame step graph of a model that streams): the cost of one more frame of a
  running stream beside the cost of recomputing a T-frame clip per frame with the same backend's
  clip engine, measured back to back in this stage, and their ratio;
- INT8 rows of a model with grouped/depthwise 3D convolutions: a note saying so, with those
  operations' time in the FP32 and INT8 engine where the backend can be profiled per operation.

Every row records the threads and the OpenVINO inference precision hint read back from the
compiled model (FP32 rows set ``f32`` explicitly: this CPU's plugin would otherwise run bf16).
Artifacts: ``bench/report.md`` (linking the PNG plots), ``report.json``, ``report.csv``,
``confusion/<model>__<engine>.csv``, ``literature.md``, ``peak_cache.json``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.bench.clock import measure_effective_clock, scaled_spf
from edgekd.bench.e2e import measure_end_to_end
from edgekd.bench.gpu import read_gpu_clock
from edgekd.bench.int8_ops import (
    GroupedConv3d,
    find_grouped_conv3d,
    int8_note,
    profile_grouped_conv3d,
)
from edgekd.bench.latency import measure_latency
from edgekd.bench.literature import comparison_rows, format_comparison
from edgekd.bench.metrics import (
    confusion_csv,
    confusion_matrix,
    macro_ovr_auc,
    top_k_accuracy,
    wilson_interval,
)
from edgekd.bench.peak import cached_peak
from edgekd.engines.base import Engine
from edgekd.engines.rows import EngineSkipped
from edgekd.engines.table import ENGINES, EngineRow, get_engine
from edgekd.models.complexity import count_macs, count_params
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir
from edgekd.stages.table import MODEL_ROLES
from edgekd.train.checkpoint import load_checkpoint
from edgekd.utils.atomic import atomic_path, write_json, write_text
from edgekd.utils.stats import paired_bootstrap

COLUMNS = ("model", "engine", "precision", "hint", "threads", "top1", "top1_ci95", "top5", "macro_auc", "agree_fp32",
           "agree_fp32_decided", "logit_delta_p50",
           "p50_ms", "p90_ms", "p99_ms", "throughput_clips_s", "spf", "fps", "scaled_spf", "scaled_fps",
           "gmacs_per_s", "efficiency", "e2e_p50_ms", "e2e_spf", "e2e_fps")
def _open_engine(rd: RunDir, role: str, name: str, threads: int) -> tuple[Engine, Path]:
    """The backend table's row ``name`` for ``role``, opened; its artifact is what the size column
    reports. A row this machine cannot run, or whose engine was not built, raises EngineSkipped."""
    row = get_engine(name)
    ok, why = row.status()
    if not ok:
        raise EngineSkipped(why)
    path = row.path(rd.root, role)
    if not path.is_file():
        why = f"{path} is missing"
        built = _engines_record(rd, role, name)
        if built.get("status") == "skipped":
            raise EngineSkipped(f"{why}: the engines stage skipped it ({built['reason']})")
        if row.build is not None or row.needs:
            builders = [row.name] if row.build is not None else list(row.needs)
            why += f": add {', '.join(builders)} to engines.build" + (" and engines.edge_models" if row.edge else "")
        raise EngineSkipped(why)
    return row.loader()(path, threads=threads, name=name), path


def _engines_record(rd: RunDir, role: str, name: str) -> dict[str, Any]:
    """What the engines stage recorded for ``role``/``name`` (``engines/engines.json``), or {}."""
    import json

    from edgekd.stages.engines_stage import REPORT

    report = rd.root / "engines" / REPORT  # the engines stage's directory
    return json.loads(report.read_text()).get(role, {}).get(name, {}) if report.is_file() else {}


def _size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def engine_probs(engine: Engine, clips: np.ndarray, batch: int) -> np.ndarray:
    """Video-level probabilities: clips is (N, K, C, T, H, W); the K clips' softmaxes are averaged."""
    return engine_outputs(engine, clips, batch)[0]


def engine_outputs(engine: Engine, clips: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, logits)`` per video: the K clips' softmaxes averaged, and their logits averaged."""
    n, k = clips.shape[:2]
    flat = clips.reshape(n * k, *clips.shape[2:])
    logits = np.concatenate([engine.infer(flat[i:i + batch]) for i in range(0, len(flat), batch)]).astype(np.float64)
    probs = _softmax(logits).reshape(n, k, -1).mean(1)
    return probs, logits.reshape(n, k, -1).mean(1)


def accuracy_block(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1 (+ Wilson 95% interval), top-5, macro one-vs-rest AUC and ROC curves of one engine."""
    correct = int((probs.argmax(1) == labels).sum())
    lo, hi = wilson_interval(correct, len(labels))
    auc = macro_ovr_auc(probs, labels)
    return {"top1": correct / len(labels) if len(labels) else math.nan, "top1_lo": lo, "top1_hi": hi,
            "top5": top_k_accuracy(probs, labels, 5), "macro_auc": auc["macro_auc"],
            "auc_classes": len(auc["scored"]), "auc_undefined": auc["undefined"], "curves": auc["curves"],
            "per_class_auc": auc["per_class"]}


def run_bench(rd: RunDir) -> dict[str, Any]:
    cfg = rd.recipe.bench
    ctx = DataContext.load(rd)
    out = rd.stage_dir("bench")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    clips, labels = ctx.eval_array("test", clips_per_video=rd.recipe.data.eval_clips)
    if clips.ndim == 5:
        clips = clips[:, None]
    clock = measure_effective_clock()
    mhz = clock.effective_mhz or clock.nominal_mhz
    gpu = read_gpu_clock()
    peak = cached_peak(out / "peak_cache.json", cfg.threads) if cfg.peak_gemm else {}
    videos = [ctx.split.path(it) for it in ctx.split.subset("test")[: cfg.e2e_videos]]
    one, batch = clips[:1, 0], clips[: cfg.batch_size, 0]
    if len(batch) < cfg.batch_size:  # small test sets: repeat clips to fill the throughput batch
        batch = np.concatenate([batch] * math.ceil(cfg.batch_size / len(batch)))[: cfg.batch_size]
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    roc: dict[str, dict[str, Any]] = {}
    classes = list(ctx.split.classes)
    for role in MODEL_ROLES:
        model = load_checkpoint(rd.stage_dir(role) / "ckpt.pt").build()
        params, macs = count_params(model), count_macs(model, ctx.input_shape)
        grouped = find_grouped_conv3d(model, ctx.input_shape)
        for name in cfg.engines:
            try:
                engine, artifact = _open_engine(rd, role, name, cfg.threads)
            except EngineSkipped as exc:
                skipped[f"{role}/{name}"] = str(exc)
                continue
            probs, logits = engine_outputs(engine, clips, cfg.batch_size)
            acc = accuracy_block(probs, labels)
            preds = probs.argmax(1)
            cm = confusion_matrix(labels, preds, len(classes))
            write_text(out / "confusion" / f"{role}__{name}.csv", confusion_csv(cm, classes))
            roc.setdefault(role, acc)  # ROC curves of the first engine that ran (PyTorch FP32 by default)
            row = _timing_row(engine, one, batch, cfg, ctx, videos, macs, mhz, peak.get(get_engine(name).peak))
            row.update(_engine_notes(rd, role, get_engine(name), engine, one, grouped, cfg))
            rows.append({
                "model": role, "engine": name, **row,
                "top1": acc["top1"], "top1_lo": acc["top1_lo"], "top1_hi": acc["top1_hi"], "top5": acc["top5"],
                "macro_auc": acc["macro_auc"], "auc_classes": acc["auc_classes"], "n_test": len(labels),
                "size_mb": _size_mb(artifact), "params_m": params / 1e6, "gmacs": macs / 1e9, "pred": preds.tolist(),
                "logits": logits,
            })
            print(f"[bench] {role:16s} {name:17s} top-1 {acc['top1']:.3f}  p50 {row['p50_ms']:8.2f} ms  "
                  f"FPS {row['fps']:8.1f}  e2e p50 {row.get('e2e_p50_ms', math.nan):8.2f} ms")
    paired = paired_evidence(rows, labels)
    _agreement(rows)
    meta = _meta(rd, ctx, labels, clips, clock, mhz, gpu, peak, skipped, len(videos))
    meta["paired"] = paired
    plots = _plots(rd, out, rows, roc, classes, paired)
    write_reports(out, rows, meta, plots)
    return {"rows": len(rows), "clock_mhz": mhz, "skipped": skipped, "plots": sorted(plots)}


def _timing_row(engine: Engine, one: np.ndarray, batch: np.ndarray, cfg: Any, ctx: DataContext,
                videos: list[Path], macs: int, mhz: float | None, peak: Any) -> dict[str, Any]:
    """Latency, throughput, SPF/FPS, both scalings and end-to-end timing of one engine."""
    lat = measure_latency(lambda: engine.infer(one), warmup=cfg.warmup, min_time_s=cfg.min_time_s)
    thr = measure_latency(lambda: engine.infer(batch), warmup=max(1, cfg.warmup // 2), min_time_s=cfg.min_time_s,
                          min_iters=3)
    desc = engine.describe()
    clip_len = ctx.spec.clip_len
    spf = lat.p50_ms / 1000.0 / clip_len
    s_spf = scaled_spf(spf, mhz, cfg.reference_cpu_mhz) if mhz else math.nan
    gmacs_s = macs / 1e9 / (lat.p50_ms / 1000.0)
    peak_rate = getattr(peak, "gmacs_per_s", None)
    row = {
        "precision": str(desc.get("precision", "")), "hint": str(desc.get("inference_precision_hint", "")),
        "hint_note": str(desc.get("notes", "")), "threads": desc.get("threads"),
        "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms, "p99_ms": lat.p99_ms, "n_iters": lat.n_iters, "warmup": lat.warmup,
        "throughput_clips_s": len(batch) / (thr.mean_ms / 1000.0),
        "spf": spf, "fps": 1.0 / spf, "scaled_spf": s_spf, "scaled_fps": 1.0 / s_spf,
        "gmacs_per_s": gmacs_s, "peak_gmacs_per_s": peak_rate if peak_rate else math.nan,
        "efficiency": gmacs_s / peak_rate if peak_rate else math.nan,
    }
    if videos:
        e2e = measure_end_to_end(engine, videos, ctx.spec, ctx.recipe.data.resize, warmup=1)
        row.update({"e2e_p50_ms": e2e.total.p50_ms, "e2e_p90_ms": e2e.total.p90_ms, "e2e_p99_ms": e2e.total.p99_ms,
                    "e2e_decode_ms": e2e.decode_ms, "e2e_preprocess_ms": e2e.preprocess_ms,
                    "e2e_infer_ms": e2e.infer_ms, "e2e_spf": e2e.total.p50_ms / 1000.0 / clip_len,
                    "e2e_fps": clip_len / (e2e.total.p50_ms / 1000.0)})
    return row


def _engine_notes(rd: RunDir, role: str, row: EngineRow, engine: Engine, one: np.ndarray, grouped: GroupedConv3d,
                  cfg: Any) -> dict[str, Any]:
    """Streaming rows: per-frame cost beside recomputing the clip per frame. INT8 rows of a model
    with grouped/depthwise 3D convolutions: what INT8 did for them (``bench.int8_ops``)."""
    out: dict[str, Any] = {}
    if row.stream_of is not None:
        out.update(stream_timing(rd, role, row, engine, one, cfg))
    if row.precision == "int8" and grouped.layers:
        fp32 = next((r for r in ENGINES if r.backend == row.backend and r.precision == "fp32" and r.stream_of is None),
                    None)
        measured = None if fp32 is None else profile_grouped_conv3d(
            row.backend, fp32.path(rd.root, role), row.path(rd.root, role), one, threads=cfg.threads)
        out["int8_note"] = int8_note(grouped, measured)
        if measured is not None:
            out["int8_grouped_conv3d"] = measured
    return out


def stream_timing(rd: RunDir, role: str, row: EngineRow, engine: Any, one: np.ndarray, cfg: Any) -> dict[str, Any]:
    """One more frame of a running stream (``engine.push``) against recomputing a T-frame clip per
    frame with the clip row of the same backend (``row.stream_of``): both timed here, back to back,
    so their ratio is one run's (a single absolute time on a shared machine means little)."""
    frame = np.ascontiguousarray(one[:, :, 0])
    engine.reset()
    step = measure_latency(lambda: engine.push(frame), warmup=cfg.warmup, min_time_s=cfg.min_time_s)
    out: dict[str, Any] = {"stream_frame_p50_ms": step.p50_ms, "stream_frame_p90_ms": step.p90_ms,
                           "stream_clip_row": row.stream_of, "stream_window": int(one.shape[2])}
    try:
        clip_engine, _ = _open_engine(rd, role, row.stream_of, cfg.threads)
    except EngineSkipped as exc:
        return {**out, "stream_note": f"no clip engine to compare with ({row.stream_of}: {exc})"}
    clip = measure_latency(lambda: clip_engine.infer(one), warmup=cfg.warmup, min_time_s=cfg.min_time_s)
    return {**out, "clip_per_frame_p50_ms": clip.p50_ms, "stream_vs_clip": step.p50_ms / clip.p50_ms}


PAIRS = (("student_kd", "student_scratch"), ("teacher", "student_scratch"), ("student_kd", "teacher"))


def paired_evidence(rows: list[dict[str, Any]], labels: np.ndarray) -> dict[str, Any]:
    """Test top-1 differences between this run's models on the same test videos, each with a
    paired bootstrap interval (``utils.stats.paired_bootstrap``): what one run can say about
    whether distillation paid. Uses each model's PyTorch FP32 predictions (else its first engine)."""
    preds: dict[str, np.ndarray] = {}
    for r in rows:
        if r["model"] not in preds or r["engine"] == "pytorch_fp32":
            preds[r["model"]] = np.asarray(r["pred"])
    out = {}
    for a, b in PAIRS:
        if a in preds and b in preds:
            out[f"{a} - {b}"] = paired_bootstrap(preds[a] == labels, preds[b] == labels)
    return out


def _agreement(rows: list[dict[str, Any]]) -> None:
    """Agreement of each engine with the model's own PyTorch FP32 run (``pred``/``logits`` dropped).

    ``agree_fp32``: share of test videos with the same top-1. On a barely trained model many
    videos have near-tied logits, and any rounding (bf16, int8) flips them: that measures ties, not
    the engine. So each row also reports its logit error against FP32 (``logit_delta_p50``, the
    median over videos of the largest per-class |delta|) and ``agree_fp32_decided``: agreement over
    the videos whose FP32 top-1 margin exceeds twice that median error (``n_decided`` of them),
    where a flip means the engine's error was unusually large, not that the video was a toss-up."""
    ref = {r["model"]: (np.asarray(r["pred"]), r["logits"]) for r in rows if r["engine"] == "pytorch_fp32"}
    for row in rows:
        pred, logits = np.asarray(row.pop("pred")), row.pop("logits")
        base = ref.get(row["model"])
        if base is None:
            row.update(agree_fp32=math.nan, logit_delta_p50=math.nan, agree_fp32_decided=math.nan, n_decided=0)
            continue
        row["agree_fp32"] = float(np.mean(pred == base[0]))
        delta = np.abs(logits - base[1]).max(axis=1)
        top2 = np.sort(base[1], axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        row["logit_delta_p50"] = float(np.median(delta))
        decided = margin > 2 * row["logit_delta_p50"]
        row["n_decided"] = int(decided.sum())
        row["agree_fp32_decided"] = float(np.mean(pred[decided] == base[0][decided])) if decided.any() else math.nan


def _meta(rd: RunDir, ctx: DataContext, labels: np.ndarray, clips: np.ndarray, clock: Any, mhz: float | None,
          gpu: Any, peak: dict[str, Any], skipped: dict[str, str], n_videos: int) -> dict[str, Any]:
    cfg = rd.recipe.bench
    return {
        "threads": cfg.threads, "batch_size": cfg.batch_size, "warmup": cfg.warmup, "clip_len": ctx.spec.clip_len,
        "input_shape": list(ctx.input_shape), "test_videos": len(labels), "eval_clips": int(clips.shape[1]),
        "e2e_videos": n_videos, "classes": list(ctx.split.classes),
        "clock": {**clock.to_dict(), "used_mhz": mhz,
                  "used": "effective (measured)" if clock.effective_mhz else "nominal (/proc/cpuinfo)",
                  "reference_mhz": cfg.reference_cpu_mhz},
        "gpu_clock": {**gpu.to_dict(), "reference_mhz": cfg.reference_gpu_mhz},
        "peak": {p: r.to_dict() for p, r in peak.items()},
        "skipped_engines": skipped,
        "accuracy_ci": "95% Wilson score interval of top-1 (binomial, n = test videos)",
    }


def _plots(rd: RunDir, out: Path, rows: list[dict[str, Any]], roc: dict[str, dict[str, Any]],
           classes: list[str], paired: dict[str, Any]) -> dict[str, str]:
    """Write the PNGs; returns {title: file name}. Plotting never fails the stage (errors are reported)."""
    from edgekd.bench.plots import (
        plot_accuracy_vs_latency,
        plot_differences,
        plot_latency_bars,
        plot_roc,
        plot_training_curves,
        read_metrics_jsonl,
    )

    made: dict[str, str] = {}
    histories = {role: read_metrics_jsonl(rd.stage_dir(role) / "metrics.jsonl") for role in MODEL_ROLES
                 if (rd.stage_dir(role) / "metrics.jsonl").is_file()}
    if histories:
        made["training curves"] = plot_training_curves(histories, out / "training_curves.png").name
    for role, acc in roc.items():
        curves = {classes[k]: (c.fpr, c.tpr, acc["per_class_auc"][k]) for k, c in acc["curves"].items()}
        if curves:
            made[f"ROC {role}"] = plot_roc(curves, out / f"roc_{role}.png",
                                           title=f"{role}: one-vs-rest ROC (macro AUC {acc['macro_auc']:.3f})").name
    if rows:
        made["accuracy vs latency"] = plot_accuracy_vs_latency(rows, out / "accuracy_vs_latency.png").name
        made["latency per backend"] = plot_latency_bars(rows, out / "latency_bars.png").name
    if paired:
        items = [{"label": name, "mean": p["mean"], "lo": p["lo"], "hi": p["hi"]} for name, p in paired.items()]
        made["paired differences"] = plot_differences(
            items, out / "paired_differences.png",
            title=f"test top-1 differences ({next(iter(paired.values()))['n']} test videos, 95% paired bootstrap)").name
    return made


def _fmt(v: Any, col: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if col in ("top1", "top5", "agree_fp32", "agree_fp32_decided", "macro_auc", "efficiency"):
            return f"{v:.3f}"
        if col == "logit_delta_p50":
            return f"{v:.3g}"
        if col in ("spf", "scaled_spf", "e2e_spf"):
            return f"{v:.5f}"
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _cell(row: dict[str, Any], col: str) -> str:
    if col == "top1_ci95":
        lo, hi = row.get("top1_lo", math.nan), row.get("top1_hi", math.nan)
        return "-" if math.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]"
    return _fmt(row.get(col), col)


def format_table(rows: list[dict[str, Any]], cols: tuple[str, ...] = COLUMNS) -> str:
    header = "| " + " | ".join(cols) + " |"
    sep = "| " + " | ".join("---" for _ in cols) + " |"
    body = ["| " + " | ".join(_cell(r, c) for c in cols) + " |" for r in rows]
    return "\n".join([header, sep, *body])


def literature_table(report: dict[str, Any], role: str = "student_kd") -> str:
    """Ullah & Munir Table 15/16 beside this run's ``role`` rows, all scaled by the clock ratio."""
    meta = report["meta"]
    mhz = meta["clock"]["used_mhz"]
    ours = [{"label": f"{role} {r['engine']} (this run)", "spf_cpu": r["spf"], "cpu_mhz": mhz,
             "source": "bench/report.json"} for r in report["rows"] if r["model"] == role]
    ref_cpu, ref_gpu = meta["clock"]["reference_mhz"], meta["gpu_clock"]["reference_mhz"]
    table = format_comparison(comparison_rows(ours, reference_cpu_mhz=ref_cpu, reference_gpu_mhz=ref_gpu),
                              reference_cpu_mhz=ref_cpu, reference_gpu_mhz=ref_gpu)
    gpu = meta["gpu_clock"]
    gpu_note = (f"GPU: {gpu['name']} SM clock {gpu['sm_mhz']} MHz (NVML); no GPU engine rows in this run."
                if gpu["available"] else f"GPU: {gpu['reason']}; this run has CPU rows only.")
    return "\n".join([
        f"# Ullah & Munir run-time comparison ({role})", "",
        f"This run's CPU SPF is the batch-1 p50 model-only latency / {meta['clip_len']} frames at "
        f"{meta['threads']} thread(s), measured at {mhz:.0f} MHz ({meta['clock']['used']}). {gpu_note} "
        "FPS @ref = 1 / SPF @ref (the paper's printed FPS columns are not always 1/SPF). "
        f"Input here: {meta['input_shape']} (C, T, H, W); the paper's is 16x112x112 (their C3D student, UCF101).", "",
        table, "",
    ])


def write_reports(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any], plots: dict[str, str]) -> None:
    report = {"meta": meta, "rows": rows}
    write_json(out / "report.json", report)
    if rows:
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        with atomic_path(out / "report.csv") as tmp:
            tmp.write_text(buf.getvalue())
        write_text(out / "literature.md", literature_table(report))
    write_text(out / "report.md", _markdown(rows, meta, plots))


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any], plots: dict[str, str]) -> str:
    c, g = meta["clock"], meta["gpu_clock"]
    gpu_clock = f"{g['sm_mhz']} MHz SM ({g['name']}, NVML)" if g["available"] else g["reason"]
    peaks = ", ".join(f"{p} {r['gmacs_per_s']:.0f}" if r["gmacs_per_s"] else f"{p} n/a ({r['notes']})"
                      for p, r in meta["peak"].items()) or "not measured (bench.peak_gemm: false)"
    md = [
        "# edgekd benchmark report", "",
        f"Test videos: {meta['test_videos']} ({meta['eval_clips']} clip(s) each), input {meta['input_shape']} "
        f"(C, T, H, W), {meta['threads']} CPU thread(s) (column `threads` is read back from each engine).", "",
        "## How to read the columns", "",
        f"- `top1_ci95`: {meta['accuracy_ci']}. `macro_auc`: mean one-vs-rest ROC-AUC over the classes present "
        "in the test set (ties count one half). `agree_fp32`: share of test videos whose top-1 equals the same "
        "model's PyTorch FP32 top-1. `logit_delta_p50`: median over videos of the largest |logit - FP32 logit|; "
        "`agree_fp32_decided`: agreement over the videos whose FP32 top-1 margin exceeds twice that (a barely trained "
        "model has near-ties that any rounding flips). Confusion matrices: `confusion/<model>__<engine>.csv` (rows true, columns predicted).",
        f"- Latency is model-only, batch 1, p50/p90/p99 over timed calls after {meta['warmup']} warm-up calls; "
        f"throughput is batch {meta['batch_size']}. SPF = p50 / {meta['clip_len']} frames; FPS = 1/SPF.",
        "- `hint` is OpenVINO's INFERENCE_PRECISION_HINT read back from the compiled model. FP32 and INT8 rows set "
        "f32 explicitly (this CPU's plugin defaults to bf16); `openvino_bf16` is the FP32 IR with hint bf16.",
        f"- Scaling (a), clock ratio (Ullah & Munir 4.5): scaled SPF = SPF x {c['used_mhz']:.0f} MHz / "
        f"{c['reference_mhz']:.0f} MHz (clock used: {c['used']}; {c['method']}, nominal {c['nominal_mhz']} MHz). "
        f"GPU clock: {gpu_clock}; reference "
        f"{g['reference_mhz']:.0f} MHz.",
        f"- Scaling (b), efficiency = achieved GMAC/s (GMACs per clip / batch-1 p50) / this machine's peak GEMM "
        f"GMAC/s in the row's precision (FP32 rows: fp32; openvino_bf16: bf16; openvino_int8: int8). Peaks "
        f"(GEMM micro-benchmark, cached in peak_cache.json): {peaks} GMAC/s.",
        f"- End to end (`e2e_*`): {meta['e2e_videos']} test video file(s) decoded from disk, resized, cropped, "
        "normalised and inferred, per video; e2e SPF uses the same frame denominator as SPF.", "",
        format_table(rows), "",
    ]
    if meta["skipped_engines"]:
        md += ["Skipped engines:", "", *[f"- {k}: {v}" for k, v in meta["skipped_engines"].items()], ""]
    md += _streaming_section(rows) + _int8_section(rows)
    e2e_rows = [r for r in rows if "e2e_p50_ms" in r]
    if e2e_rows:
        md += ["## End-to-end breakdown (mean ms per video)", "",
               "| model | engine | decode | preprocess | inference | e2e p50 | e2e p90 | e2e p99 |",
               "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {r['model']} | {r['engine']} | {r['e2e_decode_ms']:.2f} | {r['e2e_preprocess_ms']:.2f} | "
               f"{r['e2e_infer_ms']:.2f} | {r['e2e_p50_ms']:.2f} | {r['e2e_p90_ms']:.2f} | {r['e2e_p99_ms']:.2f} |"
               for r in e2e_rows]
        md.append("")
    if meta.get("paired"):
        md += ["## Did distillation pay? (this run, paired over the test videos)", "",
               "| comparison | difference in top-1 (points) | 95% interval | videos only the first gets right | "
               "only the second |", "| --- | --- | --- | --- | --- |"]
        for name, p in meta["paired"].items():
            verdict = "" if p["lo"] > 0 or p["hi"] < 0 else " (includes 0)"
            md.append(f"| {name} | {100 * p['mean']:+.1f} | [{100 * p['lo']:+.1f}, {100 * p['hi']:+.1f}]{verdict} | "
                      f"{p['a_only']} | {p['b_only']} |")
        md += ["", f"Paired bootstrap over the {next(iter(meta['paired'].values()))['n']} test videos (each model's "
               "PyTorch FP32 predictions). One run's interval covers test-set sampling only, not training "
               "randomness; a sweep over student seeds gives the paired interval over seeds.", ""]
    if rows:
        md += ["Literature comparison (Ullah & Munir Tables 15-16): [literature.md](literature.md)", ""]
    if plots:
        md += ["## Plots", "", *[f"- [{title}]({name})" for title, name in plots.items()], ""]
        md += [f"![{title}]({name})" for title, name in plots.items()]
        md.append("")
    return "\n".join(md)


def _streaming_section(rows: list[dict[str, Any]]) -> list[str]:
    stream = [r for r in rows if "stream_frame_p50_ms" in r]
    if not stream:
        return []
    md = ["## Streaming: per-frame cost", "",
          "A streaming row runs the model's per-frame step graph with its state carried between frames (the "
          "deploy runtime's `--stream`). `stream ms/frame`: one more frame of a running stream, batch 1, p50. "
          "`clip ms/frame`: recomputing the last T frames as a clip for every new frame with the same backend's "
          "clip engine (one clip inference per frame), p50. Both are measured back to back in this stage; the "
          "ratio is the figure to compare across machines.", "",
          "| model | engine | clip engine | T | stream ms/frame | clip ms/frame | ratio |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in stream:
        clip = r.get("clip_per_frame_p50_ms")
        ratio = f"{r['stream_vs_clip']:.3f} (1/{1 / r['stream_vs_clip']:.1f})" if clip else r.get("stream_note", "-")
        md.append(f"| {r['model']} | {r['engine']} | {r['stream_clip_row']} | {r['stream_window']} | "
                  f"{r['stream_frame_p50_ms']:.3f} | {f'{clip:.3f}' if clip else '-'} | {ratio} |")
    return [*md, ""]


def _int8_section(rows: list[dict[str, Any]]) -> list[str]:
    notes = [r for r in rows if r.get("int8_note")]
    if not notes:
        return []
    return ["## INT8 and grouped/depthwise 3D convolutions", "",
            *[f"- {r['model']} / {r['engine']}: {r['int8_note']}" for r in notes], ""]
