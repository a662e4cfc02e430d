"""A GitHub-flavoured Markdown table, for reports and lecture notes."""

from __future__ import annotations

from archscope.render._columns import (
    formula_text,
    header_parts,
    macs_cell,
    params_text,
    rows,
    shape_cell,
    totals,
)
from archscope.report import Report


def render_markdown(report: Report, *, explain: bool = False, max_depth: int | None = None) -> str:
    """A heading line, one table row per record (shapes with the batch), then the totals.

    The heading follows the terminal table's: ``**lecture_mnist_cnn** (LectureCNN) · input
    1×28×28 · batch 1``.
    """
    header = ["Layer", "Type", "Output shape", "Params", "Param formula"]
    if explain:
        header.append("Output size")
    header.append("MACs")
    lines = [
        " · ".join([f"**{_escape(report.model)}** ({report.model_type})",
                    *header_parts(report)[1:]]),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if h in {"Params", "MACs"} else "---" for h in header) + "|",
    ]
    for row in rows(report, max_depth):
        record = row.record
        name = "&nbsp;&nbsp;" * (record.depth - 1) + f"`{record.name}`"
        cells = [name, record.type, shape_cell(record), params_text(row), formula_text(row)]
        if explain:
            cells.append(record.output_formula)
        cells.append(macs_cell(record))
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    lines += ["", "| Total | |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in totals(report)]
    lines += [f"\n> Note: {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
