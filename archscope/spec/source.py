"""A spec as a model source (``spec:FILE`` or ``spec:TEXT``): the text and the model it builds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from archscope.errors import ModelSourceError
from archscope.spec.build import build_spec

if TYPE_CHECKING:
    from torch import nn


def read_spec(source: str) -> tuple[str, str]:
    """``spec:`` argument → (spec text, model name): a file's text if it exists, else itself."""
    path = Path(source)
    try:
        is_file = len(source) < 4096 and "\n" not in source and path.is_file()
    except (OSError, ValueError):
        is_file = False
    if is_file:
        try:
            return path.read_text(encoding="utf-8"), source
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelSourceError(f"cannot read spec file {source}: {exc}") from None
    if not any(c.isspace() for c in source) and (
            "/" in source or source.lower().endswith((".spec", ".txt", ".net"))):
        raise ModelSourceError(f"spec file {source} does not exist; give a file's path or the "
                               "layers themselves, like 'spec:28x28x1 conv32 k3 → dense10'")
    return source, " ".join(source.split())


def load_spec_source(source: str) -> tuple[nn.Module, str, tuple[int, ...]]:
    """What ``spec:SOURCE`` means to :mod:`archscope.source`: a file or the spec text itself.

    Returns the model built on the current default device, its display name (the file's path or
    the text) and its input shape C×H×W.
    """
    text, name = read_spec(source)
    built = build_spec(text, name=name)
    return built.model, built.name, built.input_shape
