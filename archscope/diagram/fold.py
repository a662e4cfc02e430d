"""Step 3 of a folded diagram: a run of identical consecutive nodes or blocks becomes one node
marked ``×N`` with the summed parameters.

The unit of folding is a node's *group*: a single node, or a split block's main path, branches
and merge together (a residual block). Consecutive groups fold when their signatures are equal
(same types, hyperparameters, shapes and parameters, see :func:`signature`), they sit in the same
frames, and each feeds only the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from archscope.diagram.flow import dedup
from archscope.diagram.labels import facts_key
from archscope.diagram.model import Edge, Node
from archscope.report import Report


def signature(report: Report, records: Sequence[int], role: str, is_main: bool) -> tuple[Any, ...]:
    """What must be equal for two nodes drawing ``records`` to fold: their role, whether they
    are a block's main path, and per record its type, relative depth, leafness, hyperparameters,
    shapes and parameters."""
    layers = report.layers
    base = min(layers[i].depth for i in records) if records else 0
    return (role, is_main, *(
        (
            layers[i].type,
            layers[i].depth - base,
            layers[i].is_leaf,
            facts_key(layers[i]),
            layers[i].input_shapes,
            layers[i].output_shapes,
            layers[i].params,
        )
        for i in records
    ))


def fold_runs(nodes: Sequence[Node], edges: Sequence[Edge]) -> tuple[list[Node], list[Edge]]:
    """``nodes`` and ``edges`` with every run of identical consecutive groups folded into its
    first group: each of its nodes counts the copies and sums their parameters; edges between or
    inside the later copies disappear."""
    groups: dict[str, list[Node]] = {}
    for n in nodes:
        groups.setdefault(n.group, []).append(n)
    group_of = {n.id: n.group for n in nodes}
    runs = _runs(groups, group_of, edges)

    folded: dict[str, Node] = {}  # first copy's node id → that node with the later copies in
    remap: dict[str, str] = {}  # later copy's node id → the first copy's
    for run in runs:
        first = groups[run[0]]
        for g in run[1:]:
            for pos, n in enumerate(groups[g]):
                target = folded.get(first[pos].id, first[pos])
                folded[target.id] = replace(
                    target, count=target.count + 1, params=target.params + n.params,
                    records=tuple(sorted(target.records + n.records)), last_names=n.names,
                )
                remap[n.id] = target.id
    if not remap:
        return list(nodes), list(edges)

    run_of = {g: i for i, run in enumerate(runs) for g in run}
    kept: list[Edge] = []
    for e in edges:
        gs, gd = group_of.get(e.src), group_of.get(e.dst)
        if gs is not None and gd is not None and run_of.get(gs) == run_of.get(gd) and gs != gd:
            continue  # between two folded copies
        if e.src in remap and e.dst in remap and gs == gd:
            continue  # inside a later copy: the first copy's edges stand for it
        kept.append(replace(e, src=remap.get(e.src, e.src), dst=remap.get(e.dst, e.dst)))
    return [folded.get(n.id, n) for n in nodes if n.id not in remap], dedup(kept)


def _runs(groups: dict[str, list[Node]], group_of: dict[str, str],
          edges: Sequence[Edge]) -> list[list[str]]:
    """Runs of folding groups, in drawing order (a run of one is a group that folds with none)."""

    def external(g: str) -> tuple[set[str], set[str]]:
        """The groups (or io nodes) feeding group ``g``, and those it feeds."""
        ids = {n.id for n in groups[g]}
        srcs = {group_of.get(e.src, e.src) for e in edges if e.dst in ids and e.src not in ids}
        dsts = {group_of.get(e.dst, e.dst) for e in edges if e.src in ids and e.dst not in ids}
        return srcs, dsts

    runs: list[list[str]] = []
    for g in sorted(groups, key=lambda g: min(n.order for n in groups[g])):
        if runs:
            prev = runs[-1][-1]
            same = (
                [n.signature for n in groups[prev]] == [n.signature for n in groups[g]]
                and {n.cluster for n in groups[prev]} == {n.cluster for n in groups[g]}
            )
            if same and external(prev)[1] == {g} and external(g)[0] == {prev}:
                runs[-1].append(g)
                continue
        runs.append([g])
    return runs
