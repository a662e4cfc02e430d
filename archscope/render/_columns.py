"""Rows and cells shared by the renderers: which rows a ``--depth`` shows and what a collapsed
container carries (table, markdown, CSV, JSON), how shared weights are marked and how a shape
shows its batch dimension, the one the report records (also the diagram's)."""

from __future__ import annotations

from dataclasses import dataclass

from archscope.render.units import human_bytes, human_count
from archscope.report import BatchAxis, LayerRecord, Report, Shape, TrainingPeak
from archscope.shapes import format_dims

#: What the receptive-field columns mean, printed under a table that shows them.
RF_LEGEND = ("RF: the input pixels one output unit sees (r = r_in + (k−1)·d·j_in); Jump: input "
             "pixels between neighbouring output units (j = j_in·s); Centre: the input "
             "coordinate of the first output unit's field centre (pixel 0 is the first).")

#: The batch dimension written into a shape where it is not first (``1×N×20``).
BATCH_MARK = "N"

#: A shape as the table and the diagram show it: sizes, and :data:`BATCH_MARK` for the batch.
Dims = tuple[int | str, ...]


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


def sample_shape(shape: Shape, batch_axis: BatchAxis) -> Dims:
    """``shape`` as the table shows it: without the batch dimension where it leads, with the
    batch written :data:`BATCH_MARK` where it does not, whole where no dimension is the batch.

    ``batch_axis`` is the one the front-end recorded for the shape
    (:attr:`~archscope.report.LayerRecord.output_batch_axes`; 0 for the model input):
    ``(4, 32, 26, 26)`` with its batch at 0 → ``32×26×26``; an LSTM's ``h_n`` ``(1, 4, 20)``
    with its batch at 1 → ``1×N×20``; ``x.reshape(-1, 16)``'s ``(20, 16)``, without one, whole.
    A 1-D tensor whose only dimension is the batch (one value per sample) is ``()``.
    """
    if batch_axis is None:
        return shape
    return (*shape[:batch_axis], BATCH_MARK, *shape[batch_axis + 1:]) if batch_axis else shape[1:]


def marks_batch(dims: Dims) -> bool:
    """Whether :func:`sample_shape` wrote the batch into ``dims`` as :data:`BATCH_MARK`."""
    return BATCH_MARK in dims


def output_dims(record: LayerRecord) -> list[Dims]:
    """:func:`sample_shape` of each of ``record``'s outputs."""
    return [sample_shape(s, axis)
            for s, axis in zip(record.output_shapes, record.output_batch_axes, strict=True)]


def shape_cell(record: LayerRecord) -> str:
    """Output shape(s) as the table and Markdown show them: ``32×26×26`` (:func:`sample_shape`;
    ``scalar`` for one value per sample, ``1×N×20`` where the batch is not first)."""
    if not record.output_shapes:
        return "—"
    cells = [format_dims(d) or "scalar" for d in output_dims(record)]
    if record.output_keys:
        return ", ".join(f"{k}: {c}" for k, c in zip(record.output_keys, cells, strict=True))
    return ", ".join(cells)


def shapes_note(report: Report, records: list[LayerRecord]) -> str:
    """What the shape cells of ``records`` leave out, for a title: ``shapes without the batch
    dimension``, plus ``(N where it is not first)`` when a cell marks the batch."""
    marked = any(marks_batch(d) for r in records for d in output_dims(r))
    return "shapes without the batch dimension" + (" (N where it is not first)" if marked else "")


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
    if report.output_keys:  # a dict output (or an ONNX file's named outputs): each by its key
        cells = [format_dims(sample_shape(s, axis)) or "scalar" for s, axis
                 in zip(report.output_shapes, report.output_batch_axes, strict=True)]
        rows.append(("Outputs", ", ".join(f"{k}: {c}" for k, c
                                          in zip(report.output_keys, cells, strict=True))))
    if report.training_memory is not None:
        rows.append(("Training memory peak", training_peak_text(report.training_memory)))
    return rows


# -- the training-memory line (archscope.memory.summary) ---------------------------------------

_OPTIMIZER_NAMES = {"sgd": "SGD", "adamw": "AdamW", "adam": "Adam", "none": "no optimizer"}


def training_peak_text(peak: TrainingPeak) -> str:
    """``65.32 MiB (batch 1, fp32, SGD, CUDA; see archscope memory)``: the peak and the
    step it assumes (``CUDA``: bytes as the caching allocator counts them), or ``unknown
    (why)``."""
    if peak.peak is None:  # a replay's reason is long: the notes carry it, wrapped
        return (f"unknown ({peak.reason})" if len(peak.reason or "") <= 60 else
                "unknown (the step could not be replayed: see the notes)")
    step = ", ".join([f"batch {peak.batch:,}", peak.precision,
                      _OPTIMIZER_NAMES.get(peak.optimizer, peak.optimizer), peak.device.upper()])
    return f"{human_bytes(peak.peak)} ({step}; see archscope memory)"
