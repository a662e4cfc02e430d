"""What a benchmark measured: one :class:`BenchResult` per model (with the figures derived from
its step times: median, p90, images/s, TFLOP/s, MFU, the memory estimate's error), the
:class:`DataParallel` figures a run on several ranks adds to it, and the :class:`BenchRun` of all
of them; their ``to_dict`` is the JSON schema in docs/benchmarks.md.

A run on several ranks under DDP adds every rank's step times, spans, peaks and parameters, DDP's
gradient buckets, and the single-process :class:`BenchResult` it is compared with
(``--scaling``): a :class:`BenchResult` holds a :class:`DataParallel` that may hold a
:class:`BenchResult`, so the two live in one module.

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

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archscope.bench.timers import percentile

if TYPE_CHECKING:
    from archscope.bench.plan import BenchPlan
    from archscope.report import TrainingPeak


@dataclass(frozen=True)
class BenchResult:
    """One model's benchmark.

    Attributes:
        model: the model's name; ``input_shape`` one sample's C×H×W.
        device: ``cuda`` / ``cuda:1`` / ``cpu``; ``device_name`` what torch calls it.
        batch, precision, channels_last, compiled, optimizer, steps, warmup: the settings used.
        batch_source: ``default``, ``given`` or ``auto``.
        step_ms: every timed step's duration (ms), in order.
        span_ms: from the first timed step's start to the last one's end (ms): with the gaps
            between steps, the figure a wall-clock loop measures (``steps × batch ÷ span``).
        training_flops: forward + backward FLOPs of one step from the engine (``None``: unknown).
        peak_tflops / peak_source: the device peak used for MFU and where it came from
            (``None`` / :data:`archscope.devices.UNKNOWN_DEVICE` for a GPU not in the table,
            :data:`archscope.devices.CPU_NO_PEAK` on the CPU).
        peak_memory_bytes: ``torch.cuda.max_memory_allocated`` over the timed steps (CUDA only).
        memory_estimate: the step's predicted peak (:func:`archscope.memory.training_memory` of
            this run's step: its precision, optimizer, device, batch and layout), as
            :class:`~archscope.report.TrainingPeak`; ``None`` where unknown.
        losses: the loss of every step, warm-up included, in order.
        notes: caveats (estimate assumptions, skipped parts).
        error: why the model could not be trained (its training step raised, it has no
            trainable parameters), else ``None``. A result with an error has no timings
            (``step_ms`` and ``losses`` are empty) and is not :attr:`ok`.
        data_parallel: the run on several ranks under DDP (:mod:`archscope.bench.ddp`), else
            ``None``. Then ``batch`` is per rank, ``step_ms`` holds every rank's steps (rank by
            rank), ``span_ms`` is the slowest rank's, ``peak_memory_bytes`` the largest rank's,
            ``losses`` the mean over the ranks, and the FLOPs, TFLOP/s and MFU are per rank.
    """

    model: str
    input_shape: tuple[int, ...]
    device: str
    device_name: str
    batch: int
    batch_source: str
    precision: str
    channels_last: bool
    compiled: bool
    optimizer: str
    steps: int
    warmup: int
    step_ms: tuple[float, ...]
    span_ms: float
    training_flops: int | None
    peak_tflops: float | None
    peak_source: str | None
    peak_memory_bytes: int | None
    memory_estimate: TrainingPeak | None
    losses: tuple[float, ...]
    notes: tuple[str, ...] = ()
    error: str | None = None
    data_parallel: DataParallel | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.step_ms)

    @property
    def p90_ms(self) -> float:
        return percentile(self.step_ms, 90.0)

    @property
    def images_per_s(self) -> float:
        return self.batch / (self.median_ms / 1000.0)

    @property
    def images_per_s_overall(self) -> float:
        """Images ÷ the whole timed span (gaps between steps included); under DDP every rank's
        images ÷ the slowest rank's span, the global img/s."""
        return self.batch * len(self.step_ms) / (self.span_ms / 1000.0)

    @property
    def achieved_tflops(self) -> float | None:
        """Training FLOPs per step ÷ median step time, in TFLOP/s."""
        if self.training_flops is None or self.median_ms <= 0:
            return None
        return self.training_flops / (self.median_ms / 1000.0) / 1e12

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilization: achieved ÷ peak TFLOP/s (``None`` when either is unknown)."""
        achieved = self.achieved_tflops
        if achieved is None or not self.peak_tflops:
            return None
        return achieved / self.peak_tflops

    @property
    def estimated_memory_bytes(self) -> int | None:
        """The predicted peak, plus DDP's gradient buckets under DDP."""
        if self.memory_estimate is None or self.memory_estimate.peak is None:
            return None
        ddp = self.data_parallel.ddp_estimate_bytes if self.data_parallel is not None else 0
        return self.memory_estimate.peak + ddp

    @property
    def memory_error_pct(self) -> float | None:
        """(estimate − measured) ÷ measured, in percent."""
        estimate = self.estimated_memory_bytes
        if estimate is None or not self.peak_memory_bytes:
            return None
        return (estimate - self.peak_memory_bytes) / self.peak_memory_bytes * 100.0

    @property
    def first_loss(self) -> float:
        return self.losses[0]

    @property
    def last_loss(self) -> float:
        return self.losses[-1]

    @property
    def loss_fell(self) -> bool:
        """Did the model learn the repeated batch: finite losses and the last below the first."""
        return (len(self.losses) >= 2 and all(math.isfinite(v) for v in self.losses)
                and self.last_loss < self.first_loss)

    @property
    def ok(self) -> bool:
        return self.error is None and self.loss_fell

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"FAILED: {self.error}"
        return "ok" if self.ok else "FAILED: loss did not fall"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the stable keys documented in docs/benchmarks.md.

        A model that could not be trained (:attr:`error`) has ``null`` measurements, empty
        ``step_ms`` and ``losses``, ``status`` ``"failed"`` and ``error`` (``null`` otherwise).
        A data-parallel result adds ``data_parallel`` (:meth:`DataParallel.to_dict`).
        """
        trained = self.error is None
        # the measurements, or None for a model that could not be trained
        m: dict[str, Any] = dict.fromkeys(_MEASURED) if not trained else {
            "images_per_s": self.images_per_s,
            "step_ms_median": self.median_ms,
            "step_ms_p90": self.p90_ms,
            "span_ms": self.span_ms,
            "images_per_s_overall": self.images_per_s_overall,
            "training_flops_per_step": self.training_flops,
            "achieved_tflops": self.achieved_tflops,
            "mfu": self.mfu,
            "peak_memory_bytes": self.peak_memory_bytes,
            "estimated_memory_bytes": self.estimated_memory_bytes,
            "memory_error_pct": self.memory_error_pct,
            "memory_estimate": (self.memory_estimate.to_dict()
                                if self.memory_estimate is not None else None),
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
        }
        data: dict[str, Any] = {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "device": self.device,
            "device_name": self.device_name,
            "batch": self.batch or None,  # 0: --batch-size auto failed before finding one
            "batch_source": self.batch_source,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compiled,
            "optimizer": self.optimizer,
            "steps": self.steps,
            "warmup": self.warmup,
            "images_per_s": m["images_per_s"],
            "step_ms_median": m["step_ms_median"],
            "step_ms_p90": m["step_ms_p90"],
            "step_ms": list(self.step_ms),
            "span_ms": m["span_ms"],
            "images_per_s_overall": m["images_per_s_overall"],
            "training_flops_per_step": m["training_flops_per_step"],
            "achieved_tflops": m["achieved_tflops"],
            "peak_tflops": self.peak_tflops,
            "peak_tflops_source": self.peak_source,
            "mfu": m["mfu"],
            "peak_memory_bytes": m["peak_memory_bytes"],
            "estimated_memory_bytes": m["estimated_memory_bytes"],
            "memory_error_pct": m["memory_error_pct"],
            "memory_estimate": m["memory_estimate"],
            "first_loss": m["first_loss"],
            "last_loss": m["last_loss"],
            "losses": list(self.losses),
            "loss_fell": self.loss_fell,
            "status": "ok" if self.ok else "failed",
            "notes": list(self.notes),
            "error": self.error,
        }
        if self.data_parallel is not None:
            data["data_parallel"] = self.data_parallel.to_dict(self.batch)
        return data


#: The measured keys of :meth:`BenchResult.to_dict`: ``null`` for a model that could not train.
_MEASURED = ("images_per_s", "step_ms_median", "step_ms_p90", "span_ms", "images_per_s_overall",
             "training_flops_per_step", "achieved_tflops", "mfu", "peak_memory_bytes",
             "estimated_memory_bytes", "memory_error_pct", "memory_estimate", "first_loss",
             "last_loss")


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


@dataclass(frozen=True)
class BenchRun:
    """Every model's result, plus the device and library versions they ran with.

    A data-parallel run has ``world_size`` ranks talking over ``backend`` (``nccl``, ``gloo``);
    ``device`` and ``device_name`` are rank 0's. One process: 1 and ``None``.
    """

    device: str
    device_name: str
    torch_version: str
    cuda_version: str | None
    results: tuple[BenchResult, ...]
    world_size: int = 1
    backend: str | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        from archscope import __version__

        data: dict[str, Any] = {
            "archscope_version": __version__,
            "torch_version": self.torch_version,
            "cuda_version": self.cuda_version,
            "device": self.device,
            "device_name": self.device_name,
        }
        if self.backend is not None:  # a data-parallel run
            data.update(world_size=self.world_size, backend=self.backend)
        data.update(ok=self.ok, results=[r.to_dict() for r in self.results])
        return data


def failed_result(name: str, shape: tuple[int, ...], plan: BenchPlan, batch: int,
                  batch_source: str, error: str) -> BenchResult:
    """The result of a model that could not be trained: settings and ``error``, no timings."""
    return BenchResult(
        model=name, input_shape=tuple(shape), device=str(plan.device),
        device_name=plan.device_name, batch=batch, batch_source=batch_source,
        precision=plan.precision, channels_last=plan.channels_last,
        compiled=plan.compile, optimizer=plan.optimizer, steps=plan.steps,
        warmup=plan.warmup, step_ms=(), span_ms=0.0, training_flops=None,
        peak_tflops=plan.peak_tflops, peak_source=plan.peak_source,
        peak_memory_bytes=None, memory_estimate=None, losses=(), notes=plan.notes,
        error=error,
    )
