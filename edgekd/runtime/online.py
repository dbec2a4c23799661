"""Streaming (online) classification with a per-frame step model: one frame in per call, the
model's temporal state carried from call to call as explicit tensors, a prediction per frame.

Why: a clip model run on a sliding window recomputes all T frames for every new frame. An online
TSM (``tsm_mobilenetv2_online``) only ever looks back, so its clip can be computed one frame at a
time: the export stage writes its *step* graph, ``frame`` plus one ``shift_in_i`` per shifted
block in, ``logits`` (this frame's) plus ``shift_out_i`` out, and a step spec (JSON, beside the
model, same stem) that names those tensors, their shapes and the window T. This module feeds each
frame with the previous call's state (zeros before the first frame) and predicts the running mean
of the last T per-frame logits, as ``edgekd.models.tsm.StreamingTSM`` does in PyTorch: over a
stream's first T frames that is exactly the online model's clip logits on those frames.

Nothing here knows about TSM: any step graph whose spec pairs state inputs with state outputs runs.
Backends: OpenVINO (the cpu bundle's IR) and ONNX Runtime (the step ONNX, e.g. on Jetson), each
imported only when asked for. Like the rest of the runtime, this file imports no torch and no edgekd.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .backends import compile_config
from .bundle import Bundle, BundleError
from .preprocess import PreprocessSpec, normalize_clip, prepare_frame
from .stream import Source, Timings, _frames

__all__ = ["STEP_FORMAT", "FramePrediction", "FrameStream", "OnnxRuntimeStep", "OpenVinoStep", "StateTensor",
           "StepSpec", "StreamTimings", "classify_stream", "load_step", "load_stream_backend", "step_spec_path"]

STEP_FORMAT = "edgekd-step-v1"


def step_spec_path(model_file: str | Path) -> Path:
    """Where a step model's spec lives: beside it, same stem, ``.json`` (``x_step.onnx`` ->
    ``x_step.json``, ``model.xml`` -> ``model.json``)."""
    return Path(model_file).with_suffix(".json")


@dataclass(frozen=True)
class StateTensor:
    """One carried tensor: fed as ``input``, read back as ``output``; ``shape`` without the batch axis."""

    input: str
    output: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class StepSpec:
    """The contract of a step graph (``edgekd-step-v1``): tensor names, shapes and the window."""

    frame: str  # input name of the frame, (N, C, H, W)
    frame_shape: tuple[int, int, int]  # (C, H, W)
    logits: str  # output name of this frame's logits, (N, K)
    num_classes: int
    state: tuple[StateTensor, ...]
    window: int  # T: the prediction is the running mean of the last T per-frame logits

    def __post_init__(self) -> None:
        if self.window < 1 or self.num_classes < 1 or len(self.frame_shape) != 3:
            raise ValueError(f"bad step spec: window {self.window}, classes {self.num_classes}, "
                             f"frame shape {self.frame_shape}")
        for s in self.state:
            if s.dtype != "float32":
                raise ValueError(f"step state {s.input!r} is {s.dtype}; this runtime carries float32 state")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepSpec:
        if data.get("format") != STEP_FORMAT:
            raise ValueError(f"step spec format is {data.get('format')!r}, expected {STEP_FORMAT!r}")
        if any(s.get("initial", "zeros") != "zeros" for s in data["state"]):
            raise ValueError("this runtime starts every state tensor at zeros")
        state = tuple(StateTensor(s["input"], s["output"], tuple(int(d) for d in s["shape"]), s.get("dtype", "float32"))
                      for s in data["state"])
        return cls(frame=data["frame"]["name"], frame_shape=tuple(int(d) for d in data["frame"]["shape"]),  # type: ignore[arg-type]
                   logits=data["logits"]["name"], num_classes=int(data["logits"]["classes"]), state=state,
                   window=int(data["window"]))

    @classmethod
    def load(cls, path: str | Path) -> StepSpec:
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"step spec not found: {path}")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: bad step spec: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"format": STEP_FORMAT, "window": self.window,
                "frame": {"name": self.frame, "shape": list(self.frame_shape), "dtype": "float32"},
                "logits": {"name": self.logits, "classes": self.num_classes, "dtype": "float32"},
                "state": [{"input": s.input, "output": s.output, "shape": list(s.shape), "dtype": s.dtype,
                           "initial": "zeros"} for s in self.state],
                "prediction": f"running mean of the last {self.window} per-frame logits (fewer at a stream's start)"}

    def initial_state(self, batch: int) -> list[np.ndarray]:
        """Zeros: the state before a stream's first frame."""
        return [np.zeros((batch, *s.shape), dtype=np.float32) for s in self.state]


