"""Refuse a training step too big for the device before it runs, and say what would fit.

``check``, ``bench`` (at a given or default batch) and ``stats`` allocate for real. Before they
do, :func:`refuse_if_too_big` compares the step's predicted peak
(:func:`archscope.memory.training_memory`) with what the device has free, and raises
:class:`DoesNotFitError`, one line naming the figure and a batch (:func:`archscope.memory.largest_batch`)
or, where not even batch 1 fits, an input (the spatial size halved until the model's step fits)
that does. Without it PyTorch's allocator fails mid-step with its own text, or the operating
system ends the process.

Free memory (:func:`available_memory`):

* **CUDA**: ``torch.cuda.mem_get_info`` (the driver's free bytes on the device; the CUDA context
  and the model's weights already use their share).
* **CPU**: ``MemAvailable`` of ``/proc/meminfo`` (the kernel's estimate of what can be allocated
  without swapping; Linux 3.14 and later), lowered to what the process's memory cgroup still
  allows where it sets a limit (cgroup v2 ``memory.max − memory.current``, v1
  ``memory.limit_in_bytes − memory.usage_in_bytes``); elsewhere
  ``os.sysconf("SC_AVPHYS_PAGES") × os.sysconf("SC_PAGE_SIZE")`` (free pages, which leaves out
  the page cache the kernel would give back: it errs on the small side).

The model is already on the device when the check runs, so its weights (part of the predicted
peak) are counted as available: a step is refused when ``peak > free + the model's bytes``. The
refusal is for steps that cannot fit; one that fits on paper may still run out (cuDNN's
workspaces, fragmentation), which the commands report as before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope.errors import ArchscopeError, DeviceError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.report import TrainingPeak

#: how many times the input's spatial size is halved looking for one that fits
MAX_HALVINGS = 12

#: cgroup v1 writes "no limit" as the largest page-aligned 64-bit value; anything above this is
#: no limit
_NO_LIMIT = 1 << 60

#: (limit, usage) files of the process's memory cgroup: v2, then v1
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


class DoesNotFitError(DeviceError):
    """A step whose predicted peak is more than the device has free (exit code 1)."""


def available_memory(device: torch.device) -> tuple[int, str]:
    """The bytes ``device`` has free now, and what to call it (``"cuda:0 (NVIDIA H200)"``,
    ``"this machine"``); see the module docs."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"{device} ({torch.cuda.get_device_name(device)})"
    return cpu_available(), "this machine"


def cpu_available() -> int:
    """The RAM this process can still allocate (see the module docs)."""
    available = _meminfo_available()
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_room()
    return min(available, limit) if limit is not None else available


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """What the memory cgroup still allows, or ``None`` without a limit."""
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                return None
            limit, usage = int(limit_text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        return None if limit >= _NO_LIMIT else max(0, limit - usage)
    return None


def resident_bytes(model: nn.Module) -> int:
    """The bytes of ``model``'s parameters and buffers that hold memory (not on ``meta``),
    each storage once."""
    seen: set[int] = set()
    total = 0
    for t in (*model.parameters(), *model.buffers()):
        if t.is_meta:
            continue
        storage = t.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def refuse_if_too_big(model: nn.Module, peak: TrainingPeak | None, *, name: str,
                      input_shape: Sequence[int], device: torch.device,
                      batch_option: str = "--batch", extra: int = 0,
                      options: dict[str, Any] | None = None) -> None:
    """Raise :class:`DoesNotFitError` where the step ``peak`` predicts (``extra`` bytes more:
    a copy of the model) needs more than ``device`` has free besides ``model``'s own bytes.

    ``options`` are those ``peak`` was predicted with (``precision``, ``optimizer``,
    ``step``, ``gpu``, ``channels_last``, ``input_dtype``), for the smaller batch or input the
    message suggests; ``batch_option`` is how the command spells its batch (``--batch-size``
    in bench).
    """
    if peak is None or peak.peak is None:
        return
    free, where = available_memory(device)
    resident = resident_bytes(model)
    need = peak.peak + extra
    if need <= free + resident:
        return
    from archscope.render.units import human_bytes

    dims = "×".join(str(d) for d in input_shape)
    hint = _suggestion(model, input_shape, peak.batch, free + resident - extra, device,
                       batch_option, options or {})
    besides = f" besides the model's {human_bytes(resident)}" if resident else ""
    raise DoesNotFitError(
        f"{name} at {dims} needs {human_bytes(need)} for a training step at batch "
        f"{peak.batch:,} (predicted); {where} has {human_bytes(free)} free{besides}: {hint}")


def _suggestion(model: nn.Module, input_shape: Sequence[int], batch: int, memory: int,
                device: torch.device, batch_option: str, options: dict[str, Any]) -> str:
    """``use --batch 12 or smaller``, ``use --batch 1 --input 3x4096x4096 or smaller``, or what
    to do where nothing fits."""
    from archscope.memory.fit import WORKSPACE_SHARE, largest_batch
    from archscope.memory.predict import training_memory

    cuda = device.type == "cuda"
    settings = {k: v for k, v in options.items()
                if k in ("precision", "optimizer", "step", "gpu", "channels_last", "input_dtype")}
    fit_options = {k: v for k, v in settings.items() if k != "channels_last"}
    if memory > 0 and batch > 1:
        try:
            fit = largest_batch(model, tuple(input_shape), memory, device=device.type,
                                context=0, max_batch=batch - 1, **fit_options)
        except ArchscopeError:
            fit = None
        if fit is not None and fit.batch:
            return f"use {batch_option} {fit.batch} or smaller"
    budget = memory - (int(memory * WORKSPACE_SHARE) if cuda else 0)
    shape = list(input_shape)
    if len(shape) >= 2 and budget > 0:
        for _ in range(MAX_HALVINGS):
            if all(d <= 1 for d in shape[1:]):
                break
            shape = [shape[0], *(max(1, math.ceil(d / 2)) for d in shape[1:])]
            try:
                peak = training_memory(model, tuple(shape), batch=1, device=device.type,
                                       **settings).peak
            except ArchscopeError:  # the model does not take this input: stop here
                break
            if peak <= budget:
                text = "x".join(str(d) for d in shape)
                return f"use {batch_option} 1 --input {text} or smaller"
    return ("not even batch 1 fits at any input size the model takes; use a device with more "
            "memory")


__all__ = ["CGROUP_FILES", "MAX_HALVINGS", "DoesNotFitError", "available_memory", "cpu_available",
           "refuse_if_too_big", "resident_bytes"]
