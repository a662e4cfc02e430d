"""CSV: one row per record, raw numbers (no thousands separators), for spreadsheets.

The rows and the formula text are the table's (:func:`archscope.render._columns.rows`): at a
``--depth`` a collapsed container's ``params`` and ``trainable`` are its subtree's, so the
``params`` column always adds up to the total; ``shared_with`` names the row that counts a
shared weight.
"""

from __future__ import annotations

import csv
import io

from archscope.render._columns import formula_text, rows
from archscope.report import Report

COLUMNS = ("index", "name", "type", "kind", "depth", "output_shape", "params", "trainable",
           "param_formula", "output_formula", "macs", "shared_with")


#: the receptive-field columns ``--rf`` adds (the table's cells)
RF_COLUMNS = ("rf", "jump", "centre", "rf_formula")


def render_csv(report: Report, *, max_depth: int | None = None, rf: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS + (RF_COLUMNS if rf else ()))
    fields = None
    if rf:
        from archscope.receptive import receptive_fields

        fields = receptive_fields(report)
    for row in rows(report, max_depth):
        r = row.record
        shape = ";".join("x".join(str(d) for d in s) for s in r.output_shapes)
        cells = [r.index, r.name, r.type, r.kind, r.depth, shape, row.params, row.trainable,
                 formula_text(row), r.output_formula, row.macs, r.shared_with or ""]
        if fields is not None:
            f = fields[r.index]
            cells += [f.rf_text, f.jump_text, f.centre_text, f.rf_formula]
        writer.writerow(cells)
    return buffer.getvalue()
