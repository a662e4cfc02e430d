"""Step 1 of a diagram: collapse a Report's containers to a depth.

Every record is placed in a node (a :class:`Slot`) or, for an expanded container, becomes a
frame. A container at the depth becomes one node whose parameters are the sum of everything
inside it. A container that *merges* tensors itself (a residual ``add``, a ``cat``) is not
swallowed whole, because its data flow is the point of the drawing: it becomes a main-path node, a
node per side branch (a ``downsample``), the merge node and what follows the merge (a
:class:`Split`). So ResNet-50 at depth 2 shows 16 blocks, each with its skip edge into its ``add``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from archscope.diagram.kinds import GENERIC_CONTAINERS, is_merge, kind_of
from archscope.diagram.model import Cluster
from archscope.report import LayerRecord, Report


class Tree:
    """Parent/child lookups over a report's records."""

    def __init__(self, report: Report) -> None:
        self.layers = report.layers
        self.children: dict[int | None, list[int]] = {}
        for r in report.layers:
            self.children.setdefault(r.parent, []).append(r.index)
        self._leaves: dict[int, frozenset[int]] = {}

    def chain(self, index: int) -> list[int]:
        """Ancestors of ``index`` from the top level down, then ``index`` itself."""
        out = [index]
        parent = self.layers[index].parent
        while parent is not None:
            out.append(parent)
            parent = self.layers[parent].parent
        return out[::-1]

    def leaves(self, index: int) -> frozenset[int]:
        """Leaf records (modules and ops) inside ``index``, or ``{index}`` for a leaf."""
        if index not in self._leaves:
            if self.layers[index].is_leaf or not self.children.get(index):
                found = frozenset({index})
            else:
                found = frozenset().union(*(self.leaves(c) for c in self.children[index]))
            self._leaves[index] = found
        return self._leaves[index]


@dataclass(frozen=True)
class Split:
    """How a container that merges tensors is drawn when collapsed.

    ``roles`` maps each direct child record to ``main`` (the main path, drawn as one node),
    ``branch`` (a side path from the container's input straight into a merge, e.g. a
    ``downsample``: its own node), ``merge`` or ``tail`` (after the merge: drawn inside the merge
    node when parameter-free activations, else as own nodes); ``unit`` for a child drawn as its
    own node where there is no main path (parallel branches, or a main path reading its merge).
    """

    roles: Mapping[int, str]
    has_main: bool
    fuse_tail: bool

    @property
    def first_merge(self) -> int:
        """The first merge child (the node a fused tail is drawn in)."""
        return min(u for u, role in self.roles.items() if role == "merge")


def split_of(tree: Tree, container: int, report: Report) -> Split | None:
    """Classify the direct children of a container that has merge children (else ``None``)."""
    units = tree.children.get(container, [])
    layers = report.layers
    merges = [u for u in units if layers[u].is_leaf and is_merge(layers[u])]
    if not merges:
        return None
    inside = frozenset().union(*(tree.leaves(u) for u in units))
    unit_of = {leaf: u for u in units for leaf in tree.leaves(u)}
    consumers: dict[int, set[int | str]] = {u: set() for u in units}
    producers: dict[int, set[int]] = {u: set() for u in units}
    for u in units:
        for leaf in tree.leaves(u):
            for p in layers[leaf].inputs:
                if p in tree.leaves(u):
                    continue
                producers[u].add(p)
                if p in unit_of:
                    consumers[unit_of[p]].add(u)
    for r in layers:
        if r.is_leaf and r.index not in inside:
            for p in r.inputs:
                if p in unit_of:
                    consumers[unit_of[p]].add("out")
    for p in report.outputs:
        if p in unit_of:
            consumers[unit_of[p]].add("out")

    roles: dict[int, str] = {}
    merge_set = set(merges)
    first_merge = min(merges)
    for u in units:
        if u in merge_set:
            roles[u] = "merge"
    for u in units:
        if u in roles:
            continue
        if u > first_merge and producers[u] and producers[u] <= (
            {leaf for m in merge_set for leaf in tree.leaves(m)}
            | {leaf for t, role in roles.items() if role == "tail" for leaf in tree.leaves(t)}
        ):
            roles[u] = "tail"
        elif (
            producers[u]
            and not (producers[u] & inside)
            and consumers[u]
            and consumers[u] <= merge_set
        ):
            roles[u] = "branch"
        else:
            roles[u] = "main"
    main = [u for u, role in roles.items() if role == "main"]
    # A main path that reads a merge's output (DenseNet-like chains) cannot be one node without a
    # cycle: such a container is expanded one level instead.
    merged_leaves = {
        leaf for u, role in roles.items() if role in ("merge", "tail") for leaf in tree.leaves(u)
    }
    if any(producers[u] & merged_leaves for u in main):
        roles = {u: ("merge" if u in merge_set else "unit") for u in units}
        return Split(roles, has_main=False, fuse_tail=False)
    tails = [u for u, role in roles.items() if role == "tail"]
    fuse_tail = (
        len(merges) == 1
        and bool(tails)
        and all(
            layers[t].is_leaf and kind_of(layers[t].type) == "activation" and layers[t].params == 0
            for t in tails
        )
    )
    if not main:
        # Parallel branches (Inception-like): every branch is its own node, no skip styling.
        roles = {u: ("unit" if role in ("branch", "main") else role) for u, role in roles.items()}
    return Split(roles, has_main=bool(main), fuse_tail=fuse_tail)


