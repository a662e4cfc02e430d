"""Renderers: a :class:`archscope.report.Report` in, text out (one module per format)."""

from __future__ import annotations

from archscope.report import Report

FORMATS = ("table", "json", "markdown", "csv")


def render(report: Report, fmt: str = "table", *, explain: bool = False, width: int | None = 100,
           color: bool = False, max_depth: int | None = None) -> str:
    """Render ``report`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "table":
        from archscope.render.table import render_table

        return render_table(report, explain=explain, width=width, color=color, max_depth=max_depth)
    if fmt == "json":
        from archscope.render.json import render_json

        return render_json(report)
    if fmt == "markdown":
        from archscope.render.markdown import render_markdown

        return render_markdown(report, explain=explain, max_depth=max_depth)
    if fmt == "csv":
        from archscope.render.csv import render_csv

        return render_csv(report, max_depth=max_depth)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
