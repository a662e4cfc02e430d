"""Parsing and printing tensor shapes (pure Python, no torch)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from archscope.errors import InputShapeError

_SEP = re.compile(r"\s*[x×X*,]\s*")


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``3x224x224`` (also ``3×224×224``, ``3,224,224``, ``(3, 224, 224)``) into a tuple.

    Raises:
        InputShapeError: naming the bad part, for anything that is not positive integers.
    """
    body = text.strip().strip("()[]").strip()
    if not body:
        raise InputShapeError(f"empty input shape {text!r}; write it like 3x224x224 (C×H×W)")
    parts = _SEP.split(body)
    dims: list[int] = []
    for i, part in enumerate(parts, 1):
        if not part.isdigit() or int(part) <= 0:
            raise InputShapeError(
                f"malformed input shape {text!r}: part {i} ({part!r}) is not a positive integer; "
                "write it like 3x224x224 (C×H×W)"
            )
        dims.append(int(part))
    return tuple(dims)


def format_shape(shape: tuple[int, ...] | list[int]) -> str:
    """``(1, 32, 26, 26)`` → ``[1, 32, 26, 26]`` (torchinfo's style)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_dims(shape: Sequence[int | str], sep: str = "×") -> str:
    """``(3, 224, 224)`` → ``3×224×224``; a dimension may be a name (``(1, "N", 20)`` →
    ``1×N×20``)."""
    return sep.join(str(d) for d in shape)
