"""A data-parallel ``archscope bench`` run as a table: one row per model on N ranks, preceded by
its one-process row under ``--scaling``, and the run's ranks, backend and caveats below it (JSON
goes through :func:`archscope.render.bench.render_json`, as for one process)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from archscope.render._bench_cells import loss_cell, memory_cell, step_count
from archscope.render.units import human_bytes, milliseconds, percent

if TYPE_CHECKING:
    from archscope.bench import BenchResult, BenchRun

_COLUMNS = (
    ("model", "left"), ("batch", "right"), ("mode", "left"), ("img/s", "right"),
    ("per rank", "right"), ("scaling", "right"), ("p50 ms", "right"), ("p90 ms", "right"),
    ("peak mem", "right"), ("estimate (err)", "right"), ("MFU", "right"),
    ("loss first→last", "right"),
)


def render_ddp_table(run: BenchRun, width: int = 160) -> str:
    """``run`` (from several ranks) as a rich table without colour, with its footer."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    first = run.results[0] if run.results else None
    kind = first.device.split(":")[0] if first is not None else run.device
    title = (f"archscope bench on {run.world_size} × {run.device_name} ({kind}), "
             f"DistributedDataParallel over {run.backend}")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for header, justify in _COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    notes: list[str] = []
    for r in run.results:
        single = r.data_parallel.single if r.data_parallel is not None else None
        if single is not None:
            table.add_row(*_row(single, ranks=1, scaling="1 process"))
        efficiency = (r.data_parallel.scaling_efficiency(r.batch)
                      if r.data_parallel is not None else None)
        table.add_row(*_row(r, ranks=run.world_size,
                            scaling=percent(efficiency) if efficiency is not None else "—"))
        for note in r.notes:
            if note not in notes:
                notes.append(note)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False, markup=False,
                      soft_wrap=False)
    console.print(table)
    if first is not None:
        timeout = (f", collective timeout {first.data_parallel.timeout_s:g} s"
                   if first.data_parallel is not None else "")
        console.print(
            f"{step_count(first.steps, 'timed ')} after {step_count(first.warmup, 'warm-up ')} on every "
            f"rank, optimizer {first.optimizer}, torch {run.torch_version}"
            + (f", CUDA {run.cuda_version}" if run.cuda_version else "") + timeout
        )
    console.print("batch: ranks × batch per rank; img/s: every rank's images ÷ the slowest "
                  "rank's timed span; per rank: img/s ÷ ranks;")
    console.print("p50/p90: over every rank's steps; peak mem: the largest rank's; MFU: per rank")
    if any(r.data_parallel is not None and r.data_parallel.single is not None
           for r in run.results):
        console.print("scaling: global img/s ÷ (ranks × the one-process img/s, its images ÷ its "
                      "timed span)")
    for line in sorted({r.peak_source for r in run.results if r.peak_source}):
        console.print(f"MFU peak: {line}")
    for note in notes:
        console.print(f"note: {note}")
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def _row(r: BenchResult, *, ranks: int, scaling: str) -> list[str]:
    mode = r.precision + (" CL" if r.channels_last else "") + (" compile" if r.compiled else "")
    batch = f"{ranks} × {r.batch}" if ranks > 1 else str(r.batch)
    if r.error is not None:  # nothing was measured; the reason is on stderr
        return [r.model, batch if r.batch else "—", mode, *["—"] * 8, "FAILED"]
    if r.data_parallel is not None:
        overall = r.data_parallel.global_images_per_s(r.batch)
        per_rank = r.data_parallel.per_rank_images_per_s(r.batch)
    else:  # the one-process row: its images ÷ its span, measured as the global figure is
        overall = per_rank = r.images_per_s_overall
    return [
        r.model, batch, mode, f"{overall:,.1f}", f"{per_rank:,.1f}", scaling,
        milliseconds(r.median_ms), milliseconds(r.p90_ms),
        human_bytes(r.peak_memory_bytes) if r.peak_memory_bytes is not None else "—",
        memory_cell(r), percent(r.mfu) if r.mfu is not None else "—", loss_cell(r),
    ]
