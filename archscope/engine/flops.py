"""FLOPs at the dispatcher with PyTorch's own formulas (``torch.utils.flop_counter``)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# Shape and layout queries FlopCounterMode passes over (looked up by name: older PyTorch releases
# lack some of them).
_SHAPE_QUERIES = frozenset(
    getattr(getattr(namespace, op, None), overload, None)
    for namespace, names in (
        (torch.ops.aten, ("sym_is_contiguous.default", "is_contiguous.default",
                          "is_contiguous.memory_format", "is_strides_like_format.default",
                          "is_non_overlapping_and_dense.default", "size.default",
                          "sym_size.default", "stride.default", "sym_stride.default",
                          "storage_offset.default", "sym_storage_offset.default", "numel.default",
                          "sym_numel.default", "dim.default")),
        (torch.ops.prim, ("layout.default",)),
    )
    for op, overload in (name.split(".") for name in names)
) - {None}


class FlopCounter(TorchDispatchMode):
    """One running FLOP total, counted as :class:`torch.utils.flop_counter.FlopCounterMode`
    counts.

    The same registry and the same decomposition of ops the registry lacks, with one running
    total instead of a per-module table; the tracer reads it before and after each call. Unlike
    ``FlopCounterMode`` it does not wrap its dispatch in ``torch._dynamo.disable``: that import
    alone costs more than a second and nothing here is compiled.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _SHAPE_QUERIES:
            return NotImplemented
        if func not in flop_registry and func is not torch.ops.prim.device.default:
            with self:
                decomposed = func.decompose(*args, **kwargs)
                if decomposed is not NotImplemented:
                    return decomposed
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in flop_registry:
            self.total += int(flop_registry[packet](*args, **kwargs, out_val=out))
        return out


__all__ = ["FlopCounter"]
