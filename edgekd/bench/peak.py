"""This machine's measured peak multiply-accumulate rate per precision, from GEMM micro-benchmarks.

Clock ratios (``clock.scaled_spf``) assume every machine does the same work per cycle, which is
false across vector widths, AMX and int8 units. The second scaling answers a different question:
how close is a model to what *this* hardware can do? ``efficiency = achieved GMAC/s / peak GMAC/s``
where the peak is the best rate of a large square matrix multiply in the same precision and with
the same thread count:

- fp32, bf16: the faster of ``torch.matmul`` (oneDNN/MKL) and an OpenVINO ``MatMul`` compiled with
  that inference precision (bf16 uses AMX/AVX512-BF16 where present);
- int8: an OpenVINO ``MatMul`` with int8 weights and a FakeQuantize'd activation, the pattern NNCF
  produces, which the CPU plugin runs on its int8 (VNNI/AMX) kernels.

Each is the best of two sizes (n/2 and n) and of many short timed calls, since a peak is a best
case. On a loaded machine it can still come out low; delete the cache file to measure again.

A GEMM is the friendliest workload there is, so efficiencies of real networks (3D convs, small
spatial sizes) are expected well below 1. Results are cached per machine in the run directory
(the key is the CPU model, core count, threads, library versions and matrix size).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.engines.openvino_engine import compile_config
from edgekd.utils.atomic import write_json
from edgekd.utils.cpu import cpu_info
from edgekd.utils.hashing import stable_hash
from edgekd.utils.versions import package_versions

__all__ = ["PRECISIONS", "PeakResult", "cached_peak", "machine_key", "measure_peak"]

PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class PeakResult:
    """Best rate of ``n`` x ``n`` x ``n`` GEMMs (GMAC/s), or why it could not be measured."""

    precision: str
    gmacs_per_s: float | None
    source: str
    n: int
    threads: int
    best_ms: float | None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_ms(fn: Callable[[], object], min_time_s: float, min_iters: int = 3) -> float:
    """Fastest of repeated calls after two warm-up calls: a peak is a best case by definition."""
    fn()
    fn()
    best = float("inf")
    start = time.perf_counter()
    iters = 0
    while iters < min_iters or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) / 1e6)
        iters += 1
    return best


def _torch_gemm(precision: str, n: int, threads: int, min_time_s: float) -> PeakResult:
    import torch

    worth, why = cpu_info().bf16_worth_probing()
    if precision == "bf16" and not worth:  # emulated bf16 GEMMs would take minutes and say nothing
        return PeakResult(precision, None, "torch.matmul", n, threads, None, f"not measured: {why}")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        out = torch.empty(n, n, dtype=dtype)
        with torch.inference_mode():
            ms = _best_ms(lambda: torch.matmul(a, b, out=out), min_time_s)
    finally:
        torch.set_num_threads(old)
    return PeakResult(precision, n ** 3 / (ms / 1e3) / 1e9, f"torch {torch.__version__} matmul", n, threads, ms)


_OV_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: quantised MatMul, f32 elsewhere
_OV_RAN = {"fp32": ("f32",), "bf16": ("bf16",), "int8": ("i8", "u8")}


def _openvino_gemm(precision: str, n: int, threads: int, min_time_s: float) -> PeakResult:
    """An OpenVINO MatMul in ``precision``; int8 is the NNCF pattern (FakeQuantize'd activations,
    int8 weights with a dequantisation scale). Refuses a result whose kernel ran another precision."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    if precision == "int8":
        lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        a = ops.fake_quantize(x, lo, hi, lo, hi, 256)
        w = ops.constant(rng.integers(-127, 128, size=(n, n), dtype=np.int8))
        b = ops.multiply(ops.convert(w, ov.Type.f32), ops.constant(np.float32(0.01)))
    else:
        a, b = x, ops.constant(rng.standard_normal((n, n)).astype(np.float32))
    model = ov.Model([ops.matmul(a, b, False, False)], [x], f"{precision}_gemm")
    config = compile_config(threads, _OV_HINT[precision])
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(rng.standard_normal((n, n)).astype(np.float32)))
    ms = _best_ms(request.infer, min_time_s)
    kinds = set()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in ("FullyConnected", "MatMul"):
            kinds.add(f"{rt['runtimePrecision'].astype(str)} ({rt['primitiveType'].astype(str)})")
    ran = ", ".join(sorted(kinds)) or "unknown"
    source = f"openvino {ov.get_version()} MatMul"
    if not any(k.startswith(_OV_RAN[precision]) for k in kinds):
        return PeakResult(precision, None, source, n, threads, ms,
                          f"not measured: the CPU plugin ran the MatMul in {ran}, not {precision}")
    return PeakResult(precision, n ** 3 / (ms / 1e3) / 1e9, source, n, threads, ms, f"matmul kernel: {ran}")


def measure_peak(threads: int, *, n: int = 1024, min_time_s: float = 0.3) -> dict[str, PeakResult]:
    """Peak GMAC/s per precision (``fp32``, ``bf16``, ``int8``), best of ``n/2`` and ``n`` square GEMMs;
    unmeasurable ones carry a reason."""
    if threads < 1 or n < 16:
        raise ValueError(f"measure_peak: need threads >= 1 and n >= 16, got {threads}, {n}")
    out: dict[str, PeakResult] = {}
    # Two sizes, best kept: which size saturates the kernels differs per precision (bf16 AMX
    # GEMMs here ran 3x faster at 512 than at 1024, where fp32 was the same at both).
    sizes = sorted({max(16, n // 2), n})
    for precision in PRECISIONS:
        tries = [] if precision == "int8" else [_torch_gemm(precision, m, threads, min_time_s) for m in sizes]
        for m in sizes:
            try:
                tries.append(_openvino_gemm(precision, m, threads, min_time_s))
            except Exception as exc:  # an OpenVINO build without these CPU kernels: say so, do not fail the bench
                tries.append(PeakResult(precision, None, "openvino MatMul", m, threads, None,
                                        f"not measured: {type(exc).__name__}: {exc}"))
        out[precision] = _best(tries)
    return out


def _best(results: list[PeakResult]) -> PeakResult:
    measured = [r for r in results if r.gmacs_per_s is not None]
    return max(measured, key=lambda r: r.gmacs_per_s or 0.0) if measured else results[-1]


def machine_key(threads: int, n: int) -> str:
    """What a cached peak is valid for: the CPU (model, flags, effective oneDNN ISA), its count,
    threads, matrix size and library versions."""
    return stable_hash({"cpu": cpu_info().key(), "cpus": os.cpu_count(), "threads": threads, "n": n,
                        "versions": {k: v for k, v in package_versions().items() if k in ("torch", "openvino")}})


def cached_peak(cache_file: Path, threads: int, *, n: int = 1024, min_time_s: float = 0.3) -> dict[str, PeakResult]:
    """``measure_peak`` once per machine key; the JSON file maps keys to results."""
    key = machine_key(threads, n)
    cache: dict[str, Any] = {}
    if cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except json.JSONDecodeError:
            cache = {}
    if key in cache:
        return {p: PeakResult(**r) for p, r in cache[key]["results"].items()}
    results = measure_peak(threads, n=n, min_time_s=min_time_s)
    cache[key] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": {p: r.to_dict() for p, r in results.items()}}
    write_json(cache_file, cache)
    return results
