"""A user's model and input, handled alike everywhere: its train/eval flags kept, its dtype read,
its input shape and batch size checked (no torch import at runtime)."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from archscope.errors import InputShapeError
from archscope.shapes import parse_shape

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


#: ``--dtype`` names → torch dtype attribute names (``long`` and ``int`` as in C and PyTorch).
INPUT_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
                "float64": "float64", "long": "int64", "int": "int32"}


def input_dtype_of(value: Any) -> torch.dtype | None:
    """An input dtype from a name (``"long"``, ``"float16"``, one of :data:`INPUT_DTYPES`) or a
    ``torch.dtype``; ``None`` stays ``None`` (the model's own float dtype).

    Raises:
        InputShapeError: a name that is not one of :data:`INPUT_DTYPES`, or another object.
    """
    import torch

    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.lower() in INPUT_DTYPES:
        dtype = getattr(torch, INPUT_DTYPES[value.lower()])
        assert isinstance(dtype, torch.dtype)
        return dtype
    raise InputShapeError(f"input dtype {value!r} is not one of {', '.join(INPUT_DTYPES)}; "
                          "e.g. --dtype long for token ids")


def random_input(model: nn.Module, shape: tuple[int, ...], batch: int, dtype: torch.dtype,
                 device: torch.device | str, generator: torch.Generator) -> torch.Tensor:
    """A random input of ``(batch, *shape)`` for a real run of ``model``.

    Floating-point dtypes: N(0, 1). Integer dtypes (token ids): uniform in
    ``[0, num_embeddings)`` of the model's first ``nn.Embedding`` (or ``EmbeddingBag``), so that
    every id is a row of the table; in ``[0, 2)`` for a model without one.
    """
    import torch
    from torch import nn

    size = (batch, *shape)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(size, generator=generator, device=device, dtype=dtype)
    high = next((m.num_embeddings for m in model.modules()
                 if isinstance(m, nn.Embedding | nn.EmbeddingBag)), 2)
    return torch.randint(0, high, size, generator=generator, device=device, dtype=dtype)


def input_shape_of(value: Any) -> tuple[int, ...]:
    """One sample's input shape from what a user passes as ``input_shape``.

    Accepted: a sequence of positive integers (``(3, 224, 224)``, ``[3, 224, 224]``, a
    ``torch.Size``), one integer for a 1-D input (``784`` → ``(784,)``) and the CLI's text form
    (``"3x224x224"``, parsed by :func:`archscope.shapes.parse_shape`).

    Raises:
        InputShapeError: a tensor (``input_shape`` is its shape without the batch), several
            shapes (one input tensor is supported), or a part that is not a positive integer
            (``64.9`` is refused, not truncated).
    """
    if isinstance(value, str):
        return parse_shape(value)
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if hasattr(value, "shape") and not isinstance(value, tuple | list):  # a tensor or an array
        full = tuple(int(d) for d in value.shape)
        hint = (f"; for a tensor of shape {full} pass input_shape={full[1:]} and batch={full[0]}"
                if len(full) > 1 else "")
        raise InputShapeError(
            f"input_shape takes one sample's shape without the batch, e.g. (3, 224, 224), not a "
            f"{type(value).__name__}{hint}"
        )
    try:
        parts = list(value)
    except TypeError:
        raise InputShapeError(
            f"input_shape {value!r} is not a shape; pass one sample's shape without the batch, "
            "e.g. (3, 224, 224) or '3x224x224'"
        ) from None
    if any(isinstance(d, tuple | list) or (hasattr(d, "shape") and getattr(d, "ndim", 0))
           for d in parts):
        raise InputShapeError(
            f"input_shape {value!r} gives several shapes; archscope traces a model with one input "
            "tensor: pass one sample's shape, e.g. (3, 224, 224)"
        )
    dims: list[int] = []
    for i, d in enumerate(parts, 1):
        try:
            n = operator.index(d) if not isinstance(d, bool) else None
        except TypeError:
            n = None
        if n is None or n < 1:
            what = "is not an integer" if n is None else "is not positive"
            raise InputShapeError(
                f"input_shape {tuple(parts)}: part {i} ({d!r}) {what}; every dimension is a "
                "positive integer, e.g. (3, 224, 224)"
            )
        dims.append(n)
    return tuple(dims)


def batch_of(value: Any) -> int:
    """A batch size: a positive integer (``2.5``, ``"4"``, ``None`` and ``True`` are refused).

    Raises:
        InputShapeError: anything else.
    """
    try:
        n = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        n = None
    if n is None or n < 1:
        raise InputShapeError(f"batch {value!r} is not a positive integer; pass e.g. batch=1")
    return n

