"""``archscope check``'s results as text: a block per model with PASS or FAIL and a closing count,
or one JSON document (the schema in docs/check.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from archscope.render.units import human_bytes, milliseconds, signed_percent

if TYPE_CHECKING:
    from archscope.check import CheckResult

FORMATS = ("table", "json")

#: how many shape mismatches a block lists before "… and N more".
_SHOW = 5


def render_check(results: Sequence[CheckResult], fmt: str = "table", *, device: str) -> str:
    """``results`` (checked on ``device``) in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        payload = {
            "passed": all(r.passed for r in results),
            "device": device,
            "models": [r.to_dict() for r in results],
        }
        return json.dumps(payload, indent=2) + "\n"
    if fmt == "table":
        failed = [r.model for r in results if not r.passed]
        summary = f"{len(results) - len(failed)} passed, {len(failed)} failed"
        return "".join(render_block(r) for r in results) + summary + (
            f": {', '.join(failed)}" if failed else "") + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def render_block(r: CheckResult) -> str:
    """One model's block: a header, a line per check, its notes, the verdict (with every reason
    for a FAIL, the run's error among them), a blank line."""
    from archscope.check import CUDA_ONLY_NOTE  # the memory row says it already

    shape = "×".join(str(d) for d in r.input_shape)
    lines = [f"{r.model}  ({r.device_name}, batch {r.batch}"
             + (f", input {shape}" if shape else "")
             + (f", weights {r.weights}" if r.weights else "") + ")"]
    # an error (why the run failed) is told once, in the verdict line's reasons
    if r.engine_params is not None and r.error is None:
        if r.shape_mismatches:
            lines.append(f"  shapes   FAIL  {len(r.shape_mismatches)} of {r.layers_compared} "
                         "module calls differ from the meta trace:")
            lines += [f"                 {m}" for m in r.shape_mismatches[:_SHOW]]
            if len(r.shape_mismatches) > _SHOW:
                lines.append(f"                 … and {len(r.shape_mismatches) - _SHOW} more")
        else:
            calls = ("1 module call matches" if r.layers_compared == 1
                     else f"{r.layers_compared:,} module calls match")
            lines.append(f"  shapes   ok    {calls} the meta trace")
    if r.params is not None and r.engine_params is not None:
        text = f"real {r.params:,} | engine {r.engine_params:,}"
        if r.reference_params is not None:
            text += f" | reference {r.reference_params:,} ({r.reference_source})"
        lines.append(f"  params   {'ok  ' if r.params_match else 'FAIL'}  {text}")
    if r.outputs_finite is not None:
        ok = r.outputs_finite and r.grads_finite
        detail = "outputs and gradients finite"
        if not r.outputs_finite:
            detail = "outputs contain NaN or inf"
        elif not r.grads_finite:
            detail = f"non-finite gradients in {', '.join(r.nonfinite_grads)}"
        lines.append(f"  finite   {'ok  ' if ok else 'FAIL'}  {detail}")
    if r.memory_estimate_bytes is not None:
        estimate = human_bytes(r.memory_estimate_bytes)
        if r.memory_peak_bytes is not None and r.memory_error_pct is not None:
            lines.append(f"  memory   info  estimate {estimate} vs measured peak "
                         f"{human_bytes(r.memory_peak_bytes)} "
                         f"({signed_percent(r.memory_error_pct)})")
        else:
            lines.append(f"  memory   n/a   estimate {estimate}; the peak is measured on CUDA only")
    median = r.latency_median_ms
    if median is not None:
        lines.append(f"  latency  info  forward {milliseconds(median)} ms (median of "
                     f"{len(r.latency_ms)}, {milliseconds(min(r.latency_ms))}–"
                     f"{milliseconds(max(r.latency_ms))})")
    lines += [f"  note     {note}" for note in r.notes if note != CUDA_ONLY_NOTE]
    verdict = "PASS" if r.passed else "FAIL"
    reasons = "" if r.passed else ": " + "; ".join(r.failures)
    lines.append(f"{verdict} {r.model}{reasons}")
    return "\n".join(lines) + "\n\n"
