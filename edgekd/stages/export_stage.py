"""Export stage: each trained model to a simplified ONNX with a dynamic batch axis, checked
against PyTorch through ONNX Runtime on real clips from the test split; for a model that streams
(the online TSM; ``export.streaming``), also its per-frame step graph ``<model>_step.onnx`` with its
step spec ``<model>_step.json``, checked by streaming the same clips through it."""

from __future__ import annotations

from typing import Any

from edgekd.export.onnx_export import (
    check_parity,
    check_stream_parity,
    export_onnx,
    export_step_onnx,
)
from edgekd.models import streaming_models
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
        ckpt = load_checkpoint(rd.stage_dir(role) / "ckpt.pt")
        model = ckpt.build()
        path = export_onnx(model, ctx.input_shape, out / f"{role}.onnx", opset=cfg.opset, simplify=cfg.simplify)
        parity[role] = {"onnx": path.name, "opset": cfg.opset, "simplified": cfg.simplify,
                        **check_parity(model, path, clips)}
        print(f"[export] {role}: max |delta logit| {parity[role]['max_abs_delta']:.2e}, "
              f"top-1 agreement {parity[role]['top1_agreement']:.3f} on {parity[role]['n_clips']} test clips")
        if cfg.streaming is not False and ckpt.model_name in streaming_models():
            c, t, h, w = ctx.input_shape
            step = export_step_onnx(model, (c, h, w), out / f"{role}_step.onnx", window=t, opset=cfg.opset,
                                    simplify=cfg.simplify)
            parity[role]["stream"] = {"onnx": step.name, **check_stream_parity(model, step, clips)}
            print(f"[export] {role} step graph: {t} frames streamed, max |delta| of the running mean vs the clip "
                  f"logits {parity[role]['stream']['max_abs_delta']:.2e}")
    write_json(out / "parity.json", parity)
    return {role: {k: parity[role][k] for k in ("max_abs_delta", "top1_agreement")} for role in MODEL_ROLES}
