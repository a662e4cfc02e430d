"""The loss ``archscope stats`` backpropagates: a classifier's cross-entropy against random labels.

Per floating-point output tensor that carries a gradient (every tensor of a tuple or dict output,
the terms summed):

* ``(N, C, …)`` with ``C ≥ 2``: cross-entropy over the ``C`` classes against labels drawn
  uniformly from ``0 … C−1`` (per position for ``(N, C, H, W)``, as in segmentation);
* ``(N,)`` or ``(N, 1, …)``: one logit per sample (or position): binary cross-entropy with logits
  against labels drawn from {0, 1};
* a scalar: backpropagated as it is.

The loss is a mean over the batch, as ``nn.CrossEntropyLoss`` computes it by default.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from archscope.errors import ForwardError
from archscope.tensors import named_tensors


def random_label_loss(output: object, generator: torch.Generator,
                      name: str) -> tuple[torch.Tensor, str]:
    """The loss of ``output`` against random labels drawn with ``generator`` (on the output's
    device), and what it is in words.

    Raises:
        ForwardError: no output tensor is floating-point and depends on the weights or input.
    """
    terms: list[torch.Tensor] = []
    words: list[str] = []
    pairs = [(path, t) for path, t in named_tensors(output)
             if t.is_floating_point() and t.requires_grad]
    for path, tensor in pairs:
        loss, what = _one(tensor, generator)
        terms.append(loss)
        key = ".".join(str(p) for p in path)
        words.append(f"{key}: {what}" if len(pairs) > 1 else what)
    if not terms:
        raise ForwardError(
            f"{name}: no output tensor is floating-point and depends on the weights or the input, "
            "so there is no gradient to measure; archscope stats needs a model whose output "
            "carries a gradient"
        )
    total = terms[0] if len(terms) == 1 else torch.stack([t.float() for t in terms]).sum()
    text = words[0] if len(words) == 1 else "; ".join(words) + " (summed)"
    return total, text


def _one(tensor: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, str]:
    if tensor.dim() == 0:
        return tensor, "the output itself (a scalar)"
    logits = tensor.float()
    if tensor.dim() >= 2 and tensor.shape[1] >= 2:
        classes = tensor.shape[1]
        shape = (tensor.shape[0], *tensor.shape[2:])
        labels = torch.randint(classes, shape, generator=generator, device=tensor.device)
        where = " per position" if tensor.dim() > 2 else ""
        return (F.cross_entropy(logits, labels),
                f"cross-entropy over {classes} classes against random labels{where}")
    labels = torch.randint(2, tuple(tensor.shape), generator=generator,
                           device=tensor.device).float()
    return (F.binary_cross_entropy_with_logits(logits, labels),
            "binary cross-entropy (one logit) against random 0/1 labels")
