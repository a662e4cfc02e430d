"""``--base NAME`` and ``--head SPEC``: a model's convolutional base with new layers after it.

Transfer learning as lecture 000 does it (Keras' ``VGG16(include_top=False)`` and a new
``Flatten → Dense256 → Dense1`` classifier)::

    archscope summary vgg16 --input 3x150x150 --head 'flatten dense256 relu dense1' --freeze features

The base is the model's top-level modules, in the order they were created, up to and including
``NAME`` (a zoo model knows its own: ``features`` for VGG, AlexNet and the lecture CNNs,
``layer4`` for ResNet, everything before ``avgpool``), run one after another. The head is typed
as in ``archscope calc`` without an input size: it is built by the spec package
(:mod:`archscope.spec`) on the base's output shape, which the engine traces on the meta device.
The result is an ``nn.Sequential`` that keeps the base's module names (``features.0`` …, so a
``state_dict`` of the base still fits them) and names the head ``head`` (``head.fc1`` …).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archscope.errors import (
    ForwardError,
    InputTooSmallError,
    ModelOptionError,
    SpecShapeError,
    SpecSyntaxError,
)

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Headed:
    """A model cut at its base, with a head after it where one was typed.

    Attributes:
        model: ``nn.Sequential`` of the base's top-level modules (their own names) and ``head``.
        name: ``vgg16 up to features + head 'flatten dense256 relu dense1'``.
        base: the last top-level module kept.
        base_output: one sample's shape out of the base (C×H×W), where the head starts.
        notes: what the report should say (the head's own build notes, prefixed ``--head``).
    """

    model: nn.Module
    name: str
    base: str
    base_output: tuple[int, ...]
    notes: tuple[str, ...] = ()


def top_level_names(model: nn.Module) -> list[str]:
    """The names of ``model``'s top-level modules, in the order they were created."""
    return [name for name, _ in model.named_children()]


def attach_head(model: nn.Module, *, name: str, input_shape: Sequence[int], head: str | None,
                base: str | None, device: str = "meta", seed: int = 0) -> Headed:
    """Cut ``model`` after its top-level module ``base`` and put the layers ``head`` after it.

    Args:
        model: the built model (on ``device``); its modules are reused, not copied.
        name: the model's name, for messages and the result's name.
        input_shape: one sample's input (C×H×W), at which the base is traced for its output.
        head: layers typed as in ``archscope calc``, without an input size
            (``'flatten dense256 relu dense1'``); ``None`` keeps the base alone.
        base: the last top-level module to keep (``features``); ``None`` only when ``model``
            has no such fact (the caller passes the zoo's).
        device: where to build the head (``meta``: shapes only).
        seed: seed of the head's initialisation off the meta device.

    Raises:
        ModelOptionError: no ``base``, or one that is not a top-level module (the message
            lists them). A usage error.
        SpecSyntaxError, SpecShapeError: the head does not parse, or a layer cannot apply to
            the base's output; the message starts with ``--head``.
        ForwardError, InputTooSmallError: the base does not run as a chain at ``input_shape``.
    """
    from torch import nn

    names = top_level_names(model)
    listed = ", ".join(names) if names else "none"
    if base is None:
        raise ModelOptionError(
            f"--head needs --base NAME for {name}: the last top-level module of its "
            f"convolutional base; its top-level modules are: {listed}"
        )
    if base not in names:
        raise ModelOptionError(
            f"--base {base!r} is not a top-level module of {name}; its top-level modules "
            f"are: {listed}"
        )
    kept = list(model.named_children())[: names.index(base) + 1]
    trunk = nn.Sequential(OrderedDict(kept))
    trunk.training = model.training  # the container's own flag; each module keeps its own
    output = _base_output(trunk, input_shape, name, base)
    label = f"{name} up to {base}"
    if head is None:
        return Headed(trunk, label, base, output)
    layers, notes = _build_head(head, output, device, seed)
    headed = nn.Sequential(OrderedDict([*kept, ("head", layers)]))
    headed.training = model.training
    return Headed(headed, f"{label} + head {' '.join(head.split())!r}", base, output,
                  tuple(f"--head: {note}" for note in notes))


def _base_output(trunk: nn.Module, input_shape: Sequence[int], name: str,
                 base: str) -> tuple[int, ...]:
    """One sample's output shape of ``trunk``, from the engine's meta trace."""
    from archscope.engine import inspect

    what = f"the base of {name} (its top-level modules up to {base}, run one after another)"
    try:
        report = inspect(trunk, tuple(input_shape), batch=1, count_flops=False)
    except InputTooSmallError as exc:
        raise InputTooSmallError(f"{what}: {exc}") from None
    except ForwardError as exc:
        raise ForwardError(f"{what} does not run as a chain: {exc}; name another --base") from None
    if len(report.output_shapes) != 1 or not report.output_shapes[0]:
        raise ForwardError(f"{what} returns {len(report.output_shapes)} tensors; --head needs "
                           "one tensor out of the base: name another --base")
    return tuple(report.output_shapes[0][1:])


def _build_head(head: str, shape: tuple[int, ...], device: str,
                seed: int) -> tuple[nn.Module, tuple[str, ...]]:
    """The head's layers on ``device`` (initialised under ``seed`` off meta) and its notes."""
    import torch

    from archscope._modes import seeded
    from archscope.spec import build, parse

    try:
        parsed = parse(head, layout="chw")
    except SpecSyntaxError as exc:
        raise SpecSyntaxError(f"--head: {exc}") from None
    if parsed.input_dims is not None:
        written = "×".join(str(d) for d in parsed.input_dims)
        raise SpecSyntaxError(
            f"--head starts where the base ends ({'×'.join(str(d) for d in shape)}): leave out "
            f"the input size {written} and type the layers only, like 'flatten dense256 relu "
            "dense1'"
        )
    dev = torch.device(device)
    try:
        if dev.type == "meta":
            built = build(parsed, input_shape=shape, device=dev, name="head")
        else:
            with seeded(seed, dev):
                built = build(parsed, input_shape=shape, device=dev, name="head")
    except SpecShapeError as exc:
        raise SpecShapeError(f"--head on the base's {'×'.join(str(d) for d in shape)} output: "
                             f"{exc}") from None
    return built.model, built.notes


__all__ = ["Headed", "attach_head", "top_level_names"]
