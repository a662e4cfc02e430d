"""The terminal table (rich), in the spirit of Keras' ``model.summary()`` and torchinfo.

Numbers and arithmetic are never cut: a parameter count, a MACs value with its unit, a shape, a
formula is shown whole or folded onto a further line of its cell, never ellipsised. To fit a
width the table gives way in this order:

1. the title wraps (between its `` · `` parts, then between words);
2. layer names show only their last component, indented under their parent (as torchinfo does);
3. long type names fold at a capital (``AdaptiveAvg`` / ``Pool2d``);
4. the param formula and output-size arithmetic fold onto a second line of their cell, at
   `` = `` first, then after a ``·`` or before a ``+`` outside brackets (never inside a
   number); two-word headers take two lines;
5. the gaps between columns narrow from 3 spaces to 2;
6. types and arithmetic fold onto as many lines as it takes, at the same places;
7. the gaps narrow to 1 space;
8. arithmetic folds inside brackets too, shapes between outputs, layer names after a ``.``.

A table that still does not fit is wider than asked (the terminal wraps its lines): nothing is
cut. The totals and notes wrap at the width.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from archscope.render._columns import (
    RF_LEGEND,
    formula_cell,
    header_parts,
    human_count,
    params_cell,
    shape_cell,
    shapes_note,
    totals,
    visible,
)
from archscope.report import LayerRecord, Report

#: Characters between two columns: padding 1 + the (blank) divider 1 + padding 1; steps 5 and
#: 7 drop a padding each.
GAPS = (3, 2, 1)

#: Breaks allowed up to step 7: between words, and at an operator outside brackets.
GOOD = 3
#: Breaks allowed in step 8: anywhere but inside a number.
ANY = 9

#: A break opportunity: (position, badness). A line may end before ``text[position:]``; lower
#: badness is preferred over a longer line.
Break = tuple[int, int]


def render_table(report: Report, *, explain: bool = False, width: int | None = 100,
                 color: bool = False, max_depth: int | None = None, rf: bool = False) -> str:
    """Render ``report`` as a box table plus a totals block.

    ``width=None`` makes the table as wide as its content (nothing folds); with a width, the
    table gives way as the module docstring describes and exceeds ``width`` only where even
    that cannot fit it. ``color=False`` gives plain, deterministic text (golden files use width
    100 and no colour). ``rf`` adds the receptive-field columns (RF, Jump, Centre and the RF
    arithmetic) and their legend.
    """
    records = visible(report, max_depth)
    columns = _columns(report, records, explain, max_depth, rf)
    if width is not None and _natural_width(columns) > width:
        columns = _with_short_names(columns, records)                   # step 2
    widths, gap = _fit_columns(columns, width)

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  padding=(0, 1 if gap > 1 else 0, 0, 1 if gap > 2 else 0),
                  header_style="bold" if color else "")
    for column, w in zip(columns, widths, strict=True):
        # The cells are folded here already, each line at most w wide; "fold" keeps even an
        # unforeseen overlong line whole. Text, not markup: a name may hold "[".
        table.add_column(Text("\n".join(column.wrap(column.header, w))), width=w, no_wrap=True,
                         overflow="fold", justify="right" if column.right else "left")
    for i, record in enumerate(records):
        table.add_row(*(Text("\n".join(c.wrap(c.cells[i], w)))
                        for c, w in zip(columns, widths, strict=True)),
                      style="dim" if color and record.kind == "function" else None)
    table_width = sum(widths) + gap * (len(widths) - 1)

    rows = totals(report)
    label_width = max(len(label) for label, _ in rows)
    if width is not None:
        # "8.32 MiB (batch 1, saved for backward)": a remark in brackets that does not fit goes
        # on a line of its own.
        rows = [(label, value.replace(" (", "\n(") if label_width + 2 + len(value) > width
                 else value) for label, value in rows]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(no_wrap=True, overflow="fold")
    summary.add_column(no_wrap=True, overflow="fold", justify="right")
    for label, value in rows:
        summary.add_row(Text(label), Text(value))
    summary_width = label_width + 2 + max(len(line) for _, value in rows
                                          for line in value.split("\n"))

    title = " · ".join([*header_parts(report), shapes_note(report, records)])
    text_width = width if width is not None else max(table_width, len(title))
    buffer = io.StringIO()
    # The console is as wide as the table, so rich never shrinks (and so never cuts) a column.
    console = Console(file=buffer, width=max(table_width, text_width, summary_width),
                      no_color=not color,
                      color_system="auto" if color else None, highlight=False,
                      force_terminal=color, legacy_windows=False, emoji=False)
    for line in _wrap_title(title, width):
        console.print(line, no_wrap=True, overflow="ignore", crop=False, markup=False)
    console.print(table)
    console.print()
    console.print(summary, width=max(text_width, summary_width))
    for note in report.notes:
        for line in _wrap_text(f"Note: {note}", width):
            console.print(line, no_wrap=True, overflow="ignore", crop=False, markup=False)
    if rf:
        for line in _wrap_text(RF_LEGEND, width):
            console.print(line, no_wrap=True, overflow="ignore", crop=False, markup=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


@dataclass
class _Column:
    """One table column: its cells, and where they may fold (``breaks=None``: never)."""

    header: str
    cells: list[str]
    right: bool = False
    breaks: Callable[[str], list[Break]] | None = None
    #: Arithmetic: folds in steps 4, 6 and 8.
    arithmetic: bool = False
    #: The worst break allowed now: :data:`GOOD` until step 8.
    max_bad: int = field(default=0, repr=False)
    _cache: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.max_bad = GOOD

    @property
    def natural(self) -> int:
        return max(len(text) for text in [self.header, *self.cells])

    def wrap(self, text: str, width: int) -> list[str]:
        """``text`` folded into lines of at most ``width`` where it can be."""
        if len(text) <= width:
            return [text]
        if text == self.header:
            return _fold(text, width, _space_breaks, GOOD)
        if self.breaks is None:
            return [text]
        return _fold(text, width, self.breaks, self.max_bad)

    def fitted(self, width: int) -> int:
        """The column's width when its cells are folded to ``width`` (more if they cannot)."""
        key = (width, self.max_bad)
        if key not in self._cache:
            self._cache[key] = max(len(line) for text in [self.header, *self.cells]
                                   for line in self.wrap(text, width))
        return self._cache[key]

    def lines(self, width: int) -> int:
        """The lines all cells take at ``width``."""
        return sum(len(self.wrap(text, width)) for text in self.cells)

    def floor(self, max_lines: int | None) -> int:
        """The narrowest width whose cells fold into at most ``max_lines`` lines (any: None)."""
        best = self.natural
        for w in range(self.natural - 1, 0, -1):
            if self.fitted(w) > w or (max_lines is not None and any(
                    len(self.wrap(text, w)) > max_lines for text in self.cells)):
                break
            best = w
        return best


