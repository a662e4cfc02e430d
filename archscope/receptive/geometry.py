"""What one traced layer does to space, for :mod:`archscope.receptive.fields`.

:func:`layer_geometry` turns a :class:`~archscope.report.LayerRecord` into a :class:`Geometry`:
a window (kernel, stride, padding as ``(begin, end)`` pairs, dilation per spatial axis), a
pass-through, a merge, a global view, a flatten … It reads the record's ``type`` and shapes, and
its hyperparameters through one function, :func:`_facts`, which reads the record's typed
:class:`~archscope.report.LayerFacts` (per axis, padding as pairs). Layers are recognised by
their type name in the tables below (PyTorch module classes, functional ops as the trace names
them, ONNX operators), never by substrings. Pure Python: no torch import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from math import prod

from archscope.formulas import output_size
from archscope.report import LayerRecord, Shape

PadPair = tuple[int, int]


class Op(str, Enum):
    """How a layer moves space (see :class:`Geometry`)."""

    WINDOW = "window"  # conv, pool, padding: a sliding window over its first input
    TRANSPOSED = "transposed"  # a transposed conv with stride 1 (a window read backwards)
    POINTWISE = "pointwise"  # each output unit reads the same position of every input
    CONCAT = "concat"  # joins its inputs along the channels: a merge, like POINTWISE
    GLOBAL = "global"  # every output unit reads every position of its first input
    FLATTEN = "flatten"  # the spatial grid becomes a vector
    DENSE = "dense"  # a Linear on a vector: every output reads every feature
    UNEVEN = "uneven"  # output units not evenly spaced over the input: no single field
    UNKNOWN = "unknown"  # archscope does not know what the layer does to space
    NONE = "none"  # no output tensor (a row only for parameters)


@dataclass(frozen=True)
class Geometry:
    """A layer's spatial behaviour, per spatial axis where it has a window.

    Attributes:
        op: what the layer does (:class:`Op`).
        kernel, stride, dilation: of a WINDOW or TRANSPOSED op, one value per spatial axis.
        padding: ``(begin, end)`` zeros per spatial axis (only ``begin`` moves the centre).
        transposed_padding: a TRANSPOSED op's PyTorch ``padding`` per axis (cropped outputs).
        pad_only: a WINDOW that only pads (``ZeroPad2d``): kernel 1, stride 1.
        reason: why a layer is UNEVEN or UNKNOWN, or how a window was read (an adaptive pool
            that works as a plain window), in words.
        merges: the op reads every input (a residual add, a ``cat``); otherwise only the first.
    """

    op: Op
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[PadPair, ...] = ()
    dilation: tuple[int, ...] = ()
    transposed_padding: tuple[int, ...] = ()
    pad_only: bool = False
    reason: str = ""
    merges: bool = False

    @property
    def axes(self) -> int:
        return len(self.kernel)


# -- the type tables ---------------------------------------------------------------------------

#: Layers each of whose output units reads one position of its input(s): activations,
#: normalisations (their statistics over the map are left out of the field by convention, as in
#: Araujo et al. 2019), dropout, channel-only mixing, element-wise arithmetic. Several inputs:
#: a merge of paths.
_POINTWISE = frozenset({
    # PyTorch modules
    "Identity", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU",
    "SiLU", "Mish", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid", "Hardtanh", "Hardshrink",
    "Softshrink", "Softplus", "Softsign", "Tanhshrink", "Threshold", "LogSigmoid", "Softmax2d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
    "LazyBatchNorm2d", "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "GroupNorm", "LayerNorm", "RMSNorm", "LocalResponseNorm", "CrossMapLRN2d",
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "ChannelShuffle",
    "Sequential",  # a leaf only when empty: it returns its input
    # functional ops, named as the trace names them (``relu_`` → ``relu``, ``__iadd__`` → ``add``)
    "add", "sub", "mul", "div", "neg", "abs", "pow", "sqrt", "rsqrt", "exp", "log", "square",
    "reciprocal", "clamp", "clip", "maximum", "minimum", "addcmul", "lerp", "relu", "relu6",
    "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "hardswish", "hardsigmoid", "hardtanh", "softplus", "softsign", "dropout", "dropout1d",
    "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "batch_norm",
    "instance_norm", "group_norm", "layer_norm", "local_response_norm", "contiguous", "clone",
    "detach", "float", "double", "half", "bfloat16", "to", "type_as", "channel_shuffle",
    # ONNX operators (those spelt as PyTorch's modules, Sigmoid, Tanh, Softplus, Softsign,
    # Identity, Dropout, are listed above)
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "HardSigmoid",
    "HardSwish", "Erf", "Clip", "BatchNormalization",
    "InstanceNormalization", "LayerNormalization", "GroupNormalization", "LRN", "Add", "Sub",
    "Mul", "Div", "Sum", "Max", "Min", "Mean", "Neg", "Abs", "Sqrt", "Pow", "Exp", "Log",
    "Reciprocal", "Cast",
})
_CONV = {"Conv1d": 1, "Conv2d": 2, "Conv3d": 3}
_CONV_TRANSPOSE = {"ConvTranspose1d": 1, "ConvTranspose2d": 2, "ConvTranspose3d": 3}
_POOL = {"MaxPool1d": 1, "MaxPool2d": 2, "MaxPool3d": 3, "AvgPool1d": 1, "AvgPool2d": 2,
         "AvgPool3d": 3}
_ADAPTIVE = {"AdaptiveAvgPool1d": 1, "AdaptiveAvgPool2d": 2, "AdaptiveAvgPool3d": 3,
             "AdaptiveMaxPool1d": 1, "AdaptiveMaxPool2d": 2, "AdaptiveMaxPool3d": 3,
             "adaptive_avg_pool1d": 1, "adaptive_avg_pool2d": 2, "adaptive_avg_pool3d": 3,
             "adaptive_max_pool1d": 1, "adaptive_max_pool2d": 2, "adaptive_max_pool3d": 3}
_PAD = frozenset({"pad", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d",
                  "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
                  "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d",
                  "CircularPad2d", "CircularPad3d"})
_CONCAT = frozenset({"cat", "concat", "concatenate", "Concat"})
_FLATTEN = frozenset({"Flatten", "flatten"})
_RESHAPE = frozenset({"view", "reshape", "Reshape"})
_DENSE = frozenset({"Linear", "linear", "Gemm", "MatMul"})
_GLOBAL = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
_REDUCE = frozenset({"mean", "sum", "amax", "amin", "logsumexp", "std", "var", "ReduceMean",
                     "ReduceMax", "ReduceSum", "ReduceMin", "ReduceL2"})
_RESAMPLE = frozenset({"Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
                       "PixelShuffle", "interpolate", "upsample", "upsample_nearest",
                       "upsample_bilinear", "pixel_shuffle", "Resize", "DepthToSpace"})
#: functional convs and pools: windows where the trace records their facts
_FUNCTIONAL_WINDOWS = {"conv1d": 1, "conv2d": 2, "conv3d": 3, "max_pool1d": 1, "max_pool2d": 2,
                       "max_pool3d": 3, "avg_pool1d": 1, "avg_pool2d": 2, "avg_pool3d": 3}
_FUNCTIONAL_OTHERS = frozenset({"conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                                "lp_pool1d", "lp_pool2d", "lp_pool3d"})
#: pools whose stride defaults to their kernel (PyTorch's ``stride=None``)
_POOLS = frozenset({*_POOL, "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
                    "avg_pool2d", "avg_pool3d"})
_ONNX_WINDOWS = frozenset({"Conv", "MaxPool", "AveragePool"})


def layer_geometry(record: LayerRecord, layout: str = "chw") -> Geometry:
    """What ``record``'s layer does to space, read from its type, facts and shapes.

    ``layout`` is the report's (``Report.layout``): in ``"hwc"`` reports the image shapes are
    written N×H×W×C. A conv or pool whose recorded output size does not follow from its window
    (a subclass with its own ``forward``) is UNKNOWN rather than guessed.
    """
    kind = record.type
    if not record.output_shapes:
        return Geometry(Op.NONE)
    if kind in _POINTWISE:
        return Geometry(Op.POINTWISE, merges=True)
    if kind in _CONV or kind in _POOL or kind in _ONNX_WINDOWS or kind in _FUNCTIONAL_WINDOWS:
        return _window(record, _facts(record), layout)
    if kind in _CONV_TRANSPOSE or kind == "ConvTranspose":
        return _transposed(record, _facts(record))
    if kind in _PAD:
        return _pad(record, _facts(record))
    if kind in _ADAPTIVE:
        return _adaptive(record, _ADAPTIVE[kind], layout)
    if kind in _GLOBAL:
        return Geometry(Op.GLOBAL)
    if kind in _CONCAT:
        return _concat(record, _facts(record), layout)
    if kind in _FLATTEN or kind in _RESHAPE:
        return _reshape(record)
    if kind in _DENSE:
        shape = record.input_shapes[0] if record.input_shapes else ()
        if len(shape) <= 2:
            return Geometry(Op.DENSE)
        return Geometry(Op.UNKNOWN, reason=f"a {kind} on a {len(shape)}-D tensor mixes its last "
                                           "axis only")
    if kind in _REDUCE:
        return _reduce(record, layout)
    if kind == "PixelUnshuffle":
        return _unshuffle(record, layout)
    if kind in _RESAMPLE:
        return Geometry(Op.UNEVEN, reason=f"{kind} resamples its input: its output units are "
                                          "not one per whole step of the input grid")
    if kind in _FUNCTIONAL_OTHERS:
        return Geometry(Op.UNKNOWN, reason=f"a functional {kind}: the trace does not record its "
                                           "window")
    return Geometry(Op.UNKNOWN, reason=f"archscope does not know what {kind} does to space")


# -- the layer's facts -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Facts:
    """The hyperparameters the geometry reads, in the vocabulary of typed layer facts.

    Per spatial axis; ``padding`` as ``(begin, end)`` pairs; ``None`` where not recorded.
    ``unread`` holds a padding written in a form :func:`_facts` does not understand.
    """

    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[PadPair, ...] | None = None
    dilation: tuple[int, ...] | None = None
    ceil_mode: bool | None = None
    dim: int | None = None
    unread: str = ""


def _facts(record: LayerRecord) -> _Facts:
    """The one reader of a record's hyperparameters: its :class:`~archscope.report.LayerFacts`,
    which both front-ends fill in alike (padding as one ``(begin, end)`` pair per axis, also for
    ``padding='same'`` and ONNX ``auto_pad``)."""
    f = record.facts
    unread = ""
    if f.padding is None and f.padding_mode is not None:
        unread = repr(f.padding_mode)
    return _Facts(kernel=f.kernel, stride=f.stride, padding=f.padding, dilation=f.dilation,
                  ceil_mode=f.ceil_mode, dim=f.dim, unread=unread)


# -- readers -----------------------------------------------------------------------------------

def _window(record: LayerRecord, f: _Facts, layout: str) -> Geometry:
    """A conv or pool: kernel, stride, padding pairs and dilation, checked against the shapes."""
    if f.kernel is None:
        what = (f"a functional {record.type}: the trace does not record its window"
                if record.kind == "function" else f"the {record.type}'s kernel is not recorded")
        return Geometry(Op.UNKNOWN, reason=what)
    if f.unread:
        return Geometry(Op.UNKNOWN, reason=f"the {record.type}'s padding {f.unread} is not one "
                                           "archscope reads")
    n = len(f.kernel)
    stride = f.stride or (f.kernel if record.type in _POOLS else (1,) * n)
    geometry = Geometry(Op.WINDOW, f.kernel, stride, f.padding or ((0, 0),) * n,
                        f.dilation or (1,) * n)
    # ONNX records carry no ceil_mode: ceil mode only adds a last window at the end, so the
    # figures are the same either way; the shapes say which one the file used.
    ceils = (f.ceil_mode,) if f.ceil_mode is not None else (False, True)
    sizes = _spatial_in_out(record, n, layout)
    if sizes is not None and not any(_fits(sizes, geometry, ceil) for ceil in ceils):
        return Geometry(Op.UNKNOWN, reason="its output size does not follow from its kernel, "
                                           "stride and padding (a forward of its own, or an "
                                           "automatic padding)")
    return geometry


def _transposed(record: LayerRecord, f: _Facts) -> Geometry:
    """A transposed conv: a field only where the stride is 1 (see the package docstring)."""
    if f.kernel is None:
        return Geometry(Op.UNKNOWN, reason=f"the {record.type}'s kernel is not recorded")
    n = len(f.kernel)
    stride = f.stride or (1,) * n
    if any(s != 1 for s in stride):
        return Geometry(Op.UNEVEN, reason=f"a stride-{_dims(stride, alike=True)} transposed conv "
                                          "spreads each input unit over several output units: "
                                          "its output units are not evenly spaced over its "
                                          "input, so no one field")
    pairs = f.padding or ((0, 0),) * n
    if f.unread or any(b != e for b, e in pairs):
        return Geometry(Op.UNKNOWN, reason=f"the {record.type}'s padding is not one archscope "
                                           "reads")
    return Geometry(Op.TRANSPOSED, f.kernel, stride, dilation=f.dilation or (1,) * n,
                    transposed_padding=tuple(b for b, _ in pairs))


def _pad(record: LayerRecord, f: _Facts) -> Geometry:
    """A padding layer (or ``F.pad``): begin/end pairs where the trace recorded them."""
    if f.padding is None:
        return Geometry(Op.UNKNOWN, reason=f"the {record.type}'s (begin, end) padding is not "
                                           "recorded in the trace")
    n = len(f.padding)
    return Geometry(Op.WINDOW, (1,) * n, (1,) * n, f.padding, (1,) * n, pad_only=True)


def _adaptive(record: LayerRecord, n: int, layout: str) -> Geometry:
    """An adaptive pool from its input and output sizes.

    PyTorch's window ``i`` of ``o`` over ``n`` units reads ``⌊i·n/o⌋`` to ``⌈(i+1)·n/o⌉ − 1``
    (``aten/src/ATen/native/AdaptivePooling.h``). Output 1 on every axis is a global pool. Where
    the windows are all one size ``k`` and evenly spaced by ``s`` (always where ``o`` divides
    ``n``: ``k = s = n/o``; also ``7 → 3``: 0–2, 2–4, 4–6), the pool is that plain window
    (``k = s = 1``: a pass-through); otherwise (``8 → 3``: 0–2, 2–5, 5–7; and ``o > n``, which
    repeats input units) there is no one field.
    """
    sizes = _spatial_in_out(record, n, layout)
    if sizes is None:
        return Geometry(Op.UNKNOWN, reason=f"the {record.type}'s input and output sizes are not "
                                           "recorded")
    ins, outs = sizes
    if all(o == 1 for o in outs):
        return Geometry(Op.GLOBAL)
    shown = f"adaptive pooling {_dims(ins)} → {_dims(outs)}"
    kernel, stride = [], []
    for i, o in zip(ins, outs, strict=True):
        starts = [u * i // o for u in range(o)]
        spans = {-(-(u + 1) * i // o) - start for u, start in enumerate(starts)}
        # one window (o = 1) has no step: give it its own width, as a global pool on that axis
        steps = {b - a for a, b in pairwise(starts)} if o > 1 else {i}
        if len(spans) > 1 or len(steps) > 1 or min(steps) < 1:
            grows = " (to a larger size)" if o > i else ""
            return Geometry(Op.UNEVEN, reason=f"adaptive pooling {i} → {o}{grows}: its windows "
                                              "differ in size or spacing, so no one field")
        kernel.append(spans.pop())
        stride.append(steps.pop())
    if all(k == 1 and s == 1 for k, s in zip(kernel, stride, strict=True)):
        return Geometry(Op.POINTWISE, reason=f"{shown} keeps every unit: a pass-through")
    return Geometry(Op.WINDOW, tuple(kernel), tuple(stride), ((0, 0),) * n, (1,) * n,
                    reason=f"{shown} reads a {_dims(kernel)} window with stride {_dims(stride)}")


def _concat(record: LayerRecord, f: _Facts, layout: str) -> Geometry:
    """A ``cat`` along the channels merges paths; along a spatial axis it stitches maps."""
    shapes = record.input_shapes
    out = record.output_shapes[0]
    if f.dim is not None and shapes:
        rank = len(shapes[0])
        channel = f.dim % rank == 1 if rank else False
    else:  # ONNX records no axis: the shapes say which one grew
        channel = bool(shapes) and all(
            len(s) == len(out) and _spatial(s, layout) == _spatial(out, layout) for s in shapes)
    if channel or len(out) <= 2:
        return Geometry(Op.CONCAT, merges=True)
    return Geometry(Op.UNEVEN, reason="joins maps along a spatial axis: the output grid is not "
                                      "one even grid over the input")


def _reshape(record: LayerRecord) -> Geometry:
    """``Flatten`` / ``view`` / ``reshape``: a flatten where one row per sample comes out."""
    shape_in = record.input_shapes[0] if record.input_shapes else ()
    shape_out = record.output_shapes[0]
    if shape_in == shape_out:
        return Geometry(Op.POINTWISE)
    if len(shape_in) > 2 and len(shape_out) >= 2 and shape_out[0] == shape_in[0] and (
            len(shape_out) == 2 or prod(shape_out[2:]) == prod(shape_in[2:])):
        return Geometry(Op.FLATTEN)
    return Geometry(Op.UNKNOWN, reason=f"a {record.type} from {_dims(shape_in)} to "
                                       f"{_dims(shape_out)} that is not a flatten")


def _reduce(record: LayerRecord, layout: str) -> Geometry:
    """A reduction (``x.mean((2, 3))``): global when no spatial axis of size > 1 survives."""
    if not record.input_shapes:
        return Geometry(Op.UNKNOWN, reason=f"the {record.type}'s input is not recorded")
    shape_in, shape_out = record.input_shapes[0], record.output_shapes[0]
    spatial_in = _spatial(shape_in, layout)
    if len(shape_out) == len(shape_in):  # keepdim: the spatial sizes say which axes went
        if all(o == 1 for o in _spatial(shape_out, layout)):
            return Geometry(Op.GLOBAL)
    elif len(shape_out) <= 2 and len(shape_in) >= 3:
        kept = shape_out[1:]
        channels = _channels(shape_in, layout)
        # (N, C) from (N, C, H, W): every spatial axis went, unless C is also a spatial size
        if not kept or (kept[0] == channels and channels not in spatial_in) or all(
                d == 1 for d in spatial_in):
            return Geometry(Op.GLOBAL)
    return Geometry(Op.UNKNOWN, reason=f"a {record.type} from {_dims(shape_in)} to "
                                       f"{_dims(shape_out)} that keeps part of the grid")


def _unshuffle(record: LayerRecord, layout: str) -> Geometry:
    """``PixelUnshuffle(r)`` moves r×r blocks into channels: an r×r window with stride r."""
    sizes = _spatial_in_out(record, 2, layout)
    if sizes is None or any(o == 0 or i % o for i, o in zip(*sizes, strict=True)):
        return Geometry(Op.UNKNOWN, reason="the PixelUnshuffle's factor is not recorded")
    kernel = tuple(i // o for i, o in zip(*sizes, strict=True))
    return Geometry(Op.WINDOW, kernel, kernel, ((0, 0), (0, 0)), (1, 1))


# -- helpers -----------------------------------------------------------------------------------

def _spatial(shape: Shape, layout: str) -> Shape:
    """The spatial sizes of a batched image shape (N×C×… or, in ``"hwc"`` reports, N×H×W×C)."""
    if layout == "hwc" and len(shape) == 4:
        return shape[1:3]
    return shape[2:]


def _channels(shape: Shape, layout: str) -> int:
    return shape[3] if layout == "hwc" and len(shape) == 4 else shape[1]


def _spatial_in_out(record: LayerRecord, n: int,
                    layout: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The first input's and the output's ``n`` spatial sizes, where both are recorded."""
    if not record.input_shapes or not record.output_shapes:
        return None
    shape_in, shape_out = record.input_shapes[0], record.output_shapes[0]
    if len(shape_in) != len(shape_out) or len(shape_in) < n + 1:
        return None
    if len(shape_in) == n + 2:
        return _spatial(shape_in, layout), _spatial(shape_out, layout)
    return shape_in[-n:], shape_out[-n:]  # an unbatched C×H×W sample


def _fits(sizes: tuple[tuple[int, ...], tuple[int, ...]], g: Geometry, ceil: bool) -> bool:
    ins, outs = sizes
    return all(
        output_size(i, k, s, p, d, ceil)[0] == o
        for i, o, k, s, p, d in zip(ins, outs, g.kernel, g.stride, g.padding, g.dilation,
                                    strict=True))


def _dims(shape: Sequence[int], alike: bool = False) -> str:
    """``8×8``; with ``alike``, one number where every axis agrees (a stride of ``2``)."""
    if alike and len(set(shape)) == 1:
        return str(shape[0])
    return "×".join(str(d) for d in shape) or "a scalar"


__all__ = ["Geometry", "Op", "PadPair", "layer_geometry"]
