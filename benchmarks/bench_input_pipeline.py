"""Input pipeline vs training, per frame-cache format: how big is the cache, and can the loader feed
the student (and the teacher) faster than they train?

Prints, measured in one run on this machine, for every format of ``edgekd.data.formats`` (raw, the
packed JPEG and WebP frames):

* size: cache bytes / source video bytes over the whole shared clip set, the time to fill the cache
  (decode, resize, encode, write; ``--threads`` threads, as the data stage), and what the sampled
  estimate of ``edgekd data --estimate`` predicted for it;
* pixel error of the lossy formats against the raw frames (mean absolute error, PSNR, worst pixel),
  and the same for optical flow (Farneback, a few videos) stored in each format, in flow-code levels;
* warm loader: clips/s of the training loader (random crop, flip, normalisation; optionally the
  Camarena photometric augmentation) with 0, 1 and 2 DataLoader workers, and cold decoding
  (every sample decodes its video, no cache) for reference;
* the c3d_student and c3d_teacher training steps (forward, backward, fused Adam, the precision
  ``precision: auto`` picks) at the same batch and clip shape, in clips/s, and every loader rate
  as a multiple of each (goals: >= 2x the student's, >= 10x the teacher's, with augmentation);
* the extrapolation to UCF101 and HMDB51 split 1 (videos counted from the split files): cache size,
  time to fill it, and the first epoch (fill + one student epoch).

Data: the shared real UCF101 clips (../shared/data/real/ucf101, split 1, missing videos skipped)
when present, else a synthetic set (then no extrapolation). Usage::

    .venv/bin/python benchmarks/bench_input_pipeline.py [--batch 8] [--clip 16x112x112] [--resize 128x171]

The pipeline and the models are timed one after the other on the same cores; during real training
they share those cores, which is why the goal asks for 2x headroom rather than 1x.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgekd.data.cache import FrameCache, load_entry, store_entry
from edgekd.data.clips import ClipDataset, ClipSpec, make_loader
from edgekd.data.estimate import estimate_cache, human_bytes
from edgekd.data.flow import compute_flow
from edgekd.data.formats import CACHE_FORMATS
from edgekd.data.splits import VIDEO_EXTENSIONS, DatasetSplit, read_ucf101
from edgekd.models import build_model
from edgekd.train.perf import autocast, to_memory_format
from edgekd.train.precision import choose_precision
from edgekd.utils.cpu_clock import CpuClock, process_cpu_s

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
REAL_UCF = REAL / "ucf101"
REAL_HMDB = REAL / "hmdb51"
# UCF101 (Soomro et al. 2012, Table 1): 13,320 clips, mean length 7.21 s at 25 fps; the shared
# clips are a sample, shorter on average, so the published mean is used for UCF101's frame count.
UCF101_MEAN_FRAMES = 7.21 * 25


def _pair(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


def load_split(tmp: Path) -> DatasetSplit:
    """Every present video of the shared UCF101 split 1 (train and test) as one training list."""
    if (REAL_UCF / "splits" / "classInd.txt").is_file():
        split = read_ucf101(REAL_UCF, split=1, on_missing="skip", val_fraction=0.0)
    else:
        from edgekd.data.synth import generate_dataset

        root = tmp / "synthetic"
        generate_dataset(root, per_class=8, num_frames=64, size=(171, 128), show_progress=False)
        split = read_ucf101(root, val_fraction=0.0)
    return DatasetSplit(split.root, split.classes, split.train + split.test, [], [], split.source)


def subset(split: DatasetSplit, n: int) -> DatasetSplit:
    return DatasetSplit(split.root, split.classes, split.train[:n], [], [], split.source)


def loader_rate(ds: ClipDataset, batch: int, workers: int, min_clips: int) -> tuple[float, float]:
    """Clips per wall second and per CPU second (workers included) over whole epochs (worker
    start-up included, as training pays it every epoch)."""
    torch.manual_seed(0)
    seen, start, cpu0, epoch = 0, time.perf_counter(), process_cpu_s(), 0
    while seen < min_clips:
        for x, _y, *_ in make_loader(ds, batch_size=batch, shuffle=True, workers=workers, seed=epoch):
            seen += x.shape[0]
        epoch += 1
    return seen / (time.perf_counter() - start), seen / (process_cpu_s() - cpu0)


def train_rate(name: str, batch: int, clip: tuple[int, int, int], classes: int,
               steps: int) -> tuple[float, float, str]:
    """Clips per wall and per CPU second of one model's training step, at the precision
    ``precision: auto`` picks here."""
    channels_last = True
    kwargs = {"num_classes": classes, "input_size": list(clip)}
    precision = choose_precision("auto", build=lambda: build_model(name, **kwargs), model={"name": name, **kwargs},
                                 input_shape=(3, *clip), batch=batch, channels_last=channels_last, log=None).precision
    torch.manual_seed(0)
    model = to_memory_format(build_model(name, **kwargs), channels_last)
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
    start, cpu0 = time.perf_counter(), process_cpu_s()
    for _ in range(steps):
        step()
    clips = steps * batch
    return (clips / (time.perf_counter() - start), clips / (process_cpu_s() - cpu0),
            f"{precision}{' + channels_last_3d' if channels_last else ''}")


def fill(cache: FrameCache, paths: list[Path], threads: int) -> dict[str, float]:
    """Fill the cache as the data stage does; its wall time, bytes and frames."""
    start = time.perf_counter()
    bad = cache.warm(paths, workers=threads, progress=False)
    seconds = time.perf_counter() - start
    good = [p for p in paths if p not in dict(bad)]
    nbytes = sum(cache.entry_path(p).stat().st_size for p in good)
    frames = sum(cache.get(p).shape[0] for p in good)
    return {"seconds": seconds, "bytes": nbytes, "frames": frames, "source": sum(p.stat().st_size for p in good),
            "videos": len(good)}


def pixel_error(raw: FrameCache, lossy: FrameCache, paths: list[Path]) -> dict[str, float]:
    """Mean absolute error, PSNR and worst pixel of ``lossy``'s frames against the raw ones."""
    abs_sum = sq_sum = count = worst = 0.0
    for p in paths:
        d = np.asarray(lossy.get(p)).astype(np.int16) - np.asarray(raw.get(p)).astype(np.int16)
        abs_sum += float(np.abs(d).sum())
        sq_sum += float((d.astype(np.float64) ** 2).sum())
        count += d.size
        worst = max(worst, float(np.abs(d).max()))
    mse = sq_sum / count
    return {"mae": abs_sum / count, "psnr": 10 * math.log10(255**2 / mse) if mse else math.inf, "max": worst}


