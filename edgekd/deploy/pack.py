"""``edgekd pack``: turn a finished run into a self-contained deploy bundle (directory + .tar.gz).

A bundle holds the model for its target, the labels, the preprocessing spec taken from the
checkpoint's contract (T, resize, crop, mean/std, frame interval), the torch-free runtime package
itself (``edgekd_runtime/``, copied from :mod:`edgekd.runtime`) and a manifest with the sha256 of
every file and the versions it was made with. Nothing else from edgekd is needed on the device.

* ``cpu``: the run's OpenVINO IR (``fp32`` or ``int8``) and ``requirements.txt`` for a slim box.
* ``jetson``: the FP32 ONNX plus ``build_engine.sh``, because a TensorRT plan only runs on the
  TensorRT version and GPU that built it, so it is built on the device; for ``int8`` also the Q/DQ
  ONNX, for ``fp16`` also the FP16 ONNX, since the device's TensorRT decides how FP16 is built:
  strongly typed from the FP16 ONNX (10.x, 11.x) or with ``BuilderFlag.FP16`` on the FP32 ONNX (8.x).

A model that streams (the online TSM) also ships its per-frame step model, under ``model/stream/``
with its step spec, named by the manifest's ``stream`` entry (the runtime's ``--stream``): on ``cpu``
the OpenVINO step IR (row ``openvino_int8_stream`` in an int8 bundle when it was built, else
``openvino_fp32_stream``), on ``jetson`` the step ONNX, which the device runs with ONNX Runtime. A run whose export wrote a step graph but whose target row was not built
gets a ``stream_missing`` line in the manifest saying what to build, not a silent omission.

Refuses stale inputs: the engines' sidecars must name the sha256 of the run's current ONNX export.
"""

from __future__ import annotations

import platform
import shutil
import tarfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from edgekd import __version__
from edgekd.engines.table import EngineRow, bundle_rows, bundle_stream_rows, get_engine
from edgekd.runtime import RUNTIME_FILES
from edgekd.runtime.bundle import BUNDLE_FORMAT, MANIFEST, hash_tree, load_bundle
from edgekd.runtime.preprocess import PreprocessSpec
from edgekd.utils.atomic import atomic_dir, atomic_path, write_json
from edgekd.utils.hashing import sha256_file

__all__ = ["TARGETS", "PackError", "PackResult", "pack_bundle"]

# the precision a target ships when --precision is not given; which precisions it accepts, and the
# engine each one is, come from the backend table (rows with bundle == target)
DEFAULT_PRECISION = {"cpu": "fp32", "jetson": "fp16"}
TARGETS = tuple(DEFAULT_PRECISION)
_FILES = Path(__file__).with_name("files")
_RUNTIME_SRC = Path(__file__).resolve().parents[1] / "runtime"


class PackError(RuntimeError):
    """The run lacks what the bundle needs (or it is stale); the message says which file and what to run."""


@dataclass(frozen=True)
class PackResult:
    directory: Path
    tarball: Path
    manifest: dict[str, Any]


