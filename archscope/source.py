"""Model sources: turn what the user typed into a model (and a Report).

A source is one of:

* a zoo name: ``vgg16`` (see ``archscope list``);
* a Python file and a name in it: ``path/to/net.py:Net``;
* an importable module and a name in it: ``package.module:build_net``;
* a layer spec: ``spec:net.spec`` or ``'spec:28x28x1 conv32 k3 → …'`` (see docs/spec.md);
* an ONNX file: ``model.onnx``.

The name may be an ``nn.Module`` subclass, a callable returning an ``nn.Module`` (both are called
with ``num_classes=`` when given) or an ``nn.Module`` instance.

Every command that runs or inspects a PyTorch model starts here, with :func:`resolve`: it builds
the model once (a user's file is imported once per command), settles its input size (the
``--input`` given or the model's own, else one error) and loads ``--weights``, and returns a
:class:`Subject`. The commands pass that Subject on (:func:`inspect_subject`,
:func:`archscope.check.check`, :func:`archscope.bench.bench_subject`,
:func:`archscope.export.export_onnx`), so nothing downstream builds the model again::

    subject = resolve("resnet18", device="cpu", weights="resnet18.pth")
    report = inspect_subject(subject, batch=8)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect as pyinspect
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope.errors import (
    ArchscopeError,
    InputShapeError,
    ModelBuildError,
    ModelOptionError,
    ModelSourceError,
    first_line,
)
from archscope.freeze import freeze_parameters, prefixes_of
from archscope.registry import get_entry, spec_hint

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.report import Report


@dataclass(frozen=True)
class Reference:
    """A published parameter count and where it comes from (``torchvision.models …``)."""

    params: int
    source: str


@dataclass(frozen=True)
class LoadedModel:
    """A built model with what archscope knows about it (what :func:`load_model` returns).

    Attributes:
        model: the module, on ``device``.
        name: the name to show (the source as typed, or the zoo name).
        input_shape: the natural input (C×H×W) where known, else ``None``.
        reference: the published parameter count of a zoo model at its own ``num_classes``,
            else ``None``.
        notes: caveats about how it was built, for the report (e.g. built on the CPU).
        device: where it was built: the device asked for, or ``cpu`` where a build on ``meta``
            needed real tensors.
        base: the last top-level module of a zoo model's convolutional base (what ``--head``
            keeps by default), else ``None``.
    """

    model: nn.Module
    name: str
    input_shape: tuple[int, ...] | None
    reference: Reference | None = None
    notes: tuple[str, ...] = ()
    device: str = "meta"
    base: str | None = None


@dataclass(frozen=True)
class Subject:
    """One model as a command runs it: built once, its input size settled, its weights loaded.

    Made by :func:`resolve`; every command that runs or inspects a PyTorch model takes one.

    Attributes:
        model: the module, on ``device`` (``meta``: shapes only, no weights).
        name: the name to show (the source as typed, or the zoo name).
        input_shape: one sample's shape without the batch (C×H×W): ``--input``, else the model's
            natural input.
        reference: the published parameter count of a zoo model at its own ``num_classes``,
            else ``None``.
        notes: caveats about how it was built, for the report (e.g. built on the CPU).
        device: where the model lives (``meta``, ``cpu``, ``cuda:0`` …).
        weights: the ``state_dict`` file loaded into it, or ``None`` for its initialisation.
        dtype: the input's dtype (``--dtype``: ``torch.long`` for token ids), or ``None`` for the
            model's own floating-point dtype.
    """

    model: nn.Module
    name: str
    input_shape: tuple[int, ...]
    reference: Reference | None = None
    notes: tuple[str, ...] = ()
    device: str = "meta"
    weights: str | None = None
    dtype: torch.dtype | None = None


#: what needed real tensors when a build on the meta device failed, by ModelBuildError.stage.
_NEEDS_REAL = {
    "import": "importing it needs",
    "constructor": "its constructor needs",
    "factory": "its factory needs",
}


def is_onnx(source: str) -> bool:
    return source.lower().endswith(".onnx")


def is_spec(source: str) -> bool:
    return source.startswith("spec:")


def load_model(source: str, *, num_classes: int | None = None, device: str = "meta",
               seed: int = 0) -> LoadedModel:
    """Build the model ``source`` names on ``device`` (``"meta"``: shapes only, no weights).

    Off the meta device the weights are initialised under ``torch.manual_seed(seed)`` in a forked
    random state (the caller's random state is left as it was), so the same command builds the
    same weights every time: ``check``, ``export`` and ``bench`` are reproducible.

    A model whose file or constructor cannot run on the meta device (it reads tensor values, as
    ConvNeXt's and Swin's ``[x.item() for x in torch.linspace(0, rate, depth)]`` does) is built
    again on the CPU, with real weights; the returned model's ``notes`` say so. The engine traces
    it on the meta device all the same (:func:`archscope.engine.inspect` swaps its weights for
    meta stand-ins).

    Raises:
        ModelBuildError: importing the file or module, or calling the constructor or factory,
            raised (on the meta device: on the CPU too).
        ModelSourceError, UnknownModelError: a source that names no model.
        DeviceError: ``device`` is not a device name, or not available here (``cuda`` without
            CUDA).
    """
    from archscope.devices import resolve_device

    resolve_device(device, library=True)
    if is_onnx(source):
        raise ModelSourceError(
            f"{source} is an ONNX file: it can be inspected (summary, diagram) but not run as a "
            "PyTorch model"
        )
    if device != "meta":
        return _seeded_build(source, num_classes, device, seed)
    try:
        return _build(source, num_classes, "meta")
    except ModelBuildError as exc:
        on_meta = exc
    # the file is imported again: what its import made on the meta device has no values
    loaded = _seeded_build(source, num_classes, "cpu", seed)
    note = f"built on the CPU: {_NEEDS_REAL[on_meta.stage]} real tensors ({on_meta.reason})"
    return replace(loaded, notes=(*loaded.notes, note))


def _seeded_build(source: str, num_classes: int | None, device: str, seed: int) -> LoadedModel:
    """Build with real weights initialised from ``seed``, the caller's random state kept."""
    import torch

    from archscope._modes import seeded

    with seeded(seed, torch.device(device)):
        return _build(source, num_classes, device)


def _build(source: str, num_classes: int | None, device: str) -> LoadedModel:
    import torch

    with torch.device(device), _skip_init(device == "meta"):
        if is_spec(source):
            loaded = _load_spec(source, num_classes)
        elif ":" in source and not _looks_like_windows_drive(source):
            loaded = _load_reference(source, num_classes)
        else:
            entry = get_entry(source)
            model = entry.build(num_classes=num_classes)
            reference = Reference(entry.params, entry.params_source) if num_classes is None else None
            loaded = LoadedModel(model, entry.name, entry.input_shape, reference,
                                 base=entry.base)
    return replace(loaded, device=str(torch.device(device)))


@contextmanager
def _skip_init(active: bool) -> Iterator[None]:
    """Turn ``torch.nn.init``'s in-place initialisers into no-ops while building on meta.

    Initialising meta tensors computes nothing, but some initialisers (``normal_``) route through
    ``torch._refs`` and import ``torch._dynamo`` on first use: over a second for nothing.
    """
    if not active:
        yield
        return
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_")
             and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}

    def keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    try:
        for n in names:
            setattr(init, n, keep)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def resolve(
    source: str,
    *,
    input_shape: Sequence[int] | str | None = None,
    num_classes: int | None = None,
    device: str = "meta",
    seed: int = 0,
    weights: str | None = None,
    head: str | None = None,
    base: str | None = None,
    freeze: str | Sequence[str] = (),
    dtype: str | torch.dtype | None = None,
) -> Subject:
    """Build the model ``source`` names, settle its input size and load its weights: a Subject.

    The one entry point for every command that runs or inspects a PyTorch model: the model is
    built once (see :func:`load_model` for ``num_classes``, ``device`` and ``seed``), so a user's
    file is imported once, and the Subject is passed on from there.

    Args:
        input_shape: one sample's shape without the batch, as a sequence (``(3, 64, 64)``) or as
            ``--input`` takes it (``"3x64x64"``); default: the model's natural input.
        weights: a ``state_dict`` file (``torch.save``) to load with ``strict=True`` (see
            :func:`archscope.weights.load_weights`); it needs a device with real weights, not
            ``meta``. It is loaded into the model as built, before ``head`` replaces its top (a
            pretrained base).
        head: layers typed as in ``archscope calc`` (``'flatten dense256 relu dense1'``) put
            after the model's convolutional base (:func:`archscope.head.attach_head`): the
            Subject's model keeps the base's module names and names the head ``head``.
        base: the last top-level module of the base (default: the zoo model's own, e.g.
            ``features`` for VGG; a model outside the zoo needs it with ``head``); alone, it
            keeps the base without a head.
        freeze: parameter-name prefixes to freeze (``requires_grad=False``), after the head is
            attached (see :func:`archscope.freeze.freeze_parameters`): ``"features"`` freezes the
            base and leaves the head trainable.
        dtype: the input's dtype, as ``--dtype`` takes it (``"long"``, ``"float16"`` …: see
            :data:`archscope._modes.INPUT_DTYPES`) or a ``torch.dtype``; default: the model's
            own floating-point dtype. ``"long"`` for a model that starts with an Embedding.

    Raises:
        InputShapeError: a malformed ``input_shape``, or none for a model without a default
            input size; a ``dtype`` that is not an input dtype.
        WeightsError: ``weights`` cannot be read or does not fit the model.
        ModelOptionError: ``head``/``base`` for a spec or with ``num_classes``, a ``base``
            that is not a top-level module, or a ``freeze`` prefix that matches no parameter (a
            usage error).
        UnknownModelError, ModelSourceError, ModelBuildError, DeviceError: see
            :func:`load_model`.
    """
    from archscope._modes import input_dtype_of, input_shape_of

    cut = head is not None or base is not None
    if cut:
        _check_head_options(source, num_classes, head)
    given = input_shape_of(input_shape) if input_shape is not None else None
    input_dtype = input_dtype_of(dtype)
    loaded = load_model(source, num_classes=num_classes, device=device, seed=seed)
    shape = given if given is not None else loaded.input_shape
    if shape is None:
        raise InputShapeError(
            f"{loaded.name} has no default input size; pass one with --input (e.g. 3x224x224)"
        )
    if weights is not None:
        from archscope.weights import load_weights

        load_weights(loaded.model, weights, loaded.device, loaded.name)
    if not cut:
        subject = Subject(loaded.model, loaded.name, tuple(shape), loaded.reference,
                          loaded.notes, loaded.device, weights, input_dtype)
    else:
        from archscope.head import attach_head

        headed = attach_head(loaded.model, name=loaded.name, input_shape=shape, head=head,
                             base=base if base is not None else loaded.base,
                             device=loaded.device, seed=seed)
        # the published count is the whole model's: it does not apply to a base with a new head
        subject = Subject(headed.model, headed.name, tuple(shape), None,
                          (*loaded.notes, *headed.notes), loaded.device, weights, input_dtype)
    if freeze:
        freeze_parameters(subject.model, freeze)
    return subject