def flow_storage(raw: FrameCache, paths: list[Path], tmp: Path) -> dict[str, dict[str, float]]:
    """Farneback flow of ``paths`` (from the raw frames) stored in every format: bytes / raw flow
    bytes and the error of the stored code in levels (1 level = 40/255 px)."""
    codes = [compute_flow(np.asarray(raw.get(p)), "farneback") for p in paths]
    out = {}
    for fmt in CACHE_FORMATS:
        nbytes, abs_sum, worst, count = 0, 0.0, 0.0, 0
        for i, code in enumerate(codes):
            entry = tmp / f"flow{i}{fmt.suffix}"
            nbytes += store_entry(entry, code, fmt, fmt.default_quality)
            back = load_entry(entry, fmt, channels=2)
            assert back is not None
            d = np.abs(np.asarray(back).astype(np.int16) - code.astype(np.int16))
            abs_sum, worst, count = abs_sum + float(d.sum()), max(worst, float(d.max())), count + d.size
        out[fmt.name] = {"ratio": sum(c.nbytes for c in codes) / nbytes, "mae": abs_sum / count, "max": worst}
    return out


def split_counts() -> dict[str, dict[str, int]]:
    """Videos in split 1 of UCF101 and HMDB51 (train, and all the data stage caches), from the
    shared split files; these list the full datasets, not just the shared clips."""
    counts = {}
    ucf = REAL_UCF / "splits"
    if (ucf / "trainlist01.txt").is_file():
        train = sum(1 for line in (ucf / "trainlist01.txt").read_text().splitlines() if line.strip())
        test = sum(1 for line in (ucf / "testlist01.txt").read_text().splitlines() if line.strip())
        counts["ucf101"] = {"train": train, "all": train + test}
    hmdb = REAL_HMDB / "splits"
    if hmdb.is_dir():
        tags = [line.split()[-1] for f in hmdb.glob("*_test_split1.txt") for line in f.read_text().splitlines()
                if line.strip()]
        counts["hmdb51"] = {"train": tags.count("1"), "all": tags.count("1") + tags.count("2")}
    return counts


