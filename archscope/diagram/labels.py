"""The words on a node: titles, hyperparameters, block summaries, name lines and shared-weight
notes, all read from a Report's records.

The only module that reads a record's ``LayerRecord.facts``: :func:`_facts` (the values a label
shows) and :func:`facts_key` (what must be equal for two layers to fold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archscope.diagram.kinds import GENERIC_CONTAINERS, kind_of
from archscope.diagram.model import Node
from archscope.render._columns import shared_note
from archscope.report import LayerFacts, LayerRecord, Report

#: Short names used inside fused nodes (``Conv2d + BN + ReLU``).
_SHORT_TYPE: dict[str, str] = {
    "batchnorm1d": "BN", "batchnorm2d": "BN", "batchnorm3d": "BN", "syncbatchnorm": "BN",
    "batchnormalization": "BN", "layernorm": "LN", "groupnorm": "GN", "localresponsenorm": "LRN",
    "instancenorm1d": "IN", "instancenorm2d": "IN", "instancenorm3d": "IN",
}

#: Names of the kinds in a collapsed block's layer counts (``2 conv · 2 norm · 3 act``).
_KIND_WORDS = {"conv": "conv", "norm": "norm", "activation": "act", "pool": "pool",
               "linear": "linear", "dropout": "dropout"}


# --------------------------------------------------------------------------------------------
# Reading a record's hyperparameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """The hyperparameters a label shows, as recorded (``None`` where the record has none)."""

    kernel: Any
    stride: Any
    padding: Any
    dilation: Any
    output_size: Any
    in_channels: Any
    out_channels: Any
    groups: Any
    in_features: Any
    out_features: Any
    features: Any
    p: Any


def _facts(rec: LayerRecord) -> _Facts:
    """The values ``rec``'s label shows, from its :class:`~archscope.report.LayerFacts` (the one
    vocabulary both front-ends record)."""
    f = rec.facts
    return _Facts(
        kernel=f.kernel,
        stride=f.stride,
        padding=_padding(f),
        dilation=f.dilation,
        output_size=f.output_size,
        in_channels=f.in_channels,
        out_channels=f.out_channels,
        groups=f.groups,
        in_features=f.in_features,
        out_features=f.out_features,
        features=next((v for v in (f.num_features, f.normalized_shape, f.size) if v is not None),
                      None),
        p=f.p,
    )


def _padding(facts: LayerFacts) -> tuple[int, ...] | None:
    """Padding as the node shows it: one number per axis where both ends match (``(1, 1)``),
    else ONNX's order, every axis's begin then every end (``(0, 0, 1, 1)``); none where a rule
    (``padding='same'``, ``auto_pad``) sets it."""
    if facts.padding is None or facts.padding_mode is not None:
        return None
    begins = tuple(b for b, _ in facts.padding)
    ends = tuple(e for _, e in facts.padding)
    return begins if begins == ends else begins + ends


def facts_key(rec: LayerRecord) -> LayerFacts:
    """Every hyperparameter of ``rec`` as a comparable value: layers fold only where equal."""
    return rec.facts


# --------------------------------------------------------------------------------------------
# Hyperparameter text
# --------------------------------------------------------------------------------------------


def describe_hparams(rec: LayerRecord) -> str:
    """Key hyperparameters of one layer: ``k3×3 s2 p1 · 64→128``, ``25088→4096``, ``p=0.5``."""
    f = _facts(rec)
    kind = kind_of(rec.type)
    parts: list[str] = []
    if kind in ("conv", "pool"):
        spatial_dims = max(len(rec.output_shape or ()) - 2, 1)
        kernel = _spread(_pair(f.kernel), spatial_dims)
        stride = _spread(_pair(f.stride), spatial_dims)
        padding = _spread(_pair(f.padding), spatial_dims)
        dilation = _spread(_pair(f.dilation), spatial_dims)
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
        if f.in_channels is not None and f.out_channels is not None:
            parts.append(f"{f.in_channels}→{f.out_channels}")
        elif f.out_channels is not None:
            parts.append(str(f.out_channels))
        if f.groups not in (None, 1):
            parts.append(f"g{f.groups}")
    elif kind == "linear":
        if f.in_features is not None and f.out_features is not None:
            parts.append(f"{f.in_features}→{f.out_features}")
        elif f.out_features is not None:
            parts.append(f"{f.out_features} units")
    elif kind == "norm":
        if f.features is not None:
            parts.append(_square(_pair(f.features)) or str(f.features))
    elif kind == "dropout" and f.p is not None:
        parts.append(f"p={f.p}")
    return " · ".join(parts)


def block_summary(leaves: Sequence[LayerRecord]) -> str:
    """The layers inside a collapsed container: ``1×1,64 · 3×3,64 · 1×1,256`` or counts."""
    convs = [r for r in leaves if kind_of(r.type) == "conv"]
    linears = [r for r in leaves if kind_of(r.type) == "linear"]
    if convs and len(convs) <= 4:
        parts = []
        for r in convs:
            f = _facts(r)
            kernel = _pair(f.kernel)
            stride = _pair(f.stride)
            text = _square(kernel) if kernel else r.type
            if f.out_channels is not None:
                text += f",{f.out_channels}"
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
    return " · ".join(f"{n} {_KIND_WORDS[k]}" for k, n in counts.items())


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


def _square(values: tuple[int, ...] | None) -> str:
    """``(3, 3)`` → ``3×3``; ``(3,)`` → ``3``."""
    if not values:
        return ""
    return "×".join(str(v) for v in values)


def _uniform(values: tuple[int, ...] | None, default: int) -> bool:
    return not values or all(v == default for v in values)


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


# --------------------------------------------------------------------------------------------
# A node's title, detail and name lines
# --------------------------------------------------------------------------------------------


def short_name(rec: LayerRecord) -> str:
    """The type as written inside a fused node: ``BN`` for ``BatchNorm2d``, else the type."""
    return _SHORT_TYPE.get(rec.type.lower(), rec.type)


def dims_text(shape: Sequence[int | str] | None) -> str:
    """``(64, 56, 56)`` → ``64×56×56``; empty or ``None`` → ``""``."""
    return "×".join(str(d) for d in shape) if shape else ""


@dataclass(frozen=True)
class NodeText:
    """A fresh node's title (bold), detail line and qualified name."""

    title: str
    detail: str
    name: str


