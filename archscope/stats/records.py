"""What ``archscope stats`` measures: frozen dataclasses, no torch import.

A :class:`StatsRun` is one model under one initialization scheme: the weights the scheme drew
(:class:`InitRecord`, one per Linear/Conv weight) and what one forward and backward pass on a
random batch saw at every leaf module call (:class:`LayerStats`). Standard deviations are
population ones (divided by n, numpy's default), so a one-element tensor has std 0, not NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class LayerKind(str, Enum):
    """What a leaf module is, for the statistics."""

    WEIGHTED = "weighted"  # Linear and Conv (transposed included): what --init draws
    ACTIVATION = "activation"  # ReLU, sigmoid, tanh …
    NORM = "norm"  # BatchNorm, LayerNorm, GroupNorm …
    OTHER = "other"  # pooling, dropout, flatten, user layers …


@dataclass(frozen=True)
class InitRecord:
    """One Linear/Conv weight after the scheme drew it.

    Attributes:
        name: the module's qualified name (``features.conv1``).
        type: its class (``Conv2d``).
        weight_shape: the weight's shape.
        fan_in, fan_out: as ``torch.nn.init`` computes them.
        fan_in_expr, fan_out_expr: their arithmetic (``3·3·32``).
        formula: the scheme's formula with the numbers filled in
            (``He normal: std = √(2/fan_in) = √(2/288) = 0.0833``); ``None`` for ``default``.
        expected_std: the std the scheme gives the weights (a uniform's ``limit/√3``); ``None``
            for ``default``.
        weight_std: the measured std of the weights just drawn (or the model's own).
        bias: ``"zero"`` (set to 0 by the scheme), ``"kept"`` (``default``: the model's own) or
            ``"none"`` (the layer has no bias).
    """

    name: str
    type: str
    weight_shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    fan_in_expr: str
    fan_out_expr: str
    formula: str | None
    expected_std: float | None
    weight_std: float
    bias: str


@dataclass(frozen=True)
class Histogram:
    """Counts of a tensor's values in ``bins`` equal bins over ``[lo, hi]``."""

    lo: float
    hi: float
    counts: tuple[int, ...]


@dataclass(frozen=True)
class LayerStats:
    """One call of a leaf module in the forward pass, and the gradients of the backward pass.

    Attributes:
        name: the row's name: the module's qualified name, with `` (2)``, `` (3)`` … for its
            second, third … call (torchvision's ResNet calls one ``relu`` twice per block).
        module: the module's qualified name.
        call: 1 for the first call of the module, 2 for the second …
        type: the module's class.
        kind: what the module is.
        depth: for Linear/Conv rows, their position among the weighted calls (1 = first); else
            ``None``.
        output_shape: the output's shape, batch included (the first floating-point tensor of
            the output).
        mean, std: of the output's values.
        zero_pct: % of the output's values that are exactly 0 (dead ReLUs).
        saturated_pct: for sigmoid and tanh, % of values within 0.01 of an asymptote (below 0.01
            or above 0.99 for sigmoid, beyond ±0.99 for tanh); else ``None``.
        grad_std: std of the gradient of the loss reaching the output; ``None`` where none
            reaches it.
        weight_std: std of the weight (Linear/Conv rows), else ``None``.
        weight_grad_std: std of the weight's gradient (Linear/Conv rows), else ``None``.
        grad_ratio: ``weight_grad_std / weight_std``: how large one plain SGD step at learning
            rate 1 would be against the weights; ``None`` where either is missing or the weights
            are all 0.
        histogram: of all the output's values, over the output's own ``[min, max]`` (sigmoid:
            ``[0, 1]``, tanh: ``[−1, 1]``).
        sample: up to :data:`archscope.stats.probe.SAMPLE_SIZE` of the output's values, drawn at
            random (seeded), for histograms that share a range across layers and runs.
    """

    name: str
    module: str
    call: int
    type: str
    kind: LayerKind
    depth: int | None
    output_shape: tuple[int, ...]
    mean: float
    std: float
    zero_pct: float
    saturated_pct: float | None
    grad_std: float | None
    weight_std: float | None
    weight_grad_std: float | None
    grad_ratio: float | None
    histogram: Histogram
    sample: tuple[float, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field but ``sample``, non-finite numbers as ``None``."""
        data = asdict(self)
        del data["sample"]
        data["kind"] = self.kind.value
        data["output_shape"] = list(self.output_shape)
        data["histogram"]["counts"] = list(self.histogram.counts)
        return _finite(data)


@dataclass(frozen=True)
class StatsRun:
    """One model under one initialization scheme: what was drawn and what flowed.

    Attributes:
        model: the model's name (the source as typed, or the zoo name).
        scheme: the scheme's name as ``--init`` takes it (``he_normal``, ``normal:0.01``).
        scheme_label: for people (``He normal``).
        skipped: why the scheme could not apply (the model has no Linear/Conv weight), in one
            line; then nothing ran and ``init`` and ``layers`` are empty. ``None`` when it ran.
        input_shape: one sample's shape (without the batch).
        batch: the batch size.
        device: where it ran (``cpu``, ``cuda:0``).
        seed: the seed of the input, the labels, the drawn weights and any randomness in forward.
        no_norm: whether normalization layers were replaced by identity (``--no-norm``).
        norms_removed: how many were.
        loss: what the loss is, in words (``cross-entropy over 10 classes against random labels``).
        loss_value: its value.
        init: one record per Linear/Conv weight, in module order.
        layers: one record per leaf module call, in call order.
        notes: caveats, one line each.
    """

    model: str
    scheme: str
    scheme_label: str
    skipped: str | None
    input_shape: tuple[int, ...]
    batch: int
    device: str
    seed: int
    no_norm: bool = False
    norms_removed: int = 0
    loss: str = ""
    loss_value: float = math.nan
    init: tuple[InitRecord, ...] = ()
    layers: tuple[LayerStats, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``model · scheme`` (``plain34 · default``)."""
        return f"{self.model} · {self.scheme}"

    def weighted(self) -> list[LayerStats]:
        """The Linear/Conv rows, by depth."""
        return [layer for layer in self.layers if layer.kind is LayerKind.WEIGHTED]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (docs/stats.md lists the keys); non-finite numbers are ``None``."""
        return {
            "model": self.model,
            "scheme": self.scheme,
            "scheme_label": self.scheme_label,
            "skipped": self.skipped,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "device": self.device,
            "seed": self.seed,
            "no_norm": self.no_norm,
            "norms_removed": self.norms_removed,
            "loss": self.loss,
            "loss_value": _finite(self.loss_value),
            "init": [_finite({**asdict(r), "weight_shape": list(r.weight_shape)})
                     for r in self.init],
            "layers": [layer.to_dict() for layer in self.layers],
            "notes": list(self.notes),
        }


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (a diverging network) replaced by ``None``: JSON has
    no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
