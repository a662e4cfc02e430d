"""Short training benchmarks: how fast, how big and how close to the hardware limit a model trains.

``run_bench(["resnet50"], BenchConfig(device="cuda"))`` builds each model on the device, trains it
on one fixed synthetic batch (random images and labels, made on the device once and repeated, so a
model that learns must drive the loss down) and returns one :class:`BenchResult` per model. Nothing
is printed; the ``archscope bench`` command renders the results.

How the timing is done (the pattern of nanoGPT's ``bench.py`` and ``torch.utils.benchmark``):

* warm-up steps run first and are discarded (cuDNN autotuning, ``torch.compile``, allocator
  growth);
* on CUDA a pair of CUDA events is recorded around every timed step and nothing in the loop waits
  for the GPU: the loss stays on the device (no ``.item()``), the fused optimizers apply
  GradScaler's inf check on the device, and the host synchronizes once after the loop to read the
  events;
* on the CPU, ``time.perf_counter`` (or an injected clock, for tests) brackets every step;
* the report gives the median and the 90th percentile of the step times, images/s = batch ÷ median,
  and achieved FLOP/s = the engine's training FLOPs per step (forward + backward, from
  :func:`archscope.engine.inspect` on the meta device) ÷ the median step time;
* ``optimizer.zero_grad(set_to_none=True)`` frees gradients between steps, as a good loop does.

Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps (the counter is reset after
warm-up), shown beside the engine's estimate (:func:`estimate_training_memory`).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from archscope._modes import seeded
from archscope.devices import (
    PRECISIONS,
    UNKNOWN_DEVICE,
    current_device_name,
    lookup,
    resolve_device,
)
from archscope.errors import (
    INPUT_ERRORS,
    ArchscopeError,
    DeviceError,
    ForwardError,
    InputShapeError,
    autograd_hint,
    first_line,
)
from archscope.memory import MemoryEstimate, estimate_training_memory
from archscope.tensors import tensors_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.report import Report

#: Models benchmarked when none is named, each at its natural input size.
DEFAULT_MODELS = ("lecture_mnist_cnn", "alexnet", "vgg16", "resnet50")
OPTIMIZERS = ("sgd", "adamw")

# Batches that keep a data-centre GPU busy without running out of memory on a 24 GB L4 at bf16
# (the reference runs: resnet50 256, vgg16 128, alexnet 512). Small models get big batches
# so that the step is not dominated by kernel launches.
_CUDA_BATCH = {
    "lecture_mnist_cnn": 2048, "lecture_mlp": 2048, "lecture_catsdogs_cnn": 256,
    "lecture_multitask": 256, "alexnet": 512, "alexnet_torchvision": 512,
    "vgg11": 128, "vgg13": 128, "vgg16": 128, "vgg19": 128,
    "vgg11_bn": 128, "vgg13_bn": 128, "vgg16_bn": 128, "vgg19_bn": 128,
    "resnet18": 256, "resnet34": 256, "resnet50": 256, "resnet101": 128, "resnet152": 128,
}
_CUDA_BATCH_OTHER = 64
# On the CPU (CI runners, laptops) small batches and few steps keep a run to seconds.
_CPU_BATCH = {
    "lecture_mnist_cnn": 64, "lecture_mlp": 64, "lecture_catsdogs_cnn": 16,
    "alexnet": 16, "alexnet_torchvision": 16,  # batch 4 makes AlexNet's loss jump about
}
_CPU_BATCH_OTHER = 4
_STEPS = {"cuda": 200, "cpu": 5}
_WARMUP = {"cuda": 20, "cpu": 1}
# SGD with momentum 0.9 as in torchvision's reference recipe, but lr 0.001 rather than its 0.01:
# memorising one repeated batch of random labels, AlexNet and VGG16 (no batch norm) diverge at 0.01
# (measured on the CPU: AlexNet batch 32 went 7.3 → 9.7 in 8 steps, VGG16 batch 4 to 2e8), while
# 0.001 brings every zoo model's loss down. The step time does not depend on it. AdamW at 3e-4.
_LR = {"sgd": 0.001, "adamw": 3e-4}
_AUTO_BATCH_LIMIT = 1 << 16

#: Many CUDA kernels index a tensor with 32-bit integers. Past 2³¹ elements some raise, and some
#: make an illegal memory access that breaks the process's CUDA context for good (PyTorch issues
#: #117736 for convolutions, #165297 for channels-last max-pooling), so no batch search goes
#: there and a given batch that would is refused before it runs.
_MAX_ELEMENTS = 2**31 - 1


class TrainingError(ArchscopeError):
    """A model that cannot be trained: its training step raised, or it has nothing to train.

    :func:`run_bench` records it as that model's failed :class:`BenchResult` (``error``) and goes
    on with the other models.
    """


class Clock(Protocol):
    """A monotonic clock in seconds (``time.perf_counter``); injectable for tests."""

    def __call__(self) -> float: ...


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how; ``None`` means "the default for the device".

    Attributes:
        device: ``auto`` (CUDA when available, else CPU), ``cuda``, ``cuda:N`` or ``cpu``.
        batch_size: a fixed batch, ``"auto"`` (the largest that fits, CUDA only) or ``None``.
        steps / warmup: timed steps and discarded warm-up steps.
        precision: ``fp32``, ``tf32``, ``bf16`` or ``fp16`` (autocast; fp16 with a GradScaler).
            Default: bf16 on CUDA (fp16 where the GPU has no bf16), fp32 on the CPU.
        channels_last: NHWC memory format for model and input (default: on for CUDA).
        compile: wrap the model in ``torch.compile`` (compilation happens during warm-up).
        optimizer: ``sgd`` (momentum 0.9) or ``adamw``.
        lr: learning rate (default: 0.001 for SGD, 3e-4 for AdamW).
        peak_tflops: the device's peak for MFU, overriding the table in :mod:`archscope.devices`.
        num_classes: classes of the zoo models' heads (default: each model's own).
        input_shape: C×H×W for every model (default: each model's natural input).
        seed: seed of the model's initialisation and of the synthetic batch.
    """

    device: str = "auto"
    batch_size: int | Literal["auto"] | None = None
    steps: int | None = None
    warmup: int | None = None
    precision: str | None = None
    channels_last: bool | None = None
    compile: bool = False
    optimizer: str = "sgd"
    lr: float | None = None
    peak_tflops: float | None = None
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    seed: int = 0


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
            (``None`` / :data:`archscope.devices.UNKNOWN_DEVICE` when unknown).
        peak_memory_bytes: ``torch.cuda.max_memory_allocated`` over the timed steps (CUDA only).
        memory_estimate: the engine's training-memory estimate.
        losses: the loss of every step, warm-up included, in order.
        notes: caveats (estimate assumptions, skipped parts).
        error: why the model could not be trained (its training step raised, it has no
            trainable parameters), else ``None``. A result with an error has no timings
            (``step_ms`` and ``losses`` are empty) and is not :attr:`ok`.
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
    memory_estimate: MemoryEstimate | None
    losses: tuple[float, ...]
    notes: tuple[str, ...] = ()
    error: str | None = None

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
        """Images ÷ the whole timed span (gaps between steps included)."""
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
        return self.memory_estimate.total if self.memory_estimate is not None else None

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
        return {
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


#: The measured keys of :meth:`BenchResult.to_dict`: ``null`` for a model that could not train.
_MEASURED = ("images_per_s", "step_ms_median", "step_ms_p90", "span_ms", "images_per_s_overall",
             "training_flops_per_step", "achieved_tflops", "mfu", "peak_memory_bytes",
             "estimated_memory_bytes", "memory_error_pct", "memory_estimate", "first_loss",
             "last_loss")


#: ``progress(model, done, total)`` after every step (warm-up included); ``phase`` in the model
#: string is not used: the callback gets the model's name and the step counts.
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Devices, defaults and the memory estimate
# --------------------------------------------------------------------------------------------

def default_precision(device: torch.device) -> str:
    """bf16 autocast on CUDA (fp16 on GPUs without bf16, e.g. before Ampere); fp32 on the CPU."""
    import torch

    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def default_batch(model: str, device_type: str) -> int:
    """A sensible batch for ``model`` on ``device_type`` (``cuda`` or ``cpu``)."""
    if device_type == "cuda":
        return _CUDA_BATCH.get(model, _CUDA_BATCH_OTHER)
    return _CPU_BATCH.get(model, _CPU_BATCH_OTHER)


# --------------------------------------------------------------------------------------------
# Batch search
# --------------------------------------------------------------------------------------------

def find_max_batch(fits: Callable[[int], bool], *, start: int = 1,
                   limit: int = _AUTO_BATCH_LIMIT) -> int | None:
    """The largest batch ``b ≤ limit`` with ``fits(b)``: double from ``start``, then bisect.

    Assumes that whenever a batch fits, every smaller one does. The limit itself is a candidate
    (it need not be a power of two). Returns ``None`` if not even batch 1 fits (``start`` is
    halved down to 1 first).
    """
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


def halve_until_fits(fits: Callable[[int], bool], batch: int) -> int | None:
    """The first of ``batch/2, batch/4, … 1`` that fits, or ``None``."""
    candidate = batch // 2
    while candidate >= 1:
        if fits(candidate):
            return candidate
        candidate //= 2
    return None


# --------------------------------------------------------------------------------------------
# Timers
# --------------------------------------------------------------------------------------------

class _ClockTimer:
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
        """From the first step's start to the last step's end, gaps between steps included."""
        return (self._stops[-1] - self._starts[0]) * 1000.0


class _CudaEventTimer:
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
        """From the first step's start to the last step's end, gaps between steps included."""
        return float(self._pairs[0][0].elapsed_time(self._pairs[self._next - 1][1]))


# --------------------------------------------------------------------------------------------
# The training step
# --------------------------------------------------------------------------------------------

@contextmanager
def backend_flags(device: torch.device, precision: str) -> Iterator[None]:
    """Set TF32 and cuDNN autotuning for the run; restore the caller's flags afterwards.

    ``fp32`` means IEEE fp32 math: cuDNN convolutions default to TF32 on Ampere+, so it is turned
    off explicitly. ``tf32`` turns TF32 on for matmuls and convolutions; bf16/fp16 leave the few
    fp32 ops that autocast keeps on TF32 as well.
    """
    import torch

    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True  # autotune convolution algorithms (during warm-up)
        with tf32_flags(precision != "fp32"):
            yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextmanager
def tf32_flags(enabled: bool) -> Iterator[None]:
    """TF32 on or off for matmuls and cuDNN convolutions, in the API the process already uses.

    PyTorch ≥ 2.9 has two APIs for this, and mixing them makes the other's getters raise ("mix of
    the legacy and new APIs", seen on torch 2.13): once anything set ``fp32_precision``, reading
    ``allow_tf32`` raises, and once ``allow_tf32`` is set, torch.compile's max-autotune and
    third-party code read it. So this uses the legacy flags (``allow_tf32``,
    ``float32_matmul_precision``) unless their getters already raise, and restores the same ones.
    """
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        legacy = (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision())
    except RuntimeError:  # the caller set the new API: stay with it
        conv: Any = cudnn.conv  # type: ignore[attr-defined]  # torch ≥ 2.9 only, as is this path
        new = (matmul.fp32_precision, conv.fp32_precision)
        try:
            matmul.fp32_precision = conv.fp32_precision = "tf32" if enabled else "ieee"
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = new
        return
    try:
        # "high" is TF32 for fp32 matmuls, "highest" IEEE; this setter, unlike allow_tf32, keeps
        # get_float32_matmul_precision() readable whatever the caller had set ("medium" …)
        torch.set_float32_matmul_precision("high" if enabled else "highest")
        cudnn.allow_tf32 = enabled
        yield
    finally:
        torch.set_float32_matmul_precision(legacy[2])
        cudnn.allow_tf32 = legacy[1]


def _make_targets(outputs: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Fixed random targets, one per output: class labels for ``(N, K>1)`` logits, else values.

    Every head gets a loss (multi-output models such as ``lecture_multitask`` train on the sum),
    so a network that can memorise the batch drives the total down.
    """
    import torch

    targets = []
    for out in outputs:
        if out.ndim == 2 and out.shape[1] > 1:
            targets.append(torch.randint(0, out.shape[1], (out.shape[0],), device=out.device,
                                         generator=generator))
        else:  # regression or single-logit heads: values in [0, 1), fits sigmoid outputs too
            targets.append(torch.rand(out.shape, device=out.device, generator=generator))
    return targets


def _loss(output: Any, targets: list[torch.Tensor]) -> torch.Tensor:
    import torch
    from torch.nn import functional as F

    total: torch.Tensor | None = None
    for out, target in zip(tensors_of(output), targets, strict=True):
        if target.dtype == torch.long:
            term = F.cross_entropy(out.float(), target)
        else:
            term = F.mse_loss(out.float(), target)
        total = term if total is None else total + term
    assert total is not None  # _make_targets refused outputs without tensors
    return total


def _make_optimizer(name: str, model: nn.Module, lr: float, device: torch.device,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) or AdamW; fused kernels on CUDA (one launch, no host sync with fp16)."""
    import torch

    if fused is None:
        fused = device.type == "cuda" or None
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        sgd = torch.optim.SGD(params, lr=lr, momentum=0.9, fused=fused)
        if fused:
            # Fused SGD makes its momentum buffers with empty_like on its first step, and its
            # kernel returns early when GradScaler found inf gradients (fp16): a skipped first
            # step leaves them uninitialised, and the next step turns the weights into NaN.
            # Zeros give the same numbers (dampening 0: 0.9·0 + g = g) with no host sync.
            for p in params:
                sgd.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return sgd
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, fused=fused)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class _Trainer:
    """The model, optimizer, scaler and synthetic batch of one benchmark, and its training step."""

    def __init__(self, model: nn.Module, *, input_shape: tuple[int, ...], batch: int,
                 device: torch.device, precision: str, channels_last: bool, compile: bool,
                 optimizer: str, lr: float, seed: int) -> None:
        import torch

        self.device = device
        self.precision = precision
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast_dtype = dtype
        self.channels_last = channels_last and len(input_shape) == 3
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        model.train()
        if self.channels_last:
            model.to(memory_format=memory_format)  # type: ignore[call-overload]
        generator = torch.Generator(device=device).manual_seed(seed)
        # The synthetic batch: made on the device once and reused every step.
        self.x = torch.randn((batch, *input_shape), device=device, generator=generator)
        self.x = self.x.contiguous(memory_format=memory_format)
        try:
            with torch.no_grad(), self._autocast():
                probe = tensors_of(model(self.x))  # eager, untimed: output shapes for the targets
        except Exception as exc:  # the user's forward failed: say so in one line
            if _does_not_fit(exc):
                raise
            raise ForwardError(
                f"{type(model).__name__}: the training-mode forward pass failed at batch {batch} "
                f"({first_line(exc, 200)}); check the model, --input and --batch-size"
            ) from None
        if not probe:
            raise ArchscopeError(
                f"{type(model).__name__} returned no tensor; bench needs a model whose output "
                "is a tensor, a tuple/list or a dict of tensors"
            )
        self.targets = _make_targets(probe, generator)
        del probe
        refusal = nothing_to_train(model)  # after the forward's own diagnosis, before any step
        if refusal is not None:
            raise TrainingError(refusal)
        self.model = model
        self.step_model: Callable[..., Any] = torch.compile(model) if compile else model
        self.optimizer = _make_optimizer(optimizer, model, lr, device)
        # fp16 needs loss scaling; the fused optimizers read the scaler's inf flag on the device.
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    @property
    def input_bytes(self) -> int:
        return self.x.numel() * self.x.element_size()

    @property
    def target_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.targets)

    def _autocast(self) -> Any:
        import torch

        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def step(self) -> torch.Tensor:
        """One training step; returns the loss, still on the device (no host sync).

        Raises:
            TrainingError: the step raised (an in-place operation that breaks backward, a loss
                that cannot be computed …), except for running out of memory, which is left to
                the caller (see :func:`_does_not_fit`).
        """
        try:
            return self._step()
        except Exception as exc:
            if _does_not_fit(exc) or isinstance(exc, ArchscopeError) or _device_broken(exc):
                raise
            raise TrainingError(step_failure(exc)) from None

    def _step(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = _loss(self.step_model(self.x), self.targets)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()


def _device_broken(exc: BaseException) -> bool:
    """A CUDA error that leaves the device unusable (an illegal memory access): no later model
    could run, so it is not one model's failure."""
    import torch

    accelerator_error = getattr(torch, "AcceleratorError", None)
    return (accelerator_error is not None and isinstance(exc, accelerator_error)) or (
        "CUDA error" in str(exc))


def nothing_to_train(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained at all (no parameter requires a gradient), or ``None``."""
    params = list(model.parameters())
    if any(p.requires_grad for p in params):
        return None
    if params:
        return "every parameter is frozen (requires_grad=False): nothing to train"
    return "the model has no trainable parameters: nothing to train"


def step_failure(exc: BaseException) -> str:
    """One line for a training step that raised: PyTorch's reason, and what to do where known."""
    return f"the training step failed: {first_line(exc)}{autograd_hint(str(exc), '--batch-size')}"


# Failures that mean "this batch does not fit" besides torch.cuda.OutOfMemoryError: allocator
# failures reported by cuDNN/cuBLAS or the CPU allocator, and kernels refusing tensors past 2³¹
# elements at huge batches.
_TOO_BIG = ("out of memory", "ALLOC_FAILED", "32-bit index", "canUse32BitIndexMath",
            "without overflow", "integer out of range",  # kernels' int64 → int32 downcasts
            "CUDNN_STATUS_NOT_SUPPORTED", "can't allocate memory")  # the last: CPU allocator


def _does_not_fit(exc: BaseException) -> bool:
    """Is ``exc`` a batch that is too big for the GPU (rather than a bug)?"""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TOO_BIG)


def _free_cuda(device: torch.device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# One model, many models
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchPlan:
    """A :class:`BenchConfig` with the device's defaults filled in."""

    device: torch.device
    device_name: str
    steps: int
    warmup: int
    precision: str
    channels_last: bool
    compile: bool
    optimizer: str
    lr: float
    peak_tflops: float | None
    peak_source: str | None
    notes: tuple[str, ...] = field(default_factory=tuple)


def make_plan(config: BenchConfig) -> BenchPlan:
    """Resolve the device and fill in every default of ``config``."""
    import torch

    device = resolve_device(config.device)
    kind = device.type
    precision = config.precision or default_precision(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    steps = config.steps if config.steps is not None else _STEPS[kind]
    warmup = config.warmup if config.warmup is not None else _WARMUP[kind]
    if steps < 1 or warmup < 0 or steps + warmup < 2:
        raise ArchscopeError(
            f"--steps {steps} --warmup {warmup}: bench needs at least one timed step and two steps "
            "in all to see the loss fall; raise --steps or --warmup"
        )
    notes: list[str] = []
    if kind == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"{torch.cuda.get_device_name(device)} does not support bf16; use --precision fp16"
        )
    if kind == "cpu" and precision == "tf32":
        notes.append("tf32 is a CUDA tensor-core mode; on the CPU it runs as fp32")
    device_name = current_device_name(device)
    if config.peak_tflops is not None:
        peak: float | None = config.peak_tflops
        source: str | None = "--peak-tflops"
    else:
        spec = lookup(device_name) if kind == "cuda" else None
        peak = spec.peak(precision) if spec is not None else None
        source = f"{spec.key} {precision} dense peak" if spec is not None else UNKNOWN_DEVICE
    return BenchPlan(
        device=device, device_name=device_name,
        steps=steps,
        warmup=warmup,
        precision=precision,
        channels_last=config.channels_last if config.channels_last is not None else kind == "cuda",
        compile=config.compile, optimizer=config.optimizer,
        lr=config.lr if config.lr is not None else _LR[config.optimizer],
        peak_tflops=peak, peak_source=source, notes=tuple(notes),
    )


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
) -> BenchResult:
    """Train ``model`` (already on ``settings.device``) for warm-up + timed steps and measure it.

    Run it inside :func:`backend_flags` (as :func:`run_bench` does) for the TF32 and cuDNN
    autotuning settings that ``settings.precision`` implies.

    Args:
        report: the engine's report of this model at this batch, traced with ``backward=True``:
            it gives the training FLOPs per step and the memory estimate (``None``: unknown).
        clock: a host clock for the timed steps; default ``time.perf_counter`` on the CPU and
            CUDA events on a GPU. Passing one forces the host clock (tests inject a fake one).
        progress: called as ``progress(name, done, total)`` after each step.

    Raises:
        torch.cuda.OutOfMemoryError: left to the caller, which knows how to find a batch that fits.
    """
    import torch

    if settings.steps < 1 or settings.warmup < 0:
        raise ValueError("bench needs at least one timed step and a non-negative warm-up")
    trainer = _Trainer(
        model, input_shape=input_shape, batch=batch, device=settings.device,
        precision=settings.precision, channels_last=settings.channels_last,
        compile=settings.compile, optimizer=settings.optimizer, lr=settings.lr, seed=seed,
    )
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
    timer: _ClockTimer | _CudaEventTimer
    if clock is not None:
        timer = _ClockTimer(clock)
    elif cuda:
        timer = _CudaEventTimer(settings.steps, settings.device)
    else:
        timer = _ClockTimer(time.perf_counter)
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
    estimate = None
    flops = None
    if report is not None:
        flops = report.training_flops
        estimate = estimate_training_memory(
            report, precision=settings.precision, optimizer=settings.optimizer,
            input_bytes=trainer.input_bytes, target_bytes=trainer.target_bytes,
        )
        notes.extend(report.notes)
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


@dataclass(frozen=True)
class BenchRun:
    """Every model's result, plus the device and library versions they ran with."""

    device: str
    device_name: str
    torch_version: str
    cuda_version: str | None
    results: tuple[BenchResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        from archscope import __version__

        return {
            "archscope_version": __version__,
            "torch_version": self.torch_version,
            "cuda_version": self.cuda_version,
            "device": self.device,
            "device_name": self.device_name,
            "ok": self.ok,
            "results": [r.to_dict() for r in self.results],
        }


def _load(source: str, *, num_classes: int | None, device: str, seed: int = 0) -> Any:
    from archscope.source import load_model

    return load_model(source, num_classes=num_classes, device=device, seed=seed)


def _engine_report(source: str, *, num_classes: int | None, input_shape: tuple[int, ...],
                   batch: int) -> Report:
    """The engine's report of ``source`` at ``batch`` with the backward pass (meta device)."""
    from archscope.engine import inspect

    loaded = _load(source, num_classes=num_classes, device="meta")
    loaded.model.train()  # the mode the benchmark trains in (a factory may return eval mode)
    return inspect(loaded.model, input_shape, batch=batch, name=loaded.name, backward=True)


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
    the_plan = make_plan(config)
    if config.batch_size == "auto" and the_plan.device.type != "cuda":
        raise DeviceError("--batch-size auto searches GPU memory; on the CPU pass a number")
    results = []
    with backend_flags(the_plan.device, the_plan.precision):
        for source in models:
            results.append(_bench_one(source, config, the_plan, clock=clock, progress=progress))
            _free_cuda(the_plan.device)
    return BenchRun(
        device=str(the_plan.device), device_name=the_plan.device_name,
        torch_version=torch.__version__, cuda_version=torch.version.cuda, results=tuple(results),
    )


def failed_result(name: str, shape: tuple[int, ...], the_plan: BenchPlan, batch: int,
                  batch_source: str, error: str) -> BenchResult:
    """The result of a model that could not be trained: settings and ``error``, no timings."""
    return BenchResult(
        model=name, input_shape=tuple(shape), device=str(the_plan.device),
        device_name=the_plan.device_name, batch=batch, batch_source=batch_source,
        precision=the_plan.precision, channels_last=the_plan.channels_last,
        compiled=the_plan.compile, optimizer=the_plan.optimizer, steps=the_plan.steps,
        warmup=the_plan.warmup, step_ms=(), span_ms=0.0, training_flops=None,
        peak_tflops=the_plan.peak_tflops, peak_source=the_plan.peak_source,
        peak_memory_bytes=None, memory_estimate=None, losses=(), notes=the_plan.notes,
        error=error,
    )


def _bench_one(source: str, config: BenchConfig, the_plan: BenchPlan, *, clock: Clock | None,
               progress: Progress | None) -> BenchResult:
    import torch

    device = the_plan.device

    def build() -> tuple[nn.Module, str, tuple[int, ...]]:
        loaded = _load(source, num_classes=config.num_classes, device=str(device),
                       seed=config.seed)
        shape = config.input_shape or loaded.input_shape
        if shape is None:
            raise InputShapeError(
                f"{loaded.name} has no default input size; pass one with --input (e.g. 3x224x224)"
            )
        return loaded.model, loaded.name, tuple(shape)

    model, name, shape = build()
    batch, batch_source = 0, "auto"  # 0 until the search finds one
    if config.batch_size is None:
        batch, batch_source = default_batch(name, device.type), "default"
    elif config.batch_size != "auto":
        batch, batch_source = int(config.batch_size), "given"
    try:
        cap = _batch_cap(source, config, shape) if device.type == "cuda" else None
        if config.batch_size == "auto":
            with seeded(config.seed, device):  # the search trains, with dropout
                batch = _auto_batch(model, shape, the_plan, config.seed, name, cap)
            batch_source = "auto"
            del model  # the search trained it a few steps: start the benchmark from a fresh one
            _free_cuda(device)
            model = build()[0]
        if cap is not None and batch > cap.batch:
            raise DeviceError(
                f"{name}: at batch {batch} {cap.layer}'s output would hold {batch * cap.elements:,} "
                f"elements, past the 2³¹ that CUDA kernels index with 32-bit integers; pass "
                f"--batch-size {cap.batch} or less (or --batch-size auto)"
            )

        engine_error: ArchscopeError | None = None
        try:
            report: Report | None = _engine_report(source, num_classes=config.num_classes,
                                                   input_shape=shape, batch=batch)
        except ArchscopeError as exc:  # the benchmark still runs; FLOPs and estimate are unknown
            report, engine_error = None, exc
            engine_note = f"engine could not trace the model ({exc}); FLOPs and estimate unknown"
        else:
            engine_note = ""

        oom = False
        try:
            # dropout draws from the global generator: seeded (and the caller's state kept), the same
            # command gives the same losses
            with seeded(config.seed, device):
                result = bench_model(model, name=name, input_shape=shape, batch=batch,
                                     settings=the_plan, report=report, batch_source=batch_source,
                                     clock=clock, progress=progress, seed=config.seed)
        except ForwardError:
            # the trace's diagnosis, where it is one that holds on any device (an input that does
            # not fit a layer); a failure of the meta trace alone says nothing about the real one
            if isinstance(engine_error, INPUT_ERRORS):
                raise type(engine_error)(f"{name}: {engine_error}") from None
            raise
        except RuntimeError as exc:
            if not _does_not_fit(exc):
                raise
            oom = True  # handled outside the except block, so the failed step's tensors are freed
        if oom:
            del model
            if the_plan.compile:  # drop the compiled graphs and their buffers before searching
                torch._dynamo.reset()
            _free_cuda(device)
            model = build()[0]
            fits = _fits(model, shape, the_plan, config.seed, cap)
            with seeded(config.seed, device):
                smaller = halve_until_fits(fits, batch)
            del model, fits
            _free_cuda(device)
            auto = " or --batch-size auto" if device.type == "cuda" else ""
            hint = (f"batch {smaller} fits: pass --batch-size {smaller}{auto}"
                    if smaller is not None else "not even batch 1 fits")
            raise DeviceError(
                f"{name}: batch {batch} ran out of memory on {the_plan.device_name} "
                f"({the_plan.precision}); {hint}"
            )
        if engine_note:
            result = replace(result, notes=(*result.notes, engine_note))
        return result
    except TrainingError as exc:  # this model's failure; run_bench goes on with the others
        return failed_result(name, shape, the_plan, batch, batch_source, str(exc))


@dataclass(frozen=True)
class _BatchCap:
    """The largest batch whose biggest tensor stays under :data:`_MAX_ELEMENTS`, and why."""

    batch: int
    layer: str
    elements: int  # of that layer's output, per sample


def _batch_cap(source: str, config: BenchConfig, shape: tuple[int, ...]) -> _BatchCap | None:
    """From the engine's trace at batch 2; ``None`` when the model cannot be traced.

    Only tensors that grow with the batch count (first dimension 2 here), and the input.
    """
    try:
        report = _engine_report(source, num_classes=config.num_classes, input_shape=shape,
                                batch=2)
    except ArchscopeError:
        return None
    sizes = [(math.prod(shape), "the input")]
    sizes += [(math.prod(s) // 2, r.name or "the model") for r in report.layers
              for s in r.output_shapes if s and s[0] == 2]
    elements, layer = max(sizes, key=lambda size: size[0])  # the first one of that size
    return _BatchCap(max(1, _MAX_ELEMENTS // max(1, elements)), layer, elements)


def _fits(model: nn.Module, shape: tuple[int, ...], the_plan: BenchPlan, seed: int,
          cap: _BatchCap | None = None) -> Callable[[int], bool]:
    """A predicate: do two eager training steps at batch ``b`` fit in memory?

    Batches above ``cap`` do not fit without being tried. cuDNN does not autotune here: each
    candidate batch would be tuned afresh, for nothing.
    """
    import torch

    eager = replace(the_plan, compile=False)  # recompiling per batch size would take minutes

    def fits(b: int) -> bool:
        if cap is not None and b > cap.batch:
            return False
        ok = True
        trainer: _Trainer | None = None
        autotune = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            trainer = _Trainer(model, input_shape=shape, batch=b, device=eager.device,
                               precision=eager.precision, channels_last=eager.channels_last,
                               compile=False, optimizer=eager.optimizer, lr=eager.lr, seed=seed)
            for _ in range(2):
                trainer.step()
            if eager.device.type == "cuda":
                torch.cuda.synchronize(eager.device)
        except RuntimeError as exc:  # OutOfMemoryError is a RuntimeError
            if not _does_not_fit(exc):
                raise
            ok = False
        finally:
            torch.backends.cudnn.benchmark = autotune
        trainer = None  # drop the batch, activations and optimizer state before the next try
        for p in model.parameters():
            p.grad = None
        _free_cuda(eager.device)
        return ok

    return fits


def _auto_batch(model: nn.Module, shape: tuple[int, ...], the_plan: BenchPlan, seed: int,
                name: str, cap: _BatchCap | None = None) -> int:
    """The largest batch that trains in GPU memory (doubling, then bisection)."""
    fits = _fits(model, shape, the_plan, seed, cap)  # batches above the cap do not fit
    batch = find_max_batch(fits, start=min(default_batch(name, "cuda"), 64))
    if batch is None:
        raise DeviceError(
            f"{name}: not even batch 1 fits in {the_plan.device_name} memory at "
            f"{the_plan.precision}; try --precision bf16 or a smaller --input"
        )
    return batch
