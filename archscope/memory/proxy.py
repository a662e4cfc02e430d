"""The predicted device's face on meta tensors: the replay's tensors and the dispatch state they need.

A :class:`Proxy` is a tensor whose device is the one predicted (``cuda:0`` even in a CPU-only
build of PyTorch) and whose data is a meta tensor. Because it carries that device's dispatch
keys, PyTorch's own code takes the device's paths on it: the device's autocast kernels (registered
in every build), composite operators' device decisions, the fused optimizers' device checks. The
rest of this module keeps PyTorch from doing what it cannot do without that device: initialising
CUDA for a factory call (:class:`NoDeviceInit`), entering a CUDA device guard in a few Python
bindings (:func:`guarded`), running CUDA autograd (:func:`without_device_autograd`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_DK = torch._C.DispatchKey
#: Excluded where the replay runs operators itself, so that no Python mode sees them again.
PYTHON_KEYS = torch._C.DispatchKeySet(_DK.Python) | torch._C.DispatchKeySet(_DK.PythonTLSSnapshot)


class Proxy(torch.Tensor):
    """A tensor on the predicted device whose data is a meta tensor (``_meta``)."""

    _meta: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]

    @staticmethod
    def __new__(cls, inner: torch.Tensor, device: torch.device) -> Proxy:
        proxy = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, inner.size(), strides=inner.stride(), storage_offset=inner.storage_offset(),
            dtype=inner.dtype, layout=inner.layout, device=device,
            requires_grad=inner.requires_grad)
        proxy._meta = inner
        return proxy  # type: ignore[no-any-return]

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (),  # type: ignore[override]
                           kwargs: Any = None) -> Any:
        raise RuntimeError(f"{func}: a memory-replay tensor escaped the replay")

    def __repr__(self) -> str:  # type: ignore[override]  # the default would read values
        return f"Proxy({tuple(self.shape)}, {self.dtype}, {self.device})"

    # A few hand-written Python bindings enter a device guard for the tensor's device before
    # dispatching (indexing, ``contiguous``, ``to``/``cuda``): a build without CUDA has no CUDA
    # guard. They run here on a CPU-device twin of the proxy (the same meta tensor inside), whose
    # guard does nothing; the operators they dispatch come back as the device's tensors.
    def __getitem__(self, index: Any) -> Any:
        return torch.Tensor.__getitem__(guarded(self), guarded(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        torch.Tensor.__setitem__(guarded(self), guarded(index), guarded(value))

    def contiguous(self, memory_format: torch.memory_format = torch.contiguous_format) -> Any:
        return torch.Tensor.contiguous(guarded(self), memory_format=memory_format)

    def to(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # moving to the device it is on is a no-op; dtype and format changes dispatch as usual
        rest = [a for a in args if not _on(a, self.device)]
        if _on(kwargs.get("device"), self.device):
            kwargs = {k: v for k, v in kwargs.items() if k != "device"}
        if not rest and not kwargs:
            return self
        return torch.Tensor.to(guarded(self), *rest, **kwargs)

    def cuda(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self if self.device.type == "cuda" else torch.Tensor.cuda(self, *args, **kwargs)

    def cpu(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self if self.device.type == "cpu" else torch.Tensor.cpu(self, *args, **kwargs)

    def new_tensor(self, data: Any, dtype: torch.dtype | None = None,  # type: ignore[override]
                   **kwargs: Any) -> Any:
        made = torch.tensor(data, dtype=dtype or self.dtype, device="meta")
        return Proxy(made, self.device)


def guarded(value: Any) -> Any:
    """``value`` with each CUDA proxy replaced by a CPU-device twin around the same meta tensor."""
    if isinstance(value, Proxy):
        return Proxy(value._meta, _CPU) if value.device.type == "cuda" else value
    if isinstance(value, list | tuple):
        return type(value)(guarded(v) for v in value)
    return value


def _on(value: Any, device: torch.device) -> bool:
    """Does ``value`` (a ``to`` argument) name ``device``'s type?"""
    if isinstance(value, str | torch.device):
        try:
            return torch.device(value).type == device.type
        except RuntimeError:
            return False
    return False


_CPU = torch.device("cpu")


class NoDeviceInit(TorchDispatchMode):
    """Keeps PyTorch's Python bindings from initialising CUDA for ``torch.empty(…, device=x.device)``.

    The bindings call ``torch::utils::device_lazy_init`` before any dispatch mode sees a factory
    call; without CUDA that raises. It returns early when a mode sits in the fake-tensor slot
    (``torch/csrc/utils/device_lazy_init.cpp``), so this mode sits there. It never handles an
    operator: the recorder above it takes them all and runs them below every mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mode_key = torch._C._TorchDispatchModeKey.FAKE

    @classmethod
    def is_infra_mode(cls) -> bool:
        return True

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        raise RuntimeError(f"{func} reached the replay's bottom mode")


def unwrap(value: Any) -> Any:
    if isinstance(value, Proxy):
        return value._meta
    if isinstance(value, list | tuple):
        return type(value)(unwrap(v) for v in value)
    return value


def tensors_in(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [t for v in out for t in tensors_in(v)]
    return []


def wrap(out: Any, device: torch.device) -> Any:
    if isinstance(out, torch.Tensor):
        return Proxy(out, device)
    if isinstance(out, list | tuple):
        return type(out)(wrap(v, device) for v in out)
    return out


@contextmanager
def without_device_autograd(device: torch.device) -> Iterator[None]:
    """Autograd (and view tracking) off for the proxies; the meta tensors inside keep theirs."""
    key = {"cuda": _DK.AutogradCUDA, "cpu": _DK.AutogradCPU}[device.type]
    excluded = torch._C.DispatchKeySet(key) | torch._C.DispatchKeySet(_DK.ADInplaceOrView)
    with torch._C._ExcludeDispatchKeyGuard(excluded):
        yield


__all__ = ["PYTHON_KEYS", "NoDeviceInit", "Proxy", "guarded", "tensors_in",
           "unwrap", "without_device_autograd", "wrap"]