def pack_bundle(run_dir: str | Path, *, target: str, precision: str | None = None, out: str | Path | None = None,
                model: str = "student_kd") -> PackResult:
    """Write ``<out>/`` and ``<out>.tar.gz`` for ``model`` of ``run_dir``; verifies the result before returning."""
    run_dir = Path(run_dir)
    if target not in TARGETS:
        raise PackError(f"--target must be one of {sorted(TARGETS)}, got {target!r}")
    rows = bundle_rows(target)
    precision = precision or DEFAULT_PRECISION[target]
    if precision not in rows:
        raise PackError(f"target {target!r} accepts precisions {tuple(rows)}, not {precision!r}")
    row = rows[precision]
    if not run_dir.is_dir():
        raise PackError(f"run directory not found: {run_dir}")
    onnx_path = _require(run_dir / "export" / f"{model}.onnx", "run the export stage (edgekd export RECIPE)")
    spec, classes, provenance = _contract(run_dir, model)
    out = Path(out) if out else run_dir / "deploy" / f"{model}_{target}_{precision}"
    with atomic_dir(out) as tmp:
        if target == "cpu":
            model_entry, built_with = _stage_cpu(tmp, run_dir, model, row, onnx_path)
        else:
            model_entry, built_with = _stage_jetson(tmp, run_dir, model, row, onnx_path)
        stream = _stage_stream(tmp, run_dir, model, target, precision, onnx_path)
        write_json(tmp / "preprocess.json", spec.to_dict())
        write_json(tmp / "labels.json", list(classes))
        pkg = tmp / "edgekd_runtime"
        pkg.mkdir()
        for name in RUNTIME_FILES:
            shutil.copy2(_RUNTIME_SRC / name, pkg / name)
        shutil.copy2(_FILES / f"requirements-{target}.txt", tmp / "requirements.txt")
        manifest = {
            "format": BUNDLE_FORMAT,
            "target": target,
            "precision": precision,
            "model": model_entry,
            **stream,
            "preprocess": "preprocess.json",
            "labels": "labels.json",
            "run": "python -m edgekd_runtime . VIDEO  (or --camera 0; --stream for the per-frame step model when "
                   "the manifest names one), from inside this directory",
            "source": {"run_dir": str(run_dir), "model": model, "onnx_sha256": sha256_file(onnx_path), **provenance},
            "versions": {"edgekd": __version__, "python": platform.python_version(), **_versions(), **built_with},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": hash_tree(tmp),
        }
        write_json(tmp / MANIFEST, manifest)
        load_bundle(tmp)  # the bundle we ship must pass the check the device will run
    tarball = out.with_name(out.name + ".tar.gz")
    with atomic_path(tarball) as tmp_tar, tarfile.open(tmp_tar, "w:gz") as tar:
        tar.add(out, arcname=out.name)
    return PackResult(out, tarball, manifest)


def _contract(run_dir: Path, model: str) -> tuple[PreprocessSpec, list[str], dict[str, Any]]:
    """Input spec and classes from the model's checkpoint (its contract), cross-checked with the export."""
    from edgekd.train.checkpoint import load_checkpoint

    ckpt_path = _require(run_dir / model / "ckpt.pt", f"train the {model!r} model first")
    ckpt = load_checkpoint(ckpt_path)
    try:
        spec = PreprocessSpec.from_dict(ckpt.input_spec)
    except ValueError as exc:
        raise PackError(f"{ckpt_path}: its input spec cannot be deployed: {exc}") from exc
    if not ckpt.classes:
        raise PackError(f"{ckpt_path}: the checkpoint names no classes")
    return spec, list(ckpt.classes), {"checkpoint": str(ckpt_path), "checkpoint_metrics": ckpt.metrics}


