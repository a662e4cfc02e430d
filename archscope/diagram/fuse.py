"""Step 2 of a folded diagram: draw a norm, activation or dropout inside the layer before it.

A follower fuses into its only producer when that producer feeds nothing else, sits in the same
frame, is not part of a split block's fold group and is of a kind it may be drawn in
(:data:`archscope.diagram.kinds.FUSE_INTO`): ``Conv2d + BN + ReLU``, ``Linear + ReLU + Dropout``,
``add + ReLU`` (an activation after a merge), as Keras and the papers draw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from archscope.diagram.flow import dedup
from archscope.diagram.kinds import FUSE_INTO
from archscope.diagram.labels import describe_hparams, short_name
from archscope.diagram.model import Edge, Node
from archscope.report import Report


def fuse(report: Report, nodes: Sequence[Node],
         edges: Sequence[Edge]) -> tuple[list[Node], list[Edge]]:
    """``nodes`` and ``edges`` with every fusable follower drawn inside its producer, one at a
    time in drawing order until none is left; nodes returned in drawing order."""
    by_id = {n.id: n for n in nodes}
    flow = list(edges)
    while (pair := _next_fusion(report, by_id, flow)) is not None:
        producer, follower = pair
        by_id[producer.id] = _absorb(report, producer, follower)
        del by_id[follower.id]
        flow = dedup(
            replace(e, src=producer.id) if e.src == follower.id else e
            for e in flow
            if not (e.src == producer.id and e.dst == follower.id)
        )
    return sorted(by_id.values(), key=lambda n: n.order), flow


def _next_fusion(report: Report, by_id: Mapping[str, Node],
                 edges: Sequence[Edge]) -> tuple[Node, Node] | None:
    """The first ``(producer, follower)`` pair, in node order, where the follower may be drawn
    inside the producer; ``None`` when there is none."""
    outs: dict[str, list[Edge]] = {}
    ins: dict[str, list[Edge]] = {}
    for e in edges:
        outs.setdefault(e.src, []).append(e)
        ins.setdefault(e.dst, []).append(e)
    for n in by_id.values():
        if n.role != "layer" or len(n.records) != 1 or n.count != 1:
            continue
        allowed = FUSE_INTO.get(n.kind)
        if not allowed or not report.layers[n.records[0]].is_leaf:
            continue
        incoming = ins.get(n.id, [])
        if len({e.src for e in incoming}) != 1:
            continue
        p = by_id.get(incoming[0].src)
        if p is None or p.kind not in allowed or p.cluster != n.cluster or p.group != p.id:
            continue
        if p.role == "merge" and n.kind != "activation":
            continue
        if len(outs.get(p.id, [])) != 1:
            continue
        return p, n
    return None


def _absorb(report: Report, producer: Node, follower: Node) -> Node:
    """``producer`` drawing ``follower`` too: records, parameters, title, fold signature and
    names joined; a dropout adds its rate to the detail line."""
    rec = report.layers[follower.records[0]]
    detail = producer.detail
    extra = describe_hparams(rec) if follower.kind == "dropout" else ""
    if extra:
        detail = f"{detail} · {extra}" if detail else extra
    return replace(
        producer,
        records=tuple(sorted(producer.records + follower.records)),
        params=producer.params + follower.params,
        title=f"{producer.title} + {short_name(rec)}",
        detail=detail,
        signature=(*producer.signature, *follower.signature[2:]),
        names=producer.names + tuple(n for n in follower.names if n not in producer.names),
    )
