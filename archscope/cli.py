"""The ``archscope`` command line: a thin layer over the library.

Commands live in ``archscope.commands.*`` and are imported only when invoked (or listed by
``--help``), and none of them imports torch at module level, so ``archscope --help`` is instant.
Library errors (:class:`archscope.errors.ArchscopeError`) become one line on stderr here, in one
place.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from archscope import __version__
from archscope.errors import ArchscopeError

#: command name → "module:attribute" of its click command, in the order ``--help`` lists them.
_COMMANDS: dict[str, str] = {
    "list": "archscope.commands.list_models:list_command",
    "summary": "archscope.commands.summary:summary",
    "diagram": "archscope.commands.diagram:diagram",
    "calc": "archscope.commands.calc:calc",
    "bench": "archscope.commands.bench:bench",
    "check": "archscope.commands.check:check",
    "export": "archscope.commands.export:export",
}


class _ArchscopeGroup(click.Group):
    """A group that imports its commands lazily and reports library errors as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArchscopeError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None
        except KeyboardInterrupt:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except Exception as exc:
            message = _environment_error(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


def _environment_error(exc: Exception) -> str | None:
    """One-line messages for failures caused by the machine rather than by archscope."""
    if type(exc).__name__ == "OutOfMemoryError":
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"out of GPU memory: {first[:200]}; try a smaller --batch or --batch-size auto"
    return None


@click.group(cls=_ArchscopeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archscope")
def main() -> None:
    """Inspect, draw, check and benchmark convolutional networks in PyTorch.

    MODEL is a zoo name (`archscope list`), path/to/file.py:Name, package.module:name,
    a layer spec (spec:FILE or 'spec:28x28x1 conv32 k3 ...') or a .onnx file.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
