"""``archscope calc SPEC``: a network typed as a line of layers, counted by the same engine.

The spec language is in :mod:`archscope.spec` and docs/spec.md.
"""

from __future__ import annotations

import click

from archscope._io import echo, results
from archscope.commands._common import (
    ResultsCommand,
    batch_option,
    format_option,
    input_option,
    width_option,
)
from archscope.render import FORMATS, RF_HELP


def _is_spec_text(arg: str) -> bool:
    """``-28x28x1 conv32 k3``, ``-784``: a ``-`` then no letter or ``-``, so no option's name."""
    return len(arg) > 1 and arg[0] == "-" and not (arg[1].isalpha() or arg[1] == "-")


class _SpecCommand(ResultsCommand):
    """A command whose SPEC may start with ``-``: ``calc '-28x28x1 conv32 k3'`` reaches the spec
    parser, which refuses the negative size with a caret, where click would report ``No such
    option '-2'``. Options (``-f``, ``--format`` …), their values and their errors are unchanged.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {name for param in self.params
                       if isinstance(param, click.Option) and not param.is_flag
                       for name in param.opts}
        texts: dict[str, str] = {}  # placeholder → the argument; no argv string holds a NUL
        marked = []
        for i, arg in enumerate(args):
            if _is_spec_text(arg) and not (i and args[i - 1] in takes_value):
                placeholder = f"\0{len(texts)}"
                texts[placeholder] = arg
                arg = placeholder
            marked.append(arg)
        rest = super().parse_args(ctx, marked)
        if texts and ctx.params.get("spec"):
            ctx.params["spec"] = tuple(texts.get(piece, piece) for piece in ctx.params["spec"])
        return rest


@click.command(cls=_SpecCommand)
@click.argument("spec", nargs=-1)
@click.option("-f", "--file", "spec_file", default=None,
              type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="Read the spec from FILE (one layer per line, # comments; - for stdin).")
@click.option("--chw", is_flag=True,
              help="Read the spec's input shape as C×H×W (default: H×W×C, as Keras writes it).")
@input_option
@batch_option
@format_option(FORMATS)
@width_option
@click.option("--explain", is_flag=True,
              help="Accepted as in summary; calc always shows the output-size arithmetic column.")
@click.option("--rf", is_flag=True, help=RF_HELP)
def calc(spec: tuple[str, ...], spec_file: str | None, chw: bool,
         input_shape: tuple[int, ...] | None, batch: int, fmt: str, width: int | None,
         explain: bool, rf: bool) -> None:
    """Count a network typed as a line of layers: shapes with their arithmetic, parameters
    with their formula, MACs and totals.

    SPEC starts with the input (H×W×C as Keras writes it, or chw:C×H×W), then layers separated
    by →, ->, |, commas or spaces. Quote it: unquoted, the shell takes > and | for a redirection
    and a pipe. See docs/spec.md.

    \b
    Examples:
      archscope calc '150x150x3 conv32 k3 → maxpool2 → conv64 k3 → maxpool2 → dense512 → dense1'
      archscope calc '28x28x1 conv32 k3 relu, maxpool2, flatten, dense10 softmax'
      archscope calc 'chw:3x227x227 conv96 k11 s4 relu → lrn → maxpool3/2 → conv256 k5 p2 relu'
      archscope calc '224x224x3 repeat 2 [conv64 k3 same relu] maxpool2' --format json
      archscope calc '32x32x64 conv64 k3 same conv64 k3 same' --rf     # sees 5×5, like one 5×5
      archscope calc -f net.spec
    """
    from archscope.errors import SpecSyntaxError
    from archscope.render import output_width, render
    from archscope.spec import calc_report

    if spec and spec_file:
        raise click.UsageError("give the spec either as SPEC or with -f FILE, not both")
    if spec_file is not None:
        try:
            with click.open_file(spec_file, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.FileError(spec_file, str(exc)) from None
        name = "<stdin>" if spec_file == "-" else spec_file
    elif spec:
        text = " ".join(spec)
        name = " ".join(text.split())
    else:
        raise click.UsageError("give a spec, like archscope calc '28x28x1 conv32 k3 → flatten → "
                               "dense10', or -f FILE")
    if not text.strip():
        raise SpecSyntaxError("the spec is empty; write layers like '28x28x1 conv32 k3 → "
                              "flatten → dense10'")
    report = calc_report(text, name=name, layout="chw" if chw else "hwc",
                         input_shape=input_shape, batch=batch, memory=fmt != "csv")
    tty = results().isatty()
    out = render(report, fmt, explain=True, width=output_width(width, tty),
                 color=tty and fmt == "table", rf=rf)
    echo(out, nl=False)
