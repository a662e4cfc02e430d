"""Pre-checks and error diagnosis: what is wrong with a model or its input, said in one line.

Before the trace, :func:`check_model` and :func:`check_lazy` refuse what cannot be traced. While
it runs, the tracer checks each stock conv, pool and Linear against its input before PyTorch
does (:func:`check_channels`, :func:`check_and_explain`), so the error names the layer and what
to change; :func:`check_and_explain` also gives the output-size arithmetic that ``--explain``
shows. After a failure, :func:`smallest_input` finds the smallest square input that passes and
:func:`forward_error` says where the forward stopped and why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from archscope import formulas
from archscope.engine.facts import CONV, CONV_TRANSPOSE, POOL
from archscope.engine.frame import Frame
from archscope.errors import (
    READS_VALUES,
    ForwardError,
    InputTooSmallError,
    LayerInputError,
    ModelSourceError,
    first_line,
    input_dtype_hint,
)
from archscope.report import MODEL_INPUT, LayerFacts, Shape
from archscope.shapes import format_dims

#: The forwards whose input the pre-checks (channels, window sizes, Linear features) understand.
#: A subclass that overrides forward (a CoordConv that appends coordinate channels, a conv that
#: pads first) receives an input its attributes do not describe: it runs unchecked, and PyTorch's
#: own error, if any, is reported.
_STOCK_FORWARDS = frozenset(cls.forward for cls in (*CONV, *CONV_TRANSPOSE, *POOL, nn.Linear))
#: ... and for convolutions, the ``_conv_forward`` they call (a TF-style "same" conv pads there)
_STOCK_CONV_FORWARDS = frozenset(cls._conv_forward for cls in (*CONV, *CONV_TRANSPOSE))

#: a conv's input layout (one sample) by its number of spatial dimensions.
_LAYOUT = {1: "C×L", 2: "C×H×W", 3: "C×D×H×W"}


def stock(module: nn.Module) -> bool:
    """Does ``module`` run PyTorch's own forward for its class (see :data:`_STOCK_FORWARDS`)?"""
    cls = type(module)
    if cls.forward not in _STOCK_FORWARDS:
        return False
    conv_forward = getattr(cls, "_conv_forward", None)
    return conv_forward is None or conv_forward in _STOCK_CONV_FORWARDS


def check_model(model: Any) -> None:
    """Raise ModelSourceError unless ``model`` is an ``nn.Module`` instance."""
    if isinstance(model, nn.Module):
        return
    if isinstance(model, str):
        raise ModelSourceError(
            f"inspect takes an nn.Module instance, not the string {model!r}; for a zoo name, "
            f"model file or layer spec use archscope.summary_report({model!r}) (or "
            f"archscope.load_model({model!r}).model)"
        )
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise ModelSourceError(
            f"inspect takes an nn.Module instance, not the class {model.__name__}: create one "
            f"first, e.g. inspect({model.__name__}(...), …)"
        )
    raise ModelSourceError(f"inspect takes an nn.Module instance, not {type(model).__name__}")


def check_lazy(model: nn.Module, shape: Shape, batch: int) -> None:
    """Raise ModelSourceError for lazy parameters that no real forward has materialized yet.

    A lazy module (``nn.LazyConv2d``) infers its parameters' shapes on its first call and
    materializes them in place: a trace would change the user's model, and on meta it could not
    initialize them.
    """
    from torch.nn.parameter import is_lazy

    for mname, module in model.named_modules():
        tensors = (*module._parameters.values(), *module._buffers.values())
        if any(t is not None and is_lazy(t) for t in tensors):
            where = f"{mname} ({type(module).__name__})" if mname else type(module).__name__
            example = ", ".join(str(d) for d in (batch, *shape))
            raise ModelSourceError(
                f"{where} has lazy parameters that are not materialized yet; run one real forward "
                f"first (e.g. model(torch.randn({example}))), then inspect the model"
            )