def hmdb_paths() -> list[Path]:
    """Every shared HMDB51 clip (whatever its split tag): a sample of its content and lengths."""
    if not REAL_HMDB.is_dir():
        return []
    return sorted(p for p in REAL_HMDB.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


@dataclass(frozen=True)
class Row:
    """One loader measurement: clips per wall second and per CPU second (workers included)."""

    format: str
    loader: str  # "warm" (from the cache) or "cold decode" (every sample decodes its video)
    augment: str
    workers: int
    wall: float
    cpu: float


def measure_loaders(caches: dict[str, FrameCache], small: DatasetSplit, spec: ClipSpec, resize: Any,
                    tmp: Path, args: argparse.Namespace) -> list[Row]:
    cold_ds = ClipDataset(small, "train", FrameCache(tmp / "cold", resize=resize), spec, train=True, with_extras=True)
    start, cpu0 = time.perf_counter(), process_cpu_s()
    for i in range(len(cold_ds)):  # cold: every sample decodes its video
        cold_ds[i]
    rows = [Row("raw", "cold decode", "none", 0, len(cold_ds) / (time.perf_counter() - start),
                len(cold_ds) / (process_cpu_s() - cpu0))]
    for name, cache in caches.items():
        for kind in ("none", "camarena"):
            ds = ClipDataset(small, "train", cache, spec, train=True, with_extras=True, augment=kind)
            for workers in (0, 1, 2):
                rows.append(Row(name, "warm", kind, workers, *loader_rate(ds, args.batch, workers, args.min_clips)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clip", default="16x112x112", help="TxHxW of a clip")
    ap.add_argument("--resize", default="128x171", help="HxW frames are cached at")
    ap.add_argument("--videos", type=int, default=48, help="videos the loaders read (size uses every video)")
    ap.add_argument("--min-clips", type=int, default=192, help="clips per warm-loader measurement")
    ap.add_argument("--student-steps", type=int, default=6)
    ap.add_argument("--teacher-steps", type=int, default=2)
    ap.add_argument("--flow-videos", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t, h, w = _pair(args.clip)
    resize: Any = _pair(args.resize)
    spec = ClipSpec(clip_len=t, crop=(h, w))
    clock = CpuClock.start()
    tmp = Path(tempfile.mkdtemp(prefix="edgekd_bench_pipeline_"))
    try:
        split = load_split(tmp)
        paths = [split.path(i) for i in split.train]
        small = subset(split, args.videos)
        print(f"data: {len(paths)} videos ({split.source}); loaders on {len(small.train)}; clip {t}x{h}x{w} from "
              f"{resize[0]}x{resize[1]}; batch {args.batch}; {args.threads} threads", flush=True)
        caches = {f.name: FrameCache(tmp / "cache", resize=resize, format=f.name) for f in CACHE_FORMATS}

        print("\n[1/5] cache size, fill time, estimate", flush=True)
        sizes: dict[str, dict[str, Any]] = {}
        for name, cache in caches.items():
            est = estimate_cache(cache, paths, sample=8, threads=args.threads)
            sizes[name] = {**fill(cache, paths, args.threads), "estimate": est.cache_bytes, "est_hi": est.cache_bytes_hi,
                           "est_s": est.seconds}
        hmdb = hmdb_paths()
        hmdb_sizes = {name: fill(FrameCache(tmp / "hmdb", resize=resize, format=name), hmdb, args.threads)
                      for name in caches} if hmdb else {}

        print("[2/5] pixel error against raw", flush=True)
        errors = {name: pixel_error(caches["raw"], c, paths) for name, c in caches.items() if name != "raw"}
        flow = flow_storage(caches["raw"], paths[: args.flow_videos], tmp / "flow")

        print("[3/5] training steps and loaders (the student before and after the loaders)", flush=True)
        classes = len(split.classes)
        student = [train_rate("c3d_student", args.batch, (t, h, w), classes, args.student_steps)]
        rows = measure_loaders(caches, small, spec, resize, tmp, args)
        student.append(train_rate("c3d_student", args.batch, (t, h, w), classes, args.student_steps))
        print("[4/5] the teacher's training step", flush=True)
        teacher = train_rate("c3d_teacher", args.batch, (t, h, w), classes, args.teacher_steps)

        print("[5/5] report\n", flush=True)
        report_sizes(sizes, errors, flow, hmdb_sizes)
        report_loaders(rows, student, teacher, args)
        report_extrapolation(sizes, hmdb_sizes, rows, _mean(student, 0), teacher[0])
        host = clock.read()
        print(f"\nhost over the run: {host['wall_s']:.0f} s wall, this process {host['process_cpu_s']:.0f} CPU s; "
              f"all cores busy {_share(host['host_busy'])}, stolen by the hypervisor {_share(host['host_steal'])} "
              "(other work on the machine slows both sides of each ratio, not always alike)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mean(runs: list[tuple[float, float, str]], i: int) -> float:
    return sum(r[i] for r in runs) / len(runs)


def _share(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.0%}"


def report_sizes(sizes: dict[str, dict[str, Any]], errors: dict[str, dict[str, float]],
                 flow: dict[str, dict[str, float]], hmdb: dict[str, dict[str, float]]) -> None:
    raw = sizes["raw"]
    print(f"cache size on {raw['videos']} UCF101 clips ({human_bytes(raw['source'])} of video, {raw['frames']} frames)"
          + (f" and {next(iter(hmdb.values()))['videos']} HMDB51 clips" if hmdb else ""))
    print("| format | cache / source | raw / this | bytes/frame | estimate / actual (95% hi) | fill s (est.) | "
          "MAE | PSNR dB | max err | HMDB51 cache / source | flow: raw / this | flow MAE levels (max) |")
    print("| " + " | ".join(["---"] * 12) + " |")
    for name, s in sizes.items():
        e = errors.get(name)
        err = f"{e['mae']:.2f} | {e['psnr']:.1f} | {e['max']:.0f}" if e else "0 | inf | 0"
        est = f"{s['estimate'] / s['bytes']:.2f} ({(s['est_hi'] or 0) / s['bytes']:.2f})" if s["estimate"] else "-"
        hm = f"{hmdb[name]['bytes'] / hmdb[name]['source']:.2f}x" if hmdb else "-"
        print(f"| {name} | {s['bytes'] / s['source']:.2f}x | {raw['bytes'] / s['bytes']:.1f}x | "
              f"{s['bytes'] / s['frames']:.0f} | {est} | {s['seconds']:.1f} ({s['est_s'] or 0:.1f}) | {err} | {hm} | "
              f"{flow[name]['ratio']:.1f}x | {flow[name]['mae']:.2f} ({flow[name]['max']:.0f}) |")
    print()


def report_loaders(rows: list[Row], student: list[tuple[float, float, str]], teacher: tuple[float, float, str],
                   args: argparse.Namespace) -> None:
    s_wall, s_cpu, t_wall, t_cpu = _mean(student, 0), _mean(student, 1), teacher[0], teacher[1]
    print(f"c3d_student train step ({student[0][2]}): {s_wall:.1f} clips/s (before the loaders "
          f"{student[0][0]:.1f}, after {student[1][0]:.1f}), {s_cpu:.2f} clips per CPU s; c3d_teacher "
          f"({teacher[2]}): {t_wall:.2f} clips/s, {t_cpu:.3f} per CPU s (batch {args.batch}, {args.clip})")
    print("| format | loader | augment | workers | clips/s | / student | / teacher | clips per CPU s | "
          "/ student (CPU) |")
    print("| " + " | ".join(["---"] * 9) + " |")
    for r in rows:
        print(f"| {r.format} | {r.loader} | {r.augment} | {r.workers} | {r.wall:.1f} | {r.wall / s_wall:.2f}x | "
              f"{r.wall / t_wall:.1f}x | {r.cpu:.1f} | {r.cpu / s_cpu:.1f}x |")
    for name in dict.fromkeys(r.format for r in rows):
        best = max(r.wall for r in rows if r.format == name and r.loader == "warm" and r.augment == "camarena")
        print(f"{name}: best warm loader with Camarena augmentation = {best / s_wall:.2f}x the student (goal >= 2), "
              f"{best / t_wall:.1f}x the teacher (goal >= 10)")
    print()


def report_extrapolation(sizes: dict[str, dict[str, Any]], hmdb: dict[str, dict[str, float]], rows: list[Row],
                         student: float, teacher: float) -> None:
    counts = split_counts()
    if not counts:
        return
    print("extrapolation to split 1 at this resize (videos from the split files; frames per video: UCF101's "
          f"published mean {UCF101_MEAN_FRAMES:.0f}, HMDB51 the shared clips' mean; bytes per frame as measured "
          "on each dataset's clips, fill time per frame on UCF101's; first epoch = fill + one epoch of the "
          "student at min(student, best warm loader with Camarena))")
    print("| dataset | videos (train) | frames | format | cache | fill | first epoch |")
    print("| " + " | ".join(["---"] * 7) + " |")
    for ds, c in counts.items():
        per = sizes if ds == "ucf101" else hmdb
        if not per:
            continue
        mean = UCF101_MEAN_FRAMES if ds == "ucf101" else per["raw"]["frames"] / per["raw"]["videos"]
        frames = c["all"] * mean
        for name, s in sizes.items():
            nbytes = frames * per[name]["bytes"] / per[name]["frames"]
            fill_s = frames * s["seconds"] / s["frames"]
            best = max(r.wall for r in rows if r.format == name and r.loader == "warm" and r.augment == "camarena")
            epoch = c["train"] / min(student, best)
            print(f"| {ds} | {c['all']} ({c['train']}) | {frames / 1e6:.2f}M | {name} | {human_bytes(nbytes)} | "
                  f"{fill_s / 60:.0f} min | {(fill_s + epoch) / 60:.0f} min |")
    print(f"(one teacher epoch on UCF101 split 1 at {teacher:.2f} clips/s: "
          f"{counts.get('ucf101', {}).get('train', 0) / teacher / 3600:.1f} h)")


if __name__ == "__main__":
    main()
