"""A per-frame step graph behind the clip :class:`~edgekd.engines.base.Engine` interface.

The streaming rows of the backend table (``stream_of``) hold a model's step graph: one frame and
the carried state in, that frame's logits and the new state out (``edgekd.runtime.online``). To
evaluate one like any other engine, :meth:`StreamingEngine.infer` streams each clip's T frames
through it from the zero state and returns the running mean of the per-frame logits: for the
online TSM that is its clip logits, so accuracy columns compare directly with the clip rows. The
frame-by-frame machinery is the deploy runtime's own (``FrameStream`` and its step runners), so
what the bench measures is what a bundle's ``--stream`` runs; :meth:`StreamingEngine.push` is one
frame of a running stream, what the bench times per frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.engines.base import Engine, check_batch, check_logits
from edgekd.runtime.online import FrameStream, StepSpec, load_step, step_spec_path

__all__ = ["StreamingEngine"]

_BACKENDS = ("openvino", "onnxruntime")


class StreamingEngine(Engine):
    """``backend``'s runner of the step graph at ``path`` (its spec beside it), one per batch size.

    OpenVINO compiles the step with a static batch (see ``OpenVinoStep``), so a runner is made per
    batch size seen, always with the f32 precision hint (read back and checked): ``precision`` names
    the graph's own precision, ``int8`` for an NNCF-quantized step IR, whose quantized ops the CPU
    plugin runs in 8-bit kernels under that hint, as for the clip INT8 IR.
    """

    def __init__(self, backend: str, path: str | Path, *, threads: int | None = None, name: str | None = None,
                 precision: str = "fp32") -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"StreamingEngine: backend must be one of {_BACKENDS}, got {backend!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"step model not found: {self.path}")
        if threads is not None and threads < 1:
            raise ValueError(f"StreamingEngine for {self.path}: threads must be >= 1, got {threads}")
        if precision not in ("fp32", "int8"):
            raise ValueError(f"StreamingEngine for {self.path}: precision must be fp32 or int8, got {precision!r}")
        self.backend, self.threads, self.precision = backend, threads, precision
        self.spec = StepSpec.load(step_spec_path(self.path))
        self.name = name or f"{backend}_{precision}_stream"
        self._streams: dict[int, FrameStream] = {}
        self._live = self._stream(1)

    def _stream(self, batch: int) -> FrameStream:
        if batch not in self._streams:
            runner = load_step(self.backend, self.path, self.spec, threads=self.threads, batch=batch)
            hint = runner.describe()["inference_precision_hint"]
            if hint != "f32":
                raise RuntimeError(f"{self.name}: {self.path} compiled with inference precision {hint!r}, expected f32")
            self._streams[batch] = FrameStream(runner, batch=batch)
        return self._streams[batch]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Each clip streamed from the zero state; the running mean after its last frame."""
        batch = check_batch(batch, self.name)
        if (batch.shape[1], *batch.shape[3:]) != self.spec.frame_shape:
            raise ValueError(f"{self.name}: clips {tuple(batch.shape)} do not hold frames {self.spec.frame_shape}")
        stream = self._stream(batch.shape[0])
        stream.reset()
        for t in range(batch.shape[2]):
            logits = stream.push(np.ascontiguousarray(batch[:, :, t]))
        return check_logits(logits, batch.shape[0], self.name)

    def push(self, frame: np.ndarray) -> np.ndarray:
        """One frame ``(1, C, H, W)`` of a running single stream (state carried from the last call)."""
        return self._live.push(frame)

    def reset(self) -> None:
        """Start the single stream of :meth:`push` again."""
        self._live.reset()

    def describe(self) -> dict[str, Any]:
        runner = self._live.step.describe()  # type: ignore[attr-defined]
        return {
            "name": self.name,
            "backend": self.backend,
            "backend_version": runner["backend_version"],
            "precision": self.precision,
            "inference_precision_hint": runner["inference_precision_hint"],
            "threads": runner["threads"],
            "device": "cpu",
            "model_file": str(self.path),
            "mode": "stream",
            "window": self.spec.window,
            "state_tensors": len(self.spec.state),
            "notes": f"per-frame step graph, state carried between frames; a clip's logits are the running mean "
                     f"of its last {self.spec.window} per-frame logits",
        }
