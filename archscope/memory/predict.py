"""``training_memory``: replay a model's training step and report its memory as the device counts it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archscope._modes import batch_of, input_dtype_of, input_shape_of, model_dtype
from archscope.devices import PRECISIONS
from archscope.errors import (
    ArchscopeError,
    ForwardError,
    InputShapeError,
    autograd_hint,
    input_dtype_hint,
)
from archscope.memory import replay as _replay
from archscope.memory import step as training
from archscope.memory.result import TrainingMemory
from archscope.memory.timeline import build

DEVICES = ("cuda", "cpu")

#: The steps the replay knows: ``bench``'s (targets, :func:`archscope.losses.training_loss`, an
#: optimizer) and ``check``'s (one forward and backward pass, :func:`archscope.losses.mean_loss`,
#: no targets; check measures after a warm-up step, so the cuBLAS workspaces it made are not
#: part of the figure).
STEPS = ("bench", "check")

#: cuBLAS's workspace (``aten/src/ATen/cuda/CublasHandlePool.cpp``, PyTorch 2.x):
#: ``setWorkspaceForHandle`` takes it from the caching allocator on a (handle, stream)'s first
#: use and keeps it in ``cublas_handle_stream_to_workspace``; ``parseChosenWorkspaceSize`` makes
#: it 4096 KiB × 8 = 32 MiB on Hopper and Blackwell (compute capability 9.x, 10.x) and
#: 4096 KiB × 2 + 16 KiB × 8 = 8.125 MiB on earlier GPUs, unless ``CUBLAS_WORKSPACE_CONFIG``
#: (``:SIZE_KiB:COUNT`` pairs) says otherwise. The newest sources make that caching optional
#: (``TORCH_CUBLAS_WORKSPACE_CACHE``): with it off these bytes are not counted there.
BLAS_WORKSPACE_HOPPER = 4096 * 1024 * 8
BLAS_WORKSPACE_EARLIER = 4096 * 1024 * 2 + 16 * 1024 * 8
#: devices.py keys of GPUs with compute capability 9.0 or later
_HOPPER_OR_LATER = ("H100", "H200", "B100", "B200", "GB200")


def blas_workspace(gpu: str | None) -> int:
    """One cuBLAS workspace for ``gpu`` (a devices.py key or CUDA name; Hopper's when unknown)."""
    import os
    import re

    config = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if config:
        pairs = re.findall(r":([0-9]+):([0-9]+)", config)
        if pairs:
            return sum(int(size) * 1024 * int(count) for size, count in pairs)
    if gpu is None:
        return BLAS_WORKSPACE_HOPPER
    return (BLAS_WORKSPACE_HOPPER if any(k in gpu.upper() for k in _HOPPER_OR_LATER)
            else BLAS_WORKSPACE_EARLIER)


@dataclass(frozen=True)
class StepSettings:
    """A checked request: what the replay runs, the batch aside."""

    input_shape: tuple[int, ...]
    precision: str
    optimizer: str
    impl: str
    device: str
    gpu: str | None
    workspace: int
    kind: str = "bench"  # one of STEPS
    channels_last: bool = False
    input_dtype: torch.dtype | None = None  # None: the model's float dtype


def settings(model: nn.Module, input_shape: Sequence[int] | str | None, *, precision: str,
             optimizer: str, device: str, optimizer_impl: str | None,
             gpu: str | None, step: str = "bench", channels_last: bool = False,
             input_dtype: torch.dtype | str | None = None) -> StepSettings:
    """Check the model and the options (see :func:`training_memory`)."""
    from archscope.engine.diagnosis import check_model

    check_model(model)
    if input_shape is None:
        raise InputShapeError("an input shape is needed (e.g. --input 3x224x224)")
    shape = input_shape_of(input_shape)
    _choice("precision", precision, PRECISIONS)
    _choice("optimizer", optimizer, training.OPTIMIZERS)
    _choice("device", device, DEVICES)
    _choice("step", step, STEPS)
    impl = optimizer_impl or training.default_impl(device)
    _choice("optimizer implementation", impl, training.OPTIMIZER_IMPLS)
    counted = device == "cuda" and step == "bench"  # check's were made by its warm-up step
    return StepSettings(input_shape=shape, precision=precision, optimizer=optimizer,
                        impl="" if optimizer == "none" else impl, device=device, gpu=gpu,
                        workspace=blas_workspace(gpu) if counted else 0, kind=step,
                        channels_last=channels_last and len(shape) == 3,
                        input_dtype=input_dtype_of(input_dtype))


def record(model: nn.Module, step: StepSettings, batch: int) -> _replay.Recording:
    """Replay the step at ``batch`` (see :func:`archscope.memory.replay.replay`).

    Raises:
        ForwardError: the step failed (names the reason).
    """
    from archscope.engine.diagnosis import REPLAY_LIMIT, check_lazy, failure_reason

    batch = batch_of(batch)
    check_lazy(model, step.input_shape, batch)
    dev = torch.device("cuda", 0) if step.device == "cuda" else torch.device(step.device)
    kwargs: dict[str, Any] = dict(
        batch=batch, dtype=step.input_dtype or model_dtype(model), precision=step.precision,
        optimizer=step.optimizer, impl=step.impl, device=dev, blas_workspace=step.workspace,
        loss=step.kind, channels_last=step.channels_last)
    try:
        try:
            return _replay.replay(model, step.input_shape, **kwargs)
        except _replay.StepFailed as failed:
            if not isinstance(failed.cause, ImportError):
                raise
            # a deferred import landed mid-way (see trace._Deferred): again, without them
            return _replay.replay(model, step.input_shape, defer=False, **kwargs)
    except _replay.StepFailed as failed:
        if isinstance(failed.cause, ArchscopeError):
            raise failed.cause from None
        where = failed.phase + (f", in {failed.layer}" if failed.layer else "")
        hint = autograd_hint(str(failed.cause), "--batch") + input_dtype_hint(str(failed.cause))
        raise ForwardError(f"the training step failed ({where}): "
                           f"{failure_reason(failed.cause, REPLAY_LIMIT)}{hint}") from None
    except ArchscopeError:
        raise
    except Exception as exc:  # setting the step up (the model's parameters, the optimizer)
        raise ForwardError("the training step could not be set up: "
                           f"{failure_reason(exc, REPLAY_LIMIT)}") \
            from None


def training_memory(
    model: nn.Module,
    input_shape: Sequence[int] | str | None,
    *,
    batch: int = 1,
    precision: str = "fp32",
    optimizer: str = "sgd",
    device: str = "cuda",
    optimizer_impl: str | None = None,
    gpu: str | None = None,
    name: str | None = None,
    step: str = "bench",
    channels_last: bool = False,
    input_dtype: torch.dtype | str | None = None,
) -> TrainingMemory:
    """The memory of ``model``'s training step, replayed on the meta device (no weights, no GPU).

    Runs a real training step (``zero_grad(set_to_none=True)``, forward, loss, backward,
    optimizer step) on meta tensors that behave as ``device``'s, so that the dtypes, kernels and
    sizes are those the device would use, and reports the peak of the bytes allocated over the
    first two steps (the second is every later one: the optimizer state exists from its start),
    with the timeline, the breakdown by category and where the peak occurs. See
    ``docs/memory.md``.

    Args:
        model: an ``nn.Module`` (not changed: parameters, modes and attributes are restored).
        input_shape: one sample's shape, e.g. ``(3, 224, 224)`` or ``"3x224x224"``.
        batch: the batch size.
        precision: ``fp32``, ``tf32`` (the same memory), ``bf16`` or ``fp16`` (CUDA's autocast
            policy on ``cuda``, the CPU's on ``cpu``; fp16 adds GradScaler's tensors).
        optimizer: ``sgd`` (momentum 0.9), ``adamw``, ``adam`` or ``none`` (forward and
            backward only).
        device: ``cuda`` or ``cpu``: the device whose behaviour is predicted (nothing runs there).
        optimizer_impl: ``fused``, ``foreach`` or ``for-loop``; default: what ``archscope
            bench`` uses (fused on CUDA, PyTorch's for-loop default on the CPU).
        gpu: the GPU (devices.py key or CUDA name), for its cuBLAS workspace size.
        name: the model's name in the result.
        step: ``"bench"`` (bench's step: targets, cross-entropy/MSE) or ``"check"`` (``archscope
            check``'s forward and backward pass: the sum of the outputs' means, no targets, the
            cuBLAS workspaces left out as check's warm-up made them before it measures; use it
            with ``optimizer="none"``).
        channels_last: the batch and the 4-D weights in the channels-last layout, as ``bench``
            trains by default on CUDA (for a C×H×W input; ignored for others).
        input_dtype: the input batch's dtype (``torch.long`` or ``"long"`` for token ids, as
            ``--dtype`` takes it); ``None``: the model's floating-point dtype. The input's bytes
            follow it (8 an element for ``long``).

    Raises:
        InputShapeError: a malformed ``input_shape`` or ``batch``, or an unknown
            ``input_dtype``.
        ArchscopeError: an unknown precision, optimizer or device.
        ForwardError: the step failed (names the reason).
    """
    chosen = settings(model, input_shape, precision=precision, optimizer=optimizer,
                      device=device, optimizer_impl=optimizer_impl, gpu=gpu, step=step,
                      channels_last=channels_last, input_dtype=input_dtype)
    recording = record(model, chosen, batch)
    return result(model, chosen, batch, recording, name)


def result(model: nn.Module, step: StepSettings, batch: int, recording: _replay.Recording,
           name: str | None = None) -> TrainingMemory:
    """The :class:`TrainingMemory` of a recording."""
    timeline = build(recording.events, recording.layers, cuda=step.device == "cuda")
    attention = tuple(recording.attention)
    return TrainingMemory(
        model=name or type(model).__name__, input_shape=step.input_shape, batch=batch,
        precision=step.precision, optimizer=step.optimizer, optimizer_impl=step.impl,
        device=step.device, peak=timeline.peak, peak_parts=timeline.peak_parts,
        peak_step=timeline.peak_step, peak_phase=timeline.peak_phase,
        peak_layer=timeline.peak_layer, tensor_peak=timeline.tensor_peak,
        reserved_peak=timeline.reserved_peak, timeline=timeline.points, attention=attention,
        notes=_notes(step, attention), step=step.kind,
        input_dtype=str(step.input_dtype or model_dtype(model)).removeprefix("torch."),
    )


def _choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ArchscopeError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def _notes(step: StepSettings, attention: tuple[str, ...]) -> tuple[str, ...]:
    device, precision, impl, workspace = step.device, step.precision, step.impl, step.workspace
    notes = []
    if step.kind == "check":
        notes.append("archscope check's step: one forward and backward pass, the loss the sum of "
                     "the outputs' means")
    if device == "cuda":
        notes.append("sizes as torch.cuda.max_memory_allocated counts them (caching-allocator "
                     "blocks); cuDNN's per-call convolution workspaces and the CUDA context are "
                     "not included")
        if workspace:
            notes.append(f"cuBLAS workspaces of {workspace / 2**20:g} MiB from the first matrix "
                         "product of the forward and of the backward thread on")
        else:
            notes.append("cuBLAS workspaces not included: check's warm-up step made them before "
                         "it measures")
    else:
        notes.append("sizes are the tensors' bytes (what torch's MemTracker counts on the CPU)")
    if precision in ("bf16", "fp16"):
        notes.append(f"{precision} autocast with {device.upper()}'s per-op policy: fp32 master "
                     "weights, grads and optimizer state, 16-bit weight copies cached per forward")
    if precision == "fp16":
        notes.append("GradScaler's scale and inf-check tensors included")
    if impl:
        notes.append(f"{impl} optimizer implementation")
    if step.input_dtype is not None:
        size = step.input_dtype.itemsize
        notes.append(f"input dtype {str(step.input_dtype).removeprefix('torch.')} (--dtype): "
                     f"{size} byte{'s' if size > 1 else ''} an input element")
    if attention:
        notes.append(f"attention kernel: {', '.join(attention)}, as {device.upper()} would "
                     "choose it (docs/memory.md)")
    return tuple(notes)


__all__ = ["BLAS_WORKSPACE_EARLIER", "BLAS_WORKSPACE_HOPPER", "DEVICES", "STEPS", "StepSettings",
           "blas_workspace", "record", "result", "settings", "training_memory"]
