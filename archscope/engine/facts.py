"""What a PyTorch layer is: its :class:`~archscope.report.LayerFacts` and its lecture parameter
formula, from the module (or a functional op's arguments).

Layers are recognised by type (the tuples below), never by class-name substrings; a subclass
keeps its base's facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from archscope import formulas
from archscope.report import LayerFacts, PadPair

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
MAX_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
AVG_POOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
POOL = (*MAX_POOL, *AVG_POOL)
ADAPTIVE_MAX_POOL = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
ADAPTIVE_POOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                 *ADAPTIVE_MAX_POOL)
NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
#: Padding layers (``ZeroPad2d`` is a ``ConstantPad2d``); each has ``padding`` in ``F.pad``'s
#: order, last axis first.
PAD = (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
       nn.modules.padding._ReplicationPadNd, nn.modules.padding._CircularPadNd)

#: The number of spatial axes of each pooling class.
_POOL_AXES = {nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.MaxPool2d: 2, nn.AvgPool2d: 2,
              nn.MaxPool3d: 3, nn.AvgPool3d: 3, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveMaxPool1d: 1,
              nn.AdaptiveAvgPool2d: 2, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveAvgPool3d: 3,
              nn.AdaptiveMaxPool3d: 3}


def pool_axes(module: nn.Module) -> int:
    """The spatial axes of a pooling layer (``MaxPool2d`` → 2), subclasses included."""
    for cls in type(module).__mro__:
        if cls in _POOL_AXES:
            return _POOL_AXES[cls]
    raise TypeError(f"{type(module).__name__} is not a pooling layer")


def per_axis(value: Any, n: int) -> tuple[int, ...]:
    """``2`` → ``(2, 2)`` for ``n = 2``; a sequence as integers (``[3, 1]`` → ``(3, 1)``)."""
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return (int(value),) * n


def pad_pairs(pad: Sequence[int], axes: int) -> tuple[PadPair, ...] | None:
    """``F.pad``'s ``pad`` (last axis first: ``(left, right, top, bottom)``) as one
    ``(begin, end)`` pair per spatial axis, in axis order, for ``axes`` spatial axes; an axis
    ``pad`` leaves alone gets ``(0, 0)``. ``None`` where ``pad`` reaches beyond the spatial
    axes (the channels) or is not pairs of integers."""
    if len(pad) % 2 or len(pad) // 2 > axes or not all(isinstance(v, int) for v in pad):
        return None
    given = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    return tuple([(0, 0)] * (axes - len(given)) + given[::-1])


def same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[PadPair, ...]:
    """The pairs PyTorch's ``padding='same'`` adds: ``d·(k−1)`` per axis, the odd one at the end
    (``torch.nn.modules.conv._ConvNd.__init__``)."""
    pairs = []
    for k, d in zip(kernel, dilation, strict=True):
        total = d * (k - 1)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def module_facts(module: nn.Module) -> LayerFacts:
    """The facts of one module (empty :class:`LayerFacts` for layers without any)."""
    if isinstance(module, (*CONV, *CONV_TRANSPOSE)):
        kernel, dilation = tuple(module.kernel_size), tuple(module.dilation)
        mode: str | None = None
        if isinstance(module.padding, str):
            mode = module.padding
            padding = (same_padding(kernel, dilation) if mode == "same"
                       else tuple((0, 0) for _ in kernel))
        else:
            padding = tuple((p, p) for p in module.padding)
        transposed = isinstance(module, CONV_TRANSPOSE)
        return LayerFacts(
            in_channels=module.in_channels, out_channels=module.out_channels, kernel=kernel,
            stride=tuple(module.stride), padding=padding, padding_mode=mode, dilation=dilation,
            output_padding=tuple(module.output_padding) if transposed else None,
            groups=module.groups, bias=module.bias is not None,
        )
    if isinstance(module, nn.Linear):
        return LayerFacts(in_features=module.in_features, out_features=module.out_features,
                          bias=module.bias is not None)
    if isinstance(module, POOL):
        n = pool_axes(module)
        kernel = per_axis(module.kernel_size, n)
        return LayerFacts(
            pool="max" if isinstance(module, MAX_POOL) else "avg", kernel=kernel,
            stride=per_axis(module.stride or module.kernel_size, n),
            padding=tuple((p, p) for p in per_axis(module.padding, n)),
            # an average pool has no dilation in PyTorch: every window is dense (ONNX's 1s)
            dilation=per_axis(module.dilation, n) if isinstance(module, MAX_POOL) else (1,) * n,
            ceil_mode=bool(module.ceil_mode),
        )
    if isinstance(module, ADAPTIVE_POOL):
        size = module.output_size
        sizes = tuple(size) if isinstance(size, list | tuple) else (size,) * pool_axes(module)
        return LayerFacts(pool="max" if isinstance(module, ADAPTIVE_MAX_POOL) else "avg",
                          output_size=tuple(None if s is None else int(s) for s in sizes))
    if isinstance(module, NORM):
        return LayerFacts(num_features=getattr(module, "num_features",
                                               getattr(module, "num_channels", 0)))
    if isinstance(module, nn.LayerNorm):
        return LayerFacts(normalized_shape=tuple(module.normalized_shape))
    if isinstance(module, nn.LocalResponseNorm):
        return LayerFacts(size=module.size, alpha=module.alpha, beta=module.beta, k=module.k)
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return LayerFacts(p=module.p)
    if isinstance(module, PAD):
        return LayerFacts(padding=pad_pairs(module.padding, len(module.padding) // 2))
    if isinstance(module, nn.Flatten):
        return LayerFacts(start_dim=module.start_dim)
    if isinstance(module, nn.Embedding):
        return LayerFacts(num_embeddings=module.num_embeddings, embedding_dim=module.embedding_dim)
    return LayerFacts()


def function_facts(op: str, args: Any, kwargs: Any) -> LayerFacts:
    """The facts of a functional op, from its arguments: ``flatten``'s ``start_dim``, ``cat``'s
    ``dim``, ``pad``'s padding pairs, and the window of ``conv*d`` and ``max_pool*d`` /
    ``avg_pool*d`` as their modules' facts."""
    def arg(position: int, name: str, default: Any) -> Any:
        return kwargs.get(name, args[position] if len(args) > position else default)

    if op == "flatten":
        start = arg(1, "start_dim", 0)
        return LayerFacts(start_dim=start) if isinstance(start, int) else LayerFacts()
    if op == "cat":
        dim = arg(1, "dim", 0)
        return LayerFacts(dim=dim) if isinstance(dim, int) else LayerFacts()
    x = arg(0, "input", None)
    if not isinstance(x, torch.Tensor):
        return LayerFacts()
    if op == "pad":
        pad = arg(1, "pad", ())
        return LayerFacts(padding=pad_pairs(tuple(pad), x.dim() - 2)) if x.dim() > 2 \
            else LayerFacts()
    try:
        if op in _FUNCTIONAL_CONV:
            return _conv_facts(arg(1, "weight", None), arg(2, "bias", None), arg(3, "stride", 1),
                               arg(4, "padding", 0), arg(5, "dilation", 1), arg(6, "groups", 1))
        if op in _FUNCTIONAL_MAX_POOL:
            n = _FUNCTIONAL_MAX_POOL[op]
            return _pool_facts("max", n, arg(1, "kernel_size", None), arg(2, "stride", None),
                               arg(3, "padding", 0), arg(4, "dilation", 1),
                               arg(5, "ceil_mode", False))
        if op in _FUNCTIONAL_AVG_POOL:
            return _pool_facts("avg", _FUNCTIONAL_AVG_POOL[op], arg(1, "kernel_size", None),
                               arg(2, "stride", None), arg(3, "padding", 0), 1,
                               arg(4, "ceil_mode", False))
    except (TypeError, ValueError):  # an argument in a form not read here: no facts
        return LayerFacts()
    return LayerFacts()


