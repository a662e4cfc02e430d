"""PyTorch against onnxruntime: does an exported file compute what the model computes?

The same input runs through PyTorch and through ``onnxruntime.InferenceSession`` (CPU provider),
and each output is judged on its own, **relative to its own scale**: ``max|ORT − PyTorch|`` may
be at most ``rtol · max|PyTorch|`` (``rtol`` 1e-5, about 84 float32 ulps of the largest value;
the zoo's figures are 1e-7 to 2e-6 of it, docs/onnx.md). Two allowances widen that bound:

- where PyTorch's own fp32 result is farther than that from exact arithmetic, no fp32
  implementation could do better, and onnxruntime may differ by ``FP32_ERROR_FACTOR`` times that
  inherent error. It is measured, not assumed: the model runs again in float64 (on a float64 copy
  of its state, through ``torch.func.functional_call``), and ``max|fp32 − float64|`` is PyTorch's
  own error. This happens only for an output whose difference exceeds the relative bound;
- ``atol``, an absolute difference the caller accepts whatever the scale (0 unless asked).

The bound never goes below the smallest normal number of the output's dtype: differences below
it are not resolvable.

An output is **degenerate** when this comparison cannot tell a right file from a wrong one: it is
all zero, its scale is below the smallest normal number, or the bound's absolute parts (``atol``,
or ``FP32_ERROR_FACTOR`` × PyTorch's own fp32 error) reach ``DEGENERATE_FRACTION`` (1 %) of its
scale, so an output 1 % off would pass. A zero-initialised head (torchvision's ViT) gives
all-zero logits with either file. Then the comparison is made again with non-trivial weights:
every parameter that holds a single value (all zero, all one, a layer scale of 1e-6 …) and is an
initializer of the file is re-drawn from a seeded normal distribution
(:func:`redraw_constants`); PyTorch runs with them through ``functional_call`` (the model is
not changed) and onnxruntime runs the written file's graph with the same tensors in place of
those initializers (the file on disk is not changed). See :mod:`archscope.export.exporter` for the export
itself and docs/onnx.md for the measurements behind the numbers.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope._modes import kept_modes
from archscope.errors import ExportError, first_line

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

#: Largest accepted max|PyTorch − onnxruntime| ÷ max|PyTorch| per output, unless PyTorch's own
#: fp32 error is larger (see :data:`FP32_ERROR_FACTOR`). Measured on every zoo model at its
#: natural input: 1.2e-7 to 2.0e-6 (docs/onnx.md), so 1e-5 leaves a margin of 5 over the worst,
#: while a weight tensor off by 1e-3 moves the outputs by 1.6e-4 to 1.1e-3 of their scale on
#: all but the layers a normalisation divides it out of.
DEFAULT_RTOL = 1e-5

#: An absolute difference accepted whatever the output's scale: none unless asked for (a fixed
#: 1e-4 passed outputs of scale 1e-9 whatever onnxruntime computed).
DEFAULT_ATOL = 0.0

#: Where PyTorch's fp32 output is itself farther than the relative bound from the float64
#: result, onnxruntime may differ from PyTorch by up to this many times that error. Two fp32
#: implementations that sum in different orders land within a few times the error of either
#: (measured on the zoo: 0.7–2.6×), so 4 leaves room for rounding, not for a wrong operator.
FP32_ERROR_FACTOR = 4

#: An output whose bound, from its absolute parts alone, reaches this fraction of its scale is
#: degenerate: the comparison would pass an output this far off.
DEGENERATE_FRACTION = 1e-2

#: Seed of the normal distribution that re-draws constant parameters for the re-check.
REDRAW_SEED = 0

#: Protobuf cannot serialise a message of 2 GiB or more (as in :mod:`archscope.export.exporter`).
_PROTOBUF_LIMIT = 2**31 - 2**26


class Bound(str, Enum):
    """Which part of the bound decided an output's tolerance."""

    RELATIVE = "rtol"  # rtol × max|PyTorch|
    FP32_ERROR = "fp32_error"  # FP32_ERROR_FACTOR × PyTorch's own fp32 error against float64
    ABSOLUTE = "atol"  # the caller's atol
    RESOLUTION = "resolution"  # the smallest normal number of the output's dtype


