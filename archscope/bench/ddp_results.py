"""What a data-parallel benchmark measured beyond one process's figures: every rank's step times,
spans, peaks and parameters, DDP's gradient buckets, and the single-process run it is compared
with (``--scaling``). A :class:`~archscope.bench.BenchResult` carries it as ``data_parallel``.

The figures (docs/benchmarks.md, "Several GPUs"), for ``N`` ranks at a per-rank batch ``B`` and
``S`` timed steps:

* global batch ``N·B``; global img/s ``N·B·S ÷`` the slowest rank's timed span (from its first
  timed step's start to its last one's end): every image that was trained, over the time the
  run took;
* per-rank (per-GPU) img/s: global img/s ÷ ``N``;
* step time median and p90 over every rank's steps together;
* scaling efficiency: global img/s ÷ (``N`` × the single-process run's images ÷ its span).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archscope.bench.results import BenchResult

#: DDP's defaults, which archscope keeps (torch/nn/parallel/distributed.py): gradients are
#: all-reduced in buckets of 25 MiB (``bucket_cap_mb``) except the first, 1 MiB
#: (``dist._DEFAULT_FIRST_BUCKET_BYTES``), so that the last layers' gradients, ready first, start
#: their all-reduce early. A bucket closes once it reaches its cap, so it may pass it by one
#: parameter's gradient.
BUCKET_CAP_BYTES = 25 * 1024 * 1024
FIRST_BUCKET_CAP_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DataParallel:
    """One model's run on ``world_size`` ranks under ``DistributedDataParallel``.

    Attributes:
        world_size / backend / timeout_s: the ranks, ``nccl`` or ``gloo``, the collective timeout.
        rank_step_ms: every rank's timed steps (ms), rank by rank.
        rank_span_ms: every rank's timed span (ms).
        rank_peak_memory_bytes: every rank's ``torch.cuda.max_memory_allocated`` (``None`` on
            the CPU).
        rank_losses: every rank's own loss per step, on its own shard, before averaging (the
            result's ``losses`` are their mean over the ranks, the same on every rank).
        rank_param_digests: SHA-256 of every rank's parameters after the last step (bytes, in
            ``model.parameters()`` order): DDP averages the gradients, so they must all agree.
        bucket_bytes: DDP's gradient buckets as its Reducer built them (rebuilt in the second
            step in the order the gradients came; a run of three steps or more reports those),
            from DDP's own logging data; ``None`` where torch does not report them.
        ddp_estimate_bytes: what DDP adds to one rank's memory, the bytes of every trainable
            parameter: its Reducer keeps one flat gradient tensor per bucket, and the buckets
            partition the trainable parameters (``gradient_as_bucket_view=False``, DDP's default,
            so the gradients are a copy besides ``param.grad``).
        losses_identical: whether every rank reports the same (averaged) losses.
        single: the same model on one process, without DDP (``--scaling``), else ``None``.
    """

    world_size: int
    backend: str
    timeout_s: float
    rank_step_ms: tuple[tuple[float, ...], ...]
    rank_span_ms: tuple[float, ...]
    rank_peak_memory_bytes: tuple[int | None, ...]
    rank_losses: tuple[tuple[float, ...], ...]
    rank_param_digests: tuple[str, ...]
    bucket_bytes: tuple[int, ...] | None
    ddp_estimate_bytes: int
    losses_identical: bool = True
    single: BenchResult | None = None

    @property
    def slowest_rank(self) -> int:
        """The rank with the longest timed span (the lowest such rank on a tie)."""
        return max(range(self.world_size), key=lambda r: (self.rank_span_ms[r], -r))

    @property
    def params_identical(self) -> bool:
        return len(set(self.rank_param_digests)) == 1

    def global_batch(self, batch: int) -> int:
        return self.world_size * batch

    def global_images_per_s(self, batch: int) -> float:
        """Every rank's images ÷ the slowest rank's timed span."""
        steps = sum(len(s) for s in self.rank_step_ms)
        return batch * steps / (max(self.rank_span_ms) / 1000.0)

    def per_rank_images_per_s(self, batch: int) -> float:
        return self.global_images_per_s(batch) / self.world_size

    def scaling_efficiency(self, batch: int) -> float | None:
        """Global img/s ÷ (ranks × the single-process run's img/s over its span)."""
        if self.single is None or self.single.error is not None or self.single.span_ms <= 0:
            return None
        return self.global_images_per_s(batch) / (self.world_size
                                                  * self.single.images_per_s_overall)

    def to_dict(self, batch: int) -> dict[str, Any]:
        """The JSON object under a result's ``data_parallel`` key (docs/benchmarks.md)."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "timeout_s": self.timeout_s,
            "batch_per_rank": batch,
            "global_batch": self.global_batch(batch),
            "global_images_per_s": self.global_images_per_s(batch),
            "per_rank_images_per_s": self.per_rank_images_per_s(batch),
            "scaling_efficiency": self.scaling_efficiency(batch),
            "slowest_rank": self.slowest_rank,
            "slowest_rank_peak_memory_bytes": self.rank_peak_memory_bytes[self.slowest_rank],
            "rank_span_ms": list(self.rank_span_ms),
            "rank_step_ms": [list(s) for s in self.rank_step_ms],
            "rank_peak_memory_bytes": list(self.rank_peak_memory_bytes),
            "rank_losses": [list(s) for s in self.rank_losses],
            "losses_identical": self.losses_identical,
            "params_identical": self.params_identical,
            "rank_param_digests": list(self.rank_param_digests),
            "ddp_estimate_bytes": self.ddp_estimate_bytes,
            "ddp_bucket_bytes": list(self.bucket_bytes) if self.bucket_bytes is not None else None,
            "bucket_cap_bytes": BUCKET_CAP_BYTES,
            "first_bucket_cap_bytes": FIRST_BUCKET_CAP_BYTES,
            "single_process": self.single.to_dict() if self.single is not None else None,
        }
