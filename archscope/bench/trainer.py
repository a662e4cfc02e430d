"""The training step a benchmark times: synthetic batch and targets, loss, optimizer, autocast,
channels-last and ``torch.compile``; and how a failed step is told apart (a batch too big for
the device, a broken device, or this model's own failure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from archscope.bench.plan import OPTIMIZERS, BenchPlan
from archscope.errors import (
    ArchscopeError,
    ForwardError,
    autograd_hint,
    first_line,
    input_dtype_hint,
)
from archscope.losses import is_class_logits, training_loss
from archscope.tensors import tensors_of

if TYPE_CHECKING:
    from typing import Self

    import torch
    from torch import nn



class TrainingError(ArchscopeError):
    """A model that cannot be trained: its training step raised, or it has nothing to train.

    :func:`archscope.bench.run_bench` records it as that model's failed
    :class:`~archscope.bench.BenchResult` (``error``) and goes on with the other models.
    """


class Trainer:
    """The model, optimizer, scaler and synthetic batch of one benchmark, and its training step."""

    @classmethod
    def for_plan(cls, model: nn.Module, plan: BenchPlan, *, input_shape: tuple[int, ...],
                 batch: int, seed: int, dtype: torch.dtype | None = None,
                 name: str | None = None) -> Self:
        """The trainer ``plan`` describes (device, precision, layout, compile, optimizer, lr) for
        ``model`` at ``batch``: the one way bench, its DDP ranks and its batch search make one."""
        return cls(model, input_shape=input_shape, batch=batch, device=plan.device,
                   precision=plan.precision, channels_last=plan.channels_last,
                   compile=plan.compile, optimizer=plan.optimizer, lr=plan.lr, seed=seed,
                   dtype=dtype, name=name)

    def __init__(self, model: nn.Module, *, input_shape: tuple[int, ...], batch: int,
                 device: torch.device, precision: str, channels_last: bool, compile: bool,
                 optimizer: str, lr: float, seed: int, dtype: torch.dtype | None = None,
                 name: str | None = None) -> None:
        """``dtype`` is the synthetic batch's (``None``: the model's floating-point dtype;
        ``torch.long``: token ids in ``[0, num_embeddings)``, see
        :func:`archscope._modes.random_input`). Autocast applies to the floats the model makes
        from it. ``name`` names the model in errors (default: its class)."""
        import torch

        from archscope._modes import model_dtype, random_input

        label = name or type(model).__name__

        self.device = device
        self.precision = precision
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.channels_last = channels_last and len(input_shape) == 3
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        model.train()
        if self.channels_last:
            model.to(memory_format=memory_format)  # type: ignore[call-overload]
        generator = torch.Generator(device=device).manual_seed(seed)
        # The synthetic batch: made on the device once and reused every step.
        self.x = random_input(model, input_shape, batch, dtype or model_dtype(model), device,
                              generator)
        self.x = self.x.contiguous(memory_format=memory_format)
        try:
            with torch.no_grad(), self._autocast():
                probe = tensors_of(model(self.x))  # eager, untimed: output shapes for the targets
        except Exception as exc:  # the user's forward failed: say so in one line
            if does_not_fit(exc):
                raise
            hint = input_dtype_hint(str(exc))
            raise ForwardError(
                f"{label}: the training-mode forward pass failed at batch {batch} "
                f"({first_line(exc, 200)}){hint}"
                + ("" if hint else "; check the model, --input and --batch-size")
            ) from None
        if not probe:
            raise ArchscopeError(
                f"{label} returned no tensor; bench needs a model whose output "
                "is a tensor, a tuple/list or a dict of tensors"
            )
        self.targets = make_targets(probe, generator)
        del probe
        refusal = nothing_to_train(model)  # after the forward's own diagnosis, before any step
        if refusal is not None:
            raise TrainingError(refusal)
        self.model = model
        self.step_model: Callable[..., Any] = torch.compile(model) if compile else model
        self.optimizer = make_optimizer(optimizer, model, lr, device)
        # fp16 needs loss scaling; the fused optimizers read the scaler's inf flag on the device.
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

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
                the caller (see :func:`does_not_fit`).
        """
        try:
            return self._step()
        except Exception as exc:
            if does_not_fit(exc) or isinstance(exc, ArchscopeError) or device_broken(exc):
                raise
            raise TrainingError(step_failure(exc)) from None

    def _step(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = training_loss(self.step_model(self.x), self.targets)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()


def make_targets(outputs: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Fixed random targets, one per output: class labels for ``(N, K>1)`` logits, else values
    (:func:`archscope.losses.is_class_logits`; the loss is :func:`archscope.losses.training_loss`).

    Every head gets a loss (multi-output models such as ``lecture_multitask`` train on the sum),
    so a network that can memorise the batch drives the total down.
    """
    import torch

    targets = []
    for out in outputs:
        if is_class_logits(out):
            targets.append(torch.randint(0, out.shape[1], (out.shape[0],), device=out.device,
                                         generator=generator))
        else:  # regression or single-logit heads: values in [0, 1), fits sigmoid outputs too
            targets.append(torch.rand(out.shape, device=out.device, generator=generator))
    return targets


def make_optimizer(name: str, model: nn.Module, lr: float, device: torch.device,
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


def does_not_fit(exc: BaseException) -> bool:
    """Is ``exc`` a batch that is too big for the device (rather than a bug)?"""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TOO_BIG)


def device_broken(exc: BaseException) -> bool:
    """A CUDA error that leaves the device unusable (an illegal memory access): no later model
    could run, so it is not one model's failure."""
    import torch

    accelerator_error = getattr(torch, "AcceleratorError", None)
    return (accelerator_error is not None and isinstance(exc, accelerator_error)) or (
        "CUDA error" in str(exc))
