"""Graphviz: the output format of a file name, the ``dot`` program, rendered bytes, atomic files.

SVG, PNG and PDF are laid out by Graphviz's ``dot`` through the ``graphviz`` Python package
(imported only when rendering). Without ``dot`` only DOT source (``.dot``/``.gv``) can be written,
and the error says how to install Graphviz.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from archscope._io import atomic_path
from archscope.errors import RenderError

#: File extension → Graphviz output format (``dot`` is the DOT source itself, no Graphviz needed).
FORMATS: dict[str, str] = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

#: Resolution of PNG output (Graphviz's default, 96, makes small text blurry).
PNG_DPI = 110

INSTALL_HINT = (
    "install Graphviz (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz;"
    " conda: conda install graphviz) or write DOT source with -o FILE.dot"
)


def format_for(path: str | os.PathLike[str]) -> str:
    """The output format of ``path`` from its extension (``diagram.svg`` → ``svg``).

    Raises:
        RenderError: for an extension that is not one of :data:`FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        choices = ", ".join(FORMATS)
        raise RenderError(
            f"cannot tell the diagram format of {os.fspath(path)!r} from its extension; "
            f"use one of {choices}"
        )
    return FORMATS[suffix]


def find_dot() -> str | None:
    """The path of Graphviz's ``dot`` program, or ``None`` when it is not installed."""
    return shutil.which("dot")


def require_dot(fmt: str) -> None:
    """Check that ``fmt`` can be rendered here: DOT source always, other formats with ``dot``.

    Raises:
        RenderError: when ``dot`` is missing for ``fmt``, naming the install command.
    """
    if fmt != "dot" and find_dot() is None:
        raise RenderError(f"Graphviz's `dot` program is not on PATH, needed for .{fmt} output; "
                          f"{INSTALL_HINT}")


def render_bytes(dot_source: str, fmt: str) -> bytes:
    """Lay out ``dot_source`` with Graphviz ``dot`` and return the ``fmt`` (svg/png/pdf) bytes;
    for ``fmt="dot"`` the source itself (UTF-8).

    Raises:
        RenderError: when ``dot`` is missing (naming the install command) or fails.
    """
    if fmt == "dot":
        return dot_source.encode("utf-8")
    require_dot(fmt)
    import graphviz

    try:
        data: bytes = graphviz.pipe("dot", fmt, dot_source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise RenderError(f"Graphviz's `dot` program could not be run for .{fmt} output; "
                          f"{INSTALL_HINT}") from None
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else ""
        lines = stderr.strip().splitlines()
        first = lines[0] if lines else f"exit status {exc.returncode}"
        raise RenderError(f"Graphviz `dot` failed to draw .{fmt}: {first}") from None
    return data


def write_rendered(dot_source: str, fmt: str, path: str | os.PathLike[str]) -> Path:
    """Render ``dot_source`` as ``fmt`` and write it to ``path`` atomically: the file appears
    only once complete, and on any error nothing is left there.

    Raises:
        RenderError: when rendering fails or the file cannot be written.
    """
    target = Path(path)
    data = render_bytes(dot_source, fmt)
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise RenderError(f"cannot write {target}: {exc.strerror or exc}; "
                          "choose another path with -o") from None
    return target
