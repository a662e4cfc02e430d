"""Report → :class:`~archscope.diagram.model.Diagram`: the steps in order, and the depth to draw.

The diagram is drawn from the same :class:`~archscope.report.Report` that ``summary`` prints, no
second tracer: leaf records and functional ops are the graph's vertices, ``LayerRecord.inputs`` its
edges, and the container records (with ``parent``/``depth``) say what may be collapsed.

1. **Collapse** to a depth (:mod:`~archscope.diagram.collapse`): which node draws each record,
   which containers are frames.
2. **Nodes and edges**: one node per slot, labelled (:mod:`~archscope.diagram.labels`); the edges
   between them with their shapes and skips (:mod:`~archscope.diagram.flow`).
3. **Fuse** (``fold=True``, :mod:`~archscope.diagram.fuse`): a norm, activation or dropout drawn
   inside the layer before it.
4. **Fold** (``fold=True``, :mod:`~archscope.diagram.fold`): runs of identical nodes or blocks
   become one ``×N`` node.
5. **Names**: each node's name line and shared-weight note, once the nodes are final.

Every step is deterministic, so the DOT text can be compared with golden files.
"""

from __future__ import annotations

from dataclasses import replace

from archscope.diagram.collapse import Layout, collapse
from archscope.diagram.flow import connect, input_node, output_nodes
from archscope.diagram.fold import fold_runs, signature
from archscope.diagram.fuse import fuse
from archscope.diagram.labels import display_name, node_text, shared_text
from archscope.diagram.model import Diagram, Node
from archscope.report import Report

#: Largest node count the default depth aims for (one legible page).
DEFAULT_MAX_NODES = 40
#: Longest input-to-output path the default depth aims for (ResNet-50 at depth 2 has 23).
DEFAULT_MAX_RANKS = 26


def build_diagram(report: Report, *, depth: int | None = None, fold: bool = True,
                  rf: bool = False) -> Diagram:
    """Collapse, fuse and fold ``report`` into a :class:`Diagram` (see the module docstring).

    ``depth=None`` draws every layer (the full depth). ``rf`` labels each layer node with the
    receptive field of its output (its last record: a folded run's last copy, a collapsed
    block's output).
    """
    depth = max_depth(report) if depth is None else max(1, depth)
    layout = collapse(report, depth)
    nodes = _layer_nodes(report, layout)
    outputs = output_nodes(report)
    edges = connect(report, layout.key_of, outputs)
    if fold:
        nodes, edges = fuse(report, nodes, edges)
        nodes, edges = fold_runs(nodes, edges)
    named = [replace(n, name=display_name(n), shared=shared_text(report, n.records)) for n in nodes]
    if rf:
        named = _with_receptive_fields(report, named)
    return Diagram(report, depth, fold, (input_node(report), *named, *outputs), tuple(edges),
                   layout.clusters, layout.outside)


def _with_receptive_fields(report: Report, nodes: list[Node]) -> list[Node]:
    from archscope.receptive import receptive_fields

    fields = receptive_fields(report)
    labelled = []
    for n in nodes:
        field = fields[max(n.records)] if n.records else None
        text = ""
        if field is not None and field.rf_text:
            text = f"RF {field.rf_text}"
            if field.jump_text:
                text += f" · jump {field.jump_text}"
        labelled.append(replace(n, rf=text))
    return labelled


def max_depth(report: Report) -> int:
    """The deepest record's depth (1 for a flat model)."""
    return max((r.depth for r in report.layers), default=1)


def default_depth(report: Report, *, fold: bool = True, max_nodes: int = DEFAULT_MAX_NODES,
                  max_ranks: int = DEFAULT_MAX_RANKS) -> int:
    """The deepest depth whose diagram fits one page: at most ``max_nodes`` layer nodes and at
    most ``max_ranks`` nodes along its longest path (at least 1)."""
    for depth in range(max_depth(report), 0, -1):
        drawing = build_diagram(report, depth=depth, fold=fold)
        if len(drawing.layer_nodes) <= max_nodes and drawing.ranks <= max_ranks:
            return depth
    return 1


def choose_depth(report: Report, depth: int | None, *, fold: bool = True) -> int:
    """The depth to draw: ``depth`` if given; else, folded, :func:`default_depth` (one page);
    unfolded, the full depth: ``--no-fold`` asks to see every layer."""
    if depth is not None:
        return depth
    return default_depth(report) if fold else max_depth(report)


def _layer_nodes(report: Report, layout: Layout) -> list[Node]:
    """One node per slot of ``layout``, labelled, in drawing order, each in its fold group: a
    split block's main path, branches and merge share one."""
    members: dict[str, list[int]] = {}
    for index, key in layout.key_of.items():
        members.setdefault(key, []).append(index)
    group_of: dict[str, str] = {}
    for a, split in layout.splits.items():
        main = f"m{a}"
        if main not in members:
            continue
        for unit in split.roles:
            for leaf in layout.tree.leaves(unit):
                if leaf in layout.key_of:
                    group_of[layout.key_of[leaf]] = f"g{a}"
        group_of[main] = f"g{a}"
    nodes = []
    for key, indices in members.items():
        records = tuple(sorted(indices))
        slot = layout.slots[key]
        is_main = key.startswith("m")
        text = node_text(report, records, slot.collapsed)
        nodes.append(Node(
            id=key, role=slot.role, kind=slot.kind, records=records,
            params=sum(report.layers[i].params for i in records), title=text.title,
            detail=text.detail, name=text.name, cluster=slot.cluster,
            group=group_of.get(key, f"g{slot.collapsed}" if is_main else key),
            order=float(records[0]), names=(text.name,) if text.name else (),
            signature=signature(report, records, slot.role, is_main),
        ))
    return sorted(nodes, key=lambda n: n.order)
