"""Training memory: the peak of a replayed training step, and the older sum estimate.

* :func:`training_memory` replays a model's training step on the meta device, as the predicted
  device would run it, and returns a :class:`TrainingMemory`: the timeline, the peak, its
  breakdown and where it occurs (``archscope memory``).
* :func:`largest_batch` finds the largest batch whose step fits a memory size (``--fit``).
* :func:`estimate_training_memory` / :class:`MemoryEstimate` are the older sum (parameters +
  gradients + optimizer state + saved activations), kept for ``summary``, ``bench`` and
  ``check`` until they switch to the peak.

Importing this package does not import torch; the functions that need it import it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archscope.memory.estimate import OPTIMIZER_STATE, MemoryEstimate, estimate_training_memory
from archscope.memory.result import CATEGORIES, PHASES, MemoryPoint, TrainingMemory

if TYPE_CHECKING:
    from archscope.memory.fit import FitResult


def training_memory(*args: Any, **kwargs: Any) -> TrainingMemory:
    """See :func:`archscope.memory.predict.training_memory`."""
    from archscope.memory.predict import training_memory as predict

    return predict(*args, **kwargs)


def largest_batch(*args: Any, **kwargs: Any) -> FitResult:
    """See :func:`archscope.memory.fit.largest_batch`."""
    from archscope.memory.fit import largest_batch as fit

    return fit(*args, **kwargs)


__all__ = ["CATEGORIES", "OPTIMIZER_STATE", "PHASES", "MemoryEstimate", "MemoryPoint",
           "TrainingMemory", "estimate_training_memory", "largest_batch", "training_memory"]
