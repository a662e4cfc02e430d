"""The inspection engine: a model in, a frozen :class:`~archscope.report.Report` out.

Two front-ends fill the same Report:

* PyTorch (:func:`inspect`, in :mod:`archscope.engine.pytorch`): one traced forward pass on the
  meta device. Its parts: :mod:`~archscope.engine.tracer` (module hooks and a function mode
  recording every call), :mod:`~archscope.engine.flops` (FLOPs at the dispatcher),
  :mod:`~archscope.engine.stand_ins` (meta stand-ins for the user's parameters, swapped in and
  out without changing the model; reusable by any analysis that runs a model on meta),
  :mod:`~archscope.engine.facts` (layer facts and parameter formulas),
  :mod:`~archscope.engine.attribution` (which row counts each parameter),
  :mod:`~archscope.engine.diagnosis` (pre-checks and one-line errors),
  :mod:`~archscope.engine.batch_axes` (which dimension is the batch) and
  :mod:`~archscope.engine.deferred` (stand-ins for heavy imports during the trace).
* ONNX (:func:`inspect_onnx`, in :mod:`archscope.engine.onnx`, with its shape inference in
  :mod:`archscope.engine.onnx_shapes`): graph nodes as rows, without torch.

Importing this package imports neither torch nor onnx: each front-end is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real types for type checkers; at runtime __getattr__ imports lazily
    from archscope.engine.onnx import inspect_onnx
    from archscope.engine.pytorch import inspect
    from archscope.engine.tracer import root_row_name

_LAZY = {
    "inspect": "archscope.engine.pytorch",
    "inspect_onnx": "archscope.engine.onnx",
    "root_row_name": "archscope.engine.tracer",
}

__all__ = ["inspect", "inspect_onnx", "root_row_name"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archscope.engine' has no attribute {name!r}")
