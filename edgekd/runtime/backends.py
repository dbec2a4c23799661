"""The two inference backends a bundle can name: OpenVINO (CPU boxes) and TensorRT (Jetson).

Each is imported only when a bundle asks for it, so a CPU box needs no TensorRT and a Jetson no
OpenVINO. Both take ``(N, C, T, H, W)`` float32 and return ``(N, K)`` float32 logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError

__all__ = ["OpenVinoBackend", "load_backend"]


class OpenVinoBackend:
    """An OpenVINO IR compiled for CPU with an explicit f32 inference-precision hint.

    The hint matters: on AMX/AVX512-BF16 CPUs OpenVINO would otherwise run an FP32 IR in bf16,
    and the bundle would not reproduce the accuracy it was packed with. INT8 IRs keep the hint
    for the layers NNCF left in float, matching how ``edgekd engines`` evaluated them.
    """

    def __init__(self, xml_path: str | Path, *, threads: int | None = None, precision_hint: str = "f32") -> None:
        import openvino as ov

        self.xml_path = Path(xml_path)
        if not self.xml_path.is_file() or not self.xml_path.with_suffix(".bin").is_file():
            raise BundleError(f"OpenVINO IR not found: {self.xml_path} (+ .bin)")
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(self.xml_path)), "CPU",
                                           compile_config(None if threads is None else int(threads), precision_hint))
        self.version = ov.get_version()
        self._request = self.compiled.create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer([np.ascontiguousarray(batch, dtype=np.float32)])
        return self._request.get_output_tensor(0).data.copy()

    def describe(self) -> dict[str, Any]:
        return {"backend": "openvino", "backend_version": self.version, "model_file": str(self.xml_path),
                "inference_precision_hint": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()}


def compile_config(threads: int | None, precision_hint: str | None) -> dict[str, Any]:
    """The CPU plugin configuration every edgekd OpenVINO model is compiled with: latency hint,
    explicit threads and an explicit inference precision (the deploy runtime keeps a copy, held
    identical by a test, because it cannot import edgekd)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision_hint is not None:
        config["INFERENCE_PRECISION_HINT"] = precision_hint
    return config


def load_backend(bundle: Bundle, *, threads: int | None = None, engine: str | Path | None = None) -> Any:
    """The backend the bundle's manifest names; ``engine`` overrides the TensorRT plan path."""
    model = bundle.model
    backend = model.get("backend")
    if backend == "openvino":
        return OpenVinoBackend(bundle.path(model["file"]), threads=threads)
    if backend == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        plan = Path(engine) if engine else bundle.path(model["engine"])
        if not plan.is_file():
            raise BundleError(f"TensorRT engine not built yet: {plan}; run {bundle.path('build_engine.sh')} on this device")
        return TensorRTRunner(plan)
    raise BundleError(f"{bundle.root / 'manifest.json'}: unknown model backend {backend!r}")
