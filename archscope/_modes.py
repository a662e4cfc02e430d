"""Keep a model's train/eval flags: the library never leaves the user's model changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit.

    ``model.train(was_training)`` would set every submodule alike and lose a user's per-layer
    choice (a BatchNorm kept in eval mode while the rest trains, as in fine-tuning).
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
