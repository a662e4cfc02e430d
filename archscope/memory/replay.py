"""The replay: a real training step run on meta tensors that present themselves as the device's.

How it works:

* Every parameter, buffer and input is a meta tensor (no memory, no values) wrapped in a
  :class:`_Proxy` whose device is the one predicted (``cuda`` or ``cpu``, even in a CPU-only
  build of PyTorch). The user's model is not changed: its parameters are swapped for the proxies
  during the replay and restored afterwards (the engine's stand-in mechanism).
* Because the proxies carry that device's dispatch keys, PyTorch's own code takes the device's
  paths: the CUDA (or CPU) **autocast policy** runs on them (its kernels are registered in every
  build), composite operators decide as they would on the device (dropout keeps a 1-byte mask on
  CUDA and a float noise tensor on the CPU; the fused optimizers accept the parameters), and
  attention picks the device's kernel (:func:`_attention_choice`).
* Autograd is switched off for the proxies (their autograd key is excluded while the forward
  runs: CUDA autograd would need a CUDA device guard) and runs instead on the meta tensors
  inside, in :class:`_Recorder`'s ``__torch_dispatch__``: each operator on proxies is run again
  on their meta tensors with autograd on, so the backward graph, the tensors it saves and the
  backward pass are PyTorch's own.
* :class:`_Recorder` sees every operator of the step (forward, loss, backward, optimizer) and
  each new storage it returns (an allocation); a weak reference to each storage reports when it
  is freed, the mechanism of ``torch.distributed._tools.mem_tracker``. What a storage is for is
  known from the phase and from hooks: saved-tensor hooks (activations), gradient-accumulation
  hooks (gradients), the optimizer's state after its step, autocast's weight casts.

The result is a list of events (allocation, free, re-categorisation) that
:mod:`archscope.memory.timeline` turns into bytes as the device counts them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from archscope._modes import kept_modes
from archscope.memory import step as training
from archscope.memory.result import CATEGORIES, PHASES
from archscope.memory.timeline import ALLOC, FREE, RECAT
from archscope.trace import (
    _DEFERRED,
    _autograd_on,
    _Deferred,
    _kept_tensor_attributes,
    _meta_state,
    _NoSympyObject,
    _swapped,
)

_CAT = {name: i for i, name in enumerate(CATEGORIES)}
_PHASE = {name: i for i, name in enumerate(PHASES)}
_DK = torch._C.DispatchKey
_IMPLICIT = _DK.CompositeImplicitAutograd
#: Excluded where the replay runs operators itself, so that no Python mode sees them again.
_PYTHON_KEYS = torch._C.DispatchKeySet(_DK.Python) | torch._C.DispatchKeySet(_DK.PythonTLSSnapshot)

#: An event: (kind, storage id, bytes, category, step, phase, layer index).
Event = tuple[int, int, int, int, int, int, int]


class _Proxy(torch.Tensor):
    """A tensor on the predicted device whose data is a meta tensor (``_meta``)."""

    _meta: torch.Tensor
    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]

    @staticmethod
    def __new__(cls, inner: torch.Tensor, device: torch.device) -> _Proxy:
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
        return f"_Proxy({tuple(self.shape)}, {self.dtype}, {self.device})"

    # A few hand-written Python bindings enter a device guard for the tensor's device before
    # dispatching (indexing, ``contiguous``, ``to``/``cuda``): a build without CUDA has no CUDA
    # guard. They run here on a CPU-device twin of the proxy (the same meta tensor inside), whose
    # guard does nothing; the operators they dispatch come back as the device's tensors.
    def __getitem__(self, index: Any) -> Any:
        return torch.Tensor.__getitem__(_guarded(self), _guarded(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        torch.Tensor.__setitem__(_guarded(self), _guarded(index), _guarded(value))

    def contiguous(self, memory_format: torch.memory_format = torch.contiguous_format) -> Any:
        return torch.Tensor.contiguous(_guarded(self), memory_format=memory_format)

    def to(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # moving to the device it is on is a no-op; dtype and format changes dispatch as usual
        rest = [a for a in args if not _on(a, self.device)]
        if _on(kwargs.get("device"), self.device):
            kwargs = {k: v for k, v in kwargs.items() if k != "device"}
        if not rest and not kwargs:
            return self
        return torch.Tensor.to(_guarded(self), *rest, **kwargs)

    def cuda(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self if self.device.type == "cuda" else torch.Tensor.cuda(self, *args, **kwargs)

    def cpu(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self if self.device.type == "cpu" else torch.Tensor.cpu(self, *args, **kwargs)

    def new_tensor(self, data: Any, dtype: torch.dtype | None = None,  # type: ignore[override]
                   **kwargs: Any) -> Any:
        made = torch.tensor(data, dtype=dtype or self.dtype, device="meta")
        return _Proxy(made, self.device)


def _guarded(value: Any) -> Any:
    """``value`` with each CUDA proxy replaced by a CPU-device twin around the same meta tensor."""
    if isinstance(value, _Proxy):
        return _Proxy(value._meta, _CPU) if value.device.type == "cuda" else value
    if isinstance(value, list | tuple):
        return type(value)(_guarded(v) for v in value)
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


class _NoDeviceInit(TorchDispatchMode):
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


def _unwrap(value: Any) -> Any:
    if isinstance(value, _Proxy):
        return value._meta
    if isinstance(value, list | tuple):
        return type(value)(_unwrap(v) for v in value)
    return value


def _has_proxy(value: Any) -> bool:
    if isinstance(value, _Proxy):
        return True
    if isinstance(value, list | tuple):
        return any(_has_proxy(v) for v in value)
    return False


@dataclass
class Recording:
    """What a replay saw: its events, the layer names they refer to, and what it noted."""

    events: list[Event] = field(default_factory=list)
    layers: list[str] = field(default_factory=lambda: [""])
    attention: list[str] = field(default_factory=list)
    #: every operator run, in order: (phase, ``aten`` name with overload, output dtypes)
    ops: list[tuple[int, str, tuple[torch.dtype, ...]]] = field(default_factory=list)


class _Recorder(TorchDispatchMode):
    """Runs the step's operators on the proxies' meta tensors and records every storage."""

    def __init__(self, device: torch.device, autocast_dtype: torch.dtype | None,
                 blas_workspace: int = 0) -> None:
        super().__init__()
        self.device = device
        self.blas_workspace = blas_workspace  # bytes, allocated at the first matrix product
        self.blas_threads: set[str] = set()
        self.autocast_dtype = autocast_dtype
        self.recording = Recording()
        self.events = self.recording.events
        self.step = 1
        self.phase = _PHASE["setup"]
        self.layer = 0
        self.layer_ids: dict[str, int] = {"": 0}
        self.live: dict[int, tuple[int, Any]] = {}  # storage key → (storage id, weak reference)
        self.category: dict[int, int] = {}  # storage id → category
        self.saved: set[int] = set()  # storage keys packed for backward, not yet allocated
        self.weights: set[int] = set()  # ids of the weight proxies (autocast's cache keys)
        self.casts: dict[int, _Proxy] = {}  # autocast's weight cache: id(weight) → its cast
        self.casting = False  # inside the autocast region (forward and loss)
        self.tls: tuple[Any, Any] | None = None
        self.nodes: set[int] = set()
        self.closed = False
        self._next_id = 0
        self._implicit: dict[Any, bool] = {}

    # -- storages -------------------------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str | int) -> int | None:
        """Record ``tensor``'s storage if it is new (returns its id), else re-categorise nothing."""
        inner = tensor._meta if isinstance(tensor, _Proxy) else tensor
        if inner.device.type != "meta":
            return None  # real CPU scalars (an optimizer's step counters): not device memory
        storage = inner.untyped_storage()
        key = storage._cdata
        found = self.live.get(key)
        if found is not None:
            return found[0]
        cat = _CAT[category] if isinstance(category, str) else category
        if key in self.saved:
            self.saved.discard(key)
            if cat == _CAT["temporaries"]:
                cat = _CAT["activations"]
        ident = self._next_id
        self._next_id += 1
        ref = weakref.ref(storage, self._freed_callback(ident, key))
        self.live[key] = (ident, ref)
        self.category[ident] = cat
        self.events.append((ALLOC, ident, storage.nbytes(), cat, self.step, self.phase,
                            self.layer))
        return ident

    def _freed_callback(self, ident: int, key: int) -> Callable[[Any], None]:
        def freed(_: Any) -> None:
            if self.closed:
                return
            entry = self.live.get(key)
            if entry is not None and entry[0] == ident:
                del self.live[key]
            self.events.append((FREE, ident, 0, self.category.pop(ident, 0), self.step,
                                self.phase, self.layer))
        return freed

    def recategorise(self, tensor: torch.Tensor, category: str) -> None:
        inner = tensor._meta if isinstance(tensor, _Proxy) else tensor
        if inner.device.type != "meta":
            return
        found = self.live.get(inner.untyped_storage()._cdata)
        cat = _CAT[category]
        if found is None:
            self.track(inner, cat)
            return
        ident = found[0]
        if self.category.get(ident) != cat:
            self.category[ident] = cat
            self.events.append((RECAT, ident, 0, cat, self.step, self.phase, self.layer))

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        """Saved-tensor hook: a tensor autograd keeps for backward is an activation."""
        if tensor.device.type == "meta":
            key = tensor.untyped_storage()._cdata
            found = self.live.get(key)
            if found is None:
                self.saved.add(key)  # an output: recorded when the operator returns
            elif self.category.get(found[0]) == _CAT["temporaries"]:
                self.recategorise(tensor, "activations")
        return tensor

    # -- layers ---------------------------------------------------------------------------------
    def layer_id(self, name: str) -> int:
        found = self.layer_ids.get(name)
        if found is None:
            found = self.layer_ids[name] = len(self.recording.layers)
            self.recording.layers.append(name)
        return found

    def _watch_node(self, tensor: torch.Tensor) -> None:
        """Make the backward of ``tensor``'s operator report the layer that ran it."""
        node = tensor.grad_fn
        if node is None or id(node) in self.nodes:
            return
        self.nodes.add(id(node))
        layer = self.layer

        def entered(grad_outputs: Any) -> None:
            self.layer = layer

        node.register_prehook(entered)

    # -- dispatch -------------------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        proxied = any(issubclass(t, _Proxy) for t in types)
        name = _ATTENTION.get(func.__name__.split(".")[0])
        if name is not None and name not in self.recording.attention:
            self.recording.attention.append(name)
        if (func is torch.ops.aten.scaled_dot_product_attention.default and proxied
                and self.device.type == "cuda"):
            out = self._cuda_attention(*args, **kwargs)
            if out is not None:
                return out
        if self._is_implicit(func):
            # A composite operator reaches the mode undecomposed when autograd is off for the
            # proxies: decompose it here, on the proxies, as autograd would have.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        if func in _NO_META_IN_PLACE:
            return None  # updates its arguments in place: allocates nothing
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == self.device.type:
            proxied = True
            kwargs = {**kwargs, "device": torch.device("meta")}
        if not proxied:
            if self.blas_workspace and func in _BLAS:
                self._blas_workspace()
            with torch._C._ExcludeDispatchKeyGuard(_PYTHON_KEYS):  # below every mode
                out = func(*args, **kwargs)
            self._record(func, out, (), False)
            return out
        if (func is torch.ops.aten._to_copy.default and self.autocast_dtype is not None
                and isinstance(args[0], _Proxy) and id(args[0]) in self.weights
                and kwargs.get("dtype") == self.autocast_dtype and self.casting):
            # autocast's cast cache (cached_cast in aten/src/ATen/autocast_mode.cpp): one cast
            # per weight per autocast region, kept until the region ends
            cached = self.casts.get(id(args[0]))
            if cached is not None:
                return cached
            cast = self._run(func, args, kwargs, "weight_copies")
            self.casts[id(args[0])] = cast
            return cast
        return self._run(func, args, kwargs, None)

    def _run(self, func: Any, args: Any, kwargs: Any, category: str | None) -> Any:
        if self.blas_workspace and func in _BLAS:
            self._blas_workspace()
        inner_args, inner_kwargs = _unwrap(args), {k: _unwrap(v) for k, v in kwargs.items()}
        assert self.tls is not None
        with torch._C._ForceDispatchKeyGuard(*self.tls):
            out = func(*inner_args, **inner_kwargs)
        self._record(func, out, inner_args, True, category)
        return _wrap(out, self.device)

    def _cuda_attention(self, query: Any, key: Any, value: Any, attn_mask: Any = None,
                        dropout_p: float = 0.0, is_causal: bool = False, *,
                        scale: float | None = None, enable_gqa: bool = False) -> Any:
        """``scaled_dot_product_attention`` as CUDA runs it: the fused kernel its choice names
        (see :func:`_cuda_attention_kernel`), called as ``attention.cpp`` calls it; ``None`` for
        the math path, which then decomposes as on any device."""
        kernel = _cuda_attention_kernel(query, key, attn_mask, enable_gqa)
        with self:
            if kernel == "flash":
                return torch.ops.aten._scaled_dot_product_flash_attention(
                    query, key, value, dropout_p, is_causal, False, scale=scale)[0]
            if kernel == "memory-efficient":
                if attn_mask is not None and attn_mask.dtype == torch.bool:
                    # preprocess_mask: a boolean mask becomes an additive one of the query's type
                    attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype,
                                            device=query.device).masked_fill(
                        attn_mask.logical_not(), float("-inf"))
                grad = query.requires_grad or key.requires_grad or value.requires_grad
                return torch.ops.aten._scaled_dot_product_efficient_attention(
                    query, key, value, attn_mask, grad, dropout_p, is_causal, scale=scale)[0]
        return None

    def as_state_from_birth(self, tensors: list[torch.Tensor], since: int) -> None:
        """Optimizer state: the storages of ``tensors`` allocated since event ``since`` were state
        from the start (the optimizer made them as state); older ones are re-categorised now."""
        cat = _CAT["optimizer_state"]
        born: set[int] = set()
        for t in tensors:
            inner = t._meta if isinstance(t, _Proxy) else t
            if inner.device.type != "meta":
                continue
            found = self.live.get(inner.untyped_storage()._cdata)
            if found is None:
                continue
            born.add(found[0])
        for i in range(since, len(self.events)):
            kind, ident, size, _, step, phase, layer = self.events[i]
            if kind == ALLOC and ident in born:
                self.events[i] = (kind, ident, size, cat, step, phase, layer)
                self.category[ident] = cat
        for t in tensors:
            self.recategorise(t, "optimizer_state")

    def end_autocast(self) -> None:
        """Where autocast clears its cache: the weights' casts are let go."""
        self.casting = False
        self.casts.clear()

    def _blas_workspace(self) -> None:
        """cuBLAS's workspace: made by the caching allocator on a thread's first matrix product
        and kept. It is keyed by (cuBLAS handle, stream) and the handles are per thread, so the
        backward pass, which autograd runs on its own thread for a CUDA device, makes a second
        one (``cublas_handle_stream_to_workspace`` in ``aten/src/ATen/cuda/CublasHandlePool.cpp``).
        """
        thread = "autograd" if self.phase == _PHASE["backward"] else "main"
        if thread in self.blas_threads:
            return
        self.blas_threads.add(thread)
        self.events.append((ALLOC, self._next_id, self.blas_workspace, _CAT["workspace"],
                            self.step, self.phase, self.layer))
        self._next_id += 1

    def _record(self, func: Any, out: Any, inputs: Any, proxied: bool,
                category: str | None = None) -> None:
        cat = _CAT[category] if category is not None else _CAT["temporaries"]
        tensors = _tensors(out)
        self.recording.ops.append((self.phase, func.__name__, tuple(t.dtype for t in tensors)))
        for t in tensors:
            self.track(t, cat)
            if proxied and t.requires_grad:
                self._watch_node(t)

    def _is_implicit(self, func: Any) -> bool:
        found = self._implicit.get(func)
        if found is None:
            found = self._implicit[func] = torch._C._dispatch_has_kernel_for_dispatch_key(
                func.name(), _IMPLICIT)
        return found


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [t for v in out for t in _tensors(v)]
    return []


