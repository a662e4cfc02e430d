"""Which batch to train at: the search for the largest batch that fits in GPU memory, the batch
to suggest after running out of memory, and the 2³¹-element cap no batch may pass.

A search trains the model a few steps per candidate batch; :class:`Snapshot` keeps its starting
weights, so the benchmark then starts from the model as it was built, without building it again.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from archscope.batch_search import find_max_batch
from archscope.bench.plan import BenchPlan, default_batch
from archscope.bench.trainer import Trainer, does_not_fit
from archscope.errors import ArchscopeError, DeviceError
from archscope.source import inspect_subject

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.source import Subject

#: Many CUDA kernels index a tensor with 32-bit integers. Past 2³¹ elements some raise, and some
#: make an illegal memory access that breaks the process's CUDA context for good (PyTorch issues
#: #117736 for convolutions, #165297 for channels-last max-pooling), so no batch search goes
#: there and a given batch that would is refused before it runs.
MAX_ELEMENTS = 2**31 - 1


def halve_until_fits(fits: Callable[[int], bool], batch: int) -> int | None:
    """The first of ``batch/2, batch/4, … 1`` that fits, or ``None``."""
    candidate = batch // 2
    while candidate >= 1:
        if fits(candidate):
            return candidate
        candidate //= 2
    return None


@dataclass(frozen=True)
class BatchCap:
    """The largest batch whose biggest tensor stays under :data:`MAX_ELEMENTS`, and why."""

    batch: int
    layer: str
    elements: int  # of that layer's output, per sample


def batch_cap(subject: Subject) -> BatchCap | None:
    """From the engine's trace of ``subject`` at batch 2; ``None`` when it cannot be traced.

    Only tensors that grow with the batch count (first dimension 2 here), and the input.
    """
    try:
        report = inspect_subject(subject, batch=2, training=True, count_flops=False)
    except ArchscopeError:
        return None
    sizes = [(math.prod(subject.input_shape), "the input")]
    sizes += [(math.prod(s) // 2, r.name or "the model") for r in report.layers
              for s in r.output_shapes if s and s[0] == 2]
    elements, layer = max(sizes, key=lambda size: size[0])  # the first one of that size
    return BatchCap(max(1, MAX_ELEMENTS // max(1, elements)), layer, elements)


def check_cap(name: str, batch: int, cap: BatchCap | None) -> None:
    """Refuse ``batch`` before it runs when it would pass the cap.

    Raises:
        DeviceError: naming the layer, its element count and the largest batch allowed.
    """
    if cap is not None and batch > cap.batch:
        raise DeviceError(
            f"{name}: at batch {batch} {cap.layer}'s output would hold {batch * cap.elements:,} "
            f"elements, past the 2³¹ that CUDA kernels index with 32-bit integers; pass "
            f"--batch-size {cap.batch} or less (or --batch-size auto)"
        )


def fits_in_memory(model: nn.Module, shape: tuple[int, ...], plan: BenchPlan, seed: int,
                   cap: BatchCap | None = None,
                   dtype: torch.dtype | None = None) -> Callable[[int], bool]:
    """A predicate: do two eager training steps at batch ``b`` (inputs in ``dtype``: see
    :class:`~archscope.bench.trainer.Trainer`) fit in memory?

    Batches above ``cap`` do not fit without being tried. cuDNN does not autotune here: each
    candidate batch would be tuned afresh, for nothing. The steps change ``model``'s weights.
    """
    import torch

    eager = replace(plan, compile=False)  # recompiling per batch size would take minutes

    def fits(b: int) -> bool:
        if cap is not None and b > cap.batch:
            return False
        ok = True
        trainer: Trainer | None = None
        autotune = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            trainer = Trainer.for_plan(model, eager, input_shape=shape, batch=b, seed=seed,
                                       dtype=dtype)
            for _ in range(2):
                trainer.step()
            if eager.device.type == "cuda":
                torch.cuda.synchronize(eager.device)
        except RuntimeError as exc:  # OutOfMemoryError is a RuntimeError
            if not does_not_fit(exc):
                raise
            ok = False
        finally:
            torch.backends.cudnn.benchmark = autotune
        trainer = None  # drop the batch, activations and optimizer state before the next try
        clear_grads(model)
        free_cuda(eager.device)
        return ok

    return fits


def auto_batch(model: nn.Module, shape: tuple[int, ...], plan: BenchPlan, seed: int,
               name: str, cap: BatchCap | None = None, dtype: torch.dtype | None = None) -> int:
    """The largest batch that trains in GPU memory (doubling, then bisection).

    Raises:
        DeviceError: not even batch 1 fits.
    """
    fits = fits_in_memory(model, shape, plan, seed, cap, dtype)  # above the cap: no fit
    batch = find_max_batch(fits, start=min(default_batch(name, "cuda"), 64))
    if batch is None:
        raise DeviceError(
            f"{name}: not even batch 1 fits in {plan.device_name} memory at "
            f"{plan.precision}; try --precision bf16 or a smaller --input"
        )
    return batch


class Snapshot:
    """A copy of a model's parameters and buffers on the CPU, to put back after a batch search
    trained it (the GPU keeps only the model itself)."""

    def __init__(self, model: nn.Module) -> None:
        self._state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        """Put the saved values back into ``model`` and drop its gradients."""
        model.load_state_dict(self._state)
        clear_grads(model)


def clear_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def free_cuda(device: torch.device) -> None:
    """Collect garbage and, on CUDA, return the allocator's cached blocks."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