def node_text(report: Report, records: Sequence[int], collapsed: int | None) -> NodeText:
    """The text of a node drawing ``records``: a collapsed container (``collapsed``: its index)
    shows its type and a summary of its layers; a layer its hyperparameters, and an activation
    drawn inside its merge joins the title (``add + ReLU``)."""
    layers = report.layers
    leaves = [layers[i] for i in records if layers[i].is_leaf]
    if collapsed is not None:
        rec = layers[collapsed]
        title = rec.type
        if rec.type in GENERIC_CONTAINERS and rec.name:
            title = rec.name.rsplit(".", 1)[-1]
        detail = block_summary(leaves)
        blocks: dict[str, int] = {}
        for r in layers:
            if r.parent == collapsed and not r.is_leaf and r.type not in GENERIC_CONTAINERS:
                blocks[r.type] = blocks.get(r.type, 0) + 1
        if blocks and sum(kind_of(r.type) == "conv" for r in leaves) > 4:
            # A stage of blocks reads better as its blocks: ``3× Bottleneck``.
            detail = " · ".join(f"{n}× {t}" for t, n in blocks.items())
        return NodeText(title, detail, rec.name)
    first = leaves[0] if leaves else layers[records[0]]
    title = first.type
    extra = leaves[1:]
    if extra:  # an activation drawn inside its merge (add + ReLU)
        title = " + ".join([first.type, *(short_name(r) for r in extra)])
    return NodeText(title, describe_hparams(first), first.name)


def display_name(node: Node) -> str:
    """The name line: ``layer1.0.conv1+bn1+relu``, ``features.0–1``, folded ``layer2.1–3``."""
    if node.count > 1 and node.names and node.last_names:
        return _name_range(node.names[0], node.last_names[-1])
    return _join_names(node.names)


def _join_names(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return names[0] if names else ""
    joined = _join_all(names)
    # ONNX node names are long and unstructured: name the first and count the rest.
    return joined if len(joined) <= 48 else f"{names[0]} +{len(names) - 1}"


def _join_all(names: Sequence[str]) -> str:
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


def shared_text(report: Report, records: Sequence[int]) -> str:
    """Where the shared weights of the node drawing ``records`` are counted, when that is outside
    the node: ``shared with emb`` (tied weights), ``same weights as call 1`` (a module's second
    call); ``""`` when they are counted inside it."""
    layers = report.layers
    inside = set(records)
    notes: list[str] = []
    for i in records:
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
