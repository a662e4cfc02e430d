"""The terminal table (rich), in the spirit of Keras' ``model.summary()`` and torchinfo."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from archscope.render._columns import (
    formula_cell,
    macs_cell,
    params_cell,
    shape_cell,
    totals,
    visible,
)
from archscope.report import Report
from archscope.shapes import format_dims


def render_table(report: Report, *, explain: bool = False, width: int | None = 100,
                 color: bool = False, max_depth: int | None = None) -> str:
    """Render ``report`` as a box table plus a totals block.

    ``width=None`` uses the terminal's width; ``color=False`` gives plain, deterministic text
    (golden files use width 100 and no colour).
    """
    title = (f"{report.model} ({report.model_type}) · input {report.batch}×"
             f"{format_dims(report.input_shape)}")
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
                  header_style="bold" if color else "")
    table.add_column("Layer", overflow="fold")
    table.add_column("Type", overflow="fold")
    table.add_column("Output shape", overflow="fold")
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("Param formula", overflow="fold")
    if explain:
        table.add_column("Output size", overflow="fold")
    table.add_column("MACs", justify="right", no_wrap=True)
    for record in visible(report, max_depth):
        indent = "  " * (record.depth - 1)
        row = [
            indent + record.name,
            record.type,
            shape_cell(record),
            params_cell(record, report, max_depth),
            formula_cell(record, report, max_depth),
        ]
        if explain:
            row.append(record.output_formula)
        row.append(macs_cell(record))
        table.add_row(*row, style="dim" if color and record.kind == "function" else None)

    summary = Table.grid(padding=(0, 2))
    summary.add_column()
    summary.add_column(justify="right")
    for label, value in totals(report):
        summary.add_row(label, value)

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or _terminal_width(), no_color=not color,
                      color_system="auto" if color else None, highlight=False,
                      force_terminal=color, legacy_windows=False, emoji=False)
    console.print(table)
    console.print(summary)
    for note in report.notes:
        console.print(f"Note: {note}")
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _terminal_width() -> int:
    import shutil

    return max(shutil.get_terminal_size((120, 24)).columns, 80)
