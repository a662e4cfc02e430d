"""Run a user's model on the meta device without changing it: meta stand-ins for its parameters
and buffers, swapped in for the duration of a block, and everything else a forward may touch
restored afterwards.

The tracer uses these, and so may any other analysis that runs a real model on meta (the memory
model of a training step)::

    swaps, parameter_storages = meta_state(model)
    with autograd_on(), kept_modes(model), kept_tensor_attributes(model), swapped(swaps):
        output = model(torch.empty((batch, *shape), device="meta"))

Nothing here changes the model for longer than the block: on exit its parameters, buffers,
plain tensor attributes (and, with :func:`archscope._modes.kept_modes`, its train/eval flags)
are the user's again, even when the forward raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

#: One swap: ``(module, "_parameters" | "_buffers", name, stand-in)``.
Swap = tuple[nn.Module, str, str, Any]


def meta_state(model: nn.Module) -> tuple[list[Swap], set[int]]:
    """Meta stand-ins for every parameter and buffer of ``model``; tied tensors share one.

    Returns the swaps to make (for :func:`swapped`), module by module, and the storage keys
    (:func:`storage_key`) of the parameter stand-ins, so that saved-tensor accounting can leave
    the parameters out. A parameter's stand-in is an ``nn.Parameter`` with the same shape, dtype
    and ``requires_grad``; a buffer's a plain meta tensor.
    """
    by_id: dict[int, torch.Tensor] = {}
    swaps: list[Swap] = []
    keys: set[int] = set()
    for module in model.modules():
        for pname, p in module._parameters.items():
            if p is None:
                continue
            if id(p) not in by_id:
                stand_in = nn.Parameter(meta_like(p), p.requires_grad)
                by_id[id(p)] = stand_in
                keys.add(storage_key(stand_in))
            swaps.append((module, "_parameters", pname, by_id[id(p)]))
        for bname, b in module._buffers.items():
            if b is None:
                continue
            if id(b) not in by_id:
                by_id[id(b)] = meta_like(b)
            swaps.append((module, "_buffers", bname, by_id[id(b)]))
    return swaps, keys


def meta_like(t: torch.Tensor) -> torch.Tensor:
    """An empty meta tensor of ``t``'s shape and dtype."""
    # torch.empty, not empty_like: on meta, empty_like's reference implementation imports sympy.
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


def storage_key(t: torch.Tensor) -> int:
    """A key for ``t``'s storage, the same for every view of it (counts a storage once)."""
    return int(StorageWeakRef(t.untyped_storage()).cdata)


@contextmanager
def swapped(swaps: list[Swap]) -> Iterator[None]:
    """Put the stand-ins of :func:`meta_state` in place for the block; always restore the
    originals.

    The same swap ``torch.func.functional_call`` makes, without the ``torch._dynamo`` import that
    its first call costs (over a second).
    """
    originals = [(module, kind, name, getattr(module, kind)[name]) for module, kind, name, _ in swaps]
    try:
        for module, kind, name, stand_in in swaps:
            getattr(module, kind)[name] = stand_in
        yield
    finally:
        for module, kind, name, original in originals:
            getattr(module, kind)[name] = original


@contextmanager
def kept_tensor_attributes(model: nn.Module) -> Iterator[None]:
    """Restore every module's plain tensor attributes (those in ``__dict__``) on exit.

    Hooks may write tensors there during the forward: the old ``torch.nn.utils.spectral_norm``
    and ``weight_norm`` recompute ``module.weight`` (a plain attribute) from their parameters in
    a pre-hook, which in a trace would leave the meta stand-in's result in the user's model. A
    tensor attribute that a module adds in its forward is removed again.
    """
    before = [(module, dict(vars(module))) for module in model.modules()]
    try:
        yield
    finally:
        for module, attributes in before:
            now = vars(module)
            tensors = {k for k, v in (*now.items(), *attributes.items())
                       if isinstance(v, torch.Tensor)}
            for key in tensors:
                if key in attributes:
                    now[key] = attributes[key]
                else:
                    del now[key]


@contextmanager
def autograd_on() -> Iterator[None]:
    """Autograd as outside any context: the block measures what a training step saves.

    Under ``torch.inference_mode()`` or ``torch.no_grad()`` autograd would save nothing and the
    backward pass could not run; anomaly detection checks backward outputs for NaN, which reads
    the values of meta tensors. Make the stand-ins and the input inside the block, so that they
    are normal tensors even under inference mode.
    """
    with (torch.inference_mode(False), torch.enable_grad(),
          torch.autograd.set_detect_anomaly(False)):
        yield


__all__ = ["Swap", "autograd_on", "kept_tensor_attributes", "meta_like", "meta_state",
           "storage_key", "swapped"]
