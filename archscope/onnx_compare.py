"""PyTorch against onnxruntime: does an exported file compute what the model computes?

The same input runs through PyTorch and through ``onnxruntime.InferenceSession`` (CPU provider),
and each output is judged on its own. It must agree with PyTorch to ``atol`` (1e-4), unless
PyTorch's own fp32 result is farther than that from exact arithmetic: then no fp32
implementation could do better, and onnxruntime may differ by a few times that inherent error.
The inherent error is measured, not assumed: the model runs again in float64 (on a float64 copy
of its state, through ``torch.func.functional_call``), and ``max|fp32 − float64|`` is PyTorch's
own error. This happens only for an output whose difference exceeds ``atol``. See
:mod:`archscope.export` for the export itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope._modes import kept_modes
from archscope.errors import ExportError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Largest absolute difference between PyTorch and onnxruntime accepted in fp32, unless PyTorch's
#: own fp32 error is larger (see :data:`FP32_ERROR_FACTOR`).
DEFAULT_ATOL = 1e-4

#: Where PyTorch's fp32 output is itself more than ``atol`` from the float64 result, onnxruntime
#: may differ from PyTorch by up to this many times that error. Two fp32 implementations that
#: sum in different orders land within a few times the error of either (measured on the zoo:
#: 0.7–2.6×, and 0.7–1.9× for the three ResNets past 1e-4), so 4 leaves room for rounding, not
#: for a wrong operator.
FP32_ERROR_FACTOR = 4


@dataclass(frozen=True)
class OutputAgreement:
    """One output: max|PyTorch − onnxruntime|, max|PyTorch|, and PyTorch's fp32 error if measured."""

    diff: float
    scale: float
    tolerance: float
    fp32_error: float | None = None

    @property
    def ratio(self) -> float:
        return self.diff / self.tolerance if self.tolerance > 0 else (0.0 if self.diff == 0
                                                                      else math.inf)


@dataclass(frozen=True)
class Agreement:
    """How closely onnxruntime reproduced PyTorch, output by output (see :class:`ExportResult`)."""

    outputs: tuple[OutputAgreement, ...]
    notes: tuple[str, ...] = ()

    @property
    def diff(self) -> float:
        return max((o.diff for o in self.outputs), default=0.0)

    @property
    def scale(self) -> float:
        return max((o.scale for o in self.outputs), default=0.0)

    @property
    def fp32_error(self) -> float | None:
        return max((o.fp32_error for o in self.outputs if o.fp32_error is not None), default=None)

    @property
    def tolerance(self) -> float:
        return max((o.tolerance for o in self.outputs), default=0.0)

    @property
    def worst(self) -> OutputAgreement:
        """The output closest to (or furthest past) its tolerance."""
        return max(self.outputs, key=lambda o: o.ratio, default=OutputAgreement(0.0, 0.0, 0.0))

    @property
    def passed(self) -> bool:
        return all(o.diff <= o.tolerance for o in self.outputs)

    def merge(self, other: Agreement) -> Agreement:
        return Agreement(self.outputs + other.outputs, self.notes + other.notes)


def verify_export(
    model: nn.Module,
    model_file: Path,
    x: torch.Tensor,
    reference: list[torch.Tensor],
    dynamic_batch: bool,
    atol: float,
    label: str,
) -> tuple[Agreement | None, str | None]:
    """Compare onnxruntime with PyTorch (at batch 1 too, for a dynamic batch)."""
    import torch

    agreement, version = compare_onnxruntime(model, model_file, x, reference, atol, label)
    if agreement is None or not dynamic_batch:
        return agreement, version
    with kept_modes(model), torch.no_grad():
        model.eval()
        _, reference1 = flatten_outputs(model(x[:1]))
    agreement1, _ = compare_onnxruntime(model, model_file, x[:1], reference1, atol, label)
    return (agreement.merge(agreement1) if agreement1 else agreement), version


