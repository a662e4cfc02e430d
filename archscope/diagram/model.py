"""The diagram as plain data: nodes, edges and frames, ready to be written as DOT.

Every step of :func:`archscope.diagram.build_diagram` takes these values and returns new ones;
nothing here knows Graphviz.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archscope.render._columns import Dims
from archscope.report import LayerRecord, Report


@dataclass(frozen=True)
class Node:
    """One box (or small op ellipse) of the diagram.

    Attributes:
        id: the DOT identifier (deterministic: derived from record indices).
        role: ``"layer"`` (a leaf or a collapsed container), ``"merge"`` (a functional op combining
            tensors), ``"input"`` or ``"output"``.
        kind: the colour key in :data:`archscope.diagram.dot.KIND_STYLES` (``"io"`` for
            input/output).
        records: the record indices drawn by this node (leaves, ops and collapsed containers).
        params: the parameters of all those records.
        title: the bold first line (``Conv2d``, ``Bottleneck``, ``Conv2d + BN + ReLU``).
        detail: hyperparameters (``k3×3 s2 p1 · 64→128``) or a block's layer summary.
        name: the qualified module name(s) (``layer1.0.conv1``, ``layer2.1–3``).
        count: how many identical consecutive nodes were folded into this one (``×N``).
        cluster: index of the expanded container the node is drawn inside (``None``: top level).
        group: the fold unit this node belongs to (a split block's nodes share one group).
        order: sort key (first record index; input first, outputs last).
        signature: what must be equal for two nodes to fold.
        names: the module names drawn here, in drawing order (fusing appends).
        last_names: after folding, the names of the last copy folded in (for the name range).
        shared: where weights this node uses are counted when that is another node
            (``shared with emb``, ``same weights as call 1``), else ``""``.
        rf: the receptive field of the node's output (``RF 212 · jump 32``) when drawn with
            ``rf=True``, else ``""``.
    """

    id: str
    role: str
    kind: str
    records: tuple[int, ...]
    params: int
    title: str
    detail: str = ""
    name: str = ""
    count: int = 1
    cluster: int | None = None
    group: str = ""
    order: float = 0.0
    signature: tuple[Any, ...] = ()
    names: tuple[str, ...] = ()
    last_names: tuple[str, ...] = ()
    shared: str = ""
    rf: str = ""


@dataclass(frozen=True)
class Edge:
    """A tensor flowing from one node to another, labelled with its shape."""

    src: str
    dst: str
    shape: Dims | None
    skip: bool = False


@dataclass(frozen=True)
class Cluster:
    """An expanded container drawn as a labelled frame around its nodes.

    ``params`` are the container's own parameters (those of no node inside it).
    """

    index: int
    parent: int | None
    title: str
    params: int = 0


@dataclass(frozen=True)
class Diagram:
    """Nodes, edges and clusters ready to be written as DOT.

    Attributes:
        report: the traced model drawn.
        depth: the depth containers were collapsed to.
        fold: whether layers were fused and runs folded.
        nodes: the input node, the layer nodes in call order, the output nodes.
        edges: tensors between nodes, skip connections marked.
        clusters: expanded containers that hold nodes (and their ancestors), by record index.
        outside: records whose parameters belong to no traced call (named in the title).
    """

    report: Report
    depth: int
    fold: bool
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    clusters: Mapping[int, Cluster] = field(default_factory=dict)
    outside: tuple[LayerRecord, ...] = ()

    @property
    def layer_nodes(self) -> list[Node]:
        """Nodes other than the input and output nodes."""
        return [n for n in self.nodes if n.role not in ("input", "output")]

    @property
    def total_params(self) -> int:
        """Parameters drawn: the nodes' sum, containers' own parameters shown on clusters, and
        parameters outside the data flow named in the title."""
        return (sum(n.params for n in self.nodes) + sum(c.params for c in self.clusters.values())
                + sum(r.params for r in self.outside))

    @property
    def ranks(self) -> int:
        """Nodes on the longest path from input to output: the drawing's length."""
        order = {n.id: i for i, n in enumerate(sorted(self.nodes, key=lambda n: n.order))}
        longest = dict.fromkeys(order, 1)
        for e in sorted(self.edges, key=lambda e: (order.get(e.src, 0), order.get(e.dst, 0))):
            if e.src in order and e.dst in order and order[e.src] < order[e.dst]:
                longest[e.dst] = max(longest[e.dst], longest[e.src] + 1)
        return max(longest.values(), default=0)

    def node(self, node_id: str) -> Node:
        """The node with id ``node_id`` (``KeyError`` if there is none)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def in_edges(self, node_id: str) -> list[Edge]:
        """Edges into ``node_id``, in drawing order."""
        return [e for e in self.edges if e.dst == node_id]

    def out_edges(self, node_id: str) -> list[Edge]:
        """Edges out of ``node_id``, in drawing order."""
        return [e for e in self.edges if e.src == node_id]
