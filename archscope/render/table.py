"""The terminal table (rich), in the spirit of Keras' ``model.summary()`` and torchinfo."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from archscope.render._columns import (
    formula_cell,
    human_count,
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

    ``width=None`` makes the table as wide as its content (nothing is cut); with a width, the
    name columns give way first. ``color=False`` gives plain, deterministic text (golden files use
    width 100 and no colour).
    """
    title = (f"{report.model} ({report.model_type}) · input {format_dims(report.input_shape)}"
             f" · batch {report.batch} · shapes without the batch dimension")
    records = visible(report, max_depth)
    rows = []
    for record in records:
        row = [
            " " * (record.depth - 1) + record.name,
            record.type,
            shape_cell(record, batch=False),
            params_cell(record, report, max_depth),
            formula_cell(record, report, max_depth),
        ]
        if explain:
            row.append(record.output_formula)
        row.append(human_count(record.macs) if record.macs else "—")
        rows.append(row)
    headers = ["Layer", "Type", "Output shape", "Params", "Param formula"]
    if explain:
        headers.append("Output size")
    headers.append("MACs")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  padding=(0, 1), header_style="bold" if color else "")
    # Numbers and arithmetic are never cut; on a narrow terminal the name columns give way.
    longest = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    natural = sum(longest) + 3 * (len(headers) - 1)
    total_width = width or natural
    spare = total_width - sum(longest[2:]) - 3 * (len(headers) - 1)
    if width is None:
        layer_width, type_width = longest[0], longest[1]
    else:
        type_width = min(longest[1], max(8, spare // 3))
        layer_width = max(8, min(longest[0], spare - type_width))
        if layer_width < longest[0]:
            # Too narrow for qualified names: show each row's last name component under its
            # parent, as torchinfo does, and give the type column what is left.
            for record, row in zip(records, rows, strict=True):
                row[0] = " " * (record.depth - 1) + _short_name(record.name)
            longest[0] = max(len(r[0]) for r in [headers, *rows])
            layer_width = max(8, min(longest[0], spare - type_width))
            type_width = max(type_width, min(longest[1], spare - layer_width))
    for i, header in enumerate(headers):
        table.add_column(header, no_wrap=True, overflow="ellipsis",
                         justify="right" if header in {"Params", "MACs"} else "left",
                         width=(layer_width, type_width)[i] if i < 2 else longest[i])
    for record, row in zip(records, rows, strict=True):
        table.add_row(*row, style="dim" if color and record.kind == "function" else None)

    summary = Table.grid(padding=(0, 2))
    summary.add_column()
    summary.add_column(justify="right")
    for label, value in totals(report):
        summary.add_row(label, value)

    buffer = io.StringIO()
    console = Console(file=buffer, width=max(total_width, len(title), 60), no_color=not color,
                      color_system="auto" if color else None, highlight=False,
                      force_terminal=color, legacy_windows=False, emoji=False)
    console.print(title, overflow="fold")
    console.print(table)
    console.print()
    console.print(summary)
    for note in report.notes:
        console.print(f"Note: {note}")
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _short_name(name: str) -> str:
    """``layer1.0.conv1`` → ``conv1``."""
    return name.rsplit(".", 1)[-1]
