"""Report → Graphviz DOT source: the data-flow diagram of one traced model.

The diagram is drawn from the same :class:`~archscope.report.Report` that ``summary`` prints, no
second tracer: leaf records and functional ops are the graph's vertices, ``LayerRecord.inputs`` its
edges, and the container records (with ``parent``/``depth``) say what may be collapsed.

Building happens in four steps, each a plain function over plain data (no Graphviz import here):

1. **Collapse to a depth.** A container at depth ``D`` becomes one node whose parameters are the
   sum of everything inside it; its edges are derived from the leaves inside. A container that
   *merges* tensors itself (a residual ``add``, a ``cat``) is not swallowed whole, because its data
   flow is the point of the drawing: it becomes a main-path node, a node per side branch (a
   ``downsample``), the merge node and what follows the merge. So ResNet-50 at depth 2 shows 16
   blocks, each with its skip edge into its ``add``.
2. **Fuse** (``fold=True``): a norm, activation or dropout that directly follows the one layer
   feeding it is drawn inside that layer's node (``Conv2d + BN + ReLU``), as Keras and the papers
   draw them.
3. **Fold** (``fold=True``): a run of identical consecutive nodes or blocks (same types,
   hyperparameters and shapes, each feeding only the next) becomes one node marked ``×N`` with the
   summed parameters.
4. **Write DOT**: nodes coloured by layer kind with a legend, edges labelled with the tensor shape
   flowing along them as the table shows it (the batch dimension dropped, or ``N`` where it is not
   first: the batch size is in the title), skip connections dashed and coloured, expanded
   containers as labelled clusters.

Every function is deterministic, so the DOT text can be compared with golden files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archscope.render._columns import Dims, sample_shape, shared_note
from archscope.report import MODEL_INPUT, BatchAxis, LayerFacts, LayerRecord, Report

#: Layer kinds in legend order: kind → (legend label, fill colour, border colour).
KIND_STYLES: dict[str, tuple[str, str, str]] = {
    "conv": ("convolution", "#cfe2f3", "#3d85c6"),
    "norm": ("normalization", "#fff2cc", "#bf9000"),
    "activation": ("activation", "#fce5cd", "#e69138"),
    "pool": ("pooling", "#d9ead3", "#6aa84f"),
    "linear": ("linear / dense", "#d9d2e9", "#674ea7"),
    "dropout": ("dropout", "#eeeeee", "#999999"),
    "op": ("functional op", "#ffffff", "#666666"),
    "block": ("block / container", "#d0e0e3", "#45818e"),
    "other": ("other layer", "#f4cccc", "#cc0000"),
}

_IO_FILL, _IO_BORDER = "#f3f3f3", "#333333"
_SKIP_COLOR = "#c0392b"
_EDGE_COLOR = "#555555"
_FONT = "Helvetica"

#: Layer type (lower case; PyTorch modules, functional ops and ONNX operators) → kind.
_KIND_BY_TYPE: dict[str, str] = {
    **dict.fromkeys(
        (
            "conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d", "convtranspose3d",
            "lazyconv1d", "lazyconv2d", "lazyconv3d", "conv", "convtranspose", "convolution",
            "conv2d_fn",
        ),
        "conv",
    ),
    **dict.fromkeys(
        (
            "batchnorm1d", "batchnorm2d", "batchnorm3d", "syncbatchnorm", "layernorm", "groupnorm",
            "instancenorm1d", "instancenorm2d", "instancenorm3d", "localresponsenorm", "rmsnorm",
            "batchnormalization", "layernormalization", "instancenormalization", "lrn",
            "batch_norm", "layer_norm", "group_norm", "local_response_norm",
        ),
        "norm",
    ),
    **dict.fromkeys(
        (
            "relu", "relu6", "leakyrelu", "prelu", "rrelu", "elu", "celu", "selu", "gelu", "silu",
            "mish", "sigmoid", "logsigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid",
            "softplus", "softsign", "softmax", "logsoftmax", "softmin", "threshold", "glu",
            "relu_", "leaky_relu", "log_softmax", "hardswish_", "sigmoid_", "tanh_", "gelu_",
        ),
        "activation",
    ),
    **dict.fromkeys(
        (
            "maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d",
            "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d", "adaptivemaxpool1d",
            "adaptivemaxpool2d", "adaptivemaxpool3d", "lppool1d", "lppool2d", "fractionalmaxpool2d",
            "maxpool", "averagepool", "globalaveragepool", "globalmaxpool", "max_pool2d",
            "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
        ),
        "pool",
    ),
    **dict.fromkeys(
        ("linear", "bilinear", "lazylinear", "gemm", "matmul", "identitylinear"), "linear"
    ),
    **dict.fromkeys(
        ("dropout", "dropout1d", "dropout2d", "dropout3d", "alphadropout", "featurealphadropout"),
        "dropout",
    ),
    **dict.fromkeys(
        (
            "flatten", "unflatten", "reshape", "view", "add", "add_", "iadd", "sub", "mul", "mul_",
            "div", "cat", "concat", "concatenate", "stack", "sum", "mean", "permute", "transpose",
            "squeeze", "unsqueeze", "identity", "chunk", "split", "getitem", "pad", "reducemean",
            "reducesum", "reducemax", "gather", "shape", "slice", "expand", "tile",
        ),
        "op",
    ),
}

#: Short names used inside fused nodes (``Conv2d + BN + ReLU``).
_SHORT_TYPE: dict[str, str] = {
    "batchnorm1d": "BN", "batchnorm2d": "BN", "batchnorm3d": "BN", "syncbatchnorm": "BN",
    "batchnormalization": "BN", "layernorm": "LN", "groupnorm": "GN", "localresponsenorm": "LRN",
    "instancenorm1d": "IN", "instancenorm2d": "IN", "instancenorm3d": "IN",
}

#: Merges that add a residual (their non-main inputs are skip connections).
_RESIDUAL_TYPES = frozenset({"add", "add_", "iadd", "sub", "mul", "mul_"})

#: Functional ops that combine tensors; with two or more distinct producers they are merges.
_MERGE_TYPES = frozenset(
    {"add", "add_", "iadd", "sub", "mul", "mul_", "cat", "concat", "concatenate", "stack", "sum"}
)

_FUSE_INTO: dict[str, frozenset[str]] = {
    # kind of the follower → kinds of the node it may be drawn inside
    "norm": frozenset({"conv", "linear"}),
    "activation": frozenset({"conv", "linear", "norm", "op"}),
    "dropout": frozenset({"conv", "linear", "activation", "norm", "pool"}),
}

#: Container types whose class name says nothing: a collapsed one is titled by its name.
_GENERIC_CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})

#: Largest node count the default depth aims for (one legible page).
DEFAULT_MAX_NODES = 40
#: Longest input-to-output path the default depth aims for (ResNet-50 at depth 2 has 23).
DEFAULT_MAX_RANKS = 26


# --------------------------------------------------------------------------------------------
# The diagram as plain data
# --------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One box (or small op ellipse) of the diagram.

    Attributes:
        id: the DOT identifier (deterministic: derived from record indices).
        role: ``"layer"`` (a leaf or a collapsed container), ``"merge"`` (a functional op combining
            tensors), ``"input"`` or ``"output"``.
        kind: the colour key in :data:`KIND_STYLES` (``"io"`` for input/output).
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
        shared: where weights this node uses are counted when that is another node
            (``shared with emb``, ``same weights as call 1``), else ``""``.
    """

    id: str
    role: str
    kind: str
    records: list[int]
    params: int
    title: str
    detail: str = ""
    name: str = ""
    count: int = 1
    cluster: int | None = None
    group: str = ""
    order: float = 0.0
    signature: tuple[Any, ...] = ()
    names: list[str] = field(default_factory=list)
    last_names: list[str] = field(default_factory=list)
    shared: str = ""


