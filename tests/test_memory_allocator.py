"""The CUDA caching-allocator emulation against the rules of c10/cuda/CUDACachingAllocator.cpp,
each case worked out by hand from those rules (512-byte blocks, 1 MiB small/large pools, 2 MiB /
20 MiB / rounded segments, splitting only above 1 MiB of remainder in the large pool)."""

from __future__ import annotations

import pytest

from archscope.memory.allocator import (
    CachingAllocator,
    OutOfMemory,
    allocation_size,
    round_size,
)
from archscope.memory.timeline import ALLOC, FREE, build

MiB = 1 << 20


@pytest.mark.parametrize(("nbytes", "rounded"), [
    (1, 512),            # under kMinBlockSize: one 512-byte block
    (4, 512),            # a float32 scalar (a loss, a step counter)
    (512, 512),
    (513, 1024),         # 512·⌈513/512⌉
    (1000, 1024),
    (3 * 224 * 224 * 4, 602112),  # one fp32 image, 602112 = 512·1176 exactly
    (602113, 602624),    # one byte more: 512·1177
])
def test_round_size_is_512_byte_blocks(nbytes: int, rounded: int) -> None:
    assert round_size(nbytes) == rounded


@pytest.mark.parametrize(("size", "segment"), [
    (512, 2 * MiB),                 # small request (≤ 1 MiB): a 2 MiB segment
    (MiB, 2 * MiB),
    (MiB + 512, 20 * MiB),          # 1–10 MiB: a 20 MiB segment
    (10 * MiB - 512, 20 * MiB),
    (10 * MiB, 10 * MiB),           # ≥ 10 MiB: rounded up to 2 MiB
    (11 * MiB, 12 * MiB),
    (12 * MiB + 512, 14 * MiB),
])
def test_segment_sizes(size: int, segment: int) -> None:
    assert allocation_size(size) == segment


def test_small_blocks_are_split_and_counted_at_their_rounded_size() -> None:
    a = CachingAllocator()
    blocks = [a.malloc(4) for _ in range(3)]
    # three 512-byte blocks cut from one 2 MiB segment
    assert a.allocated == 3 * 512
    assert a.reserved == 2 * MiB
    assert all(b is not None and b.size == 512 for b in blocks)


def test_an_unsplit_large_remainder_counts_as_allocated() -> None:
    a = CachingAllocator()
    # 13.5 MiB → a 14 MiB segment; the 0.5 MiB left is not > 1 MiB, so the whole block is
    # handed out and counted (alloc_found_block adds block->size)
    block = a.malloc(13 * MiB + MiB // 2)
    assert block is not None and block.size == 14 * MiB
    assert a.allocated == 14 * MiB


def test_a_large_remainder_over_1_mib_is_split_off() -> None:
    a = CachingAllocator()
    # 3 MiB → a 20 MiB segment (1–10 MiB requests); 17 MiB left > 1 MiB: split
    a.malloc(3 * MiB)
    assert a.allocated == 3 * MiB
    assert a.reserved == 20 * MiB


def test_a_reused_cached_block_counts_whole_when_the_rest_is_small() -> None:
    a = CachingAllocator()
    big = a.malloc(12 * MiB)           # its own 12 MiB segment
    a.free(big)
    assert a.allocated == 0 and a.reserved == 12 * MiB
    # 11.5 MiB finds the cached 12 MiB block; 0.5 MiB is not worth a split: 12 MiB counted
    again = a.malloc(11 * MiB + MiB // 2)
    assert again is not None and again.size == 12 * MiB
    assert a.allocated == 12 * MiB and a.reserved == 12 * MiB


def test_freed_neighbours_merge_back() -> None:
    a = CachingAllocator()
    x, y = a.malloc(2 * MiB), a.malloc(2 * MiB)  # both from one 20 MiB segment
    assert a.reserved == 20 * MiB
    a.free(x)
    a.free(y)
    # one free 20 MiB block again: a 15 MiB request fits it (5 MiB left is split off)
    z = a.malloc(15 * MiB)
    assert z is not None and z.size == 15 * MiB and a.reserved == 20 * MiB


def test_best_fit_takes_the_smallest_block_that_fits() -> None:
    a = CachingAllocator()
    p, q = a.malloc(12 * MiB), a.malloc(16 * MiB)
    a.free(p)
    a.free(q)
    r = a.malloc(11 * MiB)
    assert r is not None and r.size == 12 * MiB  # not the 16 MiB block


def test_zero_bytes_allocate_nothing() -> None:
    a = CachingAllocator()
    assert a.malloc(0) is None
    assert a.allocated == 0 and a.reserved == 0


def test_under_a_limit_cached_segments_are_released_before_giving_up() -> None:
    a = CachingAllocator(limit=24 * MiB)
    a.free(a.malloc(12 * MiB))          # a cached 12 MiB segment
    b = a.malloc(22 * MiB)              # 12 + 22 > 24: release the cached one, then fits
    assert b is not None and a.reserved == 22 * MiB
    with pytest.raises(OutOfMemory):
        a.malloc(4 * MiB)               # 22 + 20 MiB segment > 24, nothing cached to release


def test_timeline_peak_is_the_allocators_high_water_mark() -> None:
    # alloc 1 MiB + 1 (→ 20 MiB segment, 1 MiB + 512 counted), alloc 4 B (512), free the first,
    # alloc 700 B (1024): the peak is (MiB + 512) + 512
    events = [(ALLOC, 0, MiB + 1, 5, 1, 2, 0), (ALLOC, 1, 4, 5, 1, 2, 0),
              (FREE, 0, 0, 5, 1, 2, 0), (ALLOC, 2, 700, 5, 1, 2, 0)]
    cuda = build(events, [""], cuda=True)
    assert cuda.peak == MiB + 512 + 512
    assert cuda.tensor_peak == MiB + 1 + 4
    cpu = build(events, [""], cuda=False)
    assert cpu.peak == MiB + 1 + 4          # the CPU counts bytes
    assert cpu.reserved_peak is None
