"""The inspection engine: one traced forward pass → a :class:`~archscope.report.Report`.

How it works (one pass, on the meta device by default):

* The model's parameters and buffers are swapped for meta tensors of the same shape (the swap
  :func:`torch.func.functional_call` makes), so no weights are allocated and the user's model is
  never moved or changed: its train/eval flags and its plain tensor attributes (the ``weight``
  that the old ``torch.nn.utils.spectral_norm`` / ``weight_norm`` hooks recompute on every call)
  are restored afterwards.
* The model runs in the train/eval modes the user set (a fresh module trains; ``model.eval()``
  traces the inference forward, and the report says so), with autograd on whatever the caller's
  context (``torch.no_grad()``, ``torch.inference_mode()``, anomaly detection), so the figures
  are the same everywhere.
* Forward pre/post hooks on every module record each call in call order (a module called twice
  gives two records), with its input and output shapes. A model without child modules (a bare
  ``nn.Conv2d``) is one row, named after its class.
* A :class:`torch.overrides.TorchFunctionMode` records the functional ops a container calls
  directly (the residual ``add``, ``flatten``, ``cat`` …) and, together with the hooks, which
  record produced each tensor, so the records form a data-flow graph. It also sees which
  parameters each op reads, so the parameters of a child module that its parent uses directly
  (``nn.MultiheadAttention`` passes ``out_proj.weight`` to ``F.multi_head_attention_forward``)
  are counted in the parent's row.
* PyTorch's own FLOP formulas (``torch.utils.flop_counter``'s registry, applied as
  ``FlopCounterMode`` applies them, by :class:`_FlopCounter`) count FLOPs at the dispatcher,
  functional ops included; a record's MACs are the FLOPs counted during its call / 2.
* :func:`torch.autograd.graph.saved_tensors_hooks` measures what autograd keeps for backward.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from archscope import formulas
from archscope._modes import batch_of, input_shape_of, kept_modes, model_dtype
from archscope.errors import (
    READS_VALUES,
    ArchscopeError,
    ForwardError,
    InputShapeError,
    InputTooSmallError,
    LayerInputError,
    ModelSourceError,
    first_line,
)
from archscope.report import MODEL_INPUT, LayerRecord, Report, Shape
from archscope.shapes import format_dims
from archscope.tensors import keyed_tensors, tensors_of

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)

#: The forwards whose input the pre-checks (channels, window sizes, Linear features) understand.
#: A subclass that overrides forward (a CoordConv that appends coordinate channels, a conv that
#: pads first) receives an input its attributes do not describe: it runs unchecked, and PyTorch's
#: own error, if any, is reported.
_STOCK_FORWARDS = frozenset(cls.forward for cls in (*_CONV, *_CONV_TRANSPOSE, *_POOL, nn.Linear))
#: ... and for convolutions, the ``_conv_forward`` they call (a TF-style "same" conv pads there)
_STOCK_CONV_FORWARDS = frozenset(cls._conv_forward for cls in (*_CONV, *_CONV_TRANSPOSE))


def _stock(module: nn.Module) -> bool:
    """Does ``module`` run PyTorch's own forward for its class (see :data:`_STOCK_FORWARDS`)?"""
    cls = type(module)
    if cls.forward not in _STOCK_FORWARDS:
        return False
    conv_forward = getattr(cls, "_conv_forward", None)
    return conv_forward is None or conv_forward in _STOCK_CONV_FORWARDS

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


