"""Model sources: turn what the user typed into a model (and a Report).

A source is one of:

* a zoo name: ``vgg16`` (see ``archscope list``);
* a Python file and a name in it: ``path/to/net.py:Net``;
* an importable module and a name in it: ``package.module:build_net``;
* a layer spec: ``spec:net.spec`` or ``'spec:28x28x1 conv32 k3 → …'`` (see docs/spec.md);
* an ONNX file: ``model.onnx``.

The name may be an ``nn.Module`` subclass, a callable returning an ``nn.Module`` (both are called
with ``num_classes=`` when given) or an ``nn.Module`` instance.
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
    ModelSourceError,
    first_line,
)
from archscope.freeze import freeze_parameters, prefixes_of
from archscope.registry import get_entry

if TYPE_CHECKING:
    from torch import nn

    from archscope.report import Report


@dataclass
class LoadedModel:
    """A built model with what archscope knows about it.

    Attributes:
        model: the module (on the device it was built on).
        name: the name to show (the source as typed, or the zoo name).
        input_shape: the natural input (C×H×W) where known, else ``None``.
        reference_params: the published parameter count for zoo models, else ``None``.
        reference_source: where ``reference_params`` comes from.
        notes: caveats about how it was built, for the report (e.g. built on the CPU).
    """

    model: nn.Module
    name: str
    input_shape: tuple[int, ...] | None
    reference_params: int | None = None
    reference_source: str | None = None
    notes: tuple[str, ...] = ()


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
            return _load_spec(source, num_classes)
        if ":" in source and not _looks_like_windows_drive(source):
            return _load_reference(source, num_classes)
        entry = get_entry(source)
        model = entry.build(num_classes=num_classes)
        reference = entry.params if num_classes is None else None
        return LoadedModel(model, entry.name, entry.input_shape, reference, entry.params_source)


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


def load_report(
    source: str,
    *,
    input_shape: Sequence[int] | str | None = None,
    batch: int | None = None,
    num_classes: int | None = None,
    freeze: str | Sequence[str] = (),
    backward: bool = False,
) -> Report:
    """Inspect ``source`` and return its Report: what ``summary`` and ``diagram`` show.

    ``input_shape`` is one sample's shape without the batch, as a sequence (``(3, 64, 64)``) or
    as ``--input`` takes it (``"3x64x64"``). ``batch`` defaults to 1, except for an ONNX file,
    which keeps the batch it fixes (an explicit ``batch`` must then agree with it). ``freeze``
    is one parameter-name prefix or several (see :func:`archscope.freeze.freeze_parameters`).

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
    if is_onnx(source):
        # Contract with archscope/engine/onnx.py: inspect_onnx(path, batch=N or None,
        # input_shape=, freeze=) -> Report; --input and --batch set symbolic dimensions and must
        # agree with fixed ones.
        from archscope.engine import inspect_onnx

        if num_classes is not None:
            raise ModelSourceError(
                f"--num-classes does not apply to an ONNX file: {source} fixes its output layer; "
                "export the model again with the number of classes you want"
            )
        return inspect_onnx(source, batch=batch, input_shape=input_shape, freeze=freeze)
    from archscope.engine import inspect

    batch = 1 if batch is None else batch
    if is_spec(source):
        return _spec_report(source, input_shape, batch, num_classes, freeze, backward)
    loaded = load_model(source, num_classes=num_classes)
    shape = tuple(input_shape) if input_shape is not None else loaded.input_shape
    if shape is None:
        raise InputShapeError(
            f"{loaded.name} has no default input size; pass one with --input (e.g. 3x224x224)"
        )
    if freeze:
        freeze_parameters(loaded.model, freeze)
    report = inspect(loaded.model, shape, batch=batch, name=loaded.name, backward=backward)
    if loaded.notes:
        report = replace(report, notes=(*loaded.notes, *report.notes))
    return report


def _spec_report(source: str, input_shape: Sequence[int] | None, batch: int,
                 num_classes: int | None, freeze: Sequence[str], backward: bool) -> Report:
    """A spec's Report, exactly as ``archscope calc`` computes it."""
    from archscope.spec import calc_report, read_spec

    if num_classes is not None:
        raise ModelSourceError("--num-classes does not apply to a layer spec; edit its last layer")
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
        raise ModelSourceError("--num-classes does not apply to a layer spec; edit its last layer")
    return LoadedModel(model, name, shape)


def _load_reference(source: str, num_classes: int | None) -> LoadedModel:
    where, _, attr = source.rpartition(":")
    if not where or not attr:
        raise ModelSourceError(f"malformed model reference {source!r}; write path/to/file.py:Name")
    module = _import_file(where) if where.endswith(".py") or "/" in where else _import_module(where)
    if not hasattr(module, attr):
        available = sorted(n for n, v in vars(module).items() if _is_model_factory(v))
        hint = f"; it defines {', '.join(available)}" if available else ""
        raise ModelSourceError(f"{where} does not define {attr!r}{hint}")
    target = getattr(module, attr)
    model = _instantiate(target, num_classes, source)
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
        raise _build_error(f"importing {path_text}", "import", exc) from exc
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


def _build_error(doing: str, stage: str, exc: Exception, hint: str = "") -> ModelBuildError:
    """``importing net.py failed: RuntimeError: boom`` (the first line of the message)."""
    reason = first_line(exc)
    return ModelBuildError(f"{doing} failed: {type(exc).__name__}: {reason}{hint}", stage=stage,
                           reason=reason)


def _is_model_factory(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module) or (
        pyinspect.isclass(value) and issubclass(value, nn.Module) and value is not nn.Module
    ) or (pyinspect.isfunction(value) and not value.__name__.startswith("_"))


def _instantiate(target: Any, num_classes: int | None, source: str) -> nn.Module:
    from torch import nn

    if isinstance(target, nn.Module):
        if num_classes is not None:
            raise ModelSourceError(f"--num-classes cannot apply to the module instance {source}")
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
        raise _build_error(f"building {source}", stage, exc, hint) from exc
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"{source} returned {type(model).__name__}, not an nn.Module")
    return model
