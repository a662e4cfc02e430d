"""One model, one initialization scheme, one forward and backward pass: a :class:`StatsRun`.

The loop, top to bottom (:func:`model_stats`): copy the model onto the device, replace its
normalization layers with identity (``no_norm``), draw its Linear/Conv weights from the scheme,
draw a batch of N(0, 1) inputs, run forward in training mode with a :class:`Probe` on every leaf
module, compute :func:`random_label_loss`, run backward, read the weights' gradients.

The user's model is never changed: every run works on a deep copy (its weights, BatchNorm running
statistics, gradients, modes and device stay as they were), and the random state is forked
(:func:`archscope._modes.seeded`), so the caller's generators are left as they were too.
"""

from __future__ import annotations

import copy as copying
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from archscope._modes import (
    batch_of,
    check_input_dtype,
    input_dtype_of,
    input_shape_of,
    model_dtype,
    random_input,
    seeded,
)
from archscope.errors import (
    DeviceError,
    ForwardError,
    InputShapeError,
    autograd_hint,
    first_line,
    input_dtype_hint,
)
from archscope.stats.initialize import apply_scheme, weighted_modules
from archscope.stats.loss import random_label_loss
from archscope.stats.probe import REMOVABLE_NORMS, Probe
from archscope.stats.records import StatsRun
from archscope.stats.schemes import Scheme, parse_scheme, parse_schemes

#: The default batch holds at most this many input values (8 MiB of float32).
BATCH_VALUES = 2**21
#: The default batch's bounds: enough samples for stable statistics, few enough for a CPU.
MIN_BATCH, MAX_BATCH = 8, 256

#: The weights' generator is seeded with ``seed + INIT_STREAM``, the input's with ``seed``, so
#: a scheme's N(0, σ²) weights are not the input's N(0, 1) values scaled.
INIT_STREAM = 0x9E3779B9