class _FlopCounter(TorchDispatchMode):
    """FLOPs at the dispatcher with PyTorch's own formulas (``torch.utils.flop_counter``).

    The same counting as :class:`torch.utils.flop_counter.FlopCounterMode` (same registry, same
    decomposition of ops the registry lacks) with one running total instead of a per-module
    table, which the hooks read before and after each call. Unlike ``FlopCounterMode`` it does
    not wrap its dispatch in ``torch._dynamo.disable``: that import alone costs more than a second
    and nothing here is compiled.
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


class _Deferred(types.ModuleType):
    """Stands in for a heavy torch module that an eager meta trace only touches trivially.

    On meta tensors, some of PyTorch's Python kernels reach for two heavy modules only to handle
    cases that never arise with concrete shapes:

    * ``torch._dynamo``: ``torch._compile._disable_dynamo`` imports it on a wrapped function's first
      call only to mark the function "do not compile"; nothing is compiled during the trace.
    * ``torch.fx.experimental.symbolic_shapes`` (and with it sympy): ``torch._check`` and the meta
      kernels call ``expect_true`` / ``guard_or_false`` …, which return a plain ``bool`` unchanged.
    * ``sympy``: type promotion checks ``isinstance(x, sympy.Basic)``, never true here.

    Each import costs about as much as importing torch itself. While a trace runs, a stand-in
    answers those calls for plain Python values and forwards everything else to the real module
    (importing it then, after removing every stand-in, so that the real module's own imports see
    real modules); once the trace ends the stand-ins are removed and forward everything.
    """

    def __init__(self, name: str, plain: dict[str, Any], group: list[_Deferred]) -> None:
        super().__init__(name)
        self._plain = plain
        self._group = group
        self._active = True
        self._marked: list[Any] = []

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # import machinery probing (__path__ …): a plain module
            raise AttributeError(attr)
        if not self._active or attr not in self._plain:
            return getattr(self._real(), attr)
        plain, real_name = self._plain[attr], attr
        if isinstance(plain, type):
            return plain

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._active:
                result = plain(self, *args, **kwargs)
                if result is not _FORWARD:
                    return result
            return getattr(self._real(), real_name)(*args, **kwargs)

        return call

    def _real(self) -> Any:
        # Restore every stand-in first: the real module's own imports must see real modules.
        for stub in self._group:
            stub._restore()
        import importlib

        return importlib.import_module(self.__name__)

    def _install(self) -> None:
        parent_name, _, child = self.__name__.rpartition(".")
        sys.modules[self.__name__] = self
        if parent_name:
            setattr(sys.modules[parent_name], child, self)

    def _restore(self) -> None:
        self._active = False
        parent_name, _, child = self.__name__.rpartition(".")
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        if getattr(sys.modules.get(parent_name), child, None) is self:
            delattr(sys.modules[parent_name], child)
        for fn in self._marked:
            with suppress(AttributeError):
                delattr(fn, "__dynamo_disable")
        self._marked.clear()


_FORWARD = object()


def _disable(stub: _Deferred, fn: Any, recursive: bool = True, wrapping: bool = True) -> Any:
    stub._marked.append(fn)  # forgotten (and so properly disabled later) when the trace ends
    return fn


def _plain_bool(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return a if type(a) is bool else _FORWARD


def _plain_false(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return False if type(a) in (int, bool) else _FORWARD


def _plain_true(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return True if type(a) in (int, bool) else _FORWARD


def _plain_int(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return a if type(a) is int else _FORWARD


def _plain_all(stub: _Deferred, *values: Any) -> Any:
    return all(values) if all(type(v) is bool for v in values) else _FORWARD


def _plain_any(stub: _Deferred, *values: Any) -> Any:
    return any(values) if all(type(v) is bool for v in values) else _FORWARD


def _plain_eq(stub: _Deferred, x: Any, y: Any) -> Any:
    def concrete(v: Any) -> bool:
        if isinstance(v, list | tuple | torch.Size):
            return all(concrete(e) for e in v)
        return type(v) in (int, bool, float)

    return bool(x == y) if concrete(x) and concrete(y) else _FORWARD


class _NoSympyObject:
    """Nothing is an instance: no sympy expression occurs in an eager trace with concrete shapes."""


_DEFERRED: dict[str, dict[str, Any]] = {
    "sympy": {"Basic": _NoSympyObject, "Expr": _NoSympyObject},
    "torch._dynamo": {"disable": _disable},
    "torch.fx.experimental.symbolic_shapes": {
        "expect_true": _plain_bool, "guard_or_false": _plain_bool, "guard_or_true": _plain_bool,
        "guard_size_oblivious": _plain_bool, "statically_known_true": _plain_bool,
        "definitely_true": _plain_bool, "sym_and": _plain_all, "sym_or": _plain_any,
        "sym_eq": _plain_eq, "is_nested_int": _plain_false, "has_guarding_hint": _plain_true,
        "guarding_hint_or_throw": _plain_int,
    },
}


@contextmanager
def _deferred_imports() -> Iterator[None]:
    """Run the block with stand-ins for the heavy modules not imported yet (see :class:`_Deferred`)."""

    stubs: list[_Deferred] = []
    stubs += [_Deferred(name, plain, stubs) for name, plain in _DEFERRED.items()
              if name not in sys.modules]
    for stub in stubs:
        stub._install()
    try:
        yield
    finally:
        for stub in stubs:
            stub._restore()


@dataclass
class _Frame:
    """A record under construction (mutable while the call runs)."""

    index: int
    name: str
    type: str
    kind: str
    depth: int
    parent: int | None
    is_leaf: bool
    module: nn.Module | None = None
    input_shapes: tuple[Shape, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    output_keys: tuple[str, ...] = ()
    inputs: tuple[int, ...] = ()
    flops_before: int = 0
    macs: int = 0
    call: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    output_formula: str = ""


class _Tracer(TorchFunctionMode):
    """Hooks + function mode + FLOP counter + saved-tensor accounting for one forward pass."""

    def __init__(self, model: nn.Module, count_flops: bool) -> None:
        super().__init__()
        self.model = model
        # A model that is one PyTorch layer is itself a row like any other (see root_row_name).
        self.root_row = root_row_name(model) is not None
        self.names: dict[int, str] = {id(m): n for n, m in model.named_modules()}
        self.frames: list[_Frame] = []
        self.stack: list[_Frame | None] = []  # None stands for the root module's call
        self.producers: dict[int, int] = {}
        self.keep_alive: list[torch.Tensor] = []
        self.calls: dict[int, int] = {}
        self.recording = False
        self.flop_counter = _FlopCounter() if count_flops else None
        self.handles: list[Any] = []
        self.sample_shape: Shape = ()  # one sample of the model input (the batch left out)
        self.seen_conv = False
        # id(parameter stand-in) → id(the user's parameter); set once the stand-ins exist
        self.stand_ins: dict[int, int] = {}
        # id(the user's parameter) → the record of the module call whose forward first read it
        # (None: the root's own forward)
        self.param_users: dict[int, int | None] = {}

    # -- tensor bookkeeping -------------------------------------------------------------------
    def _producers_of(self, tensors: Sequence[torch.Tensor]) -> tuple[int, ...]:
        return tuple(self.producers[id(t)] for t in tensors if id(t) in self.producers)

    def _produce(self, tensors: Sequence[torch.Tensor], index: int) -> None:
        for t in tensors:
            self.producers[id(t)] = index
            self.keep_alive.append(t)

    def _flops(self) -> int:
        return self.flop_counter.total if self.flop_counter is not None else 0

    def _parent(self) -> tuple[int | None, int]:
        """(parent record index, depth of a new child) for the current call stack."""
        for frame in reversed(self.stack):
            if frame is not None:
                return frame.index, frame.depth + 1
        return None, 1

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
        frame = _Frame(
            index=len(self.frames), name=name,
            type=type(module).__name__, kind="module", depth=depth, parent=parent,
            is_leaf=is_leaf, module=module, input_shapes=tuple(tuple(t.shape) for t in tensors),
            inputs=self._producers_of(tensors), flops_before=self._flops(), call=call,
            hparams=_hparams(module),
        )
        self.frames.append(frame)
        self.stack.append(frame)
        if not frame.input_shapes:
            return
        shape = frame.input_shapes[0]
        stock = _stock(module)
        if isinstance(module, (*_CONV, *_CONV_TRANSPOSE)):
            # The first conv, seeing the model input as it was given: a channel mismatch there
            # is the input's layout (28x28x1 for 1x28x28), not the network's.
            fed = not self.seen_conv and shape[1:] == self.sample_shape
            self.seen_conv = True
            if stock:
                _check_channels(frame, module, shape, self.sample_shape if fed else None)
        # forward(x, output_size=…) lets a transposed conv pick another size than the formula's
        sized = isinstance(module, _CONV_TRANSPOSE) and (
            len(args) > 1 or kwargs.get("output_size") is not None)
        if stock and not sized:
            frame.output_formula = _check_and_explain(frame, module, shape)

    def _post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not self.recording:
            return
        frame = self.stack.pop()
        if frame is None:
            return
        leaves, keys = keyed_tensors(output)
        frame.output_shapes = tuple(tuple(t.shape) for t in leaves)
        frame.output_keys = keys
        frame.macs = (self._flops() - frame.flops_before) // 2
        if frame.is_leaf:
            self._produce(leaves, frame.index)

    # -- functional ops -----------------------------------------------------------------------
    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        top = self.stack[-1] if self.stack else None
        name = getattr(func, "__name__", str(func))
        if self.recording and self.stack:
            self._note_parameter_reads(func, name, args, kwargs, top)
        inside_leaf = top is not None and top.is_leaf
        if not self.recording or inside_leaf or not self.stack:
            return func(*args, **kwargs)
        if name in _IGNORED_FUNCTIONS:
            return func(*args, **kwargs)
        inputs = tensors_of((args, kwargs))
        tracked = self._producers_of(inputs)
        flops_before = self._flops()
        result = func(*args, **kwargs)
        outputs = tensors_of(result)
        if not tracked or not outputs:
            return result
        parent, depth = self._parent()
        op = _op_name(name)
        prefix = self.frames[parent].name + "." if parent is not None else ""
        frame = _Frame(
            index=len(self.frames), name=prefix + op, type=op, kind="function", depth=depth,
            parent=parent, is_leaf=True, input_shapes=tuple(tuple(t.shape) for t in inputs),
            output_shapes=tuple(tuple(t.shape) for t in outputs), inputs=tracked,
            macs=(self._flops() - flops_before) // 2, hparams=_function_hparams(op, args, kwargs),
        )
        self.frames.append(frame)
        self._produce(outputs, frame.index)
        return result

    def _note_parameter_reads(self, func: Any, name: str, args: Any, kwargs: Any,
                              top: _Frame | None) -> None:
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


def inspect(
    model: nn.Module,
    input_shape: Sequence[int] | str | None = None,
    *,
    batch: int = 1,
    name: str | None = None,
    backward: bool = False,
    count_flops: bool = True,
    dtype: torch.dtype | None = None,
) -> Report:
    """Trace ``model`` on the meta device and return its :class:`~archscope.report.Report`.

    The model runs in the train/eval modes it is in: a freshly built module trains (dropout,
    BatchNorm batch statistics, training-only outputs such as auxiliary heads), and after
    ``model.eval()`` the trace is the inference forward, with a note in the report saying so
    (activation memory is then what autograd keeps in eval mode). A BatchNorm in training mode
    that would see one value per channel cannot run; the whole model is then traced in eval
    mode, with a note. Autograd is on for the trace whatever the caller's context
    (``torch.no_grad()``, ``torch.inference_mode()``, anomaly detection), so activation memory
    and backward FLOPs are the same everywhere.

    Args:
        model: an ``nn.Module`` instance; it is not moved, changed or run on real data (its
            train/eval flags, parameters, buffers and tensor attributes are as before).
        input_shape: one sample's shape without the batch dimension, e.g. ``(3, 224, 224)``, or
            the CLI's form ``"3x224x224"``; one integer for a 1-D input. One input tensor.
        batch: batch size of the traced input (a positive integer).
        name: the model's name in the report (default: its class name).
        backward: also run the backward pass (on meta) to count training FLOPs.
        count_flops: count FLOPs/MACs at the dispatcher with ``torch.utils.flop_counter``'s
            formula registry, the one ``FlopCounterMode`` uses, applied by archscope's own
            dispatch mode (:class:`_FlopCounter`: one running total, read before and after each
            call); turn off for a faster shape-only trace.
        dtype: dtype of the traced input (default: the dtype of the model's first
            floating-point parameter or buffer; float32 for a model without any).

    Raises:
        ModelSourceError: ``model`` is not an ``nn.Module`` instance (a class, a zoo name: use
            :func:`archscope.summary_report` for names), or has lazy parameters not yet
            materialized by a first real forward.
        InputShapeError: ``input_shape`` or ``batch`` is missing or malformed (a tensor, several
            shapes, a part that is not a positive integer).
        InputTooSmallError: a conv/pool window does not fit its input (names the layer and the
            smallest input that works).
        ForwardError: the forward pass failed (names the layer reached); its subclass
            LayerInputError where a layer's input does not fit its channels or features.
    """
    _check_model(model)
    if input_shape is None:
        raise InputShapeError("an input shape is needed to trace this model (e.g. --input 3x224x224)")
    shape = input_shape_of(input_shape)
    batch = batch_of(batch)
    _check_lazy(model, shape, batch)
    if dtype is None:
        dtype = model_dtype(model)

    def trace(train: bool | None) -> Report:
        assert dtype is not None
        try:
            return _inspect(model, shape, batch, name, backward, count_flops, dtype, train=train)
        except _DeferredImportFailed:  # see _Deferred: trace again with the real modules
            return _inspect(model, shape, batch, name, backward, count_flops, dtype, train=train,
                            defer=False)

    try:
        try:
            report = trace(train=None)
        except _BatchNormNeedsEval:
            pass
        else:
            if not model.training:
                report = _with_note(report, _EVAL_NOTE)
            return report
        # Outside the except clause above, so that the InputTooSmallError handler below also
        # sees what the eval-mode trace raises (vgg16_bn at 3×16×16).
        report = trace(train=False)
        note = ("traced in eval mode: BatchNorm in training mode needs more than one value per "
                "channel (use a larger --batch or input); activation memory is the eval-mode figure")
        return _with_note(report, note)
    except InputTooSmallError as exc:
        smallest = _smallest_input(model, shape, batch)
        if smallest is not None:
            raise InputTooSmallError(f"{exc}; use an input of at least {smallest}") from None
        raise


_EVAL_NOTE = ("traced in eval mode, as the model is set: outputs, dropout and BatchNorm are the "
              "inference ones and activation memory is the eval-mode figure; call model.train() "
              "first for training-mode outputs and activation memory")


def _check_model(model: Any) -> None:
    """Raise ModelSourceError unless ``model`` is an ``nn.Module`` instance."""
    if isinstance(model, nn.Module):
        return
    if isinstance(model, str):
        raise ModelSourceError(
            f"inspect takes an nn.Module instance, not the string {model!r}; for a zoo name, "
            f"model file or layer spec use archscope.summary_report({model!r}) (or "
            f"archscope.load_model({model!r}).model)"
        )
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise ModelSourceError(
            f"inspect takes an nn.Module instance, not the class {model.__name__}: create one "
            f"first, e.g. inspect({model.__name__}(...), …)"
        )
    raise ModelSourceError(f"inspect takes an nn.Module instance, not {type(model).__name__}")


def _check_lazy(model: nn.Module, shape: Shape, batch: int) -> None:
    """Raise ModelSourceError for lazy parameters that no real forward has materialized yet.

    A lazy module (``nn.LazyConv2d``) infers its parameters' shapes on its first call and
    materializes them in place: a trace would change the user's model, and on meta it could not
    initialize them.
    """
    from torch.nn.parameter import is_lazy

    for mname, module in model.named_modules():
        tensors = (*module._parameters.values(), *module._buffers.values())
        if any(t is not None and is_lazy(t) for t in tensors):
            where = f"{mname} ({type(module).__name__})" if mname else type(module).__name__
            example = ", ".join(str(d) for d in (batch, *shape))
            raise ModelSourceError(
                f"{where} has lazy parameters that are not materialized yet; run one real forward "
                f"first (e.g. model(torch.randn({example}))), then inspect the model"
            )


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


class _BatchNormNeedsEval(Exception):
    pass


class _DeferredImportFailed(Exception):
    """A module's import failed while :func:`_deferred_imports`' stand-ins were installed.

    The stand-ins import the real module on first non-trivial use, which can land in the middle
    of another torch module's import (seen: a float16 backward pass in a fresh process importing
    ``torch.utils._sympy.functions`` half-way); the trace is then run again without them.
    """


@contextmanager
def _autograd_on() -> Iterator[None]:
    """Autograd as outside any context: the trace measures what a training step saves.

    Under ``torch.inference_mode()`` or ``torch.no_grad()`` autograd would save nothing and the
    backward pass could not run; anomaly detection checks backward outputs for NaN, which reads
    the values of meta tensors. The stand-ins and the input are made inside, so they are normal
    tensors even under inference mode.
    """
    with (torch.inference_mode(False), torch.enable_grad(),
          torch.autograd.set_detect_anomaly(False)):
        yield


def _inspect(model: nn.Module, shape: Shape, batch: int, name: str | None, backward: bool,
             count_flops: bool, dtype: torch.dtype, *, train: bool | None,
             defer: bool = True) -> Report:
    """One trace; ``train`` sets every module's mode for it (``None``: as the user set them)."""
    with _autograd_on():
        return _trace(model, shape, batch, name, backward, count_flops, dtype, train=train,
                      defer=defer)


