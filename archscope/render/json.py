"""JSON output: ``Report.to_dict()`` with the stable keys documented in docs/summary.md.

Shapes are in the order the top-level ``layout`` key names (``"chw"``, or ``"hwc"`` for a layer spec
written H×W×C); see docs/spec.md.
"""

from __future__ import annotations

import json
from typing import Any

from archscope.render._columns import rows
from archscope.report import Report


def render_json(report: Report, *, max_depth: int | None = None, rf: bool = False) -> str:
    """``report.to_dict()`` with the rows ``--depth`` shows, each marked ``collapsed``; with
    ``rf``, each row's ``receptive_field`` (:meth:`archscope.receptive.LayerField.to_dict`).

    A collapsed row (a container at ``max_depth``, its children left out) stands for its subtree:
    its ``params`` and ``trainable`` are the subtree's and its ``param_formula`` is empty, as in
    the table, so ``params`` adds up to ``total_params`` at every depth.
    """
    data = report.to_dict()
    fields = None
    if rf:
        from archscope.receptive import receptive_fields

        fields = receptive_fields(report)
    by_index: dict[int, dict[str, Any]] = {layer["index"]: layer for layer in data["layers"]}
    layers = []
    for row in rows(report, max_depth):
        layer = by_index[row.record.index]
        layer["collapsed"] = row.collapsed
        if row.collapsed:
            layer.update(params=row.params, trainable=row.trainable, param_formula="")
        if fields is not None:
            layer["receptive_field"] = fields[row.record.index].to_dict()
        layers.append(layer)
    data["layers"] = layers
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
