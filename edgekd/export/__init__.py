"""Model export: PyTorch -> ONNX, plus the parity check that every engine build starts from."""

from edgekd.export.onnx_export import (
    BATCH_AXIS,
    INPUT_NAME,
    OUTPUT_NAME,
    check_parity,
    export_onnx,
)

__all__ = ["BATCH_AXIS", "INPUT_NAME", "OUTPUT_NAME", "check_parity", "export_onnx"]