def _trace(model: nn.Module, shape: Shape, batch: int, name: str | None, backward: bool,
           count_flops: bool, dtype: torch.dtype, *, train: bool | None, defer: bool) -> Report:
    tracer = _Tracer(model, count_flops)
    swaps, param_keys = _meta_state(model)
    tracer.stand_ins = {id(stand_in): id(getattr(module, kind)[pname])
                        for module, kind, pname, stand_in in swaps if kind == "_parameters"}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = StorageWeakRef(t.untyped_storage()).cdata
        if key not in param_keys and key not in saved:
            saved[key] = t.untyped_storage().nbytes()
        return t

    x = torch.empty((batch, *shape), device="meta", dtype=dtype)
    tracer.producers[id(x)] = MODEL_INPUT
    tracer.sample_shape = shape
    forward_flops = backward_flops = 0
    output: Any = None
    try:
        tracer.attach()
        with (kept_modes(model), _kept_tensor_attributes(model),
              _deferred_imports() if defer else nullcontext()):
            if train is not None:
                model.train(train)
            counter = tracer.flop_counter
            if counter is not None:
                counter.__enter__()
            try:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), tracer:
                    tracer.recording = True
                    try:
                        with _swapped(swaps):
                            output = model(x)
                    finally:
                        tracer.recording = False
                forward_flops = tracer._flops()
                if backward:
                    _backward(output)
                    backward_flops = tracer._flops() - forward_flops
            finally:
                if counter is not None:
                    counter.__exit__(None, None, None)
    except ArchscopeError:
        raise
    except ValueError as exc:
        if train is not False and "Expected more than 1 value per channel" in str(exc):
            raise _BatchNormNeedsEval() from exc
        raise _forward_error(tracer, exc) from None
    except Exception as exc:
        if defer and isinstance(exc, ImportError):
            raise _DeferredImportFailed() from exc
        raise _forward_error(tracer, exc) from None
    finally:
        tracer.detach()

    out_leaves, out_keys = keyed_tensors(output)
    borrowed, borrow_notes = _borrowed_parameters(model, tracer)
    records, counted = _records(model, tracer.frames, borrowed)
    records, order, notes = _uncalled_parameters(model, records, counted, borrowed)
    unique = list(model.parameters())
    return Report(
        model=name or type(model).__name__,
        model_type=type(model).__name__,
        input_shape=shape,
        batch=batch,
        total_params=sum(p.numel() for p in unique),
        trainable_params=sum(p.numel() for p in unique if p.requires_grad),
        non_trainable_params=sum(p.numel() for p in unique if not p.requires_grad),
        total_macs=forward_flops // 2,
        forward_flops=forward_flops,
        backward_flops=backward_flops if backward else None,
        param_bytes=sum(p.numel() * p.element_size() for p in unique),
        trainable_param_bytes=sum(p.numel() * p.element_size() for p in unique if p.requires_grad),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        activation_bytes=sum(saved.values()),
        output_shapes=tuple(tuple(t.shape) for t in out_leaves),
        outputs=tuple(order.get(tracer.producers.get(id(t), MODEL_INPUT), MODEL_INPUT)
                      for t in out_leaves),
        layers=records,
        notes=(*borrow_notes, *notes),
        output_keys=out_keys,
    )