class Degenerate(str, Enum):
    """Why an output's comparison could not tell a right file from a wrong one."""

    ZERO = "zero"  # every value is 0
    SUBNORMAL = "subnormal"  # max|PyTorch| below the smallest normal number of its dtype
    ROUNDING = "rounding"  # PyTorch's own fp32 error is ≥ 1/4 % of the output's scale
    ATOL = "atol"  # the caller's atol is ≥ 1 % of the output's scale


@dataclass(frozen=True)
class OutputAgreement:
    """One output at one batch: max|PyTorch − onnxruntime|, max|PyTorch|, the tolerance applied,
    PyTorch's own fp32 error if it was measured, which bound decided, and whether (and why) the
    output was degenerate."""

    diff: float
    scale: float
    tolerance: float
    fp32_error: float | None = None
    name: str = "output"
    batch: int = 1
    bound: Bound = Bound.RELATIVE
    degenerate: Degenerate | None = None

    @property
    def relative(self) -> float | None:
        """``diff / scale``; ``None`` for an all-zero output."""
        return self.diff / self.scale if self.scale > 0 else None

    @property
    def ratio(self) -> float:
        return self.diff / self.tolerance if self.tolerance > 0 else (0.0 if self.diff == 0
                                                                      else math.inf)

    @property
    def passed(self) -> bool:
        return self.diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "batch": self.batch, "max_abs_diff": self.diff,
            "max_abs_output": self.scale, "rel_diff": self.relative,
            "fp32_error": self.fp32_error, "tolerance": self.tolerance,
            "bound": self.bound.value,
            "degenerate": self.degenerate.value if self.degenerate else None,
        }


@dataclass(frozen=True)
class Agreement:
    """How closely onnxruntime reproduced PyTorch, output by output (see :class:`ExportResult`).

    ``recheck`` is the comparison made again with ``redrawn`` parameters where some output was
    degenerate; ``redrawn`` names them (on the re-check itself).
    """

    outputs: tuple[OutputAgreement, ...]
    notes: tuple[str, ...] = ()
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    redrawn: tuple[str, ...] = ()
    recheck: Agreement | None = None

    @property
    def diff(self) -> float:
        return max((o.diff for o in self.outputs), default=0.0)

    @property
    def scale(self) -> float:
        return max((o.scale for o in self.outputs), default=0.0)

    @property
    def relative(self) -> float | None:
        """The largest ``diff / scale`` over the outputs that are not all zero."""
        return max((o.relative for o in self.outputs if o.relative is not None), default=None)

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
    def bounds(self) -> frozenset[Bound]:
        return frozenset(o.bound for o in self.outputs)

    @property
    def degenerate(self) -> tuple[OutputAgreement, ...]:
        return tuple(o for o in self.outputs if o.degenerate is not None)

    @property
    def passed(self) -> bool:
        """Every output within its tolerance, and the re-check's too where one was made."""
        return all(o.passed for o in self.outputs) and (self.recheck is None
                                                        or self.recheck.passed)

    @property
    def verified(self) -> bool:
        """The comparison checked something: no output was degenerate, or the re-check's
        outputs were not."""
        if not self.degenerate:
            return True
        return self.recheck is not None and not self.recheck.degenerate

    def merge(self, other: Agreement) -> Agreement:
        return replace(self, outputs=self.outputs + other.outputs, notes=self.notes + other.notes)

    def verdict(self) -> dict[str, Any]:
        """What ``archscope export --format json`` adds to the aggregate figures: the largest
        relative difference, the bound of the worst output, the degenerate outputs, whether
        the comparison checked something, every output's figures, and the re-check."""
        recheck = self.recheck
        return {
            "max_rel_diff": self.relative,
            "bound": self.worst.bound.value,
            "degenerate": list(dict.fromkeys(o.name for o in self.degenerate)),
            "verified": self.verified,
            "outputs": [o.to_dict() for o in self.outputs],
            "recheck": None if recheck is None else {
                "redrawn": list(recheck.redrawn), "max_abs_diff": recheck.diff,
                "max_abs_output": recheck.scale, "fp32_error": recheck.fp32_error,
                "tolerance": recheck.tolerance,
                **{k: v for k, v in recheck.verdict().items() if k != "recheck"}},
        }


