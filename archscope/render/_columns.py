"""Cell formatting shared by the text renderers (table, markdown, csv)."""

from __future__ import annotations

from archscope.report import LayerRecord, Report
from archscope.shapes import format_dims, format_shape


def header_parts(report: Report) -> list[str]:
    """The title's parts, ``["lecture_mnist_cnn (LectureCNN)", "input 1×28×28", "batch 1"]``.

    One convention for every text format: the input is one sample's shape and the batch is
    given on its own.
    """
    return [f"{report.model} ({report.model_type})", f"input {format_dims(report.input_shape)}",
            f"batch {report.batch}"]


def visible(report: Report, max_depth: int | None) -> list[LayerRecord]:
    """Records shown at ``max_depth`` (``None``: all)."""
    return [r for r in report.layers if max_depth is None or r.depth <= max_depth]


def shape_cell(record: LayerRecord, batch: bool = True) -> str:
    """Output shape(s): ``[1, 32, 26, 26]``, or ``32×26×26`` with ``batch=False``."""
    if not record.output_shapes:
        return "—"

    def fmt(shape: tuple[int, ...]) -> str:
        return format_shape(shape) if batch else format_dims(shape[1:]) or "scalar"

    if record.output_keys:
        return ", ".join(f"{k}: {fmt(s)}" for k, s in
                         zip(record.output_keys, record.output_shapes, strict=True))
    return ", ".join(fmt(s) for s in record.output_shapes)


def params_cell(record: LayerRecord, report: Report, max_depth: int | None) -> str:
    """Own parameters; a folded container (children hidden) shows its subtree's sum.

    A row whose parameters are all counted by an earlier row (a repeated call, a fully tied
    module) shows ``(shared)``; :func:`formula_cell` names that row.
    """
    if not record.is_leaf and max_depth is not None and record.depth == max_depth:
        return f"{subtree_params(report, record.index):,}"
    if record.shared_with and not record.params:
        return "(shared)"
    if not record.is_leaf and not record.params:
        return "—"
    return f"{record.params:,}"


def formula_cell(record: LayerRecord, report: Report, max_depth: int | None) -> str:
    """The parameter formula, and which earlier row counts the parameters this row shares.

    ``record.params`` counts only what no earlier row counted (see :class:`LayerRecord`), so a
    module tied to another shows its own remainder and the marker: ``10 + shared with emb``
    (an output layer whose weight is the embedding's: its bias here, the weight under ``emb``).
    """
    if not record.is_leaf and max_depth is not None and record.depth == max_depth:
        return ""
    if record.shared_with:
        shared = f"shared with {record.shared_with}"
        return f"{record.param_formula} + {shared}" if record.param_formula else shared
    return record.param_formula


def subtree_params(report: Report, index: int) -> int:
    total = 0
    stack = [index]
    while stack:
        i = stack.pop()
        total += report.layers[i].params
        stack.extend(r.index for r in report.layers if r.parent == i)
    return total


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
