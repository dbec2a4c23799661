"""PyTorch eager FP32 engine: the reference every exported engine is compared against."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgekd.engines.base import Engine, check_batch, check_logits

__all__ = ["TorchEngine"]


class TorchEngine(Engine):
    """Eval-mode, ``inference_mode``, strict-FP32 inference of an ``nn.Module`` on CPU.

    ``threads`` calls ``torch.set_num_threads``, which is process-wide in PyTorch: the value in
    :meth:`describe` is read back at describe time so a later change elsewhere shows up.
    """

    def __init__(self, model: nn.Module, *, threads: int | None = None, name: str = "pytorch_fp32") -> None:
        _require_fp32_params(model, name)
        _require_ieee_fp32_math(name)
        if threads is not None:
            if threads < 1:
                raise ValueError(f"{name}: threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.name = name
        self.model = model.eval()
        self._device = _module_device(model)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.name)
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch).to(self._device))
        return check_logits(logits.detach().cpu().numpy(), batch.shape[0], self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": "pytorch",
            "backend_version": torch.__version__,
            "precision": "fp32",
            "inference_precision_hint": "f32",
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "threads": torch.get_num_threads(),
            "device": str(self._device),
            "model_file": None,
        }


def _module_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _require_fp32_params(model: nn.Module, name: str) -> None:
    """Refuse non-FP32 weights instead of casting: this engine's rows are labelled fp32."""
    for pname, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise TypeError(f"{name}: parameter/buffer {pname!r} is {tensor.dtype}, expected torch.float32")


def _require_ieee_fp32_math(name: str) -> None:
    """Refuse global settings that let oneDNN/cuBLAS run FP32 ops in TF32/BF16 behind our back."""
    matmul = torch.get_float32_matmul_precision()
    if matmul != "highest":
        raise RuntimeError(
            f"{name}: torch.get_float32_matmul_precision() is {matmul!r}; an fp32 reference needs 'highest'"
        )
    mkldnn = getattr(torch.backends, "mkldnn", None)
    for sub in ("conv", "matmul"):
        value = getattr(getattr(mkldnn, sub, None), "fp32_precision", None)
        if value not in (None, "none", "ieee"):
            raise RuntimeError(
                f"{name}: torch.backends.mkldnn.{sub}.fp32_precision is {value!r}; expected 'ieee'/'none'"
            )