def verify_export(
    model: nn.Module,
    model_file: Path,
    x: torch.Tensor,
    reference: list[torch.Tensor],
    dynamic_batch: bool,
    *,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    label: str,
    names: Sequence[str] | None = None,
) -> tuple[Agreement | None, str | None]:
    """Compare onnxruntime with PyTorch (at batch 1 too, for a dynamic batch), and where an
    output is degenerate, again with its constant parameters re-drawn (:func:`recheck`)."""
    import torch

    agreement, version = compare_onnxruntime(model, model_file, x, reference, rtol, atol, label,
                                             names=names)
    if agreement is None:
        return None, None
    if dynamic_batch:
        with kept_modes(model), torch.no_grad():
            model.eval()
            _, reference1 = flatten_outputs(model(x[:1]))
        agreement1, _ = compare_onnxruntime(model, model_file, x[:1], reference1, rtol, atol,
                                            label, names=names)
        agreement = agreement.merge(agreement1) if agreement1 else agreement
    if agreement.degenerate and all(o.passed for o in agreement.outputs):
        agreement = recheck(model, model_file, x, agreement, label, names=names)
    return agreement, version


def compare_onnxruntime(
    model: nn.Module, source: Path | bytes, x: torch.Tensor, reference: list[torch.Tensor],
    rtol: float, atol: float, label: str, overrides: dict[str, torch.Tensor] | None = None,
    *, names: Sequence[str] | None = None,
) -> tuple[Agreement | None, str | None]:
    """Run ``x`` through onnxruntime and judge each output against ``reference`` (PyTorch's).

    ``source`` is the file, or a serialised model (the re-check's). An output that differs by
    more than its relative bound is judged against PyTorch's own fp32 error, measured with a
    float64 run of the model (:func:`float64_outputs`, with ``overrides`` in place of the
    model's parameters where given).
    """
    import numpy as np

    ran = run_onnxruntime(source, x, label)
    if ran is None:
        return None, None
    outputs, version = ran
    if len(outputs) != len(reference):
        raise ExportError(
            f"{label}: onnxruntime returned {len(outputs)} outputs, PyTorch {len(reference)}"
        )
    measured: list[tuple[float, float, float]] = []  # diff, scale, the dtype's smallest normal
    for got, want in zip(outputs, reference, strict=True):
        expected = want.detach().cpu().numpy()
        if got.shape != expected.shape:
            raise ExportError(
                f"{label}: onnxruntime output shape {list(got.shape)} differs from PyTorch's "
                f"{list(expected.shape)}"
            )
        tiny = float(np.finfo(expected.dtype).tiny) if expected.dtype.kind == "f" else 0.0
        if not got.size:
            measured.append((0.0, 0.0, tiny))
            continue
        diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
        scale = float(np.abs(expected).max())
        measured.append((diff if math.isfinite(diff) else math.inf, scale, tiny))
    exact: list[torch.Tensor] | None = None
    notes: tuple[str, ...] = ()
    if any(diff > max(rtol * scale, atol, tiny) for diff, scale, tiny in measured):
        exact, failure = float64_outputs(model, x, overrides)
        if failure is not None:
            notes = (f"float64 reference unavailable ({failure}): judged against rtol and atol "
                     "alone",)
    names = list(names) if names is not None and len(names) == len(measured) else (
        ["output"] if len(measured) == 1 else [f"output_{i}" for i in range(len(measured))])
    judged = []
    for i, (diff, scale, tiny) in enumerate(measured):
        error = None
        if exact is not None and diff > max(rtol * scale, atol, tiny):
            error = float((reference[i].detach().double() - exact[i]).abs().max())
        judged.append(judge(diff, scale, rtol=rtol, atol=atol, tiny=tiny, fp32_error=error,
                            name=names[i], batch=int(x.shape[0]) if x.dim() else 1))
    return Agreement(tuple(judged), notes, rtol=rtol, atol=atol), version