def _wrap(out: Any, device: torch.device) -> Any:
    if isinstance(out, torch.Tensor):
        return _Proxy(out, device)
    if isinstance(out, list | tuple):
        return type(out)(_wrap(v, device) for v in out)
    return out


#: In-place kernels without a meta implementation (fused SGD): they allocate nothing, so the
#: replay skips them.
_NO_META_IN_PLACE = frozenset(
    getattr(torch.ops.aten._fused_sgd_, overload)
    for overload in ("default", "tensor_lr") if hasattr(torch.ops.aten._fused_sgd_, overload))

#: Operators that run on cuBLAS (matrix products).
_BLAS = frozenset(
    getattr(torch.ops.aten, name).default
    for name in ("mm", "addmm", "bmm", "baddbmm", "addbmm", "_addmm_activation"))

#: The attention kernels, by the operator that runs them.
_ATTENTION = {
    "_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_efficient_attention": "memory-efficient",
    "_scaled_dot_product_cudnn_attention": "cuDNN",
    "_scaled_dot_product_attention_math": "math",
}


def _cuda_attention_kernel(query: torch.Tensor, key: torch.Tensor, mask: Any,
                           enable_gqa: bool) -> str:
    """The kernel CUDA's ``_fused_sdp_choice`` picks, which a CPU-only build of PyTorch lacks.

    Modelled on ``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp`` for sm80 and later
    (A100, L4, H100, H200): FlashAttention-2 for fp16/bf16 inputs with a head dimension that is a
    multiple of 8 and at most 256, no attention mask and equal numbers of heads; else the
    memory-efficient kernel when the head dimension is a multiple of 8 (float32 too, masks
    allowed); else the math path. Where cuDNN attention comes first (some Hopper and Blackwell
    set-ups), it saves what flash saves (the output and one float32 log-sum-exp per query row),
    so the memory is the same.
    """
    head = query.shape[-1]
    aligned = head % 8 == 0 and key.shape[-1] == head and query.dim() == 4
    same_heads = not enable_gqa or query.shape[1] == key.shape[1]
    if (query.dtype in (torch.float16, torch.bfloat16) and aligned and head <= 256
            and mask is None and same_heads):
        return "flash"
    if aligned and same_heads and query.dtype in (torch.float16, torch.bfloat16, torch.float32):
        return "memory-efficient"
    return "math"


