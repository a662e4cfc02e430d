"""``archscope check [MODEL…]``: run models for real and compare with the meta trace."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from archscope._io import echo
from archscope.commands._common import SHAPE, num_classes_option

if TYPE_CHECKING:
    from archscope.check import CheckResult


@click.command()
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option("--device", default="auto", show_default=True, metavar="auto|cuda|cuda:N|cpu",
              help="Where to run: auto picks CUDA when available.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A state_dict file (torch.save) to load with strict=True (one MODEL only).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Batch of the random input (default: 1, or 2 where a BatchNorm in training "
                   "mode would see one value per channel at batch 1).")
@click.option("--input", "input_shape", type=SHAPE, default=None,
              help="Input shape C×H×W (default: each model's natural input).")
@num_classes_option
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Timed forward passes (default: 10 on CUDA, 3 on the CPU).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def check(models: tuple[str, ...], device: str, weights: str | None, batch: int | None,
          input_shape: tuple[int, ...] | None, num_classes: int | None, repeats: int | None,
          fmt: str) -> None:
    """Run MODEL(s) for real and verify them against archscope's meta trace.

    For each model (default: every zoo model): build it with real weights on the device, run a
    forward and backward pass on random input, and check that every layer's output shape equals
    the trace, the parameter total equals the published reference, and outputs and gradients are
    finite. Reports the training-memory estimate against the measured peak (CUDA) and the forward
    latency. Prints PASS or FAIL per model; exits with 1 if any fails.

    \b
    Examples:
      archscope check resnet50 --device cuda
      archscope check lecture_mnist_cnn alexnet --device cpu
      archscope check resnet18 --weights resnet18-f37072fd.pth
      archscope check --device cuda --format json > check.json
    """
    from archscope.check import CheckResult, check_model
    from archscope.devices import current_device_name, resolve_device
    from archscope.errors import ArchscopeError
    from archscope.registry import check_names, model_names

    if weights is not None and len(models) != 1:
        raise click.UsageError("--weights needs exactly one MODEL")
    names = list(models) or model_names()
    check_names(names)  # unknown zoo names fail before anything runs
    dev = resolve_device(device)
    results: list[CheckResult] = []
    errors: list[ArchscopeError] = []
    for name in names:
        click.echo(f"checking {name} on {dev} …", err=True)
        try:
            results.append(check_model(name, device=str(dev), batch=batch, weights=weights,
                                       input_shape=input_shape, num_classes=num_classes,
                                       repeats=repeats))
        except ArchscopeError as exc:  # a weights file that does not fit this model
            if fmt != "json":
                raise
            # the JSON document still says what happened; the error line follows on stderr
            errors.append(exc)
            results.append(CheckResult(
                model=name, device=str(dev), device_name=current_device_name(dev),
                input_shape=tuple(input_shape or ()), batch=batch or 1, weights=weights,
                error=str(exc)))
    if fmt == "json":
        payload = {
            "passed": all(r.passed for r in results),
            "device": str(dev),
            "models": [r.to_dict() for r in results],
        }
        echo(json.dumps(payload, indent=2))
        if errors:
            raise errors[0]
    else:
        echo("".join(_render(r) for r in results), nl=False)
        failed = [r.model for r in results if not r.passed]
        summary = f"{len(results) - len(failed)} passed, {len(failed)} failed"
        echo(summary + (f": {', '.join(failed)}" if failed else ""))
    if not all(r.passed for r in results):
        raise SystemExit(1)


def _render(r: CheckResult) -> str:
    from archscope.check import CUDA_ONLY_NOTE  # the memory row says it already

    shape = "×".join(str(d) for d in r.input_shape)
    lines = [f"{r.model}  ({r.device_name}, batch {r.batch}"
             + (f", input {shape}" if shape else "")
             + (f", weights {r.weights}" if r.weights else "") + ")"]
    if r.error is not None:
        lines.append(f"  error    {r.error}")
    if r.engine_params is not None and r.error is None:
        if r.shape_mismatches:
            lines.append(f"  shapes   FAIL  {len(r.shape_mismatches)} of {r.layers_compared} "
                         "module calls differ from the meta trace:")
            lines += [f"                 {m}" for m in r.shape_mismatches[:5]]
            if len(r.shape_mismatches) > 5:
                lines.append(f"                 … and {len(r.shape_mismatches) - 5} more")
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
        estimate = _mib(r.memory_estimate_bytes)
        if r.memory_peak_bytes is not None and r.memory_error_pct is not None:
            lines.append(f"  memory   info  estimate {estimate} vs measured peak "
                         f"{_mib(r.memory_peak_bytes)} ({r.memory_error_pct:+.1f} %)")
        else:
            lines.append(f"  memory   n/a   estimate {estimate}; the peak is measured on CUDA only")
    median = r.latency_median_ms
    if median is not None:
        lines.append(f"  latency  info  forward {median:.2f} ms (median of {len(r.latency_ms)}, "
                     f"{min(r.latency_ms):.2f}–{max(r.latency_ms):.2f})")
    lines += [f"  note     {note}" for note in r.notes if note != CUDA_ONLY_NOTE]
    verdict = "PASS" if r.passed else "FAIL"
    reasons = "" if r.passed else ": " + "; ".join(r.failures)
    lines.append(f"{verdict} {r.model}{reasons}")
    return "\n".join(lines) + "\n\n"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"
