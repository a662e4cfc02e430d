"""``archscope diagram MODEL``: a Graphviz drawing of the data flow, shapes on the edges."""

from __future__ import annotations

import re
from pathlib import Path

import click

from archscope._io import echo
from archscope.commands._common import (
    ResultsCommand,
    engine_options,
    freeze_option,
    head_options,
    input_option,
    model_argument,
    num_classes_option,
)


@click.command(cls=ResultsCommand)
@model_argument
@click.option("-o", "--output", "output", metavar="FILE", default=None,
              help="Where to write: .svg, .png, .pdf, or .dot/.gv for DOT source; '-' writes DOT "
                   "to stdout. [default: MODEL.svg in the current directory]")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Collapse containers deeper than this into one node (default: the deepest "
                   "that keeps the drawing to about 40 nodes; with --no-fold, every layer).")
@click.option("--fold/--no-fold", default=True, show_default=True,
              help="Draw norm/activation/dropout inside the layer before them and fold runs of "
                   "identical layers or blocks into one ×N node; --no-fold draws every record.")
@click.option("--rankdir", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB",
              metavar="[TB|LR]",
              show_default=True, help="Flow top-to-bottom or left-to-right.")
@click.option("--rf", is_flag=True,
              help="Write on each node the receptive field and jump of its output.")
@input_option
@num_classes_option
@head_options
@freeze_option
@engine_options()
def diagram(model: str, output: str | None, depth: int | None, fold: bool, rankdir: str,
            rf: bool, input_shape: tuple[int, ...] | None, num_classes: int | None,
            head: str | None, base: str | None, freeze: tuple[str, ...], trace: str,
            dtype: str | None) -> None:
    """Draw MODEL: layers with their hyperparameters and parameters, tensor shapes on the edges,
    skip connections dashed, repeated blocks folded; frozen layers (--freeze) drawn grey.

    \b
    Examples:
      archscope diagram resnet50                   # writes resnet50.svg
      archscope diagram vgg16 -o vgg16.png
      archscope diagram resnet50 --depth 1 -o stages.pdf
      archscope diagram resnet18 --depth 3 --no-fold -o resnet18.svg
      archscope diagram vgg16 --rf -o vgg16_rf.svg     # receptive field on every node
      archscope diagram lecture_mnist_cnn --rankdir LR -o - | dot -Tpng > mnist.png
      archscope diagram vgg16 --input 3x150x150 --head 'flatten dense256 relu dense1' \\
          --freeze features --depth 1 -o transfer.svg
    """
    from archscope.diagram import draw, format_for, require_dot, save
    from archscope.errors import OptionError, RenderError
    from archscope.source import load_report

    if output == "-":
        target, fmt = None, "dot"
    elif output:
        try:
            target, fmt = Path(output), format_for(output)
        except RenderError as exc:  # -o with an extension no format has: a bad option value
            raise OptionError(str(exc)) from None
    else:
        target, fmt = Path(_file_stem(model) + ".svg"), "svg"
    require_dot(fmt)  # before tracing: the drawing could not be written anyway
    report = load_report(model, input_shape=input_shape, num_classes=num_classes, freeze=freeze,
                         head=head, base=base, trace=trace, dtype=dtype)
    drawing = draw(report, depth=depth, fold=fold, rankdir=rankdir.upper(), fmt=fmt, rf=rf)
    status = (f"{report.model}: depth {drawing.depth} of {drawing.deepest}, "
              f"{drawing.nodes} nodes{' (folded)' if fold else ''}")
    if target is None:
        echo(drawing.source, nl=False)
        click.echo(status, err=True)
        return
    save(drawing, target)
    click.echo(f"{status} → wrote {target}", err=True)


def _file_stem(name: str) -> str:
    """A file name for a model source: ``resnet50``; ``my_net.py:Net`` → ``my_net_Net``;
    ``spec:nets/a.spec`` → ``a``; an inline spec → ``spec``."""
    if name.startswith("spec:"):
        path = Path(name[5:].strip())
        try:
            is_file = bool(path.suffix) and path.is_file()
        except OSError:  # an inline spec longer than a file name may be
            is_file = False
        return path.stem if is_file else "spec"
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    base = base.replace(".py:", "_").replace(".onnx", "")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._")[:60]
    return stem or "diagram"