@contextmanager
def _layers(model: nn.Module, recorder: _Recorder) -> Iterator[None]:
    """Forward hooks that keep ``recorder.layer`` on the module running."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[int] = []
    handles = []

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(recorder.layer)
        recorder.layer = recorder.layer_id(names.get(id(module), ""))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        recorder.layer = stack.pop() if stack else 0

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        # not always_call: where a module raises, the layer stays the one that failed
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


#: Beyond the engine's deferred modules: the meta kernel of a dtype conversion (autocast's casts)
#: imports ``Max`` from ``torch.utils._sympy.functions`` without using it for concrete shapes;
#: importing it means importing sympy (about a second).
_MORE_DEFERRED: dict[str, dict[str, Any]] = {
    "torch.utils._sympy.functions": {"Max": _NoSympyObject},
}


@contextmanager
def _deferred_imports() -> Iterator[None]:
    """The engine's stand-ins for heavy modules (``archscope.trace._Deferred``), and one more."""
    import importlib
    import sys

    importlib.import_module("torch.utils._sympy")  # an empty package: the stand-in's parent
    stubs: list[_Deferred] = []
    stubs += [_Deferred(name, plain, stubs) for name, plain in {**_DEFERRED, **_MORE_DEFERRED}.items()
              if name not in sys.modules]
    for stub in stubs:
        stub._install()
        for attr in stub._plain:  # looked up once: meta kernels ask for these thousands of times
            setattr(stub, attr, stub.__getattr__(attr))
    try:
        yield
    finally:
        for stub in stubs:
            stub._restore()


