"""The ``--freeze`` rule: which parameters a prefix names, for models and ONNX files alike.

A prefix matches whole name components (``features`` freezes ``features.0.weight`` but not
``features_extra.weight``); ``""`` or ``"*"`` matches every parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from archscope.errors import ModelOptionError

if TYPE_CHECKING:
    from torch import nn


def freeze_parameters(model: nn.Module, prefixes: str | Sequence[str]) -> int:
    """Mark parameters whose qualified name starts with any of ``prefixes`` as frozen.

    A prefix matches whole name components (``features`` freezes ``features.0.weight`` but not
    ``features_extra.weight``); a string is one prefix. Returns the number of parameters frozen.

    Raises:
        ModelOptionError: a prefix that matches no parameter (a usage error).
    """
    hits = frozen_names([n for n, _ in model.named_parameters()], prefixes)
    frozen = 0
    for name, p in model.named_parameters():
        if name in hits and p.requires_grad:
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def frozen_names(names: Sequence[str], prefixes: str | Sequence[str], owner: str = ""
                 ) -> set[str]:
    """The parameter names under ``prefixes``: the ``--freeze`` rule for models and ONNX files.

    A prefix matches whole name components; ``""`` or ``"*"`` matches all. A string is one
    prefix (``"features"``, not its letters).

    Raises:
        ModelOptionError: a prefix that matches no parameter (the top-level names are listed).
    """
    frozen: set[str] = set()
    for prefix in prefixes_of(prefixes):
        clean = prefix.rstrip(".")
        hits = [n for n in names if n == clean or n.startswith(clean + ".") or clean in {"", "*"}]
        if not hits:
            tops = sorted({n.split(".")[0] for n in names})
            listed = ", ".join(tops) if tops else "none (there are no parameters)"
            of = f" of {owner}" if owner else ""
            raise ModelOptionError(
                f"--freeze {prefix!r} matches no parameter{of}; top-level names are: {listed}"
            )
        frozen.update(hits)
    return frozen


def prefixes_of(prefixes: str | Sequence[str]) -> tuple[str, ...]:
    """``"features"`` → ``("features",)``; a sequence of prefixes as it is."""
    return (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)


__all__ = ["freeze_parameters", "frozen_names", "prefixes_of"]
