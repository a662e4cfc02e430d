"""The benchmark loop: warm-up steps, timed steps, one sync; then, around it, one model at a time.

Read top to bottom: :func:`bench_model` is the loop itself; :func:`run_bench` builds each model
once (:func:`archscope.source.resolve`) and hands it to :func:`bench_subject`, which chooses the
batch, traces the model it holds for the FLOPs, predicts the step's peak memory (refusing a step
the device has no room for before it runs), runs the loop, and turns running out of memory into
a batch that fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from archscope._modes import seeded
from archscope.bench.batch import (
    BatchCap,
    Snapshot,
    auto_batch,
    batch_cap,
    check_cap,
    clear_grads,
    fits_in_memory,
    free_cuda,
    halve_until_fits,
)
from archscope.bench.plan import (
    DEFAULT_MODELS,
    BenchConfig,
    BenchPlan,
    backend_flags,
    default_batch,
    make_plan,
)
from archscope.bench.results import BenchResult, BenchRun, failed_result
from archscope.bench.timers import Clock, timer_for
from archscope.bench.trainer import Trainer, TrainingError, does_not_fit
from archscope.errors import (
    INPUT_ERRORS,
    ArchscopeError,
    DeviceError,
    DeviceOptionError,
    ForwardError,
)
from archscope.source import inspect_subject, resolve

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.report import Report, TrainingPeak
    from archscope.source import Subject

#: ``progress(model, done, total)`` after every step, warm-up included.
Progress = Callable[[str, int, int], None]


def bench_model(
    model: nn.Module,
    *,
    name: str,
    input_shape: tuple[int, ...],
    batch: int,
    settings: BenchPlan,
    report: Report | None = None,
    batch_source: str = "given",
    clock: Clock | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    trainer: Trainer | None = None,
    estimate: TrainingPeak | None = None,
    dtype: torch.dtype | None = None,
) -> BenchResult:
    """Train ``model`` (already on ``settings.device``) for warm-up + timed steps and measure it.

    Run it inside :func:`~archscope.bench.plan.backend_flags` (as :func:`run_bench` does) for the
    TF32 and cuDNN autotuning settings that ``settings.precision`` implies.

    Args:
        report: the engine's report of this model at this batch, traced with ``backward=True``:
            it gives the training FLOPs per step (``None``: unknown).
        clock: a host clock for the timed steps; default ``time.perf_counter`` on the CPU and
            CUDA events on a GPU. Passing one forces the host clock (tests inject a fake one).
        progress: called as ``progress(name, done, total)`` after each step.
        trainer: the model's trainer, already built (the data-parallel one of
            :mod:`archscope.bench.ddp`); default: a :class:`Trainer` made here from ``settings``.
        estimate: the step's predicted peak memory (:func:`predicted_peak`), shown beside the
            measured one; ``None``: unknown.
        dtype: the synthetic input's dtype (``None``: the model's float dtype; ``torch.long``
            for token ids).

    Raises:
        torch.cuda.OutOfMemoryError: left to the caller, which knows how to find a batch that fits.
    """
    import torch

    if settings.steps < 1 or settings.warmup < 0:
        raise ValueError("bench needs at least one timed step and a non-negative warm-up")
    if trainer is None:
        trainer = Trainer.for_plan(model, settings, input_shape=input_shape, batch=batch,
                                   seed=seed, dtype=dtype, name=name)
    cuda = settings.device.type == "cuda"
    total = settings.warmup + settings.steps
    losses: list[torch.Tensor] = []
    for i in range(settings.warmup):
        losses.append(trainer.step())
        if progress is not None:
            progress(name, i + 1, total)
    if cuda:
        torch.cuda.synchronize(settings.device)
        torch.cuda.reset_peak_memory_stats(settings.device)
    timer = timer_for(settings.device, settings.steps, clock)
    for i in range(settings.steps):
        timer.start()
        losses.append(trainer.step())
        timer.stop()
        if progress is not None:
            progress(name, settings.warmup + i + 1, total)
    step_ms = timer.elapsed_ms()  # the one host sync on CUDA
    span_ms = timer.span_ms()
    peak_memory = int(torch.cuda.max_memory_allocated(settings.device)) if cuda else None
    loss_values = [float(v) for v in torch.stack(losses).float().cpu().tolist()]

    notes = list(settings.notes)
    flops = None
    if report is not None:
        flops = report.training_flops
        notes.extend(report.notes)
    notes.extend(estimate_notes(estimate, settings))
    if trainer.channels_last != settings.channels_last:
        notes.append("channels_last skipped: the input is not C×H×W")
    return BenchResult(
        model=name, input_shape=tuple(input_shape), device=str(settings.device),
        device_name=settings.device_name, batch=batch, batch_source=batch_source,
        precision=settings.precision, channels_last=trainer.channels_last,
        compiled=settings.compile, optimizer=settings.optimizer, steps=settings.steps,
        warmup=settings.warmup, step_ms=tuple(step_ms), span_ms=span_ms,
        training_flops=flops, peak_tflops=settings.peak_tflops, peak_source=settings.peak_source,
        peak_memory_bytes=peak_memory, memory_estimate=estimate, losses=tuple(loss_values),
        notes=tuple(notes),
    )


def memory_options(plan: BenchPlan) -> dict[str, object]:
    """The step bench runs, as :func:`archscope.memory.training_memory` takes it: precision,
    optimizer (fused on CUDA, PyTorch's for-loop default on the CPU, as the trainer makes it),
    device, GPU (its cuBLAS workspace) and layout; the input's dtype is the subject's."""
    cuda = plan.device.type == "cuda"
    return {"precision": plan.precision, "optimizer": plan.optimizer, "device": plan.device.type,
            "gpu": plan.device_name if cuda else None, "channels_last": plan.channels_last,
            "step": "bench"}


def predicted_peak(subject: Subject, plan: BenchPlan, batch: int) -> TrainingPeak:
    """The peak memory of bench's step for ``subject`` at ``batch`` (one replay on the meta
    device; see :func:`archscope.memory.training_memory`)."""
    from archscope.memory.summary import predict_peak

    return predict_peak(subject.model, subject.input_shape, batch=batch, name=subject.name,
                        input_dtype=subject.dtype, **memory_options(plan))  # type: ignore[arg-type]


def refuse_too_big(subject: Subject, plan: BenchPlan, estimate: TrainingPeak,
                   extra: int = 0) -> None:
    """Refuse a batch the device has no room for, before it runs
    (:func:`archscope.memory.guard.refuse_if_too_big`); ``extra`` bytes come on top of the
    prediction (DDP's gradient buckets).

    Raises:
        DoesNotFitError: naming the prediction and a ``--batch-size`` (or ``--input``) that fits.
    """
    from archscope.memory.guard import refuse_if_too_big

    options = {k: v for k, v in memory_options(plan).items() if k != "device"}
    options["input_dtype"] = subject.dtype
    refuse_if_too_big(subject.model, estimate, name=subject.name,
                      input_shape=subject.input_shape, device=plan.device,
                      batch_option="--batch-size", extra=extra, options=options)


def estimate_notes(estimate: TrainingPeak | None, plan: BenchPlan) -> list[str]:
    """What the memory estimate is, or why there is none."""
    if estimate is None:
        return []
    if estimate.peak is None:
        return [f"no memory estimate: {estimate.reason}"]
    impl = f" {estimate.optimizer_impl}" if estimate.optimizer_impl else ""
    what = ("as torch.cuda.max_memory_allocated counts it, cuDNN's workspaces and the CUDA "
            "context left out" if estimate.device == "cuda" else "the tensors' bytes")
    note = (f"estimate: the step's peak as archscope memory predicts it ({estimate.precision}, "
            f"{estimate.optimizer}{impl}; {what})")
    if plan.compile:
        note += "; for eager mode: torch.compile may save less"
    return [note]


def run_bench(
    models: Sequence[str] = DEFAULT_MODELS,
    config: BenchConfig | None = None,
    *,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> BenchRun:
    """Benchmark each model in ``models`` (zoo names or any source ``archscope summary`` takes).

    Raises:
        DeviceError: no CUDA for ``--device cuda``, ``--batch-size auto`` on the CPU, or a batch
            that runs out of GPU memory (the message names a batch that fits).
        UnknownModelError / ModelSourceError / InputShapeError: as ``archscope summary``.
    """
    import torch

    from archscope.registry import check_names

    check_names(models)  # an unknown name fails before minutes of benchmarks, not after
    config = config or BenchConfig()
    plan = make_plan(config)
    if config.batch_size == "auto" and plan.device.type != "cuda":
        raise DeviceOptionError("--batch-size auto searches GPU memory; on the CPU pass a number")
    results = []
    with backend_flags(plan.device, plan.precision):
        for source in models:
            subject = with_freeze_note(resolve(
                source, input_shape=config.input_shape, num_classes=config.num_classes,
                device=str(plan.device), seed=config.seed, head=config.head, base=config.base,
                freeze=config.freeze, dtype=config.dtype), config.freeze)
            results.append(bench_subject(subject, plan, batch_size=config.batch_size,
                                         seed=config.seed, clock=clock, progress=progress))
            del subject  # its model and everything the run left on the device
            free_cuda(plan.device)
    return BenchRun(
        device=str(plan.device), device_name=plan.device_name,
        torch_version=torch.__version__, cuda_version=torch.version.cuda, results=tuple(results),
    )


def bench_subject(
    subject: Subject,
    plan: BenchPlan,
    *,
    batch_size: int | str | None = None,
    seed: int = 0,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``subject`` (built on ``plan.device``): its batch, its trace, the loop.

    ``batch_size`` is a number, ``"auto"`` (the largest that fits in GPU memory, searched by
    training the model a few steps per candidate; it then starts again from its built weights)
    or ``None`` (the model's default for the device). A model whose training step raises, or
    that has nothing to train, is a failed result (``error``), not an exception.

    Raises:
        DeviceError: a batch past what CUDA kernels can index, one whose predicted peak is
            more than the device has free (:class:`~archscope.memory.guard.DoesNotFitError`,
            before it runs), or one that runs out of memory (the message names a batch that
            fits).
        ForwardError: the forward pass fails (the meta trace's diagnosis where it holds on any
            device: an input that does not fit a layer).
    """
    import torch

    device = plan.device
    if torch.device(subject.device).type != device.type:
        raise DeviceError(f"{subject.name} is on {subject.device}, the benchmark runs on "
                          f"{device}; resolve it with device={str(device)!r}")
    model, name, shape = subject.model, subject.name, subject.input_shape
    batch, batch_source = 0, "auto"  # 0 until the search finds one
    if batch_size is None:
        batch, batch_source = default_batch(name, device.type), "default"
    elif batch_size != "auto":
        batch, batch_source = int(batch_size), "given"
    try:
        cap = batch_cap(subject) if device.type == "cuda" else None
        if batch_size == "auto":
            built = Snapshot(model)
            with seeded(seed, device):  # the search trains, with dropout
                batch = auto_batch(model, shape, plan, seed, name, cap, subject.dtype)
            built.restore(model)  # the search trained it a few steps: start from the built model
            del built
            free_cuda(device)
        check_cap(name, batch, cap)

        engine_error: ArchscopeError | None = None
        try:
            report: Report | None = inspect_subject(subject, batch=batch, backward=True,
                                                    training=True)
        except ArchscopeError as exc:  # the benchmark still runs; its FLOPs are unknown
            report, engine_error = None, exc
            engine_note = f"engine could not trace the model ({exc}); FLOPs unknown"
        else:
            engine_note = ""
        estimate = predicted_peak(subject, plan, batch)
        if batch_size != "auto":  # the search found a batch that ran
            refuse_too_big(subject, plan, estimate)

        oom = False
        try:
            # dropout draws from the global generator: seeded (and the caller's state kept), the
            # same command gives the same losses
            with seeded(seed, device):
                result = bench_model(model, name=name, input_shape=shape, batch=batch,
                                     settings=plan, report=report, batch_source=batch_source,
                                     clock=clock, progress=progress, seed=seed,
                                     estimate=estimate, dtype=subject.dtype)
        except ForwardError:
            # the trace's diagnosis, where it is one that holds on any device (an input that does
            # not fit a layer); a failure of the meta trace alone says nothing about the real one
            if isinstance(engine_error, INPUT_ERRORS):
                raise type(engine_error)(f"{name}: {engine_error}") from None
            raise
        except RuntimeError as exc:
            if not does_not_fit(exc):
                raise
            oom = True  # handled outside the except block, so the failed step's tensors are freed
        if oom:
            raise _out_of_memory(subject, plan, batch, seed, cap)
        if engine_note:
            result = replace(result, notes=(*result.notes, engine_note))
        return result
    except TrainingError as exc:  # this model's failure; run_bench goes on with the others
        return failed_result(name, shape, plan, batch, batch_source, str(exc))


def with_freeze_note(subject: Subject, prefixes: Sequence[str]) -> Subject:
    """``subject`` (frozen under ``prefixes`` by :func:`archscope.source.resolve`) with a note
    saying how many parameters the optimizer trains; as it was without ``prefixes``."""
    if not prefixes:
        return subject
    params = list(subject.model.parameters())
    trained = sum(p.numel() for p in params if p.requires_grad)
    frozen = sum(p.numel() for p in params) - trained
    note = (f"--freeze {' '.join(prefixes)}: {frozen:,} parameters frozen; the optimizer trains "
            f"the other {trained:,}")
    return replace(subject, notes=(*subject.notes, note))


def _out_of_memory(subject: Subject, plan: BenchPlan, batch: int, seed: int,
                   cap: BatchCap | None) -> DeviceError:
    """The error for ``batch`` running out of memory, naming a smaller batch that fits."""
    import torch

    if plan.compile:  # drop the compiled graphs and their buffers before searching
        torch._dynamo.reset()
    clear_grads(subject.model)
    free_cuda(plan.device)
    fits = fits_in_memory(subject.model, subject.input_shape, plan, seed, cap, subject.dtype)
    with seeded(seed, plan.device):
        smaller = halve_until_fits(fits, batch)
    del fits
    free_cuda(plan.device)
    auto = " or --batch-size auto" if plan.device.type == "cuda" else ""
    hint = (f"batch {smaller} fits: pass --batch-size {smaller}{auto}"
            if smaller is not None else "not even batch 1 fits")
    return DeviceError(
        f"{subject.name}: batch {batch} ran out of memory on {plan.device_name} "
        f"({plan.precision}); {hint}"
    )