def plural(count: int, noun: str) -> str:
    """``1 parameter``, ``30 parameters``, ``1,024 parameters``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def check_channels(frame: Frame, module: nn.modules.conv._ConvNd, shape: Shape,
                   sample: Shape | None) -> None:
    """Raise LayerInputError where a conv's input has the wrong number of channels or dimensions.

    ``shape`` is the conv's input (batch first); ``sample`` is the model input's one-sample shape
    when this conv sees the model input as it was given (the first conv), else ``None``: only
    then is the fix to ``--input`` (its layout is C×H×W), and a transposed shape is suggested
    where it would match (``28x28x1`` → ``1x28x28``). Checked before the window sizes: a
    channels-last input also looks too small (``28×1``).
    """
    expected = module.in_channels
    if expected < 1:  # a lazy conv before its first call
        return
    nd = len(module.kernel_size)
    layout = _LAYOUT[nd]
    where = frame.where
    if sample is not None and len(sample) != nd + 1:
        given = (f"is {format_dims(sample)} ({plural(len(sample), 'dimension')})" if sample
                 else "shape is empty (no dimension besides the batch)")
        raise LayerInputError(
            f"{where} needs a {layout} input with {plural(expected, 'channel')} but the input "
            f"{given}; --input is {layout}"
        )
    if len(shape) == nd + 2:
        channels = shape[1]
    elif len(shape) == nd + 1:
        channels = shape[0]  # PyTorch reads it as one unbatched sample
    else:
        channels = -1
    if channels == expected:
        return
    if len(shape) != nd + 2:
        raise LayerInputError(
            f"{where} needs a batch×{layout} input with {plural(expected, 'channel')} but "
            f"receives {list(shape)}"
        )
    have = f"{where} expects {plural(expected, 'input channel')} but the input has {channels}"
    if sample is None:
        raise LayerInputError(
            f"{have} (input {list(shape)}); its in_channels do not match the channels the layer "
            "before it produces"
        )
    if sample[-1] == expected:
        guess = "x".join(str(d) for d in (sample[-1], *sample[:-1]))
        raise LayerInputError(f"{have}; --input is {layout} (did you mean {guess}?)")
    raise LayerInputError(f"{have}; --input is {layout} and this model needs C = {expected}")


class FeaturesError(LayerInputError):
    """A Linear receives another number of features than its ``in_features``.

    Attributes:
        where: the layer, ``classifier.1 (Linear)``.
        head: what happened, without what to do (``… expects 9216 input features but receives
            6400 (input [1, 6400])``).
        expected: the Linear's ``in_features``.
        received: the size of its input's last dimension.
    """

    def __init__(self, where: str, head: str, *, expected: int, received: int) -> None:
        super().__init__(f"{head}; the input size does not match the one this network was "
                         "built for")
        self.where = where
        self.head = head
        self.expected = expected
        self.received = received


def check_and_explain(frame: Frame, module: nn.Module, shape: Shape) -> str:
    """Output-size arithmetic of a conv or pool, from its facts; raise InputTooSmallError where a
    window cannot fit and LayerInputError where a Linear's features do not match."""
    if isinstance(module, nn.Linear):
        check_features(frame, module.in_features, shape)
        return ""
    facts = frame.facts
    if facts.kernel is None or facts.stride is None or facts.padding is None:
        return ""
    nd = len(facts.kernel)
    dilation = facts.dilation or (1,) * nd
    if isinstance(module, CONV_TRANSPOSE):
        if len(shape) < nd + 1:
            return ""
        return formulas.transposed_output_sizes(
            shape[-nd:], facts.kernel, facts.stride, [begin for begin, _ in facts.padding],
            dilation, facts.output_padding or (0,) * nd)[1]
    if not isinstance(module, (*CONV, *POOL)):
        return ""
    if facts.padding_mode == "same":
        return f"padding='same' keeps {'×'.join(str(n) for n in shape[-nd:])}"
    if len(shape) < nd + 1:
        return ""
    return _explain_window(frame, facts, shape[-nd:], dilation)


