"""The benchmark on several processes: PyTorch's ``DistributedDataParallel`` around the same loop.

``run_distributed(models, config, world=detect_world())`` runs in every rank (started by torchrun,
or by ``archscope bench --nproc`` through :mod:`archscope.bench.launch`) and returns the run with
every rank's figures. Per model:

1. every rank builds the model from the same seed on its device (``cuda:LOCAL_RANK`` or the CPU);
2. with ``scaling``, rank 0 first benchmarks it alone, without DDP, while the others wait, and
   puts its built weights back;
3. every rank wraps it in ``DistributedDataParallel`` (which broadcasts rank 0's parameters and
   buffers) and runs :func:`~archscope.bench.run.bench_model`'s loop, unchanged, at the per-rank
   batch on its own synthetic shard (seed + rank): CUDA events per step, no host sync inside
   the loop; DDP all-reduces the gradients in backward, so every rank takes the same step;
4. after the loop, and only then, the ranks exchange figures: the per-step losses are
   all-reduced to their mean, so every rank reports the same losses, and every rank's step
   times, span, peak memory, own losses, parameter digest and DDP's bucket sizes are gathered.

Anything that fails in a rank raises :class:`~archscope.bench.world.RankFailure` naming the rank.
The others' collectives then fail too, as ``lost`` (the other end is gone) or ``timeout``; the
launcher ends them as soon as one rank exits, and the timeout bounds the wait otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from archscope._modes import seeded
from archscope.bench.batch import Snapshot, batch_cap, check_cap, free_cuda
from archscope.bench.plan import DEFAULT_MODELS, BenchConfig, BenchPlan, backend_flags, default_batch
from archscope.bench.results import BenchResult, BenchRun, DataParallel
from archscope.bench.run import (
    Progress,
    bench_model,
    bench_subject,
    predicted_peak,
    refuse_too_big,
    with_freeze_note,
)
from archscope.bench.timers import Clock
from archscope.bench.trainer import Trainer, TrainingError, device_broken, does_not_fit, step_failure
from archscope.bench.world import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    RankFailure,
    World,
    contact_reason,
    lost_contact,
    process_group,
    rank_device,
)
from archscope.errors import INPUT_ERRORS, ArchscopeError, DeviceError, ForwardError, first_line
from archscope.source import inspect_subject, resolve

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.report import Report, TrainingPeak
    from archscope.source import Subject


def bench_model_ddp(
    model: nn.Module,
    *,
    name: str,
    input_shape: tuple[int, ...],
    batch: int,
    settings: BenchPlan,
    world: World,
    backend: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    report: Report | None = None,
    batch_source: str = "given",
    clock: Clock | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    estimate: TrainingPeak | None = None,
    dtype: torch.dtype | None = None,
) -> BenchResult:
    """Train ``model`` under DDP on this rank's shard, then gather every rank's figures.

    Every rank of the process group calls it at once, with the same model and settings. The
    timed loop is :func:`~archscope.bench.run.bench_model`'s; ``seed`` is the run's seed (this
    rank's shard uses ``seed + rank``); ``estimate`` is one process's predicted peak (the result
    adds DDP's buckets to it); ``dtype`` is the synthetic input's (``None``: the model's float
    dtype).
    """
    trainer = DdpTrainer.for_plan(model, settings, input_shape=input_shape, batch=batch,
                                  seed=shard_seed(seed, world.rank), dtype=dtype, name=name)
    local = bench_model(model, name=name, input_shape=input_shape, batch=batch, settings=settings,
                        report=report, batch_source=batch_source, clock=clock, progress=progress,
                        trainer=trainer, estimate=estimate)
    return gather(local, trainer, world, backend, timeout_s)


def gather(local: BenchResult, trainer: DdpTrainer, world: World, backend: str,
           timeout_s: float) -> BenchResult:
    """This rank's result, made the run's: losses averaged over the ranks, every rank's figures.

    Called after the timed loop (its collectives would otherwise be timed); every rank must
    call it.
    """
    import torch
    import torch.distributed as dist

    losses = torch.tensor(local.losses, dtype=torch.float64, device=trainer.device)
    dist.all_reduce(losses)  # the sum over the ranks, the same tensor on every rank
    mean = tuple(float(v) for v in (losses / world.world_size).cpu().tolist())
    mine = _RankFigures(local.step_ms, local.span_ms, local.peak_memory_bytes, local.losses,
                        mean, param_digest(trainer.model), ddp_bucket_bytes(trainer.ddp))
    every: list[Any] = [None] * world.world_size
    dist.all_gather_object(every, mine)
    figures: list[_RankFigures] = every
    estimate = ddp_estimate_bytes(trainer.model)
    buckets = figures[0].bucket_bytes
    data_parallel = DataParallel(
        world_size=world.world_size, backend=backend, timeout_s=timeout_s,
        rank_step_ms=tuple(tuple(f.step_ms) for f in figures),
        rank_span_ms=tuple(f.span_ms for f in figures),
        rank_peak_memory_bytes=tuple(f.peak_memory_bytes for f in figures),
        rank_losses=tuple(tuple(f.losses) for f in figures),
        rank_param_digests=tuple(f.param_digest for f in figures),
        bucket_bytes=buckets, ddp_estimate_bytes=estimate,
        losses_identical=all(f.mean_losses == mean for f in figures),
    )
    peaks = [p for p in data_parallel.rank_peak_memory_bytes if p is not None]
    count = "" if not buckets else (
        "1 bucket here; " if len(buckets) == 1 else f"{len(buckets)} buckets here; ")
    note = (f"{local.model}: DDP adds {estimate / 2**20:.2f} MiB to the estimate: its gradient "
            f"buckets hold one copy of every trainable gradient ({count}the first closes past "
            "1 MiB, the others past 25 MiB)")
    return replace(
        local,
        step_ms=tuple(itertools.chain.from_iterable(data_parallel.rank_step_ms)),
        span_ms=max(data_parallel.rank_span_ms),
        peak_memory_bytes=max(peaks) if peaks else None,
        losses=mean,
        notes=(*local.notes, note),
        data_parallel=data_parallel,
    )


@dataclass(frozen=True)
class _RankFigures:
    """What one rank sends the others after the loop."""

    step_ms: tuple[float, ...]
    span_ms: float
    peak_memory_bytes: int | None
    losses: tuple[float, ...]
    mean_losses: tuple[float, ...]  # after the all-reduce: the losses this rank reports
    param_digest: str
    bucket_bytes: tuple[int, ...] | None


def run_distributed(
    models: Sequence[str] = DEFAULT_MODELS,
    config: BenchConfig | None = None,
    *,
    world: World,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    scaling: bool = False,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> BenchRun:
    """Benchmark each model on every rank of ``world`` under DDP; call it in every rank.

    ``config.batch_size`` is the per-rank batch. Returns the run with every rank's figures
    (``device`` and ``device_name`` are this rank's).

    Raises:
        RankFailure: what failed in this rank alone ("rank R: …": its training, its device), or
            a collective that failed because of another rank (``kind`` ``lost`` or
            ``timeout``).
        ArchscopeError: what fails alike in every rank, before a model trains: an unknown model
            name, ``--batch-size auto``, the options, a model that cannot be built
            (:func:`archscope.source.resolve`'s errors). Under torchrun rank 0 says it.
    """
    import torch

    from archscope.registry import check_names

    check_names(models)
    config = config or BenchConfig()
    refuse_auto_batch(config.batch_size)
    plan = distributed_plan(config, world)
    results = []
    try:
        with process_group(world, plan.device, timeout_s) as backend, \
                backend_flags(plan.device, plan.precision):
            for source in models:
                results.append(_bench_source(source, config, plan, world, backend, timeout_s,
                                             scaling, clock, progress))
    except ArchscopeError:  # RankFailure, or a model every rank fails to build
        raise
    except Exception as exc:  # joining the group, or a collective outside a model's run
        raise rank_failure(world.rank, "", exc, timeout_s) from None
    return BenchRun(
        device=str(plan.device), device_name=plan.device_name,
        torch_version=torch.__version__, cuda_version=torch.version.cuda, results=tuple(results),
        world_size=world.world_size, backend=backend,
    )


def distributed_plan(config: BenchConfig, world: World) -> BenchPlan:
    """The plan of one rank: its own device, and at least two warm-up steps by default (DDP
    rebuilds its gradient buckets in the second step's forward, which no timed step should
    include). On CUDA, a warm-up shorter than DDP's first 10 steps, which wait on the host for
    the GPU, is said in a note."""
    from archscope.bench.plan import make_plan

    plan = make_plan(replace(config, device=str(rank_device(world, config.device))))
    if config.warmup is None and plan.warmup < 2:
        plan = replace(plan, warmup=2)
    if plan.device.type == "cuda" and plan.warmup < DDP_SYNCED_STEPS:
        plan = replace(plan, notes=(
            *plan.notes,
            f"DDP waits on the host for the GPU at the start of its first {DDP_SYNCED_STEPS} "
            f"steps (its runtime statistics); with --warmup {plan.warmup} some are timed: use "
            f"--warmup {DDP_SYNCED_STEPS} or more"))
    return plan


def refuse_auto_batch(batch_size: int | str | None) -> None:
    if batch_size == "auto":
        raise DistributedError(
            "--batch-size auto searches one GPU's memory by training without DDP; with several "
            "processes find the batch on one GPU (archscope bench MODEL --batch-size auto) and "
            "pass it as --batch-size, the batch per GPU"
        )


def _bench_source(source: str, config: BenchConfig, plan: BenchPlan, world: World, backend: str,
                  timeout_s: float, scaling: bool, clock: Clock | None,
                  progress: Progress | None) -> BenchResult:
    # built alike in every rank (same source, same seed): a failure here is every rank's
    subject = with_freeze_note(resolve(
        source, input_shape=config.input_shape, num_classes=config.num_classes,
        device=str(plan.device), seed=config.seed, head=config.head, base=config.base,
        freeze=config.freeze, dtype=config.dtype), config.freeze)
    name = subject.name
    try:
        result = bench_subject_ddp(
            subject, plan, world=world, backend=backend, timeout_s=timeout_s,
            batch_size=config.batch_size, seed=config.seed, scaling=scaling, clock=clock,
            progress=progress if world.is_main else None,
        )
        del subject  # its model and everything the run left on the device
        free_cuda(plan.device)
        return result
    except (RankFailure, *INPUT_ERRORS):  # an input that does not fit: so in every rank
        raise
    except Exception as exc:
        raise rank_failure(world.rank, name, exc, timeout_s) from None


def bench_subject_ddp(
    subject: Subject,
    plan: BenchPlan,
    *,
    world: World,
    backend: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    batch_size: int | str | None = None,
    seed: int = 0,
    scaling: bool = False,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``subject`` under DDP in this rank (every rank calls it at once).

    ``batch_size`` is the per-rank batch (``None``: the model's default for the device). With
    ``scaling``, rank 0 first runs :func:`~archscope.bench.run.bench_subject` alone and the
    result carries it as ``data_parallel.single``.

    Raises:
        DeviceError: the batch runs out of memory, or passes the 2³¹-element cap.
        TrainingError: the model cannot be trained (every rank stops: they could not agree on
            the next model's steps).
        ForwardError: the forward pass fails.
    """
    import torch

    refuse_auto_batch(batch_size)
    device = plan.device
    if torch.device(subject.device).type != device.type:
        raise DeviceError(f"{subject.name} is on {subject.device}, the benchmark runs on "
                          f"{device}; resolve it with device={str(device)!r}")
    model, name, shape = subject.model, subject.name, subject.input_shape
    if batch_size is None:
        batch, batch_source = default_batch(name, device.type), "default"
    else:
        batch, batch_source = int(batch_size), "given"
    check_cap(name, batch, batch_cap(subject) if device.type == "cuda" else None)
    engine_error: ArchscopeError | None = None
    try:
        report: Report | None = inspect_subject(subject, batch=batch, backward=True,
                                                training=True)
    except ArchscopeError as exc:  # the benchmark still runs; its FLOPs are unknown
        report, engine_error = None, exc
    estimate = predicted_peak(subject, plan, batch)  # one process's; DDP's buckets come on top
    # every rank refuses alike, before the process group's first collective
    refuse_too_big(subject, plan, estimate, extra=ddp_estimate_bytes(model))
    single = _single_process(subject, plan, world, batch, seed, clock, progress) if scaling else None

    oom = False
    try:
        with seeded(shard_seed(seed, world.rank), device):  # dropout differs between ranks
            result = bench_model_ddp(
                model, name=name, input_shape=shape, batch=batch, settings=plan, world=world,
                backend=backend, timeout_s=timeout_s, report=report, batch_source=batch_source,
                estimate=estimate, clock=clock, progress=progress, seed=seed,
                dtype=subject.dtype,
            )
    except ForwardError:
        if isinstance(engine_error, INPUT_ERRORS):  # the trace's diagnosis holds on any device
            raise type(engine_error)(f"{name}: {engine_error}") from None
        raise
    except RuntimeError as exc:
        if lost_contact(exc) is not None or not does_not_fit(exc):
            raise
        oom = True  # raised outside the except block, so the failed step's tensors are freed
    if oom:
        raise DeviceError(
            f"{name}: batch {batch} per rank ran out of memory on {plan.device_name} "
            f"({plan.precision}); pass a smaller --batch-size (one GPU's --batch-size auto "
            "finds one; DDP needs one more copy of the gradients on top)"
        )
    if engine_error is not None:
        result = replace(result, notes=(
            *result.notes,
            f"engine could not trace the model ({engine_error}); FLOPs unknown"))
    if single is not None and result.data_parallel is not None:
        result = replace(result, data_parallel=replace(result.data_parallel, single=single))
    return result


def _single_process(subject: Subject, plan: BenchPlan, world: World, batch: int, seed: int,
                    clock: Clock | None, progress: Progress | None) -> BenchResult:
    """Rank 0 benchmarks the model alone (no DDP) while the others wait; every rank gets the
    result. The built weights are put back afterwards: DDP then starts from them (it broadcasts
    rank 0's)."""
    import torch.distributed as dist

    single: BenchResult | None = None
    if world.is_main:
        built = Snapshot(subject.model)
        alone: Progress | None = None
        if progress is not None:
            report = progress

            def alone(model: str, done: int, total: int) -> None:
                report(f"{model} (1 process)", done, total)
        try:
            single = bench_subject(subject, plan, batch_size=batch, seed=seed, clock=clock,
                                   progress=alone)
        finally:
            built.restore(subject.model)
            del built
            free_cuda(plan.device)
    box: list[Any] = [single]
    dist.broadcast_object_list(box, src=0)  # the others wait here, for at most the timeout
    result: BenchResult = box[0]
    if result.error is not None:  # the model cannot train: neither can it under DDP
        raise (RankFailure(0, f"{subject.name}: {result.error}") if world.is_main else
               RankFailure(world.rank, "rank 0 could not train the model alone", "lost"))
    return result


#: a sampling period of DDP's runtime statistics that no benchmark reaches
_NEVER = 2**31 - 1

#: DDP's first forwards that wait for the GPU on the host (see DdpTrainer)
DDP_SYNCED_STEPS = 10


class DdpTrainer(Trainer):
    """A :class:`Trainer` whose step runs the model through ``DistributedDataParallel``.

    DDP's defaults throughout: ``bucket_cap_mb`` 25 (the first bucket 1 MiB),
    ``gradient_as_bucket_view=False``, ``broadcast_buffers=True`` (BatchNorm's running
    statistics follow rank 0's), no search for unused parameters. The optimizer steps the
    model's own parameters, which DDP leaves in place. With ``compile``, the DDP module is
    compiled (dynamo splits the graph at the bucket boundaries).
    """

    def __init__(self, model: nn.Module, *, compile: bool, **settings: Any) -> None:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        super().__init__(model, compile=False, **settings)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(model, device_ids=device_ids)
        # DDP samples its runtime statistics at the start of its first 10 forwards and every
        # 100th after, and on CUDA that waits on the host for the previous step's events
        # (CudaTimer::measureDifference in torch/csrc/distributed/c10d/reducer_cuda.cpp): keep
        # it to the first 10, which the warm-up takes (distributed_plan), and no timed step.
        set_rate = getattr(self.ddp, "_set_ddp_runtime_logging_sample_rate", None)
        if set_rate is not None:
            set_rate(_NEVER)
        self.step_model = torch.compile(self.ddp) if compile else self.ddp

    def step(self) -> torch.Tensor:
        """One training step, as :meth:`Trainer.step`; a collective that failed because of
        another rank is raised as it is, for the caller to tell apart."""
        try:
            return self._step()
        except Exception as exc:
            if (lost_contact(exc) is not None or does_not_fit(exc)
                    or isinstance(exc, ArchscopeError) or device_broken(exc)):
                raise
            raise TrainingError(step_failure(exc) + _unused_hint(str(exc))) from None


def _unused_hint(text: str) -> str:
    if "find_unused_parameters" in text:
        return (" (DDP needs every trainable parameter to take part in the loss: freeze the "
                "ones the forward does not use)")
    return ""


def rank_failure(rank: int, name: str, exc: BaseException, timeout_s: float) -> RankFailure:
    """``exc`` in ``rank`` as the one line that ends the run: this rank's own failure, or a
    collective that failed because of another rank."""
    kind = lost_contact(exc)
    if kind is not None:
        return RankFailure(rank, contact_reason(kind, timeout_s), kind)
    if isinstance(exc, ArchscopeError):
        reason = str(exc)
    elif does_not_fit(exc):
        reason = f"ran out of memory ({first_line(exc, 200)})"
    else:  # an exception of the model's own (its constructor, its forward on this rank …)
        reason = f"{type(exc).__name__}: {first_line(exc)}"
    if name and not reason.startswith(name):
        reason = f"{name}: {reason}"
    return RankFailure(rank, reason)


def shard_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s synthetic batch and dropout: its own shard of the data."""
    return seed + rank


def param_digest(model: nn.Module) -> str:
    """SHA-256 of the parameters' bytes, in ``model.parameters()`` order."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for p in model.parameters():
        data = p.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def ddp_estimate_bytes(model: nn.Module) -> int:
    """What DDP's Reducer allocates: one flat gradient tensor per bucket, the buckets together
    holding every parameter that requires a gradient (shared ones once), in its dtype."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def ddp_bucket_bytes(ddp: Any) -> tuple[int, ...] | None:
    """The sizes of DDP's gradient buckets (bytes) as its Reducer built them, from DDP's logging
    data: ``rebuilt_bucket_sizes`` once the second step's forward rebuilt them in the order the
    gradients came and a later step logged it (so from three steps on), else the one bucket it
    starts with. ``None`` if this torch does not report them (the method is private)."""
    try:
        data = ddp._get_ddp_logging_data()
    except Exception:
        return None
    text = data.get("rebuilt_bucket_sizes") or data.get("bucket_sizes")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        return None
