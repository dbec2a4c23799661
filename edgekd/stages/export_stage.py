"""Export stage: each trained model to a simplified ONNX with a dynamic batch axis, checked
against PyTorch through ONNX Runtime on real clips from the test split."""

from __future__ import annotations

from typing import Any

from edgekd.export.onnx_export import check_parity, export_onnx
from edgekd.stages.data_stage import DataContext
from edgekd.stages.rundir import RunDir
from edgekd.stages.table import MODEL_ROLES
from edgekd.train.checkpoint import load_checkpoint
from edgekd.utils.atomic import write_json


def run_export(rd: RunDir) -> dict[str, Any]:
    cfg = rd.recipe.export
    ctx = DataContext.load(rd)
    clips, _ = ctx.eval_array("test", limit=cfg.parity_clips)
    out = rd.stage_dir("export")
    parity: dict[str, Any] = {}
    for role in MODEL_ROLES:
        model = load_checkpoint(rd.stage_dir(role) / "ckpt.pt").build()
        path = export_onnx(model, ctx.input_shape, out / f"{role}.onnx", opset=cfg.opset, simplify=cfg.simplify)
        parity[role] = {"onnx": path.name, "opset": cfg.opset, "simplified": cfg.simplify,
                        **check_parity(model, path, clips)}
        print(f"[export] {role}: max |delta logit| {parity[role]['max_abs_delta']:.2e}, "
              f"top-1 agreement {parity[role]['top1_agreement']:.3f} on {parity[role]['n_clips']} test clips")
    write_json(out / "parity.json", parity)
    return {role: {k: parity[role][k] for k in ("max_abs_delta", "top1_agreement")} for role in MODEL_ROLES}
