"""Rows and cells shared by the renderers: which rows a ``--depth`` shows and what a collapsed
container carries (table, markdown, CSV, JSON), how shared weights are marked and which
dimension is the batch (also the diagram's)."""

from __future__ import annotations

from dataclasses import dataclass

from archscope.report import LayerRecord, Report, Shape
from archscope.shapes import format_dims, format_shape

#: Ops whose output describes a shape, not samples (ONNX ``Shape``, ``Size``).
_SHAPE_OPS = frozenset({"shape", "size"})


def header_parts(report: Report) -> list[str]:
    """The title's parts, ``["lecture_mnist_cnn (LectureCNN)", "input 1×28×28", "batch 1"]``.

    One convention for every text format: the input is one sample's shape and the batch is
    given on its own.
    """
    return [f"{report.model} ({report.model_type})", f"input {format_dims(report.input_shape)}",
            f"batch {report.batch}"]


def visible(report: Report, max_depth: int | None) -> list[LayerRecord]:
    """Records shown at ``max_depth`` (``None``: all).

    A row without a parent deeper than ``max_depth`` (the parameters of a module never called,
    ``features.unused``) is shown anyway: no container above it would count its parameters.
    """
    return [r for r in report.layers
            if max_depth is None or r.depth <= max_depth or r.parent is None]


@dataclass(frozen=True)
class Row:
    """One record as every format shows it at a ``--depth``.

    Attributes:
        record: the record.
        collapsed: a container at ``max_depth``, its children hidden: it stands for its subtree.
        params / trainable: the record's own (``LayerRecord.params``), or its subtree's when
            collapsed; either way the shown rows add up to ``Report.total_params``.
        macs: the call's MACs (a container's count everything inside it already).
    """

    record: LayerRecord
    collapsed: bool
    params: int
    trainable: int
    macs: int


def rows(report: Report, max_depth: int | None) -> list[Row]:
    """The rows shown at ``max_depth`` (``None``: all), collapsed containers carrying their
    subtree's parameters: one rule for the table, markdown, CSV and JSON."""
    subtree = _subtree_totals(report) if max_depth is not None else {}
    out = []
    for r in visible(report, max_depth):
        collapsed = _collapsed(r, max_depth)
        params, trainable = subtree[r.index] if collapsed else (r.params, r.trainable_params)
        out.append(Row(r, collapsed, params, trainable, r.macs))
    return out


def _collapsed(record: LayerRecord, max_depth: int | None) -> bool:
    return not record.is_leaf and max_depth is not None and record.depth == max_depth


def _subtree_totals(report: Report) -> dict[int, tuple[int, int]]:
    """Record index → (parameters, trainable parameters) of it and everything inside it."""
    totals = {r.index: (r.params, r.trainable_params) for r in report.layers}
    # Children sit one level below their parent: deepest first, each adds itself to its parent.
    for r in sorted(report.layers, key=lambda r: -r.depth):
        if r.parent is not None:
            params, trainable = totals[r.parent]
            totals[r.parent] = (params + totals[r.index][0], trainable + totals[r.index][1])
    return totals


def sample_shape(shape: Shape, producer: LayerRecord | None) -> Shape:
    """``shape`` without its batch dimension, where it has one (``producer``: the record whose
    output it is; ``None`` for the model input, which always carries the batch).

    A tensor of rank 2 or more carries the batch first. A 1-D tensor carries it when its
    producer reduced a tensor that did, one value per sample (``(N, 10)`` → ``x[:, 0]`` →
    ``(N,)``): some input of the producer has the same leading size, and the producer is not a
    shape op. Otherwise it is data about shapes, shown whole: an ONNX graph's ``Shape`` →
    ``Concat`` arithmetic for a reshape target (``[2]``), or ``x.view(-1)`` (``[576]``). The
    report records no dtypes, so a shape tensor copied unchanged (``Cast`` of a ``[1]``) at
    batch 1 still reads as one value per sample.
    """
    if producer is None or len(shape) != 1:
        return shape[1:]
    if producer.type.lower() not in _SHAPE_OPS and any(
            s and s[0] == shape[0] for s in producer.input_shapes):
        return ()
    return shape