def default_batch(input_shape: Sequence[int]) -> int:
    """The largest power of two whose batch holds at most :data:`BATCH_VALUES` input values,
    clamped to 8 … 256: 256 for 784 or 1×28×28, 32 for 3×112×112, 8 for 3×224×224.
    """
    per_sample = max(1, math.prod(input_shape))
    fits = max(1, BATCH_VALUES // per_sample)
    return max(MIN_BATCH, min(MAX_BATCH, 2 ** (fits.bit_length() - 1)))


def source_stats(source: str, schemes: str | Sequence[str | Scheme] = "default", *,
                 input_shape: Sequence[int] | str | None = None, batch: int | None = None,
                 device: str = "cpu", seed: int = 0, no_norm: bool = False,
                 num_classes: int | None = None,
                 dtype: str | torch.dtype | None = None) -> list[StatsRun]:
    """Build ``source`` (any model source ``summary`` takes) once and measure it under each of
    ``schemes`` (``"he_normal,normal:0.01"``, a list of names or :class:`Scheme`\\ s).

    The model is built with real weights on ``device`` from ``seed`` (its own initialization is
    the ``default`` scheme); each scheme runs on a fresh copy of it. ``dtype`` is the input's
    (``--dtype``; see :func:`model_stats`).

    Raises:
        InitSchemeError: an unknown or malformed scheme.
        InputShapeError: a malformed ``input_shape`` or ``batch``, or none for a model without a
            default input size.
        UnknownModelError, ModelSourceError, ModelBuildError, DeviceError: see
            :func:`archscope.source.resolve`.
        ForwardError: the forward or backward pass failed.
        DoesNotFitError: the pass's predicted peak is more than the device has free (see
            :func:`archscope.memory.guard.refuse_if_too_big`; nothing ran).
    """
    from archscope.devices import resolve_device
    from archscope.source import is_spec, resolve

    parsed = _schemes(schemes)
    dev = resolve_device(device, library=True)
    loaded = resolve(source, input_shape=input_shape, num_classes=num_classes, device=str(dev),
                     seed=seed, dtype=dtype)
    shape = loaded.input_shape
    # A zoo model or a spec is archscope's own build: the last scheme may use it rather than a
    # copy. A file or module may hand out an instance its importer shares: always copied.
    owned = is_spec(source) or ":" not in source
    _refuse_too_big(loaded.model, loaded.name, shape, batch, dev,
                    copied=not (owned and len(parsed) == 1), input_dtype=loaded.dtype)
    runs = []
    for i, scheme in enumerate(parsed):
        last = i == len(parsed) - 1
        runs.append(_stats(loaded.model, shape, scheme=scheme, batch=batch, device=dev,
                           seed=seed, no_norm=no_norm, name=loaded.name, inputs=None,
                           copy=not (owned and last), dtype=loaded.dtype))
    if loaded.notes:
        runs = [replace(r, notes=(*loaded.notes, *r.notes)) for r in runs]
    return runs


def model_stats(model: nn.Module, input_shape: Sequence[int] | str | None = None, *,
                scheme: str | Scheme = "default", batch: int | None = None,
                device: str | torch.device | None = None, seed: int = 0, no_norm: bool = False,
                name: str | None = None, inputs: torch.Tensor | None = None,
                dtype: str | torch.dtype | None = None) -> StatsRun:
    """Measure ``model`` under ``scheme``: the weights drawn, and per leaf module call the
    activations and gradients of one forward and backward pass on a random batch.

    Works on a deep copy of ``model`` on ``device`` (default: where the model is); ``model``
    itself is left exactly as it was. The batch is ``batch`` (default: :func:`default_batch`)
    samples of ``input_shape`` drawn from N(0, 1), or ``inputs`` (a tensor, batch first) as
    given. ``dtype`` is the input's (``None``: the model's float dtype, or an integer
    ``inputs``' own; ``torch.long`` or ``"long"``: token ids drawn uniformly in
    ``[0, num_embeddings)`` of the first Embedding). Integer inputs carry no gradient: the
    gradients are those of the weights, and a model with no trainable parameter is refused.
    The same ``seed`` gives the same input, labels, weights and records on the same device.

    Raises:
        InitSchemeError, InputShapeError, DeviceError, ForwardError: see :func:`source_stats`.
    """
    return _stats(model, input_shape, scheme=scheme, batch=batch, device=device, seed=seed,
                  no_norm=no_norm, name=name, inputs=inputs, copy=True, dtype=dtype)


def _stats(model: nn.Module, input_shape: Sequence[int] | str | None, *, scheme: str | Scheme,
           batch: int | None, device: str | torch.device | None, seed: int, no_norm: bool,
           name: str | None, inputs: torch.Tensor | None, copy: bool,
           dtype: str | torch.dtype | None = None) -> StatsRun:
    """:func:`model_stats`, on ``model`` itself where ``copy`` is false (a model archscope
    built and will not use again)."""
    from archscope.devices import resolve_device

    chosen = scheme if isinstance(scheme, Scheme) else parse_scheme(scheme)
    input_dtype = input_dtype_of(dtype)
    if inputs is not None:
        if inputs.dim() < 1 or (input_shape is not None
                                and tuple(inputs.shape[1:]) != input_shape_of(input_shape)):
            raise InputShapeError(f"inputs of shape {tuple(inputs.shape)} are not a batch of "
                                  f"{input_shape}; pass a tensor whose first dimension is the batch")
        shape, size = tuple(int(d) for d in inputs.shape[1:]), int(inputs.shape[0])
    elif input_shape is None:
        raise InputShapeError("model_stats needs input_shape (one sample's shape, e.g. "
                              "(3, 32, 32)) or inputs (a batch)")
    else:
        shape = input_shape_of(input_shape)
        size = batch_of(batch) if batch is not None else default_batch(shape)
    where = _device_of(model) if device is None else device
    dev = resolve_device(where, library=True)
    label = name or type(model).__name__
    if input_dtype is None and inputs is not None and not inputs.is_floating_point():
        input_dtype = inputs.dtype  # token ids stay ids
    check_input_dtype(model, input_dtype, label)
    if (input_dtype is not None and not input_dtype.is_floating_point
            and not any(p.requires_grad for p in model.parameters())):
        raise InputShapeError(
            f"{label}: {str(input_dtype).removeprefix('torch.')} inputs carry no gradient and "
            "the model has no trainable parameter, so there is no gradient to measure; give "
            "float inputs (leave --dtype out) or a model with weights")
    if dev.type == "meta" or any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise DeviceError(
            f"{label}: statistics need real weights, not the meta device; build the model on "
            "the CPU or CUDA (load_model(source, device='cpu'))")
    base = StatsRun(model=label, scheme=chosen.name, scheme_label=chosen.label, skipped=None,
                    input_shape=shape, batch=size, device=str(dev), seed=seed, no_norm=no_norm)
    if chosen.sets_bias and not weighted_modules(model):
        return replace(base, skipped=(f"{chosen.name} cannot apply to {label}: it has no Linear "
                                      "or Conv weight to draw"))
    work = (_copied(model, label) if copy else model).to(dev)
    removed = _remove_norms(work) if no_norm else 0
    if isinstance(work, REMOVABLE_NORMS):  # the model is itself one norm layer
        work, removed = nn.Identity(), 1
    with seeded(seed, dev):
        init_seed = (seed + INIT_STREAM) % 2**63
        init = apply_scheme(work, chosen, torch.Generator(dev).manual_seed(init_seed))
        data = torch.Generator(dev).manual_seed(seed)
        x_dtype = input_dtype or model_dtype(work)
        if inputs is None:  # N(0, 1) floats, or token ids in [0, num_embeddings)
            x = random_input(work, shape, size, x_dtype, dev, data)
        else:  # a copy: the caller's tensor is not touched
            x = inputs.detach().to(device=dev, dtype=x_dtype, copy=True)
        if not any(p.requires_grad for p in work.parameters()):
            x.requires_grad_(True)  # no weights to differentiate: follow the input's gradient
        work.train()
        with torch.enable_grad(), Probe(work, torch.Generator().manual_seed(seed)) as probe:
            try:
                output = work(x)
            except Exception as exc:
                raise ForwardError(f"{label}: the forward pass failed on a {size}×"
                                   f"{'×'.join(map(str, shape))} batch: {type(exc).__name__}: "
                                   f"{first_line(exc)}{autograd_hint(str(exc))}"
                                   f"{input_dtype_hint(str(exc))}") from exc
            loss, loss_words = random_label_loss(output, data, label)
            try:
                loss.backward()
            except RuntimeError as exc:
                raise ForwardError(f"{label}: the backward pass failed: {first_line(exc)}"
                                   f"{autograd_hint(str(exc))}") from exc
        layers = probe.layers({r.name: r.weight_std for r in init})
    return replace(base, norms_removed=removed, loss=loss_words,
                   loss_value=float(loss.detach()), init=init, layers=layers,
                   notes=_notes(work, chosen, no_norm, removed))


def _refuse_too_big(model: nn.Module, name: str, shape: tuple[int, ...], batch: int | None,
                    device: torch.device, copied: bool,
                    input_dtype: torch.dtype | None = None) -> None:
    """Refuse a pass the device has no room for before it runs: the predicted peak of a forward
    and backward pass at the batch (:func:`archscope.memory.training_memory`, no optimizer),
    plus a copy of the model where the runs work on one."""
    from archscope.devices import current_device_name
    from archscope.memory.guard import refuse_if_too_big, resident_bytes
    from archscope.memory.summary import predict_peak

    options: dict[str, Any] = {
        "precision": "fp32", "optimizer": "none",
        "gpu": current_device_name(device) if device.type == "cuda" else None,
        "input_dtype": input_dtype}
    size = batch if batch is not None else default_batch(shape)
    peak = predict_peak(model, shape, batch=size, name=name, device=device.type, **options)
    refuse_if_too_big(model, peak, name=name, input_shape=shape, device=device,
                      extra=resident_bytes(model) if copied else 0, options=options)


def _schemes(schemes: str | Sequence[str | Scheme]) -> tuple[Scheme, ...]:
    if isinstance(schemes, str):
        return parse_schemes(schemes)
    names = [s.name if isinstance(s, Scheme) else s for s in schemes]
    return parse_schemes(names)


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _copied(model: nn.Module, label: str) -> nn.Module:
    try:
        return copying.deepcopy(model)
    except Exception as exc:
        raise ForwardError(
            f"{label}: cannot copy the model ({type(exc).__name__}: {first_line(exc)}); "
            "archscope stats works on a copy so that your model is left unchanged") from exc


def _remove_norms(model: nn.Module) -> int:
    """Replace every normalization layer below ``model`` with ``nn.Identity``; how many."""
    removed = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, REMOVABLE_NORMS):
                setattr(parent, child_name, nn.Identity())
                removed += 1
    return removed


def _notes(model: nn.Module, scheme: Scheme, no_norm: bool, removed: int) -> tuple[str, ...]:
    notes = []
    if no_norm and removed == 0:
        notes.append("--no-norm: the model has no BatchNorm, InstanceNorm, LayerNorm, GroupNorm "
                     "or RMSNorm to remove")
    if scheme.sets_bias:
        drawn = {id(m.weight) for _, m in weighted_modules(model)}
        drawn |= {id(m.bias) for _, m in weighted_modules(model) if m.bias is not None}
        owners = sorted({type(m).__name__ for m in model.modules()
                         for p in m.parameters(recurse=False) if id(p) not in drawn})
        if owners:
            notes.append(f"{scheme.name} draws the Linear/Conv weights only: the parameters of "
                         f"{', '.join(owners)} keep the model's own initialization")
    return tuple(notes)