def _explain_window(frame: Frame, facts: LayerFacts, spatial: Shape,
                    dilation: Sequence[int]) -> str:
    assert facts.kernel is not None and facts.stride is not None and facts.padding is not None
    kernel, padding = facts.kernel, facts.padding
    outs, text = formulas.output_sizes(spatial, kernel, facts.stride, padding, dilation,
                                       bool(facts.ceil_mode))
    if any(out < 1 for out in outs):
        dims = "×".join(str(n) for n in spatial)
        ks = "×".join(str(k) for k in kernel)
        window = f"{ks} kernel"
        if any(d > 1 for d in dilation):
            # a dilated window spans (k−1)·d+1 inputs: what has to fit
            span = "×".join(str((k - 1) * d + 1) for k, d in zip(kernel, dilation, strict=True))
            dil = "×".join(str(d) for d in dilation) if len(set(dilation)) > 1 else str(dilation[0])
            window = f"{span} window ({ks} kernel, dilation {dil})"
        widest = max(max(pair) for pair in padding)
        pad = f" even with padding {widest}" if widest else ""
        raise InputTooSmallError(f"{frame.where}: input is {dims}, smaller than its {window}{pad}")
    return text


def check_features(frame: Frame, expected: int, shape: Shape) -> None:
    """Raise LayerInputError where a Linear's input (``shape``, batch first) does not end in its
    ``expected`` features.

    A map of three or more dimensions whose non-batch sizes multiply to the features (256×6×6
    for 9,216) was not flattened: say so. Otherwise the input size is wrong for the network (a
    :class:`FeaturesError`, which :func:`archscope.engine.inspect` completes with the input size
    that gives the expected features).
    """
    if not shape or shape[-1] == expected:
        return
    if len(shape) >= 3 and math.prod(shape[1:]) == expected:
        dims = shape[1:]
        kind = "map" if len(dims) > 1 else "tensor"
        raise LayerInputError(
            f"{frame.where} expects {expected} features; it receives a {format_dims(dims)} "
            f"{kind} ({'·'.join(str(d) for d in dims)} = {expected:,}): flatten it first "
            "(nn.Flatten() or torch.flatten(x, 1))"
        )
    raise FeaturesError(
        frame.where, f"{frame.where} expects {expected} input features but receives "
        f"{shape[-1]} (input {list(shape)})", expected=expected, received=shape[-1])


def check_embedding(frame: Frame, module: nn.Embedding, x: Any) -> None:
    """Raise LayerInputError where an Embedding (PyTorch's own forward) receives floats: it
    looks up rows by integer index."""
    if type(module).forward is not nn.Embedding.forward or not x.is_floating_point():
        return
    dtype = str(x.dtype).removeprefix("torch.")
    if MODEL_INPUT in frame.inputs:
        raise LayerInputError(
            f"{frame.where} looks up integer token ids (0 to {module.num_embeddings - 1}) but "
            f"the model input is {dtype}; give integer inputs with --dtype long "
            "(dtype=torch.long)"
        )
    raise LayerInputError(
        f"{frame.where} looks up integer token ids (0 to {module.num_embeddings - 1}) but "
        f"receives a {dtype} tensor; an Embedding's input must be integers (torch.long)"
    )


def input_for_features(shape: Shape, received: Callable[[Shape], int],
                       expected: int) -> tuple[Shape, Shape] | None:
    """The smallest and largest inputs like ``shape`` (square, ``C×N×N``; ``C×N`` for a C×L
    input) at which a Linear receives its ``expected`` features, or ``None`` if none up to 8192.

    ``received(candidate)`` is the number of features the Linear receives at that input:
    ``expected`` where the whole trace passes, 0 where the trace fails before the Linear (the
    input is too small). The count grows with the input, so both ends are found by bisection.
    """
    if len(shape) not in (2, 3):
        return None

    def at(n: int) -> Shape:
        return (shape[0], n) if len(shape) == 2 else (shape[0], n, n)

    def first(above: bool) -> int:
        """The smallest n with received > expected (``above``) or ≥ expected."""
        low, high = 0, _LARGEST + 1  # the predicate is false at low and true at high
        while high - low > 1:
            mid = (low + high) // 2
            got = received(at(mid))
            if got > expected or (not above and got == expected):
                high = mid
            else:
                low = mid
        return high

    smallest = first(above=False)
    if smallest > _LARGEST or received(at(smallest)) != expected:
        return None
    return at(smallest), at(first(above=True) - 1)


