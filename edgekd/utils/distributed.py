"""Multi-process data-parallel training (torchrun / torch.distributed).

``torchrun --nproc_per_node N -m edgekd.cli train RECIPE`` starts N copies of the CLI; each calls
:func:`init_from_env`, which joins the process group named by torchrun's environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``...): NCCL with one GPU per process where CUDA is available, gloo on
CPU. Without torchrun nothing is initialised and every helper here degrades to the one-process
answer, so library code calls them unconditionally.

Conventions the rest of edgekd follows:

- the recipe's ``batch_size`` is the **global** batch; each rank loads ``batch_size / world`` clips
  through a ``DistributedSampler`` (so N processes take the same optimisation steps as one);
- only rank 0 writes artifacts (checkpoints, metrics, stage records); the others wait at barriers;
- training metrics are summed over ranks, evaluation predictions are gathered from every rank
  before metrics are computed, so logged numbers describe the whole data set.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init_from_env(timeout_min: float = 120.0) -> bool:
    """Join torchrun's process group (idempotent). Returns whether this process is distributed.

    The timeout is long because ranks other than 0 wait at a barrier while rank 0 alone runs
    single-process stages (decoding a data set can take many minutes).
    """
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                            timeout=datetime.timedelta(minutes=timeout_min))
    return True


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, the only process that writes artifacts."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def device() -> torch.device:
    """The device this rank computes on: its GPU under NCCL, else the CPU."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over ranks (float64, so counts stay exact)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64, device=device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (picklable objects; used for predictions and RNG states)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks for parameters DDP does not own (the loss's extra modules,
    e.g. a KD projection that is called inside the loss rather than through the DDP wrapper)."""
    if not is_distributed():
        return
    n = world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(n)


def shard_train_loader(loader: DataLoader, seed: int) -> tuple[DataLoader, DistributedSampler]:
    """A copy of ``loader`` that yields this rank's share of every global batch.

    With per-rank batch ``B / N`` and ``DistributedSampler`` (rank ``r`` takes positions
    ``r, r + N, ...`` of one seeded permutation), the union of the ranks' k-th batches is exactly
    positions ``kB .. kB + B - 1`` of that permutation: the global batch a one-process run with the
    same sampler sees. The sampler must be told the epoch (``set_epoch``) to reshuffle.
    """
    n = world_size()
    if loader.batch_size is None or loader.batch_size % n:
        raise ValueError(f"batch_size {loader.batch_size} (the global batch) is not divisible by the "
                         f"world size {n}; choose a batch size that is a multiple of the number of processes")
    sampler = DistributedSampler(loader.dataset, num_replicas=n, rank=rank(), shuffle=True, seed=seed,
                                 drop_last=False)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // n, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      drop_last=loader.drop_last, generator=loader.generator,
                      persistent_workers=False), sampler


def shard_eval_loader(loader: DataLoader) -> DataLoader:
    """This rank's strided share ``r, r + N, ...`` of an evaluation set, without the padding a
    ``DistributedSampler`` adds (padding would count some videos twice in the metrics)."""
    n, r = world_size(), rank()
    ds: Dataset = loader.dataset
    subset = Subset(ds, list(range(r, len(ds), n)))  # type: ignore[arg-type]
    return DataLoader(subset, batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, generator=loader.generator, persistent_workers=False)