@dataclass
class Edge:
    """A tensor flowing from one node to another, labelled with its shape."""

    src: str
    dst: str
    shape: Dims | None
    skip: bool = False


@dataclass
class Diagram:
    """Nodes, edges and clusters ready to be written as DOT."""

    report: Report
    depth: int
    fold: bool
    nodes: list[Node]
    edges: list[Edge]
    clusters: dict[int, Cluster] = field(default_factory=dict)
    outside: list[LayerRecord] = field(default_factory=list)

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
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def in_edges(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == node_id]

    def out_edges(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.src == node_id]


@dataclass
class Cluster:
    """An expanded container drawn as a labelled frame around its nodes."""

    index: int
    parent: int | None
    title: str
    params: int = 0


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


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


def render_dot(
    report: Report,
    *,
    depth: int | None = None,
    fold: bool = True,
    rankdir: str = "TB",
    dpi: int | None = None,
) -> str:
    """The DOT source of ``report``'s diagram.

    Args:
        report: the traced model.
        depth: collapse containers deeper than this (``None``: :func:`choose_depth`, the
            default depth folded, every layer unfolded).
        fold: fuse norm/activation/dropout into the layer before them and fold runs of identical
            nodes into one ``×N`` node.
        rankdir: ``"TB"`` (top to bottom) or ``"LR"`` (left to right).
        dpi: resolution written into the graph (only raster output uses it).
    """
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")
    diagram = build_diagram(report, depth=choose_depth(report, depth, fold=fold), fold=fold)
    return write_dot(diagram, rankdir=rankdir, dpi=dpi)


# --------------------------------------------------------------------------------------------
# Step 1: collapse to a depth
# --------------------------------------------------------------------------------------------


def kind_of(layer_type: str) -> str:
    """The colour kind of a layer type (``Conv2d`` → ``conv``); unknown types are ``other``."""
    return _KIND_BY_TYPE.get(layer_type.lower(), "other")


