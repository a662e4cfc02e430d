"""``archscope stats`` results as text: tables for one run, side-by-side histograms for several,
and JSON.

One run (one model, one scheme) prints the scheme's formula for every Linear/Conv weight beside
the std actually drawn, then one row per layer: the activation's mean, std, % exactly zero,
% saturated, a histogram, and the gradients. Several runs (schemes or models) print each run's
formulas, then the runs side by side: a histogram per layer and run, sharing one range per row
so that a spread and a collapse look different, and the weight-gradient std by depth.

Histograms are unicode block sparklines of each output's random sample (see
:class:`archscope.stats.LayerStats`): sigmoid and tanh over their whole range (0…1, −1…1), other
layers over the values' own range (one run) or the range the runs share (several). Exact zeros of
a non-saturating activation (dead ReLUs, counted in ``zero %``) are left out so that the shape of
the rest shows.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from difflib import SequenceMatcher

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from archscope.stats.records import LayerKind, LayerStats, StatsRun
from archscope.stats.schemes import Distribution, parse_scheme

#: Eighths of a block, from empty to full.
BLOCKS = " ▁▂▃▄▅▆▇█"
#: Characters (bins) of a terminal histogram.
SPARK_BINS = 10
#: Layer types whose histogram spans their asymptotes (kept in step with probe.SATURATING).
BOUNDED = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0)}

Row = tuple[str, list[LayerStats | None]]


def render_stats_json(runs: Sequence[StatsRun]) -> str:
    """``{"runs": [run.to_dict(), …]}``, indented, with a final newline."""
    return json.dumps({"runs": [r.to_dict() for r in runs]}, indent=2, ensure_ascii=False) + "\n"


def render_stats_table(runs: Sequence[StatsRun], *, all_layers: bool = False) -> str:
    """The terminal text for ``runs``: a run's tables, or several runs side by side.

    ``all_layers`` adds the norm, pooling, dropout … rows to the per-layer tables (by default
    they show the Linear/Conv and activation rows).
    """
    ran = [r for r in runs if r.skipped is None]
    parts: list[str] = []
    for run in runs:
        if run.skipped is not None:
            parts.append(run.skipped + "\n")
            continue
        parts.append(_header(run))
        if len(ran) == 1 or run.scheme != "default":
            parts.append(_init_table(run))
        if len(ran) == 1:
            parts.append(_layer_table(run, all_layers))
    if len(ran) > 1:
        parts.append(_activation_comparison(ran, all_layers))
        parts.append(_gradient_comparison(ran))
    if ran:
        parts.append(_gradient_summary(ran))
    return "\n".join(parts)


# -- one run ------------------------------------------------------------------------------------

def _header(run: StatsRun) -> str:
    shape = "×".join(str(d) for d in run.input_shape)
    scheme = run.scheme + (" (the model's own initialization)" if run.scheme == "default" else "")
    lines = [f"{run.model} · init {scheme} · input {shape} · batch {run.batch} · {run.device} · "
             f"seed {run.seed}"]
    biases = ("biases set to 0" if run.scheme != "default" else "biases as the model made them")
    norm = ""
    if run.no_norm:
        norm = (f" · --no-norm: {run.norms_removed} normalization layer"
                f"{'s' if run.norms_removed != 1 else ''} replaced by identity")
    lines.append(f"{biases}{norm} · training mode · loss: {run.loss} = {_num(run.loss_value)}")
    lines += [f"note: {n}" for n in run.notes]
    return "\n".join(lines) + "\n"


def _init_table(run: StatsRun) -> str:
    table = _table()
    for header, right in (("Layer", False), ("Type", False), ("fan_in", True), ("fan_out", True),
                          ("Formula", False), ("std drawn", True)):
        table.add_column(header, justify="right" if right else "left", no_wrap=True)
    uniform = parse_scheme(run.scheme).distribution is Distribution.UNIFORM
    for r in run.init:
        fan_in = r.fan_in_expr if r.fan_in_expr == str(r.fan_in) else f"{r.fan_in_expr} = {r.fan_in}"
        fan_out = (r.fan_out_expr if r.fan_out_expr == str(r.fan_out)
                   else f"{r.fan_out_expr} = {r.fan_out}")
        formula = r.formula or "the model's own"
        if uniform and r.expected_std is not None:  # U(−a, a): std a/√3, to set beside the drawn
            formula += f" (std {_num(r.expected_std)})"
        table.add_row(*map(Text, (r.name, r.type, fan_in, fan_out, formula, _num(r.weight_std))))
    if not run.init:
        return "Initialization: the model has no Linear/Conv weight\n"
    title = f"Initialization: {len(run.init)} Linear/Conv weight{'s' if len(run.init) != 1 else ''}"
    return f"{title}\n{_text(table)}"


def _layer_table(run: StatsRun, all_layers: bool) -> str:
    rows = _shown(run, all_layers)
    table = _table()
    columns = ("Layer", "Type", "mean", "std", "zero %", "sat %", "histogram", "out-grad std",
               "w-grad std", "w-grad/w")
    for header in columns:
        left = header in ("Layer", "Type", "histogram")
        table.add_column(header, justify="left" if left else "right", no_wrap=True)
    for layer in rows:
        lo, hi = shared_range([layer])
        table.add_row(*map(Text, (
            layer.name, layer.type, _num(layer.mean), _num(layer.std), _pct(layer.zero_pct),
            _pct(layer.saturated_pct), _spark(layer, lo, hi), _num(layer.grad_std),
            _num(layer.weight_grad_std), _num(layer.grad_ratio),
        )))
    hidden = len(run.layers) - len(rows)
    title = ("Forward and backward: every layer's output and the gradient reaching it"
             + (f" ({hidden} norm, pooling … rows hidden: --all-layers shows them)" if hidden else ""))
    return f"{title}\n{_text(table)}"


def _shown(run: StatsRun, all_layers: bool) -> list[LayerStats]:
    """The rows a table shows: Linear/Conv and activations, or all."""
    if all_layers:
        return list(run.layers)
    rows = [r for r in run.layers if r.kind in (LayerKind.WEIGHTED, LayerKind.ACTIVATION)]
    return rows or list(run.layers)


# -- several runs -------------------------------------------------------------------------------

def run_labels(runs: Sequence[StatsRun]) -> list[str]:
    """Column headers: the scheme where one model runs, the model where one scheme does, else
    both."""
    if len({r.model for r in runs}) == 1:
        return [r.scheme for r in runs]
    if len({r.scheme for r in runs}) == 1:
        return [r.model for r in runs]
    return [r.label for r in runs]


def activation_rows(runs: Sequence[StatsRun], all_layers: bool = False) -> list[Row]:
    """The layers whose outputs are compared: the activations (or, in a model without
    activation modules, the Linear/Conv outputs), aligned across runs."""
    def pick(run: StatsRun) -> list[LayerStats]:
        if all_layers:
            return list(run.layers)
        acts = [r for r in run.layers if r.kind is LayerKind.ACTIVATION]
        return acts or run.weighted() or list(run.layers)
    return align(runs, pick)


def align(runs: Sequence[StatsRun], pick: Callable[[StatsRun], list[LayerStats]]) -> list[Row]:
    """Rows of layers across runs: by name where the runs share at least half their layers' names
    (plain34 and resnet34 differ only in the ResNet's three ``downsample`` rows, left blank for
    plain34), else by position (the row named after each run's layer, ``fc1 / features.0``)."""
    lists = [pick(r) for r in runs]
    names = [[layer.name for layer in layers] for layers in lists]
    shared = set.intersection(*(set(n) for n in names)) if names else set()
    shortest = min((len(n) for n in names), default=0)
    if shared and len(shared) >= shortest / 2:  # mostly the same layers: match them by name
        merged: list[str] = []
        for n in names:
            merged = _merge(merged, n)
        by_name = [{layer.name: layer for layer in layers} for layers in lists]
        return [(name, [found.get(name) for found in by_name]) for name in merged]
    longest = max((len(layers) for layers in lists), default=0)
    rows: list[Row] = []
    for i in range(longest):
        cells = [layers[i] if i < len(layers) else None for layers in lists]
        here = list(dict.fromkeys(c.name for c in cells if c is not None))
        rows.append((" / ".join(here), cells))
    return rows


def _merge(a: list[str], b: list[str]) -> list[str]:
    """An order-keeping union of two name lists."""
    if not a:
        return list(b)
    out: list[str] = []
    seen: set[str] = set()
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        block = a[i1:i2] if tag == "equal" else a[i1:i2] + b[j1:j2]
        for name in block:
            if name not in seen:
                seen.add(name)
                out.append(name)
    return out


def _activation_comparison(runs: Sequence[StatsRun], all_layers: bool) -> str:
    rows = activation_rows(runs, all_layers)
    table = _table()
    table.add_column("Layer", no_wrap=True)
    for label in run_labels(runs):
        table.add_column(label, no_wrap=True)
    for name, cells in rows:
        present = [c for c in cells if c is not None]
        lo, hi = shared_range(present)
        table.add_row(Text(name), *(Text(_cell(c, lo, hi)) for c in cells))
    return ("Activations side by side: histogram (one range per row), std, and % saturated or "
            f"exactly zero\n{_text(table)}")


def _cell(layer: LayerStats | None, lo: float, hi: float) -> str:
    if layer is None:
        return ""
    text = f"{_spark(layer, lo, hi)} {_num(layer.std):>8}"
    if layer.saturated_pct is not None:
        text += f"  sat {_pct(layer.saturated_pct):>5}%"
    elif layer.zero_pct > 0:
        text += f"  zero {_pct(layer.zero_pct):>4}%"
    return text


def _gradient_comparison(runs: Sequence[StatsRun]) -> str:
    rows = align(runs, StatsRun.weighted)
    table = _table()
    table.add_column("Layer", no_wrap=True)
    for label in run_labels(runs):
        table.add_column(label, justify="right", no_wrap=True)
    for name, cells in rows:
        table.add_row(Text(name), *(Text(_num(c.weight_grad_std) if c else "") for c in cells))
    return f"Weight-gradient std by depth (input → output)\n{_text(table)}"


def _gradient_summary(runs: Sequence[StatsRun]) -> str:
    """One line per run: the first and last Linear/Conv weight-gradient std; with several runs,
    each run's first-layer figure against the first run's."""
    lines = []
    base = _first_grad(runs[0])
    labels = run_labels(runs) if len(runs) > 1 else [runs[0].label]
    for run, label in zip(runs, labels, strict=True):
        if not run.init:
            continue  # no Linear/Conv weight: nothing to say about their gradients
        weighted = [w for w in run.weighted() if w.weight_grad_std is not None]
        if not weighted:
            lines.append(f"{label}: no Linear/Conv weight received a gradient")
            continue
        first, last = weighted[0], weighted[-1]
        line = (f"{label}: weight-gradient std {_num(first.weight_grad_std)} at the first "
                f"Linear/Conv layer ({first.name}), {_num(last.weight_grad_std)} at the last "
                f"({last.name})")
        mine = first.weight_grad_std
        if len(runs) > 1 and run is not runs[0] and base and mine is not None:
            line += f"; {_times(mine / base)} {labels[0]}'s first"
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def _first_grad(run: StatsRun) -> float | None:
    for w in run.weighted():
        if w.weight_grad_std is not None:
            return w.weight_grad_std
    return None


def _times(ratio: float) -> str:
    """``4,166×`` or ``0.0976×`` (``1.50e-16×``)."""
    if 1000 <= ratio < 1e7:
        return f"{ratio:,.0f}×"
    return f"{_num(ratio)}×"


# -- histograms ---------------------------------------------------------------------------------

def histogram_values(layer: LayerStats) -> list[float]:
    """The sample a histogram shows: finite values, without the exact zeros of a
    non-saturating activation (dead ReLUs)."""
    drop_zeros = layer.kind is LayerKind.ACTIVATION and layer.saturated_pct is None
    return [v for v in layer.sample if math.isfinite(v) and not (drop_zeros and v == 0)]


def shared_range(layers: Sequence[LayerStats]) -> tuple[float, float]:
    """One range for these layers' histograms: the asymptotes where all are sigmoids (or all
    tanh), else the samples' joint minimum and maximum."""
    types = {layer.type for layer in layers}
    if len(types) == 1 and (only := types.pop()) in BOUNDED:
        return BOUNDED[only]
    values = [v for layer in layers for v in histogram_values(layer)]
    if not values:
        return 0.0, 1.0
    return min(values), max(values)



def counts(values: Sequence[float], lo: float, hi: float, bins: int) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over ``[lo, hi]`` (values outside go to the
    end bins; one value everywhere fills the middle bin)."""
    out = [0] * bins
    width = hi - lo
    for v in values:
        i = bins // 2 if width <= 0 else int((v - lo) / width * bins)
        out[min(bins - 1, max(0, i))] += 1
    return out


def _spark(layer: LayerStats, lo: float, hi: float) -> str:
    binned = counts(histogram_values(layer), lo, hi, SPARK_BINS)
    top = max(binned)
    if top == 0:
        return " " * SPARK_BINS
    return "".join(BLOCKS[math.ceil(c / top * 8)] for c in binned)


# -- cells --------------------------------------------------------------------------------------

def _num(value: float | None) -> str:
    """Three significant digits; an exponent below 0.001 or from 10,000; ``—`` for none."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -3 <= magnitude < 4:
        return f"{value:.{max(0, 2 - magnitude)}f}"
    return f"{value:.2e}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="")


def _text(table: Table) -> str:
    """The table as plain text at its natural width (numbers and formulas are never cut)."""
    buffer = io.StringIO()
    Console(file=buffer, width=10_000, color_system=None, highlight=False,
            markup=False, emoji=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
