"""Bench stage: one table for the run. For each model (teacher, scratch student, KD student) and each
engine: test accuracy, size, parameters, GMACs, batch-1 latency (p50/p90), throughput, seconds per
frame (SPF) and FPS, and both scaled to a reference clock by Ullah & Munir's clock-ratio method."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.bench.clock import measure_effective_clock, scaled_spf
from edgekd.bench.latency import measure_latency
from edgekd.engines.base import Engine
from edgekd.engines.onnxruntime_engine import OnnxRuntimeEngine
from edgekd.engines.openvino_engine import OpenVinoEngine
from edgekd.engines.torch_engine import TorchEngine
from edgekd.models.complexity import count_macs, count_params
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import MODEL_ROLES, RunDir
from edgekd.train.checkpoint import load_checkpoint
from edgekd.train.loop import accuracy_metrics
from edgekd.utils.atomic import atomic_path, write_json, write_text

COLUMNS = ("model", "engine", "precision", "top1", "top5", "size_mb", "params_m", "gmacs", "p50_ms", "p90_ms",
           "throughput_clips_s", "spf", "fps", "scaled_spf", "scaled_fps")


def _open_engine(rd: RunDir, role: str, engine: str, model: torch.nn.Module, threads: int) -> tuple[Engine, Path]:
    """Engine adapter and the file(s) whose size is reported for it."""
    if engine == "pytorch_fp32":
        return TorchEngine(model, threads=threads), rd.stage_dir(role) / "ckpt.pt"
    if engine == "onnxruntime_fp32":
        p = rd.stage_dir("export") / f"{role}.onnx"
        return OnnxRuntimeEngine(p, threads=threads), p
    if engine in ("openvino_fp32", "openvino_int8"):
        xml = rd.stage_dir("engines") / role / engine / "model.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"{xml} is missing: enable engines.{engine} and run the engines stage")
        return OpenVinoEngine(xml, threads=threads, precision_hint="f32", name=engine), xml
    raise ValueError(f"unknown bench engine {engine!r} (pytorch_fp32, onnxruntime_fp32, openvino_fp32, openvino_int8)")


def _size_mb(path: Path) -> float:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def engine_probs(engine: Engine, clips: np.ndarray, batch: int) -> np.ndarray:
    """Video-level probabilities: clips is (N, K, C, T, H, W); the K clips' softmaxes are averaged."""
    n, k = clips.shape[:2]
    flat = clips.reshape(n * k, *clips.shape[2:])
    logits = np.concatenate([engine.infer(flat[i:i + batch]) for i in range(0, len(flat), batch)])
    return _softmax(logits.astype(np.float64)).reshape(n, k, -1).mean(1)


