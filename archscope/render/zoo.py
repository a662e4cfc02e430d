"""``archscope list``'s catalogue as text: an aligned table or JSON (no torch import)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archscope.registry import ModelEntry

FORMATS = ("table", "json")


def render_models(entries: Sequence[ModelEntry], fmt: str = "table") -> str:
    """``entries`` in ``fmt`` (one of :data:`FORMATS`): name, family, input, parameters and
    description of each."""
    if fmt == "json":
        data = [{"name": e.name, "family": e.family, "input_shape": list(e.input_shape),
                 "params": e.params, "params_source": e.params_source,
                 "description": e.description} for e in entries]
        return json.dumps(data, indent=2) + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = [(e.name, e.family, "×".join(map(str, e.input_shape)), f"{e.params:,}", e.description)
            for e in entries]
    header = ("name", "family", "input", "params", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for i, row in enumerate([header, *rows]):
        line = "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                          row[2].ljust(widths[2]), row[3].rjust(widths[3]), row[4]])
        lines.append(line.rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 11)
    return "\n".join(lines) + "\n"
