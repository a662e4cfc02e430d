"""What a PyTorch layer is: its :class:`~archscope.report.LayerFacts` and its lecture parameter
formula, from the module (or a functional op's arguments).

Layers are recognised by type (the tuples below), never by class-name substrings; a subclass
keeps its base's facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    if isinstance(module, nn.Flatten):
        return LayerFacts(start_dim=module.start_dim)
    if isinstance(module, nn.Embedding):
        return LayerFacts(num_embeddings=module.num_embeddings, embedding_dim=module.embedding_dim)
    return LayerFacts()


def function_facts(op: str, args: Any, kwargs: Any) -> LayerFacts:
    """The facts of a functional op: ``flatten``'s ``start_dim``, ``cat``'s ``dim``."""
    if op == "flatten":
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        return LayerFacts(start_dim=start) if isinstance(start, int) else LayerFacts()
    if op == "cat":
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return LayerFacts(dim=dim) if isinstance(dim, int) else LayerFacts()
    return LayerFacts()


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
           "NORM", "POOL", "function_facts", "module_facts", "param_formula", "per_axis",
           "pool_axes", "same_padding"]
