"""pytest-benchmark: one training step of the C3D teacher/student per precision and memory format."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from edgekd.models import build_model
from edgekd.train.perf import autocast, to_memory_format

T, H, W = (int(v) for v in os.environ.get("EDGEKD_BENCH_INPUT", "16x56x56").split("x"))
BATCH = int(os.environ.get("EDGEKD_BENCH_BATCH", "8"))
THREADS = int(os.environ.get("EDGEKD_BENCH_THREADS", "2"))
MODES = {"fp32": ("fp32", False), "fp32_channels_last": ("fp32", True), "bf16_channels_last": ("bf16", True)}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("model_name", ["c3d_student", "c3d_teacher"])
def test_train_step(benchmark, model_name: str, mode: str) -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    precision, channels_last = MODES[mode]
    model = to_memory_format(build_model(model_name, num_classes=10, input_size=(T, H, W)), channels_last)
    x = to_memory_format(torch.randn(BATCH, 3, T, H, W), channels_last)
    y = torch.randint(0, 10, (BATCH,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        return loss.item()

    benchmark.extra_info.update({"threads": THREADS, "batch": BATCH, "input": [T, H, W], "model": model_name, "mode": mode})
    loss = benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    assert torch.isfinite(torch.tensor(loss))
