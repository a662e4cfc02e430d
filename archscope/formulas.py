"""Lecture arithmetic: parameter counts and output sizes as pure integer functions.

Each function returns ``(value, expression)``; the expression is written the way a lecture writes
it, uses ``·`` for multiplication and evaluates to the value with
:func:`archscope.report.evaluate_formula`. No torch import here.

Conventions:
    * Conv: ``(kh·kw·c_in/groups + 1)·c_out`` with a bias, ``kh·kw·c_in/groups·c_out`` without
      (``/groups`` is only written when ``groups > 1``).
    * Linear: ``(in + 1)·out`` with a bias, ``in·out`` without.
    * BatchNorm: ``2·C`` (γ and β; the running statistics are buffers, not parameters).
    * Output size: ``⌊(n + 2p − d·(k − 1) − 1)/s⌋ + 1``, written as the lecture does,
      ``(150−3)/1+1 = 148``: padding only when there is some, ``k`` alone when ``d = 1``, and the
      floor ``⌊…⌋`` (``⌈…⌉`` in ceil mode) only where the division is not exact; in ceil mode a
      trailing ``−1`` where PyTorch drops a last window that would start in the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod


def conv_params(c_in: int, c_out: int, kernel: Sequence[int], groups: int = 1,
                bias: bool = True) -> tuple[int, str]:
    """Parameters of an N-d convolution: ``conv_params(32, 64, (3, 3))`` → ``(18496, "(3·3·32+1)·64")``."""
    k = "·".join(str(x) for x in kernel)
    cin = f"{c_in}/{groups}" if groups > 1 else f"{c_in}"
    per_filter = prod(kernel) * c_in // groups
    if bias:
        return (per_filter + 1) * c_out, f"({k}·{cin}+1)·{c_out}"
    return per_filter * c_out, f"{k}·{cin}·{c_out}"


def linear_params(in_features: int, out_features: int, bias: bool = True) -> tuple[int, str]:
    """Parameters of a dense layer: ``linear_params(6272, 512)`` → ``(3211776, "(6272+1)·512")``."""
    if bias:
        return (in_features + 1) * out_features, f"({in_features}+1)·{out_features}"
    return in_features * out_features, f"{in_features}·{out_features}"


def norm_params(num_features: int, affine: bool = True) -> tuple[int, str]:
    """BatchNorm/GroupNorm/InstanceNorm: a scale γ and a shift β per channel (``2·C``)."""
    if not affine:
        return 0, "0"
    return 2 * num_features, f"2·{num_features}"


def layernorm_params(shape: Sequence[int], affine: bool = True, bias: bool = True) -> tuple[int, str]:
    """LayerNorm over ``shape``: γ and β of that shape (``2·768``)."""
    if not affine:
        return 0, "0"
    dims = "·".join(str(d) for d in shape)
    n = prod(shape)
    if bias:
        return 2 * n, f"2·{dims}"
    return n, dims


def embedding_params(num: int, dim: int) -> tuple[int, str]:
    """An embedding table: ``num·dim``."""
    return num * dim, f"{num}·{dim}"


def shapes_params(shapes: Sequence[Sequence[int]]) -> tuple[int, str]:
    """Any layer: the sum of its parameter tensors' shape products (``64·32·3·3 + 64``)."""
    if not shapes:
        return 0, ""
    terms = ["·".join(str(d) for d in s) if len(s) else "1" for s in shapes]
    return sum(prod(s) for s in shapes), " + ".join(terms)


Padding = int | tuple[int, int]