def shape_cell(record: LayerRecord, batch: bool = True) -> str:
    """Output shape(s): ``[1, 32, 26, 26]``, or ``32×26×26`` with ``batch=False`` (see
    :func:`sample_shape`; ``scalar`` for one value per sample)."""
    if not record.output_shapes:
        return "—"

    def fmt(shape: tuple[int, ...]) -> str:
        if batch:
            return format_shape(shape)
        return format_dims(sample_shape(shape, record)) or "scalar"

    if record.output_keys:
        return ", ".join(f"{k}: {fmt(s)}" for k, s in
                         zip(record.output_keys, record.output_shapes, strict=True))
    return ", ".join(fmt(s) for s in record.output_shapes)


def shared_note(record: LayerRecord) -> str:
    """Where the parameters a record shares are counted: ``shared with emb`` (tied weights),
    ``same weights as call 1`` (a module's second call), or ``""``."""
    if record.shared_with is None:
        return ""
    return "same weights as call 1" if record.call > 0 else f"shared with {record.shared_with}"


def params_text(row: Row) -> str:
    """The Params cell: ``18,496``; a collapsed container its subtree's sum; ``(shared)`` for a
    row whose parameters are all counted by an earlier row, ``(call 2)`` for a repeated call;
    ``—`` for a container without parameters of its own."""
    record = row.record
    if row.collapsed:
        return f"{row.params:,}"
    if record.shared_with and not record.params:
        return f"(call {record.call + 1})" if record.call > 0 else "(shared)"
    if not record.is_leaf and not record.params:
        return "—"
    return f"{record.params:,}"


def formula_text(row: Row) -> str:
    """The Param formula cell, and where the parameters this row shares are counted.

    ``record.params`` counts only what no earlier row counted (see :class:`LayerRecord`), so a
    module tied to another shows its own remainder and the marker: ``10 + shared with emb``
    (an output layer whose weight is the embedding's: its bias here, the weight under ``emb``).
    A collapsed container has no formula: its parameters are its subtree's.
    """
    record = row.record
    if row.collapsed:
        return ""
    note = shared_note(record)
    if note:
        return f"{record.param_formula} + {note}" if record.param_formula else note
    return record.param_formula


def _row(record: LayerRecord, report: Report, max_depth: int | None) -> Row:
    if _collapsed(record, max_depth):
        params, trainable = _subtree_totals(report)[record.index]
        return Row(record, True, params, trainable, record.macs)
    return Row(record, False, record.params, record.trainable_params, record.macs)


def params_cell(record: LayerRecord, report: Report, max_depth: int | None) -> str:
    """:func:`params_text` of ``record`` at ``max_depth``."""
    return params_text(_row(record, report, max_depth))


def formula_cell(record: LayerRecord, report: Report, max_depth: int | None) -> str:
    """:func:`formula_text` of ``record`` at ``max_depth``."""
    return formula_text(_row(record, report, max_depth))


def macs_cell(record: LayerRecord) -> str:
    return f"{record.macs:,}" if record.macs else "—"


def human_count(n: int) -> str:
    """``138357544`` → ``138.36 M``."""
    for unit, size in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """``553430176`` → ``527.79 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")


def totals(report: Report) -> list[tuple[str, str]]:
    """The totals block, as (label, value) pairs."""
    rows = [
        ("Total params", f"{report.total_params:,}"),
        ("Trainable params", f"{report.trainable_params:,}"),
        ("Non-trainable params", f"{report.non_trainable_params:,}"),
        ("MACs per sample", f"{report.macs_per_sample:,} ({human_count(report.macs_per_sample)})"),
    ]
    if report.batch != 1:
        rows.append((f"MACs per batch of {report.batch}",
                     f"{report.total_macs:,} ({human_count(report.total_macs)})"))
    rows += [
        ("Parameter memory", human_bytes(report.param_bytes)),
        ("Training activation memory",
         f"{human_bytes(report.activation_bytes)} (batch {report.batch}, saved for backward)"
         if report.activation_bytes is not None else "unknown (not traced)"),
    ]
    return rows
