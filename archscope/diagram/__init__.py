"""``archscope diagram``'s library: a Report drawn as a Graphviz data-flow diagram.

The pipeline, one module per step (each a function over plain data):

- :mod:`~archscope.diagram.collapse` — containers collapsed to a depth (split where they merge);
- :mod:`~archscope.diagram.labels` — the words on each node, from the records;
- :mod:`~archscope.diagram.flow` — edges with their shapes, skip connections, input/output nodes;
- :mod:`~archscope.diagram.fuse` and :mod:`~archscope.diagram.fold` — ``Conv2d + BN + ReLU`` and
  ``×N`` runs;
- :mod:`~archscope.diagram.build` — those steps in order: Report → :class:`Diagram`;
- :mod:`~archscope.diagram.dot` — Diagram → DOT text;
- :mod:`~archscope.diagram.graphviz` — file formats, the ``dot`` program, atomic files;
- :mod:`~archscope.diagram.draw` — Report → :class:`Drawing` → file.

Example::

    from archscope.diagram import build_diagram, render_dot, write_diagram

    dot_source = render_dot(report, depth=2)
    diagram = build_diagram(report, depth=2, fold=False)
    write_diagram(report, "resnet50.pdf", depth=1)
"""

from __future__ import annotations

from archscope.diagram.build import (
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_RANKS,
    build_diagram,
    choose_depth,
    default_depth,
    max_depth,
)
from archscope.diagram.dot import KIND_STYLES, RANKDIRS, write_dot
from archscope.diagram.draw import Drawing, draw, render_dot, save, write_diagram
from archscope.diagram.graphviz import (
    FORMATS,
    INSTALL_HINT,
    PNG_DPI,
    find_dot,
    format_for,
    render_bytes,
    require_dot,
)
from archscope.diagram.kinds import kind_of
from archscope.diagram.labels import describe_hparams
from archscope.diagram.model import Cluster, Diagram, Edge, Node

__all__ = [
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_RANKS",
    "FORMATS",
    "INSTALL_HINT",
    "KIND_STYLES",
    "PNG_DPI",
    "RANKDIRS",
    "Cluster",
    "Diagram",
    "Drawing",
    "Edge",
    "Node",
    "build_diagram",
    "choose_depth",
    "default_depth",
    "describe_hparams",
    "draw",
    "find_dot",
    "format_for",
    "kind_of",
    "max_depth",
    "render_bytes",
    "render_dot",
    "require_dot",
    "save",
    "write_diagram",
    "write_dot",
]