def output_size(n: int, kernel: int, stride: int = 1, padding: Padding = 0, dilation: int = 1,
                ceil_mode: bool = False) -> tuple[int, str]:
    """One spatial dimension after a conv or pool, with the arithmetic.

    ``output_size(150, 3)`` → ``(148, "(150−3)/1+1 = 148")``; ``output_size(15, 2, 2)`` →
    ``(7, "⌊(15−2)/2⌋+1 = 7")``. A result below 1 means the input is too small for the layer.
    ``padding`` is one number for both ends (``+2·1``) or ``(begin, end)`` (``+0+1``, ONNX's
    asymmetric pads).

    In ceil mode PyTorch drops a last window that would start in the right padding; the
    expression then ends in ``−1``: ``output_size(3, 2, 2, 1, ceil_mode=True)`` →
    ``(2, "⌈(3+2·1−2)/2⌉+1−1 = 2")``. The part before `` = `` always evaluates to the value
    (:func:`archscope.report.evaluate_formula`).
    """
    begin, end = (padding, padding) if isinstance(padding, int) else padding
    span = dilation * (kernel - 1) + 1
    numerator = n + begin + end - span
    dropped = ceil_mode and ceil_drops_last_window(n, kernel, stride, padding, dilation)
    steps = -(-numerator // stride) if ceil_mode else numerator // stride
    out = steps + 1 - (1 if dropped else 0)
    terms = f"{n}"
    if begin == end and begin:
        terms += f"+2·{begin}"
    elif begin != end:
        terms += f"+{begin}+{end}"
    terms += f"−{kernel}" if dilation == 1 else f"−{dilation}·({kernel}−1)−1"
    exact = numerator % stride == 0
    if stride == 1 or exact:
        body = f"({terms})/{stride}"
    elif ceil_mode:
        body = f"⌈({terms})/{stride}⌉"
    else:
        body = f"⌊({terms})/{stride}⌋"
    return out, f"{body}+1{'−1' if dropped else ''} = {out}"


def transposed_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0,
                           dilation: int = 1, output_padding: int = 0) -> tuple[int, str]:
    """One spatial dimension after a transposed conv, with the arithmetic.

    ``(n−1)·s − 2·p + d·(k−1) + output_padding + 1`` (PyTorch's ``ConvTranspose2d`` docs), written
    with ``d·(k−1)+1`` as ``k`` when there is no dilation: ``transposed_output_size(32, 2, 2)`` →
    ``(64, "(32−1)·2+2 = 64")``; ``transposed_output_size(7, 3, 2, 1, output_padding=1)`` →
    ``(14, "(7−1)·2−2·1+3+1 = 14")``. The part before `` = `` evaluates to the value.
    """
    out = (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    text = f"({n}−1)·{stride}" if stride != 1 else f"({n}−1)"
    if padding:
        text += f"−2·{padding}"
    text += f"+{kernel}" if dilation == 1 else f"+{dilation}·({kernel}−1)+1"
    if output_padding:
        text += f"+{output_padding}"
    return out, f"{text} = {out}"


def transposed_output_sizes(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                            padding: Sequence[int], dilation: Sequence[int],
                            output_padding: Sequence[int]) -> tuple[tuple[int, ...], str]:
    """Every spatial dimension after a transposed conv (one text, or one per axis as
    :func:`output_sizes`)."""
    rows = list(zip(spatial, kernel, stride, padding, dilation, output_padding, strict=True))
    parts = [transposed_output_size(*row) for row in rows]
    return _joined(parts, len(set(rows)) <= 1)


def ceil_drops_last_window(n: int, kernel: int, stride: int = 1, padding: Padding = 0,
                           dilation: int = 1) -> bool:
    """Whether ceil mode's last window would start in the right padding, so PyTorch drops it.

    PyTorch's ``pooling_output_shape``: the last window must start inside the input or the left
    padding. ``ceil_drops_last_window(3, 2, 2, 1)`` → ``True`` (⌈3/2⌉+1 = 3 windows would start
    at −1, 1 and 3; the one at 3 starts in the padding).
    """
    begin, end = (padding, padding) if isinstance(padding, int) else padding
    numerator = n + begin + end - (dilation * (kernel - 1) + 1)
    out = -(-numerator // stride) + 1
    return (out - 1) * stride >= n + begin


def output_sizes(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[Padding], dilation: Sequence[int], ceil_mode: bool = False
                 ) -> tuple[tuple[int, ...], str]:
    """Every spatial dimension after a conv or pool: the sizes and one arithmetic text.

    One expression where all dimensions are alike (a square input and kernel), else one per
    axis: ``H: (32−3)/1+1 = 30; W: (20−3)/1+1 = 18``.
    """
    parts = [output_size(n, k, s, p, d, ceil_mode)
             for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True)]
    return _joined(parts, len(set(zip(spatial, kernel, stride, padding, dilation,
                                      strict=True))) <= 1)


def _joined(parts: Sequence[tuple[int, str]], alike: bool) -> tuple[tuple[int, ...], str]:
    """Sizes and one text: one expression where every axis is alike, else ``H: …; W: …``."""
    outs = tuple(out for out, _ in parts)
    exprs = [expr for _, expr in parts]
    if alike:
        return outs, exprs[0] if exprs else ""
    axes = "DHW"[-len(exprs):] if len(exprs) <= 3 else [str(i) for i in range(len(exprs))]
    return outs, "; ".join(f"{axis}: {e}" for axis, e in zip(axes, exprs, strict=True))
