"""``archscope memory`` output: the peak, its breakdown and the step's timeline (table, JSON, plot).

The table is plain text at a fixed width when piped (no colour) and coloured on a terminal; the
timeline is one row per phase and top-level layer, with a bar stacked by category. The plot
(``--plot FILE.png|svg``) needs matplotlib, the ``plot`` extra.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from archscope.errors import RenderError
from archscope.memory.result import CATEGORIES, MemoryPoint, TrainingMemory
from archscope.render._columns import human_bytes

if TYPE_CHECKING:
    from archscope.memory.fit import FitResult

#: How each category shows: its label, its letter in an uncoloured bar, its colour.
STYLES: dict[str, tuple[str, str, str]] = {
    "weights": ("weights", "W", "blue"),
    "weight_copies": ("weight copies", "C", "cyan"),
    "gradients": ("gradients", "G", "magenta"),
    "optimizer_state": ("optimizer state", "O", "yellow"),
    "activations": ("activations", "A", "green"),
    "temporaries": ("temporaries", "T", "red"),
    "inputs": ("inputs", "I", "white"),
    "workspace": ("workspace", "K", "bright_black"),
}
#: Matplotlib colours, in :data:`CATEGORIES` order.
PLOT_COLOURS = ("#4c72b0", "#64b5cd", "#8172b3", "#ccb974", "#55a868", "#c44e52", "#937860",
                "#8c8c8c")
#: Timeline rows at most; beyond it the rows are per top-level module only.
MAX_ROWS = 30
OPTIMIZER_NAMES = {"sgd": "SGD", "adamw": "AdamW", "adam": "Adam", "none": "no optimizer"}


@dataclass(frozen=True)
class TimelineRow:
    """Stretches of one phase within one part of the model, at their highest point."""

    step: int
    phase: str
    layer: str
    total: int
    parts: tuple[int, ...]


def timeline_rows(result: TrainingMemory, step: int, depth: int | None = None
                  ) -> list[TimelineRow]:
    """The timeline of ``step`` grouped by phase and module path cut to ``depth`` components
    (default: 2 where that gives at most :data:`MAX_ROWS` rows, else 1)."""
    points = result.step_points(step)
    if depth is None:
        rows = _group(points, 2)
        return rows if len(rows) <= MAX_ROWS else _group(points, 1)
    return _group(points, depth)


def _group(points: Sequence[MemoryPoint], depth: int) -> list[TimelineRow]:
    """Consecutive stretches of a phase in the same module (cut to ``depth``) as one row; a
    container's own operators between its children's join the row before them."""
    rows: list[TimelineRow] = []
    for p in points:
        layer = ".".join(p.layer.split(".")[:depth]) if p.layer else ""
        last = rows[-1] if rows else None
        if last is not None and last.phase == p.phase and (
                last.layer == layer or last.layer.startswith(f"{layer}.") or
                (not layer and last.layer)):
            if p.total > last.total:
                rows[-1] = TimelineRow(p.step, p.phase, last.layer, p.total, p.parts)
            continue
        rows.append(TimelineRow(p.step, p.phase, layer, p.total, p.parts))
    return rows


def _where(row: TimelineRow) -> str:
    """A row's layer; outside any module: the model's own code in forward, the loss's backward."""
    if row.layer:
        return row.layer
    return {"forward": "(model)", "backward": "(loss)"}.get(row.phase, "")


def title(result: TrainingMemory) -> str:
    shape = "×".join(str(d) for d in result.input_shape)
    optimizer = OPTIMIZER_NAMES[result.optimizer]
    if result.optimizer_impl:
        optimizer += f" ({result.optimizer_impl})"
    device = "CUDA" if result.device == "cuda" else "the CPU"
    return (f"{result.model} · input {shape} · batch {result.batch:,} · {result.precision} · "
            f"{optimizer} · predicted for {device}")