@contextmanager
def _kept_tensor_attributes(model: nn.Module) -> Iterator[None]:
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


def _meta_state(model: nn.Module) -> tuple[list[tuple[nn.Module, str, str, Any]], set[int]]:
    """Meta stand-ins for every parameter and buffer; tied tensors share one stand-in.

    Returns the swaps to make as ``(module, "_parameters" | "_buffers", name, stand-in)`` and the
    storage keys of the parameter stand-ins (so saved-tensor accounting can leave them out).
    """
    by_id: dict[int, torch.Tensor] = {}
    swaps: list[tuple[nn.Module, str, str, Any]] = []
    keys: set[int] = set()
    for module in model.modules():
        for pname, p in module._parameters.items():
            if p is None:
                continue
            if id(p) not in by_id:
                stand_in = nn.Parameter(_meta_like(p), p.requires_grad)
                by_id[id(p)] = stand_in
                keys.add(StorageWeakRef(stand_in.untyped_storage()).cdata)
            swaps.append((module, "_parameters", pname, by_id[id(p)]))
        for bname, b in module._buffers.items():
            if b is None:
                continue
            if id(b) not in by_id:
                by_id[id(b)] = _meta_like(b)
            swaps.append((module, "_buffers", bname, by_id[id(b)]))
    return swaps, keys


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    # torch.empty, not empty_like: on meta, empty_like's reference implementation imports sympy.
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