def run_bench(rd: RunDir) -> dict[str, Any]:
    cfg = rd.recipe.bench
    ctx = DataContext.load(rd)
    torch.set_num_threads(cfg.threads)
    clips, labels = ctx.eval_array("test", clips_per_video=rd.recipe.data.eval_clips)
    if clips.ndim == 5:
        clips = clips[:, None]
    clock = measure_effective_clock()
    mhz = clock.effective_mhz or clock.nominal_mhz
    clock_used = "effective (measured)" if clock.effective_mhz else "nominal (/proc/cpuinfo)"
    one, batch = clips[:1, 0], clips[: cfg.batch_size, 0]
    if len(batch) < cfg.batch_size:  # small test sets: repeat clips to fill the throughput batch
        batch = np.concatenate([batch] * math.ceil(cfg.batch_size / len(batch)))[: cfg.batch_size]
    rows, fp32_top1 = [], {}
    for role in MODEL_ROLES:
        model = load_checkpoint(rd.stage_dir(role) / "ckpt.pt").build()
        params, macs = count_params(model), count_macs(model, ctx.input_shape)
        for name in cfg.engines:
            engine, artifact = _open_engine(rd, role, name, model, cfg.threads)
            probs = engine_probs(engine, clips, cfg.batch_size)
            acc = accuracy_metrics(probs, labels)
            lat = measure_latency(lambda: engine.infer(one), min_time_s=cfg.min_time_s)
            thr = measure_latency(lambda: engine.infer(batch), min_time_s=cfg.min_time_s, min_iters=3)
            spf = lat.p50_ms / 1000.0 / ctx.spec.clip_len
            s_spf = scaled_spf(spf, mhz, cfg.reference_cpu_mhz) if mhz else math.nan
            desc = engine.describe()
            rows.append({
                "model": role, "engine": name, "precision": str(desc.get("precision", "")),
                "precision_hint": str(desc.get("inference_precision_hint", desc.get("precision_hint", ""))),
                "top1": acc["top1"], "top5": acc.get("top5", math.nan), "n_test": int(acc["n"]),
                "size_mb": _size_mb(artifact), "params_m": params / 1e6, "gmacs": macs / 1e9,
                "p50_ms": lat.p50_ms, "p90_ms": lat.p90_ms,
                "throughput_clips_s": cfg.batch_size / (thr.mean_ms / 1000.0),
                "spf": spf, "fps": 1.0 / spf, "scaled_spf": s_spf, "scaled_fps": 1.0 / s_spf,
                "pred": probs.argmax(1).tolist(),
            })
            if name == "pytorch_fp32":
                fp32_top1[role] = rows[-1]["pred"]
            print(f"[bench] {role:16s} {name:17s} top-1 {acc['top1']:.3f}  p50 {lat.p50_ms:8.2f} ms  FPS {1 / spf:8.1f}")
    for row in rows:  # top-1 agreement of each engine with the model's own PyTorch FP32 predictions
        ref = fp32_top1.get(row["model"])
        row["agree_fp32"] = float(np.mean(np.asarray(row.pop("pred")) == np.asarray(ref))) if ref else math.nan
    meta = {"threads": cfg.threads, "batch_size": cfg.batch_size, "clip_len": ctx.spec.clip_len,
            "input_shape": list(ctx.input_shape), "test_videos": int(len(labels)), "eval_clips": int(clips.shape[1]),
            "clock": {"effective_mhz": clock.effective_mhz, "nominal_mhz": clock.nominal_mhz, "method": clock.method,
                      "used_mhz": mhz, "used": clock_used, "reference_mhz": cfg.reference_cpu_mhz}}
    write_reports(rd.stage_dir("bench"), rows, meta)
    return {"rows": len(rows), "clock_mhz": mhz}


def _fmt(v: Any, col: str) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if col in ("top1", "top5", "agree_fp32"):
            return f"{v:.3f}"
        if col in ("spf", "scaled_spf"):
            return f"{v:.5f}"
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: list[dict[str, Any]], cols: tuple[str, ...] = COLUMNS + ("agree_fp32",)) -> str:
    header = "| " + " | ".join(cols) + " |"
    sep = "| " + " | ".join("---" for _ in cols) + " |"
    body = ["| " + " | ".join(_fmt(r.get(c, ""), c) for c in cols) + " |" for r in rows]
    return "\n".join([header, sep, *body])


def write_reports(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    write_json(out / "report.json", {"meta": meta, "rows": rows})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out / "report.csv") as tmp:
        tmp.write_text(buf.getvalue())
    c = meta["clock"]
    md = [
        "# edgekd benchmark report", "",
        f"Test videos: {meta['test_videos']} ({meta['eval_clips']} clip(s) each), input {meta['input_shape']} (C, T, H, W), "
        f"{meta['threads']} CPU thread(s). Latency is batch 1 (p50/p90); throughput is batch {meta['batch_size']}.", "",
        f"SPF = p50 clip latency / {meta['clip_len']} frames; FPS = 1/SPF. Scaled SPF = SPF x {c['used_mhz']:.0f} MHz / "
        f"{c['reference_mhz']:.0f} MHz (clock used: {c['used']}; measured effective {c['effective_mhz']} MHz by "
        f"{c['method']}, nominal {c['nominal_mhz']} MHz).", "",
        "OpenVINO rows run with INFERENCE_PRECISION_HINT=f32 (INT8 rows: int8 where NNCF quantised, f32 elsewhere).", "",
        format_table(rows), "",
    ]
    write_text(out / "report.md", "\n".join(md))