def _fit_columns(columns: list[_Column], width: int | None) -> tuple[list[int], int]:
    """Column widths and the gap between columns for a table at most ``width`` wide.

    Steps 3–8 of the module docstring, each only as far as needed. When ``width`` cannot be
    met even with step 8, the layout of step 7, wider than ``width`` (cells folded inside
    brackets would not help a terminal that wraps the lines anyway).
    """
    widths = [c.natural for c in columns]
    gap = GAPS[0]

    def excess() -> int:
        return sum(widths) + gap * (len(widths) - 1) - (width or 0)

    if width is None or excess() <= 0:
        return widths, gap

    shrunk: list[int] = []

    def shrink(i: int, floor: int) -> None:
        # Fold column i to the narrowest width, not below floor, that removes the excess.
        goal = max(floor, widths[i] - excess())
        for target in range(goal, widths[i]):
            if columns[i].fitted(target) <= target:
                widths[i] = columns[i].fitted(target)
                shrunk.append(i)
                return

    headers = [c.header for c in columns]
    layer, kind, shape = headers.index("Layer"), headers.index("Type"), headers.index("Output shape")
    arithmetic = sorted((i for i, c in enumerate(columns) if c.arithmetic),
                        key=lambda i: -widths[i])
    shrink(kind, columns[kind].floor(2))                               # step 3
    for i in arithmetic:                                               # step 4
        shrink(i, columns[i].floor(2))
    shrink(shape, max((len(text) for text in columns[shape].cells), default=1))  # 2-line header
    if excess() > 0:                                                   # step 5
        gap = GAPS[1]
    for i in [kind, *arithmetic]:                                      # step 6
        shrink(i, columns[i].floor(None))
    if excess() > 0:                                                   # step 7
        gap = GAPS[2]
    step7 = list(widths)
    for i in [*arithmetic, shape, layer]:                              # step 8
        if excess() > 0:
            columns[i].max_bad = ANY
            shrink(i, columns[i].floor(None))
    if excess() > 0:
        widths = step7
    for column, before, after in zip(columns, step7, widths, strict=True):
        if before == after:
            column.max_bad = GOOD
    # A later step may have freed more than it needed: give the room back where it saves the
    # most lines.
    while excess() < 0:
        # (lines saved, narrower first, column): the best use of the room left
        gains = [(columns[i].lines(widths[i]) - columns[i].lines(w), -w, i)
                 for i in sorted(set(shrunk))
                 for w in range(widths[i] + 1, widths[i] - excess() + 1)
                 if columns[i].fitted(w) <= w]
        saved, minus_w, i = max(gains, default=(0, 0, 0))
        if saved <= 0:
            break
        widths[i] = columns[i].fitted(-minus_w)
    return widths, gap