def _check_head_options(source: str, num_classes: int | None, head: str | None) -> None:
    """``--head``/``--base`` apply to PyTorch models other than specs, without --num-classes."""
    option = "--head" if head is not None else "--base"
    if is_onnx(source):
        raise ModelOptionError(f"{option} does not apply to an ONNX file: {source} is a fixed "
                               "graph; inspect the PyTorch model it was exported from")
    if is_spec(source):
        raise ModelOptionError(f"{option} does not apply to a layer spec: type the layers you "
                               "want in the spec itself")
    if num_classes is not None:
        raise ModelOptionError(f"--num-classes does not apply with {option}: the classifier it "
                               "sets is not kept; the head's last layer sets the outputs")


def inspect_subject(subject: Subject, *, batch: int = 1, backward: bool = False,
                    training: bool = False, count_flops: bool = True,
                    trace: str = "meta") -> Report:
    """The engine's Report of ``subject``'s model at ``batch``, with the subject's notes.

    ``training=True`` traces in training mode, the mode ``check`` and ``bench`` run the model in
    (a factory may return its model in eval mode); the model's own modes are restored afterwards.
    Otherwise the model is traced in the modes it is in (see :func:`archscope.engine.inspect`).
    The input has the subject's ``dtype``. ``trace="real"`` runs the forward for real on the
    subject's device (which must hold real weights: resolve it with ``device="cpu"``).
    """
    from archscope._modes import kept_modes
    from archscope.engine import inspect

    if trace not in ("meta", "real"):
        raise ValueError(f"trace must be 'meta' or 'real', not {trace!r}")
    with kept_modes(subject.model):
        if training:
            subject.model.train()
        report = inspect(subject.model, subject.input_shape, batch=batch, name=subject.name,
                         backward=backward, count_flops=count_flops, dtype=subject.dtype,
                         trace="real" if trace == "real" else "meta",
                         device=subject.device if trace == "real" else None)
    if subject.notes:
        report = replace(report, notes=(*subject.notes, *report.notes))
    return report


