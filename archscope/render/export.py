"""``archscope export``'s result as text: what was written and how it was verified, or JSON (the
schema in docs/onnx.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from archscope.export.compare import FP32_ERROR_FACTOR, Bound, describe
from archscope.render.units import human_bytes, seconds

if TYPE_CHECKING:
    from archscope.export import ExportResult
    from archscope.export.compare import Agreement

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
    if result.agreement is not None:
        lines.append(f"onnxruntime {result.onnxruntime_version}: {verdict(result.agreement)}")
    elif result.max_abs_diff is not None:  # figures without the per-output comparison
        lines.append(f"onnxruntime {result.onnxruntime_version}: max |PyTorch − ONNX| = "
                     f"{result.max_abs_diff:.2e} ≤ {result.tolerance:.2e} (outputs up to "
                     f"{result.max_abs_output:.3g}): passed")
    elif not verify:
        lines.append("onnxruntime comparison: skipped (--no-verify)")
    else:
        lines.append("onnxruntime comparison: skipped (install archscope[onnxruntime] to run it)")
    return "\n".join(lines) + "\n"


def verdict(agreement: Agreement) -> str:
    """The comparison in one line: the largest difference, the bound it was held to, the scale
    and which bound applied; for degenerate outputs, why, and the re-check with re-drawn
    parameters; then ``passed`` or ``not verified``."""
    if not agreement.degenerate:
        return _comparison(agreement) + ": passed"
    why = "; ".join(dict.fromkeys(f"{o.name}: {describe(o.degenerate)}"
                                  for o in agreement.degenerate if o.degenerate is not None))
    line = (f"degenerate with the model's own weights ({why}; max |PyTorch − ONNX| = "
            f"{agreement.diff:.2e})")
    recheck = agreement.recheck
    if recheck is None:
        return line + "; no parameter holds a single value to re-draw: not verified"
    line += (f"; re-checked with {len(recheck.redrawn)} constant parameters re-drawn: "
             + _comparison(recheck))
    return line + (": not verified (still degenerate)" if recheck.degenerate else ": passed")


def _comparison(agreement: Agreement) -> str:
    """``max |PyTorch − ONNX| = D ≤ T (outputs up to S; relative R ≤ rtol …)``."""
    line = (f"max |PyTorch − ONNX| = {agreement.diff:.2e} ≤ {agreement.tolerance:.2e} (outputs "
            f"up to {agreement.scale:.3g}; ")
    relative = agreement.relative
    line += f"relative {relative:.1e}" if relative is not None else "all zero"
    if Bound.FP32_ERROR in agreement.bounds:
        line += (f", above rtol {agreement.rtol:g}, so judged against {FP32_ERROR_FACTOR}× "
                 f"PyTorch's own fp32 error against float64, {agreement.fp32_error:.2e}")
    elif Bound.ABSOLUTE in agreement.bounds:
        line += f", within --atol {agreement.atol:.2e}"
    elif relative is not None:
        line += f" ≤ rtol {agreement.rtol:g}"
    return line + ")"