def render_memory_table(result: TrainingMemory, *, fit: FitResult | None = None,
                        fits: Sequence[str] | None = None, width: int = 100,
                        color: bool = False) -> str:
    """The peak, what is allocated at that moment, and the step's timeline."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=not color,
                      color_system="auto" if color else None, highlight=False,
                      force_terminal=color, legacy_windows=False, emoji=False)

    def say(text: str | Text = "") -> None:
        console.print(text, markup=False, overflow="fold", crop=False)

    say(title(result))
    if fit is not None:
        for line in _fit_lines(fit):
            say(line)
    say(Text.assemble(("Peak memory  ", "bold" if color else ""),
                      (f"{human_bytes(result.peak)}", "bold" if color else ""),
                      f"  in {result.where}"))
    if fits is not None:
        say(_fits_line(fits))
    say()
    say("At the peak")
    order = sorted(range(len(CATEGORIES)), key=lambda i: -result.peak_parts[i])
    bar_width = max(10, min(40, width - 40))
    for i in order:
        size = result.peak_parts[i]
        if size == 0:
            continue
        label, _, colour = STYLES[CATEGORIES[i]]
        share = size / result.peak if result.peak else 0.0
        bar = "█" * max(1, round(share * bar_width)) if color else "#" * round(share * bar_width)
        say(Text.assemble(f"  {label:<16}{human_bytes(size):>11}  {share:6.1%}  ",
                          (bar, colour if color else "")))
    say()
    step = result.peak_step
    other = 1 if step == 2 else 2
    other_peak = max((p.total for p in result.step_points(other)), default=0)
    which = ("every step after the first" if step == 2 else "the first step, which creates the "
             "optimizer state")
    say(f"Timeline of {which} (step {other} peaks at {human_bytes(other_peak)})")
    rows = timeline_rows(result, step)
    layer_width = min(max((len(_where(r)) for r in rows), default=5), 24)
    bar_width = max(10, width - (2 + 9 + 1 + layer_width + 2 + 11 + 2))
    for row in rows:
        layer = _where(row)
        layer = layer if len(layer) <= layer_width else "…" + layer[-layer_width + 1:]
        marker = "◀ peak" if row.total == result.peak and row.step == result.peak_step else ""
        text = Text(f"  {row.phase:<9} {layer:<{layer_width}}  {human_bytes(row.total):>11}  ")
        text.append_text(_bar(row.parts, result.peak, bar_width - (7 if marker else 0), color))
        if marker:
            text.append(f" {marker}")
        say(text)
    say(_legend(color))
    for note in result.notes:
        say(f"Note: {note}")
    if fit is not None:
        for note in fit.notes:
            say(f"Note: {note}")
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _bar(parts: Sequence[int], peak: int, width: int, color: bool) -> Text:
    """A bar of ``width`` columns at ``peak``, split by category (cumulative rounding)."""
    text = Text()
    if peak <= 0:
        return text
    done = 0
    running = 0
    for category, size in zip(CATEGORIES, parts, strict=True):
        running += size
        end = round(running / peak * width)
        if end > done:
            _, letter, colour = STYLES[category]
            text.append(("█" if color else letter) * (end - done), colour if color else "")
            done = end
    return text


def _legend(color: bool) -> Text:
    text = Text("  ")
    for category in CATEGORIES:
        label, letter, colour = STYLES[category]
        text.append("█" if color else letter, colour if color else "")
        text.append(f" {label}  ")
    return text


def _fit_lines(fit: FitResult) -> list[str]:
    size = human_bytes(fit.memory)
    if fit.batch is None:
        return [f"Not even batch 1 fits in {size} ({human_bytes(fit.budget)} for the step after "
                "the headroom)"]
    return [f"Largest batch that fits in {size}: {fit.batch:,} (the step may hold "
            f"{human_bytes(fit.budget)}: {size} less {human_bytes(fit.context)} for the CUDA "
            f"context and {human_bytes(fit.workspaces)} for cuDNN workspaces)"
            if fit.device == "cuda" else
            f"Largest batch that fits in {size}: {fit.batch:,}"]


def _fits_line(fits: Sequence[str]) -> str:
    if not fits:
        return "Fits none of the known GPUs (after 1 GiB and 5% headroom on each)"
    return f"Fits on: {', '.join(fits)} (after 1 GiB and 5% headroom on each)"


def render_memory_json(result: TrainingMemory, *, fit: FitResult | None = None,
                       fits: Sequence[str] | None = None) -> str:
    """``result.to_dict()``, with ``fit`` and the GPUs it ``fits`` on where given."""
    data = result.to_dict()
    if fits is not None:
        data["fits_on"] = list(fits)
    data["fit"] = fit.to_dict() if fit is not None else None
    return json.dumps(data, indent=2) + "\n"


def plot_memory(result: TrainingMemory, path: str | Path) -> None:
    """Draw memory over the two steps, stacked by category, the peak marked, to ``path``
    (``.png`` or ``.svg``).

    Raises:
        RenderError: matplotlib is not installed, or ``path`` has another suffix.
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in ("png", "svg"):
        raise RenderError(f"--plot {path}: the file must end in .png or .svg")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RenderError("--plot needs matplotlib: pip install 'archscope[plot]'") from None
    from archscope._io import atomic_path

    points = result.timeline
    unit, scale = ("GiB", 2**30) if result.peak >= 2**30 else ("MiB", 2**20)
    xs = list(range(len(points)))
    series = [[p.parts[i] / scale for p in points] for i in range(len(CATEGORIES))]
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    axes = figure.subplots()
    labels = [STYLES[c][0] for c in CATEGORIES]
    axes.stackplot(xs, *series, labels=labels, colors=PLOT_COLOURS, step="post", linewidth=0)
    peak_x = next((i for i, p in enumerate(points)
                   if p.total == result.peak and p.step == result.peak_step), 0)
    axes.plot([peak_x], [result.peak / scale], marker="v", color="black")
    axes.annotate(f"peak {human_bytes(result.peak)}\n{result.where}", (peak_x, result.peak / scale),
                  textcoords="offset points", xytext=(8, -4), fontsize=8, va="top")
    boundary = next((i for i, p in enumerate(points) if p.step == 2), None)
    if boundary is not None:
        axes.axvline(boundary, color="black", linewidth=0.6, linestyle="--")
        axes.text(boundary, axes.get_ylim()[1], " step 2 (every later step)", fontsize=8,
                  va="top")
    # a tick where each phase starts; short phases (setup, zero_grad, loss) only where there is
    # room for their name
    starts = [i for i, p in enumerate(points) if i == 0 or points[i - 1].phase != p.phase]
    ends = [*starts[1:], len(points)]
    room = max(len(points) // 25, 1)
    ticks = [i for i, end in zip(starts, ends, strict=True)
             if end - i >= room or points[i].phase in ("forward", "backward", "optimizer")]
    axes.set_xticks(ticks, [points[i].phase for i in ticks], rotation=30, ha="right", fontsize=8)
    axes.set_xlim(0, max(len(points) - 1, 1))
    axes.set_ylabel(f"allocated ({unit})")
    axes.set_title(title(result), fontsize=9)
    axes.legend(loc="upper left", fontsize=8, ncols=2)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=suffix)


__all__ = ["MAX_ROWS", "STYLES", "TimelineRow", "plot_memory", "render_memory_json",
           "render_memory_table", "timeline_rows", "title"]