@contextmanager
def _swapped(swaps: list[tuple[nn.Module, str, str, Any]]) -> Iterator[None]:
    """Put the stand-ins in place for the duration of the block; always restore the originals.

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


def _backward(output: Any) -> None:
    leaves = [t for t in tensors_of(output) if t.requires_grad and t.is_floating_point()]
    if leaves:
        total = sum(t.sum() for t in leaves)
        assert isinstance(total, torch.Tensor)
        total.backward()


def _borrowed_parameters(model: nn.Module, tracer: _Tracer
                         ) -> tuple[dict[int | None, list[nn.Parameter]], tuple[str, ...]]:
    """Parameters of modules never called as modules that another module's forward reads.

    ``nn.MultiheadAttention`` never calls its ``out_proj``: it passes ``out_proj.weight`` and
    ``.bias`` to ``F.multi_head_attention_forward``. Such parameters are counted in the row of
    the call that first read them (the record index; ``None``: the root's own forward), as
    torchinfo counts them in ``MultiheadAttention``'s row.
    """
    called: set[int] = set()
    for frame in tracer.frames:
        if frame.module is not None:
            called.add(id(frame.module))
            called.update(id(p) for p in frame.module._parameters.values() if p is not None)
    borrowed: dict[int | None, list[nn.Parameter]] = {}
    seen: set[int] = set()
    notes: list[str] = []
    for mname, module in model.named_modules():
        if not mname or id(module) in called:
            continue
        used = [p for p in module._parameters.values()
                if p is not None and id(p) in tracer.param_users and id(p) not in called
                and id(p) not in seen]
        if not used:
            continue
        users = [tracer.param_users[id(p)] for p in used]
        for p, index in zip(used, users, strict=True):
            borrowed.setdefault(index, []).append(p)
            seen.add(id(p))
        count = sum(p.numel() for p in used)
        first = users[0]
        if first is None:
            user_text, row = "the model's forward", f"the ({type(model).__name__}) row"
        else:
            reader = tracer.frames[first].name
            user_text, row = f"{reader}'s forward", f"{reader}'s row"
        notes.append(
            f"{mname} ({type(module).__name__}, {_plural(count, 'parameter')}) is not called as a "
            f"module: {user_text} uses {'its parameter' if len(used) == 1 else 'its parameters'} "
            f"directly; {'it is' if len(used) == 1 else 'they are'} counted in {row}"
        )
    return borrowed, tuple(notes)


def _records(model: nn.Module, frames: list[_Frame], borrowed: dict[int | None, list[nn.Parameter]]
             ) -> tuple[tuple[LayerRecord, ...], set[int]]:
    """Freeze frames into records, attributing each parameter to the first row that uses it.

    A row counts its module's own parameters and those it borrows (see
    :func:`_borrowed_parameters`). Returns the records and the ids of the parameters counted.
    """
    counted: dict[int, str] = {}  # id(parameter) → name of the row that counts it
    records = []
    for f in frames:
        params = trainable = 0
        formula = ""
        shared_with: str | None = None
        if f.module is not None:
            extra = borrowed.get(f.index, [])
            own = [p for p in f.module._parameters.values() if p is not None]
            new = [p for p in (*own, *extra) if id(p) not in counted]
            if len(new) < len(own) + len(extra):
                shared_with = next(counted[id(p)] for p in (*own, *extra) if id(p) in counted)
            params = sum(p.numel() for p in new)
            trainable = sum(p.numel() for p in new if p.requires_grad)
            if new and len(new) == len(own) and not extra:
                formula = _param_formula(f.module, params)
            elif new:
                formula = formulas.shapes_params([tuple(p.shape) for p in new])[1]
            for p in new:
                counted[id(p)] = f.name
        records.append(LayerRecord(
            index=f.index, name=f.name, type=f.type, kind=f.kind, depth=f.depth, parent=f.parent,
            is_leaf=f.is_leaf, input_shapes=f.input_shapes, output_shapes=f.output_shapes,
            params=params, trainable_params=trainable, param_formula=formula,
            output_formula=f.output_formula, macs=f.macs, call=f.call, shared_with=shared_with,
            output_keys=f.output_keys, hparams=f.hparams, inputs=f.inputs,
        ))
    return tuple(records), set(counted)


def _uncalled_parameters(model: nn.Module, records: tuple[LayerRecord, ...], counted: set[int],
                         borrowed: dict[int | None, list[nn.Parameter]]
                         ) -> tuple[tuple[LayerRecord, ...], dict[int, int], tuple[str, ...]]:
    """Rows for parameters no traced call owns: the root's own and those of modules never called.

    Such rows have no shapes and no inputs; with them, the rows always add up to the total. A
    module never called sits right after the subtree of its nearest called ancestor, one level
    below it (``parent`` is that ancestor's row); the root's own row comes last, at depth 1.
    Returns the records (re-indexed: ``index``, ``parent`` and ``inputs`` follow the new
    positions), the old → new index map (for ``Report.outputs``) and the notes.
    """
    rows_of = {r.name: r for r in records if r.kind == "module" and r.call == 0}
    seen = set(counted)
    borrowed_ids = {id(p) for params in borrowed.values() for p in params}
    # (old index of the ancestor whose subtree the row follows, or None: at the end) → rows
    after: dict[int | None, list[LayerRecord]] = {}
    notes: list[str] = []
    for mname, module in model.named_modules():
        if mname and mname in rows_of:
            continue
        new = [p for p in module._parameters.values() if p is not None and id(p) not in seen]
        own = sum(p.numel() for p in new)  # the root's row also counts what its forward reads
        if not mname:
            new += [p for p in borrowed.get(None, []) if id(p) not in seen]
        if not new:
            continue
        seen.update(id(p) for p in new)
        count = sum(p.numel() for p in new)
        label = mname or f"({type(model).__name__})"
        parts = mname.split(".") if mname else []
        ancestor = next((rows_of[p] for p in (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
                         if p in rows_of), None)
        after.setdefault(ancestor.index if ancestor else None, []).append(LayerRecord(
            index=-1, name=label, type=type(module).__name__, kind="module",
            depth=ancestor.depth + 1 if ancestor else 1,
            parent=ancestor.index if ancestor else None,
            is_leaf=True, input_shapes=(), output_shapes=(), params=count,
            trainable_params=sum(p.numel() for p in new if p.requires_grad),
            param_formula=formulas.shapes_params([tuple(p.shape) for p in new])[1],
            output_formula="", macs=0,
        ))
        if mname and any(id(p) in borrowed_ids for p in module._parameters.values()):
            # another forward reads some of its parameters (a note says so); the rest are unused
            unused = {id(p) for p in new}
            names = ", ".join(n for n, p in module._parameters.items() if id(p) in unused)
            notes.append(f"{label}.{{{names}}} ({_plural(count, 'parameter')}) "
                         f"{'is' if len(new) == 1 else 'are'} never used in forward, while its "
                         f"other parameters are read directly; counted in the total")
        elif mname:
            notes.append(f"{label} ({type(module).__name__}, {_plural(count, 'parameter')}) is "
                         f"never called in forward; "
                         f"{'its parameter is' if count == 1 else 'its parameters are'} counted in "
                         "the total")
        elif own:
            notes.append(f"{label} holds {_plural(own, 'parameter')} of its own, outside any "
                         f"layer; {'it is' if own == 1 else 'they are'} counted in the total")
    if not after:
        return records, {r.index: r.index for r in records}, tuple(notes)
    # Where each ancestor's subtree ends: its last descendant (records are in pre-order).
    ends: dict[int, list[int]] = {}
    for ancestor_index in (i for i in after if i is not None):
        depth, end = records[ancestor_index].depth, ancestor_index
        while end + 1 < len(records) and records[end + 1].depth > depth:
            end += 1
        ends.setdefault(end, []).append(ancestor_index)
    ordered: list[LayerRecord] = []
    for r in records:
        ordered.append(r)
        # nested subtrees ending together: the deeper ancestor's rows first
        for ancestor_index in sorted(ends.get(r.index, []), key=lambda i: -records[i].depth):
            ordered.extend(after[ancestor_index])
    ordered.extend(after.get(None, []))
    order = {r.index: i for i, r in enumerate(ordered) if r.index >= 0}
    remapped = tuple(
        replace(r, index=i, parent=None if r.parent is None else order[r.parent],
                inputs=tuple(order.get(j, j) for j in r.inputs))
        for i, r in enumerate(ordered)
    )
    return remapped, order, tuple(notes)


def _plural(count: int, noun: str) -> str:
    """``1 parameter``, ``30 parameters``, ``1,024 parameters``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _param_formula(module: nn.Module, params: int) -> str:
    """The lecture formula for ``module``'s own parameters, or the shape-product fallback."""
    value, expr = _typed_formula(module)
    if value == params and expr:
        return expr
    return formulas.shapes_params([tuple(p.shape) for p in module.parameters(recurse=False)])[1]


def _typed_formula(module: nn.Module) -> tuple[int, str]:
    # a transposed conv's weight is in·(out/groups)·k·k: each output channel still sees
    # k·k·(in/groups) weights, so the count reads like a conv's
    if isinstance(module, (*_CONV, *_CONV_TRANSPOSE)):
        return formulas.conv_params(module.in_channels, module.out_channels,
                                    tuple(module.kernel_size), module.groups,
                                    module.bias is not None)
    if isinstance(module, nn.Linear):
        return formulas.linear_params(module.in_features, module.out_features,
                                      module.bias is not None)
    if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.modules.instancenorm._InstanceNorm):
        return formulas.norm_params(module.num_features, module.affine)
    if isinstance(module, nn.GroupNorm):
        return formulas.norm_params(module.num_channels, module.affine)
    if isinstance(module, nn.LayerNorm):
        return formulas.layernorm_params(tuple(module.normalized_shape),
                                         module.elementwise_affine, module.bias is not None)
    if isinstance(module, nn.Embedding):
        return formulas.embedding_params(module.num_embeddings, module.embedding_dim)
    return -1, ""


