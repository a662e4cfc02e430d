"""``archscope stats MODEL…``: what flows through a network at initialization."""

from __future__ import annotations

from typing import Any

import click

from archscope._io import echo
from archscope.commands._common import engine_options, input_option, num_classes_option
from archscope.stats.schemes import SCHEME_NAMES, InitSchemeError, Scheme, parse_schemes


class SchemesType(click.ParamType):
    """``he_normal,normal:0.01`` → the schemes; an unknown or malformed one is a usage error."""

    name = "SCHEME[,SCHEME…]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_schemes(str(value))
        except InitSchemeError as exc:
            self.fail(str(exc), param, ctx)


def _check_seed(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if not 0 <= value < 2**63:
        raise click.BadParameter(f"{value} is not a seed; use a whole number from 0 to 2**63 − 1")
    return value


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@click.option("--init", "schemes", type=SchemesType(), default="default", show_default=True,
              help=f"Initialization schemes to compare, comma-separated: {', '.join(SCHEME_NAMES)}. "
                   "Every scheme but default sets biases to 0.")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch of N(0, 1) inputs (default: the largest power of two with at most "
                   "2,097,152 input values, between 8 and 256: 256 for 1×28×28, 8 for "
                   "3×224×224).")
@input_option
@engine_options(trace=False)
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
              help="Where to run: auto picks CUDA when available.")
@click.option("--seed", type=int, default=0, show_default=True, callback=_check_seed,
              help="Seed of the model's own weights, the drawn weights, the input and the labels.")
@click.option("--no-norm", is_flag=True,
              help="Replace every BatchNorm, InstanceNorm, LayerNorm, GroupNorm and RMSNorm with "
                   "identity for the run.")
@num_classes_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png|FILE.svg",
              help="Also draw the activation histograms and the gradient by depth into FILE "
                   "(needs matplotlib: pip install 'archscope[plot]').")
@click.option("--all-layers", is_flag=True,
              help="Table rows for norm, pooling, dropout … layers too (JSON always has them).")
def stats(models: tuple[str, ...], schemes: tuple[Scheme, ...], batch: int | None,
          input_shape: tuple[int, ...] | None, dtype: str | None, device: str, seed: int,
          no_norm: bool,
          num_classes: int | None, fmt: str, plot: str | None, all_layers: bool) -> None:
    """Show what flows through MODEL(s) at initialization: each Linear/Conv weight's init
    formula and drawn std, then one real forward and backward pass (training mode, N(0, 1)
    inputs, cross-entropy against random labels) with every layer's activation mean, std,
    % exactly zero, % saturated, histogram and gradient std. Several schemes or models are shown
    side by side.

    \b
    Examples:
      archscope stats 'spec:784 10x[dense100 sigmoid] dense10' --init normal:1,normal:0.01,xavier_normal
      archscope stats plain34 resnet34 --no-norm --input 3x112x112 --batch 16
      archscope stats lecture_mnist_cnn --init he_normal,lecun_uniform --format json
      archscope stats resnet18 --init he_normal,normal:0.01 --plot resnet18.png
      archscope stats my_lm.py:TinyLM --input 128 --dtype long
    """
    from archscope.devices import resolve_device
    from archscope.registry import check_names
    from archscope.render.stats import render_stats_json, render_stats_table
    from archscope.render.stats_plot import plot_format, plot_stats, require_matplotlib
    from archscope.stats.run import source_stats

    if plot is not None:  # fail before anything runs: the picture could not be drawn anyway
        plot_format(plot)
        require_matplotlib()
    check_names(models)
    dev = resolve_device(device)
    runs = []
    for model in models:
        click.echo(f"stats: {model} on {dev} ({', '.join(s.name for s in schemes)}) …", err=True)
        runs += source_stats(model, schemes, input_shape=input_shape, batch=batch, device=str(dev),
                             seed=seed, no_norm=no_norm, num_classes=num_classes, dtype=dtype)
    if fmt == "json":
        echo(render_stats_json(runs), nl=False)
    else:
        echo(render_stats_table(runs, all_layers=all_layers), nl=False)
    if plot is not None:
        plot_stats(runs, plot)
        click.echo(f"wrote {plot}", err=True)
