"""The one batch search behind ``bench --batch-size auto`` and ``memory --fit``."""

from __future__ import annotations

from archscope.batch_search import find_max_batch


def test_the_search_asks_few_questions_and_finds_the_edge() -> None:
    asked: list[int] = []

    def up_to_700(b: int) -> bool:
        asked.append(b)
        return b <= 700

    assert find_max_batch(up_to_700, limit=1000) == 700
    # doubling 1, 2 … 512, 1000 (the limit), then bisecting between 512 and 1000: 9 halvings
    # of 488 at most, each one question
    assert asked[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert len(asked) <= 11 + 9


def test_a_limit_below_one_finds_nothing_without_asking() -> None:
    asked: list[int] = []
    assert find_max_batch(lambda b: asked.append(b) is None, limit=0) is None
    assert asked == []
    assert find_max_batch(lambda b: b <= 1, limit=1) == 1
