"""One traced forward pass on the meta device: module hooks and a function mode record every
call in call order, with its shapes and the records that produced its inputs.

* Forward pre/post hooks on every module record each call (a module called twice gives two
  frames), with its input and output shapes. A model without child modules that runs a forward
  PyTorch defines (a bare ``nn.Conv2d``) is one frame, named after its class
  (:func:`root_row_name`).
* A :class:`torch.overrides.TorchFunctionMode` records the functional ops a container calls
  directly (the residual ``add``, ``flatten``, ``cat`` …) and, together with the hooks, which
  frame produced each tensor, so the frames form a data-flow graph. It also sees which
  parameters each op reads, so the parameters of a child module that its parent uses directly
  (``nn.MultiheadAttention`` passes ``out_proj.weight`` to ``F.multi_head_attention_forward``)
  can be counted in the parent's row.
* :class:`~archscope.engine.flops.FlopCounter` counts FLOPs at the dispatcher; a frame's MACs
  are the FLOPs counted during its call / 2.
* :func:`torch.autograd.graph.saved_tensors_hooks` measures what autograd keeps for backward.

A *lean* pass records the same frames with shapes only (no FLOPs, no saved tensors, no
pre-checks, normalisation layers' meta kernels skipped): the engine runs one at a second batch
size where a shape alone does not say which dimension is the batch.

A *real* pass (``device`` given: ``--trace real``) runs the same hooks, counter and saved-tensor
measurement on real tensors, with stand-ins that hold the user's values
(:func:`~archscope.engine.stand_ins.real_state`) and a random input: for forwards whose shapes
depend on tensor values, which the meta device cannot compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from archscope._modes import kept_modes, random_input, seeded
from archscope.engine.deferred import DeferredImportFailed, deferred_imports
from archscope.engine.diagnosis import (
    check_and_explain,
    check_channels,
    check_embedding,
    forward_error,
    stock,
)
from archscope.engine.facts import CONV, CONV_TRANSPOSE, function_facts, module_facts
from archscope.engine.flops import FlopCounter
from archscope.engine.frame import Frame
from archscope.engine.stand_ins import (
    autograd_on,
    kept_attributes,
    meta_state,
    real_state,
    storage_key,
    swapped,
)
from archscope.errors import ArchscopeError
from archscope.report import MODEL_INPUT, Kind, LayerFacts, Shape
from archscope.tensors import keyed_tensors, tensors_of

# Functions seen by the function mode that are not data flow (attribute reads, Python protocol).
_IGNORED_FUNCTIONS = frozenset({
    "__get__", "__set__", "size", "dim", "numel", "__len__", "__format__", "__repr__", "__bool__",
    "item", "tolist", "__index__", "__setitem__", "__hash__", "__iter__", "__contains__",
    "requires_grad_", "retain_grad", "register_hook", "data_ptr", "element_size", "is_contiguous",
    "stride", "storage_offset", "untyped_storage", "_is_view", "is_floating_point", "is_complex",
})

# Tensor attributes whose reads are metadata, not a use of a parameter's values (``w.T`` is one).
_METADATA_ATTRIBUTES = frozenset({
    "shape", "dtype", "device", "requires_grad", "ndim", "is_cuda", "is_meta", "is_sparse",
    "is_quantized", "layout", "names", "grad", "grad_fn", "is_leaf", "itemsize", "nbytes",
})

#: Ops whose output has their first argument's shape, and whose meta kernels are slow (PyTorch
#: runs batch_norm's Python decomposition on meta: most of a ResNet's trace). A lean pass gives
#: an empty tensor of that shape instead of running them.
_SHAPE_KEEPING = frozenset({F.batch_norm, torch.batch_norm, F.instance_norm, F.group_norm,
                            F.layer_norm})


def root_row_name(model: nn.Module) -> str | None:
    """The row name of a model that is traced as one row (its class name), else ``None``.

    That is a model without children that runs a forward PyTorch defines (``nn.Conv2d(3, 4, 3)``,
    a subclass of ``nn.BatchNorm1d`` that keeps its forward). A childless model with its own
    forward (``F.linear`` over ``nn.Parameter`` attributes) keeps a row per functional op.
    """
    if next(iter(model.children()), None) is not None:
        return None
    forward_module = getattr(type(model).forward, "__module__", "") or ""
    return type(model).__name__ if forward_module.startswith("torch.nn.") else None


class BatchNormNeedsEval(Exception):
    """A BatchNorm in training mode saw one value per channel: trace again in eval mode."""


@dataclass
class Pass:
    """What one forward pass recorded."""

    frames: list[Frame]
    output_shapes: tuple[Shape, ...]
    output_keys: tuple[str, ...]
    #: the frame that produced each output tensor (:data:`MODEL_INPUT`: the input itself)
    output_producers: tuple[int, ...]
    forward_flops: int = 0
    backward_flops: int = 0
    saved_bytes: int = 0
    #: id(the user's parameter) → the frame whose forward first read it (``None``: the root's)
    param_users: dict[int, int | None] = field(default_factory=dict)


class Tracer(TorchFunctionMode):
    """Hooks + function mode + FLOP counter for one forward pass."""

    def __init__(self, model: nn.Module, count_flops: bool, lean: bool = False) -> None:
        super().__init__()
        self.model = model
        self.lean = lean
        # A model that is one PyTorch layer is itself a row like any other (see root_row_name).
        self.root_row = root_row_name(model) is not None
        self.names: dict[int, str] = {id(m): n for n, m in model.named_modules()}
        self.frames: list[Frame] = []
        self.stack: list[Frame | None] = []  # None stands for the root module's call
        self.producers: dict[int, int] = {}
        self.keep_alive: list[torch.Tensor] = []
        self.calls: dict[int, int] = {}
        self.recording = False
        self.flop_counter = FlopCounter() if count_flops and not lean else None
        self.handles: list[Any] = []
        self.sample_shape: Shape = ()  # one sample of the model input (the batch left out)
        self.seen_conv = False
        # id(parameter stand-in) → id(the user's parameter); set once the stand-ins exist
        self.stand_ins: dict[int, int] = {}
        self.param_users: dict[int, int | None] = {}

    # -- tensor bookkeeping -------------------------------------------------------------------
    def producers_of(self, tensors: Sequence[torch.Tensor]) -> tuple[int, ...]:
        return tuple(self.producers[id(t)] for t in tensors if id(t) in self.producers)

    def _produce(self, tensors: Sequence[torch.Tensor], index: int) -> None:
        for t in tensors:
            self.producers[id(t)] = index
            self.keep_alive.append(t)

    def flops(self) -> int:
        return self.flop_counter.total if self.flop_counter is not None else 0

    def _parent(self) -> tuple[int | None, int]:
        """(parent record index, depth of a new child) for the current call stack."""
        for frame in reversed(self.stack):
            if frame is not None:
                return frame.index, frame.depth + 1
        return None, 1

    def running(self) -> Frame | None:
        """The innermost module call under way (``None``: none, or the root's own)."""
        return next((f for f in reversed(self.stack) if f is not None), None)

    def last_module(self) -> Frame | None:
        """The last module call recorded."""
        return next((f for f in reversed(self.frames) if f.kind == Kind.MODULE), None)

    # -- module hooks -------------------------------------------------------------------------
    def attach(self) -> None:
        for module in self.model.modules():
            self.handles.append(module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post_hook, with_kwargs=True))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _pre_hook(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        if not self.recording:
            return
        if module is self.model and not self.root_row:
            self.stack.append(None)
            return
        tensors = tensors_of((args, kwargs))
        parent, depth = self._parent()
        is_leaf = next(iter(module.children()), None) is None
        call = self.calls.get(id(module), 0)
        self.calls[id(module)] = call + 1
        name = self.names.get(id(module), "") or type(module).__name__
        frame = Frame(
            index=len(self.frames), name=name,
            type=type(module).__name__, kind=Kind.MODULE, depth=depth, parent=parent,
            is_leaf=is_leaf, module=module, input_shapes=tuple(tuple(t.shape) for t in tensors),
            inputs=self.producers_of(tensors), flops_before=self.flops(), call=call,
            facts=LayerFacts() if self.lean else module_facts(module),
        )
        self.frames.append(frame)
        self.stack.append(frame)
        if not frame.input_shapes or self.lean:
            return
        if isinstance(module, nn.Embedding):
            check_embedding(frame, module, tensors[0])
        shape = frame.input_shapes[0]
        is_stock = stock(module)
        if isinstance(module, (*CONV, *CONV_TRANSPOSE)):
            # The first conv, seeing the model input as it was given: a channel mismatch there
            # is the input's layout (28x28x1 for 1x28x28), not the network's.
            fed = not self.seen_conv and shape[1:] == self.sample_shape
            self.seen_conv = True
            if is_stock:
                check_channels(frame, module, shape, self.sample_shape if fed else None)
        # forward(x, output_size=…) lets a transposed conv pick another size than the formula's
        sized = isinstance(module, CONV_TRANSPOSE) and (
            len(args) > 1 or kwargs.get("output_size") is not None)
        if is_stock and not sized:
            frame.output_formula = check_and_explain(frame, module, shape)

    def _post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not self.recording:
            return
        frame = self.stack.pop()
        if frame is None:
            return
        leaves, keys = keyed_tensors(output)
        frame.output_shapes = tuple(tuple(t.shape) for t in leaves)
        frame.output_keys = keys
        frame.macs = (self.flops() - frame.flops_before) // 2
        if frame.is_leaf:
            self._produce(leaves, frame.index)

    # -- functional ops -----------------------------------------------------------------------
    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        top = self.stack[-1] if self.stack else None
        name = getattr(func, "__name__", str(func))
        if self.recording and self.stack and not self.lean:
            self._note_parameter_reads(func, name, args, kwargs, top)
        inside_leaf = top is not None and top.is_leaf
        if not self.recording or inside_leaf or not self.stack:
            return self._call(func, args, kwargs)
        if name in _IGNORED_FUNCTIONS:
            return func(*args, **kwargs)
        inputs = tensors_of((args, kwargs))
        tracked = self.producers_of(inputs)
        flops_before = self.flops()
        result = self._call(func, args, kwargs)
        outputs = tensors_of(result)
        if not tracked or not outputs:
            return result
        parent, depth = self._parent()
        op = _op_name(name)
        prefix = self.frames[parent].name + "." if parent is not None else ""
        frame = Frame(
            index=len(self.frames), name=prefix + op, type=op, kind=Kind.FUNCTION, depth=depth,
            parent=parent, is_leaf=True, input_shapes=tuple(tuple(t.shape) for t in inputs),
            output_shapes=tuple(tuple(t.shape) for t in outputs), inputs=tracked,
            macs=(self.flops() - flops_before) // 2,
            facts=LayerFacts() if self.lean else function_facts(op, args, kwargs),
        )
        self.frames.append(frame)
        self._produce(outputs, frame.index)
        return result

    def _call(self, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        if self.lean and func in _SHAPE_KEEPING and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_meta:
            x = args[0]
            return torch.empty(x.shape, dtype=x.dtype, device=x.device)
        return func(*args, **kwargs)

    def _note_parameter_reads(self, func: Any, name: str, args: Any, kwargs: Any,
                              top: Frame | None) -> None:
        """Remember which module call first reads each parameter stand-in an op receives."""
        if name in _IGNORED_FUNCTIONS and not (
            name == "__get__"
            and getattr(getattr(func, "__self__", None), "__name__", "") not in _METADATA_ATTRIBUTES
        ):
            return
        user = top.index if top is not None else None
        for arg in (*args, *kwargs.values()):
            for t in arg if isinstance(arg, list | tuple) else (arg,):
                original = self.stand_ins.get(id(t))
                if original is not None and original not in self.param_users:
                    self.param_users[original] = user


def trace_pass(model: nn.Module, shape: Shape, batch: int, dtype: torch.dtype, *,
               train: bool | None, count_flops: bool = True, backward: bool = False,
               lean: bool = False, defer: bool = True, device: torch.device | None = None
               ) -> Pass:
    """One forward pass of ``model`` on an input of ``(batch, *shape)``: on the meta device, or
    for real on ``device`` (a random input, seeded; see the module docstring).

    ``train`` sets every module's mode for the pass (``None``: as the user set them); the model
    is as before afterwards (and so is the caller's random state). Autograd is on whatever the
    caller's context. ``lean`` records shapes only (see the module docstring).

    Raises:
        BatchNormNeedsEval: a BatchNorm in training mode saw one value per channel.
        DeferredImportFailed: an import failed under the deferred-import stand-ins: run the pass
            again with ``defer=False``.
        ArchscopeError: a pre-check failed (InputTooSmallError, LayerInputError …), or the
            forward raised (ForwardError, naming the layer).
    """
    with autograd_on(), seeded(0, device) if device is not None else nullcontext():
        return _trace(model, shape, batch, dtype, train=train, count_flops=count_flops,
                      backward=backward, lean=lean, defer=defer, device=device)


def _trace(model: nn.Module, shape: Shape, batch: int, dtype: torch.dtype, *,
           train: bool | None, count_flops: bool, backward: bool, lean: bool,
           defer: bool, device: torch.device | None) -> Pass:
    tracer = Tracer(model, count_flops, lean)
    swaps, param_keys = meta_state(model) if device is None else real_state(model, device)
    tracer.stand_ins = {id(stand_in): id(getattr(module, kind)[pname])
                        for module, kind, pname, stand_in in swaps if kind == "_parameters"}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = storage_key(t)
        if key not in param_keys and key not in saved:
            saved[key] = t.untyped_storage().nbytes()
        return t

    if device is None:
        x = torch.empty((batch, *shape), device="meta", dtype=dtype)
    else:
        generator = torch.Generator(device=device).manual_seed(0)
        x = random_input(model, shape, batch, dtype, device, generator)
    tracer.producers[id(x)] = MODEL_INPUT
    tracer.sample_shape = shape
    forward_flops = backward_flops = 0
    output: Any = None
    try:
        tracer.attach()
        with (kept_modes(model), kept_attributes(model),
              deferred_imports() if defer else nullcontext()):
            if train is not None:
                model.train(train)
            counter = tracer.flop_counter
            if counter is not None:
                counter.__enter__()
            try:
                hooks = (nullcontext() if lean
                         else torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
                # entered after the FLOP counter, so it sees batch_norm first: the counter
                # still counts it, and its statistics are replaced in what comes back
                saves = (EvalBatchNormSaves() if device is None and not lean
                         and _eval_batchnorm(model) else nullcontext())
                with hooks, tracer, saves:
                    tracer.recording = True
                    try:
                        with swapped(swaps):
                            output = model(x)
                    finally:
                        tracer.recording = False
                forward_flops = tracer.flops()
                if backward and not lean:
                    _backward(output)
                    backward_flops = tracer.flops() - forward_flops
            finally:
                if counter is not None:
                    counter.__exit__(None, None, None)
    except ArchscopeError:
        raise
    except ValueError as exc:
        if train is not False and "Expected more than 1 value per channel" in str(exc):
            raise BatchNormNeedsEval() from exc
        raise forward_error(tracer.running(), tracer.last_module(), exc) from None
    except Exception as exc:
        if defer and isinstance(exc, ImportError):
            raise DeferredImportFailed() from exc
        raise forward_error(tracer.running(), tracer.last_module(), exc) from None
    finally:
        tracer.detach()

    out_leaves, out_keys = keyed_tensors(output)
    return Pass(
        frames=tracer.frames,
        output_shapes=tuple(tuple(t.shape) for t in out_leaves),
        output_keys=out_keys,
        output_producers=tuple(tracer.producers.get(id(t), MODEL_INPUT) for t in out_leaves),
        forward_flops=forward_flops,
        backward_flops=backward_flops,
        saved_bytes=sum(saved.values()),
        param_users=tracer.param_users,
    )


def _eval_batchnorm(model: nn.Module) -> bool:
    """Whether some BatchNorm of ``model`` normalises with its running statistics (eval mode)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training
               and m.track_running_stats for m in model.modules())


class EvalBatchNormSaves(TorchDispatchMode):
    """Make a meta ``native_batch_norm`` in eval mode return what the CPU kernel returns.

    With running statistics (``training=False``) the CPU kernel returns empty ``save_mean`` and
    ``save_invstd`` (``aten/src/ATen/native/Normalization.cpp``), and autograd saves those for
    backward; the meta kernel returns two tensors of C values, which would add 8·C bytes (fp32)
    per BatchNorm to the activation memory that a real step does not save. Each is replaced
    with an empty tensor, as on the CPU.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.native_batch_norm.default and len(args) > 5 \
                and args[5] is False and isinstance(out, tuple) and len(out) == 3:
            output, mean, invstd = out
            return (output, torch.empty((0,), dtype=mean.dtype, device=mean.device),
                    torch.empty((0,), dtype=invstd.dtype, device=invstd.device))
        return out


def _backward(output: Any) -> None:
    leaves = [t for t in tensors_of(output) if t.requires_grad and t.is_floating_point()]
    if leaves:
        total = sum(t.sum() for t in leaves)
        assert isinstance(total, torch.Tensor)
        total.backward()


def _op_name(name: str) -> str:
    """``__iadd__`` → ``add``, ``relu_`` → ``relu``, ``__getitem__`` → ``getitem``."""
    stripped = name.strip("_")
    if name.startswith("__") and stripped[:1] in {"i", "r"} and stripped[1:] in {
        "add", "sub", "mul", "truediv", "matmul", "floordiv", "pow", "and", "or",
    }:
        stripped = stripped[1:]
    return {"truediv": "div"}.get(stripped, stripped)


__all__ = ["BatchNormNeedsEval", "DeferredImportFailed", "EvalBatchNormSaves", "Pass", "Tracer",
           "root_row_name", "trace_pass"]