_FUNCTIONAL_CONV = frozenset({"conv1d", "conv2d", "conv3d"})
_FUNCTIONAL_MAX_POOL = {"max_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3,
                        "max_pool1d_with_indices": 1, "max_pool2d_with_indices": 2,
                        "max_pool3d_with_indices": 3}
_FUNCTIONAL_AVG_POOL = {"avg_pool1d": 1, "avg_pool2d": 2, "avg_pool3d": 3}


def _conv_facts(weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
                groups: Any) -> LayerFacts:
    """``F.conv*d``'s facts from its arguments, as :func:`module_facts` gives a conv module's."""
    if not isinstance(weight, torch.Tensor) or weight.dim() < 3:
        return LayerFacts()
    kernel = tuple(int(k) for k in weight.shape[2:])
    n = len(kernel)
    dilations = per_axis(dilation, n)
    mode: str | None = None
    if isinstance(padding, str):
        mode = padding
        pairs = same_padding(kernel, dilations) if mode == "same" else ((0, 0),) * n
    else:
        pairs = tuple((p, p) for p in per_axis(padding, n))
    groups = int(groups)
    return LayerFacts(
        in_channels=int(weight.shape[1]) * groups, out_channels=int(weight.shape[0]),
        kernel=kernel, stride=per_axis(stride, n), padding=pairs, padding_mode=mode,
        dilation=dilations, groups=groups, bias=bias is not None,
    )


