"""Print a pytest-benchmark JSON as a table with ratios measured within the same run.

- ``bench_engines.py`` results: one row per (model, batch, engine), with the speed-up over PyTorch
  eager FP32 of the same model and batch, threads and OpenVINO precision hint as recorded.
- ``bench_train_step.py`` results: speed-ups over the fp32 row of the same model.
- ``bench_streaming.py`` results: per backend and thread count, one streamed frame over one
  recomputed T-frame clip (the cost per new frame of each way of classifying a stream).
- ``bench_edge_students.py`` results: per input size, each edge student's INT8 latency over the
  C3D student's.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

_ENGINE_ORDER = ("pytorch_fp32", "onnxruntime_fp32", "openvino_fp32", "openvino_bf16", "openvino_int8", "tensorrt")


def engine_table(data: dict[str, Any]) -> str:
    """Markdown table of engine latencies; ``vs pytorch_fp32`` = PyTorch median / this median."""
    groups: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for b in data["benchmarks"]:
        ex = b["extra_info"]
        if ex.get("kind") == "engine_latency":
            groups[(ex["model"], ex["batch"])][ex["engine"]] = {**ex, **b["stats"]}
    lines = ["| model | batch | engine | precision | hint | threads | median ms | mean ms | min ms | IQR ms | "
             "clips/s | GMAC/s | vs pytorch_fp32 |", "| " + " | ".join(["---"] * 13) + " |"]
    for (model, batch), engines in groups.items():
        base = engines.get("pytorch_fp32", {}).get("median")
        for name in sorted(engines, key=lambda e: _ENGINE_ORDER.index(e) if e in _ENGINE_ORDER else 99):
            r = engines[name]
            med = r["median"]
            ratio = f"{base / med:.2f}x" if base else "-"
            gmacs = r["gmacs_per_clip"] * batch / med
            lines.append(f"| {model} | {batch} | {name} | {r['precision']} | {r['inference_precision_hint']} | "
                         f"{r['threads']} | {med * 1e3:.2f} | {r['mean'] * 1e3:.2f} | {r['min'] * 1e3:.2f} | "
                         f"{r['iqr'] * 1e3:.2f} | {batch / med:.1f} | {gmacs:.1f} | {ratio} |")
    return "\n".join(lines)


def train_step_table(data: dict[str, Any]) -> str:
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    info: dict[str, Any] = {}
    for b in data["benchmarks"]:
        ex = b["extra_info"]
        if "mode" in ex:
            rows[ex["model"]][ex["mode"]] = b["stats"]["median"]
            info = ex
    out = [f"train step, batch {info.get('batch')}, input {info.get('input')}, {info.get('threads')} threads",
           "| model | mode | median s/step | clips/s | speed-up vs fp32 |", "| --- | --- | --- | --- | --- |"]
    for model, modes in rows.items():
        base = modes.get("fp32")
        for mode, sec in modes.items():
            ratio = f"{base / sec:.2f}x" if base else "-"
            out.append(f"| {model} | {mode} | {sec:.3f} | {info.get('batch', 0) / sec:.1f} | {ratio} |")
    return "\n".join(out)


def streaming_table(data: dict[str, Any]) -> str:
    """Per backend and thread count: one streamed frame vs recomputing the T-frame clip per frame,
    both medians from this JSON (one session), and their ratio (the issue's target: <= 1/8)."""
    cases: dict[tuple[str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for b in data["benchmarks"]:
        ex = b["extra_info"]
        if ex.get("kind") == "streaming":
            cases[(ex["backend"], ex["threads_requested"])][ex["case"]] = {**ex, **b["stats"]}
    lines = ["| backend | threads | T | clip ms (recompute per frame) | stream ms/frame | stream / clip | target 1/8 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (backend, threads), modes in sorted(cases.items()):
        if set(modes) != {"clip", "stream"}:
            continue
        clip, stream = modes["clip"]["median"], modes["stream"]["median"]
        ratio = stream / clip
        lines.append(f"| {backend} | {threads} | {modes['clip']['input'][1]} | {clip * 1e3:.2f} | {stream * 1e3:.3f} | "
                     f"{ratio:.3f} (1/{1 / ratio:.1f}) | {'met' if ratio <= 1 / 8 else 'missed'} |")
    return "\n".join(lines)


def edge_table(data: dict[str, Any]) -> str:
    """Per spatial size: each edge case's INT8 median over the C3D student's (16 frames, same size,
    same session), against the edge issue's target of at most 1/3."""
    sizes: dict[tuple[int, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for b in data["benchmarks"]:
        ex = b["extra_info"]
        if ex.get("kind") == "edge_student":
            sizes[tuple(ex["size"])][ex["case"]] = {**ex, **b["stats"]}
    lines = ["| size | case | GMAC per call | median ms | vs c3d_student T16 | target 1/3 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (h, w), cases in sorted(sizes.items()):
        base = cases.get("c3d_student T16", {}).get("median")
        for label, r in cases.items():
            ratio = r["median"] / base if base else None
            verdict = "-" if ratio is None or label.startswith("c3d") else ("met" if ratio <= 1 / 3 else "missed")
            per = " (per frame)" if r["mode"] == "stream" else ""
            lines.append(f"| {h}x{w} | {label} | {r['gmacs_per_call']:.3f}{per} | {r['median'] * 1e3:.2f} | "
                         f"{f'{ratio:.2f}' if ratio is not None else '-'} | {verdict} |")
    return "\n".join(lines)


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    cpu = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?")
    kinds = {b["extra_info"].get("kind", "train_step") for b in data["benchmarks"]}
    print(f"{path}: {len(data['benchmarks'])} benchmarks on {cpu}")
    if "engine_latency" in kinds:
        infos = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "engine_latency"]
        sources = "; ".join(dict.fromkeys(f"{i['model']}: {i['source']}" for i in infos))
        print(f"engine latency, input {infos[0]['input']} (C, T, H, W), {infos[0]['threads_requested']} thread(s) "
              f"requested; {sources}")
        print(engine_table(data))
    if "streaming" in kinds:
        info = next(b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "streaming")
        print(f"streaming vs recomputing the clip per frame, input {info['input']} (C, T, H, W), batch 1")
        print(streaming_table(data))
    if "edge_student" in kinds:
        info = next(b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "edge_student")
        print(f"edge students, OpenVINO INT8, batch 1, {info['threads_requested']} thread(s) requested "
              f"(stream: one more frame of a running stream, T = 16 window)")
        print(edge_table(data))
    if "train_step" in kinds:
        print(train_step_table(data))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: compare.py BENCHMARK_JSON")
    main(sys.argv[1])