def judge(diff: float, scale: float, *, rtol: float, atol: float, tiny: float,
          fp32_error: float | None = None, name: str = "output", batch: int = 1,
          ) -> OutputAgreement:
    """The tolerance of one output, the bound that set it, and whether it is degenerate.

    The tolerance is the largest of ``rtol · scale``, ``atol``, ``tiny`` (the dtype's smallest
    normal number) and, where measured, ``FP32_ERROR_FACTOR · fp32_error``.
    """
    parts = {Bound.RELATIVE: rtol * scale, Bound.ABSOLUTE: atol, Bound.RESOLUTION: tiny}
    if fp32_error is not None:
        parts[Bound.FP32_ERROR] = FP32_ERROR_FACTOR * fp32_error
    bound = max(parts, key=lambda b: parts[b])  # ties go to the first: rtol
    degenerate = None
    if scale == 0:
        degenerate = Degenerate.ZERO
    elif scale < tiny:
        degenerate = Degenerate.SUBNORMAL
    elif fp32_error is not None and FP32_ERROR_FACTOR * fp32_error >= DEGENERATE_FRACTION * scale:
        degenerate = Degenerate.ROUNDING
    elif atol >= DEGENERATE_FRACTION * scale:
        degenerate = Degenerate.ATOL
    return OutputAgreement(diff, scale, parts[bound], fp32_error, name, batch, bound, degenerate)


def recheck(model: nn.Module, model_file: Path, x: torch.Tensor, agreement: Agreement,
            label: str, *, names: Sequence[str] | None = None) -> Agreement:
    """``agreement`` with its re-check: the comparison made again with every parameter that
    holds a single value (and is an initializer of ``model_file``) re-drawn.

    PyTorch runs with the re-drawn tensors through ``functional_call``; onnxruntime runs the
    file's graph with them in place of those initializers, substituted in a copy loaded into
    memory. (Not ``SessionOptions.add_initializer``: with the default graph optimizations,
    onnxruntime 1.32 ignores it for a Conv weight, whose layout transform reads the file's
    tensor; measured.) Where nothing can be re-drawn, a note says the comparison checked nothing.
    """
    import onnx
    import torch
    from torch.func import functional_call

    proto = onnx.load(str(model_file))  # with its external data, if any
    in_file = {t.name for t in proto.graph.initializer}
    redrawn = redraw_constants(model, in_file)
    which = ", ".join(dict.fromkeys(o.name for o in agreement.degenerate))
    if not redrawn:
        return replace(agreement, notes=(*agreement.notes, (
            f"nothing was checked on {which}: degenerate with the model's own weights, and no "
            "parameter holds a single value to re-draw")))
    _substitute(proto, redrawn)
    with kept_modes(model), torch.no_grad():
        model.eval()
        _, reference = flatten_outputs(functional_call(model, redrawn, (x,)))
    with _serialised(proto) as source:
        second, _ = compare_onnxruntime(model, source, x, reference, agreement.rtol,
                                        agreement.atol, label, redrawn, names=names)
    assert second is not None  # onnxruntime ran the first comparison
    second = replace(second, redrawn=tuple(redrawn))
    notes = agreement.notes
    if second.degenerate:
        still = ", ".join(dict.fromkeys(o.name for o in second.degenerate))
        notes = (*notes, f"nothing was checked on {still}: degenerate even with {len(redrawn)} "
                 "constant parameters re-drawn")
    return replace(agreement, notes=notes, recheck=second)