def _is_merge(record: LayerRecord) -> bool:
    producers = set(record.inputs)
    if len(producers) < 2:
        return False
    return record.kind == "function" or record.type.lower() in _MERGE_TYPES


class _Tree:
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


@dataclass
class _Split:
    """How a container that merges tensors is drawn when collapsed.

    ``roles`` maps each direct child record to ``main`` (the main path, drawn as one node),
    ``branch`` (a side path from the container's input straight into a merge, e.g. a
    ``downsample``: its own node), ``merge`` or ``tail`` (after the merge: drawn inside the merge
    node when parameter-free activations, else as own nodes).
    """

    roles: dict[int, str]
    has_main: bool
    fuse_tail: bool


def _split(tree: _Tree, container: int, report: Report) -> _Split | None:
    """Classify the direct children of a container that has merge children (else ``None``)."""
    units = tree.children.get(container, [])
    layers = report.layers
    merges = [u for u in units if layers[u].is_leaf and _is_merge(layers[u])]
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
    outside_consumers = set(report.outputs)
    for r in layers:
        if r.is_leaf and r.index not in inside:
            for p in r.inputs:
                if p in unit_of:
                    consumers[unit_of[p]].add("out")
    for p in outside_consumers:
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
        return _Split(roles, has_main=False, fuse_tail=False)
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
    return _Split(roles, has_main=bool(main), fuse_tail=fuse_tail)


def build_diagram(report: Report, *, depth: int | None = None, fold: bool = True) -> Diagram:
    """Collapse, fuse and fold ``report`` into a :class:`Diagram` (see the module docstring)."""
    depth = max_depth(report) if depth is None else max(1, depth)
    layers = report.layers
    tree = _Tree(report)
    splits: dict[int, _Split] = {}
    for container in (r.index for r in layers if not r.is_leaf):
        s = _split(tree, container, report)
        if s is not None:
            splits[container] = s

    # --- which node draws each record -------------------------------------------------------
    clusters: dict[int, Cluster] = {}
    key_of: dict[int, str] = {}
    cluster_of_key: dict[str, int | None] = {}
    kind_of_key: dict[str, str] = {}
    role_of_key: dict[str, str] = {}
    collapsed_of_key: dict[str, int] = {}
    cluster_params: dict[int, int] = {}

    def assign(index: int) -> str | None:
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
                key = f"c{a}"
                _note(key, "layer", "block", rec.parent, a)
                return key
            if not split.has_main:
                # Parallel branches: the container is a cluster around them, its own
                # parameters on the cluster's label.
                return None if a == index else _split_key(a, chain[pos + 1], split, a)
            # The container's own parameters go on its main node.
            unit = None if a == index else chain[pos + 1]
            return _split_key(a, unit, split, rec.parent)
        rec = layers[index]
        key = f"r{index}"
        _note(key, "merge" if _is_merge(rec) else "layer", kind_of(rec.type), rec.parent, None)
        return key

    def _note(key: str, role: str, kind: str, cluster: int | None,
              collapsed: int | None) -> None:
        if key not in cluster_of_key:
            cluster_of_key[key] = cluster
            kind_of_key[key] = kind
            role_of_key[key] = role
            if collapsed is not None:
                collapsed_of_key[key] = collapsed

    def _split_key(a: int, unit: int | None, split: _Split, cluster: int | None) -> str:
        roles = split.roles
        if unit is None:
            if split.has_main:
                key = f"m{a}"
                _note(key, "layer", "block", cluster, a)
                return key
            unit = min(u for u, role in roles.items() if role == "merge")
        role = roles[unit]
        if role == "main":
            key = f"m{a}"
            _note(key, "layer", "block", cluster, a)
            return key
        if role == "tail" and split.fuse_tail:
            merge = min(u for u, r in roles.items() if r == "merge")
            key = f"r{merge}"
            _note(key, "merge", "op", cluster, None)
            return key
        rec = layers[unit]
        if rec.is_leaf:
            key = f"r{unit}"
            role_name = "merge" if role == "merge" else "layer"
            _note(key, role_name, kind_of(rec.type), cluster, None)
            return key
        key = f"c{unit}"
        _note(key, "layer", "block", cluster, unit)
        return key

    outside: list[LayerRecord] = []
    for r in layers:
        if _outside_flow(r):
            outside.append(r)
            continue
        key = assign(r.index)
        if key is None:
            cluster_params[r.index] = r.params
        else:
            key_of[r.index] = key

    # Expanded containers that hold nodes become clusters (with their ancestors).
    for cluster in cluster_of_key.values():
        c = cluster
        while c is not None and c not in clusters:
            rec = layers[c]
            title = rec.name or rec.type
            if rec.name and rec.type not in _GENERIC_CONTAINERS:
                title = f"{rec.name} · {rec.type}"
            clusters[c] = Cluster(c, rec.parent, title, cluster_params.get(c, 0))
            c = rec.parent

    # --- nodes ----------------------------------------------------------------------------
    members: dict[str, list[int]] = {}
    for index, key in key_of.items():
        members.setdefault(key, []).append(index)
    nodes: dict[str, Node] = {}
    for key, recs in members.items():
        recs.sort()
        collapsed = collapsed_of_key.get(key)
        node = Node(
            id=key,
            role=role_of_key[key],
            kind=kind_of_key[key],
            records=recs,
            params=sum(layers[i].params for i in recs),
            title="",
            cluster=cluster_of_key[key],
            order=float(min(recs)),
        )
        _describe(node, report, collapsed, key.startswith("m"))
        node.group = f"g{collapsed}" if key.startswith("m") else key
        nodes[key] = node
    # A split block's nodes form one fold group: main, branches, merge.
    for a, split in splits.items():
        main_key = f"m{a}"
        if main_key not in nodes:
            continue
        for unit in split.roles:
            for leaf in tree.leaves(unit):
                key = key_of.get(leaf)
                if key is not None and key in nodes and key != main_key:
                    nodes[key].group = f"g{a}"
        nodes[main_key].group = f"g{a}"

    # --- edges (leaf level, then mapped onto nodes) -----------------------------------------
    input_node = Node(
        id="input", role="input", kind="io", records=[], params=0, title="input",
        detail=_dims(report.input_shape), order=-1.0,
    )
    outputs: list[Node] = []
    # Dict outputs name their nodes by key where the report carries them.
    keys = report.output_keys
    for i, shape in enumerate(report.output_shapes):
        outputs.append(
            Node(
                id=f"output{i}" if len(report.output_shapes) > 1 else "output", role="output",
                kind="io", records=[], params=0,
                title=((keys[i] if keys[i].startswith("output") else f"output {keys[i]}")
                       if len(keys) == len(report.output_shapes)
                       else "output" if len(report.output_shapes) == 1 else f"output {i}"),
                detail=_dims(_drop_batch(shape, report.output_batch_axes[i])) or "scalar",
                order=float(len(layers) + i),
            )
        )
    edges: list[Edge] = []
    skips = _skip_edges(report)
    for r in layers:
        if not r.is_leaf or r.index not in key_of:
            continue
        dst = key_of[r.index]
        for pos, p in enumerate(r.inputs):
            src = "input" if p == MODEL_INPUT else key_of.get(p)
            if src is None or src == dst:
                continue
            skip = (p, r.index) in skips
            edges.append(Edge(src, dst, _edge_shape(report, r, pos, p), skip))
    for i, p in enumerate(report.outputs):
        if i >= len(outputs):
            break
        src = "input" if p == MODEL_INPUT else key_of.get(p)
        if src is not None:
            out_shape = report.output_shapes[i] if i < len(report.output_shapes) else None
            out_axis = report.output_batch_axes[i] if i < len(report.output_shapes) else None
            edges.append(Edge(src, outputs[i].id, _drop_batch(out_shape, out_axis)))
    edges = _dedup(edges)

    node_list = sorted(nodes.values(), key=lambda n: n.order)
    if fold:
        node_list, edges = _fuse(report, node_list, edges)
        node_list, edges = _fold_runs(node_list, edges)
    for n in node_list:
        n.name = _display_name(n)
        n.shared = _shared(report, n)
    all_nodes = [input_node, *node_list, *outputs]
    return Diagram(report, depth, fold, all_nodes, edges, clusters, outside)


