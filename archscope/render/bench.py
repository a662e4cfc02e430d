"""``archscope bench``'s results as text: a table with the device and caveats below it, or JSON
(the schema in docs/benchmarks.md)."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

from archscope.devices import CPU_NO_PEAK
from archscope.render._bench_cells import format_loss, loss_cell, memory_cell, step_count
from archscope.render.units import human_bytes, milliseconds, percent

if TYPE_CHECKING:
    from archscope.bench import BenchResult, BenchRun

FORMATS = ("table", "json")


def render_bench(run: BenchRun, fmt: str = "table") -> str:
    """``run`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return render_json(run)
    if fmt == "table":
        return render_table(run)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def render_json(run: BenchRun) -> str:
    return json.dumps(run.to_dict(), indent=2) + "\n"


def render_table(run: BenchRun, width: int = 160) -> str:
    """The results as a rich table (no colour), with the device and caveats below it."""
    if run.backend is not None:  # several ranks under DDP: their own columns
        from archscope.render.bench_ddp import render_ddp_table

        return render_ddp_table(run, width)
    from rich import box
    from rich.console import Console
    from rich.table import Table

    title = f"archscope bench on {run.device_name} ({run.device})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify in (
        ("model", "left"), ("batch", "right"), ("mode", "left"), ("img/s", "right"),
        ("p50 ms", "right"), ("p90 ms", "right"), ("peak mem", "right"),
        ("estimate (err)", "right"), ("TFLOP/s", "right"), ("MFU", "right"),
        ("loss first→last", "right"),
    ):
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    notes: list[str] = []
    for r in run.results:
        mode = r.precision + (" CL" if r.channels_last else "") + (" compile" if r.compiled else "")
        if r.error is not None:  # nothing was measured; the reason is on stderr
            table.add_row(r.model, str(r.batch or "—"), mode, *["—"] * 7, "FAILED")
            continue
        tflops = f"{r.achieved_tflops:.2f}" if r.achieved_tflops is not None else "—"
        mfu = percent(r.mfu) if r.mfu is not None else "—"
        peak = human_bytes(r.peak_memory_bytes) if r.peak_memory_bytes is not None else "—"
        table.add_row(
            r.model, str(r.batch), mode, f"{r.images_per_s:,.1f}", milliseconds(r.median_ms),
            milliseconds(r.p90_ms), peak, memory_cell(r), tflops, mfu, loss_cell(r),
        )
        for note in r.notes:
            if note not in notes:
                notes.append(note)
    peak_lines = sorted({r.peak_source for r in run.results if r.peak_source})
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, markup=False,
                      soft_wrap=False)
    console.print(table)
    first = run.results[0] if run.results else None
    if first is not None:
        console.print(
            f"{step_count(first.steps, 'timed ')} after {step_count(first.warmup, 'warm-up ')}, "
            f"optimizer {first.optimizer}, torch {run.torch_version}"
            + (f", CUDA {run.cuda_version}" if run.cuda_version else "")
        )
    for line in peak_lines:
        if line == CPU_NO_PEAK:
            console.print(f"MFU: {CPU_NO_PEAK} (--peak-tflops gives a peak to compare with)")
        else:
            console.print(f"MFU peak: {line}")
    for note in notes:
        console.print(f"note: {note}")
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def failure_reason(r: BenchResult) -> str:
    """Why ``r`` failed, in one line: its error, or the losses that did not fall."""
    if r.error is not None:
        return r.error
    return (f"the loss did not fall on the repeated batch ({format_loss(r.first_loss)} → "
            f"{format_loss(r.last_loss)} over {step_count(r.warmup + r.steps)})")