def load_report(
    source: str,
    *,
    input_shape: Sequence[int] | str | None = None,
    batch: int | None = None,
    num_classes: int | None = None,
    freeze: str | Sequence[str] = (),
    backward: bool = False,
    head: str | None = None,
    base: str | None = None,
    trace: str = "meta",
    dtype: str | torch.dtype | None = None,
) -> Report:
    """Inspect ``source`` and return its Report: what ``summary`` and ``diagram`` show.

    ``input_shape`` is one sample's shape without the batch, as a sequence (``(3, 64, 64)``) or
    as ``--input`` takes it (``"3x64x64"``). ``batch`` defaults to 1, except for an ONNX file,
    which keeps the batch it fixes (an explicit ``batch`` must then agree with it). ``freeze``
    is one parameter-name prefix or several (see :func:`archscope.freeze.freeze_parameters`),
    applied after ``head`` and ``base`` (see :func:`resolve`) have cut the model.
    A PyTorch model goes through :func:`resolve` and :func:`inspect_subject`; ``trace="real"``
    (``--trace real``) builds it on the CPU with real weights and runs its forward for real, and
    ``dtype`` is the input's (``--dtype``, see :func:`resolve`). Neither applies to an ONNX file
    or a layer spec (an error says so).

    Raises:
        InputShapeError: a malformed ``input_shape`` or ``batch``, or none for a model without a
            default input size.
        UnknownModelError, ModelSourceError, ModelBuildError: see :func:`load_model`.
        InputTooSmallError, ForwardError: see :func:`archscope.engine.inspect`.
    """
    from archscope._modes import batch_of, input_shape_of

    if input_shape is not None:
        input_shape = input_shape_of(input_shape)
    if batch is not None:
        batch = batch_of(batch)
    freeze = prefixes_of(freeze)
    if head is not None or base is not None:
        _check_head_options(source, num_classes, head)
    if is_onnx(source):
        # Contract with archscope/engine/onnx.py: inspect_onnx(path, batch=N or None,
        # input_shape=, freeze=) -> Report; --input and --batch set symbolic dimensions and must
        # agree with fixed ones.
        from archscope.engine import inspect_onnx

        if num_classes is not None:
            raise ModelOptionError(
                f"--num-classes does not apply to an ONNX file: {source} fixes its output layer; "
                "export the model again with the number of classes you want"
            )
        _no_engine_options(f"an ONNX file ({source} is read, not run)", trace, dtype)
        return inspect_onnx(source, batch=batch, input_shape=input_shape, freeze=freeze)

    batch = 1 if batch is None else batch
    if is_spec(source):
        _no_engine_options("a layer spec (its layers never read tensor values and take float "
                           "input)", trace, dtype)
        return _spec_report(source, input_shape, batch, num_classes, freeze, backward)
    subject = resolve(source, input_shape=input_shape, num_classes=num_classes, head=head,
                      base=base, freeze=freeze, device="cpu" if trace == "real" else "meta",
                      dtype=dtype)
    return inspect_subject(subject, batch=batch, backward=backward, trace=trace)