def _pool_facts(pool: str, n: int, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                ceil_mode: Any) -> LayerFacts:
    """``F.max_pool*d`` / ``F.avg_pool*d``'s facts from its arguments (a ``stride`` of ``None``
    or ``[]`` is the kernel, PyTorch's default)."""
    if kernel_size is None:
        return LayerFacts()
    kernel = per_axis(kernel_size, n)
    return LayerFacts(
        pool=pool, kernel=kernel,
        stride=per_axis(stride, n) if stride not in (None, [], ()) else kernel,
        padding=tuple((p, p) for p in per_axis(padding, n)), dilation=per_axis(dilation, n),
        ceil_mode=bool(ceil_mode),
    )


def param_formula(module: nn.Module, params: int) -> str:
    """The lecture formula for ``module``'s own parameters (``(3·3·32+1)·64``), or the
    shape-product fallback (``64·32·3·3 + 64``) where the layer is not one the lecture writes
    out or the formula would not give ``params``."""
    value, expr = _typed_formula(module)
    if value == params and expr:
        return expr
    return formulas.shapes_params([tuple(p.shape) for p in module.parameters(recurse=False)])[1]


def _typed_formula(module: nn.Module) -> tuple[int, str]:
    # a transposed conv's weight is in·(out/groups)·k·k: each output channel still sees
    # k·k·(in/groups) weights, so the count reads like a conv's
    if isinstance(module, (*CONV, *CONV_TRANSPOSE)):
        return formulas.conv_params(module.in_channels, module.out_channels,
                                    tuple(module.kernel_size), module.groups,
                                    module.bias is not None)
    if isinstance(module, nn.Linear):
        return formulas.linear_params(module.in_features, module.out_features,
                                      module.bias is not None)
    if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return formulas.norm_params(module.num_features, module.affine)
    if isinstance(module, nn.GroupNorm):
        return formulas.norm_params(module.num_channels, module.affine)
    if isinstance(module, nn.LayerNorm):
        return formulas.layernorm_params(tuple(module.normalized_shape),
                                         module.elementwise_affine, module.bias is not None)
    if isinstance(module, nn.Embedding):
        return formulas.embedding_params(module.num_embeddings, module.embedding_dim)
    return -1, ""


__all__ = ["ADAPTIVE_MAX_POOL", "ADAPTIVE_POOL", "AVG_POOL", "CONV", "CONV_TRANSPOSE", "MAX_POOL",
           "NORM", "PAD", "POOL", "function_facts", "module_facts", "pad_pairs", "param_formula",
           "per_axis", "pool_axes", "same_padding"]
