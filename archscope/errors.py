"""Errors the library raises on bad input.

Every message says what went wrong, where, and what to do; ``cli.py`` turns them into one line
on stderr and a non-zero exit code in one place. Anything else that escapes is a bug.
"""

from __future__ import annotations


class ArchscopeError(Exception):
    """Base class: a user-facing error with a one-line message."""

    exit_code = 1


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


class InputShapeError(ArchscopeError):
    """A malformed input shape such as ``3x22a``."""

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


class ExportError(ArchscopeError):
    """An export that failed; no partial file is left behind."""


#: What the meta trace finds from the input and the layers' attributes alone, so it holds on any
#: device: where a real forward fails too (export, bench), it is the better diagnosis.
INPUT_ERRORS = (InputShapeError, InputTooSmallError, LayerInputError)
