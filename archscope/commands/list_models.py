"""``archscope list``: the zoo's models (no torch import)."""

from __future__ import annotations

import json

import click

from archscope._io import echo


@click.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def list_command(fmt: str) -> None:
    """List the zoo's models: name, family, default input, parameters, description."""
    from archscope.registry import list_models

    entries = list_models()
    if fmt == "json":
        data = [{"name": e.name, "family": e.family, "input_shape": list(e.input_shape),
                 "params": e.params, "params_source": e.params_source,
                 "description": e.description} for e in entries]
        echo(json.dumps(data, indent=2))
        return
    rows = [(e.name, e.family, "×".join(map(str, e.input_shape)), f"{e.params:,}", e.description)
            for e in entries]
    header = ("name", "family", "input", "params", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for i, row in enumerate([header, *rows]):
        line = "  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                          row[2].ljust(widths[2]), row[3].rjust(widths[3]), row[4]])
        echo(line.rstrip())
        if i == 0:
            echo("  ".join("-" * w for w in widths) + "  " + "-" * 11)
