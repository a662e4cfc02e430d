"""Hooks that record what flows through every leaf module in one forward and backward pass.

A forward hook on each leaf module measures its output at once (before any in-place operation
that follows, such as torchvision's ``ReLU(inplace=True)``, overwrites it) and registers a tensor
hook on that output. PyTorch calls a tensor hook registered before an in-place modification with
the gradient with respect to the value the hook saw ("Behavior of Tensor hooks when Tensor is
modified in-place", PyTorch's autograd notes), so each row's ``grad_std`` is the gradient that
reaches that layer's own output. Module backward hooks are not used: they break on the in-place
operations common in CNNs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch import nn

from archscope.stats.records import Histogram, LayerKind, LayerStats
from archscope.tensors import tensors_of

#: How many of each output's values are kept for histograms that share a range.
SAMPLE_SIZE = 4096
#: Bins of the histogram each layer keeps of its whole output.
HISTOGRAM_BINS = 20
#: A sigmoid or tanh value this close to an asymptote counts as saturated.
SATURATION_MARGIN = 0.01

#: Activations with asymptotes: type → (lower, upper). Their histograms span that range.
SATURATING: dict[type[nn.Module], tuple[float, float]] = {nn.Sigmoid: (0.0, 1.0),
                                                           nn.Tanh: (-1.0, 1.0)}

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid,
    nn.Hardswish, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Threshold,
)

#: Normalization layers (rows of kind ``norm``).
NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm,
)

#: What ``--no-norm`` replaces with identity: the layers that standardize activations with
#: statistics (BatchNorm, SyncBatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm). AlexNet's
#: LocalResponseNorm stays: it only divides by a neighbourhood's energy.
REMOVABLE_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm,
)

#: Leaves that are not layers: no rows.
_SKIPPED = (nn.Identity, nn.Sequential, nn.ModuleList, nn.ModuleDict)


def kind_of(module: nn.Module) -> LayerKind:
    """What ``module`` is, for the statistics."""
    if isinstance(module, nn.Linear | nn.modules.conv._ConvNd) and isinstance(
            getattr(module, "weight", None), nn.Parameter):
        return LayerKind.WEIGHTED
    if isinstance(module, ACTIVATIONS):
        return LayerKind.ACTIVATION
    if isinstance(module, NORMS):
        return LayerKind.NORM
    return LayerKind.OTHER


@dataclass
class _Call:
    """One leaf module call, filled in by the forward hook and then by the tensor hook."""

    name: str
    module_name: str
    call: int
    module: nn.Module
    kind: LayerKind
    depth: int | None
    output_shape: tuple[int, ...]
    mean: float
    std: float
    zero_pct: float
    saturated_pct: float | None
    histogram: Histogram
    sample: tuple[float, ...]
    grad_std: float | None = field(default=None)


class Probe:
    """Record every leaf module call of ``model`` while the block runs (``with Probe(m) as p``).

    ``generator`` (a CPU generator) picks each output's sample, so the records are reproducible.
    After the backward pass, :meth:`layers` gives the records with the weights' gradients.
    """

    def __init__(self, model: nn.Module, generator: torch.Generator) -> None:
        self._model = model
        self._generator = generator
        self._calls: list[_Call] = []
        self._counts: dict[str, int] = {}
        self._depth = 0
        self._handles: list[Any] = []

    def __enter__(self) -> Probe:
        for name, module in self._model.named_modules():
            if next(module.children(), None) is not None or isinstance(module, _SKIPPED):
                continue
            label = name or type(module).__name__  # a bare layer is named after its class
            hook = functools.partial(self._forward, label)
            self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _forward(self, module_name: str, module: nn.Module, args: Any, output: Any) -> None:
        tensors = [t for t in tensors_of(output) if t.is_floating_point() and t.numel() > 0]
        if not tensors:
            return
        out = tensors[0]
        values = out.detach().float()
        call = self._counts.get(module_name, 0) + 1
        self._counts[module_name] = call
        kind = kind_of(module)
        depth = None
        if kind is LayerKind.WEIGHTED:
            self._depth += 1
            depth = self._depth
        bounds = next((b for t, b in SATURATING.items() if isinstance(module, t)), None)
        n = values.numel()
        saturated = None
        if bounds is not None:
            lo, hi = bounds
            near = (values <= lo + SATURATION_MARGIN) | (values >= hi - SATURATION_MARGIN)
            saturated = 100.0 * float(near.sum()) / n
        std, mean = (float(v) for v in torch.std_mean(values, correction=0))
        index = len(self._calls)
        self._calls.append(_Call(
            name=module_name if call == 1 else f"{module_name} ({call})",
            module_name=module_name, call=call, module=module, kind=kind, depth=depth,
            output_shape=tuple(out.shape), mean=mean, std=std,
            zero_pct=100.0 * float((values == 0).sum()) / n, saturated_pct=saturated,
            # a NaN or infinity anywhere makes the mean non-finite: only then look for them
            histogram=_histogram(values, bounds, checked=math.isfinite(mean)),
            sample=self._sample(values),
        ))
        if out.requires_grad:
            out.register_hook(functools.partial(self._backward, index))

    def _backward(self, index: int, grad: torch.Tensor) -> None:
        self._calls[index].grad_std = float(grad.detach().float().std(correction=0))

    def _sample(self, values: torch.Tensor) -> tuple[float, ...]:
        flat = values.reshape(-1)
        if flat.numel() > SAMPLE_SIZE:
            picks = torch.randint(flat.numel(), (SAMPLE_SIZE,), generator=self._generator)
            flat = flat[picks.to(flat.device)]
        return tuple(flat.cpu().tolist())

    def layers(self, weight_stds: dict[str, float] | None = None) -> tuple[LayerStats, ...]:
        """The records, in call order, with each Linear/Conv weight's std (from
        ``weight_stds``, module name → std, where known) and its gradient's std."""
        known = dict(weight_stds or {})
        grad_stds: dict[str, float | None] = {}
        rows = []
        for c in self._calls:
            weight_std: float | None = None
            weight_grad_std: float | None = None
            ratio: float | None = None
            if c.kind is LayerKind.WEIGHTED:
                weight: torch.Tensor = c.module.weight  # type: ignore[assignment]
                if c.module_name not in known:
                    known[c.module_name] = float(weight.detach().float().std(correction=0))
                weight_std = known[c.module_name]
                if c.module_name not in grad_stds:
                    grad = weight.grad
                    grad_stds[c.module_name] = (None if grad is None else
                                                float(grad.detach().float().std(correction=0)))
                weight_grad_std = grad_stds[c.module_name]
                if weight_grad_std is not None and weight_std > 0:
                    ratio = weight_grad_std / weight_std
            rows.append(LayerStats(
                name=c.name, module=c.module_name, call=c.call, type=type(c.module).__name__,
                kind=c.kind, depth=c.depth, output_shape=c.output_shape, mean=c.mean, std=c.std,
                zero_pct=c.zero_pct, saturated_pct=c.saturated_pct, grad_std=c.grad_std,
                weight_std=weight_std, weight_grad_std=weight_grad_std, grad_ratio=ratio,
                histogram=c.histogram, sample=c.sample,
            ))
        return tuple(rows)


def _histogram(values: torch.Tensor, bounds: tuple[float, float] | None, *,
               checked: bool) -> Histogram:
    """``HISTOGRAM_BINS`` counts over ``bounds`` or the finite values' own range (``checked``:
    every value is known to be finite)."""
    finite = values if checked else values[torch.isfinite(values)]
    if finite.numel() == 0:
        return Histogram(0.0, 0.0, (0,) * HISTOGRAM_BINS)
    if bounds is not None:
        lo, hi = bounds
    else:
        low, high = torch.aminmax(finite)
        lo, hi = float(low), float(high)
    top = hi if hi > lo else lo + 1.0  # one value everywhere: all in the first bin
    counts = torch.histc(finite.reshape(-1), bins=HISTOGRAM_BINS, min=lo, max=top)
    return Histogram(lo, hi, tuple(int(c) for c in counts.tolist()))
