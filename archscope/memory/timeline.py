"""From the replay's events to the step's timeline: bytes as the device counts them, and the peak.

No torch import: the events are plain tuples (see :mod:`archscope.memory.replay`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archscope.memory.allocator import Block, CachingAllocator
from archscope.memory.result import CATEGORIES, PHASES, MemoryPoint

ALLOC, FREE, RECAT = 0, 1, 2


@dataclass(frozen=True)
class Timeline:
    """The running totals of one replay, reduced to stretches and the peak."""

    peak: int
    peak_parts: tuple[int, ...]
    peak_step: int
    peak_phase: str
    peak_layer: str
    tensor_peak: int
    reserved_peak: int | None
    points: tuple[MemoryPoint, ...]


def build(events: Sequence[tuple[int, int, int, int, int, int, int]], layers: Sequence[str], *,
          cuda: bool, limit: int | None = None) -> Timeline:
    """Replay ``events`` through the device's accounting.

    ``cuda``: sizes are the caching allocator's blocks (:class:`CachingAllocator`, capped at
    ``limit`` reserved bytes); else each tensor's bytes.

    Raises:
        archscope.memory.allocator.OutOfMemory: with ``limit``, the step does not fit.
    """
    allocator = CachingAllocator(limit) if cuda else None
    parts = [0] * len(CATEGORIES)
    counted: dict[int, tuple[int, int, Block | None]] = {}  # id → (bytes counted, raw, block)
    category: dict[int, int] = {}
    total = raw_total = raw_peak = 0
    peak, peak_parts, peak_at = -1, tuple(parts), (1, 0, 0)
    points: list[MemoryPoint] = []
    current: tuple[int, int, int] | None = None
    seg_max, seg_parts, seg_events = -1, tuple(parts), 0
    for kind, ident, nbytes, cat, step, phase, layer in events:
        if kind == ALLOC:
            block = allocator.malloc(nbytes) if allocator is not None else None
            size = (block.size if block is not None else 0) if allocator is not None else nbytes
            counted[ident] = (size, nbytes, block)
            category[ident] = cat
            parts[cat] += size
            total += size
            raw_total += nbytes
        elif kind == FREE:
            found = counted.pop(ident, None)
            if found is None:
                continue
            size, nbytes, block = found
            parts[category.pop(ident)] -= size
            total -= size
            raw_total -= nbytes
            if allocator is not None:
                allocator.free(block)
        else:
            old = category.get(ident)
            if old is None or old == cat:
                continue
            size = counted[ident][0]
            parts[old] -= size
            parts[cat] += size
            category[ident] = cat
        raw_peak = max(raw_peak, raw_total)
        key = (step, phase, layer)
        if key != current:
            if current is not None:
                points.append(_point(current, seg_max, seg_parts, seg_events, layers))
            current, seg_max, seg_events = key, -1, 0
        seg_events += 1
        if total > seg_max:
            seg_max, seg_parts = total, tuple(parts)
        if total > peak or (total == peak and step > peak_at[0]):  # a tie: every later step's
            peak, peak_parts, peak_at = total, tuple(parts), key
    if current is not None:
        points.append(_point(current, seg_max, seg_parts, seg_events, layers))
    step, phase, layer = peak_at
    return Timeline(
        peak=max(peak, 0), peak_parts=peak_parts, peak_step=step, peak_phase=PHASES[phase],
        peak_layer=layers[layer], tensor_peak=raw_peak,
        reserved_peak=allocator.peak_reserved if allocator is not None else None,
        points=tuple(points),
    )


def _point(key: tuple[int, int, int], total: int, parts: tuple[int, ...], events: int,
           layers: Sequence[str]) -> MemoryPoint:
    step, phase, layer = key
    return MemoryPoint(step=step, phase=PHASES[phase], layer=layers[layer], total=total,
                       parts=parts, events=events)


__all__ = ["Timeline", "build"]
