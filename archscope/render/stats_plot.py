"""``archscope stats --plot``: one picture of the runs — a grid of activation histograms (runs ×
layers) above a line chart of the weight-gradient std against depth on a log scale.

matplotlib is an optional extra (``pip install 'archscope[plot]'``), imported only inside
:func:`plot_stats` and used through its object API with the Agg canvas: no global backend is
switched and no window opens.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from archscope.errors import RenderError
from archscope.render.stats import activation_rows, histogram_values, run_labels, shared_range
from archscope.stats.records import StatsRun

#: The file types ``--plot`` writes.
PLOT_FORMATS = ("png", "svg")
#: At most this many layers (columns) in the histogram grid, evenly spaced from first to last.
MAX_COLUMNS = 10
#: Bins of each histogram in the picture.
PLOT_BINS = 40
#: The extra that brings matplotlib.
PLOT_EXTRA = "pip install 'archscope[plot]'"


def plot_format(path: str | os.PathLike[str]) -> str:
    """``png`` or ``svg`` from the file's extension.

    Raises:
        RenderError: any other extension (exit code 2: a usage error).
    """
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        error = RenderError(f"--plot {path}: the picture is written as .png or .svg, not "
                            f"{'.' + ext if ext else 'a file without an extension'}")
        error.exit_code = 2
        raise error
    return ext


def require_matplotlib() -> None:
    """Fail early, in one line naming the extra, where matplotlib is not installed.

    Raises:
        RenderError: matplotlib cannot be imported.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RenderError(f"--plot needs matplotlib, which is not installed: {PLOT_EXTRA}") from None


def plot_stats(runs: Sequence[StatsRun], path: str | os.PathLike[str]) -> None:
    """Draw ``runs`` (those that ran) into ``path`` (``.png`` or ``.svg``), atomically.

    Raises:
        RenderError: matplotlib missing, a wrong extension, nothing ran, or the file cannot be
            written.
    """
    fmt = plot_format(path)
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from archscope._io import atomic_path

    ran = [r for r in runs if r.skipped is None]
    if not ran:
        raise RenderError("--plot: nothing to draw, no scheme applied to the model")
    rows = activation_rows(ran)
    columns = _spaced(len(rows), MAX_COLUMNS)
    labels = run_labels(ran)
    n_rows, n_cols = len(ran), max(1, len(columns))
    fig = Figure(figsize=(1.9 * n_cols + 1.0, 1.35 * n_rows + 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n_rows + 1, n_cols, height_ratios=[1.0] * n_rows + [2.4])
    colors = [f"C{i % 10}" for i in range(n_rows)]
    for j, index in enumerate(columns):
        name, cells = rows[index]
        present = [c for c in cells if c is not None]
        lo, hi = shared_range(present)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        for i, cell in enumerate(cells):
            ax = fig.add_subplot(grid[i, j])
            ax.set_yticks([])
            ax.tick_params(labelsize=6, pad=1)
            if i == 0:
                ax.set_title(name, fontsize=7)
            if j == 0:
                ax.set_ylabel(labels[i], fontsize=7)
            if cell is None:
                ax.set_xticks([])
                continue
            ax.hist(histogram_values(cell), bins=PLOT_BINS, range=(lo, hi), color=colors[i])
            ax.set_xlim(lo, hi)
            note = f"std {cell.std:.3g}"
            if cell.saturated_pct is not None:
                note += f"\nsat {cell.saturated_pct:.0f}%"
            elif cell.zero_pct >= 1:
                note += f"\nzero {cell.zero_pct:.0f}% (not drawn)"
            ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=6)
    chart = fig.add_subplot(grid[n_rows, :])
    for run, label, color in zip(ran, labels, colors, strict=True):
        points = [(w.depth or 0, w.weight_grad_std) for w in run.weighted()
                  if w.weight_grad_std is not None and w.weight_grad_std > 0
                  and math.isfinite(w.weight_grad_std)]
        if points:
            chart.plot([d for d, _ in points], [g for _, g in points], marker="o", markersize=3,
                       color=color, label=label)
    chart.set_yscale("log")
    chart.set_xlabel("depth: Linear/Conv layer, input → output", fontsize=8)
    chart.set_ylabel("weight-gradient std", fontsize=8)
    chart.tick_params(labelsize=7)
    chart.grid(True, which="major", alpha=0.3)
    if chart.get_legend_handles_labels()[0]:
        chart.legend(fontsize=7)
    fig.suptitle("Activations at initialization (rows: runs; columns: layers) and the gradient "
                 "by depth", fontsize=9)
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=110, metadata=metadata)
    except OSError as exc:
        raise RenderError(f"cannot write {path}: {exc.strerror or exc}; choose another path "
                          "with --plot") from None


def _spaced(n: int, most: int) -> list[int]:
    """Up to ``most`` indices of ``range(n)``, evenly spaced, first and last included."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})
