"""The order a spec's shapes are shown in: H×W×C as written (``hwc``), or C×H×W.

PyTorch runs every model N×C×H×W; a spec written H×W×C (Keras' order) is shown back in that order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from archscope.report import Layout

if TYPE_CHECKING:
    from archscope.report import Report


def show_shape(shape: tuple[int, ...], layout: str) -> str:
    """A sample's shape the way the user wrote it: ``(128, 7, 7)`` → ``7×7×128`` for ``hwc``."""
    if len(shape) == 3 and layout == "hwc":
        shape = (shape[1], shape[2], shape[0])
    return "×".join(str(d) for d in shape)


def to_layout(report: Report, layout: str) -> Report:
    """Show a report's shapes in the user's order: N×C×H×W → N×H×W×C when ``layout == "hwc"``.

    Only the shapes move (and ``Report.layout`` says ``"hwc"``, so JSON is self-describing);
    counts, MACs and formulas are the engine's, unchanged.
    """
    if layout != "hwc" or report.layout == "hwc":  # already in the user's order
        return report

    def perm(shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape

    layers = tuple(
        replace(r, input_shapes=tuple(perm(s) for s in r.input_shapes),
                output_shapes=tuple(perm(s) for s in r.output_shapes))
        for r in report.layers
    )
    shape = report.input_shape
    input_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    note = ("shapes are shown H×W×C (channels last), the order the spec is written in; "
            "PyTorch runs the model as N×C×H×W")
    return replace(report, input_shape=input_shape, layers=layers,
                   output_shapes=tuple(perm(s) for s in report.output_shapes),
                   notes=(*report.notes, note), layout=Layout.HWC)
