"""Model export: PyTorch -> ONNX, plus the parity check that every engine build starts from; for a
model that streams, its per-frame step graph and the check that streaming equals the clip."""

from edgekd.export.onnx_export import (
    BATCH_AXIS,
    INPUT_NAME,
    OUTPUT_NAME,
    check_parity,
    check_stream_parity,
    export_onnx,
    export_step_onnx,
)

__all__ = ["BATCH_AXIS", "INPUT_NAME", "OUTPUT_NAME", "check_parity", "check_stream_parity", "export_onnx",
           "export_step_onnx"]
