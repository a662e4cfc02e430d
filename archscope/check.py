"""Run a model for real and compare what happened with what the meta trace predicted.

``archscope check`` is the proof behind every number ``summary`` prints. For one model it

1. builds it with real weights on the device (or loads a ``state_dict`` with ``strict=True``):
   :func:`archscope.source.resolve`, whose :class:`~archscope.source.Subject` :func:`check` takes,
2. traces that model on the meta device with ``summary``'s engine (:func:`archscope.engine.inspect`;
   with ``trace="real"``, ``--trace real``, the engine's real trace on the device instead, for
   forwards whose shapes depend on tensor values),
3. runs one forward and backward pass on random input with forward hooks on every module, and
   checks that each module call's real output shapes equal the trace's record for that call
   (matched by qualified name and call index), that the parameter total equals the engine's and
   the zoo's published reference, and that outputs and gradients are finite,
4. measures the training-memory estimate against the real peak (CUDA only:
   ``torch.cuda.max_memory_allocated`` over one forward + backward step), and
5. times the forward pass (median of several runs, synchronized on CUDA).

The library returns :class:`CheckResult` values; :mod:`archscope.render.check` renders them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archscope._modes import kept_modes, model_dtype, random_input
from archscope.devices import current_device_name
from archscope.errors import (
    ArchscopeError,
    DeviceError,
    ForwardError,
    InputShapeError,
    InputTooSmallError,
    OptionError,
    UnknownModelError,
    WeightsError,
    autograd_hint,
    first_line,
)
from archscope.memory import estimate_training_memory
from archscope.source import inspect_subject
from archscope.tensors import tensors_of

if TYPE_CHECKING:
    import torch
    from torch import nn

    from archscope.report import Report
    from archscope.source import Subject

#: (warm-up runs, timed runs) of the forward-latency measurement per device type.
_REPEATS = {"cuda": (3, 10), "cpu": (2, 3)}

#: how many non-finite gradients a result names.
_SHOW = 3

#: the note of every check off CUDA (the table's memory row says it already).
CUDA_ONLY_NOTE = "peak memory is measured on CUDA only (torch.cuda.max_memory_allocated)"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one model.

    Attributes:
        model: the model's name.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        device_name: what torch calls the device (the GPU's name on CUDA).
        input_shape / batch: the input checked (C×H×W) and its batch.
        weights: the ``state_dict`` file loaded, or ``None`` for the builder's initialisation.
        layers_compared: module calls whose real output shapes were compared with the trace.
        shape_mismatches: one line per call whose shapes differ (or that only one side saw).
        params: ``sum(p.numel() for p in model.parameters())`` of the real model.
        engine_params: the meta trace's ``total_params``.
        reference_params / reference_source: the zoo's published count and where it comes from
            (``None`` for models outside the zoo or with ``--num-classes``).
        outputs_finite / grads_finite: no NaN or ±inf in the outputs / parameter gradients.
        nonfinite_grads: names of parameters with non-finite gradients (first few).
        memory_estimate_bytes: params + gradients + buffers + activations saved for backward,
            from the meta trace (:func:`archscope.memory.estimate_training_memory`, fp32, no
            optimizer state: the step ``check`` runs).
        memory_peak_bytes: ``torch.cuda.max_memory_allocated`` over a forward + backward step
            (CUDA only, else ``None``).
        latency_ms: the timed forward passes, in milliseconds.
        error: why the run itself failed (forward raised, out of memory …), else ``None``.
    """

    model: str
    device: str
    device_name: str
    input_shape: tuple[int, ...]
    batch: int
    weights: str | None
    layers_compared: int = 0
    shape_mismatches: tuple[str, ...] = ()
    params: int | None = None
    engine_params: int | None = None
    reference_params: int | None = None
    reference_source: str | None = None
    outputs_finite: bool | None = None
    grads_finite: bool | None = None
    nonfinite_grads: tuple[str, ...] = ()
    memory_estimate_bytes: int | None = None
    memory_peak_bytes: int | None = None
    latency_ms: tuple[float, ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def params_match(self) -> bool | None:
        """The real total equals the engine's and (where known) the published reference."""
        if self.params is None or self.engine_params is None:
            return None
        ok = self.params == self.engine_params
        if self.reference_params is not None:
            ok = ok and self.params == self.reference_params
        return ok

    @property
    def memory_error_pct(self) -> float | None:
        """(estimate − measured peak) / measured peak × 100, or ``None`` without a peak."""
        if not self.memory_peak_bytes or self.memory_estimate_bytes is None:
            return None
        error = self.memory_estimate_bytes - self.memory_peak_bytes
        return 100.0 * error / self.memory_peak_bytes

    @property
    def latency_median_ms(self) -> float | None:
        return statistics.median(self.latency_ms) if self.latency_ms else None

    @property
    def failures(self) -> tuple[str, ...]:
        """Short reasons this model fails; empty when it passes."""
        reasons: list[str] = []
        if self.error is not None:
            reasons.append(self.error)
        if self.shape_mismatches:
            count = len(self.shape_mismatches)
            reasons.append(f"{count} layer output shape(s) differ from the trace")
        if self.params_match is False:
            reasons.append("parameter total differs")
        if self.outputs_finite is False:
            reasons.append("non-finite outputs")
        if self.grads_finite is False:
            reasons.append("non-finite gradients")
        return tuple(reasons)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with stable keys (see docs/check.md)."""
        median = self.latency_median_ms
        return {
            "model": self.model,
            "passed": self.passed,
            "failures": list(self.failures),
            "device": self.device,
            "device_name": self.device_name,
            "input_shape": list(self.input_shape),
            "batch": self.batch,
            "weights": self.weights,
            "layers_compared": self.layers_compared,
            "shape_mismatches": list(self.shape_mismatches),
            "params": self.params,
            "engine_params": self.engine_params,
            "reference_params": self.reference_params,
            "reference_source": self.reference_source,
            "outputs_finite": self.outputs_finite,
            "grads_finite": self.grads_finite,
            "nonfinite_grads": list(self.nonfinite_grads),
            "memory_estimate_bytes": self.memory_estimate_bytes,
            "memory_peak_bytes": self.memory_peak_bytes,
            "memory_error_pct": self.memory_error_pct,
            "latency_ms": list(self.latency_ms),
            "latency_median_ms": median,
            "error": self.error,
            "notes": list(self.notes),
        }


def check_model(
    source: str,
    *,
    device: str = "auto",
    batch: int | None = None,
    weights: str | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    repeats: int | None = None,
    seed: int = 0,
    head: str | None = None,
    base: str | None = None,
    trace: str = "meta",
    dtype: str | torch.dtype | None = None,
) -> CheckResult:
    """Build ``source`` on ``device`` and :func:`check` it (see the module doc).

    Args:
        source: anything ``archscope summary`` accepts except ONNX files and layer specs without
            weights (a zoo name, ``file.py:Name``, ``package.module:name``, ``spec:…``).
        device: ``auto`` (CUDA when available), ``cuda``, ``cuda:N`` or ``cpu``.
        batch, repeats: see :func:`check`.
        weights: a ``state_dict`` file (``torch.save``) loaded with ``strict=True``.
        input_shape: C×H×W (default: the model's natural input).
        num_classes: build zoo models with this many classes (the published reference then no
            longer applies).
        seed: seed of the weights' initialisation and of the random input.
        head, base: check the model's convolutional base with these layers after it (see
            :func:`archscope.source.resolve`).
        trace: ``"meta"`` or ``"real"``: how the engine traces it (see :func:`check`).
        dtype: the input's dtype (``"long"`` for token ids; see
            :func:`archscope.source.resolve`).

    A model that cannot be checked (an ONNX file, a file or module that cannot be found,
    imported or built, no input size) is a failed result, so a run over several models goes on.

    Raises:
        DeviceError: ``cuda`` requested without CUDA.
        UnknownModelError: ``source`` looks like a zoo name and is none.
        WeightsError: ``weights`` does not load with ``strict=True`` (the message lists missing
            and unexpected keys).
        OptionError: an option that does not apply to ``source`` (``num_classes`` for a spec).
    """
    from archscope.devices import resolve_device
    from archscope.source import is_onnx, resolve

    dev = resolve_device(device)
    if is_onnx(source):
        return failed_check(source, str(dev), input_shape, batch, weights,
                            "check runs PyTorch models; an ONNX file is checked when it is "
                            "exported (archscope export compares it with onnxruntime)")
    try:
        subject = resolve(source, input_shape=input_shape, num_classes=num_classes,
                          device=str(dev), seed=seed, weights=weights, head=head, base=base,
                          dtype=dtype)
    except (UnknownModelError, DeviceError, WeightsError):
        raise
    except ArchscopeError as exc:  # not found, not importable, its own code or spec failed
        if isinstance(exc, OptionError) and not isinstance(exc, InputShapeError):
            raise  # an option that cannot apply (--num-classes for a spec): a usage error
        # (a model without an input size is this model's FAIL: the others still run)
        return failed_check(source, str(dev), input_shape, batch, weights, str(exc))
    return check(subject, batch=batch, repeats=repeats, seed=seed, trace=trace)


def failed_check(source: str, device: str, input_shape: Sequence[int] | None, batch: int | None,
                 weights: str | None, error: str) -> CheckResult:
    """The result of a model that could not be checked at all: what was asked, and why not."""
    return CheckResult(model=source, device=device, device_name=current_device_name(device),
                       input_shape=tuple(input_shape or ()), batch=batch or 1, weights=weights,
                       error=error)


def check(subject: Subject, *, batch: int | None = None, repeats: int | None = None,
          seed: int = 0, trace: str = "meta") -> CheckResult:
    """Check ``subject`` (built with real weights on its device) against its meta trace
    (``trace="real"``: the engine's real trace on the device, the only one a forward whose
    shapes depend on tensor values has; its input is drawn as this run's with ``seed`` 0).

    Args:
        batch: batch of the random input. ``None``: 1, or 2 where a BatchNorm in training mode
            would see one value per channel at batch 1 (``BatchNorm1d`` after a ``Linear``, a
            ``BatchNorm2d`` on a 1×1 map), which PyTorch refuses; a note says so.
        repeats: timed forward passes (default: 10 on CUDA, 3 on the CPU).
        seed: seed of the random input.

    Raises:
        DeviceError: ``subject`` is on the meta device (it has no weights to run).
    """
    import torch

    dev = torch.device(subject.device)
    if dev.type == "meta":
        raise DeviceError(f"{subject.name} is on the meta device: check runs it for real; "
                          "resolve it with device='cpu' or 'cuda'")
    given_batch = batch
    batch = 1 if batch is None else batch
    model = subject.model
    base = CheckResult(
        model=subject.name, device=str(dev), device_name=current_device_name(dev),
        input_shape=subject.input_shape, batch=batch, weights=subject.weights,
        params=sum(p.numel() for p in model.parameters()),
        reference_params=subject.reference.params if subject.reference else None,
        reference_source=subject.reference.source if subject.reference else None,
    )
    try:
        report = inspect_subject(subject, batch=batch, training=True, count_flops=False,
                                 trace=trace)
        lone = _lone_batchnorm(model, report) if given_batch is None else None
        if lone is not None:
            batch = 2
            report = inspect_subject(subject, batch=batch, training=True, count_flops=False,
                                     trace=trace)
            base = _replace(base, batch=batch, notes=(
                f"batch 2: at batch 1 {lone} would see one value per channel in training mode, "
                "which PyTorch refuses; --batch sets the batch",))
    except (ForwardError, InputTooSmallError) as exc:
        return _replace(base, error=f"{trace} trace failed: {exc}")
    warmup, timed = _REPEATS["cuda" if dev.type == "cuda" else "cpu"]
    if repeats is not None:
        timed = repeats
    try:
        return _run(model, report, base, dev, subject.input_shape, batch, seed, warmup, timed,
                    subject.dtype or model_dtype(model))
    except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError is torch ≥ 2.5 only
        pass  # freed below, once the exception no longer holds the failed step's tensors
    torch.cuda.empty_cache()
    return _replace(base, engine_params=report.total_params,
                    error=f"out of memory on {dev} at batch {batch}; try a smaller --batch")


def _lone_batchnorm(model: nn.Module, report: Report) -> str | None:
    """The first BatchNorm that, in training mode, normalises one value per channel in ``report``
    (``"bn (BatchNorm1d)"``), or ``None``.

    PyTorch refuses that ("Expected more than 1 value per channel when training"): the batch
    statistics of one value are that value. Values per channel are the input's elements over its
    channels (dimension 1), from the trace's record of each call.
    """
    import math

    from torch import nn

    from archscope.engine import root_row_name

    root = root_row_name(model)
    norms = {name or root for name, m in model.named_modules()
             if (name or root) and isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for record in report.layers:
        if record.kind != "module" or record.name not in norms or not record.input_shapes:
            continue
        shape = record.input_shapes[0]
        if len(shape) >= 2 and shape[1] and math.prod(shape) // shape[1] <= 1:
            return f"{record.name} ({record.type})"
    return None


def _run(model: nn.Module, report: Report, base: CheckResult, dev: torch.device,
         shape: Sequence[int], batch: int, seed: int, warmup: int, timed: int,
         dtype: torch.dtype) -> CheckResult:
    import torch

    from archscope.engine import root_row_name

    generator = torch.Generator(device=dev).manual_seed(seed)
    x = random_input(model, tuple(shape), batch, dtype, dev, generator)
    notes = list(base.notes)
    if not any(p.requires_grad for p in model.parameters()):
        # nothing to train: the backward pass is still checked, with respect to the input
        x.requires_grad_(x.is_floating_point())
        notes.append("the model has no trainable parameters: the backward pass is checked with "
                     "respect to the input")
    real_shapes: dict[tuple[str, int], tuple[tuple[int, ...], ...]] = {}
    calls: dict[str, int] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            call = calls.get(name, 0)
            calls[name] = call + 1
            real_shapes[(name, call)] = tuple(tuple(t.shape) for t in tensors_of(output))
        return hook

    handles: list[Any] = []
    model_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with kept_modes(model):
        try:
            model.train()
            try:
                if dev.type == "cuda":
                    # A warm-up step creates cuBLAS/cuDNN handles and workspaces, so that the measured
                    # step's peak is the step's own.
                    _step(model, x, dev)
                    model.zero_grad(set_to_none=True)
                    x.grad = None
                    _sync(dev)
                    before = torch.cuda.memory_allocated(dev)
                    torch.cuda.reset_peak_memory_stats(dev)
                # a model that is one layer is one row, named after its class (see engine.inspect)
                root = root_row_name(model)
                named = ([(root, model)] if root is not None
                         else [(n, m) for n, m in model.named_modules() if n])
                handles = [m.register_forward_hook(hook_for(n)) for n, m in named]
                outputs, backward_ran = _step(model, x, dev)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:
                return _replace(base, engine_params=report.total_params,
                                error=f"forward/backward failed: {first_line(exc)}"
                                      f"{autograd_hint(str(exc))}")
            _sync(dev)
            peak = None
            if dev.type == "cuda":
                # what was allocated before the step and is neither the model nor the input
                # (workspaces kept from the warm-up) is not part of the estimate either; the input
                # is: the first layer saves it for backward
                input_bytes = x.numel() * x.element_size()
                peak = torch.cuda.max_memory_allocated(dev) - (before - model_bytes - input_bytes)
        finally:
            for h in handles:
                h.remove()

    compared, mismatches = _compare_shapes(report, real_shapes)
    out_shapes = tuple(tuple(t.shape) for t in outputs)
    if out_shapes != tuple(report.output_shapes):
        mismatches.append(f"model output: real {_shapes(out_shapes)} vs trace "
                          f"{_shapes(tuple(report.output_shapes))}")
    outputs_finite = all(bool(torch.isfinite(t).all()) for t in outputs)
    grads = [*model.named_parameters(), *([("the input", x)] if x.requires_grad else [])]
    bad_grads = [n for n, p in grads
                 if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    estimate = estimate_training_memory(report).total  # fp32, no optimizer: what _step runs
    model.zero_grad(set_to_none=True)
    x = x.detach()
    latency = _time_forward(model, x, dev, warmup, timed)
    if not backward_ran:
        notes.append("no output depends differentiably on a trainable parameter or the input: the "
                     "backward pass was skipped")
    notes += report.notes
    if dev.type != "cuda":
        notes.append(CUDA_ONLY_NOTE)
    return _replace(
        base,
        engine_params=report.total_params,
        layers_compared=compared,
        shape_mismatches=tuple(mismatches),
        outputs_finite=outputs_finite,
        grads_finite=not bad_grads,
        nonfinite_grads=tuple(bad_grads[:_SHOW]),
        memory_estimate_bytes=estimate,
        memory_peak_bytes=peak,
        latency_ms=tuple(latency),
        notes=tuple(notes),
    )


def _step(model: nn.Module, x: torch.Tensor,
          dev: torch.device) -> tuple[list[torch.Tensor], bool]:
    """One forward and backward pass; the loss is the sum of each output's mean.

    Returns the outputs and whether backward ran: not where no output depends differentiably on
    anything that requires a gradient (a model without parameters whose outputs are integers).
    """
    import torch

    # a leaf that requires grad (the input of a model without parameters) goes in as a copy: a
    # first in-place op (ReLU(inplace=True)) may not overwrite a leaf; its gradient reaches x
    output = model(x.clone() if x.requires_grad else x)
    outputs = tensors_of(output)
    loss = sum((t.float().mean() for t in outputs), torch.zeros((), device=dev))
    if not loss.requires_grad:
        return outputs, False
    loss.backward()
    return outputs, True


def _compare_shapes(
    report: Report, real: dict[tuple[str, int], tuple[tuple[int, ...], ...]]
) -> tuple[int, list[str]]:
    """Compare every module record of the trace with the real call of the same name and index."""
    mismatches: list[str] = []
    seen: set[tuple[str, int]] = set()
    compared = 0
    for record in report.layers:
        if record.kind != "module":
            continue
        key = (record.name, record.call)
        seen.add(key)
        got = real.get(key)
        if got is None and not record.input_shapes and not record.output_shapes:
            continue  # a row for parameters no call owns (never called, or used by the parent)
        compared += 1
        if got is None:
            mismatches.append(f"{record.name} (call {record.call}): traced but not run for real")
        elif tuple(got) != tuple(record.output_shapes):
            mismatches.append(f"{record.name} ({record.type}): real {_shapes(got)} vs trace "
                              f"{_shapes(record.output_shapes)}")
    for key in real:
        if key not in seen:
            mismatches.append(f"{key[0]} (call {key[1]}): run for real but missing from the trace")
    return compared, mismatches


def _time_forward(model: nn.Module, x: torch.Tensor, dev: torch.device, warmup: int,
                  timed: int) -> list[float]:
    """Forward passes in eval mode without autograd; milliseconds of each timed run."""
    import torch

    times: list[float] = []
    with kept_modes(model), torch.no_grad():
        model.eval()
        for i in range(warmup + timed):
            _sync(dev)
            start = time.perf_counter()
            model(x)
            _sync(dev)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return times


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize(dev)


def _replace(result: CheckResult, **changes: Any) -> CheckResult:
    from dataclasses import replace

    return replace(result, **changes)


def _shapes(shapes: Sequence[Sequence[int]]) -> str:
    return ", ".join("[" + ", ".join(str(d) for d in s) + "]" for s in shapes) or "nothing"


__all__ = ["CheckResult", "check", "check_model", "failed_check"]
