"""Timing one training step: a host clock on the CPU, CUDA events on a GPU, and the percentile.

On CUDA a pair of events is recorded around every timed step and nothing waits for the GPU
inside the loop; the host synchronizes once, after the loop, to read them. On the CPU (and in
tests, with an injected clock) a host clock brackets every step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Clock(Protocol):
    """A monotonic clock in seconds (``time.perf_counter``); injectable for tests."""

    def __call__(self) -> float: ...


class Timer(Protocol):
    """Brackets each timed step; read once, after the last."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def elapsed_ms(self) -> list[float]:
        """Every step's duration in milliseconds, in order."""
        ...

    def span_ms(self) -> float:
        """From the first step's start to the last step's end, gaps between steps included."""
        ...


def timer_for(device: torch.device, steps: int, clock: Clock | None = None) -> Timer:
    """``clock`` if given (tests inject a fake one), else CUDA events on a GPU and
    ``time.perf_counter`` on the CPU."""
    if clock is not None:
        return ClockTimer(clock)
    if device.type == "cuda":
        return CudaEventTimer(steps, device)
    return ClockTimer(time.perf_counter)


class ClockTimer:
    """Brackets each step with a host clock (the CPU path, and tests with an injected clock)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._starts: list[float] = []
        self._stops: list[float] = []

    def start(self) -> None:
        self._starts.append(self._clock())

    def stop(self) -> None:
        self._stops.append(self._clock())

    def elapsed_ms(self) -> list[float]:
        return [(b - a) * 1000.0 for a, b in zip(self._starts, self._stops, strict=True)]

    def span_ms(self) -> float:
        return (self._stops[-1] - self._starts[0]) * 1000.0


class CudaEventTimer:
    """CUDA events around each step, created up front; read after one synchronize."""

    def __init__(self, steps: int, device: torch.device) -> None:
        import torch

        self._device = device
        # the benchmark device's stream, whichever device is current (cuda:1 …); looked up once,
        # not inside the timed loop
        self._stream = torch.cuda.current_stream(device)
        self._pairs = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        self._next = 0

    def start(self) -> None:
        self._pairs[self._next][0].record(self._stream)

    def stop(self) -> None:
        self._pairs[self._next][1].record(self._stream)
        self._next += 1

    def elapsed_ms(self) -> list[float]:
        import torch

        torch.cuda.synchronize(self._device)
        return [float(a.elapsed_time(b)) for a, b in self._pairs[: self._next]]

    def span_ms(self) -> float:
        return float(self._pairs[0][0].elapsed_time(self._pairs[self._next - 1][1]))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between closest ranks (NumPy's default).

    >>> percentile([10.0, 20.0], 90)
    19.0
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
