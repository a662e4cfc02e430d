"""Apply an initialization scheme to a model's Linear and Conv weights, in place.

Callers pass a model archscope owns (:func:`archscope.stats.run.model_stats` works on a copy of
the user's): this module changes the weights it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from archscope.stats.records import InitRecord
from archscope.stats.schemes import Distribution, Scheme, fans, formula

if TYPE_CHECKING:
    import torch
    from torch import nn


def weighted_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv modules (transposed convs included) whose weight is a materialized
    parameter, in module order, with their qualified names (a bare layer is named after its
    class)."""
    from torch import nn

    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or isinstance(weight, nn.UninitializedParameter):
            continue
        found.append((name or type(module).__name__, module))
    return found


def apply_scheme(model: nn.Module, scheme: Scheme,
                 generator: torch.Generator | None = None) -> tuple[InitRecord, ...]:
    """Draw every Linear/Conv weight of ``model`` from ``scheme`` and zero its bias (``default``
    leaves both as they are); return what was drawn, layer by layer.

    ``generator`` (on the weights' device) makes the draws reproducible without touching the
    global random state.
    """
    import torch

    records = []
    with torch.no_grad():
        for name, module in weighted_modules(model):
            weight: torch.Tensor = module.weight  # type: ignore[assignment]
            fan = fans(weight.shape)
            drawn = formula(scheme, fan)
            if scheme.distribution is Distribution.NORMAL:
                assert drawn is not None
                weight.normal_(0.0, drawn.value, generator=generator)
            elif scheme.distribution is Distribution.UNIFORM:
                assert drawn is not None
                weight.uniform_(-drawn.value, drawn.value, generator=generator)
            elif scheme.distribution is Distribution.ZEROS:
                weight.zero_()
            bias = getattr(module, "bias", None)
            if bias is None:
                bias_state = "none"
            elif scheme.sets_bias:
                bias.zero_()
                bias_state = "zero"
            else:
                bias_state = "kept"
            records.append(InitRecord(
                name=name, type=type(module).__name__, weight_shape=tuple(weight.shape),
                fan_in=fan.fan_in, fan_out=fan.fan_out, fan_in_expr=fan.fan_in_expr,
                fan_out_expr=fan.fan_out_expr,
                formula=drawn.text if drawn is not None else None,
                expected_std=drawn.std if drawn is not None else None,
                weight_std=float(weight.detach().float().std(correction=0)),
                bias=bias_state,
            ))
    return tuple(records)