def _no_engine_options(what: str, trace: str, dtype: Any) -> None:
    """Refuse ``--trace real`` and ``--dtype`` where they do not apply, rather than ignore them."""
    given = [option for option, value in (("--trace real", trace == "real"),
                                          ("--dtype", dtype is not None)) if value]
    if given:
        raise ModelOptionError(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} "
                               f"not apply to {what}")


def _spec_report(source: str, input_shape: Sequence[int] | None, batch: int,
                 num_classes: int | None, freeze: Sequence[str], backward: bool) -> Report:
    """A spec's Report, exactly as ``archscope calc`` computes it."""
    from archscope.spec import calc_report, read_spec

    if num_classes is not None:
        raise ModelOptionError("--num-classes does not apply to a layer spec; edit its last layer")
    text, name = read_spec(source[len("spec:"):])
    shape = tuple(input_shape) if input_shape is not None else None
    return calc_report(text, name=name, input_shape=shape, batch=batch, freeze=freeze,
                       backward=backward)


def _looks_like_windows_drive(source: str) -> bool:
    return len(source) > 2 and source[1] == ":" and source[2] in "\\/"


def _load_spec(source: str, num_classes: int | None) -> LoadedModel:
    # Contract with archscope/spec.py: load_spec_source(text after "spec:") returns
    # (nn.Module built on the current default device, display name, input shape C×H×W).
    from archscope.spec import load_spec_source

    model, name, shape = load_spec_source(source[len("spec:"):])
    if num_classes is not None:
        raise ModelOptionError("--num-classes does not apply to a layer spec; edit its last layer")
    return LoadedModel(model, name, shape)


