"""A record under construction: what the tracer knows of one call while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from archscope.report import Kind, LayerFacts, Shape


@dataclass
class Frame:
    """One module call or functional op, mutable while the call runs; frozen into a
    :class:`~archscope.report.LayerRecord` once the trace ends
    (:func:`archscope.engine.attribution.records`)."""

    index: int
    name: str
    type: str
    kind: Kind
    depth: int
    parent: int | None
    is_leaf: bool
    module: nn.Module | None = None
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    output_keys: tuple[str, ...] = ()
    inputs: tuple[int, ...] = ()
    flops_before: int = 0
    macs: int = 0
    call: int = 0
    facts: LayerFacts = field(default_factory=LayerFacts)
    output_formula: str = ""

    @property
    def where(self) -> str:
        """``features.0 (Conv2d)``: how errors name the layer."""
        return f"{self.name} ({self.type})"


__all__ = ["Frame"]
