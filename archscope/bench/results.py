"""What a benchmark measured: one :class:`BenchResult` per model (with the figures derived from
its step times: median, p90, images/s, TFLOP/s, MFU, the memory estimate's error) and the
:class:`BenchRun` of all of them; their ``to_dict`` is the JSON schema in docs/benchmarks.md."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archscope.bench.timers import percentile

if TYPE_CHECKING:
    from archscope.bench.ddp_results import DataParallel
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