@contextmanager
def _without_device_autograd(device: torch.device) -> Iterator[None]:
    """Autograd (and view tracking) off for the proxies; the meta tensors inside keep theirs."""
    key = {"cuda": _DK.AutogradCUDA, "cpu": _DK.AutogradCPU}[device.type]
    excluded = torch._C.DispatchKeySet(key) | torch._C.DispatchKeySet(_DK.ADInplaceOrView)
    with torch._C._ExcludeDispatchKeyGuard(excluded):
        yield


def replay(model: nn.Module, input_shape: tuple[int, ...], *, batch: int, dtype: torch.dtype,
           precision: str, optimizer: str, impl: str, device: torch.device,
           blas_workspace: int = 0, defer: bool = True) -> Recording:
    """Run two training steps of ``model`` on a batch of ``batch`` × ``input_shape`` and record.

    The first step creates the optimizer state; the second is every later step. The model runs
    in training mode; it is left as it was.
    """
    autocast_dtype = training.AUTOCAST_DTYPES.get(precision)
    recorder = _Recorder(device, autocast_dtype, blas_workspace)
    with ExitStack() as stack:
        stack.enter_context(_autograd_on())
        stack.enter_context(kept_modes(model))
        stack.enter_context(_kept_tensor_attributes(model))
        if defer:
            stack.enter_context(_deferred_imports())
        # The dispatch state the meta tensors' operators run in: the caller's, with autograd on
        # and every Python mode out of the way (the recorder records them itself).
        recorder.tls = (torch._C._dispatch_tls_local_include_set(),
                        torch._C._dispatch_tls_local_exclude_set() | _PYTHON_KEYS)
        swaps, _ = _meta_state(model)
        proxies: dict[int, _Proxy] = {}
        proxied_swaps = []
        for module, kind, name, stand_in in swaps:
            if id(stand_in) not in proxies:
                proxies[id(stand_in)] = _Proxy(stand_in, device)
            proxied_swaps.append((module, kind, name, proxies[id(stand_in)]))
        stack.enter_context(_swapped(proxied_swaps))
        model.train()
        pairs = [(p, p._meta) for p in proxies.values()]
        recorder.weights = {id(p) for p, inner in pairs if isinstance(inner, nn.Parameter)}
        stack.enter_context(_NoDeviceInit())
        stack.enter_context(recorder)
        stack.enter_context(_layers(model, recorder))
        stack.enter_context(torch.autograd.graph.saved_tensors_hooks(recorder.pack, _same))
        for _, inner in pairs:
            recorder.recategorise(inner, "weights")
        x = _Proxy(torch.empty((batch, *input_shape), dtype=dtype, device="meta"), device)
        recorder.recategorise(x, "inputs")
        params = [p for p in training.trainable(model) if isinstance(p, _Proxy)]
        opt = None
        if optimizer != "none" and params:
            opt = training.make_optimizer(optimizer, impl, params)
            for t in training.state_tensors(opt):
                recorder.recategorise(t, "optimizer_state")
        scaler = training.LossScaler(device) if precision == "fp16" else None
        setup_end = len(recorder.events)
        try:
            _steps(model, x, params, opt, scaler, recorder, device, autocast_dtype, setup_end)
        except Exception as exc:
            raise StepFailed(PHASES[recorder.phase],
                             recorder.recording.layers[recorder.layer], exc) from exc
        finally:
            recorder.closed = True  # what the frame's end frees is not part of the step
            for p in params:
                p.grad = None
                p._meta.grad = None
    return recorder.recording


