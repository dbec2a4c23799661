"""Input pipeline vs training: can the loader feed the student faster than it trains?

Prints, measured in one run on this machine:

* cold decode: clips/s of a dataset whose frame cache is empty (every sample decodes its video);
* warm cache: clips/s of the training loader (random crop, flip, normalisation; optionally the
  Camarena photometric augmentation) with 0, 1 and 2 DataLoader workers;
* optical flow: ms per frame pair for Farneback and TV-L1 at the cache resolution;
* the c3d_student training step (forward, backward, fused Adam, the precision/channels_last that
  ``precision: auto`` picks) at the same batch size and clip shape, in clips/s;
* the ratio warm-pipeline / student (goal >= 2).

Data: the shared real UCF101 clips (../shared/data/real/ucf101, split 1, missing videos skipped)
when present, else a synthetic set. Usage::

    .venv/bin/python benchmarks/bench_input_pipeline.py [--batch 8] [--clip 16x112x112] [--resize 128x171]

The pipeline and the model are timed one after the other on the same cores; during real training
they share those cores, which is why the goal asks for 2x headroom rather than 1x.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgekd.data.cache import FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, make_loader
from edgekd.data.flow import compute_flow
from edgekd.data.splits import DatasetSplit, read_ucf101
from edgekd.models import build_model
from edgekd.train.perf import autocast, to_memory_format
from edgekd.train.precision import choose_precision

REAL_UCF = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "ucf101"


def _pair(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def load_split(tmp: Path, max_videos: int) -> DatasetSplit:
    if (REAL_UCF / "splits" / "classInd.txt").is_file():
        split = read_ucf101(REAL_UCF, split=1, on_missing="skip", val_fraction=0.0)
    else:
        from edgekd.data.synth import generate_dataset

        root = tmp / "synthetic"
        generate_dataset(root, per_class=8, num_frames=64, size=(171, 128), show_progress=False)
        split = read_ucf101(root, val_fraction=0.0)
    train = (split.train + split.test)[:max_videos]
    return DatasetSplit(split.root, split.classes, train, [], [], split.source)


def loader_rate(ds: ClipDataset, batch: int, workers: int, min_clips: int) -> float:
    """Clips/s over whole epochs (worker start-up included, as training pays it every epoch)."""
    torch.manual_seed(0)
    seen, start, epoch = 0, time.perf_counter(), 0
    while seen < min_clips:
        for x, _y, *_ in make_loader(ds, batch_size=batch, shuffle=True, workers=workers, seed=epoch):
            seen += x.shape[0]
        epoch += 1
    return seen / (time.perf_counter() - start)


def student_rate(batch: int, clip: tuple[int, int, int], classes: int, steps: int) -> tuple[float, str]:
    channels_last = True
    kwargs = {"num_classes": classes, "input_size": list(clip)}
    # what training would run in here: bf16 only where the probe finds it sound and faster
    precision = choose_precision("auto", build=lambda: build_model("c3d_student", **kwargs),
                                 model={"name": "c3d_student", **kwargs}, input_shape=(3, *clip), batch=batch,
                                 channels_last=channels_last).precision
    torch.manual_seed(0)
    model = to_memory_format(build_model("c3d_student", **kwargs), channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as make_optimizer
    x = to_memory_format(torch.randn(batch, 3, *clip), channels_last)
    y = torch.randint(0, classes, (batch,))
    model.train()

    def step() -> None:
        with autocast(precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: oneDNN primitive creation
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start), f"{precision}{' + channels_last_3d' if channels_last else ''}"


def flow_cost(cache: FrameCache, split: DatasetSplit, pairs: int) -> dict[str, float]:
    frames = np.asarray(cache.get(split.path(split.train[0])))[: pairs + 1]
    out = {}
    for method in ("farneback", "tvl1"):
        compute_flow(frames[:2], method)  # first call creates the TV-L1 object
        start = time.perf_counter()
        compute_flow(frames, method)
        out[method] = 1000 * (time.perf_counter() - start) / (len(frames) - 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clip", default="16x112x112", help="TxHxW of a clip")
    ap.add_argument("--resize", default="128x171", help="HxW frames are cached at")
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--min-clips", type=int, default=192, help="clips per warm-loader measurement")
    ap.add_argument("--student-steps", type=int, default=6)
    ap.add_argument("--flow-pairs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t, h, w = _pair(args.clip)
    resize = _pair(args.resize)
    spec = ClipSpec(clip_len=t, crop=(h, w))
    tmp = Path(tempfile.mkdtemp(prefix="edgekd_bench_pipeline_"))
    try:
        split = load_split(tmp, args.videos)
        cache = FrameCache(tmp / "cache", resize=resize)  # type: ignore[arg-type]
        ds = ClipDataset(split, "train", cache, spec, train=True, with_extras=True)
        print(f"data: {len(split.train)} videos ({split.source}); clip {t}x{h}x{w} from {resize[0]}x{resize[1]}; "
              f"batch {args.batch}; {args.threads} threads; {torch.get_num_threads()} torch threads")
        start = time.perf_counter()
        for i in range(len(ds)):  # cold: every sample decodes its video into the cache
            ds[i]
        cold = len(ds) / (time.perf_counter() - start)
        rows = [("cold decode (workers 0)", cold)]
        for kind in ("none", "camarena"):
            dsa = ClipDataset(split, "train", cache, spec, train=True, with_extras=True, augment=kind)
            for workers in (0, 1, 2):
                rows.append((f"warm cache, augment {kind}, workers {workers}",
                             loader_rate(dsa, args.batch, workers, args.min_clips)))
        student, mode = student_rate(args.batch, (t, h, w), len(split.classes), args.student_steps)
        flow = flow_cost(cache, split, args.flow_pairs)
        print(f"\n{'input pipeline':<50} {'clips/s':>9} {'/ student':>10}")
        for name, rate in rows:
            print(f"{name:<50} {rate:>9.1f} {rate / student:>9.2f}x")
        print(f"{'c3d_student train step (' + mode + ')':<50} {student:>9.1f} {1:>9.2f}x")
        print(f"\noptical flow at {resize[0]}x{resize[1]}: " + ", ".join(f"{m} {ms:.1f} ms/pair" for m, ms in flow.items()))
        best = max(r for n, r in rows if "warm" in n and "none" in n)
        print(f"\nratio warm pipeline (best worker count, augment none) / student: {best / student:.2f}x (goal >= 2)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
