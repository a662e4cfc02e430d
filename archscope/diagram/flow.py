"""The data flow between nodes: the input and output nodes, the edges with the shape of the tensor
along each, and which edges are residual skips.

Edges are found between leaf records (``LayerRecord.inputs``) and mapped onto the nodes that draw
them, so a collapsed block's edges are those of the layers inside it. Shapes are the engine's, as
the table's Output shape column shows them (:func:`archscope.render._columns.sample_shape`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from archscope.diagram.kinds import is_residual
from archscope.diagram.labels import dims_text
from archscope.diagram.model import Edge, Node
from archscope.render._columns import Dims, sample_shape
from archscope.report import MODEL_INPUT, BatchAxis, LayerRecord, Report


def input_node(report: Report) -> Node:
    """The model input: one sample's shape."""
    return Node(id="input", role="input", kind="io", records=(), params=0, title="input",
                detail=dims_text(report.input_shape), order=-1.0)


def output_nodes(report: Report) -> tuple[Node, ...]:
    """One node per model output, named by its key for dict outputs (``output age``)."""
    shapes = report.output_shapes
    keys = report.output_keys
    nodes = []
    for i, shape in enumerate(shapes):
        if len(keys) == len(shapes):
            title = keys[i] if keys[i].startswith("output") else f"output {keys[i]}"
        else:
            title = "output" if len(shapes) == 1 else f"output {i}"
        axis = report.output_batch_axes[i] if i < len(report.output_batch_axes) else None
        nodes.append(Node(
            id=f"output{i}" if len(shapes) > 1 else "output", role="output", kind="io",
            records=(), params=0, title=title,
            detail=dims_text(_drop_batch(shape, axis)) or "scalar",
            order=float(len(report.layers) + i),
        ))
    return tuple(nodes)


def connect(report: Report, key_of: Mapping[int, str], outputs: Sequence[Node]) -> list[Edge]:
    """The edges between the nodes drawing each record (``key_of``) and into ``outputs``: one
    per tensor, duplicates merged, skips marked."""
    edges: list[Edge] = []
    skips = skip_edges(report)
    for r in report.layers:
        if not r.is_leaf or r.index not in key_of:
            continue
        dst = key_of[r.index]
        for pos, p in enumerate(r.inputs):
            src = "input" if p == MODEL_INPUT else key_of.get(p)
            if src is None or src == dst:
                continue
            edges.append(Edge(src, dst, _edge_shape(report, r, pos, p), (p, r.index) in skips))
    for i, p in enumerate(report.outputs):
        if i >= len(outputs):
            break
        src = "input" if p == MODEL_INPUT else key_of.get(p)
        if src is not None:
            out_shape = report.output_shapes[i] if i < len(report.output_shapes) else None
            out_axis = report.output_batch_axes[i] if i < len(report.output_batch_axes) else None
            edges.append(Edge(src, outputs[i].id, _drop_batch(out_shape, out_axis)))
    return dedup(edges)


def skip_edges(report: Report) -> set[tuple[int, int]]:
    """Leaf-level edges ``(producer, consumer)`` that lie on a residual skip path.

    At an ``add``-like merge the input reached along the longest path from the model input is the
    main path; every other input is a skip, and so is the chain of single-use layers leading to it
    (a ``downsample`` conv and its norm). Concatenations have no skips: their inputs are peers.
    Works the same on nested PyTorch traces and flat ONNX graphs.
    """
    layers = report.layers
    longest: dict[int, int] = {MODEL_INPUT: 0}
    consumers: dict[int, set[int]] = {}
    for r in layers:
        if not r.is_leaf:
            continue
        longest[r.index] = 1 + max((longest.get(p, 0) for p in r.inputs), default=0)
        for p in set(r.inputs):
            consumers.setdefault(p, set()).add(r.index)
    skips: set[tuple[int, int]] = set()
    for r in layers:
        if not is_residual(r):
            continue
        producers = list(dict.fromkeys(r.inputs))
        main = max(producers, key=lambda p: (longest.get(p, 0), -producers.index(p)))
        for q in producers:
            if q == main:
                continue
            skips.add((q, r.index))
            consumer = r.index
            # Walk back along the side branch while it is a simple chain used only here.
            while q != MODEL_INPUT and consumers.get(q) == {consumer}:
                inputs = set(layers[q].inputs)
                if len(inputs) != 1:
                    break
                (before,) = inputs
                skips.add((before, q))
                consumer, q = q, before
    return skips


def dedup(edges: Iterable[Edge]) -> list[Edge]:
    """One edge per (source, destination, shape), in first-seen order."""
    seen: dict[tuple[str, str, Dims | None], Edge] = {}
    for e in edges:
        k = (e.src, e.dst, e.shape)
        first = seen.get(k)
        # One tensor reaching a node along both paths (a block's input feeding its main path and
        # its downsample) is drawn solid: it is a skip only if every path is.
        seen[k] = e if first is None else replace(first, skip=first.skip and e.skip)
    return list(seen.values())


def _drop_batch(shape: Sequence[int] | None, batch_axis: BatchAxis) -> Dims | None:
    """``shape`` as the table's Output shape cell shows it, by the same rule
    (:func:`archscope.render._columns.sample_shape`): the recorded batch dimension dropped
    where it is first, ``N`` where it is not."""
    if shape is None:
        return None
    return sample_shape(tuple(shape), batch_axis)


def _edge_shape(report: Report, consumer: LayerRecord, pos: int, producer: int) -> Dims | None:
    """The shape of the tensor flowing from ``producer`` into ``consumer``'s input ``pos``."""
    if len(consumer.input_shapes) == len(consumer.inputs):
        return _drop_batch(consumer.input_shapes[pos], consumer.input_batch_axes[pos])
    if producer == MODEL_INPUT:
        return tuple(report.input_shape)
    made = report.layers[producer]
    return _drop_batch(made.output_shape,
                       made.output_batch_axes[0] if made.output_batch_axes else None)
