"""Errors the library raises on bad input.

Every message says what went wrong, where, and what to do; ``cli.py`` turns them into one line
on stderr and a non-zero exit code in one place. Anything else that escapes is a bug.

Exit codes (README.md, "Exit codes"): a usage error, a bad option value or an option that does
not apply to the MODEL given (:class:`OptionError` and its subclasses, a malformed
``--input`` or spec), exits 2, as click's own usage errors do; everything else (an unknown model,
a model that fails to build or run, no CUDA, out of memory) exits 1.
"""

from __future__ import annotations

import re


class ArchscopeError(Exception):
    """Base class: a user-facing error with a one-line message."""

    exit_code = 1


class OptionError(ArchscopeError):
    """A usage error: a bad option value, or an option that does not apply to this MODEL
    (``--device gpu``, ``--num-classes`` for an ONNX file). Exit code 2."""

    exit_code = 2


class UnknownModelError(ArchscopeError):
    """A model name that is not in the zoo, with close names suggested."""


class ModelSourceError(ArchscopeError):
    """A file, module or attribute that does not give an ``nn.Module``."""


class ModelBuildError(ModelSourceError):
    """Importing the model's file or module, or calling its constructor or factory, raised.

    Attributes:
        stage: what raised: ``"import"`` (the file or module), ``"constructor"`` (an
            ``nn.Module`` subclass) or ``"factory"`` (a function returning one).
        reason: the first line of the original exception's message.
    """

    def __init__(self, message: str, *, stage: str, reason: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.reason = reason


class ModelOptionError(ModelSourceError, OptionError):
    """An option that does not apply to this model: ``--num-classes`` for an ONNX file or a
    spec, ``--freeze`` or ``--base`` naming no module, ``--head`` for an ONNX file. Exit code 2."""

    exit_code = 2


class WeightsError(ModelSourceError):
    """A ``state_dict`` file (``--weights``) that cannot be read or does not fit the model."""


class WeightsNotFoundError(WeightsError, OptionError):
    """A ``--weights`` path where there is no file (a bad option value). Exit code 2."""

    exit_code = 2


class InputShapeError(OptionError):
    """A malformed input shape such as ``3x22a``, or none where the model needs one (a usage
    error: exit code 2)."""

    exit_code = 2


class InputTooSmallError(ArchscopeError):
    """The input shrinks to nothing somewhere in the network."""


class ForwardError(ArchscopeError):
    """The model's forward pass failed; the message names the layer reached."""


class LayerInputError(ForwardError):
    """A layer's input does not fit it: channels, features or dimensions (often the --input).

    Found before the layer runs, from its attributes, so it holds wherever the model runs: a
    real forward that fails there fails for this reason.
    """


class SpecSyntaxError(ArchscopeError):
    """A layer spec that does not parse (syntax)."""

    exit_code = 2


class SpecShapeError(ArchscopeError):
    """A layer spec that parses but cannot apply to the shapes flowing into it."""


class RenderError(ArchscopeError):
    """A drawing or file that cannot be produced (for example Graphviz ``dot`` is missing)."""


class DeviceError(ArchscopeError):
    """A device that is not available (``--device cuda`` without CUDA) or ran out of memory."""


class DeviceOptionError(DeviceError, OptionError):
    """A device option that cannot apply: not a device name (``--device gpu``), a device type
    archscope does not run on, or a setting this device has no use for (``--batch-size auto`` on
    the CPU, bf16 on a GPU without it). Exit code 2."""

    exit_code = 2


class ExportError(ArchscopeError):
    """An export that failed; no partial file is left behind."""


class ExportOptionError(ExportError, OptionError):
    """An export option out of range (an ``--opset`` the exporter cannot write). Exit code 2."""

    exit_code = 2


#: What the meta trace finds from the input and the layers' attributes alone, so it holds on any
#: device: where a real forward fails too (export, bench), it is the better diagnosis.
#: What a forward that reads tensor values is, in the words the trace (``summary``) and ``export``
#: both use; each adds why that stops it.
READS_VALUES = ("the forward reads tensor values (data-dependent control flow such as "
                "`if x.mean() > 0` or `.item()`)")

INPUT_ERRORS = (InputShapeError, InputTooSmallError, LayerInputError)


#: the longest reason a one-line message quotes from an exception.
REASON_LIMIT = 300

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException | str, limit: int = REASON_LIMIT) -> str:
    """The first non-empty line of ``exc``'s message (its type's name if none), at most ``limit``
    characters, colour codes removed.

    A longer line is cut after the last whole sentence that fits (``"… instead."``), else after
    the last whole word, and ends with `` …``: never in the middle of a word.

    >>> first_line("Expected 4 channels. Hint: see the docs for more", limit=30)
    'Expected 4 channels. …'
    """
    text = _ANSI.sub("", exc if isinstance(exc, str) else str(exc))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if not isinstance(exc, str) else ""
    line = lines[0]
    if len(line) <= limit:
        return line
    cut = line[: limit - 2]  # room for " …"
    sentence = max(cut.rfind(". "), cut.rfind("; "))
    if sentence >= limit // 3:
        return cut[:sentence].rstrip(";") + ("." if cut[sentence] == "." else "") + " …"
    word = cut.rfind(" ")
    return (cut[:word] if word > 0 else cut).rstrip(",;:") + " …"


#: How PyTorch's float layers refuse an integer input (conv, linear, matmul, batch norm …).
_INTEGER_INTO_FLOAT = ("Input type (long int)", "Input type (int)", "but found Long",
                       "but found Int", "found dtype Long", "found dtype Int",
                       "\"addmm_impl_cpu_\" not implemented for 'Long'")


def input_dtype_hint(text: str) -> str:
    """What to do where the input's dtype does not suit the model (``""`` otherwise), as
    `` (…)`` to follow PyTorch's message: an Embedding refused a float input (the model's input
    is token ids: ``--dtype long``), or a float layer refused integer ids (leave ``--dtype``
    out)."""
    if "'indices' to have one of the following scalar types" in text:
        return (" (an Embedding looks up integer token ids: give integer inputs with --dtype long, "
                "dtype=torch.long in Python)")
    if any(marker in text for marker in _INTEGER_INTO_FLOAT):
        return (" (the input is integers, from --dtype long or int, and this layer takes floats: "
                "leave --dtype out unless the model starts with an Embedding)")
    return ""


def autograd_hint(text: str, batch_option: str = "--batch") -> str:
    """What to do about an autograd failure PyTorch explains in its own terms (``""`` if none),
    as `` (…)`` to follow its message; ``batch_option`` is the command's batch option."""
    if "modified by an inplace operation" in text:
        return (" (an in-place operation such as ReLU(inplace=True), += or .add_() overwrote a "
                "tensor the backward pass needs: make that operation out-of-place)")
    if "Expected more than 1 value per channel when training" in text:
        return (" (BatchNorm in training mode needs more than one value per channel: use "
                f"{batch_option} 2 or more)")
    return ""
