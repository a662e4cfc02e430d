"""The recorder: a dispatch mode that runs the step's operators and records every storage.

Each operator on :class:`~archscope.memory.proxy.Proxy` tensors is run again on their meta tensors
with autograd on (so the backward graph, what it saves and the backward pass are PyTorch's own),
and each new storage an operator returns is an allocation; a weak reference to it reports when it
is freed: the mechanism of ``torch.distributed._tools.mem_tracker``. What a storage is for comes
from the phase and from hooks: saved-tensor hooks (activations), autocast's weight casts, the
gradients' accumulation hooks and the optimizer's state (set by the replay).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from archscope.memory.proxy import PYTHON_KEYS, Proxy, tensors_in, unwrap, wrap
from archscope.memory.result import CATEGORIES, PHASES
from archscope.memory.timeline import ALLOC, FREE, RECAT

CAT = {name: i for i, name in enumerate(CATEGORIES)}
PHASE = {name: i for i, name in enumerate(PHASES)}
_IMPLICIT = torch._C.DispatchKey.CompositeImplicitAutograd

#: An event: (kind, storage id, bytes, category, step, phase, layer index).
Event = tuple[int, int, int, int, int, int, int]


@dataclass
class Recording:
    """What a replay saw: its events, the layer names they refer to, and what it noted."""

    events: list[Event] = field(default_factory=list)
    layers: list[str] = field(default_factory=lambda: [""])
    attention: list[str] = field(default_factory=list)
    #: every operator run, in order: (phase, ``aten`` name with overload, output dtypes)
    ops: list[tuple[int, str, tuple[torch.dtype, ...]]] = field(default_factory=list)


class Recorder(TorchDispatchMode):
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
        self.phase = PHASE["setup"]
        self.layer = 0
        self.layer_ids: dict[str, int] = {"": 0}
        self.live: dict[int, tuple[int, Any]] = {}  # storage key → (storage id, weak reference)
        self.category: dict[int, int] = {}  # storage id → category
        self.saved: set[int] = set()  # storage keys packed for backward, not yet allocated
        self.weights: set[int] = set()  # ids of the weight proxies (autocast's cache keys)
        self.casts: dict[int, Proxy] = {}  # autocast's weight cache: id(weight) → its cast
        self.casting = False  # inside the autocast region (forward and loss)
        self.tls: tuple[Any, Any] | None = None
        self.nodes: set[int] = set()
        self.closed = False
        self._next_id = 0
        self._implicit: dict[Any, bool] = {}

    # -- storages -------------------------------------------------------------------------------
    def track(self, tensor: torch.Tensor, category: str | int) -> int | None:
        """Record ``tensor``'s storage if it is new (returns its id), else re-categorise nothing."""
        inner = tensor._meta if isinstance(tensor, Proxy) else tensor
        if inner.device.type != "meta":
            return None  # real CPU scalars (an optimizer's step counters): not device memory
        storage = inner.untyped_storage()
        key = storage._cdata
        found = self.live.get(key)
        if found is not None:
            return found[0]
        cat = CAT[category] if isinstance(category, str) else category
        if key in self.saved:
            self.saved.discard(key)
            if cat == CAT["temporaries"]:
                cat = CAT["activations"]
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
        inner = tensor._meta if isinstance(tensor, Proxy) else tensor
        if inner.device.type != "meta":
            return
        found = self.live.get(inner.untyped_storage()._cdata)
        cat = CAT[category]
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
            elif self.category.get(found[0]) == CAT["temporaries"]:
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
        proxied = any(issubclass(t, Proxy) for t in types)
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
            # proxies: decompose it here, on the proxies, as autograd would have, with PyTorch's
            # C++ kernel as eager mode runs it. (``func.decompose`` would prefer a Python
            # decomposition registered for tracing: dropout's always takes native_dropout and
            # its 1-byte mask, where the CPU's kernel keeps a float32 one.)
            with self:
                return func._op_dk(_IMPLICIT, *args, **kwargs)
        if func in _NO_META_IN_PLACE:
            return None  # updates its arguments in place: allocates nothing
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == self.device.type:
            proxied = True
            kwargs = {**kwargs, "device": torch.device("meta")}
        if not proxied:
            if self.blas_workspace and func in _BLAS:
                self._blas_workspace()
            with torch._C._ExcludeDispatchKeyGuard(PYTHON_KEYS):  # below every mode
                out = func(*args, **kwargs)
            self._record(func, out, (), False)
            return out
        if (func is torch.ops.aten._to_copy.default and self.autocast_dtype is not None
                and isinstance(args[0], Proxy) and id(args[0]) in self.weights
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
        inner_args, inner_kwargs = unwrap(args), {k: unwrap(v) for k, v in kwargs.items()}
        assert self.tls is not None
        with torch._C._ForceDispatchKeyGuard(*self.tls):
            out = func(*inner_args, **inner_kwargs)
        self._record(func, out, inner_args, True, category)
        return wrap(out, self.device)

    def _cuda_attention(self, query: Any, key: Any, value: Any, attn_mask: Any = None,
                        dropout_p: float = 0.0, is_causal: bool = False, *,
                        scale: float | None = None, enable_gqa: bool = False) -> Any:
        """``scaled_dot_product_attention`` as CUDA runs it: the fused kernel its choice names
        (see :func:`cuda_attention_kernel`), called as ``attention.cpp`` calls it; ``None`` for
        the math path, which then decomposes as on any device."""
        kernel = cuda_attention_kernel(query, key, attn_mask, enable_gqa)
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
        cat = CAT["optimizer_state"]
        born: set[int] = set()
        for t in tensors:
            inner = t._meta if isinstance(t, Proxy) else t
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
        thread = "autograd" if self.phase == PHASE["backward"] else "main"
        if thread in self.blas_threads:
            return
        self.blas_threads.add(thread)
        self.events.append((ALLOC, self._next_id, self.blas_workspace, CAT["workspace"],
                            self.step, self.phase, self.layer))
        self._next_id += 1

    def _record(self, func: Any, out: Any, inputs: Any, proxied: bool,
                category: str | None = None) -> None:
        cat = CAT[category] if category is not None else CAT["temporaries"]
        tensors = tensors_in(out)
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


def cuda_attention_kernel(query: torch.Tensor, key: torch.Tensor, mask: Any,
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


__all__ = ["CAT", "PHASE", "Event", "Recorder", "Recording", "cuda_attention_kernel"]
