"""Click parameter types, options and the command class shared by several commands."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from archscope._io import results_on_stdout
from archscope.errors import InputShapeError
from archscope.render import WIDTH_HELP
from archscope.shapes import parse_shape


class ShapeType(click.ParamType):
    """``3x224x224`` → ``(3, 224, 224)``; a malformed shape fails with a one-line usage error."""

    name = "CxHxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_shape(str(value))
        except InputShapeError as exc:
            self.fail(str(exc), param, ctx)


SHAPE = ShapeType()

model_argument = click.argument("model", metavar="MODEL")
input_option = click.option(
    "--input", "input_shape", type=SHAPE, default=None,
    help="Input shape C×H×W, e.g. 3x224x224 (default: the model's natural input).",
)
num_classes_option = click.option(
    "--num-classes", type=click.IntRange(min=1), default=None,
    help="Number of output classes (zoo models; default: the model's own).",
)
width_option = click.option(
    "--width", type=click.IntRange(min=60), default=None, help=WIDTH_HELP,
)
batch_option = click.option(
    "--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size traced.",
)
#: ``--batch`` for commands whose MODEL may be an ONNX file: no value keeps the file's own batch.
source_batch_option = click.option(
    "--batch", type=click.IntRange(min=1), default=None,
    help="Batch size traced (default: 1; an ONNX file keeps the batch it fixes).",
)


head_option = click.option(
    "--head", metavar="SPEC", default=None,
    help="Keep MODEL's convolutional base and put these layers after it, typed as in calc "
         "without an input size, e.g. 'flatten dense256 relu dense1' (transfer learning). "
         "Module names: the base's own, then head.*.",
)
base_option = click.option(
    "--base", metavar="NAME", default=None,
    help="The last top-level module of the base that --head keeps (default for zoo models: "
         "features for VGG, AlexNet and the lecture CNNs, layer4 for ResNet); alone, keep the "
         "base without a head.",
)
freeze_option = click.option(
    "--freeze", multiple=True, metavar="PREFIX",
    help="Mark parameters under PREFIX (e.g. features) as frozen; repeatable.",
)


def head_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--head SPEC`` and ``--base NAME``, as ``head`` and ``base``."""
    return head_option(base_option(command))


#: ``--dtype`` choices; the same names as :data:`archscope._modes.INPUT_DTYPES` (no torch import).
DTYPES = ("float32", "float16", "bfloat16", "float64", "long", "int")


def engine_options(*, trace: bool = True) -> Callable[[Any], Any]:
    """``--dtype`` (as ``dtype``: the input's dtype) and, with ``trace``, ``--trace`` (as
    ``trace``: ``meta`` or ``real``): how the engine runs the model, one decorator for every
    command that takes them."""
    dtype_option = click.option(
        "--dtype", "dtype", type=click.Choice(DTYPES), default=None,
        help="Input dtype (default: the model's float dtype); long for token ids (a model that "
             "starts with an Embedding: ids drawn in [0, num_embeddings)).",
    )
    trace_option = click.option(
        "--trace", "trace", type=click.Choice(["meta", "real"]), default="meta",
        show_default=True,
        help="meta: trace on the meta device, without weights; real: build the model on the "
             "CPU and run its forward for real (for forwards whose shapes depend on tensor "
             "values, x[x > 0], nonzero, detection models).",
    )

    def decorate(command: Any) -> Any:
        command = dtype_option(command)
        return trace_option(command) if trace else command

    return decorate


def format_option(formats: Sequence[str]) -> Callable[[Any], Any]:
    """``--format``, its choices the renderer's ``FORMATS`` (the first is the default), as
    ``fmt``."""
    return click.option("--format", "fmt", type=click.Choice(list(formats)), default=formats[0],
                        show_default=True, help="Output format.")


class ResultsCommand(click.Command):
    """A command whose body runs with what a user's model prints sent to stderr.

    A model may print (``print(x.shape)`` in ``forward``, a message at import): on stdout that
    text would corrupt ``--format json``, CSV or ``diagram -o -``. The body runs inside
    :func:`archscope._io.results_on_stdout`, so results still go to stdout through
    :func:`archscope._io.echo`; help and usage errors, printed while the arguments are parsed
    (before the body runs), go where click sends them. Use as ``@click.command(cls=ResultsCommand)``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        with results_on_stdout():
            return super().invoke(ctx)
