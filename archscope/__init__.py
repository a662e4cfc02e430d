"""archscope: inspect, draw, check and benchmark convolutional networks in PyTorch.

The library API is imported lazily so that ``import archscope`` (and ``archscope --help``) does not
import torch::

    import archscope
    report = archscope.inspect(model, (3, 224, 224))
    report = archscope.summary_report("vgg16")      # any model source the CLI accepts
    subject = archscope.resolve("resnet18", device="cpu")  # a model built once, as commands run it
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real types for type checkers; at runtime __getattr__ imports lazily
    from archscope.engine import inspect
    from archscope.errors import ArchscopeError
    from archscope.registry import list_models
    from archscope.report import LayerRecord, Report
    from archscope.source import Subject, load_model, resolve
    from archscope.source import load_report as summary_report

__version__ = "0.1.0"

_LAZY = {
    "inspect": ("archscope.engine", "inspect"),
    "load_model": ("archscope.source", "load_model"),
    "resolve": ("archscope.source", "resolve"),
    "Subject": ("archscope.source", "Subject"),
    "summary_report": ("archscope.source", "load_report"),
    "list_models": ("archscope.registry", "list_models"),
    "Report": ("archscope.report", "Report"),
    "LayerRecord": ("archscope.report", "LayerRecord"),
    "ArchscopeError": ("archscope.errors", "ArchscopeError"),
}

__all__ = ["ArchscopeError", "LayerRecord", "Report", "Subject", "__version__", "inspect",
           "list_models", "load_model", "resolve", "summary_report"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'archscope' has no attribute {name!r}")