class StepFailed(Exception):
    """The replayed step raised ``cause`` in ``phase``, in ``layer`` (``""``: outside a module)."""

    def __init__(self, phase: str, layer: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.phase, self.layer, self.cause = phase, layer, cause


def _steps(model: nn.Module, x: _Proxy, params: list[_Proxy], opt: torch.optim.Optimizer | None,
           scaler: training.LossScaler | None, recorder: _Recorder, device: torch.device,
           autocast_dtype: torch.dtype | None, setup_end: int) -> None:
    """Step 1 for real; step 2 from step 1's forward and backward and a real optimizer step."""
    # Step 1, for real.
    recorder.phase = _PHASE["forward"]
    forward_start = len(recorder.events)
    with _without_device_autograd(device), \
            training.autocast(device.type, autocast_dtype, recorder.end_autocast):
        recorder.casting = autocast_dtype is not None
        output = model(x)
        recorder.phase, recorder.layer = _PHASE["loss"], 0
        mark = len(recorder.events)
        targets = training.make_targets(output, device)
        for t in targets:
            recorder.recategorise(t, "inputs")
        # bench makes its targets before the first step: so does the timeline
        made = recorder.events[mark:]
        del recorder.events[mark:]
        recorder.events[setup_end:setup_end] = [
            (kind, ident, size, cat, 1, _PHASE["setup"], 0)
            for kind, ident, size, cat, *_ in made]
        forward_start += len(made)
        loss = training.loss_of(output, targets)
        del output
    if scaler is not None:
        with _without_device_autograd(device):
            loss = scaler.scale(loss)
    recorder.phase = _PHASE["backward"]
    _backward(loss, params, recorder)
    del loss
    backward_end = len(recorder.events)
    recorder.phase, recorder.layer = _PHASE["optimizer"], 0
    if opt is not None:
        _optimizer_phase(opt, params, scaler, recorder, device)
    # Step 2 is step 1's forward and backward again (the same operators on the same sizes),
    # after zero_grad freed the gradients, then an optimizer step that finds its state made:
    # that step is run for real.
    step_two = [(FREE, ident, 0, cat, 2, _PHASE["zero_grad"], 0)
                for ident, cat in recorder.category.items() if cat == _CAT["gradients"]]
    step_two += _again(recorder.events[forward_start:backward_end], recorder)
    recorder.step = 2
    mark = len(recorder.events)
    if opt is not None:
        _optimizer_phase(opt, params, scaler, recorder, device)
    recorder.closed = True
    recorder.events[mark:mark] = step_two


def _optimizer_phase(opt: torch.optim.Optimizer, params: list[_Proxy],
                     scaler: training.LossScaler | None, recorder: _Recorder,
                     device: torch.device) -> None:
    """``optimizer.step()`` (through the loss scaler for fp16) on the gradients backward made."""
    for p in params:
        grad = p._meta.grad
        p.grad = None if grad is None else _Proxy(grad, device)
    start = len(recorder.events)
    if scaler is not None:
        scaler.step(opt)
    else:
        training.optimizer_step(opt)
    state = [*training.state_tensors(opt), *(scaler.persistent() if scaler is not None else [])]
    recorder.as_state_from_birth(state, start)




def _again(events: list[Event], recorder: _Recorder) -> list[Event]:
    """``events`` (a forward and backward) as they recur in the next step: new storages, step 2.

    Storages made outside ``events`` and freed inside them were freed in step 1 already, and
    cuBLAS's workspace, once made, stays: those events do not recur.
    """
    renamed: dict[int, int] = {}
    out: list[Event] = []
    for kind, ident, size, cat, _, phase, layer in events:
        if kind == ALLOC:
            if cat == _CAT["workspace"]:
                continue
            renamed[ident] = recorder._next_id
            recorder._next_id += 1
        elif ident not in renamed:
            continue
        out.append((kind, renamed[ident], size, cat, 2, phase, layer))
    return out


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _backward(loss: torch.Tensor, params: list[_Proxy], recorder: _Recorder) -> None:
    """``loss.backward()`` on the meta graph; each gradient is recorded as it lands."""
    handles = []
    for p in params:
        inner = p._meta

        def landed(param: torch.Tensor) -> None:
            if param.grad is not None:
                recorder.recategorise(param.grad, "gradients")

        handles.append(inner.register_post_accumulate_grad_hook(landed))
    try:
        inner_loss = loss._meta if isinstance(loss, _Proxy) else loss
        if inner_loss.requires_grad:
            inner_loss.backward()
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["ALLOC", "FREE", "RECAT", "Event", "Recording", "replay"]
