"""Cost of a KD epoch against a scratch-student epoch, per way of running the frozen teacher.

    .venv/bin/python benchmarks/bench_kd_epoch.py 2>/dev/null     # 16x112x112, batch 8, 4 batches, 5 rounds
    .venv/bin/python benchmarks/bench_kd_epoch.py --input 16x56x56 --batches 6 2>/dev/null
    .venv/bin/python benchmarks/bench_kd_epoch.py --input 16x56x56 --rounds 0 --train-epochs 12 --variants 3

Every row trains the same student (``c3d_student``) from the same initial weights on the same
in-memory synthetic clips with the real training loop (``fit``), at the recipe default precision
(``auto``: bf16 autocast + channels_last_3d on AMX CPUs). Rows:

* scratch:          cross-entropy only (the reference);
* kd_pytorch:       Ullah KD, the teacher (``c3d_teacher``) re-run in PyTorch every step;
* kd_openvino:      the teacher converted once to OpenVINO, run at the same precision;
* kd_cache_warm:    PyTorch teacher behind the (video, variant) cache, in an epoch whose keys were
                    all seen before (with ``data.aug_variants = V`` and ``data.aug_schedule: cycle``
                    that is every epoch after the first V);
* kd_cache_fill:    the first epoch of the cache, which pays the teacher once per key.

The clips are random tensors held in memory, so data loading costs nothing here: the ratios are of
pure compute and therefore conservative (a real loader adds the same time to every row).
Each row's time is the training time of one epoch from ``fit``'s metrics (``epoch_s``). After a
warm-up epoch per row, the rows run one epoch each in turn for ``--rounds`` rounds (interleaved, so
load from other processes falls on every row alike); the median and the minimum (least disturbed)
epoch of each row are reported. Ratios are
measured within one run; absolute times on a shared machine mean little.

Whole training (``--train-epochs E``, 0 skips it): what a training run costs, fill epochs included.
The clips are ``V = --variants`` fixed random tensors per video and the variant of video ``i`` in
epoch ``e`` is ``(e + i) mod V``: the ``data.aug_schedule: cycle`` contract of ``ClipDataset``,
so the cache misses on every clip of the first V epochs and on none after. Rows, each a fresh
student (and a fresh cache) trained for E epochs: scratch, KD (Ullah) with the cache over the PyTorch teacher, over the OpenVINO
teacher at the training precision, and over the NNCF INT8 OpenVINO teacher (``teacher_backend:
openvino_int8``, calibrated on ``--calibration`` training clips; its outputs differ from the
teacher's by the quantization error, so this row trades exactness for the cheapest fill epochs). The rows run in lockstep (epoch e of each row, then epoch e + 1; one ``fit(epochs=1)`` per
row and epoch, continuing the same student), so slow drifts in machine load fall on every row
alike. The ratio is the sum of the E ``epoch_s`` of a row over the scratch row's; the one-off
setup (teacher build, OpenVINO conversion) is shown apart and in a second ratio. An untimed scratch
epoch warms the process first. Each row also gets its process CPU seconds and their ratio: where
the hypervisor steals much of the CPU (the last line prints the host's steal share), wall-time
ratios swing with the host's load while CPU-time ratios still measure the work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from edgekd.distill.kd import build_kd
from edgekd.models import build_model
from edgekd.recipe import DistillConfig
from edgekd.train.loop import FitOptions, LossFn, cross_entropy_loss, fit
from edgekd.train.precision import choose_precision
from edgekd.utils.cpu_clock import CpuClock


class _Clips(Dataset):
    """Fixed random clips with labels and a cache key (video i, variant 0)."""

    def __init__(self, n: int, shape: tuple[int, ...], classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, *shape, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        return self.x[i], self.y[i], {"clip_key": torch.tensor([i, 0])}


def _epoch(student: torch.nn.Module, loader: DataLoader, val: DataLoader, loss_fn: LossFn, precision: str,
           extra: list[torch.nn.Module]) -> float:
    """Training seconds of one epoch of the real loop (``fit``'s ``epoch_s``, evaluation excluded).
    The process CPU seconds of the same ``fit`` call (its one-clip validation included) are added
    to ``CPU_S``: on a VM whose hypervisor steals most of the CPU, wall time measures the host's
    load, CPU time still measures the work."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "m.jsonl"
        cpu0 = time.process_time()
        fit(student, loader, val, FitOptions(epochs=1, lr=1e-4, precision=precision, desc="bench"),
            loss_fn=loss_fn, extra_modules=extra, on_best=lambda m, r: None, metrics_path=metrics)
        CPU_S.append(time.process_time() - cpu0)
        return float(json.loads(metrics.read_text().splitlines()[0])["epoch_s"])


CPU_S: list[float] = []  # process CPU seconds of each _epoch call, in call order


class _CycledClips(Dataset):
    """``variants`` fixed random clips per video; in epoch ``e`` video ``i`` gives variant ``(e + i) mod V``.

    The bench steps the rows in lockstep (one ``fit(epochs=1)`` call per row and epoch), so it sets
    ``epoch`` itself; ``set_epoch`` (what ``fit`` calls, always with 1 here) is ignored. The cycle
    schedule's contract with ``fit`` is tested in ``tests/test_distill_schedule.py``.
    """

    def __init__(self, n: int, variants: int, shape: tuple[int, ...], classes: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, variants, *shape, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)
        self.variants = variants
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        v = (self.epoch + i) % self.variants
        return self.x[i, v], self.y[i], {"clip_key": torch.tensor([i, v])}


def whole_training(args: argparse.Namespace, shape: tuple[int, ...], precision: str,
                   copy_of: Callable[[str], torch.nn.Module]) -> None:
    """E epochs of KD with the cache (PyTorch / OpenVINO teacher) against E scratch epochs, in lockstep."""
    e, v = args.train_epochs, args.variants
    data = _CycledClips(args.batch * args.batches, v, shape, args.classes)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(_Clips(1, shape, args.classes), batch_size=1)  # fit validates; one clip keeps that cheap
    _epoch(copy_of("c3d_student"), loader, val, cross_entropy_loss, precision, [])  # process warm-up, untimed
    rows: dict[str, tuple[torch.nn.Module, LossFn, list[torch.nn.Module]]] = {}
    setup: dict[str, float] = {}
    kds = {}
    # INT8 teacher: NNCF calibrates on clips of the training set (variant 0 of each video)
    calibration = data.x[: args.calibration, 0].numpy()
    for name in ("scratch", "kd_cache_pytorch", "kd_cache_openvino", "kd_cache_openvino_int8"):
        s = copy_of("c3d_student")
        if name == "scratch":
            rows[name], setup[name] = (s, cross_entropy_loss, []), 0.0
            continue
        start = time.perf_counter()
        kd = build_kd(DistillConfig(method="ullah", teacher_backend=name.removeprefix("kd_cache_"), cache="memory"),
                      copy_of("c3d_teacher"), s, teacher_input_shape=shape, student_input_shape=shape,
                      precision=precision, channels_last=True, teacher_calibration=calibration)
        setup[name] = time.perf_counter() - start
        rows[name], kds[name] = (s, kd.loss_fn, kd.extra_modules), kd
    # epoch e of every row, then epoch e + 1: load from other processes falls on every row alike
    epochs: dict[str, list[float]] = {name: [] for name in rows}
    cpu: dict[str, list[float]] = {name: [] for name in rows}
    clock = CpuClock.start()
    for epoch in range(1, e + 1):
        data.epoch = epoch
        for name, (s, loss_fn, extra) in rows.items():
            epochs[name].append(_epoch(s, loader, val, loss_fn, precision, extra))
            cpu[name].append(CPU_S[-1])
    ref = sum(epochs["scratch"])
    cpu_ref = sum(cpu["scratch"])
    print()
    print(f"Whole training: {e} epochs, {args.batches} batches of {args.batch} x {list(shape)}, V = {v} variants, "
          f"cycle schedule (cache full after {v} epochs), {args.threads} threads, precision {precision}, "
          f"rows stepped in lockstep")
    print(f"{'row':<20}{'train s':>9}{'x scratch':>11}{'setup s':>9}{'x incl. setup':>15}   "
          f"fill epochs (s) | warm epochs (s)")
    for name, secs in epochs.items():
        total = sum(secs)
        fill, warm = [round(x, 2) for x in secs[:v]], [round(x, 2) for x in secs[v:]]
        print(f"{name:<20}{total:>9.2f}{total / ref:>11.2f}{setup[name]:>9.1f}{(total + setup[name]) / ref:>15.2f}"
              f"   {fill} | {warm}")
        c = cpu[name]
        print(f"  CPU time: {sum(c):.1f} s = {sum(c) / cpu_ref:.2f} x scratch (fill epochs {sum(c[:v]) / sum(cpu['scratch'][:v]):.2f} x, "
              f"warm epochs {sum(c[v:]) / max(sum(cpu['scratch'][v:]), 1e-9):.2f} x)")
        if name in kds:
            print(f"  cache {kds[name].teacher.stats()}; warm epochs alone {sum(secs[v:]) / sum(epochs['scratch'][v:]):.2f}"
                  f" x scratch, fill epochs alone {sum(secs[:v]) / sum(epochs['scratch'][:v]):.2f} x scratch")
    print(f"host during the rows: {clock.line()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="16x112x112", help="T x H x W of a clip")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=4, help="batches per epoch")
    ap.add_argument("--rounds", type=int, default=5, help="epochs per row, interleaved round-robin")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--train-epochs", type=int, default=12, help="whole-training rows: epochs E (0: skip them)")
    ap.add_argument("--variants", type=int, default=3, help="whole-training rows: variants V per video")
    ap.add_argument("--calibration", type=int, default=32, help="whole-training INT8 teacher: calibration clips")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t, h, w = (int(v) for v in args.input.split("x"))
    shape = (3, t, h, w)
    student_kwargs = {"num_classes": args.classes, "input_size": (t, h, w), "dropout": 0.0}
    precision = choose_precision(args.precision, build=lambda: build_model("c3d_student", **student_kwargs),
                                 model={"name": "c3d_student", **student_kwargs}, input_shape=shape,
                                 batch=args.batch).precision  # auto: the bf16 probe decides, as in training
    data = _Clips(args.batch * args.batches, shape, args.classes)
    loader = DataLoader(data, batch_size=args.batch, shuffle=False)
    val = DataLoader(_Clips(args.batch, shape, args.classes), batch_size=args.batch)
    torch.manual_seed(0)
    student0 = build_model("c3d_student", num_classes=args.classes, input_size=(t, h, w), dropout=0.0)
    teacher0 = build_model("c3d_teacher", num_classes=args.classes, input_size=(t, h, w), dropout=0.0)

    def copy_of(m0: torch.nn.Module, name: str) -> torch.nn.Module:
        m = build_model(name, num_classes=args.classes, input_size=(t, h, w), dropout=0.0)
        m.load_state_dict(m0.state_dict())
        return m

    if args.rounds > 0:
        # row -> (student, loss, extra modules); every student starts from the same weights
        runs: dict[str, tuple[torch.nn.Module, LossFn, list[torch.nn.Module]]] = {}
        notes: dict[str, str] = {}
        kds = {}
        runs["scratch"] = (copy_of(student0, "c3d_student"), cross_entropy_loss, [])
        for name, backend, cache in (("kd_pytorch", "pytorch", "off"), ("kd_openvino", "openvino", "off"),
                                     ("kd_cache", "pytorch", "memory")):
            s = copy_of(student0, "c3d_student")
            start = time.perf_counter()
            kd = build_kd(DistillConfig(method="ullah", teacher_backend=backend, cache=cache), copy_of(teacher0, "c3d_teacher"), s,
                          teacher_input_shape=shape, student_input_shape=shape, precision=precision, channels_last=True)
            notes[name] = f"setup {time.perf_counter() - start:.1f} s; {kd.teacher.teacher.describe()}"
            kd.teacher.teacher(data.x[: args.batch])  # warm-up step (oneDNN / OpenVINO primitives), not cached
            runs[name] = (s, kd.loss_fn, kd.extra_modules)
            kds[name] = kd
        # warm-up epoch of every row (the cache row's is its fill epoch), then interleaved rounds so
        # that load from other processes hits every row alike
        times: dict[str, list[float]] = {name: [] for name in runs}
        fill = 0.0
        for r in range(args.rounds + 1):
            for name, (s, loss_fn, extra) in runs.items():
                secs = _epoch(s, loader, val, loss_fn, precision, extra)
                if r == 0:
                    fill = secs if name == "kd_cache" else fill
                else:
                    times[name].append(secs)
        med = {name: statistics.median(v) for name, v in times.items()}
        best = {name: min(v) for name, v in times.items()}
        notes["kd_cache"] += f"; cache {kds['kd_cache'].teacher.stats()}"
        print(f"KD epoch vs scratch epoch: c3d_teacher -> c3d_student, {args.batches} batches of {args.batch} x "
              f"{list(shape)}, {args.threads} threads, precision {precision}, {args.rounds} interleaved epochs per row")
        print(f"{'row':<16}{'median s':>10}{'x scratch':>11}{'min s':>9}{'x scratch':>11}   all epochs (s)")
        for name in med:
            label = "kd_cache_warm" if name == "kd_cache" else name
            print(f"{label:<16}{med[name]:>10.2f}{med[name] / med['scratch']:>11.2f}{best[name]:>9.2f}"
                  f"{best[name] / best['scratch']:>11.2f}   {[round(x, 2) for x in times[name]]}")
        print(f"{'kd_cache_fill':<16}{fill:>10.2f}{fill / med['scratch']:>11.2f}{'':>20}   (first epoch: every key a miss)")
        print("min = least-disturbed epoch of each row (the usual estimate on a shared machine); median for spread")
        for name, note in notes.items():
            print(f"  {name}: {note}")

    if args.train_epochs > 0:
        whole_training(args, shape, precision,
                       lambda name: copy_of(student0 if name == "c3d_student" else teacher0, name))

if __name__ == "__main__":
    main()