@dataclass(frozen=True)
class Slot:
    """The node a record is drawn in.

    Attributes:
        key: the node's id: ``r<i>`` a leaf record, ``c<i>`` a collapsed container, ``m<i>`` the
            main path of split container ``i``.
        role: the node's role (``layer`` or ``merge``).
        kind: the node's colour kind (``block`` for a container).
        cluster: the expanded container the node is framed in (``None``: top level).
        collapsed: the container the node stands for (``c``/``m`` keys), else ``None``.
    """

    key: str
    role: str
    kind: str
    cluster: int | None
    collapsed: int | None = None


@dataclass(frozen=True)
class Layout:
    """Where every record of a report is drawn at one depth.

    Attributes:
        key_of: record index → the key of the node drawing it (expanded containers and
            records outside the data flow have none).
        slots: node key → its slot (the first record placed there decides), in call order.
        clusters: expanded containers holding nodes, and their ancestors, by record index.
        outside: records whose parameters belong to no traced call.
        splits: containers that merge tensors, and how their children are drawn.
        tree: the report's parent/child lookups.
    """

    key_of: Mapping[int, str]
    slots: Mapping[str, Slot]
    clusters: Mapping[int, Cluster]
    outside: tuple[LayerRecord, ...]
    splits: Mapping[int, Split]
    tree: Tree


def collapse(report: Report, depth: int) -> Layout:
    """Place every record of ``report`` at ``depth`` (see the module docstring)."""
    tree = Tree(report)
    splits: dict[int, Split] = {}
    for container in (r.index for r in report.layers if not r.is_leaf):
        split = split_of(tree, container, report)
        if split is not None:
            splits[container] = split
    key_of: dict[int, str] = {}
    slots: dict[str, Slot] = {}
    own_params: dict[int, int] = {}  # expanded containers' own parameters, shown on their frame
    outside: list[LayerRecord] = []
    for r in report.layers:
        if _outside_flow(r):
            outside.append(r)
            continue
        slot = place(report, tree, splits, depth, r.index)
        if slot is None:
            own_params[r.index] = r.params
        else:
            key_of[r.index] = slot.key
            slots.setdefault(slot.key, slot)
    clusters = _clusters(report, (s.cluster for s in slots.values()), own_params)
    return Layout(key_of, slots, clusters, tuple(outside), splits, tree)


def place(report: Report, tree: Tree, splits: Mapping[int, Split], depth: int,
          index: int) -> Slot | None:
    """The slot of record ``index`` at ``depth``, or ``None`` where it is drawn as a frame (an
    expanded container, or a split container with parallel branches)."""
    layers = report.layers
    chain = tree.chain(index)
    for pos, a in enumerate(chain):
        rec = layers[a]
        if rec.is_leaf:
            break
        if rec.depth < depth and a != index:
            continue
        if rec.depth < depth:  # an expanded container itself: drawn as a cluster
            return None
        # ``a`` is collapsed.
        split = splits.get(a)
        if split is None:
            return Slot(f"c{a}", "layer", "block", rec.parent, a)
        unit = None if a == index else chain[pos + 1]
        if not split.has_main:
            # Parallel branches: the container is a cluster around them, its own parameters on
            # the cluster's label.
            return None if unit is None else _split_slot(report, a, unit, split, a)
        # The container's own parameters go on its main node.
        return _split_slot(report, a, unit, split, rec.parent)
    rec = layers[index]
    return Slot(f"r{index}", "merge" if is_merge(rec) else "layer", kind_of(rec.type), rec.parent)


def _split_slot(report: Report, container: int, unit: int | None, split: Split,
                cluster: int | None) -> Slot:
    """The slot of ``unit`` (a direct child of split ``container``; ``None``: the container's
    own record) inside its frame ``cluster``."""
    main = Slot(f"m{container}", "layer", "block", cluster, container)
    if unit is None:
        if split.has_main:
            return main
        unit = split.first_merge
    role = split.roles[unit]
    if role == "main":
        return main
    if role == "tail" and split.fuse_tail:
        return Slot(f"r{split.first_merge}", "merge", "op", cluster)
    rec = report.layers[unit]
    if rec.is_leaf:
        return Slot(f"r{unit}", "merge" if role == "merge" else "layer", kind_of(rec.type), cluster)
    return Slot(f"c{unit}", "layer", "block", cluster, unit)


def _clusters(report: Report, framing: Iterable[int | None],
              own_params: Mapping[int, int]) -> dict[int, Cluster]:
    """Frames for the containers that hold nodes, with their ancestors, in first-use order."""
    layers = report.layers
    clusters: dict[int, Cluster] = {}
    for c in framing:
        while c is not None and c not in clusters:
            rec = layers[c]
            title = rec.name or rec.type
            if rec.name and rec.type not in GENERIC_CONTAINERS:
                title = f"{rec.name} · {rec.type}"
            clusters[c] = Cluster(c, rec.parent, title, own_params.get(c, 0))
            c = rec.parent
    return clusters


def _outside_flow(rec: LayerRecord) -> bool:
    """A row for parameters no traced call owns (the root's own, a module never called)."""
    return rec.is_leaf and rec.kind == "module" and not rec.output_shapes and not rec.inputs
