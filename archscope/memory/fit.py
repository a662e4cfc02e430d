"""``--fit``: the largest batch whose training step fits a memory size, found on the model alone.

The search does not replay the step at every candidate batch. Two replays (batches 2 and 4)
give every allocation's size at both; a step's tensors grow linearly with the batch (a weight
does not grow, an activation grows by its per-sample size), so the sizes at any batch follow,
and the caching allocator (:mod:`archscope.memory.allocator`) is run on them, under the memory
limit, for each candidate. The answer is then checked with a replay at that batch. Where the two
replays do not run the same operators (control flow that depends on the batch), every candidate
is replayed instead.

Headroom on a CUDA device (:data:`CONTEXT_BYTES`, :data:`WORKSPACE_SHARE`):

* **1 GiB for the CUDA context and the libraries' own memory**, which the caching allocator
  never sees (``torch.cuda.memory_allocated`` "does not include memory allocated outside of the
  caching allocator", c10/cuda/CUDACachingAllocator.cpp). A process that has only initialised CUDA
  already holds 781 MB on the GPU in PyTorch issue #34323; CUDA's lazy module loading (the default
  since CUDA 11.7) lowers that, the cuDNN and cuBLAS handles raise it again. 1 GiB covers it.
* **5% of the memory for cuDNN's convolution workspaces.** They are allocated per call, inside
  the caching allocator, and sized to what is free: ``get_available_workspace`` in
  ``aten/src/ATen/native/cudnn/Conv_v8.cpp`` offers the largest cached free block, and a plan
  whose workspace cannot be allocated is skipped for the next one (``try_plans``). So they never
  make a fitting step fail, but with no slack at all cuDNN falls back to slower algorithms.

What remains is the budget for the caching allocator's segments (the *reserved* bytes, which
``set_per_process_memory_fraction`` caps): a batch fits when the emulated allocator runs both
steps without passing it, releasing its cached segments and retrying first, as PyTorch does.
On the CPU the budget is the whole size and a batch fits when its peak does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archscope.batch_search import find_max_batch
from archscope.memory.allocator import OutOfMemory
from archscope.memory.timeline import build

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.memory.replay import Recording

#: The CUDA context and the libraries' memory outside the caching allocator (see module docs).
CONTEXT_BYTES = 1 << 30
#: The share of the memory left for cuDNN's per-call convolution workspaces (see module docs).
WORKSPACE_SHARE = 0.05
#: The largest batch the search considers.
MAX_BATCH = 1 << 24

#: What ``--fit`` accepts, for the usage error.
SIZE_FORMS = ("a number and a unit: 12GiB, 12GB, 12G, 11.5GiB, 24000MiB, 512MB or a plain "
              "number of bytes (KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024, "
              "KB/MB/GB/TB powers of 1000)")

_UNITS = {
    "": 1, "B": 1,
    "K": 2**10, "KIB": 2**10, "KB": 10**3,
    "M": 2**20, "MIB": 2**20, "MB": 10**6,
    "G": 2**30, "GIB": 2**30, "GB": 10**9,
    "T": 2**40, "TIB": 2**40, "TB": 10**12,
}


def parse_size(text: str) -> int:
    """``"12GiB"`` → 12884901888 bytes (see :data:`SIZE_FORMS`).

    Raises:
        ValueError: not a positive size in one of the accepted forms.
    """
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a memory size; use {SIZE_FORMS}")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r} is not a memory size above zero; use {SIZE_FORMS}")
    return size


def headroom(memory: int, device: str) -> tuple[int, int]:
    """(context, cuDNN workspaces) kept free of ``memory`` bytes on ``device``."""
    if device != "cuda":
        return 0, 0
    return CONTEXT_BYTES, int(memory * WORKSPACE_SHARE)


@dataclass(frozen=True)
class FitResult:
    """The largest batch that fits, and the arithmetic behind it.

    Attributes:
        batch: the largest batch that fits; ``None`` if not even batch 1 does.
        memory: the memory size asked about (bytes).
        context, workspaces: the headroom kept free (bytes; see the module docs).
        budget: ``memory − context − workspaces``: what the caching allocator may hold.
        peak: the predicted peak allocated at ``batch`` (``torch.cuda.max_memory_allocated``).
        reserved: the most the emulated allocator held at ``batch`` under the budget.
        device, precision, optimizer: the step predicted.
        method: ``"scaled"`` (two replays, sizes scaled to each batch, the answer replayed) or
            ``"replayed"`` (every candidate replayed).
        notes: caveats.
    """

    batch: int | None
    memory: int
    context: int
    workspaces: int
    budget: int
    peak: int | None
    reserved: int | None
    device: str
    precision: str
    optimizer: str
    method: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch, "memory": self.memory, "context": self.context,
            "workspaces": self.workspaces, "budget": self.budget, "peak": self.peak,
            "reserved": self.reserved, "device": self.device, "precision": self.precision,
            "optimizer": self.optimizer, "method": self.method, "notes": list(self.notes),
        }


def largest_batch(
    model: nn.Module,
    input_shape: Sequence[int] | str | None,
    memory: int,
    *,
    precision: str = "fp32",
    optimizer: str = "sgd",
    device: str = "cuda",
    optimizer_impl: str | None = None,
    gpu: str | None = None,
    context: int | None = None,
    workspaces: int | None = None,
    max_batch: int = MAX_BATCH,
    step: str = "bench",
    input_dtype: torch.dtype | str | None = None,
) -> FitResult:
    """The largest batch whose training step fits in ``memory`` bytes (see the module docs).

    ``context`` and ``workspaces`` override the headroom (bytes; default :func:`headroom`);
    ``step`` is the step replayed and ``input_dtype`` the input's dtype (``None``: the model's
    float dtype; see :func:`archscope.memory.training_memory`).

    Raises:
        ArchscopeError: a bad model or option (see :func:`archscope.memory.training_memory`);
            a memory that the headroom alone uses up.
    """
    from archscope.errors import ArchscopeError
    from archscope.memory.predict import record, settings

    chosen = settings(model, input_shape, precision=precision, optimizer=optimizer,
                      device=device, optimizer_impl=optimizer_impl, gpu=gpu, step=step,
                      input_dtype=input_dtype)
    default_context, default_workspaces = headroom(memory, device)
    context = default_context if context is None else context
    workspaces = default_workspaces if workspaces is None else workspaces
    budget = memory - context - workspaces
    if budget <= 0:
        raise ArchscopeError(
            f"{memory / 2**30:.2f} GiB leaves nothing for the step after "
            f"{(context + workspaces) / 2**30:.2f} GiB of headroom (CUDA context and cuDNN "
            "workspaces); give a larger size")
    cuda = device == "cuda"

    def measure(recording: Recording) -> tuple[int, int] | None:
        """(peak, reserved) under the budget, or None where it does not fit."""
        try:
            timeline = build(recording.events, recording.layers, cuda=cuda,
                             limit=budget if cuda else None)
        except OutOfMemory:
            return None
        if timeline.peak > budget:
            return None
        return timeline.peak, timeline.reserved_peak or timeline.peak

    def replayed(batch: int) -> tuple[int, int] | None:
        return measure(record(model, chosen, batch))

    scaled = _scaler(record(model, chosen, 2), record(model, chosen, 4))
    method = "replayed"
    fits: Callable[[int], tuple[int, int] | None] = replayed
    if scaled is not None:
        method = "scaled"

        def fits_scaled(batch: int) -> tuple[int, int] | None:
            return measure(scaled(batch))

        fits = fits_scaled
    batch = find_max_batch(lambda b: fits(b) is not None, limit=max_batch) or 0
    if method == "scaled":
        # the answer, replayed: where the sizes were not quite linear, step down until it fits
        found = replayed(batch) if batch else None
        while batch and found is None:
            batch = find_max_batch(lambda b: replayed(b) is not None, limit=batch - 1) or 0
            found = replayed(batch) if batch else None
    else:
        found = replayed(batch) if batch else None
    notes = []
    if cuda:
        notes.append(f"headroom: {context / 2**30:g} GiB for the CUDA context and libraries, "
                     f"{workspaces / 2**30:.2f} GiB ({WORKSPACE_SHARE:.0%}) for cuDNN workspaces")
    if batch == max_batch:
        notes.append(f"the search stops at batch {max_batch:,}")
    return FitResult(
        batch=batch or None, memory=memory, context=context, workspaces=workspaces,
        budget=budget, peak=found[0] if found else None, reserved=found[1] if found else None,
        device=device, precision=precision, optimizer=optimizer, method=method,
        notes=tuple(notes),
    )


def _scaler(two: Recording, four: Recording) -> Callable[[int], Recording] | None:
    """A function from a batch to the recording at that batch, or ``None`` if the replays at
    batches 2 and 4 differ in more than their sizes or their sizes are not linear in the batch."""
    from archscope.memory.replay import Recording

    if len(two.events) != len(four.events) or two.layers != four.layers:
        return None
    slopes = []
    for a, b in zip(two.events, four.events, strict=True):
        if a[0] != b[0] or a[1] != b[1] or a[3:] != b[3:]:
            return None
        grown = b[2] - a[2]
        if grown < 0 or grown % 2:
            return None
        slopes.append(grown // 2)
    base = two.events

    def at(batch: int) -> Recording:
        events = [(kind, ident, size + slope * (batch - 2), *rest)
                  for (kind, ident, size, *rest), slope in zip(base, slopes, strict=True)]
        return Recording(events=events, layers=two.layers)  # type: ignore[arg-type]

    return at


def fitting_devices(peak: int, device: str = "cuda") -> list[str]:
    """The known GPUs (``archscope.devices.DEVICES``) whose memory, less the headroom, holds
    ``peak`` bytes."""
    from archscope.devices import DEVICES

    names = []
    for spec in DEVICES:
        memory = spec.memory_bytes
        if memory is None:
            continue
        context, workspaces = headroom(memory, device)
        if peak <= memory - context - workspaces:
            names.append(spec.key)
    return names


__all__ = ["CONTEXT_BYTES", "MAX_BATCH", "SIZE_FORMS", "WORKSPACE_SHARE", "FitResult",
           "fitting_devices", "headroom", "largest_batch", "parse_size"]