def _shared(report: Report, node: Node) -> str:
    """Where this node's shared weights are counted, when that is outside the node: ``shared with
    emb`` (tied weights), ``same weights as call 1`` (a module's second call)."""
    layers = report.layers
    inside = set(node.records)
    notes: list[str] = []
    for i in node.records:
        rec = layers[i]
        note = shared_note(rec)
        if not note or note in notes:
            continue
        # The row counting the weights: the same module's first call, or the tied module.
        owner = rec.name if rec.call > 0 else rec.shared_with
        first = next((r.index for r in layers if r.name == owner), None)
        if first not in inside:
            notes.append(note)
    return notes[0] if len(notes) == 1 else f"{notes[0]} +{len(notes) - 1}" if notes else ""


def _outside_flow(rec: LayerRecord) -> bool:
    """A row for parameters no traced call owns (the root's own, a module never called)."""
    return rec.is_leaf and rec.kind == "module" and not rec.output_shapes and not rec.inputs


def _dims(shape: Sequence[int | str] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else ""


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


def _skip_edges(report: Report) -> set[tuple[int, int]]:
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
        if not (r.is_leaf and r.type.lower() in _RESIDUAL_TYPES and len(set(r.inputs)) >= 2):
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


def _dedup(edges: Iterable[Edge]) -> list[Edge]:
    seen: dict[tuple[str, str, Dims | None], Edge] = {}
    for e in edges:
        k = (e.src, e.dst, e.shape)
        if k in seen:
            # One tensor reaching a node along both paths (a block's input feeding its main
            # path and its downsample) is drawn solid: it is a skip only if every path is.
            seen[k].skip = seen[k].skip and e.skip
        else:
            seen[k] = Edge(e.src, e.dst, e.shape, e.skip)
    return list(seen.values())


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _pair(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            return None
    try:
        return (int(value),)
    except (TypeError, ValueError):
        return None


def _padding(facts: LayerFacts) -> tuple[int, ...] | None:
    """Padding as the node shows it: one number per axis where both ends match (``(1, 1)``),
    else ONNX's order, every axis's begin then every end (``(0, 0, 1, 1)``); none where a rule
    (``padding='same'``, ``auto_pad``) sets it."""
    if facts.padding is None or facts.padding_mode is not None:
        return None
    begins = tuple(b for b, _ in facts.padding)
    ends = tuple(e for _, e in facts.padding)
    return begins if begins == ends else begins + ends


def _square(values: tuple[int, ...] | None) -> str:
    """``(3, 3)`` → ``3×3``; ``(3,)`` → ``3``."""
    if not values:
        return ""
    return "×".join(str(v) for v in values)


def _uniform(values: tuple[int, ...] | None, default: int) -> bool:
    return not values or all(v == default for v in values)


def describe_hparams(rec: LayerRecord) -> str:
    """Key hyperparameters of one layer: ``k3×3 s2 p1 · 64→128``, ``25088→4096``, ``p=0.5``."""
    f = rec.facts
    kind = kind_of(rec.type)
    parts: list[str] = []
    if kind in ("conv", "pool"):
        spatial_dims = max(len(rec.output_shape or ()) - 2, 1)
        kernel = _spread(f.kernel, spatial_dims)
        stride = _spread(f.stride, spatial_dims)
        padding = _spread(_padding(f), spatial_dims)
        dilation = _spread(f.dilation, spatial_dims)
        spatial = []
        if kernel:
            spatial.append(_square(_collapse(kernel)))
        if stride and not _uniform(stride, 1):
            spatial.append("s" + _compact(stride))
        if padding and not _uniform(padding, 0):
            spatial.append("p" + _compact(padding))
        if dilation and not _uniform(dilation, 1):
            spatial.append("d" + _compact(dilation))
        out_size = _pair(f.output_size)
        if out_size and not kernel:
            spatial.append("→ " + _square(out_size))
        if spatial:
            parts.append(" ".join(spatial))
        c_in, c_out = f.in_channels, f.out_channels
        if c_in is not None and c_out is not None:
            parts.append(f"{c_in}→{c_out}")
        elif c_out is not None:
            parts.append(str(c_out))
        groups = f.groups
        if groups not in (None, 1):
            parts.append(f"g{groups}")
    elif kind == "linear":
        f_in, f_out = f.in_features, f.out_features
        if f_in is not None and f_out is not None:
            parts.append(f"{f_in}→{f_out}")
        elif f_out is not None:
            parts.append(f"{f_out} units")
    elif kind == "norm":
        features = next((v for v in (f.num_features, f.normalized_shape, f.size)
                         if v is not None), None)
        if features is not None:
            parts.append(_square(_pair(features)) or str(features))
    elif kind == "dropout":
        p = f.p
        if p is not None:
            parts.append(f"p={p}")
    return " · ".join(parts)


def _spread(values: tuple[int, ...] | None, dims: int) -> tuple[int, ...] | None:
    """A pool's ``kernel_size=3`` means 3×3 on images: repeat a single value per spatial dim."""
    if values is not None and len(values) == 1 and dims > 1:
        return values * dims
    return values


def _compact(values: tuple[int, ...]) -> str:
    """``(2, 2)`` → ``2``; ``(2, 1)`` → ``2×1``."""
    values = _collapse(values)
    return str(values[0]) if len(set(values)) == 1 else _square(values)


def _collapse(values: tuple[int, ...]) -> tuple[int, ...]:
    """ONNX pads ``(1, 1, 1, 1)`` read like PyTorch's ``(1, 1)``."""
    if len(values) == 4 and values[:2] == values[2:]:
        return values[:2]
    return values


def _short(rec: LayerRecord) -> str:
    return _SHORT_TYPE.get(rec.type.lower(), rec.type)


def _describe(node: Node, report: Report, collapsed: int | None, is_main: bool) -> None:
    """Fill a fresh node's title, detail, name and fold signature."""
    layers = report.layers
    if collapsed is not None:
        rec = layers[collapsed]
        node.title = rec.type
        if rec.type in _GENERIC_CONTAINERS and rec.name:
            node.title = rec.name.rsplit(".", 1)[-1]
        node.name = rec.name
        leaves = [layers[i] for i in node.records if layers[i].is_leaf]
        node.detail = _block_summary(leaves)
        blocks: dict[str, int] = {}
        for r in layers:
            if r.parent == collapsed and not r.is_leaf and r.type not in _GENERIC_CONTAINERS:
                blocks[r.type] = blocks.get(r.type, 0) + 1
        if blocks and sum(kind_of(r.type) == "conv" for r in leaves) > 4:
            # A stage of blocks reads better as its blocks: ``3× Bottleneck``.
            node.detail = " · ".join(f"{n}× {t}" for t, n in blocks.items())
    else:
        leaves = [layers[i] for i in node.records if layers[i].is_leaf]
        first = leaves[0] if leaves else layers[node.records[0]]
        node.title = first.type
        node.name = first.name
        node.detail = describe_hparams(first)
        extra = leaves[1:]
        if extra:  # an activation drawn inside its merge (add + ReLU)
            node.title = " + ".join([first.type, *(_short(r) for r in extra)])
    node.names = [node.name] if node.name else []
    node.signature = _signature(report, node.records, node.role, is_main)


def _block_summary(leaves: list[LayerRecord]) -> str:
    """The layers inside a collapsed container: ``1×1,64 · 3×3,64 · 1×1,256`` or counts."""
    convs = [r for r in leaves if kind_of(r.type) == "conv"]
    linears = [r for r in leaves if kind_of(r.type) == "linear"]
    if convs and len(convs) <= 4:
        parts = []
        for r in convs:
            kernel, stride = r.facts.kernel, r.facts.stride
            text = _square(kernel) if kernel else r.type
            c_out = r.facts.out_channels
            if c_out is not None:
                text += f",{c_out}"
            if stride and not _uniform(stride, 1):
                text += f" s{_compact(stride)}"
            parts.append(text)
        if linears:
            parts.append(f"{len(linears)} linear")
        return " · ".join(parts)
    counts: dict[str, int] = {}
    for r in leaves:
        k = kind_of(r.type)
        if k in ("op", "other"):
            continue
        counts[k] = counts.get(k, 0) + 1
    names = {"conv": "conv", "norm": "norm", "activation": "act", "pool": "pool",
             "linear": "linear", "dropout": "dropout"}
    return " · ".join(f"{n} {names[k]}" for k, n in counts.items())


def _signature(report: Report, records: list[int], role: str, is_main: bool) -> tuple[Any, ...]:
    layers = report.layers
    base = min(layers[i].depth for i in records) if records else 0
    return (role, is_main, *(
        (
            layers[i].type,
            layers[i].depth - base,
            layers[i].is_leaf,
            layers[i].facts,
            layers[i].input_shapes,
            layers[i].output_shapes,
            layers[i].params,
        )
        for i in records
    ))


# --------------------------------------------------------------------------------------------
# Step 2: fuse norm / activation / dropout into the layer before them
# --------------------------------------------------------------------------------------------


def _fuse(report: Report, nodes: list[Node], edges: list[Edge]) -> tuple[list[Node], list[Edge]]:
    by_id = {n.id: n for n in nodes}
    changed = True
    while changed:
        changed = False
        outs: dict[str, list[Edge]] = {}
        ins: dict[str, list[Edge]] = {}
        for e in edges:
            outs.setdefault(e.src, []).append(e)
            ins.setdefault(e.dst, []).append(e)
        for n in list(by_id.values()):
            if n.role != "layer" or len(n.records) != 1 or n.count != 1:
                continue
            rec = report.layers[n.records[0]]
            allowed = _FUSE_INTO.get(n.kind)
            if not allowed or not rec.is_leaf:
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
            # Fuse n into p.
            p.records = sorted(p.records + n.records)
            p.params += n.params
            p.title = f"{p.title} + {_short(rec)}"
            if n.kind == "dropout" and rec.facts.p is not None:
                detail = describe_hparams(rec)
                if detail:
                    p.detail = f"{p.detail} · {detail}" if p.detail else detail
            p.signature = (*p.signature, *n.signature[2:])
            p.names += [name for name in n.names if name not in p.names]
            edges = [e for e in edges if not (e.src == p.id and e.dst == n.id)]
            for e in edges:
                if e.src == n.id:
                    e.src = p.id
            del by_id[n.id]
            edges = _dedup(edges)
            changed = True
            break
    return sorted(by_id.values(), key=lambda n: n.order), edges


# --------------------------------------------------------------------------------------------
# Step 3: fold runs of identical consecutive nodes or blocks
# --------------------------------------------------------------------------------------------


def _fold_runs(nodes: list[Node], edges: list[Edge]) -> tuple[list[Node], list[Edge]]:
    groups: dict[str, list[Node]] = {}
    for n in nodes:
        groups.setdefault(n.group, []).append(n)
    order = sorted(groups, key=lambda g: min(n.order for n in groups[g]))
    group_of = {n.id: n.group for n in nodes}

    def signature(g: str) -> tuple[Any, ...]:
        return tuple(n.signature for n in groups[g])

    def external(g: str) -> tuple[set[str], set[str]]:
        ids = {n.id for n in groups[g]}
        srcs = {group_of.get(e.src, e.src) for e in edges if e.dst in ids and e.src not in ids}
        dsts = {group_of.get(e.dst, e.dst) for e in edges if e.src in ids and e.dst not in ids}
        return srcs, dsts

    runs: list[list[str]] = []
    for g in order:
        if runs:
            prev = runs[-1][-1]
            same = (
                signature(prev) == signature(g)
                and {n.cluster for n in groups[prev]} == {n.cluster for n in groups[g]}
            )
            if same:
                _, prev_out = external(prev)
                g_in, _ = external(g)
                if prev_out == {g} and g_in == {prev}:
                    runs[-1].append(g)
                    continue
        runs.append([g])

    remap: dict[str, str] = {}
    drop: set[str] = set()
    for run in runs:
        if len(run) == 1:
            continue
        first = groups[run[0]]
        for g in run[1:]:
            for pos, n in enumerate(groups[g]):
                target = first[pos]
                target.count += 1
                target.params += n.params
                target.records = sorted(target.records + n.records)
                target.last_names = n.names
                remap[n.id] = target.id
                drop.add(n.id)

    if not remap:
        return nodes, edges
    run_ids = {g: i for i, run in enumerate(runs) for g in run}
    new_edges: list[Edge] = []
    for e in edges:
        gs, gd = group_of.get(e.src), group_of.get(e.dst)
        if gs is not None and gd is not None and run_ids.get(gs) == run_ids.get(gd) and gs != gd:
            continue  # between two folded copies
        if e.src in drop and e.dst in drop and gs == gd:
            continue  # inside a later copy: the first copy's edges stand for it
        new_edges.append(Edge(remap.get(e.src, e.src), remap.get(e.dst, e.dst), e.shape, e.skip))
    return [n for n in nodes if n.id not in drop], _dedup(new_edges)


def _display_name(node: Node) -> str:
    """The name line: ``layer1.0.conv1+bn1+relu``, ``features.0–1``, folded ``layer2.1–3``."""
    if node.count > 1 and node.names and node.last_names:
        return _name_range(node.names[0], node.last_names[-1])
    return _join_names(node.names)


def _join_names(names: list[str]) -> str:
    if len(names) <= 1:
        return names[0] if names else ""
    joined = _join_all(names)
    # ONNX node names are long and unstructured: name the first and count the rest.
    return joined if len(joined) <= 48 else f"{names[0]} +{len(names) - 1}"


def _join_all(names: list[str]) -> str:
    split = [n.split(".") for n in names]
    prefix = split[0][:-1]
    if all(parts[:-1] == prefix for parts in split):
        lasts = [parts[-1] for parts in split]
        head = ".".join(prefix) + "." if prefix else ""
        if all(last.isdigit() for last in lasts):
            return f"{head}{lasts[0]}–{lasts[-1]}"
        return head + "+".join(lasts)
    return _name_range(names[0], names[-1])


def _name_range(first: str, last: str) -> str:
    """``layer2.1`` … ``layer2.3`` → ``layer2.1–3``; ``features.0`` … ``features.1`` likewise."""
    if not last or last == first:
        return first
    a, b = first.split("."), last.split(".")
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    if len(a) == len(b) and common == len(a) - 1:
        return f"{first}–{b[-1]}"
    if common and len(a) > common and len(b) > common:
        return f"{'.'.join(a[:common])}.{{{'.'.join(a[common:])}–{'.'.join(b[common:])}}}"
    return f"{first} … {last}"


# --------------------------------------------------------------------------------------------
# Step 4: DOT text
# --------------------------------------------------------------------------------------------


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node_label(n: Node) -> str:
    if n.role in ("input", "output"):
        return f"<<b>{_html(n.title)}</b><br/>{_html(n.detail)}>"
    title = f"<b>{_html(n.title)}</b>"
    if n.count > 1:
        title += f' <font color="{_SKIP_COLOR}"><b>×{n.count}</b></font>'
    if n.role == "merge":
        return f"<{title}>"
    lines = [title]
    if n.detail:
        lines.append(_html(n.detail))
    meta = _html(n.name)
    for part in (_plural(n.params, "param") if n.params else "", _html(n.shared)):
        if part:
            meta = f"{meta} · {part}" if meta else part
    if meta:
        lines.append(f'<font point-size="8" color="#555555">{meta}</font>')
    return "<" + "<br/>".join(lines) + ">"


def _plural(count: int, noun: str) -> str:
    """``1 param``, ``1,024 params``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _legend(diagram: Diagram) -> str:
    report = diagram.report
    kinds = [k for k in KIND_STYLES if any(n.kind == k for n in diagram.nodes)]
    shape = "×".join(str(d) for d in report.input_shape)
    head = (
        f"<b>{_html(report.model)}</b>  {report.total_params:,} params · input {shape}"
        f" · batch {report.batch} · depth {diagram.depth}"
    )
    rows = [head]
    if diagram.outside:
        names = ", ".join(r.name for r in diagram.outside)
        count = sum(r.params for r in diagram.outside)
        rows.append(f"{_plural(count, 'param')} outside the data flow: {_html(names)}")
    # Fixed-size cells (about 6.6 pt per character): Graphviz would otherwise stretch them to
    # the title's width.
    cells = "".join(
        f'<td bgcolor="{KIND_STYLES[k][1]}" color="{KIND_STYLES[k][2]}" border="1" '
        f'cellpadding="3" fixedsize="true" width="{int(len(KIND_STYLES[k][0]) * 6.6 + 14)}" '
        f'height="20">{_html(KIND_STYLES[k][0])}</td>'
        for k in kinds
    )
    skip = any(e.skip for e in diagram.edges)
    if skip:
        cells += f'<td border="0" cellpadding="4"><font color="{_SKIP_COLOR}">- - ▸ skip</font></td>'
    if any(n.count > 1 for n in diagram.nodes):
        cells += f'<td border="0" cellpadding="4"><font color="{_SKIP_COLOR}"><b>×N</b></font> folded</td>'
    # The legend sits in its own table so that its cells keep their natural width.
    return (
        '<<table border="0" cellspacing="2" cellpadding="1">'
        + "".join(f'<tr><td align="left">{row}</td></tr>' for row in rows)
        + '<tr><td align="left"><table border="0" cellspacing="3" cellpadding="0">'
        + f"<tr>{cells}</tr></table></td></tr></table>>"
    )


def write_dot(diagram: Diagram, *, rankdir: str = "TB", dpi: int | None = None) -> str:
    """Write ``diagram`` as DOT source (deterministic)."""
    report = diagram.report
    out: list[str] = [f"digraph {_quote(report.model or report.model_type)} {{"]
    graph_attrs = [
        f"rankdir={rankdir}", f'fontname="{_FONT}"', "fontsize=11", "labelloc=t", "labeljust=l",
        "nodesep=0.3", "ranksep=0.12", 'bgcolor="white"', "newrank=true",
    ]
    if dpi:
        graph_attrs.append(f"dpi={dpi}")
    out.append(f"  graph [{', '.join(graph_attrs)}, label={_legend(diagram)}];")
    out.append(
        f'  node [shape=box, style="rounded,filled", fontname="{_FONT}", fontsize=10, '
        'margin="0.12,0.04", penwidth=1.2];'
    )
    out.append(
        f'  edge [fontname="{_FONT}", fontsize=8, color="{_EDGE_COLOR}", '
        f'fontcolor="{_EDGE_COLOR}", arrowsize=0.6];'
    )

    by_cluster: dict[int | None, list[Node]] = {}
    for n in diagram.nodes:
        by_cluster.setdefault(n.cluster, []).append(n)
    children: dict[int | None, list[int]] = {}
    for c in sorted(diagram.clusters):
        children.setdefault(diagram.clusters[c].parent, []).append(c)

    def params_in(cluster: int) -> int:
        own = diagram.clusters[cluster].params
        nodes = sum(n.params for n in by_cluster.get(cluster, []))
        return own + nodes + sum(params_in(c) for c in children.get(cluster, []))

    def emit(cluster: int | None, indent: str) -> None:
        for n in by_cluster.get(cluster, []):
            out.append(f"{indent}{n.id} [{_node_attrs(n)}];")
        for c in children.get(cluster, []):
            info = diagram.clusters[c]
            title = _html(info.title)
            total = params_in(c)
            if total:
                title += f" · {total:,} params"
            if info.params:
                title += f" (own {info.params:,})"
            out.append(f"{indent}subgraph cluster_{c} {{")
            out.append(
                f'{indent}  graph [label=<<font color="#45818e">{title}</font>>, '
                'style="rounded,dashed", color="#9fbfc4", fontsize=9, margin=8];'
            )
            emit(c, indent + "  ")
            out.append(f"{indent}}}")

    emit(None, "  ")
    for e in diagram.edges:
        attrs = []
        if e.shape is not None:
            attrs.append(f'label=" {_dims(e.shape) or "scalar"}"')
        if e.skip:
            attrs += ["style=dashed", f'color="{_SKIP_COLOR}"', f'fontcolor="{_SKIP_COLOR}"',
                      "weight=0"]
        else:
            attrs.append("weight=4")
        out.append(f"  {e.src} -> {e.dst} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _node_attrs(n: Node) -> str:
    label = _node_label(n)
    if n.role in ("input", "output"):
        return (f'label={label}, shape=box, style="rounded,filled,bold", '
                f'fillcolor="{_IO_FILL}", color="{_IO_BORDER}"')
    _, fill, border = KIND_STYLES.get(n.kind, KIND_STYLES["other"])
    if n.role == "merge":
        return (f'label={label}, shape=ellipse, style=filled, fillcolor="{fill}", '
                f'color="{border}", fontsize=9, margin="0.04,0.02", height=0.3')
    if n.kind == "op":
        return (f'label={label}, shape=box, style="rounded,filled", fillcolor="{fill}", '
                f'color="{border}", fontsize=9, height=0.3')
    attrs = f'label={label}, fillcolor="{fill}", color="{border}"'
    if n.count > 1:
        attrs += ', peripheries=2'
    return attrs
