"""The PyTorch front-end: :func:`inspect` traces a model on the meta device and returns its
:class:`~archscope.report.Report`.

How it works (one pass, on the meta device by default; :mod:`archscope.engine.tracer` records
it):

* The model's parameters and buffers are swapped for meta tensors of the same shape
  (:mod:`archscope.engine.stand_ins`), so no weights are allocated and the user's model is never
  moved or changed: its train/eval flags and its plain tensor attributes are restored afterwards.
* The model runs in the train/eval modes the user set (a fresh module trains; ``model.eval()``
  traces the inference forward, and the report says so), with autograd on whatever the caller's
  context, so the figures are the same everywhere.
* PyTorch's own FLOP formulas count FLOPs at the dispatcher (:mod:`archscope.engine.flops`);
  saved-tensor hooks measure what autograd keeps for backward.
* Each shape's batch axis is recorded (:mod:`archscope.engine.batch_axes`): read from the shape
  where it says, else from a lean second pass at another batch size.
* Parameters are attributed to rows (:mod:`archscope.engine.attribution`) so that the rows add
  up to ``model.parameters()``.

A forward whose shapes depend on tensor values (``x[x > 0]``, ``if x.sum() > 0:``, detection
models) cannot run on meta; ``trace="real"`` runs the same pass for real instead, with stand-ins
holding the model's values and a seeded random input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from archscope._modes import batch_of, input_shape_of, model_dtype
from archscope.engine.attribution import borrowed_parameters, records, uncalled_parameters
from archscope.engine.batch_axes import (
    SHAPE_OPS,
    axis_between,
    guess_batch_axis,
    needs_second_trace,
    other_batch,
    settled_axis,
)
from archscope.engine.deferred import DeferredImportFailed
from archscope.engine.diagnosis import (
    FeaturesError,
    check_lazy,
    check_model,
    input_for_features,
    smallest_input,
)
from archscope.engine.frame import Frame
from archscope.engine.tracer import BatchNormNeedsEval, Pass, trace_pass
from archscope.errors import (
    ArchscopeError,
    DeviceError,
    InputShapeError,
    InputTooSmallError,
    LayerInputError,
)
from archscope.report import MODEL_INPUT, BatchAxis, LayerRecord, Report, Shape
from archscope.shapes import format_dims

_EVAL_NOTE = ("traced in eval mode, as the model is set: outputs, dropout and BatchNorm are the "
              "inference ones and activation memory is the eval-mode figure; call model.train() "
              "first for training-mode outputs and activation memory")

_BATCHNORM_NOTE = ("traced in eval mode: BatchNorm in training mode needs more than one value per "
                   "channel (use a larger --batch or input); activation memory is the eval-mode "
                   "figure")

#: Each frame's input and output batch axes.
FrameAxes = tuple[tuple[BatchAxis, ...], tuple[BatchAxis, ...]]


#: How the forward runs: on the meta device (shapes only) or for real.
Trace = Literal["meta", "real"]


def inspect(
    model: nn.Module,
    input_shape: Sequence[int] | str | None = None,
    *,
    batch: int = 1,
    name: str | None = None,
    backward: bool = False,
    count_flops: bool = True,
    dtype: torch.dtype | None = None,
    trace: Trace = "meta",
    device: str | torch.device | None = None,
) -> Report:
    """Trace ``model`` (on the meta device, or for real) and return its
    :class:`~archscope.report.Report`.

    The model runs in the train/eval modes it is in: a freshly built module trains (dropout,
    BatchNorm batch statistics, training-only outputs such as auxiliary heads), and after
    ``model.eval()`` the trace is the inference forward, with a note in the report saying so
    (activation memory is then what autograd keeps in eval mode). A BatchNorm in training mode
    that would see one value per channel cannot run; the whole model is then traced in eval
    mode, with a note. Autograd is on for the trace whatever the caller's context
    (``torch.no_grad()``, ``torch.inference_mode()``, anomaly detection), so activation memory
    and backward FLOPs are the same everywhere.

    Args:
        model: an ``nn.Module`` instance; it is not moved or changed (its train/eval flags,
            parameters, buffers, gradients and every attribute of every submodule are as
            before, whatever the trace did or raised), and a meta trace does not run it on real
            data.
        input_shape: one sample's shape without the batch dimension, e.g. ``(3, 224, 224)``, or
            the CLI's form ``"3x224x224"``; one integer for a 1-D input. One input tensor.
        batch: batch size of the traced input (a positive integer).
        name: the model's name in the report (default: its class name).
        backward: also run the backward pass (on meta) to count training FLOPs.
        count_flops: count FLOPs/MACs at the dispatcher with ``torch.utils.flop_counter``'s
            formula registry, the one ``FlopCounterMode`` uses, applied by archscope's own
            dispatch mode (:class:`~archscope.engine.flops.FlopCounter`: one running total, read
            before and after each call); turn off for a faster shape-only trace.
        dtype: dtype of the traced input (default: the dtype of the model's first
            floating-point parameter or buffer; float32 for a model without any); an integer
            dtype (``torch.long``) for token ids.
        trace: ``"meta"`` (default): on the meta device, no values. ``"real"``: run the forward
            for real, for models whose shapes depend on tensor values; the model needs real
            weights. The same hooks, FLOP counter and saved-tensor measurement run, on a random
            input (seed 0; integers in ``[0, num_embeddings)`` of the first Embedding), with
            stand-ins holding the model's values, so its gradients, BatchNorm statistics and
            the caller's random state are untouched. Shapes that depend on values are those of
            that input.
        device: where a real trace runs (default: where the model's weights are; another
            device gets copies of them, the model is not moved).

    Raises:
        ModelSourceError: ``model`` is not an ``nn.Module`` instance (a class, a zoo name: use
            :func:`archscope.summary_report` for names), or has lazy parameters not yet
            materialized by a first real forward.
        InputShapeError: ``input_shape`` or ``batch`` is missing or malformed (a tensor, several
            shapes, a part that is not a positive integer).
        InputTooSmallError: a conv/pool window does not fit its input (names the layer and the
            smallest input that works).
        DeviceError: a real trace of a model on the meta device, or a ``device`` not available.
        ForwardError: the forward pass failed (names the layer reached); its subclass
            LayerInputError where a layer's input does not fit its channels or features (a
            forgotten flatten, another input size than the network was built for, floats into
            an Embedding).
    """
    check_model(model)
    if input_shape is None:
        raise InputShapeError("an input shape is needed to trace this model (e.g. --input 3x224x224)")
    shape = input_shape_of(input_shape)
    batch = batch_of(batch)
    check_lazy(model, shape, batch)
    traced_dtype = model_dtype(model) if dtype is None else dtype
    run_on = _real_device(model, trace, device)

    def report(train: bool | None) -> Report:
        result = _report(model, shape, batch, name, backward, count_flops, traced_dtype, train,
                         run_on)
        notes = _upsampling_notes(result.layers)
        if run_on is not None:
            notes.append(f"traced for real on {run_on} with a random input (seed 0): shapes "
                         "that depend on tensor values are this input's")
        return _with_notes(result, notes)

    try:
        try:
            result = report(train=None)
        except BatchNormNeedsEval:
            pass
        else:
            return result if model.training else _with_notes(result, [_EVAL_NOTE])
        # Outside the except clause above, so that the InputTooSmallError handler below also
        # sees what the eval-mode trace raises (vgg16_bn at 3×16×16).
        return _with_notes(report(train=False), [_BATCHNORM_NOTE])
    except InputTooSmallError as exc:
        def fits(candidate: Shape) -> bool:
            try:
                _pass(model, candidate, batch, traced_dtype, train=False, count_flops=False,
                      device=run_on)
            except ArchscopeError:
                return False
            return True

        smallest = smallest_input(shape, fits)
        if smallest is not None:
            raise InputTooSmallError(f"{exc}; use an input of at least {smallest}") from None
        raise
    except FeaturesError as exc:
        raise _features_error(model, shape, batch, traced_dtype, exc) from None


def _real_device(model: nn.Module, trace: str, device: str | torch.device | None
                 ) -> torch.device | None:
    """Where a real trace runs (``None``: a meta trace)."""
    if trace not in ("meta", "real"):
        raise ValueError(f"trace must be 'meta' or 'real', not {trace!r}")
    if trace == "meta":
        if device is not None:
            raise ValueError("device applies to trace='real' only; a meta trace runs on meta")
        return None
    from archscope.devices import resolve_device

    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        raise DeviceError(
            f"{type(model).__name__} is on the meta device: a real trace runs its forward and "
            "needs real weights; build it on the CPU (archscope's --trace real does)"
        )
    run_on = resolve_device(device if device is not None else
                            (tensors[0].device if tensors else "cpu"), library=True)
    if run_on.type == "meta":
        raise DeviceError("device='meta' is a meta trace; pass trace='meta', or a real device")
    return run_on


def _features_error(model: nn.Module, shape: Shape, batch: int, dtype: torch.dtype,
                    exc: FeaturesError) -> LayerInputError:
    """``exc`` with the input size at which the Linear gets the features it was built for."""
    def received(candidate: Shape) -> int:
        # a meta trace (cheap at any size) up to the Linear's pre-check
        try:
            _pass(model, candidate, batch, dtype, train=False, count_flops=False)
        except FeaturesError as other:
            return other.received if other.where == exc.where else 0
        except ArchscopeError:
            return 0
        return exc.expected

    sizes = input_for_features(shape, received, exc.expected)
    if sizes is None:
        return exc
    smallest, largest = sizes
    built = (f"{format_dims(smallest)} inputs" if smallest == largest else
             f"inputs from {format_dims(smallest)} to {format_dims(largest)}")
    return LayerInputError(f"{exc.head}; the network was built for {built}: use --input "
                           f"{'x'.join(str(d) for d in smallest)}")


def _upsampling_notes(rows: Sequence[LayerRecord]) -> list[str]:
    """A note for each adaptive pool whose output is larger than its input along some axis: it
    repeats input values (VGG-16's 7×7 pool at a 4×4 map) rather than pooling them."""
    notes = []
    for r in rows:
        functional = re.fullmatch(r"adaptive_(?:avg|max)_pool([123])d", r.type)
        if r.facts.output_size is not None:  # an adaptive pool module, subclasses included
            n = len(r.facts.output_size)
        elif r.kind == "function" and functional is not None:
            n = int(functional.group(1))
        else:
            continue
        if not r.input_shapes or not r.output_shapes:
            continue
        ins, outs = r.input_shapes[0][-n:], r.output_shapes[0][-n:]
        if len(ins) == len(outs) == n and any(o > i for i, o in zip(ins, outs, strict=True)):
            notes.append(f"{r.name} ({r.type}): its {format_dims(ins)} input is upsampled to "
                         f"{format_dims(outs)}: values are repeated, not pooled; the layers "
                         "after it were built for a larger input")
    return notes


def _pass(model: nn.Module, shape: Shape, batch: int, dtype: torch.dtype, *,
          train: bool | None, count_flops: bool = True, backward: bool = False,
          lean: bool = False, device: torch.device | None = None) -> Pass:
    """:func:`~archscope.engine.tracer.trace_pass`, again with the real modules where the
    deferred imports' stand-ins failed."""
    try:
        return trace_pass(model, shape, batch, dtype, train=train, count_flops=count_flops,
                          backward=backward, lean=lean, device=device)
    except DeferredImportFailed:
        return trace_pass(model, shape, batch, dtype, train=train, count_flops=count_flops,
                          backward=backward, lean=lean, defer=False, device=device)


def _report(model: nn.Module, shape: Shape, batch: int, name: str | None, backward: bool,
            count_flops: bool, dtype: torch.dtype, train: bool | None,
            device: torch.device | None) -> Report:
    """One trace (``train`` sets every module's mode for it; ``None``: as the user set them)
    and its Report."""
    first = _pass(model, shape, batch, dtype, train=train, count_flops=count_flops,
                  backward=backward, device=device)
    frame_axes, output_axes = _batch_axes(model, shape, batch, dtype, train, first, device)
    borrowed, borrow_notes = borrowed_parameters(model, first.frames, first.param_users)
    rows, counted = records(first.frames, borrowed, frame_axes)
    rows, order, notes = uncalled_parameters(model, rows, counted, borrowed)
    unique = list(model.parameters())
    return Report(
        model=name or type(model).__name__,
        model_type=type(model).__name__,
        input_shape=shape,
        batch=batch,
        total_params=sum(p.numel() for p in unique),
        trainable_params=sum(p.numel() for p in unique if p.requires_grad),
        non_trainable_params=sum(p.numel() for p in unique if not p.requires_grad),
        total_macs=first.forward_flops // 2,
        forward_flops=first.forward_flops,
        backward_flops=first.backward_flops if backward else None,
        param_bytes=sum(p.numel() * p.element_size() for p in unique),
        trainable_param_bytes=sum(p.numel() * p.element_size() for p in unique if p.requires_grad),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        activation_bytes=first.saved_bytes,
        output_shapes=first.output_shapes,
        output_batch_axes=output_axes,
        outputs=tuple(order.get(p, MODEL_INPUT) for p in first.output_producers),
        layers=rows,
        notes=(*borrow_notes, *notes),
        output_keys=first.output_keys,
    )


def _batch_axes(model: nn.Module, shape: Shape, batch: int, dtype: torch.dtype,
                train: bool | None, first: Pass, device: torch.device | None
                ) -> tuple[list[FrameAxes], tuple[BatchAxis, ...]]:
    """The batch axis of every shape of ``first``: each frame's inputs and outputs, and the
    model's outputs (see :mod:`archscope.engine.batch_axes`)."""
    shapes = [s for f in first.frames for s in (*f.input_shapes, *f.output_shapes)]
    if not needs_second_trace([*shapes, *first.output_shapes], batch):
        return ([(tuple(settled_axis(s, batch) for s in f.input_shapes),
                  tuple(settled_axis(s, batch) for s in f.output_shapes)) for f in first.frames],
                tuple(settled_axis(s, batch) for s in first.output_shapes))
    guess = _Guess(first, batch)
    batch2 = other_batch(batch)
    try:
        second: Pass | None = _pass(model, shape, batch2, dtype, train=train, count_flops=False,
                                    lean=True, device=device)
    except (ArchscopeError, BatchNormNeedsEval):  # the forward needs this batch size
        second = None
    if second is None or not _same_calls(first, second):
        return ([(tuple(guess.input(f, j, s) for j, s in enumerate(f.input_shapes)),
                  tuple(guess.output(f, s) for s in f.output_shapes)) for f in first.frames],
                tuple(guess.model_output(i, s) for i, s in enumerate(first.output_shapes)))

    def axis(s: Shape, s2: Shape, guessed: BatchAxis) -> BatchAxis:
        return axis_between(s, s2, batch, batch2) if len(s) == len(s2) else guessed

    frame_axes = [
        (tuple(axis(s, s2, guess.input(f, j, s))
               for j, (s, s2) in enumerate(zip(f.input_shapes, f2.input_shapes, strict=True))),
         tuple(axis(s, s2, guess.output(f, s))
               for s, s2 in zip(f.output_shapes, f2.output_shapes, strict=True)))
        for f, f2 in zip(first.frames, second.frames, strict=True)
    ]
    output_axes = tuple(axis(s, s2, guess.model_output(i, s)) for i, (s, s2)
                        in enumerate(zip(first.output_shapes, second.output_shapes, strict=True)))
    return frame_axes, output_axes


def _same_calls(first: Pass, second: Pass) -> bool:
    """Whether two passes made the same calls with as many tensors in and out (so that their
    shapes can be compared one by one)."""
    if len(first.frames) != len(second.frames) or \
            len(first.output_shapes) != len(second.output_shapes):
        return False
    return all((f.name, f.type, len(f.input_shapes), len(f.output_shapes))
               == (g.name, g.type, len(g.input_shapes), len(g.output_shapes))
               for f, g in zip(first.frames, second.frames, strict=True))


class _Guess:
    """Batch axes from sizes alone (:func:`~archscope.engine.batch_axes.guess_batch_axis`), each
    tensor judged by the inputs of the frame that produced it."""

    def __init__(self, first: Pass, batch: int) -> None:
        self.frames = first.frames
        self.producers = first.output_producers
        self.batch = batch

    def _by(self, shape: Shape, producer: int) -> BatchAxis:
        if producer == MODEL_INPUT:
            return guess_batch_axis(shape, self.batch, None)
        frame = self.frames[producer]
        return guess_batch_axis(shape, self.batch, frame.input_shapes,
                                frame.type.lower() in SHAPE_OPS)

    def output(self, frame: Frame, shape: Shape) -> BatchAxis:
        return guess_batch_axis(shape, self.batch, frame.input_shapes,
                                frame.type.lower() in SHAPE_OPS)

    def input(self, frame: Frame, position: int, shape: Shape) -> BatchAxis:
        if len(frame.inputs) == len(frame.input_shapes):  # each input's producer is known
            return self._by(shape, frame.inputs[position])
        return guess_batch_axis(shape, self.batch, ())

    def model_output(self, position: int, shape: Shape) -> BatchAxis:
        return self._by(shape, self.producers[position])


def _with_notes(report: Report, notes: Sequence[str]) -> Report:
    return replace(report, notes=(*report.notes, *notes)) if notes else report


__all__ = ["inspect"]
