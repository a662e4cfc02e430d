"""``archscope export MODEL -o model.onnx``: ONNX export, checked and compared with onnxruntime."""

from __future__ import annotations

import click

from archscope._io import echo
from archscope.commands._common import (
    ResultsCommand,
    engine_options,
    format_option,
    head_options,
    input_option,
    model_argument,
    num_classes_option,
)
from archscope.export import DEFAULT_OPSET, MIN_OPSET  # plain integers: no torch import
from archscope.render.export import FORMATS


@click.command(cls=ResultsCommand)
@model_argument
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True,
              metavar="FILE.onnx", help="The ONNX file to write.")
@click.option("--opset", type=click.IntRange(min=MIN_OPSET), default=DEFAULT_OPSET,
              show_default=True,
              help=f"ONNX opset version, {MIN_OPSET} or higher: the oldest the torch.export-based "
                   "exporter writes.")
@click.option("--dynamic-batch", is_flag=True,
              help="Make the batch dimension symbolic ('batch') instead of fixed.")
@input_option
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch of the example input (fixed in the file without --dynamic-batch).")
@num_classes_option
@head_options
@click.option("--weights", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A state_dict file (torch.save) to load with strict=True before exporting.")
@click.option("--rtol", type=click.FloatRange(min=0), default=None,
              help="Largest accepted max|PyTorch − onnxruntime| ÷ max|PyTorch|, per output "
                   "(default: 1e-5). Where PyTorch's own fp32 error against a float64 run is "
                   "larger, 4× that error is accepted instead.")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Also accept an absolute |PyTorch − onnxruntime| difference up to this, "
                   "whatever the outputs' scale (default: 0).")
@click.option("--no-verify", is_flag=True,
              help="Skip the onnxruntime comparison (the ONNX checker still runs).")
@click.option("-v", "--verbose", is_flag=True,
              help="Show what PyTorch's exporter printed, logged and warned (stderr); without it "
                   "that output is captured and a failure is one line.")
@format_option(FORMATS)
@engine_options(trace=False)
def export(model: str, output: str, opset: int, dynamic_batch: bool,
           input_shape: tuple[int, ...] | None, batch: int, num_classes: int | None,
           head: str | None, base: str | None, weights: str | None, rtol: float | None,
           atol: float | None, no_verify: bool, verbose: bool, fmt: str,
           dtype: str | None) -> None:
    """Export MODEL to ONNX and verify the file.

    The model is built on the CPU with real weights (its initialisation, or --weights) and
    exported with PyTorch's torch.export-based exporter; the file is checked with onnx.checker
    (full_check, including shape inference) and, when onnxruntime is installed (pip install
    'archscope[onnxruntime]'), the same random input is run through PyTorch and onnxruntime:
    each output may differ by at most 1e-5 of its largest value, or, where PyTorch's fp32
    result is itself farther than that from a float64 run of the model, by at most 4× that
    inherent error. Outputs too degenerate to compare (all zero, as from a zero-initialised
    head) are said to be so and compared again with the model's constant parameters re-drawn
    from a seeded normal distribution. Nothing is written if any step fails.

    \b
    Examples:
      archscope export resnet50 -o resnet50.onnx
      archscope export vgg16 -o vgg16.onnx --dynamic-batch --opset 18
      archscope export resnet18 --weights resnet18-f37072fd.pth -o resnet18.onnx
      archscope export my_net.py:Net --input 3x32x32 -o net.onnx
      archscope summary resnet50.onnx
    """
    from archscope.export import DEFAULT_ATOL, DEFAULT_RTOL, ExporterFailed, export_onnx
    from archscope.render.export import render_export
    from archscope.source import resolve

    subject = resolve(model, input_shape=input_shape, num_classes=num_classes, device="cpu",
                      weights=weights, head=head, base=base, dtype=dtype)
    if not output.lower().endswith(".onnx"):
        click.echo(f"note: {output} does not end in .onnx; archscope summary and diagram recognise "
                   "ONNX files by that suffix", err=True)
    click.echo(f"exporting {subject.name} to {output} …", err=True)
    try:
        result = export_onnx(
            subject, output, batch=batch, opset=opset, dynamic_batch=dynamic_batch,
            verify=not no_verify, rtol=DEFAULT_RTOL if rtol is None else rtol,
            atol=DEFAULT_ATOL if atol is None else atol,
        )
    except ExporterFailed as exc:
        if verbose and exc.output:
            click.echo(exc.output, err=True)
        raise
    if verbose and result.exporter_output:
        click.echo(result.exporter_output, err=True)
    echo(render_export(result, fmt, verify=not no_verify), nl=False)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
