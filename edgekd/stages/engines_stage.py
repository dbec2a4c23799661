"""Engines stage: build the backend table's rows that ``engines.build`` lists, for every exported
model (edge rows, such as the Q/DQ ONNX and TensorRT plans, for ``engines.edge_models`` only;
streaming rows for the models whose per-frame step graph the export stage wrote).

Each row's builder writes its artifact and an ``engine.json`` sidecar beside it (source ONNX and
its sha256, input spec, classes, library versions, calibration). ``engines/engines.json`` records,
per model and row, what was built or why it was skipped (no TensorRT or GPU here, a row it needs
not listed): nothing is skipped silently.
"""

from __future__ import annotations

from typing import Any

from edgekd.engines.rows import BuildContext, EngineSkipped
from edgekd.engines.table import ENGINES
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir
from edgekd.stages.table import MODEL_ROLES
from edgekd.utils.atomic import write_json
from edgekd.utils.hashing import sha256_file
from edgekd.utils.versions import package_versions

REPORT = "engines.json"


def run_engines(rd: RunDir) -> dict[str, Any]:
    cfg = rd.recipe.engines
    data = DataContext.load(rd)
    rows = [row for row in ENGINES if row.name in cfg.build]  # table order: a row's needs come first
    calib = test = None
    if rows:
        calib, _ = data.eval_array("train", limit=cfg.calibration_clips)
        print(f"[engines] INT8 calibration on {len(calib)} training-split clips (asked for {cfg.calibration_clips})")
    if any(row.name == "onnxruntime_int8" for row in rows):
        test = data.eval_array("test", clips_per_video=rd.recipe.data.eval_clips)
    records: dict[str, dict[str, Any]] = {}
    for role in MODEL_ROLES:
        onnx_path = rd.stage_dir("export") / f"{role}.onnx"
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{onnx_path} is missing: run the export stage first")
        sidecar = {"source_onnx": str(onnx_path), "source_onnx_sha256": sha256_file(onnx_path),
                   "input_spec": data.input_spec(), "classes": data.split.classes, "versions": package_versions()}
        records[role] = {}
        for row in rows:
            if row.edge and role not in cfg.edge_models:
                continue
            ctx = BuildContext(row, role, rd.root, onnx_path, sidecar, cfg, calibration=calib, test=test,
                               parity_clips=None if calib is None else calib[: rd.recipe.export.parity_clips],
                               input_spec=data.input_spec(), labels=list(data.split.classes))
            records[role][row.name] = _build(row, ctx, cfg.build)
    write_json(rd.stage_dir("engines") / REPORT, records)
    skipped = {f"{m}/{n}": r["reason"] for m, per in records.items() for n, r in per.items() if r["status"] != "built"}
    for reason in sorted(set(skipped.values())):
        names = sorted(k for k, v in skipped.items() if v == reason)
        print(f"[engines] skipped {', '.join(names)}: {reason}")
    return {"built": {f"{m}/{n}": r["artifact"] for m, per in records.items() for n, r in per.items()
                      if r["status"] == "built"}, "skipped": skipped}


def _build(row: Any, ctx: BuildContext, listed: tuple[str, ...]) -> dict[str, Any]:
    missing = [n for n in row.needs if n not in listed]
    if missing:
        return {"status": "skipped", "reason": f"{row.name} needs {', '.join(missing)}: add it to engines.build"}
    ok, why = row.status()
    if not ok:
        return {"status": "skipped", "reason": why}
    builder = row.builder()
    assert builder is not None, f"{row.name} has no builder (recipe validation keeps it out of engines.build)"
    try:
        return builder(ctx)
    except EngineSkipped as exc:
        return {"status": "skipped", "reason": str(exc)}
