"""``python -m edgekd_runtime BUNDLE (VIDEO | --camera N) [--stride S]`` (inside a bundle: ``BUNDLE`` = ``.``).

Prints one readable line per window on stderr and one JSON object per window on stdout (or to
``--jsonl FILE``), then a summary with end-to-end FPS split into decode, preprocess and inference.
Exit status 2 with a one-line error for a bad bundle, a missing file or an unreadable stream.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from .backends import load_backend
from .bundle import BundleError, load_bundle
from .stream import SourceError, WindowResult, classify_capture, open_source


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekd_runtime", description="Classify a video or camera with an edgekd bundle.")
    p.add_argument("bundle", help="bundle directory (the one holding manifest.json)")
    p.add_argument("video", nargs="?", help="video file to classify")
    p.add_argument("--camera", type=int, default=None, help="camera index instead of a file (e.g. 0)")
    p.add_argument("--stride", type=int, default=None, help="decoded frames between window starts (default: one window span)")
    p.add_argument("--max-windows", type=int, default=None)
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
    out: TextIO = sys.stdout if args.jsonl == "-" else open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115
    try:
        bundle = load_bundle(args.bundle)
        backend = load_backend(bundle, threads=args.threads, engine=args.engine)
        # One warm-up inference outside the timings: the first call pays one-off allocation/JIT costs.
        spec = bundle.spec
        backend.infer(np.zeros((1, 3, spec.clip_len, *spec.crop), dtype=np.float32))
        source = open_source(args.video, camera=args.camera)

        def emit(result: WindowResult) -> None:
            out.write(json.dumps(result.to_json()) + "\n")
            out.flush()
            if not args.quiet:
                print(result.readable(), file=sys.stderr, flush=True)

        timings = classify_capture(source, bundle.spec, backend, bundle.labels, stride=args.stride,
                                   max_windows=args.max_windows, on_window=emit)
        out.write(json.dumps({**timings.to_json(), "source": source.name, "target": bundle.target,
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


if __name__ == "__main__":
    raise SystemExit(main())