def _natural_width(columns: list[_Column]) -> int:
    """The width of ``columns`` with nothing folded."""
    return sum(c.natural for c in columns) + GAPS[0] * (len(columns) - 1)


def _columns(report: Report, records: list[LayerRecord], explain: bool,
             max_depth: int | None, rf: bool = False) -> list[_Column]:
    columns = [
        _Column("Layer", [" " * (r.depth - 1) + r.name for r in records], breaks=_name_breaks),
        _Column("Type", [r.type for r in records], breaks=_camel_breaks),
        _Column("Output shape",
                [shape_cell(r) for r in records],
               breaks=_space_breaks),
        _Column("Params", [params_cell(r, report, max_depth) for r in records], right=True),
        _Column("Param formula", [formula_cell(r, report, max_depth) for r in records],
               breaks=_formula_breaks, arithmetic=True),
    ]
    if explain:
        columns.append(_Column("Output size", [r.output_formula for r in records],
                              breaks=_formula_breaks, arithmetic=True))
    columns.append(_Column("MACs", [human_count(r.macs) if r.macs else "—" for r in records],
                          right=True))
    if rf:
        from archscope.receptive import receptive_fields

        every = receptive_fields(report)
        fields = [every[r.index] for r in records]
        columns += [
            _Column("RF", [f.rf_text for f in fields], right=True, breaks=_space_breaks),
            _Column("Jump", [f.jump_text for f in fields], right=True),
            _Column("Centre", [f.centre_text for f in fields], right=True),
            _Column("RF arithmetic", [f.rf_formula for f in fields], breaks=_formula_breaks,
                    arithmetic=True),
        ]
    return columns


def _with_short_names(columns: list[_Column], records: list[LayerRecord]) -> list[_Column]:
    """``columns`` with each layer shown by its last name component under its parent.

    Nothing is lost: every row's parent is shown above it (``--depth`` hides only deeper rows).
    """
    short = [" " * (r.depth - 1) + r.name.rsplit(".", 1)[-1] for r in records]
    return [_Column("Layer", short, breaks=_name_breaks), *columns[1:]]


