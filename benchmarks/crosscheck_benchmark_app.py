"""Cross-check the harness's OpenVINO latency against OpenVINO's own ``benchmark_app``.

    .venv/bin/python benchmarks/crosscheck_benchmark_app.py                 # fresh C3D student IRs
    .venv/bin/python benchmarks/crosscheck_benchmark_app.py --run runs/quickstart --threads 2

For each OpenVINO engine (FP32 with hint f32, BF16 = FP32 IR with hint bf16, INT8 with hint f32)
both tools run the same IR at batch 1 with the same CPU plugin configuration (latency hint,
threads, precision hint) and one synchronous request. The harness figure is ``measure_latency`` around
``OpenVinoEngine.infer`` (p50); benchmark_app's is its reported median. The check passes when
they agree within ``--tolerance`` (10%). This is a benchmark script, not a test: the machine is
shared and a noisy neighbour can fail it; re-run before concluding anything.

``benchmark_app`` ships with the ``openvino`` wheel (console script ``benchmark_app``, module
``openvino.tools.benchmark.main``). Both tools run in subprocesses, alternating for ``--rounds``
rounds, and the medians over rounds are compared: load on a shared machine drifts over minutes,
and alternating exposes both to the same drift. The parent never loads OpenVINO (forking a process
that holds OpenVINO threads crashed here before; see DEVELOPERS.md).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekd.bench.benchmark_app import parse_latency_ms

_THREADS = re.compile(r"INFERENCE_NUM_THREADS:\s*(\d+)")
_HINT = re.compile(r"INFERENCE_PRECISION_HINT:\s*(.+)")
_CASES = (("openvino_fp32", "openvino_fp32", "f32"), ("openvino_bf16", "openvino_fp32", "bf16"),
          ("openvino_int8", "openvino_int8", "f32"))


def _benchmark_app_cmd() -> list[str]:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    return [exe] if Path(exe).is_file() else [sys.executable, "-m", "openvino.tools.benchmark.main"]


def run_benchmark_app(xml: Path, shape: tuple[int, ...], threads: int, hint: str, seconds: int) -> dict[str, object]:
    """benchmark_app's median latency (ms) for ``xml`` at batch 1, with the threads and precision
    hint it reports for the compiled model.

    The CPU plugin configuration is passed with ``-load_config``, as the same keys and values the
    harness's ``OpenVinoEngine`` compiles with (benchmark_app refuses ``-nthreads`` next to a
    performance hint on its command line). ``-data_shape``, not ``-shape``: the IR has a dynamic
    batch axis and the harness compiles it as it is; ``-shape`` would reshape it to a static
    batch first, a different compiled graph (not what the harness times).
    """
    config = xml.parent / f".crosscheck_{hint}_{threads}.json"
    config.write_text(json.dumps({"CPU": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": hint}}))
    cmd = [*_benchmark_app_cmd(), "-m", str(xml), "-d", "CPU", "-load_config", str(config), "-api", "sync",
           "-nireq", "1", "-t", str(seconds), "-data_shape", "[" + ",".join(str(s) for s in (1, *shape)) + "]"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 120)
    finally:
        config.unlink(missing_ok=True)
    median_ms = parse_latency_ms(proc.stdout, "Median")  # printed in us below 1 ms, in ms above
    if proc.returncode != 0 or median_ms is None:
        raise RuntimeError(f"benchmark_app failed (rc {proc.returncode}):\n{' '.join(cmd)}\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")
    threads_read, hint_read = _THREADS.search(proc.stdout), _HINT.search(proc.stdout)
    return {"median_ms": median_ms, "threads": threads_read.group(1) if threads_read else "?",
            "hint": hint_read.group(1).strip() if hint_read else "?"}


def build_student_irs(tmp: Path, shape: tuple[int, int, int, int]) -> dict[str, str]:
    """Fresh C3D student FP32 and INT8 IRs (random weights, random calibration clips)."""
    import torch

    from edgekd.engines import build_openvino_fp32, build_openvino_int8
    from edgekd.export.onnx_export import export_onnx
    from edgekd.models import build_model

    torch.manual_seed(0)
    model = build_model("c3d_student", num_classes=10, input_size=shape[1:]).eval()
    onnx_path = export_onnx(model, shape, tmp / "student.onnx")
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, *shape)).astype(np.float32) for _ in range(8)]
    return {"openvino_fp32": str(build_openvino_fp32(onnx_path, tmp / "openvino_fp32")),
            "openvino_int8": str(build_openvino_int8(onnx_path, calib, tmp / "openvino_int8", subset_size=8))}


def harness_latency(xml: str, shape: tuple[int, ...], threads: int, hint: str, min_time: float) -> dict[str, object]:
    """The harness's measurement: ``measure_latency`` around ``OpenVinoEngine.infer`` at batch 1."""
    from edgekd.bench.latency import measure_latency
    from edgekd.engines import OpenVinoEngine

    engine = OpenVinoEngine(xml, threads=threads, precision_hint=hint)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    stats = measure_latency(lambda: engine.infer(x), warmup=5, min_iters=20, max_iters=1_000_000, min_time_s=min_time)
    # The same timing loop around a bare request with its input set once (what benchmark_app times):
    # separates the engine wrapper's per-call cost (input/output copies) from the measuring method.
    import openvino as ov

    request = engine.compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))
    raw = measure_latency(request.infer, warmup=5, min_iters=20, max_iters=1_000_000, min_time_s=min_time / 2)
    desc = engine.describe()
    return {"p50_ms": stats.p50_ms, "raw_p50_ms": raw.p50_ms, "threads": desc["threads"],
            "hint": desc["inference_precision_hint"]}


