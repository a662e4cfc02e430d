"""Training memory: the peak of a replayed training step, one answer for every command.

* :func:`training_memory` replays a model's training step on the meta device, as the predicted
  device would run it, and returns a :class:`TrainingMemory`: the timeline, the peak, its
  breakdown and where it occurs (``archscope memory``). ``summary`` and ``calc`` show its peak
  (:mod:`archscope.memory.summary`), ``bench`` and ``check`` use it as their estimate, for the
  step each runs.
* :func:`largest_batch` finds the largest batch whose step fits a memory size (``--fit``).
* :mod:`archscope.memory.guard` refuses a step the device has no room for before ``check``,
  ``bench`` or ``stats`` runs it.

Importing this package does not import torch; the functions that need it import it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


__all__ = ["CATEGORIES", "PHASES", "MemoryPoint", "TrainingMemory", "largest_batch",
           "training_memory"]