def _wrap_title(title: str, width: int | None) -> list[str]:
    """The title in lines of at most ``width``: whole `` · `` parts first, then words."""
    if width is None or len(title) <= width:
        return [title]
    lines: list[str] = []
    for part in title.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines += _wrap_text(part, width)
    return lines


def _wrap_text(text: str, width: int | None) -> list[str]:
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)


def _fold(text: str, width: int, breaks: Callable[[str], list[Break]], max_bad: int) -> list[str]:
    """Fold ``text`` into lines of at most ``width`` at its break opportunities.

    Each line ends at the least bad break (no worse than ``max_bad``) that fits, the latest
    among equals; a piece with no break that fits stays whole on a longer line. Spaces at a
    break are dropped, and a continuation keeps the indentation of the first line.
    """
    indent = text[: len(text) - len(text.lstrip(" "))]
    lines: list[str] = []
    rest = text
    while len(rest) > width:
        body = rest[len(indent):] if lines else rest
        start = len(rest) - len(body)
        allowed = [(pos, bad) for pos, bad in breaks(rest) if start < pos and bad <= max_bad]
        fitting = [(bad, -pos) for pos, bad in allowed if len(rest[:pos].rstrip()) <= width]
        if fitting:
            pos = -min(fitting)[1]
        else:
            later = [pos for pos, _ in allowed]
            if not later:
                break
            pos = min(later)
        lines.append(rest[:pos].rstrip())
        rest = indent + rest[pos:].lstrip()
    return [*lines, rest]


def _space_breaks(text: str) -> list[Break]:
    """Between words only."""
    return [(i, 0) for i in range(1, len(text)) if text[i - 1] == " " and text[i] != " "]


def _formula_breaks(text: str) -> list[Break]:
    """Arithmetic: `` = `` and other spaces best, then ``·`` and ``+ − /`` outside brackets.

    ``⌊(224+2·3−7)/2⌋+1 = 112`` folds to ``⌊(224+2·3−7)/2⌋+1`` / ``= 112``, then to
    ``⌊(224+2·3−7)/2⌋`` / ``+1 = 112``; ``(3·3·384+1)·384`` to ``(3·3·384+1)·`` / ``384``. A
    number is never split.
    """
    out: list[Break] = []
    depth = 0
    for i, ch in enumerate(text):
        if i and not (text[i - 1].isdigit() and ch.isdigit()):
            prev = text[i - 1]
            if prev == " " and ch != " ":
                out.append((i, 0 if ch == "=" else 1))
            elif prev in "·×*" and ch != " ":
                out.append((i, 2 if depth == 0 else 4))
            elif ch in "+−-/" and prev != " ":
                out.append((i, 3 if depth == 0 else 4))
            elif prev in "(⌊⌈" or ch in ")⌋⌉":
                pass  # keep a bracket with its operand
            elif ch != " " and prev != " ":
                out.append((i, 5))
        if ch in "(⌊⌈[":
            depth += 1
        elif ch in ")⌋⌉]":
            depth -= 1
    return out


def _camel_breaks(text: str) -> list[Break]:
    """``AdaptiveAvgPool2d`` → ``Adaptive|Avg|Pool2d``; ``scaled_dot`` → ``scaled_|dot``."""
    return [(i, 0) for i in range(1, len(text))
            if (text[i - 1].islower() and text[i].isupper())
            or (text[i - 1] in "_. " and text[i] != " ")]


def _name_breaks(text: str) -> list[Break]:
    """Qualified names fold after a ``.``, then after ``_``, then at a capital; never mid-word."""
    out: list[Break] = []
    for i in range(1, len(text)):
        prev, ch = text[i - 1], text[i]
        if prev == " ":
            continue
        if prev == ".":
            out.append((i, 0))
        elif prev == "_":
            out.append((i, 1))
        elif prev.islower() and ch.isupper():
            out.append((i, 2))
    return out
