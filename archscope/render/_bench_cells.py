"""The cells both ``archscope bench`` tables share (one process, :mod:`archscope.render.bench`;
several ranks, :mod:`archscope.render.bench_ddp`): a loss, a step count and the memory estimate
with its error against the measured peak."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archscope.render.units import human_bytes, signed_percent

if TYPE_CHECKING:
    from archscope.bench import BenchResult


def memory_cell(r: BenchResult) -> str:
    """The estimate, with its error against the measured peak where there is one (CUDA)."""
    if r.estimated_memory_bytes is None:
        return "—"
    text = human_bytes(r.estimated_memory_bytes)
    if r.memory_error_pct is not None:
        text += f" ({signed_percent(r.memory_error_pct)})"
    return text


def loss_cell(r: BenchResult) -> str:
    """The first and last loss, ``FAILED`` after them where the model did not learn."""
    return f"{format_loss(r.first_loss)}→{format_loss(r.last_loss)}" + ("" if r.ok else " FAILED")


def format_loss(value: float) -> str:
    """Five significant digits, trailing zeros kept (2.2960, not 2.296): losses line up."""
    return f"{value:#.5g}"


def step_count(n: int, kind: str = "") -> str:
    """``n`` steps in words: ``1 timed step``, ``5 warm-up steps``."""
    return f"{n} {kind}{'step' if n == 1 else 'steps'}"
