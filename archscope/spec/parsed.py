"""What parsing a layer spec gives: the input as written, its layout, and the layers (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a spec, after ``repeat`` expansion.

    Attributes:
        kind: canonical kind (``conv``, ``maxpool``, ``dense``, ``act`` …; see docs/spec.md).
        options: canonical options (``out``, ``kernel`` as ``(kh, kw)``, ``stride``, ``padding``
            as ``(ph, pw)`` or ``"same"``/``"valid"``, ``activation``, ``rate`` …).
        number: 1-based position in the expanded spec (what error messages call "layer N").
        text: the layer as written (whitespace collapsed), for messages.
        line / col: where it starts in the spec text (1-based).
    """

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    number: int = 0
    text: str = ""
    line: int = 1
    col: int = 1


@dataclass(frozen=True)
class ParsedSpec:
    """A parsed spec: the input as written, its layout, and the layers."""

    input_dims: tuple[int, ...] | None
    layout: str
    layers: tuple[LayerSpec, ...]
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The input in the engine's order: C×H×W for images (``(F,)`` for a flat input)."""
        return _to_chw(self.input_dims, self.layout)


def _to_chw(dims: tuple[int, ...] | None, layout: str) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if len(dims) == 2:  # H×W: one channel (a grey image)
        return (1, dims[0], dims[1])
    if len(dims) == 3 and layout == "hwc":
        return (dims[2], dims[0], dims[1])
    return dims
