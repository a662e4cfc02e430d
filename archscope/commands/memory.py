"""``archscope memory MODEL``: a training step's memory as a peak, and the largest batch that fits."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from archscope._io import echo, results
from archscope.commands._common import (
    ResultsCommand,
    engine_options,
    freeze_option,
    head_options,
    input_option,
    model_argument,
    num_classes_option,
    width_option,
)

_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
_OPTIMIZERS = ("sgd", "adamw", "adam", "none")


class SizeType(click.ParamType):
    """``12GiB`` → bytes; anything else is a usage error that lists the accepted forms."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        from archscope.memory.fit import parse_size

        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command(cls=ResultsCommand)
@model_argument
@input_option
@engine_options(trace=False)
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch size (default: 1; with --fit or --gpu, the answer).")
@click.option("--precision", type=click.Choice(_PRECISIONS), default="fp32", show_default=True,
              help="fp32/tf32 in float32; bf16/fp16 under autocast (the device's per-op policy).")
@click.option("--optimizer", type=click.Choice(_OPTIMIZERS), default="sgd", show_default=True,
              help="SGD (momentum 0.9), AdamW, Adam, or none (forward and backward only).")
@freeze_option
@head_options
@num_classes_option
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True,
              help="Whose behaviour to predict (nothing runs there; no GPU needed).")
@click.option("--fit", "fit_size", type=SizeType(), default=None, metavar="SIZE",
              help="Find the largest batch that fits in SIZE (12GiB, 24GB, 80G …).")
@click.option("--gpu", default=None, metavar="NAME",
              help="Find the largest batch that fits a known GPU (H200, H100 SXM, A100 SXM 80GB, "
                   "L4 …).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Also draw the step's memory to FILE.png or FILE.svg (needs archscope[plot]).")
@width_option
def memory(model: str, input_shape: tuple[int, ...] | None, dtype: str | None,
           batch: int | None, precision: str,
           optimizer: str, freeze: tuple[str, ...], head: str | None, base: str | None,
           num_classes: int | None, device: str, fit_size: int | None, gpu: str | None,
           fmt: str, plot: str | None, width: int | None) -> None:
    """Predict the memory of a training step of MODEL: its peak, what is allocated then, where.

    The step (zero_grad, forward, loss, backward, optimizer step) is replayed on PyTorch's meta
    device as DEVICE would run it, with no weights and no GPU: autocast's per-op dtypes, the
    tensors autograd keeps, gradients and optimizer state as they appear, sizes as the CUDA
    caching allocator counts them (what torch.cuda.max_memory_allocated reports).

    \b
    Examples:
      archscope memory resnet50 --batch 256 --precision bf16
      archscope memory vgg16 --batch 64 --optimizer adamw --format json > vgg16.json
      archscope memory resnet50 --precision bf16 --gpu L4
      archscope memory alexnet --fit 12GiB --plot alexnet.png
      archscope memory lecture_mnist_cnn --device cpu --batch 64
      archscope memory my_lm.py:TinyLM --input 128 --dtype long --batch 32
      archscope memory vgg16 --input 3x150x150 --head 'flatten dense256 relu dense1' --freeze features
    """
    from archscope.devices import DEVICES, lookup
    from archscope.memory.fit import fitting_devices, largest_batch
    from archscope.memory.predict import training_memory
    from archscope.render import output_width
    from archscope.render.memory import plot_memory, render_memory_json, render_memory_table
    from archscope.source import resolve

    if plot is not None and not plot.lower().endswith((".png", ".svg")):
        raise click.BadParameter("the file must end in .png or .svg", param_hint="--plot")
    spec = None
    if gpu is not None:
        spec = next((d for d in DEVICES if d.key.lower() == gpu.strip().lower()), None) \
            or lookup(gpu)
        if spec is None or spec.memory_bytes is None:
            known = ", ".join(d.key for d in DEVICES if d.memory_bytes is not None)
            raise click.BadParameter(f"unknown GPU {gpu!r}; known: {known} (or give --fit SIZE)",
                                     param_hint="--gpu")
    searching = fit_size is not None or spec is not None
    if searching and batch is not None:
        raise click.UsageError("--batch and --fit/--gpu do not go together: --fit and --gpu find "
                               "the batch")
    subject = resolve(model, input_shape=input_shape, num_classes=num_classes, head=head,
                      base=base, freeze=freeze, dtype=dtype)
    gpu_name = spec.key if spec is not None else None
    options: dict[str, Any] = dict(precision=precision, optimizer=optimizer, device=device,
                                   gpu=gpu_name, input_dtype=subject.dtype)
    fit = None
    if searching:
        size = fit_size if fit_size is not None else spec.memory_bytes  # type: ignore[union-attr]
        assert size is not None  # a --gpu without a memory size was refused above
        click.echo(f"searching for the largest batch of {subject.name} that fits …", err=True)
        fit = largest_batch(subject.model, subject.input_shape, size, **options)
        batch = fit.batch or 1
    result = training_memory(subject.model, subject.input_shape, batch=batch or 1,
                             name=subject.name, **options)
    if subject.notes:  # how it was built (on the CPU, a new head …)
        result = replace(result, notes=(*subject.notes, *result.notes))
    fits = fitting_devices(result.peak, device) if device == "cuda" else None
    if plot is not None:
        plot_memory(result, plot)
        click.echo(f"wrote {plot}", err=True)
    if fmt == "json":
        echo(render_memory_json(result, fit=fit, fits=fits), nl=False)
        return
    tty = results().isatty()
    echo(render_memory_table(result, fit=fit, fits=fits, width=output_width(width, tty),
                             color=tty), nl=False)