def _child(args: argparse.Namespace) -> int:
    """Subprocess modes: build IRs, or time the harness once; the result is one JSON line on stdout."""
    shape = tuple(json.loads(args.shape))
    if args.child == "build":
        print(json.dumps(build_student_irs(Path(args.tmp), shape)))  # type: ignore[arg-type]
    else:
        print(json.dumps(harness_latency(args.xml, shape, args.threads, args.hint, args.min_time)))
    return 0


def _run_child(*extra: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(extra)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _hints_supported() -> list[str]:
    return list(_run_child("--child", "hints", "--shape", "[]").values())  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run directory: use its engines/<role>/openvino_* IRs")
    ap.add_argument("--role", default="student_kd", help="model role inside --run (default student_kd)")
    ap.add_argument("--input", default="16x32x40", help="TxHxW of fresh IRs (ignored with --run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=3, help="benchmark_app duration per round (-t)")
    ap.add_argument("--min-time", type=float, default=3.0, help="harness timing budget per round (s)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating benchmark_app / harness rounds")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--child", choices=("build", "harness", "hints"), help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--xml", help=argparse.SUPPRESS)
    ap.add_argument("--hint", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "hints":
        from edgekd.engines import supported_precision_hints

        print(json.dumps(dict(enumerate(supported_precision_hints()))))
        return 0
    if args.child:
        return _child(args)

    tmp = Path(tempfile.mkdtemp(prefix="edgekd_crosscheck_"))
    if args.run:
        from edgekd.stages.validate import load_recipe

        d = load_recipe(args.run / "recipe.yaml").data
        shape = (3, d.clip_len, *d.crop)
        irs = {ir: str(args.run / "engines" / args.role / ir / "model.xml") for ir in ("openvino_fp32", "openvino_int8")}
    else:
        t, h, w = (int(v) for v in args.input.split("x"))
        shape = (3, t, h, w)
        irs = _run_child("--child", "build", "--tmp", str(tmp), "--shape", json.dumps(shape))  # type: ignore[assignment]
    hints = _hints_supported()
    cases = [c for c in _CASES if c[2] in hints and Path(irs[c[1]]).is_file()]
    results, ok = [], True
    for name, ir, hint in cases:
        app, mine = [], []
        for _ in range(args.rounds):
            app.append(run_benchmark_app(Path(irs[ir]), shape, args.threads, hint, args.seconds))
            mine.append(_run_child("--child", "harness", "--xml", irs[ir], "--shape", json.dumps(shape),
                                   "--threads", str(args.threads), "--hint", hint, "--min-time", str(args.min_time)))
        app_ms = float(np.median([a["median_ms"] for a in app]))
        mine_ms = float(np.median([m["p50_ms"] for m in mine]))
        raw_ms = float(np.median([m["raw_p50_ms"] for m in mine]))
        diff = mine_ms / app_ms - 1.0
        passed = abs(diff) <= args.tolerance
        ok &= passed
        results.append({"engine": name, "ir": irs[ir], "hint": mine[0]["hint"], "threads": mine[0]["threads"],
                        "benchmark_app_hint": app[0]["hint"], "benchmark_app_threads": app[0]["threads"],
                        "harness_p50_ms": mine_ms, "bare_request_p50_ms": raw_ms, "benchmark_app_median_ms": app_ms,
                        "harness_rounds_ms": [m["p50_ms"] for m in mine],
                        "benchmark_app_rounds_ms": [a["median_ms"] for a in app], "rel_diff": diff, "pass": passed})
    print(f"input {shape} (C, T, H, W), batch 1, {args.threads} thread(s), latency hint, 1 sync request, "
          f"median of {args.rounds} alternating rounds")
    print("| engine | hint | threads | benchmark_app hint, threads | harness p50 ms (rounds) | bare request p50 ms | "
          f"benchmark_app median ms (rounds) | difference | within {args.tolerance:.0%} |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        rounds_h = ", ".join(f"{v:.2f}" for v in r["harness_rounds_ms"])
        rounds_a = ", ".join(f"{v:.2f}" for v in r["benchmark_app_rounds_ms"])
        print(f"| {r['engine']} | {r['hint']} | {r['threads']} | {r['benchmark_app_hint']}, {r['benchmark_app_threads']} | "
              f"{r['harness_p50_ms']:.3f} ({rounds_h}) | {r['bare_request_p50_ms']:.3f} | "
              f"{r['benchmark_app_median_ms']:.3f} ({rounds_a}) | "
              f"{r['rel_diff']:+.1%} | {'yes' if r['pass'] else 'NO'} |")
    if args.out:
        args.out.write_text(json.dumps({"shape": shape, "threads": args.threads, "results": results}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
