"""Small I/O helpers shared by the commands: the results stream and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_results: list[IO[Any]] = []


@contextmanager
def results_on_stdout() -> Iterator[None]:
    """Keep stdout for the command's results; send everything else printed meanwhile to stderr.

    A user's model may print (``print(x.shape)`` in ``forward``, a message at import): that text
    would corrupt ``--format json``, CSV or ``diagram -o -``. Inside this block ``sys.stdout`` is
    stderr, and :func:`results` is the real stdout.
    """
    _results.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _results.pop()


def results() -> IO[Any]:
    """The stream a command writes its results to (stdout, also inside :func:`results_on_stdout`)."""
    return _results[-1] if _results else sys.stdout


def echo(text: str = "", nl: bool = True) -> None:
    """``click.echo`` to :func:`results`."""
    import click

    click.echo(text, file=results(), nl=nl)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    Nothing half-written is ever left at ``target``: on any exception the temporary file is removed.
    """
    target = Path(target)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp_path, _mode_for(target))
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _mode_for(target: Path) -> int:
    """The existing file's permissions, or 0666 minus the umask for a new file."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
