"""``archscope summary MODEL``: every layer with its shape, parameters and their arithmetic."""

from __future__ import annotations

import click

from archscope._io import echo, results
from archscope.commands._common import (
    ResultsCommand,
    engine_options,
    format_option,
    freeze_option,
    head_options,
    input_option,
    model_argument,
    num_classes_option,
    source_batch_option,
    width_option,
)
from archscope.render import FORMATS, RF_HELP


@click.command(cls=ResultsCommand)
@model_argument
@input_option
@source_batch_option
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Show layers down to this nesting depth (default: all).")
@num_classes_option
@head_options
@freeze_option
@format_option(FORMATS)
@click.option("--explain", is_flag=True, help="Add the output-size arithmetic column.")
@click.option("--rf", is_flag=True, help=RF_HELP)
@width_option
@engine_options()
def summary(model: str, input_shape: tuple[int, ...] | None, batch: int | None, depth: int | None,
            num_classes: int | None, head: str | None, base: str | None, freeze: tuple[str, ...],
            fmt: str, explain: bool, rf: bool, width: int | None, trace: str,
            dtype: str | None) -> None:
    """Show every layer of MODEL: output shape, parameters with their formula, MACs, totals.

    \b
    Examples:
      archscope summary vgg16
      archscope summary lecture_catsdogs_cnn --explain
      archscope summary resnet50 --input 3x512x512 --batch 8 --depth 2
      archscope summary vgg16 --rf                  # receptive field of every layer
      archscope summary vgg16 --freeze features --format json > vgg16.json
      archscope summary vgg16 --input 3x150x150 --head 'flatten dense256 relu dense1' --freeze features
      archscope summary my_net.py:Net --input 3x32x32
      archscope summary lm.py:TinyLM --input 12 --dtype long
      archscope summary detector.py:Net --trace real
    """
    from archscope.render import output_width, render
    from archscope.source import load_report

    report = load_report(model, input_shape=input_shape, batch=batch, num_classes=num_classes,
                         freeze=freeze, head=head, base=base, trace=trace, dtype=dtype)
    tty = results().isatty()
    text = render(report, fmt, explain=explain, width=output_width(width, tty),
                  color=tty and fmt == "table", max_depth=depth, rf=rf)
    echo(text, nl=False)
