"""The losses of archscope's training steps, each defined once.

* :func:`training_loss`: ``archscope bench``'s step (:class:`archscope.bench.trainer.Trainer`),
  which ``archscope memory`` replays (:mod:`archscope.memory.replay`) and ``summary``'s training
  memory line predicts: one target per output (:func:`is_class_logits` says which kind), the
  terms summed.
* :func:`mean_loss`: ``archscope check``'s bare forward and backward pass, which has no
  targets: the sum of each output's mean.

Both run on whatever tensors they are given: real ones in bench and check, the memory replay's
meta tensors in ``archscope memory``, so the replay allocates what the real step allocates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archscope.tensors import tensors_of

if TYPE_CHECKING:
    import torch


def is_class_logits(output: torch.Tensor) -> bool:
    """``(N, K)`` with ``K > 1``: class scores, trained against integer labels (cross-entropy);
    any other output is trained against values of its own shape (MSE)."""
    return output.ndim == 2 and output.shape[1] > 1


def training_loss(output: Any, targets: list[torch.Tensor]) -> torch.Tensor:
    """bench's loss: per output tensor, cross-entropy against int64 labels or MSE against
    float32 values, both on ``out.float()``; the terms summed.

    Raises:
        ValueError: the output holds no tensor.
    """
    import torch
    from torch.nn import functional as F

    total: torch.Tensor | None = None
    for out, target in zip(tensors_of(output), targets, strict=True):
        if target.dtype == torch.long:
            term = F.cross_entropy(out.float(), target)
        else:
            term = F.mse_loss(out.float(), target)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("the model returned no tensor to train")
    return total


def mean_loss(output: Any, device: torch.device) -> torch.Tensor:
    """check's loss: the sum of every output tensor's mean (in float32), from a zero on
    ``device``; it needs no target."""
    import torch

    return sum((t.float().mean() for t in tensors_of(output)), torch.zeros((), device=device))


__all__ = ["is_class_logits", "mean_loss", "training_loss"]
