"""The pieces of the training step the replay runs: autocast, targets, optimizer, loss scaling.

They follow ``archscope bench``'s step (``archscope.bench.trainer.Trainer``):
``zero_grad(set_to_none=True)``, the forward and the loss under autocast (bench's own loss,
:func:`archscope.losses.training_loss`), ``backward()``, ``optimizer.step()``; SGD with momentum
0.9 or AdamW (or Adam), the fused kernels on CUDA (with SGD's momentum buffers made when the
optimizer is, as bench makes them), PyTorch's defaults on the CPU (the for-loop implementation);
GradScaler for fp16. They run on the replay's tensors (meta tensors behind the predicted
device's face), so every allocation they make is seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from archscope.losses import is_class_logits
from archscope.tensors import tensors_of

#: Optimizers the memory model knows; ``none`` is a forward and backward pass only (as ``check``).
OPTIMIZERS = ("sgd", "adamw", "adam", "none")
#: How the optimizer runs: one fused kernel, ``torch._foreach_*`` lists, or a Python loop.
OPTIMIZER_IMPLS = ("fused", "foreach", "for-loop")
#: Autocast's 16-bit type per precision (fp32 and tf32 run without autocast).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_impl(device_type: str) -> str:
    """The implementation ``archscope bench`` uses: fused kernels on CUDA; on the CPU PyTorch's
    default, which is the for-loop one (``_default_to_fused_or_foreach`` picks neither fused nor
    foreach for CPU tensors)."""
    return "fused" if device_type == "cuda" else "for-loop"


@contextmanager
def autocast(device_type: str, dtype: torch.dtype | None, on_exit: Any = None) -> Iterator[None]:
    """``torch.autocast(device_type, dtype)`` without its availability check, cache off.

    ``torch.autocast("cuda")`` turns itself off when this process has no CUDA; the replay needs
    the CUDA policy all the same (its kernels are registered in every build of PyTorch). This
    does what ``torch.autocast.__enter__``/``__exit__`` do. Autocast's own cast cache is turned
    off because the replay keeps that cache itself (see ``recorder.Recorder``); ``on_exit`` is
    called where autocast would clear its cache.
    """
    if dtype is None:
        yield
        return
    was = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type),
           torch.is_autocast_cache_enabled())
    torch.set_autocast_enabled(device_type, True)
    torch.set_autocast_dtype(device_type, dtype)
    torch.set_autocast_cache_enabled(False)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled(device_type, was[0])
        torch.set_autocast_dtype(device_type, was[1])
        torch.set_autocast_cache_enabled(was[2])
        if on_exit is not None:
            on_exit()


def make_targets(output: Any, device: torch.device) -> list[torch.Tensor]:
    """One target per output, as bench makes them (:func:`archscope.losses.is_class_logits`):
    class labels (int64) for ``(N, K>1)`` logits, else float32 values of the output's shape.
    Only their sizes matter here."""
    targets = []
    for out in tensors_of(output):
        if is_class_logits(out):
            targets.append(torch.empty(out.shape[0], dtype=torch.long, device=device))
        else:
            targets.append(torch.empty(out.shape, dtype=torch.float32, device=device))
    return targets


def make_optimizer(name: str, impl: str, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
    """SGD (momentum 0.9), AdamW or Adam over ``params`` in implementation ``impl``.

    ``params`` are the replay's tensors on the predicted device, so PyTorch's own checks for the
    fused kernels see that device. A fused SGD gets its momentum buffers now (zeros), as bench
    makes them; otherwise state appears at the first step.
    """
    fused, foreach = impl == "fused", impl == "foreach"
    trainable = list(params)
    if name == "sgd":
        sgd = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9, fused=fused, foreach=foreach)
        if fused:
            for p in trainable:
                sgd.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return sgd
    if name == "adamw":
        return torch.optim.AdamW(trainable, lr=3e-4, fused=fused, foreach=foreach)
    if name == "adam":
        return torch.optim.Adam(trainable, lr=3e-4, fused=fused, foreach=foreach)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor in the optimizer's state."""
    return [v for state in optimizer.state.values() for v in state.values()
            if isinstance(v, torch.Tensor)]


class LossScaler:
    """What ``torch.amp.GradScaler`` allocates around an fp16 step, without its checks.

    GradScaler needs real values (``found_inf.item()`` decides whether to step), which meta
    tensors do not have, so its allocations are made as it makes them: the scale and the growth
    tracker (one element each, kept), the scaled loss (alive through backward), and per step the
    inverse scale and the found-inf flag (``unscale_``; freed after ``update``). The gradients
    are unscaled in place and the scale updated in place: no further memory.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.scale_tensor: torch.Tensor | None = None
        self.growth_tracker: torch.Tensor | None = None

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        if self.scale_tensor is None:
            self.scale_tensor = torch.full((), 65536.0, dtype=torch.float32, device=self.device)
            self.growth_tracker = torch.full((), 0, dtype=torch.int32, device=self.device)
        return loss * self.scale_tensor

    def persistent(self) -> list[torch.Tensor]:
        return [t for t in (self.scale_tensor, self.growth_tracker) if t is not None]

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        assert self.scale_tensor is not None
        inv_scale = self.scale_tensor.double().reciprocal().float()
        found_inf = torch.full((), 0.0, dtype=torch.float32, device=self.device)
        optimizer_step(optimizer)
        del inv_scale, found_inf


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, less the wrappers ``torch.optim`` adds for compilation and hooks.

    Those wrappers call ``torch._dynamo.graph_break()`` around every step: a no-op in eager mode
    whose import costs more than a second. The step itself runs as ``step`` would run it (under
    ``torch.no_grad()``, the optimizers' ``differentiable=False`` default).
    """
    import inspect

    raw = inspect.unwrap(type(optimizer).step)
    with torch.no_grad():
        raw(optimizer)


def trainable(model: nn.Module) -> list[torch.Tensor]:
    """The model's parameters that require a gradient, once each (tied weights once)."""
    seen: set[int] = set()
    out: list[torch.Tensor] = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


__all__ = ["AUTOCAST_DTYPES", "OPTIMIZERS", "OPTIMIZER_IMPLS", "LossScaler", "autocast",
           "default_impl", "make_optimizer", "make_targets", "optimizer_step",
           "state_tensors", "trainable"]
