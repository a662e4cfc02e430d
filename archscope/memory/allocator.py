"""Bytes as each device counts them: an emulation of PyTorch's CUDA caching allocator, and the CPU.

``torch.cuda.max_memory_allocated`` reports the peak of the caching allocator's
``allocated_bytes`` statistic. That statistic does not add up tensor sizes: it adds up the
*blocks* handed out, and a block can be larger than the tensor it holds. This module replays the
allocator's decisions on a sequence of allocations and frees to get the same figure. The rules,
from ``c10/cuda/CUDACachingAllocator.cpp`` (PyTorch main, read at commit 001074d2; the same in the
2.x releases with the default configuration, i.e. ``PYTORCH_CUDA_ALLOC_CONF`` unset):

* **Rounding** (``round_size``): a request under ``kMinBlockSize`` = 512 bytes becomes 512; any
  other is rounded up to a multiple of 512 (``roundup_power2_divisions`` is 0 by default, so the
  power-of-two division branch is not taken). A zero-byte tensor allocates nothing
  (``NativeCachingAllocator::allocate`` calls ``malloc`` only ``if (size != 0)``).
* **Pools** (``get_pool``): rounded sizes up to ``kSmallSize`` = 1 MiB come from the small pool,
  larger ones from the large pool; freed blocks stay cached in their pool.
* **Reuse** (``get_free_block``): the smallest cached block of at least the rounded size
  (``pool.blocks.lower_bound``; blocks are ordered by stream, size, then address, so the lowest
  address wins a tie).
* **New segments** (``get_allocation_size``): when nothing cached fits, ``cudaMalloc`` is called
  for 2 MiB (``kSmallBuffer``) for a small request, 20 MiB (``kLargeBuffer``) for a request under
  ``kMinLargeAlloc`` = 10 MiB, and otherwise the request rounded up to a multiple of 2 MiB
  (``kRoundLarge``).
* **Splitting** (``should_split``): the block found is split, and only the requested size counted,
  when the rest is at least 512 bytes (small pool) or **more than 1 MiB** (large pool, since
  ``max_split_size`` defaults to ``SIZE_MAX``). Otherwise the whole block is handed out and the
  whole block counts: ``alloc_found_block`` does ``increase_stat(stats.allocated_bytes[...],
  block->size)``. So a 13.5 MiB tensor in a fresh 14 MiB segment counts 14 MiB, and a 3 MiB
  tensor given a cached 4 MiB block counts 4 MiB; which block a request gets depends on what was
  freed before, which is why the whole step is replayed rather than each tensor rounded.
* **Frees** (``free`` → ``free_block``): ``allocated_bytes`` drops by the block's size and the
  block merges with free neighbours of the same segment (``try_merge_blocks``).
* **Under a limit** (``set_per_process_memory_fraction``, or a full device): ``alloc_block``
  fails when the segments (``total_allocated_memory``, the *reserved* bytes) would exceed the
  limit; ``malloc`` then calls ``release_available_cached_blocks`` (a no-op with the default
  ``max_split_size``), then ``release_cached_blocks`` (every cached segment that is not split is
  returned to the driver) and tries once more before raising ``OutOfMemoryError``.

The CPU has no such allocator in the way: ``archscope`` counts a CPU tensor's ``nbytes``, which is
what PyTorch's own tracker counts there (``torch.distributed._tools.mem_tracker._WeakRefInfo``
rounds to 512 bytes only for CUDA tensors).

No torch import: this is arithmetic on integers.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

K_MIN_BLOCK_SIZE = 512
K_SMALL_SIZE = 1 << 20
K_SMALL_BUFFER = 2 << 20
K_LARGE_BUFFER = 20 << 20
K_MIN_LARGE_ALLOC = 10 << 20
K_ROUND_LARGE = 2 << 20


def round_size(nbytes: int) -> int:
    """``round_size``: at least 512 bytes, else up to a multiple of 512."""
    if nbytes < K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    return K_MIN_BLOCK_SIZE * ((nbytes + K_MIN_BLOCK_SIZE - 1) // K_MIN_BLOCK_SIZE)


def allocation_size(size: int) -> int:
    """``get_allocation_size``: the segment ``cudaMalloc`` gets for a (rounded) request."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return K_ROUND_LARGE * ((size + K_ROUND_LARGE - 1) // K_ROUND_LARGE)