def compare_onnxruntime(
    model: nn.Module, path: Path, x: torch.Tensor, reference: list[torch.Tensor], atol: float,
    label: str,
) -> tuple[Agreement | None, str | None]:
    """Run ``x`` through onnxruntime and judge each output against ``reference`` (PyTorch's).

    An output that differs by more than ``atol`` is judged against PyTorch's own fp32 error,
    measured with a float64 run of the model (:func:`float64_outputs`).
    """
    import numpy as np

    ran = run_onnxruntime(path, x, label)
    if ran is None:
        return None, None
    outputs, version = ran
    if len(outputs) != len(reference):
        raise ExportError(
            f"{label}: onnxruntime returned {len(outputs)} outputs, PyTorch {len(reference)}"
        )
    diffs: list[tuple[float, float]] = []
    for got, want in zip(outputs, reference, strict=True):
        expected = want.detach().cpu().numpy()
        if got.shape != expected.shape:
            raise ExportError(
                f"{label}: onnxruntime output shape {list(got.shape)} differs from PyTorch's "
                f"{list(expected.shape)}"
            )
        if not got.size:
            diffs.append((0.0, 0.0))
            continue
        diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
        diffs.append((diff if math.isfinite(diff) else math.inf, float(np.abs(expected).max())))
    exact: list[torch.Tensor] | None = None
    notes: tuple[str, ...] = ()
    if any(diff > atol for diff, _ in diffs):
        exact, failure = float64_outputs(model, x)
        if failure is not None:
            notes = (f"float64 reference unavailable ({failure}): judged against atol alone",)
    judged = []
    for i, (diff, scale) in enumerate(diffs):
        if exact is None or diff <= atol:
            judged.append(OutputAgreement(diff, scale, atol))
            continue
        error = float((reference[i].detach().double() - exact[i]).abs().max())
        judged.append(OutputAgreement(diff, scale, max(atol, FP32_ERROR_FACTOR * error), error))
    return Agreement(tuple(judged), notes), version


def run_onnxruntime(path: Path, x: torch.Tensor, label: str) -> tuple[list[Any], str] | None:
    """onnxruntime's outputs for ``x`` (CPU provider) and its version; ``None`` if not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    except Exception as exc:
        hint = ""
        if "NOT_IMPLEMENTED" in str(exc):  # e.g. no float64 Conv kernel on the CPU provider
            hint = (f"; onnxruntime has no kernel for this operator in {x.dtype} (the file passed "
                    "onnx.checker): export a float32 model, or skip the comparison (--no-verify)")
        raise ExportError(
            f"{label}: onnxruntime cannot run the export: {first_line(exc)}{hint}"
        ) from None
    return list(outputs), str(onnxruntime.__version__)


def float64_outputs(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor] | None,
                                                                   str | None]:
    """The model's eval-mode outputs computed in float64: (outputs, None) or (None, why not).

    Runs on a float64 copy of the parameters and buffers through ``torch.func.functional_call``,
    so the model itself is not converted; tensors the forward creates take float64 as the
    default dtype for the duration.
    """
    import torch
    from torch.func import functional_call

    state = {
        name: (t.detach().double() if t.is_floating_point() else t)
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    dtype = torch.get_default_dtype()
    with kept_modes(model):
        model.eval()
        try:
            torch.set_default_dtype(torch.float64)
            with torch.no_grad():
                output = functional_call(model, state, (x.double() if x.is_floating_point() else x,))
            _, tensors = flatten_outputs(output)
            return [t.double() for t in tensors], None
        except Exception as exc:  # an op without a float64 kernel, out of memory …
            return None, first_line(exc)
        finally:
            torch.set_default_dtype(dtype)


def flatten_outputs(output: Any) -> tuple[list[str], list[torch.Tensor]]:
    """Output names and tensors in the exporter's order (dict keys become the names).

    A part holding one tensor is named after its key (``age``) or position (``output_0``); a part
    holding several prefixes their names (``age_output_1``); a lone tensor is ``output``.
    """
    from archscope.tensors import named_tensors

    try:
        pairs = named_tensors(output, strict=True)
    except TypeError as exc:
        raise ExportError(
            f"the model returns a non-tensor ({exc}); ONNX export needs tensors, or tuples, lists "
            "and dicts of tensors"
        ) from None
    paths = [path for path, _ in pairs]

    def name(path: tuple[Any, ...], depth: int) -> str:
        if depth == len(path):
            return "output"
        part = path[depth]
        label = f"output_{part}" if isinstance(part, int) else str(part)
        if sum(p[:depth + 1] == path[:depth + 1] for p in paths) == 1:
            return label
        return f"{label}_{name(path, depth + 1)}"

    return [name(path, 0) for path in paths], [t for _, t in pairs]
