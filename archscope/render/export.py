"""``archscope export``'s result as text: what was written and how it was verified, or JSON (the
schema in docs/onnx.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from archscope.export import FP32_ERROR_FACTOR
from archscope.render.units import human_bytes, seconds

if TYPE_CHECKING:
    from archscope.export import ExportResult

FORMATS = ("table", "json")


def render_export(result: ExportResult, fmt: str = "table", *, verify: bool = True) -> str:
    """``result`` in ``fmt`` (one of :data:`FORMATS`); ``verify`` is whether the onnxruntime
    comparison was asked for (without it, a skipped comparison says so)."""
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2) + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    dims = ["batch" if result.dynamic_batch else str(result.input_shape[0]),
            *(str(d) for d in result.input_shape[1:])]
    data = f" + {result.data_path.name}" if result.data_path else ""
    lines = [
        f"wrote {result.path}{data} ({human_bytes(result.file_bytes)}, opset {result.opset}, "
        f"{result.nodes} nodes) in {seconds(result.export_seconds)}",
        f"input  {result.input_name} [{', '.join(dims)}]",
        f"output {', '.join(result.output_names)}",
        "onnx.checker full_check (with strict shape inference): passed",
    ]
    if result.max_abs_diff is not None:
        # the difference, then the bound it is compared with, then the scale in brackets
        line = (f"onnxruntime {result.onnxruntime_version}: max |PyTorch − ONNX| = "
                f"{result.max_abs_diff:.2e} ≤ {result.tolerance:.2e} (outputs up to "
                f"{result.max_abs_output:.3g}")
        if result.fp32_error is not None:
            line += (f"; above {result.atol:.2e}, so judged against {FP32_ERROR_FACTOR}× "
                     f"PyTorch's own fp32 error against float64, {result.fp32_error:.2e}")
        lines.append(line + "): passed")
    elif not verify:
        lines.append("onnxruntime comparison: skipped (--no-verify)")
    else:
        lines.append("onnxruntime comparison: skipped (install archscope[onnxruntime] to run it)")
    return "\n".join(lines) + "\n"
