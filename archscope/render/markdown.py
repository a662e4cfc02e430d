"""A GitHub-flavoured Markdown table, for reports and lecture notes."""

from __future__ import annotations

from archscope.render._columns import (
    RF_LEGEND,
    formula_text,
    header_parts,
    macs_cell,
    params_text,
    rows,
    shape_cell,
    shapes_note,
    totals,
)
from archscope.report import Report


def render_markdown(report: Report, *, explain: bool = False, max_depth: int | None = None,
                    rf: bool = False) -> str:
    """A heading, one table row per record, then the totals.

    The heading is the terminal table's title, on two lines that Markdown joins into one:
    ``**lecture_mnist_cnn** (LectureCNN) · input 1×28×28 · batch 1`` / ``· shapes without the
    batch dimension``. The shape cells are the table's (:func:`~archscope.render._columns.
    sample_shape`): ``32×26×26``, ``1×N×20`` where the batch is not first.
    """
    header = ["Layer", "Type", "Output shape", "Params", "Param formula"]
    if explain:
        header.append("Output size")
    header.append("MACs")
    fields = None
    if rf:
        from archscope.receptive import receptive_fields

        fields = receptive_fields(report)
        header += ["RF", "Jump", "Centre", "RF arithmetic"]
    shown = rows(report, max_depth)
    lines = [
        " · ".join([f"**{_escape(report.model)}** ({report.model_type})",
                    *header_parts(report)[1:]]),
        "· " + shapes_note(report, [row.record for row in shown]),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if h in {"Params", "MACs", "RF", "Jump", "Centre"} else "---"
                       for h in header) + "|",
    ]
    for row in shown:
        record = row.record
        name = "&nbsp;&nbsp;" * (record.depth - 1) + f"`{record.name}`"
        cells = [name, record.type, shape_cell(record),
                 params_text(row), formula_text(row)]
        if explain:
            cells.append(record.output_formula)
        cells.append(macs_cell(record))
        if fields is not None:
            f = fields[record.index]
            cells += [f.rf_text, f.jump_text, f.centre_text, f.rf_formula]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    lines += ["", "| Total | |", "|---|---:|"]
    lines += [f"| {label} | {value} |" for label, value in totals(report)]
    lines += [f"\n> Note: {note}" for note in report.notes]
    if fields is not None:
        lines.append(f"\n{RF_LEGEND}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
