"""What to benchmark and how: the user's :class:`BenchConfig`, and the :class:`BenchPlan` it
becomes once the device's defaults are filled in (steps, precision, channels-last, the peak
FLOP rate for MFU), with the backend flags the precision implies."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from archscope.devices import (
    CPU_NO_PEAK,
    PRECISIONS,
    UNKNOWN_DEVICE,
    current_device_name,
    lookup,
    resolve_device,
)
from archscope.errors import DeviceOptionError, OptionError
from archscope.registry import bench_batch

#: The optimizers a benchmark trains with (``--optimizer``).
OPTIMIZERS = ("sgd", "adamw")

if TYPE_CHECKING:
    import torch

#: Models benchmarked when none is named, each at its natural input size.
DEFAULT_MODELS = ("lecture_mnist_cnn", "alexnet", "vgg16", "resnet50")

# On the CPU (CI runners, laptops) few steps keep a run to seconds.
_STEPS = {"cuda": 200, "cpu": 5}
_WARMUP = {"cuda": 20, "cpu": 1}
# SGD with momentum 0.9 as in torchvision's reference recipe, but lr 0.001 rather than its 0.01:
# memorising one repeated batch of random labels, AlexNet and VGG16 (no batch norm) diverge at 0.01
# (measured on the CPU: AlexNet batch 32 went 7.3 → 9.7 in 8 steps, VGG16 batch 4 to 2e8), while
# 0.001 brings every zoo model's loss down. The step time does not depend on it. AdamW at 3e-4.
_LR = {"sgd": 0.001, "adamw": 3e-4}


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how; ``None`` means "the default for the device".

    Attributes:
        device: ``auto`` (CUDA when available, else CPU), ``cuda``, ``cuda:N`` or ``cpu``.
        batch_size: a fixed batch, ``"auto"`` (the largest that fits, CUDA only) or ``None``
            (the model's default batch for the device, from the registry).
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
        head / base: train each model's convolutional base with these layers after it (see
            :func:`archscope.source.resolve`).
        freeze: parameter-name prefixes to freeze (``features``): the optimizer gets only the
            parameters that still require gradients, and the FLOPs and memory estimate follow.
        dtype: the synthetic input's dtype, as ``--dtype`` takes it (``"long"`` for token ids,
            drawn in ``[0, num_embeddings)``; see :func:`archscope.source.resolve`); default:
            the model's floating-point dtype.
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
    head: str | None = None
    base: str | None = None
    freeze: tuple[str, ...] = ()
    dtype: str | None = None


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
        raise OptionError(
            f"--steps {steps} --warmup {warmup}: bench needs at least one timed step and two steps "
            "in all to see the loss fall; raise --steps or --warmup"
        )
    notes: list[str] = []
    if kind == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceOptionError(
            f"{torch.cuda.get_device_name(device)} does not support bf16; use --precision fp16"
        )
    if kind == "cpu" and precision == "tf32":
        notes.append("tf32 is a CUDA tensor-core mode; on the CPU it runs as fp32")
    device_name = current_device_name(device)
    if config.peak_tflops is not None:
        peak: float | None = config.peak_tflops
        source: str | None = "--peak-tflops"
    elif kind != "cuda":  # MFU is a GPU figure: on the CPU it is not computed, not "unknown"
        peak, source = None, CPU_NO_PEAK
    else:
        spec = lookup(device_name)
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


def default_precision(device: torch.device) -> str:
    """bf16 autocast on CUDA (fp16 on GPUs without bf16, e.g. before Ampere); fp32 on the CPU."""
    import torch

    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def default_batch(model: str, device_type: str) -> int:
    """The batch ``model`` trains at on ``device_type`` (``cuda`` or ``cpu``) without
    ``--batch-size``: the zoo model's own (:class:`archscope.registry.BenchBatch`), else a generic
    one."""
    return bench_batch(model).on(device_type)


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
