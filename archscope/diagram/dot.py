"""Diagram → Graphviz DOT source: nodes coloured by layer kind with a legend, edges labelled with
the tensor shape flowing along them (the batch size is in the title), skip connections dashed and
coloured, expanded containers as labelled frames, frozen layers (``--freeze``) filled grey.

Pure text: no Graphviz import, the output is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archscope.diagram.labels import dims_text
from archscope.diagram.model import Diagram, Node

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

#: The flow directions a drawing may take: top to bottom, left to right.
RANKDIRS = ("TB", "LR")

_IO_FILL, _IO_BORDER = "#f3f3f3", "#333333"
#: a layer whose parameters are all frozen: grey fill, its kind's border kept.
_FROZEN_FILL, _FROZEN_BORDER = "#d9d9d9", "#7f7f7f"
_SKIP_COLOR = "#c0392b"
_EDGE_COLOR = "#555555"
_RF_COLOR = "#1f6f8b"  # the receptive-field line (--rf)
_FONT = "Helvetica"


def write_dot(diagram: Diagram, *, rankdir: str = "TB", dpi: int | None = None) -> str:
    """Write ``diagram`` as DOT source (deterministic).

    Args:
        diagram: the built diagram.
        rankdir: ``"TB"`` (top to bottom) or ``"LR"`` (left to right).
        dpi: resolution written into the graph (only raster output uses it).

    Raises:
        ValueError: for a ``rankdir`` not in :data:`RANKDIRS`.
    """
    check_rankdir(rankdir)
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
    out += _frame_lines(diagram, None, "  ", by_cluster, children)
    for e in diagram.edges:
        attrs = []
        if e.shape is not None:
            attrs.append(f'label=" {dims_text(e.shape) or "scalar"}"')
        if e.skip:
            attrs += ["style=dashed", f'color="{_SKIP_COLOR}"', f'fontcolor="{_SKIP_COLOR}"',
                      "weight=0"]
        else:
            attrs.append("weight=4")
        out.append(f"  {e.src} -> {e.dst} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def check_rankdir(rankdir: str) -> None:
    """Raise ``ValueError`` for a ``rankdir`` not in :data:`RANKDIRS`."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")


def _frame_lines(diagram: Diagram, cluster: int | None, indent: str,
                 by_cluster: Mapping[int | None, Sequence[Node]],
                 children: Mapping[int | None, Sequence[int]]) -> list[str]:
    """The nodes of frame ``cluster`` (``None``: the top level), then its child frames."""
    lines = [f"{indent}{n.id} [{_node_attrs(n, _frozen(diagram, n))}];"
             for n in by_cluster.get(cluster, [])]
    for c in children.get(cluster, []):
        info = diagram.clusters[c]
        title = _html(info.title)
        total = _params_in(diagram, c, by_cluster, children)
        if total:
            title += f" · {total:,} params"
        if info.params:
            title += f" (own {info.params:,})"
        lines.append(f"{indent}subgraph cluster_{c} {{")
        lines.append(
            f'{indent}  graph [label=<<font color="#45818e">{title}</font>>, '
            'style="rounded,dashed", color="#9fbfc4", fontsize=9, margin=8];'
        )
        lines += _frame_lines(diagram, c, indent + "  ", by_cluster, children)
        lines.append(f"{indent}}}")
    return lines


def _params_in(diagram: Diagram, cluster: int, by_cluster: Mapping[int | None, Sequence[Node]],
               children: Mapping[int | None, Sequence[int]]) -> int:
    """Parameters inside a frame: its container's own, its nodes', its child frames'."""
    own = diagram.clusters[cluster].params
    nodes = sum(n.params for n in by_cluster.get(cluster, []))
    return own + nodes + sum(_params_in(diagram, c, by_cluster, children)
                             for c in children.get(cluster, []))


def _legend(diagram: Diagram) -> str:
    """The graph's label: the title (model, parameters, input, batch, depth), parameters outside
    the data flow, and one cell per kind drawn (plus skip and fold marks where used)."""
    report = diagram.report
    kinds = [k for k in KIND_STYLES if any(n.kind == k for n in diagram.nodes)]
    head = (
        f"<b>{_html(report.model)}</b>  {report.total_params:,} params · input "
        f"{dims_text(report.input_shape)} · batch {report.batch} · depth {diagram.depth}"
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
    if any(_frozen(diagram, n) == "all" for n in diagram.nodes):
        cells += (f'<td bgcolor="{_FROZEN_FILL}" color="{_FROZEN_BORDER}" border="1" '
                  'cellpadding="3" fixedsize="true" width="54" height="20">frozen</td>')
    if any(e.skip for e in diagram.edges):
        cells += f'<td border="0" cellpadding="4"><font color="{_SKIP_COLOR}">- - ▸ skip</font></td>'
    if any(n.count > 1 for n in diagram.nodes):
        cells += (f'<td border="0" cellpadding="4"><font color="{_SKIP_COLOR}"><b>×N</b></font> '
                  "folded</td>")
    # The legend sits in its own table so that its cells keep their natural width.
    return (
        '<<table border="0" cellspacing="2" cellpadding="1">'
        + "".join(f'<tr><td align="left">{row}</td></tr>' for row in rows)
        + '<tr><td align="left"><table border="0" cellspacing="3" cellpadding="0">'
        + f"<tr>{cells}</tr></table></td></tr></table>>"
    )


def _frozen(diagram: Diagram, n: Node) -> str:
    """``"all"`` when every parameter ``n`` draws is frozen, ``"some"`` when part of them are,
    ``""`` otherwise (no parameters, or none frozen)."""
    layers = diagram.report.layers
    params = sum(layers[i].params for i in n.records)
    trainable = sum(layers[i].trainable_params for i in n.records)
    if not params or trainable == params:
        return ""
    return "all" if trainable == 0 else "some"


def _node_attrs(n: Node, frozen: str = "") -> str:
    label = _node_label(n, frozen)
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
    if frozen == "all":
        fill = _FROZEN_FILL
    attrs = f'label={label}, fillcolor="{fill}", color="{border}"'
    if n.count > 1:
        attrs += ', peripheries=2'
    return attrs


def _node_label(n: Node, frozen: str = "") -> str:
    """An HTML-like label: bold title (and a red ``×N``), detail, then small name · params ·
    shared note · ``frozen`` (``partly frozen``)."""
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
    if n.rf:
        lines.append(f'<font color="{_RF_COLOR}">{_html(n.rf)}</font>')
    meta = _html(n.name)
    marks = {"all": "frozen", "some": "partly frozen"}
    for part in (_plural(n.params, "param") if n.params else "", _html(n.shared),
                 marks.get(frozen, "")):
        if part:
            meta = f"{meta} · {part}" if meta else part
    if meta:
        lines.append(f'<font point-size="8" color="#555555">{meta}</font>')
    return "<" + "<br/>".join(lines) + ">"


def _plural(count: int, noun: str) -> str:
    """``1 param``, ``1,024 params``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
