"""Run a user's model on the meta device without changing it: meta stand-ins for its parameters
and buffers, swapped in for the duration of a block, and everything else a forward may touch
restored afterwards.

The tracer uses these, and so may any other analysis that runs a real model on meta (the memory
model of a training step)::

    swaps, parameter_storages = meta_state(model)
    with autograd_on(), kept_modes(model), kept_attributes(model), swapped(swaps):
        output = model(torch.empty((batch, *shape), device="meta"))

:func:`real_state` makes the stand-ins of a real forward (``--trace real``) the same way.

Nothing here changes the model for longer than the block: on exit its parameters, buffers, every
attribute of every submodule, whatever container holds it (and, with
:func:`archscope._modes.kept_modes`, its train/eval flags) are the user's again, even when the
forward raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from types import SimpleNamespace
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


def real_state(model: nn.Module, device: torch.device) -> tuple[list[Swap], set[int]]:
    """Stand-ins for a real forward on ``device``, as :func:`meta_state` makes for meta.

    A parameter's stand-in is an ``nn.Parameter`` holding the user's values (the same storage on
    the model's own device, a copy on another), so that gradients of a backward pass land on
    the stand-in, never in the user's ``.grad``. A buffer's is a copy: a BatchNorm in training
    mode updates its running statistics in place. Tied tensors share one stand-in.
    """
    by_id: dict[int, torch.Tensor] = {}
    swaps: list[Swap] = []
    keys: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            for pname, p in module._parameters.items():
                if p is None:
                    continue
                if id(p) not in by_id:
                    stand_in = nn.Parameter(p.detach().to(device), p.requires_grad)
                    by_id[id(p)] = stand_in
                    keys.add(storage_key(stand_in))
                swaps.append((module, "_parameters", pname, by_id[id(p)]))
            for bname, b in module._buffers.items():
                if b is None:
                    continue
                if id(b) not in by_id:
                    by_id[id(b)] = b.detach().to(device, copy=True)
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


#: What ``nn.Module.__init__`` puts in every module's ``__dict__``: the module's own machinery.
#: The registries of parameters, buffers and children are restored by content; hooks and the
#: ``training`` flag are left to their owners (the tracer's hook handles,
#: :func:`archscope._modes.kept_modes`).
_REGISTRIES = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")
_MODULE_MACHINERY = frozenset(vars(nn.Module())) - set(_REGISTRIES)


@contextmanager
def kept_attributes(model: nn.Module) -> Iterator[None]:
    """Leave every submodule's attributes exactly as found on exit, even when the block raised.

    A forward may write to its module: torchvision's ``AnchorGenerator`` reassigns
    ``self.cell_anchors = [a.to(device) for a in self.cell_anchors]``, the old
    ``spectral_norm``/``weight_norm`` recompute ``module.weight`` in a pre-hook, a cache fills a
    dict, a counter counts. In a trace those writes would leave meta tensors (or a real trace's
    results) in the user's model. So, for every module of ``model``:

    * each attribute in its ``__dict__`` is set back to the very object it held (an attribute
      the block added is removed), and the contents of the containers it holds are put back in
      place: lists, dicts and sets refilled with their original items, tuples and named tuples
      walked, dataclass and ``SimpleNamespace`` fields reset, at any depth; the objects
      themselves are never copied, so what was the same object stays the same object;
    * a non-meta tensor found there is copied for the block and written back only if the
      block changed it in place (its version counter moved): ``self.count += 1`` on a plain
      tensor attribute;
    * its registries of parameters, buffers and children get their original entries back (a
      buffer registered during the block is removed).

    Parameters and buffers themselves are not copied: :func:`swapped` replaces them with
    stand-ins for the block.
    """
    snapshots = [(module, _snapshot_module(module)) for module in model.modules()]
    try:
        yield
    finally:
        for module, snapshot in snapshots:
            _restore_module(module, snapshot)


#: the name :mod:`archscope.engine` used before containers were kept too
kept_tensor_attributes = kept_attributes


@dataclass
class _Snapshot:
    """One object as found: itself, and what is needed to put its contents back."""

    obj: Any
    kind: str = "leaf"  # leaf | tensor | list | tuple | dict | set | fields
    items: list[Any] = field(default_factory=list)  # child snapshots (dict: (key, snapshot))
    copy: Any = None  # a tensor's values, and its version counter
    version: int = 0


def _snapshot_module(module: nn.Module) -> dict[str, Any]:
    state = vars(module)
    seen: set[int] = set()
    return {
        "attributes": {k: _snapshot(v, seen) for k, v in state.items()
                       if k not in _MODULE_MACHINERY and k not in _REGISTRIES},
        "registries": {k: (state[k], list(state[k].items()) if isinstance(state[k], dict)
                           else set(state[k]))
                       for k in _REGISTRIES if k in state},
    }


def _restore_module(module: nn.Module, snapshot: dict[str, Any]) -> None:
    state = vars(module)
    for key in [k for k in state if k not in _MODULE_MACHINERY and k not in _REGISTRIES
                and k not in snapshot["attributes"]]:
        del state[key]
    for key, snap in snapshot["attributes"].items():
        state[key] = _restore(snap)
    for key, (registry, contents) in snapshot["registries"].items():
        state[key] = registry
        if isinstance(registry, dict):
            now = list(registry.items())
            if len(now) != len(contents) or any(
                    k != k0 or v is not v0 for (k, v), (k0, v0) in zip(now, contents, strict=True)):
                registry.clear()
                registry.update(contents)
        elif registry != contents:  # a set of names
            registry.clear()
            registry.update(contents)


#: values that hold nothing: their snapshot is the value itself
_ATOMS = (int, float, complex, str, bytes, type(None))


def _snapshot(value: Any, seen: set[int]) -> Any:
    """What :func:`_restore` needs to put ``value`` and everything it holds back (an atom is
    its own snapshot)."""
    if isinstance(value, _ATOMS):
        return value
    if isinstance(value, torch.Tensor):
        if value.is_meta or id(value) in seen:
            return _Snapshot(value)
        seen.add(id(value))
        with torch.no_grad():
            return _Snapshot(value, "tensor", copy=value.detach().clone(), version=value._version)
    if isinstance(value, nn.Module) or id(value) in seen:
        return _Snapshot(value)  # modules restore themselves; a cycle is walked once
    if isinstance(value, list | tuple | set | frozenset):
        seen.add(id(value))
        kind = "list" if isinstance(value, list) else "set" if isinstance(value, set) else "tuple"
        return _Snapshot(value, kind, [_snapshot(v, seen) for v in value])
    if isinstance(value, dict):
        seen.add(id(value))
        return _Snapshot(value, "dict", [(k, _snapshot(v, seen))
                                         for k, v in value.items()])
    if (is_dataclass(value) and not isinstance(value, type)) or isinstance(value, SimpleNamespace):
        seen.add(id(value))
        names = (list(vars(value)) if hasattr(value, "__dict__")
                 else [f.name for f in fields(value)])  # type: ignore[arg-type]
        return _Snapshot(value, "fields", [(n, _snapshot(getattr(value, n), seen))
                                           for n in names])
    return _Snapshot(value)


def _restore(snap: Any) -> Any:
    """Put ``snap``'s object back as it was found, in place; return the object."""
    if not isinstance(snap, _Snapshot):
        return snap
    obj = snap.obj
    if snap.kind == "tensor":
        if obj._version != snap.version:  # changed in place during the block
            with torch.no_grad():
                obj.copy_(snap.copy)
    elif snap.kind == "list":
        items = [_restore(s) for s in snap.items]
        if len(obj) != len(items) or any(a is not b for a, b in zip(obj, items, strict=True)):
            obj[:] = items
    elif snap.kind == "tuple":
        for s in snap.items:
            _restore(s)
    elif snap.kind == "set":
        items = [_restore(s) for s in snap.items]
        if obj != set(items):
            obj.clear()
            obj.update(items)
    elif snap.kind == "dict":
        items = [(k, _restore(s)) for k, s in snap.items]
        if list(obj.keys()) != [k for k, _ in items] or any(
                obj[k] is not v for k, v in items):
            obj.clear()
            obj.update(items)
    elif snap.kind == "fields":
        values = [(name, _restore(s)) for name, s in snap.items]
        if hasattr(obj, "__dict__"):
            state = vars(obj)
            names = {name for name, _ in values}
            for key in [k for k in state if k not in names]:
                del state[key]
            state.update(values)
        else:  # a dataclass with __slots__
            for name, value in values:
                object.__setattr__(obj, name, value)
    return obj


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


__all__ = ["Swap", "autograd_on", "kept_attributes", "kept_tensor_attributes", "meta_like",
           "meta_state", "real_state", "storage_key", "swapped"]
