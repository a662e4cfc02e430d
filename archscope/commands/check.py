"""``archscope check [MODEL…]``: run models for real and compare with the meta trace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from archscope._io import echo
from archscope.commands._common import (
    SHAPE,
    ResultsCommand,
    engine_options,
    format_option,
    head_options,
    num_classes_option,
)
from archscope.errors import ArchscopeError
from archscope.render.check import FORMATS

if TYPE_CHECKING:
    from archscope.check import CheckResult


@click.command(cls=ResultsCommand)
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option("--device", default="auto", show_default=True, metavar="auto|cuda|cuda:N|cpu",
              help="Where to run: auto picks CUDA when available.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A state_dict file (torch.save) to load with strict=True (one MODEL only).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch of the random input (default: 1, or 2 where a BatchNorm in training "
                   "mode would see one value per channel at batch 1).")
@click.option("--input", "input_shape", type=SHAPE, default=None,
              help="Input shape C×H×W (default: each model's natural input).")
@num_classes_option
@head_options
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Timed forward passes (default: 10 on CUDA, 3 on the CPU).")
@format_option(FORMATS)
@engine_options()
def check(models: tuple[str, ...], device: str, weights: str | None, batch: int | None,
          input_shape: tuple[int, ...] | None, num_classes: int | None, head: str | None,
          base: str | None, repeats: int | None, fmt: str, trace: str,
          dtype: str | None) -> None:
    """Run MODEL(s) for real and verify them against archscope's meta trace (a real one with
    --trace real).

    For each model (default: every zoo model): build it with real weights on the device, run a
    forward and backward pass on random input, and check that every layer's output shape equals
    the trace, the parameter total equals the published reference, and outputs and gradients are
    finite. Reports the training-memory estimate against the measured peak (CUDA) and the forward
    latency. Prints PASS or FAIL per model; exits with 1 if any fails.

    \b
    Examples:
      archscope check resnet50 --device cuda
      archscope check lecture_mnist_cnn alexnet --device cpu
      archscope check resnet18 --weights resnet18-f37072fd.pth
      archscope check --device cuda --format json > check.json
    """
    from archscope.check import check_model, failed_check
    from archscope.devices import resolve_device
    from archscope.registry import check_names, get_entry, model_names
    from archscope.render.check import render_check

    if weights is not None and len(models) != 1:
        raise click.UsageError("--weights needs exactly one MODEL")
    names = list(models) or model_names()
    check_names(names)  # unknown zoo names fail before anything runs
    if head is not None and base is None:  # and zoo models without a base, too
        bare = [n for n in names if ":" not in n and not n.lower().endswith(".onnx")
                and get_entry(n).base is None]
        if bare:
            raise click.UsageError(f"--head needs --base NAME for {', '.join(bare)}: no "
                                   "convolutional base is recorded for it in the zoo")
    dev = resolve_device(device)
    results: list[CheckResult] = []
    errors: list[ArchscopeError] = []
    for name in names:
        click.echo(f"checking {name} on {dev} …", err=True)
        try:
            results.append(check_model(name, device=str(dev), batch=batch, weights=weights,
                                       input_shape=input_shape, num_classes=num_classes,
                                       head=head, base=base, repeats=repeats, trace=trace,
                                       dtype=dtype))
        except ArchscopeError as exc:  # a weights file that does not fit this model
            if fmt != "json":
                raise
            # the JSON document still says what happened; the error line follows on stderr
            errors.append(exc)
            results.append(failed_check(name, str(dev), input_shape, batch, weights, str(exc)))
    echo(render_check(results, fmt, device=str(dev)), nl=False)
    if errors:
        raise errors[0]
    if not all(r.passed for r in results):
        raise SystemExit(1)
