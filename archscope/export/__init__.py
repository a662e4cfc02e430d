"""ONNX export, checked: :mod:`~archscope.export.exporter` writes and checks the file,
:mod:`~archscope.export.compare` judges onnxruntime against PyTorch, and
:mod:`~archscope.export.capture` keeps the exporter's own output out of the terminal.

Importing the package imports neither torch nor onnx (the command's options read its constants).
"""

from __future__ import annotations

from archscope.export.exporter import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    DEFAULT_RTOL,
    FP32_ERROR_FACTOR,
    MIN_OPSET,
    ExporterFailed,
    ExportResult,
    export_onnx,
)

__all__ = [
    "DEFAULT_ATOL", "DEFAULT_OPSET", "DEFAULT_RTOL", "FP32_ERROR_FACTOR", "MIN_OPSET", "ExportResult",
    "ExporterFailed", "export_onnx",
]
