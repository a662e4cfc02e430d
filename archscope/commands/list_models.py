"""``archscope list``: the zoo's models (no torch import)."""

from __future__ import annotations

import click

from archscope._io import echo
from archscope.commands._common import format_option
from archscope.render.zoo import FORMATS


@click.command("list")
@format_option(FORMATS)
def list_command(fmt: str) -> None:
    """List the zoo's models: name, family, default input, parameters, description."""
    from archscope.registry import list_models
    from archscope.render.zoo import render_models

    echo(render_models(list_models(), fmt), nl=False)