#: the largest side :func:`input_for_features` and :func:`smallest_input` try
_LARGEST = 8192


def smallest_input(shape: Shape, fits: Callable[[Shape], bool]) -> str | None:
    """The smallest square spatial size that passes (``fits``), as ``C×N×N``, or ``None``."""
    if len(shape) != 3:
        return None
    # Too small along some side, so the square of the shorter side is too (its sides are no
    # larger): the search starts above it. (The longer side's square may well fit: 2×6 before a
    # 2×2 pool with dilation 2 fails, 6×6 and 3×3 fit.)
    low, high = min(shape[1], shape[2]), 0
    n = low
    while n <= 8192:
        n *= 2
        if fits((shape[0], n, n)):
            high = n
            break
        low = n
    if not high:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if fits((shape[0], mid, mid)):
            high = mid
        else:
            low = mid
    return f"{shape[0]}×{high}×{high}"


def forward_error(running: Frame | None, last: Frame | None, exc: Exception) -> ForwardError:
    """Where the forward failed (``running``: the layer running, else ``last``: the last module
    reached) and why."""
    message = failure_reason(exc) + input_dtype_hint(str(exc))
    if running is not None:
        shapes = ", ".join(str(list(s)) for s in running.input_shapes) or "no tensors"
        return ForwardError(f"forward failed in {running.where} with input {shapes}: {message}")
    if last is None:
        return ForwardError(f"the model's forward failed before reaching a layer: {message}")
    return ForwardError(f"the model's forward failed after {last.where}: {message}")


#: what a meta-hostile forward can do instead: run for real (``inspect(..., trace="real")``).
TRACE_REAL_HINT = "trace it for real with --trace real (trace='real' in Python)"

#: what PyTorch says when code asks a meta tensor for its values (.item(), bool(), .tolist() …).
_VALUE_READS = ("cannot be called on meta tensors", "Cannot copy out of meta tensor",
                "meta device type tensor to numpy")


#: what the memory replay says instead: it has no real mode to offer.
REPLAY_LIMIT = "the memory replay runs on the meta device only, so it cannot predict this model"


def failure_reason(exc: Exception, hint: str = TRACE_REAL_HINT) -> str:
    """The exception's first line, or what it means where it comes from tracing on meta (then
    ``hint`` says what to do: :data:`TRACE_REAL_HINT`, or :data:`REPLAY_LIMIT` for the memory
    replay, which has no ``--trace real``)."""
    text = str(exc).strip()
    if any(marker in text for marker in _VALUE_READS):
        return (f"{READS_VALUES}, which cannot be computed on the meta device where archscope "
                f"traces; {hint}")
    if "data-independent implementation does not exist" in text:  # nonzero, x[mask]
        return ("the forward makes a tensor whose size depends on tensor values (`x[x > 0]`, "
                "`nonzero`), which cannot be computed on the meta device where archscope traces; "
                f"{hint}")
    op = re.search(r"(\w+::\w+): attempted to run this operator with Meta tensors", text)
    if op is not None:
        return (f"{op.group(1)} has no meta-device implementation in PyTorch, so archscope "
                f"cannot trace it on meta; {hint}")
    mixed = re.search(r"Tensor on device (\S+) is not on the expected device meta", text)
    if mixed is not None:
        return (f"a tensor on {mixed.group(1)} meets the meta tensors archscope traces with: a "
                "tensor attribute that is not a registered buffer (use self.register_buffer) or "
                "one made in forward without device=x.device")
    return first_line(exc)


__all__ = ["FeaturesError", "check_and_explain", "check_channels", "check_embedding",
           "check_features", "check_lazy", "check_model", "failure_reason", "forward_error",
           "input_for_features", "plural", "smallest_input", "stock"]