class OutOfMemory(Exception):
    """The emulated allocator could not find or make a block under its limit."""


@dataclass(eq=False)
class Block:
    """A piece of a segment: handed out (``allocated``) or cached in its pool."""

    size: int
    address: int
    small: bool
    allocated: bool = False
    prev: Block | None = None
    next: Block | None = None

    @property
    def split(self) -> bool:
        return self.prev is not None or self.next is not None


class _Pool:
    """Cached blocks ordered by (size, address), as ``BlockComparatorSize`` orders them."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []
        self.blocks: dict[tuple[int, int], Block] = {}

    def insert(self, block: Block) -> None:
        key = (block.size, block.address)
        bisect.insort(self.keys, key)
        self.blocks[key] = block

    def remove(self, block: Block) -> None:
        key = (block.size, block.address)
        del self.keys[bisect.bisect_left(self.keys, key)]
        del self.blocks[key]

    def take_at_least(self, size: int) -> Block | None:
        i = bisect.bisect_left(self.keys, (size, -1))
        if i == len(self.keys):
            return None
        return self.blocks.pop(self.keys.pop(i))


class CachingAllocator:
    """One device's caching allocator on one stream, default configuration (see module docs).

    ``limit`` caps the reserved bytes (the segments), as ``set_per_process_memory_fraction`` or a
    full device does; ``None`` is no cap.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.small = _Pool()
        self.large = _Pool()
        self.allocated = 0
        self.reserved = 0
        self.peak_allocated = 0
        self.peak_reserved = 0
        self._next_address = 0

    def malloc(self, nbytes: int) -> Block | None:
        """Hand out a block for a tensor of ``nbytes`` (``None`` for zero bytes).

        Raises:
            OutOfMemory: no cached block fits and a new segment would pass the limit even after
                the unsplit cached segments are released.
        """
        if nbytes == 0:
            return None
        size = round_size(nbytes)
        small = size <= K_SMALL_SIZE
        pool = self.small if small else self.large
        block = pool.take_at_least(size)
        if block is None:
            block = self._new_segment(allocation_size(size), small)
        remaining = block.size - size
        if (remaining >= K_MIN_BLOCK_SIZE) if small else (remaining > K_SMALL_SIZE):
            # alloc_found_block: the front of the block is handed out, the rest stays cached
            front = Block(size, block.address, small, prev=block.prev, next=block)
            if block.prev is not None:
                block.prev.next = front
            block.prev = front
            block.address += size
            block.size = remaining
            pool.insert(block)
            block = front
        block.allocated = True
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def free(self, block: Block | None) -> None:
        """Return ``block`` to its pool, merged with free neighbours of its segment."""
        if block is None:
            return
        self.allocated -= block.size
        block.allocated = False
        pool = self.small if block.small else self.large
        before, after = block.prev, block.next
        if before is not None and not before.allocated:  # [before block] → one block
            pool.remove(before)
            block.address, block.size = before.address, block.size + before.size
            block.prev = before.prev
            if block.prev is not None:
                block.prev.next = block
        if after is not None and not after.allocated:  # [block after] → one block
            pool.remove(after)
            block.size += after.size
            block.next = after.next
            if block.next is not None:
                block.next.prev = block
        pool.insert(block)

    def _new_segment(self, size: int, small: bool) -> Block:
        if self.limit is not None and self.reserved + size > self.limit:
            self._release_cached()
            if self.reserved + size > self.limit:
                raise OutOfMemory(f"{size} bytes more would pass the limit of {self.limit}")
        self.reserved += size
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        block = Block(size, self._next_address, small)
        self._next_address += size + K_SMALL_BUFFER  # distinct, increasing addresses
        return block

    def _release_cached(self) -> None:
        """``release_cached_blocks``: give every cached, unsplit segment back to the driver."""
        for pool in (self.large, self.small):
            for block in [b for b in pool.blocks.values() if not b.split]:
                pool.remove(block)
                self.reserved -= block.size


__all__ = ["K_MIN_BLOCK_SIZE", "Block", "CachingAllocator", "OutOfMemory", "allocation_size",
           "round_size"]
