"""Renderers: a :class:`archscope.report.Report` in, text out (one module per format)."""

from __future__ import annotations

from archscope.render._columns import RF_LEGEND
from archscope.report import Report

FORMATS = ("table", "json", "markdown", "csv")

#: The table width when stdout is not a terminal: fixed, so piped output is deterministic (the
#: golden files use it).
PIPED_WIDTH = 100

#: ``--rf``'s help, the same for summary and calc.
RF_HELP = ("Add each layer's receptive field (rows×columns where they differ), jump (effective "
           "stride) and centre of the first output unit, in input pixels, with the arithmetic.")

#: ``--width``'s help, the same for every command that prints a table.
WIDTH_HELP = ("Table width in columns (default: the terminal's; 100 when piped). Numbers and "
              "formulas are never cut: text folds to fit, and a table that cannot fit is wider.")

__all__ = ["FORMATS", "PIPED_WIDTH", "RF_HELP", "RF_LEGEND", "WIDTH_HELP", "output_width", "render"]


def output_width(width: int | None, tty: bool) -> int:
    """The width a command renders at: ``width`` (``--width``) if given, else the terminal's
    on a tty, else :data:`PIPED_WIDTH`."""
    if width is not None:
        return width
    if tty:
        import shutil

        return shutil.get_terminal_size((PIPED_WIDTH, 24)).columns
    return PIPED_WIDTH


def render(report: Report, fmt: str = "table", *, explain: bool = False, width: int | None = 100,
           color: bool = False, max_depth: int | None = None, rf: bool = False) -> str:
    """Render ``report`` in ``fmt`` (one of :data:`FORMATS`); ``rf`` adds each layer's receptive
    field, jump and centre (:func:`archscope.receptive.receptive_fields`)."""
    if fmt == "table":
        from archscope.render.table import render_table

        return render_table(report, explain=explain, width=width, color=color, max_depth=max_depth,
                            rf=rf)
    if fmt == "json":
        from archscope.render.json import render_json

        return render_json(report, max_depth=max_depth, rf=rf)
    if fmt == "markdown":
        from archscope.render.markdown import render_markdown

        return render_markdown(report, explain=explain, max_depth=max_depth, rf=rf)
    if fmt == "csv":
        from archscope.render.csv import render_csv

        return render_csv(report, max_depth=max_depth, rf=rf)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
