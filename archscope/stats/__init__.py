"""What flows through a network at initialization: schemes, activations, gradients.

::

    from archscope.stats import source_stats, model_stats

    runs = source_stats("spec:784 10x[dense100 sigmoid] dense10",
                        "normal:1,normal:0.01,xavier_normal")
    run = model_stats(my_model, (3, 32, 32), scheme="he_normal", batch=64)
    for layer in run.layers:
        print(layer.name, layer.std, layer.saturated_pct, layer.grad_std)

Modules: :mod:`~archscope.stats.schemes` (the schemes as arithmetic, no torch),
:mod:`~archscope.stats.records` (the frozen results), :mod:`~archscope.stats.initialize`
(drawing the weights), :mod:`~archscope.stats.probe` (the hooks), :mod:`~archscope.stats.loss`
(the random-label loss), :mod:`~archscope.stats.run` (the loop). Importing this package does not
import torch; :func:`model_stats` and :func:`source_stats` do, when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archscope.stats.records import Histogram, InitRecord, LayerKind, LayerStats, StatsRun
from archscope.stats.schemes import (
    SCHEME_NAMES,
    InitSchemeError,
    Scheme,
    fans,
    formula,
    parse_scheme,
    parse_schemes,
)

if TYPE_CHECKING:
    from archscope.stats.run import default_batch, model_stats, source_stats

_LAZY = {"model_stats", "source_stats", "default_batch"}

__all__ = ["SCHEME_NAMES", "Histogram", "InitRecord", "InitSchemeError", "LayerKind",
           "LayerStats", "Scheme", "StatsRun", "default_batch", "fans", "formula",
           "model_stats", "parse_scheme", "parse_schemes", "source_stats"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from archscope.stats import run

        return getattr(run, name)
    raise AttributeError(f"module 'archscope.stats' has no attribute {name!r}")