def _stage_cpu(tmp: Path, run_dir: Path, model: str, row: EngineRow, onnx_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    xml = _require(row.path(run_dir, model), f"run the engines stage with {row.name} in engines.build")
    src = xml.parent
    sidecar = _fresh_sidecar(src / "engine.json", onnx_path)
    (tmp / "model").mkdir()
    for f in (xml, xml.with_suffix(".bin")):
        shutil.copy2(_require(f, "re-run the engines stage"), tmp / "model" / f.name)
    shutil.copy2(src / "engine.json", tmp / "model" / "engine.json")
    versions = {f"built_with_{k}": v for k, v in sidecar.get("versions", {}).items() if k in ("openvino", "nncf")}
    return {"backend": "openvino", "file": "model/model.xml", "precision_hint": "f32"}, versions


# The ONNX a jetson bundle ships for each row a TensorRT row needs, and the manifest key naming it:
# TensorRT builds the Q/DQ ONNX instead of the FP32 one ("file"); the FP16 ONNX beside it ("file_fp16"),
# which the device's TensorRT builds strongly typed where it can (10.x, 11.x).
_JETSON_ONNX = {"onnxruntime_int8": ("model_int8_qdq", "file"), "onnxruntime_fp16": ("model_fp16", "file_fp16")}


def _stage_jetson(tmp: Path, run_dir: Path, model: str, row: EngineRow, onnx_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    (tmp / "model").mkdir()
    shutil.copy2(onnx_path, tmp / "model" / "model.onnx")
    files = {"file": "model/model.onnx"}
    for need in row.needs:
        stem, key = _JETSON_ONNX[need]
        files[key] = _ship_onnx(tmp, run_dir, model, need, stem, onnx_path)
    for script in ("build_engine.sh", "run.sh"):
        shutil.copy2(_FILES / script, tmp / script)
    graph = onnx.load(str(tmp / files["file"]), load_external_data=False).graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    trt_precision = row.name.removeprefix("tensorrt_")
    entry = {"backend": "tensorrt", **files, "tensorrt_precision": trt_precision,
             "engine": f"engines/model_{trt_precision}.plan", "build": "build_engine.sh",
             "input": {"name": graph.input[0].name, "shape": dims}}
    return entry, {"onnx_opset": str(next((o.version for o in onnx.load(str(onnx_path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")), ""))}


def _stage_stream(tmp: Path, run_dir: Path, model: str, target: str, precision: str, onnx_path: Path) -> dict[str, Any]:
    """The target's step model into ``model/stream/`` -> ``{"stream": entry}``; ``{}`` for a model
    that does not stream; ``{"stream_missing": why}`` when it streams but no step row was built.
    The step in the bundle's precision when its row was built (``openvino_int8_stream`` for a cpu
    int8 bundle), else the FP32 step, with ``stream_note`` saying which row was missing."""
    from edgekd.runtime.online import StepSpec, step_spec_path

    rows = bundle_stream_rows(target)
    step_onnx = get_engine("onnxruntime_fp32_stream").path(run_dir, model)
    if not rows or not step_onnx.is_file():
        return {}
    wanted = rows.get(precision, rows["fp32"])
    row = wanted if wanted.path(run_dir, model).is_file() else rows["fp32"]
    note = {} if row is wanted else {"stream_note": f"{wanted.name} was not built ({wanted.path(run_dir, model)} is "
                                                    f"missing): the bundle streams with {row.name}"}
    src = row.path(run_dir, model)
    if not src.is_file():
        return {"stream_missing": f"{step_onnx.name} was exported but {row.name} was not built ({src} is missing): "
                                  f"add {row.name} to engines.build and re-run the engines stage to ship streaming"}
    dest = tmp / "model" / "stream"
    dest.mkdir(parents=True)
    if src.suffix == ".xml":
        sidecar = _fresh_sidecar(src.parent / "engine.json", onnx_path)
        if sidecar.get("source_step_onnx_sha256") != sha256_file(step_onnx):
            raise PackError(f"{src.parent / 'engine.json'} was built from another step graph than {step_onnx}: re-run "
                            "the engines stage (edgekd engines RECIPE --force)")
        for f in (src, src.with_suffix(".bin"), src.parent / "engine.json"):
            shutil.copy2(f, dest / f.name)
    else:
        shutil.copy2(src, dest / f"model{src.suffix}")
    name = f"model{src.suffix}"
    shutil.copy2(step_spec_path(src), step_spec_path(dest / name))
    spec = StepSpec.load(step_spec_path(dest / name))
    rel = f"model/stream/{name}"
    return {"stream": {"backend": row.backend, "file": rel, "spec": step_spec_path(rel).as_posix(),
                       "precision": row.precision, "window": spec.window, "state_tensors": len(spec.state),
                       "engine_row": row.name}, **note}


def _ship_onnx(tmp: Path, run_dir: Path, model: str, row_name: str, stem: str, onnx_path: Path) -> str:
    """Copy ``row_name``'s ONNX (checked fresh against the export) and its sidecar into ``model/``."""
    src = _require(get_engine(row_name).path(run_dir, model),
                   f"run the engines stage with {row_name} in engines.build and {model} in engines.edge_models")
    _fresh_sidecar(src.parent / "engine.json", onnx_path)
    shutil.copy2(src, tmp / "model" / f"{stem}.onnx")
    shutil.copy2(src.parent / "engine.json", tmp / "model" / f"{stem}.json")
    return f"model/{stem}.onnx"


def _fresh_sidecar(path: Path, onnx_path: Path) -> dict[str, Any]:
    import json

    sidecar = json.loads(_require(path, "re-run the engines stage").read_text())
    if sidecar.get("source_onnx_sha256") != sha256_file(onnx_path):
        raise PackError(f"{path} was built from another ONNX than {onnx_path} (sha256 differs): the engines are "
                        "stale, re-run the engines stage (edgekd engines RECIPE --force)")
    return sidecar


def _versions() -> dict[str, str]:
    out = {}
    for name in ("numpy", "onnx", "onnxruntime", "openvino", "opencv-contrib-python-headless"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _require(path: Path, fix: str) -> Path:
    if not path.is_file():
        raise PackError(f"{path} is missing: {fix}")
    return path
