"""``python -m edgekd_runtime BUNDLE (VIDEO | --camera N) [--stride S | --stream [--every N]]``
(inside a bundle: ``BUNDLE`` = ``.``).

Prints one readable line per window on stderr and one JSON object per window on stdout (or to
``--jsonl FILE``), then a summary with end-to-end FPS split into decode, preprocess and inference.
``--stream`` runs the bundle's per-frame step model instead (online models only, ``online.py``):
its state is carried from frame to frame and a prediction comes every ``--every`` model frames.
Exit status 2 with a one-line error for a bad bundle, a missing file or an unreadable stream.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import numpy as np

from .backends import load_backend
from .bundle import Bundle, BundleError, load_bundle
from .online import FramePrediction, FrameStream, classify_stream, load_stream_backend
from .stream import SourceError, Timings, WindowResult, classify_capture, open_source


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekd_runtime", description="Classify a video or camera with an edgekd bundle.")
    p.add_argument("bundle", help="bundle directory (the one holding manifest.json)")
    p.add_argument("video", nargs="?", help="video file to classify")
    p.add_argument("--camera", type=int, default=None, help="camera index instead of a file (e.g. 0)")
    p.add_argument("--stride", type=int, default=None, help="decoded frames between window starts (default: one window span)")
    p.add_argument("--max-windows", type=int, default=None, help="stop after this many windows (predictions with --stream)")
    p.add_argument("--stream", action="store_true",
                   help="per-frame streaming with the bundle's step model, state carried between frames")
    p.add_argument("--every", type=int, default=1, help="with --stream: a prediction every N model frames (default 1)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (OpenVINO)")
    p.add_argument("--engine", default=None, help="TensorRT plan to use instead of the bundle's default")
    p.add_argument("--jsonl", default="-", help="where JSON lines go ('-' = stdout)")
    p.add_argument("--quiet", action="store_true", help="no readable lines, JSON only")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.video is None) == (args.camera is None):
        print("edgekd_runtime: error: give a video file or --camera N (exactly one)", file=sys.stderr)
        return 2
    if args.stream and args.stride is not None:
        print("edgekd_runtime: error: --stride is for windows; --stream predicts every --every frames", file=sys.stderr)
        return 2
    out: TextIO = sys.stdout if args.jsonl == "-" else open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115
    try:
        bundle = load_bundle(args.bundle)

        def emit(result: WindowResult | FramePrediction) -> None:
            out.write(json.dumps(result.to_json()) + "\n")
            out.flush()
            if not args.quiet:
                print(result.readable(), file=sys.stderr, flush=True)

        timings, source_name = _stream(bundle, args, emit) if args.stream else _windows(bundle, args, emit)
        out.write(json.dumps({**timings.to_json(), "source": source_name, "target": bundle.target,
                              "precision": bundle.precision}) + "\n")
        if not args.quiet:
            print(timings.readable(), file=sys.stderr)
        return 0
    except (BundleError, SourceError, FileNotFoundError, ValueError) as exc:
        print(f"edgekd_runtime: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout:
            out.close()


def _windows(bundle: Bundle, args: argparse.Namespace, emit: Callable[[WindowResult], None]) -> tuple[Timings, str]:
    backend = load_backend(bundle, threads=args.threads, engine=args.engine)
    # One warm-up inference outside the timings: the first call pays one-off allocation/JIT costs.
    spec = bundle.spec
    backend.infer(np.zeros((1, 3, spec.clip_len, *spec.crop), dtype=np.float32))
    source = open_source(args.video, camera=args.camera)
    return classify_capture(source, spec, backend, bundle.labels, stride=args.stride,
                            max_windows=args.max_windows, on_window=emit), source.name


def _stream(bundle: Bundle, args: argparse.Namespace, emit: Callable[[FramePrediction], None]) -> tuple[Timings, str]:
    stream = FrameStream(load_stream_backend(bundle, threads=args.threads))
    stream.push(np.zeros((1, *stream.spec.frame_shape), dtype=np.float32))  # warm-up, outside the timings
    stream.reset()
    source = open_source(args.video, camera=args.camera)
    return classify_stream(source, bundle.spec, stream, bundle.labels, every=args.every,
                           max_predictions=args.max_windows, on_prediction=emit), source.name


if __name__ == "__main__":
    raise SystemExit(main())