def _hparams(module: nn.Module) -> dict[str, Any]:
    """Key hyperparameters for display."""
    if isinstance(module, (*_CONV, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return {
            "in_channels": module.in_channels, "out_channels": module.out_channels,
            "kernel": tuple(module.kernel_size), "stride": tuple(module.stride),
            "padding": module.padding if isinstance(module.padding, str) else tuple(module.padding),
            "dilation": tuple(module.dilation), "groups": module.groups,
            "bias": module.bias is not None,
        }
    if isinstance(module, nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    if isinstance(module, _POOL):
        out = {"kernel": module.kernel_size, "stride": module.stride, "padding": module.padding,
               "ceil_mode": module.ceil_mode}
        return {k: _tuple_or(v) for k, v in out.items()}
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d | nn.AdaptiveAvgPool1d):
        return {"output_size": _tuple_or(module.output_size)}
    if isinstance(module, _NORM):
        return {"num_features": getattr(module, "num_features", getattr(module, "num_channels", 0))}
    if isinstance(module, nn.LayerNorm):
        return {"normalized_shape": tuple(module.normalized_shape)}
    if isinstance(module, nn.LocalResponseNorm):
        return {"size": module.size, "alpha": module.alpha, "beta": module.beta, "k": module.k}
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return {"p": module.p}
    if isinstance(module, nn.Flatten):
        return {"start_dim": module.start_dim}
    if isinstance(module, nn.Embedding):
        return {"num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim}
    return {}


def _tuple_or(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _function_hparams(op: str, args: Any, kwargs: Any) -> dict[str, Any]:
    if op == "flatten":
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        return {"start_dim": start} if isinstance(start, int) else {}
    if op == "cat":
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return {"dim": dim} if isinstance(dim, int) else {}
    return {}


#: a conv's input layout (one sample) by its number of spatial dimensions.
_LAYOUT = {1: "C×L", 2: "C×H×W", 3: "C×D×H×W"}


def _check_channels(frame: _Frame, module: nn.modules.conv._ConvNd, shape: Shape,
                    sample: Shape | None) -> None:
    """Raise LayerInputError where a conv's input has the wrong number of channels or dimensions.

    ``shape`` is the conv's input (batch first); ``sample`` is the model input's one-sample shape
    when this conv sees the model input as it was given (the first conv), else ``None``: only
    then is the fix to ``--input`` (its layout is C×H×W), and a transposed shape is suggested
    where it would match (``28x28x1`` → ``1x28x28``). Checked before the window sizes: a
    channels-last input also looks too small (``28×1``).
    """
    expected = module.in_channels
    if expected < 1:  # a lazy conv before its first call
        return
    nd = len(module.kernel_size)
    layout = _LAYOUT[nd]
    where = f"{frame.name} ({frame.type})"
    if sample is not None and len(sample) != nd + 1:
        given = (f"is {format_dims(sample)} ({_plural(len(sample), 'dimension')})" if sample
                 else "shape is empty (no dimension besides the batch)")
        raise LayerInputError(
            f"{where} needs a {layout} input with {_plural(expected, 'channel')} but the input "
            f"{given}; --input is {layout}"
        )
    if len(shape) == nd + 2:
        channels = shape[1]
    elif len(shape) == nd + 1:
        channels = shape[0]  # PyTorch reads it as one unbatched sample
    else:
        channels = -1
    if channels == expected:
        return
    if len(shape) != nd + 2:
        raise LayerInputError(
            f"{where} needs a batch×{layout} input with {_plural(expected, 'channel')} but "
            f"receives {list(shape)}"
        )
    have = f"{where} expects {_plural(expected, 'input channel')} but the input has {channels}"
    if sample is None:
        raise LayerInputError(
            f"{have} (input {list(shape)}); its in_channels do not match the channels the layer "
            "before it produces"
        )
    if sample[-1] == expected:
        guess = "x".join(str(d) for d in (sample[-1], *sample[:-1]))
        raise LayerInputError(f"{have}; --input is {layout} (did you mean {guess}?)")
    raise LayerInputError(f"{have}; --input is {layout} and this model needs C = {expected}")


def _check_and_explain(frame: _Frame, module: nn.Module, shape: Shape) -> str:
    """Output-size arithmetic for conv/pool; raise InputTooSmallError where a window cannot fit."""
    if isinstance(module, nn.Linear):
        if shape and shape[-1] != module.in_features:
            raise LayerInputError(
                f"{frame.name} (Linear) expects {module.in_features} input features but receives "
                f"{shape[-1]} (input {list(shape)}); the input size does not match the one this "
                "network was built for"
            )
        return ""
    if isinstance(module, _CONV_TRANSPOSE):
        nd = len(module.kernel_size)
        if len(shape) < nd + 1 or not isinstance(module.padding, tuple):
            return ""
        return formulas.transposed_output_sizes(
            shape[-nd:], module.kernel_size, module.stride, module.padding, module.dilation,
            module.output_padding)[1]
    if not isinstance(module, (*_CONV, *_POOL)):
        return ""
    if isinstance(module, _CONV):
        nd = len(module.kernel_size)
        kernel, stride = tuple(module.kernel_size), tuple(module.stride)
        dilation = tuple(module.dilation)
        ceil = False
        if isinstance(module.padding, str):
            spatial = shape[-nd:]
            if module.padding == "same":
                return f"padding='same' keeps {'×'.join(str(n) for n in spatial)}"
            padding: tuple[int, ...] = (0,) * nd
        else:
            padding = tuple(module.padding)
    else:
        nd = {nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.MaxPool3d: 3, nn.AvgPool3d: 3}.get(type(module), 2)
        kernel = _ntuple(module.kernel_size, nd)
        stride = _ntuple(module.stride or module.kernel_size, nd)
        padding = _ntuple(module.padding, nd)
        dilation = _ntuple(getattr(module, "dilation", 1), nd)
        ceil = bool(module.ceil_mode)
    if len(shape) < nd + 1:
        return ""
    spatial = shape[-nd:]
    outs, text = formulas.output_sizes(spatial, kernel, stride, padding, dilation, ceil)
    if any(out < 1 for out in outs):
        dims = "×".join(str(n) for n in spatial)
        ks = "×".join(str(k) for k in kernel)
        window = f"{ks} kernel"
        if any(d > 1 for d in dilation):
            # a dilated window spans (k−1)·d+1 inputs: what has to fit
            span = "×".join(str((k - 1) * d + 1) for k, d in zip(kernel, dilation, strict=True))
            dil = "×".join(str(d) for d in dilation) if len(set(dilation)) > 1 else str(dilation[0])
            window = f"{span} window ({ks} kernel, dilation {dil})"
        pad = f" even with padding {max(padding)}" if any(padding) else ""
        raise InputTooSmallError(
            f"{frame.name} ({frame.type}): input is {dims}, smaller than its {window}{pad}"
        )
    return text


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, list | tuple):
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _smallest_input(model: nn.Module, shape: Shape, batch: int) -> str | None:
    """The smallest square spatial size that passes through ``model``, as ``C×N×N`` (or None)."""
    if len(shape) != 3:
        return None

    def fits(n: int) -> bool:
        try:
            _inspect(model, (shape[0], n, n), batch, None, False, False, torch.float32, train=False)
        except ArchscopeError:
            return False
        return True

    # Too small along some side, so the square of the shorter side is too (its sides are no
    # larger): the search starts above it. (The longer side's square may well fit: 2×6 before a
    # 2×2 pool with dilation 2 fails, 6×6 and 3×3 fit.)
    low, high = min(shape[1], shape[2]), 0
    n = low
    while n <= 8192:
        n *= 2
        if fits(n):
            high = n
            break
        low = n
    if not high:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid
    return f"{shape[0]}×{high}×{high}"


def _forward_error(tracer: _Tracer, exc: Exception) -> ForwardError:
    """Where the forward failed (the layer running, else the last one reached) and why."""
    message = _failure_reason(exc)
    frame = next((f for f in reversed(tracer.stack) if f is not None), None)
    if frame is not None:
        shapes = ", ".join(str(list(s)) for s in frame.input_shapes) or "no tensors"
        return ForwardError(
            f"forward failed in {frame.name} ({frame.type}) with input {shapes}: {message}")
    last = next((f for f in reversed(tracer.frames) if f.kind == "module"), None)
    if last is None:
        return ForwardError(f"the model's forward failed before reaching a layer: {message}")
    return ForwardError(f"the model's forward failed after {last.name} ({last.type}): {message}")


#: what PyTorch says when code asks a meta tensor for its values (.item(), bool(), .tolist() …).
_VALUE_READS = ("cannot be called on meta tensors", "Cannot copy out of meta tensor",
                "meta device type tensor to numpy")


def _failure_reason(exc: Exception) -> str:
    """The exception's first line, or what it means where it comes from tracing on meta."""
    text = str(exc).strip()
    if any(marker in text for marker in _VALUE_READS):
        return f"{READS_VALUES}, which cannot be computed on the meta device where archscope traces"
    if "data-independent implementation does not exist" in text:  # nonzero, x[mask]
        return ("the forward makes a tensor whose size depends on tensor values (`x[x > 0]`, "
                "`nonzero`), which cannot be computed on the meta device where archscope traces")
    op = re.search(r"(\w+::\w+): attempted to run this operator with Meta tensors", text)
    if op is not None:
        return (f"{op.group(1)} has no meta-device implementation in PyTorch, so archscope "
                "cannot trace it")
    mixed = re.search(r"Tensor on device (\S+) is not on the expected device meta", text)
    if mixed is not None:
        return (f"a tensor on {mixed.group(1)} meets the meta tensors archscope traces with: a "
                "tensor attribute that is not a registered buffer (use self.register_buffer) or "
                "one made in forward without device=x.device")
    return first_line(exc)


def _with_note(report: Report, note: str) -> Report:
    return replace(report, notes=(*report.notes, note))


def _op_name(name: str) -> str:
    """``__iadd__`` → ``add``, ``relu_`` → ``relu``, ``__getitem__`` → ``getitem``."""
    stripped = name.strip("_")
    if name.startswith("__") and stripped[:1] in {"i", "r"} and stripped[1:] in {
        "add", "sub", "mul", "truediv", "matmul", "floordiv", "pow", "and", "or",
    }:
        stripped = stripped[1:]
    return {"truediv": "div"}.get(stripped, stripped)
