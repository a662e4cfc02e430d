"""CSV: one row per record, raw numbers (no thousands separators), for spreadsheets."""

from __future__ import annotations

import csv
import io

from archscope.render._columns import visible
from archscope.report import Report

COLUMNS = ("index", "name", "type", "kind", "depth", "output_shape", "params", "trainable",
           "param_formula", "output_formula", "macs")


def render_csv(report: Report, *, max_depth: int | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in visible(report, max_depth):
        shape = ";".join("x".join(str(d) for d in s) for s in r.output_shapes)
        writer.writerow([r.index, r.name, r.type, r.kind, r.depth, shape, r.params,
                         r.trainable_params, r.param_formula, r.output_formula, r.macs])
    return buffer.getvalue()
