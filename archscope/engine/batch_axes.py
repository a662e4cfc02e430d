"""Which dimension of a shape is the batch, decided by the front-ends (pure Python, no torch).

A report records each shape's batch axis, so that renderers never guess it from sizes. The rule:
the batch axis is the dimension whose size *follows the batch*: it has the batch's size at the
traced batch ``b`` and the other batch's size when the same model is traced at ``b + 1``. A
shape without a dimension of the batch's size has no batch axis (the batch folded into another
dimension, ``x.reshape(-1, 16)``); a shape whose first dimension alone has the batch's size,
at a batch of 2 or more and with more than one dimension, has it first. Only where a shape says
neither (several dimensions of the batch's size, the only one not first, a 1-D tensor of that
size, or any size-1 dimension at batch 1) is the second trace needed; the front-end then makes
one for the whole model (:func:`needs_second_trace`), so the common case costs nothing.

Where no second trace can be made (an ONNX file that fixes its batch, a model whose forward
fails at another batch size), :func:`guess_batch_axis` reads the axis from sizes alone, as the
renderers did before the axis was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from archscope.report import BatchAxis, Shape

#: Ops whose output describes a shape, not samples (ONNX ``Shape``, ``Size``), lower case.
SHAPE_OPS = frozenset({"shape", "size"})


def other_batch(batch: int) -> int:
    """The batch size of the second trace."""
    return batch + 1


def settled(shape: Shape, batch: int) -> bool:
    """Whether ``shape`` alone says where its batch axis is (see the module docstring)."""
    where = [i for i, d in enumerate(shape) if d == batch]
    return not where or (batch > 1 and where == [0] and len(shape) > 1)


def settled_axis(shape: Shape, batch: int) -> BatchAxis:
    """The batch axis of a :func:`settled` shape: 0, or ``None`` where no dimension has the
    batch's size."""
    return 0 if shape and shape[0] == batch else None


def needs_second_trace(shapes: Iterable[Shape], batch: int) -> bool:
    """Whether any of ``shapes`` is not :func:`settled`."""
    return not all(settled(shape, batch) for shape in shapes)


def axis_between(shape: Shape, other: Shape, batch: int, batch2: int) -> BatchAxis:
    """The first dimension of ``shape`` (at ``batch``) whose size follows the batch to ``other``
    (the same tensor at ``batch2``), or ``None``."""
    for i, (d, d2) in enumerate(zip(shape, other, strict=True)):
        if d == batch and d2 == batch2:
            return i
    return None


def guess_batch_axis(shape: Shape, batch: int, producer_inputs: Sequence[Shape] | None,
                     shape_op: bool = False) -> BatchAxis:
    """The batch axis read from sizes alone, where no second trace could be made.

    ``producer_inputs`` are the input shapes of the layer that produced the tensor (``None``:
    the tensor is the model input, whose batch is first); ``shape_op`` says that layer's output
    describes a shape (:data:`SHAPE_OPS`).

    * dim 0 of the batch's size is the batch: ``(4, 32, 26, 26)`` at batch 4 → 0;
    * otherwise the one dimension of the batch's size, if an input of the producer has a
      dimension of that size too (the batch came in): an LSTM's ``h_n`` ``(1, 4, 20)`` → 1;
    * a 1-D tensor of the batch's size is one value per sample (0) when its producer reduced a
      tensor that leads with the batch and is not a shape op;
    * anything else has none: several candidates none of them first (``(7, 4, 4)``), a Linear's
      4 features after ``reshape(-1, 16)`` at batch 4 (no input has a 4).
    """
    if producer_inputs is None:
        return 0 if shape else None
    if len(shape) == 1:
        if shape[0] == batch and not shape_op and any(
                s and s[0] == batch for s in producer_inputs):
            return 0
        return None
    if not shape:
        return None
    if shape[0] == batch:
        return 0
    where = [i for i, d in enumerate(shape) if d == batch]
    if len(where) != 1 or not any(batch in s for s in producer_inputs):
        return None
    return where[0]


__all__ = ["SHAPE_OPS", "axis_between", "guess_batch_axis", "needs_second_trace", "other_batch",
           "settled", "settled_axis"]
