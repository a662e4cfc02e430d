"""The search for the largest batch that passes a test: doubling, then bisection.

One search serves both questions archscope asks of a batch: ``bench --batch-size auto`` tries real
training steps on the device (:func:`archscope.bench.batch.auto_batch`), ``memory --fit`` replays
the step on the model alone (:func:`archscope.memory.largest_batch`). Pure Python, no torch.
"""

from __future__ import annotations

from collections.abc import Callable

#: The largest batch ``--batch-size auto`` tries, the search's default limit.
AUTO_BATCH_LIMIT = 1 << 16


def find_max_batch(fits: Callable[[int], bool], *, start: int = 1,
                   limit: int = AUTO_BATCH_LIMIT) -> int | None:
    """The largest batch ``b ≤ limit`` with ``fits(b)``: double from ``start``, then bisect.

    Assumes that whenever a batch fits, every smaller one does. The limit itself is a candidate
    (it need not be a power of two). Returns ``None`` if not even batch 1 fits (``start`` is
    halved down to 1 first) or ``limit`` is below 1 (then ``fits`` is not called).
    """
    if limit < 1:
        return None
    low = min(start, limit)
    while not fits(low):
        if low == 1:
            return None
        low //= 2
    high: int | None = None
    while high is None:
        candidate = min(low * 2, limit)
        if candidate == low:
            return low
        if fits(candidate):
            low = candidate
        else:
            high = candidate
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low
