"""Draw a Report as SVG, PNG, PDF or DOT through Graphviz.

The DOT source comes from :mod:`archscope.render.dot`; this module picks the format from a file
name, finds Graphviz's ``dot`` program, runs it through the ``graphviz`` Python package and writes
the result atomically. Without ``dot`` only ``.dot``/``.gv`` output works, and the error says how to
install Graphviz.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from archscope._io import atomic_path, write_text_atomic
from archscope.errors import RenderError
from archscope.render.dot import render_dot
from archscope.report import Report

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


def render_bytes(dot_source: str, fmt: str) -> bytes:
    """Lay out ``dot_source`` with Graphviz ``dot`` and return the ``fmt`` (svg/png/pdf) bytes.

    Raises:
        RenderError: when ``dot`` is missing (naming the install command) or fails.
    """
    if fmt == "dot":
        return dot_source.encode("utf-8")
    if find_dot() is None:
        raise RenderError(f"Graphviz's `dot` program is not on PATH, needed for .{fmt} output; "
                          f"{INSTALL_HINT}")
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


def write_diagram(
    report: Report,
    path: str | os.PathLike[str],
    *,
    depth: int | None = None,
    fold: bool = True,
    rankdir: str = "TB",
) -> Path:
    """Draw ``report`` into ``path`` (format from its extension) and return the path written.

    The file appears only once it is complete; on any error nothing is left at ``path``.
    """
    target = Path(path)
    fmt = format_for(target)
    dot_source = render_dot(report, depth=depth, fold=fold, rankdir=rankdir,
                            dpi=PNG_DPI if fmt == "png" else None)
    if fmt == "dot":
        write_text_atomic(target, dot_source)
        return target
    data = render_bytes(dot_source, fmt)
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return target