def redraw_constants(model: nn.Module, names: Collection[str],
                     seed: int = REDRAW_SEED) -> dict[str, torch.Tensor]:
    """New values for every floating-point parameter in ``names`` whose elements all hold one
    value ``c`` (zero-initialised heads, BatchNorm's 1 and 0, a layer scale of 1e-6 …; a
    single-element parameter only when it is 0, a gate such as ReZero's).

    A weight (2 or more dimensions) becomes ``c + N(0, 1) / √fan_in`` (fan_in = elements per
    output channel: PyTorch's own scale for a Linear or Conv), anything else
    ``c + 0.1 · max(1, |c|) · N(0, 1)``; drawn in ``named_parameters`` order from a generator
    seeded with ``seed``, so the re-check is the same every run. The model is not changed.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    redrawn: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if name not in names or not param.is_floating_point() or not param.numel():
            continue
        flat = param.detach().reshape(-1)
        if not bool((flat == flat[0]).all()) or (flat.numel() == 1 and bool(flat[0] != 0)):
            continue  # one value says nothing of a single-element parameter unless it is 0
        value = float(flat[0])
        std = (1 / math.sqrt(param.numel() // param.shape[0]) if param.dim() >= 2
               else 0.1 * max(1.0, abs(value)))
        noise = torch.randn(tuple(param.shape), generator=generator, dtype=torch.float32)
        redrawn[name] = (value + std * noise).to(param.dtype)
    return redrawn


def _substitute(proto: onnx.ModelProto, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the initializers named in ``tensors`` with their values, in place."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name in tensors:
            init.CopyFrom(numpy_helper.from_array(tensors[init.name].detach().cpu().numpy(),
                                                  init.name))


@contextlib.contextmanager
def _serialised(proto: onnx.ModelProto) -> Iterator[Path | bytes]:
    """``proto`` as onnxruntime can load it: bytes, or past protobuf's 2 GB limit a temporary
    file with its weights in an external data file beside it (removed on exit)."""
    import onnx

    if proto.ByteSize() < _PROTOBUF_LIMIT:
        yield proto.SerializeToString()
        return
    with tempfile.TemporaryDirectory(prefix="archscope-recheck-") as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(proto, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="model.onnx.data",
                        size_threshold=1024)
        yield path


def run_onnxruntime(source: Path | bytes, x: torch.Tensor,
                    label: str) -> tuple[list[Any], str] | None:
    """onnxruntime's outputs for ``x`` (CPU provider) and its version; ``None`` if not installed.

    ``source`` is a file, or a serialised model."""
    try:
        import onnxruntime
    except ImportError:
        return None
    try:
        session = onnxruntime.InferenceSession(
            source if isinstance(source, bytes) else str(source),
            providers=["CPUExecutionProvider"])
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


def float64_outputs(model: nn.Module, x: torch.Tensor,
                    overrides: dict[str, torch.Tensor] | None = None,
                    ) -> tuple[list[torch.Tensor] | None, str | None]:
    """The model's eval-mode outputs computed in float64: (outputs, None) or (None, why not).

    Runs on a float64 copy of the parameters and buffers (``overrides`` in place of those it
    names) through ``torch.func.functional_call``, so the model itself is not converted;
    tensors the forward creates take float64 as the default dtype for the duration.
    """
    import torch
    from torch.func import functional_call

    named = {**dict([*model.named_parameters(), *model.named_buffers()]), **(overrides or {})}
    state = {name: (t.detach().double() if t.is_floating_point() else t)
             for name, t in named.items()}
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


def disagreement(agreement: Agreement, label: str) -> str:
    """The error for an agreement that did not pass: the worst output, its bound and why, and,
    for a failed re-check, what was re-drawn for it."""
    failed, redrawn = agreement, ""
    if all(o.passed for o in agreement.outputs) and agreement.recheck is not None:
        failed = agreement.recheck
        shown = ", ".join(failed.redrawn[:3]) + (", …" if len(failed.redrawn) > 3 else "")
        degenerate = ", ".join(f"{o.name}: {_REASONS[o.degenerate]}"
                               for o in agreement.degenerate if o.degenerate is not None)
        redrawn = (f", with {len(failed.redrawn)} constant parameters re-drawn for the check "
                   f"({shown}) because the model's own outputs are degenerate ({degenerate})")
    worst = failed.worst
    because = (f"PyTorch's own fp32 error against float64 is {worst.fp32_error:.3g}"
               if worst.fp32_error is not None else
               failed.notes[0] if failed.notes else "")
    return (f"{label}: onnxruntime's output differs from PyTorch's by up to {worst.diff:.3g} on "
            f"outputs up to {worst.scale:.3g}, more than the tolerance {worst.tolerance:.3g}"
            + (f" ({because})" if because else "") + redrawn
            + "; no file was written. Try another --opset")


#: How a degenerate output is described, in errors and in ``archscope export``'s verdict.
_REASONS = {
    Degenerate.ZERO: "all zero",
    Degenerate.SUBNORMAL: "below the smallest normal number",
    Degenerate.ROUNDING: "mostly PyTorch's own rounding error",
    Degenerate.ATOL: "within --atol of zero",
}


def describe(reason: Degenerate) -> str:
    """A degenerate output's reason in words."""
    return _REASONS[reason]


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
