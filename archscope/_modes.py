"""A user's model, handled alike everywhere: its train/eval flags kept, its dtype read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
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


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the CPU generator, and on CUDA ``device``'s, seeded with ``seed``.

    Exactly those generators are forked and restored afterwards (``torch.manual_seed`` would
    reseed every CUDA device, and ``fork_rng`` restore only the ones named), so the caller's
    random state is left as it was.
    """
    import torch

    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 if none): the
    dtype its input should have."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