class Step(Protocol):
    spec: StepSpec

    def run(self, frame: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]: ...


class OpenVinoStep:
    """A step IR compiled for CPU with a static batch (the stream count), explicit threads and an
    explicit f32 precision hint (see :class:`~.backends.OpenVinoBackend` for why the hint).

    The batch is made static because the graph is small and called once per frame: with the batch
    axis left dynamic, OpenVINO re-infers shapes on every call, measured here as a third of the
    step's time. State outputs are copied out, since the request reuses its output buffers."""

    def __init__(self, xml_path: str | Path, spec: StepSpec, *, threads: int | None = None,
                 precision_hint: str | None = "f32", batch: int = 1) -> None:
        import openvino as ov

        self.path, self.spec, self.batch = Path(xml_path), spec, batch
        if not self.path.is_file() or not self.path.with_suffix(".bin").is_file():
            raise BundleError(f"OpenVINO step IR not found: {self.path} (+ .bin)")
        core = ov.Core()
        model = core.read_model(str(self.path))
        model.reshape({p.get_any_name(): ov.PartialShape([batch, *list(p.get_partial_shape())[1:]])
                       for p in model.inputs})
        self.compiled = core.compile_model(model, "CPU", compile_config(threads, precision_hint))
        self.version = ov.get_version()
        self._ov = ov
        self._request = self.compiled.create_infer_request()
        names_in = [p.get_any_name() for p in self.compiled.inputs]
        names_out = [p.get_any_name() for p in self.compiled.outputs]
        _check_names(self.path, names_in, names_out, spec)
        # port indices in the spec's order, looked up once (by name on every call cost ~10% of a step)
        self._inputs = [names_in.index(n) for n in (spec.frame, *(s.input for s in spec.state))]
        self._outputs = [names_out.index(n) for n in (spec.logits, *(s.output for s in spec.state))]

    def run(self, frame: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        request, tensor = self._request, self._ov.Tensor
        for index, array in zip(self._inputs, (frame, *state)):
            request.set_input_tensor(index, tensor(np.ascontiguousarray(array, dtype=np.float32), shared_memory=True))
        request.infer()
        out = [request.get_output_tensor(index).data.copy() for index in self._outputs]
        return out[0], out[1:]

    def describe(self) -> dict[str, Any]:
        return {"backend": "openvino", "backend_version": self.version, "model_file": str(self.path),
                "inference_precision_hint": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")), "batch": self.batch}


class OnnxRuntimeStep:
    """The step ONNX in ONNX Runtime's CPU provider (sequential, explicit intra-op threads)."""

    def __init__(self, onnx_path: str | Path, spec: StepSpec, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path, self.spec = Path(onnx_path), spec
        if not self.path.is_file():
            raise BundleError(f"step ONNX not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.version = ort.__version__
        self.threads = threads
        self._inputs = [spec.frame, *(s.input for s in spec.state)]
        self._outputs = [spec.logits, *(s.output for s in spec.state)]
        _check_names(self.path, [i.name for i in self.session.get_inputs()],
                     [o.name for o in self.session.get_outputs()], spec)

    def run(self, frame: np.ndarray, state: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self.session.run(self._outputs, dict(zip(self._inputs, (frame, *state))))
        return out[0], list(out[1:])

    def describe(self) -> dict[str, Any]:
        return {"backend": "onnxruntime", "backend_version": self.version, "model_file": str(self.path),
                "inference_precision_hint": "f32", "threads": self.threads or "default"}


def _check_names(path: Path, inputs: list[str], outputs: list[str], spec: StepSpec) -> None:
    """The graph's tensors are the ones the spec names: a spec of another model is an error here,
    not a stream that silently feeds the wrong state into the wrong input."""
    want_in = {spec.frame, *(s.input for s in spec.state)}
    want_out = {spec.logits, *(s.output for s in spec.state)}
    if set(inputs) != want_in or not want_out <= set(outputs):
        raise BundleError(f"{path}: graph inputs {sorted(inputs)} / outputs {sorted(outputs)} do not match its step "
                          f"spec (inputs {sorted(want_in)}, outputs {sorted(want_out)})")


def load_step(backend: str, path: str | Path, spec: StepSpec | None = None, *, threads: int | None = None,
              batch: int = 1) -> OpenVinoStep | OnnxRuntimeStep:
    """A step runner for ``backend`` (``openvino`` | ``onnxruntime``); the spec defaults to the file beside it."""
    spec = spec or StepSpec.load(step_spec_path(path))
    if backend == "openvino":
        return OpenVinoStep(path, spec, threads=threads, batch=batch)
    if backend == "onnxruntime":
        try:
            return OnnxRuntimeStep(path, spec, threads=threads)
        except ImportError as exc:  # not in the jetson image: the step ONNX needs it
            raise BundleError(f"the step model {path} runs in ONNX Runtime, which is not installed here "
                              f"(pip install onnxruntime): {exc}") from exc
    raise BundleError(f"unknown step backend {backend!r} (openvino, onnxruntime)")


class FrameStream:
    """Feeds frames through a step runner, carrying its state, and keeps the window's logits.

    ``push(frame)`` takes ``(N, C, H, W)`` float32 (N streams at once, N the runner's batch) and
    returns the running mean of the last ``window`` per-frame logits ``(N, K)``; ``reset()`` starts
    new streams (zero state, empty window). The mean is taken in float64 and returned as float32.
    """

    def __init__(self, step: Step, *, batch: int = 1) -> None:
        self.step, self.spec, self.batch = step, step.spec, batch
        self.reset()

    def reset(self) -> None:
        self.state = self.spec.initial_state(self.batch)
        # the last `window` per-frame logits, a ring: slot frames % window is the oldest once full
        self._ring = np.zeros((self.spec.window, self.batch, self.spec.num_classes), dtype=np.float64)
        self.frames = 0
        self.last_logits: np.ndarray | None = None

    def push(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape != (self.batch, *self.spec.frame_shape) or frame.dtype != np.float32:
            raise ValueError(f"expected a float32 frame batch {(self.batch, *self.spec.frame_shape)}, got "
                             f"{frame.dtype} {tuple(frame.shape)}")
        logits, self.state = self.step.run(frame, self.state)
        if logits.shape != (self.batch, self.spec.num_classes):
            raise RuntimeError(f"step model returned logits {tuple(logits.shape)}, its spec says "
                               f"{(self.batch, self.spec.num_classes)}")
        self._ring[self.frames % self.spec.window] = logits
        self.frames += 1
        self.last_logits = logits
        return self._ring[: self.window_frames].mean(axis=0).astype(np.float32)

    @property
    def window_frames(self) -> int:
        """Per-frame logits in the current mean (``window`` once the stream is that long)."""
        return min(self.frames, self.spec.window)


@dataclass(frozen=True)
class FramePrediction:
    """The prediction after one model frame. ``frame`` is the decoded-frame index it was taken from."""

    index: int  # predictions before this one
    step: int  # model frames before this one (the step model's call count - 1)
    frame: int
    t_s: float
    window_frames: int  # per-frame logits averaged (the window T once the stream is long enough)
    label: str
    label_index: int
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"type": "frame", "prediction": self.index, "step": self.step, "frame": self.frame, "t_s": round(self.t_s, 4),
                "window_frames": self.window_frames, "label": self.label, "label_index": self.label_index,
                "score": round(self.score, 6)}

    def readable(self) -> str:
        return (f"[{self.t_s:8.2f}s] frame {self.frame:5d} (window {self.window_frames:2d}): "
                f"{self.label} ({self.score:.3f})")


@dataclass
class StreamTimings(Timings):
    """:class:`~.stream.Timings` of a stream: ``windows`` counts emitted predictions, ``steps`` the
    frames run through the step model (every ``frame_interval``-th decoded frame)."""

    steps: int = 0

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.pop("inference_ms_per_window", None)
        return {**out, "mode": "stream", "predictions": self.windows, "steps": self.steps,
                "inference_ms_per_step": round(1000 * self.inference_s / self.steps, 3) if self.steps else None}

    def readable(self) -> str:
        per_step = 1000 * self.inference_s / self.steps if self.steps else float("nan")
        return (f"{self.frames} frames ({self.steps} through the step model), {self.windows} predictions in "
                f"{self.wall_s:.2f} s: end-to-end {self.to_json()['fps_end_to_end']} FPS, inference "
                f"{per_step:.2f} ms per model frame")


def classify_stream(source: Source, spec: PreprocessSpec, stream: FrameStream, labels: tuple[str, ...], *,
                    every: int = 1, max_predictions: int | None = None,
                    on_prediction: Callable[[FramePrediction], None] | None = None) -> StreamTimings:
    """Run ``source`` through ``stream`` frame by frame; a prediction every ``every`` model frames.

    Model frames are every ``spec.frame_interval``-th decoded frame, the sampling the clips were
    trained on, so T model frames span one training window. Each is prepared exactly as a window's
    frames are (``prepare_frame``, ``normalize_clip``), so the first T predictions' inputs are the
    first window's, bit for bit.
    """
    if every < 1:
        raise ValueError(f"--every must be >= 1 model frames, got {every}")
    if len(labels) != stream.spec.num_classes:
        raise RuntimeError(f"step model has {stream.spec.num_classes} classes, the bundle has {len(labels)} labels")
    timings = StreamTimings()
    t_start = time.perf_counter()
    try:
        for frame_idx, bgr, t_decode in _frames(source):
            timings.decode_s += t_decode
            timings.frames += 1
            if frame_idx % spec.frame_interval:
                continue
            t0 = time.perf_counter()
            frame = normalize_clip(prepare_frame(bgr, spec)[None], spec)[:, 0][None]
            t1 = time.perf_counter()
            logits = stream.push(frame)[0]
            t2 = time.perf_counter()
            timings.preprocess_s += t1 - t0
            timings.inference_s += t2 - t1
            timings.steps += 1
            if timings.steps % every:
                continue
            t_s = frame_idx / source.fps if source.fps else time.perf_counter() - t_start
            result = _prediction(logits, labels, timings.windows, timings.steps - 1, frame_idx, t_s, stream.window_frames)
            timings.windows += 1
            if on_prediction:
                on_prediction(result)
            if max_predictions is not None and timings.windows >= max_predictions:
                break
    finally:
        source.cap.release()
    timings.wall_s = time.perf_counter() - t_start + source.first_decode_s
    return timings


def _prediction(logits: np.ndarray, labels: tuple[str, ...], index: int, step: int, frame: int, t_s: float,
                window_frames: int) -> FramePrediction:
    z = logits.astype(np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    k = int(np.argmax(z))
    return FramePrediction(index, step, frame, t_s, window_frames, labels[k], k, float(probs[k]))


def load_stream_backend(bundle: Bundle, *, threads: int | None = None) -> OpenVinoStep | OnnxRuntimeStep:
    """The bundle's step model (manifest key ``stream``), or a :class:`BundleError` saying why there is none."""
    entry = bundle.manifest.get("stream")
    if not entry:
        why = bundle.manifest.get("stream_missing") or ("only an online model, e.g. tsm_mobilenetv2_online, streams; "
                                                        "run it without --stream")
        raise BundleError(f"{bundle.root / 'manifest.json'}: this bundle has no streaming step model: {why}")
    spec = StepSpec.load(bundle.path(entry["spec"]))
    return load_step(entry["backend"], bundle.path(entry["file"]), spec, threads=threads)