def _load_reference(source: str, num_classes: int | None) -> LoadedModel:
    spec = spec_hint(source)  # 'chw:3x32x32 conv32 k3' is a spec, not module 'chw'
    if spec:
        raise ModelSourceError(f"{source!r} is not a model reference: {spec}")
    where, _, attr = source.rpartition(":")
    if not where or not attr:
        raise ModelSourceError(f"malformed model reference {source!r}; write path/to/file.py:Name")
    module = _import_file(where) if where.endswith(".py") or "/" in where else _import_module(where)
    if not hasattr(module, attr):
        available = sorted(n for n, v in vars(module).items() if _is_model_factory(v))
        hint = f"; it defines {', '.join(available)}" if available else ""
        raise ModelSourceError(f"{where} does not define {attr!r}{hint}")
    target = getattr(module, attr)
    file = where if where.endswith(".py") or "/" in where else None
    model = _instantiate(target, num_classes, source, file)
    return LoadedModel(model, source, getattr(target, "input_shape", None))


def _import_file(path_text: str) -> Any:
    path = Path(path_text)
    if not path.is_file():
        raise ModelSourceError(f"no such file: {path_text}")
    module_name = f"_archscope_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"cannot import {path_text} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except ArchscopeError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise _build_error(f"importing {path_text}", "import", exc, file=path_text) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        parts = name.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise ModelSourceError(f"cannot import module {name!r}: {exc}") from None
        # the module exists, but one of its own imports is missing: the model fails to build
        raise _build_error(f"importing {name}", "import", exc) from exc
    except ArchscopeError:
        raise
    except Exception as exc:
        raise _build_error(f"importing {name}", "import", exc) from exc


def _build_error(doing: str, stage: str, exc: Exception, hint: str = "",
                 file: str | None = None) -> ModelBuildError:
    """``building net.py:Net failed: NameError: name 'foo' is not defined (net.py, line 12:
    `self.fc = foo`)``: the first line of the message, and the user's line that raised it.

    ``file`` is the user's file as typed (its frames are shown under that name); the line is the
    innermost frame of the user's code (:func:`archscope.pyfile.user_location`). A SyntaxError
    says where itself.
    """
    from archscope.pyfile import user_location

    reason = first_line(exc)
    where = "" if isinstance(exc, SyntaxError) else user_location(exc, file, file or "")
    at = f" ({where})" if where else ""
    return ModelBuildError(f"{doing} failed: {type(exc).__name__}: {reason}{at}{hint}",
                           stage=stage, reason=reason)


def _is_model_factory(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module) or (
        pyinspect.isclass(value) and issubclass(value, nn.Module) and value is not nn.Module
    ) or (pyinspect.isfunction(value) and not value.__name__.startswith("_"))


def _instantiate(target: Any, num_classes: int | None, source: str,
                 file: str | None = None) -> nn.Module:
    from torch import nn

    if isinstance(target, nn.Module):
        if num_classes is not None:
            raise ModelOptionError(f"--num-classes cannot apply to the module instance {source}")
        return target
    if not callable(target):
        raise ModelSourceError(f"{source} is neither an nn.Module nor a callable returning one")
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    try:
        model = target(**kwargs)
    except ArchscopeError:
        raise
    except Exception as exc:
        # Any exception: on the meta device load_model tries again on the CPU, and a user's
        # constructor that raises is the user's error, told in one line, not archscope's bug.
        hint = ""
        if num_classes is not None and isinstance(exc, TypeError) and "num_classes" in str(exc):
            hint = f"; --num-classes calls it with num_classes={num_classes}"
        stage = "constructor" if pyinspect.isclass(target) else "factory"
        raise _build_error(f"building {source}", stage, exc, hint, file) from exc
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"{source} returned {type(model).__name__}, not an nn.Module")
    return model
