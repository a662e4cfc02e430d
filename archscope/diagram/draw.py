"""Report → drawing → file: the whole pipeline in the calls a command or a user makes.

:func:`draw` builds the diagram at the chosen depth and writes its DOT source once; :func:`save`
renders that source with Graphviz and writes the file atomically. :func:`write_diagram` does both
for a path, :func:`render_dot` returns the DOT text alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from archscope.diagram.build import build_diagram, choose_depth, max_depth
from archscope.diagram.dot import check_rankdir, write_dot
from archscope.diagram.graphviz import PNG_DPI, format_for, require_dot, write_rendered
from archscope.diagram.model import Diagram
from archscope.report import Report


@dataclass(frozen=True)
class Drawing:
    """A diagram drawn for one output format.

    Attributes:
        diagram: the nodes, edges and frames drawn.
        source: its DOT source (with the PNG resolution where ``fmt`` is ``png``).
        fmt: the output format it is meant for (``svg``, ``png``, ``pdf`` or ``dot``).
    """

    diagram: Diagram
    source: str
    fmt: str

    @property
    def depth(self) -> int:
        """The depth drawn, at most the report's deepest (``--depth 9`` of a model 4 deep draws depth 4)."""
        return min(self.diagram.depth, self.deepest)

    @property
    def deepest(self) -> int:
        """The report's deepest depth: the depth that draws every layer."""
        return max_depth(self.diagram.report)

    @property
    def nodes(self) -> int:
        """Nodes drawn, not counting the input and output nodes."""
        return len(self.diagram.layer_nodes)


def draw(report: Report, *, depth: int | None = None, fold: bool = True, rankdir: str = "TB",
         fmt: str = "dot", rf: bool = False) -> Drawing:
    """Draw ``report`` for output format ``fmt``.

    Args:
        report: the traced model.
        depth: collapse containers deeper than this (``None``: the default depth folded, every
            layer unfolded; see :func:`~archscope.diagram.build.choose_depth`).
        fold: fuse norm/activation/dropout into the layer before them and fold runs of identical
            nodes into one ``×N`` node.
        rankdir: ``"TB"`` (top to bottom) or ``"LR"`` (left to right).
        fmt: the output format (one of the values of :data:`~archscope.diagram.graphviz.FORMATS`).
        rf: write each layer node's receptive field and jump on it (``RF 212 · jump 32``).

    Raises:
        ValueError: for a ``rankdir`` other than ``TB`` or ``LR``.
    """
    diagram = _build(report, depth, fold, rankdir, rf)
    dpi = PNG_DPI if fmt == "png" else None
    return Drawing(diagram, write_dot(diagram, rankdir=rankdir, dpi=dpi), fmt)


def render_dot(report: Report, *, depth: int | None = None, fold: bool = True,
               rankdir: str = "TB", dpi: int | None = None) -> str:
    """The DOT source of ``report``'s diagram (arguments as for :func:`draw`; ``dpi``: the
    resolution written into the graph, which only raster output uses)."""
    return write_dot(_build(report, depth, fold, rankdir), rankdir=rankdir, dpi=dpi)


def save(drawing: Drawing, path: str | os.PathLike[str]) -> Path:
    """Write ``drawing`` to ``path`` in its format and return the path written.

    The file appears only once it is complete; on any error nothing is left at ``path``.

    Raises:
        RenderError: when Graphviz is missing or fails, or the file cannot be written.
    """
    return write_rendered(drawing.source, drawing.fmt, path)


def write_diagram(report: Report, path: str | os.PathLike[str], *, depth: int | None = None,
                  fold: bool = True, rankdir: str = "TB") -> Path:
    """Draw ``report`` into ``path`` (format from its extension) and return the path written.

    Graphviz is looked for before drawing; the file appears only once it is complete, and on any
    error nothing is left at ``path``.

    Raises:
        RenderError: for an unknown extension, a missing or failing Graphviz, or a file that
            cannot be written.
    """
    fmt = format_for(path)
    require_dot(fmt)
    return save(draw(report, depth=depth, fold=fold, rankdir=rankdir, fmt=fmt), path)


def _build(report: Report, depth: int | None, fold: bool, rankdir: str,
           rf: bool = False) -> Diagram:
    """The diagram at the chosen depth, once ``rankdir`` is known to be valid."""
    check_rankdir(rankdir)
    return build_diagram(report, depth=choose_depth(report, depth, fold=fold), fold=fold, rf=rf)
