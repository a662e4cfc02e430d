"""The ``archscope`` command line: a thin layer over the library.

Commands live in ``archscope.commands.*`` and are imported only when invoked (or listed by
``--help``), and none of them imports torch at module level, so ``archscope --help`` is instant.
Library errors (:class:`archscope.errors.ArchscopeError`) become one line on stderr here, in one
place. Each command is a :class:`archscope.commands._common.ResultsCommand`: what a user's model
prints goes to stderr, so stdout holds only the command's results.
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
    "memory": "archscope.commands.memory:memory",
    "export": "archscope.commands.export:export",
    "stats": "archscope.commands.stats:stats",
}


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line, with where to look, instead of click's three-line block."""

    def show(self, file: Any = None) -> None:
        where = f" See '{self.ctx.command_path} --help'." if self.ctx is not None else ""
        message = self.format_message().rstrip()
        if not message.endswith((".", "?")):
            message += "."
        click.echo(f"Error: {message}{where}", file=file, err=file is None)


#: click >= 8.2 shows a bare group's help by raising this usage error; it is help, not an error line.
_HELP_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name) for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


def _one_line(error: click.UsageError) -> click.UsageError:
    if isinstance(error, (_OneLineUsageError, *_HELP_ERRORS)):
        return error
    one_line = _OneLineUsageError(error.format_message(), error.ctx)
    one_line.exit_code = error.exit_code
    return one_line


class _ArchscopeGroup(click.Group):
    """A group that imports its commands lazily and reports every error as one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in _COMMANDS:
            import difflib

            close = difflib.get_close_matches(name, list(_COMMANDS), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise _OneLineUsageError(f"No such command '{name}'{hint}", ctx)
        return super().resolve_command(ctx, args)

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
        except click.UsageError as exc:
            raise _one_line(exc) from None
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
        from archscope.errors import first_line

        return (f"out of GPU memory: {first_line(str(exc), 200)}; try a smaller --batch or "
                "--batch-size auto")
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
