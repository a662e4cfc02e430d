"""Export a PyTorch model to ONNX and prove the file is right.

The exporter is PyTorch's ``torch.export``-based one (``torch.onnx.export(..., dynamo=True)``, the
default since PyTorch 2.9; the TorchScript exporter is deprecated). Its graph optimizer is not used
as is, because two of its rewrites change what the file says about the model:

- it folds BatchNorm into the preceding Conv (a ResNet-50 loses 53,116 BatchNorm parameters), and
- it merges initializers with equal contents, so freshly initialised all-zero biases and all-one
  BatchNorm scales collapse into one tensor and a re-inspected file undercounts its parameters.

Instead archscope exports unoptimised, folds constants with
``onnxscript.optimizer.fold_constants`` (which only evaluates shape arithmetic), and drops the
all-zero bias the exporter adds to a Conv that had none (``bias=False``); every initializer then is
one of the model's parameters or buffers, under its ``state_dict`` name (other constants become
``Constant`` nodes). The file is checked with
``onnx.checker.check_model(full_check=True)`` (which includes strict shape inference), and, when
onnxruntime is installed, the same random input is run through PyTorch and onnxruntime and
compared. A file that fails any of these is never written.

The comparison and its tolerance are :mod:`archscope.export.compare`'s: each output of onnxruntime
must agree with PyTorch's to ``rtol`` (1e-5) of its scale, max|PyTorch|, or, where PyTorch's own
fp32 result is farther than that from a float64 run of the model, to a few times that measured
error. An output the comparison cannot resolve (all zero, as a zero-initialised head gives) is
said to be degenerate and compared again with the model's constant parameters re-drawn.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope._io import atomic_path
from archscope._modes import kept_modes, model_dtype, random_input
from archscope.errors import READS_VALUES, ExportError, ExportOptionError, first_line
from archscope.export import compare as onnx_compare
from archscope.export.capture import captured_output
from archscope.export.compare import DEFAULT_ATOL, DEFAULT_RTOL, FP32_ERROR_FACTOR, Agreement

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

    from archscope.source import Subject

#: The opset used unless ``--opset`` says otherwise, and the lowest accepted: the lowest the
#: torch.export exporter emits natively. Its conversion to older opsets runs before constants are
#: folded and fails on the zoo's models (Squeeze/ReduceMean axes), silently keeping opset 18.
MIN_OPSET = 18
DEFAULT_OPSET = MIN_OPSET

#: Protobuf cannot serialise a message of 2 GiB or more; bigger models keep their weights in an
#: external data file ``<name>.onnx.data`` beside the model.
_PROTOBUF_LIMIT = 2**31 - 2**26


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and what it verified.

    Attributes:
        path: the ONNX file written.
        data_path: the external data file beside it, for models over 2 GB; else ``None``.
        opset: the ONNX opset of the default domain.
        input_name / output_names: graph input and output names (dict outputs keep their keys).
        input_shape: the exported input, batch included; ``dynamic_batch`` marks dim 0 symbolic.
        file_bytes: size of the file (plus its external data).
        export_seconds: wall time of exporting, checking and saving (verification excluded).
        nodes: number of nodes in the graph.
        max_abs_diff: largest |PyTorch − onnxruntime| over all outputs (and, with
            ``dynamic_batch``, both batches), or ``None`` when onnxruntime is not installed.
        max_abs_output: largest |PyTorch output|, the scale of the comparison.
        fp32_error: PyTorch's own fp32 error, ``max|fp32 − float64|``, the largest over the
            outputs where it was measured: only outputs that differed by more than their
            relative bound (``None`` when none did).
        tolerance: the largest accepted difference applied: per output the largest of
            ``rtol · max|output|``, ``atol`` and, where measured, ``FP32_ERROR_FACTOR ·
            fp32_error``. Each output is judged against its own tolerance, so a small head
            beside a large one is not let off.
        onnxruntime_version: the onnxruntime that computed ``max_abs_diff``.
        atol: an absolute difference accepted whatever the scale (0 unless asked for).
        notes: what the comparison could not do (a float64 reference that failed to run, an
            output that stayed degenerate).
        exporter_output: what PyTorch's exporter printed, logged and warned, captured rather
            than shown (``archscope export --verbose`` shows it); ``""`` when it said nothing.
        rtol: the relative bound, a fraction of each output's max|PyTorch|.
        agreement: the comparison output by output, with the re-check where an output was
            degenerate (:class:`~archscope.export.compare.Agreement`); ``None`` when it did not run.
    """

    path: Path
    data_path: Path | None
    opset: int
    input_name: str
    output_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    file_bytes: int
    export_seconds: float
    nodes: int
    max_abs_diff: float | None
    max_abs_output: float | None
    fp32_error: float | None
    tolerance: float | None
    onnxruntime_version: str | None
    atol: float
    notes: tuple[str, ...] = ()
    exporter_output: str = ""
    rtol: float = DEFAULT_RTOL
    agreement: Agreement | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the stable keys documented in docs/onnx.md (``exporter_output`` is
        left out: ``--verbose`` shows it on stderr)."""
        return {
            "path": str(self.path),
            "data_path": str(self.data_path) if self.data_path is not None else None,
            "opset": self.opset,
            "input_name": self.input_name,
            "output_names": list(self.output_names),
            "input_shape": list(self.input_shape),
            "dynamic_batch": self.dynamic_batch,
            "file_bytes": self.file_bytes,
            "export_seconds": self.export_seconds,
            "nodes": self.nodes,
            "max_abs_diff": self.max_abs_diff,
            "max_abs_output": self.max_abs_output,
            "fp32_error": self.fp32_error,
            "tolerance": self.tolerance,
            "atol": self.atol,
            "onnxruntime_version": self.onnxruntime_version,
            "notes": list(self.notes),
            "rtol": self.rtol,
            **(self.agreement.verdict() if self.agreement is not None else {
                "max_rel_diff": None, "bound": None, "degenerate": [], "verified": None,
                "outputs": [], "recheck": None}),
        }


def export_onnx(
    model: nn.Module | Subject,
    path: str | os.PathLike[str],
    input_shape: Sequence[int] | None = None,
    *,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    verify: bool = True,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    name: str | None = None,
) -> ExportResult:
    """Export ``model`` (real weights, on the CPU) to ONNX at ``path`` and verify it.

    Args:
        model: the model, or a :class:`~archscope.source.Subject` built on the CPU (whose input
            shape and name are the defaults of ``input_shape`` and ``name``); it is exported in
            eval mode, and its mode is restored afterwards.
        path: the ``.onnx`` file to write (replaced atomically: nothing is written on failure).
        input_shape: one sample's shape, C×H×W (required for a plain module).
        batch: the batch of the example input (with ``dynamic_batch``, at least 2 is traced so the
            exporter cannot specialise the batch to 1).
        opset: ONNX opset version.
        dynamic_batch: make the batch dimension symbolic (``batch``).
        verify: run onnxruntime (when installed) and compare with PyTorch.
        rtol: the largest accepted max|PyTorch − onnxruntime| ÷ max|PyTorch|, per output,
            unless PyTorch's own fp32 error (against float64) is larger; then
            ``FP32_ERROR_FACTOR`` times that error is accepted.
        atol: an absolute difference accepted whatever the output's scale (0 by default).
        seed: seed of the random example input.
        name: what to call the model in error messages.

    Raises:
        ExportError: the model is not on the CPU with real weights, the exporter (its subclass
            :class:`ExporterFailed`, with what the exporter printed) or the ONNX checker failed,
            onnxruntime disagrees with PyTorch by more than the tolerance, or ``path`` cannot be
            written; its subclass :class:`~archscope.errors.ExportOptionError` (a usage error)
            for an ``opset`` below ``MIN_OPSET`` or above the newest the onnx package knows.
    """
    import torch

    from archscope.source import Subject

    dtype = None
    if isinstance(model, Subject):
        name = name or model.name
        input_shape = model.input_shape if input_shape is None else input_shape
        dtype = model.dtype  # --dtype: token ids for a model that starts with an Embedding
        model = model.model
    if input_shape is None:
        raise TypeError("export_onnx needs input_shape for a plain nn.Module")
    label = name or type(model).__name__
    if opset < MIN_OPSET:
        raise ExportOptionError(
            f"{label}: opset {opset} is too old for PyTorch's torch.export-based ONNX exporter; "
            f"use --opset {MIN_OPSET} or higher"
        )
    if opset > _latest_opset():
        raise ExportOptionError(
            f"{label}: opset {opset} is newer than the onnx package knows; use --opset "
            f"{MIN_OPSET} to {_latest_opset()}"
        )
    target = Path(path)
    _check_target(target)
    devices = {p.device.type for p in [*model.parameters(), *model.buffers()]}
    if devices - {"cpu"}:
        raise ExportError(
            f"{label}: export needs real weights on the CPU, not {', '.join(sorted(devices))}; "
            "build the model on the CPU (archscope export builds zoo models there)"
        )
    example_batch = max(batch, 2) if dynamic_batch else batch
    generator = torch.Generator().manual_seed(seed)
    x = random_input(model, tuple(input_shape), example_batch, dtype or model_dtype(model), "cpu",
                     generator)

    with kept_modes(model):
        model.eval()
        with torch.no_grad():
            try:
                reference = model(x)
            except Exception as exc:
                raise _forward_failure(model, input_shape, x, label, exc) from None
        output_names, ref_outputs = onnx_compare.flatten_outputs(reference)
        state_names = set(model.state_dict().keys())
        started = time.perf_counter()
        proto, exporter_output = _export_proto(model, x, opset, dynamic_batch, output_names,
                                               label)

    _drop_synthetic_zero_bias(proto, state_names)
    _constants_to_nodes(proto, state_names)
    external = proto.ByteSize() >= _PROTOBUF_LIMIT
    info = {
        "opset": _default_opset(proto),
        "input_name": proto.graph.input[0].name,
        "output_names": tuple(o.name for o in proto.graph.output),
        "nodes": len(proto.graph.node),
    }
    agreement: Agreement | None = None
    version: str | None = None
    with _staged(target, external) as (model_file, data_file):
        try:
            _write(proto, model_file, data_file)
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
        del proto  # the file is the truth from here on; free the in-memory copy of the weights
        _check_file(model_file, label)
        export_seconds = time.perf_counter() - started
        file_bytes = model_file.stat().st_size + (data_file.stat().st_size if data_file else 0)
        if verify:
            agreement, version = onnx_compare.verify_export(
                model, model_file, x, ref_outputs, dynamic_batch, rtol=rtol, atol=atol,
                label=label, names=info["output_names"])
            if agreement is not None and not agreement.passed:
                raise ExportError(onnx_compare.disagreement(agreement, label))
    return ExportResult(
        path=target,
        data_path=target.with_name(target.name + ".data") if external else None,
        input_shape=tuple(x.shape),
        dynamic_batch=dynamic_batch,
        file_bytes=file_bytes,
        export_seconds=export_seconds,
        max_abs_diff=agreement.diff if agreement else None,
        max_abs_output=agreement.scale if agreement else None,
        fp32_error=agreement.fp32_error if agreement else None,
        tolerance=agreement.tolerance if agreement else None,
        onnxruntime_version=version,
        atol=atol,
        notes=agreement.notes if agreement else (),
        exporter_output=exporter_output,
        rtol=rtol,
        agreement=agreement,
        **info,
    )


def _forward_failure(model: nn.Module, input_shape: Sequence[int], x: torch.Tensor, label: str,
                     exc: Exception) -> ExportError:
    """The error for a failed forward: the meta trace's, which names the layer and the likely
    cause (an input in the wrong layout, too small), where it has one; else PyTorch's."""
    from archscope.engine import inspect
    from archscope.errors import INPUT_ERRORS

    try:
        inspect(model, input_shape, batch=x.shape[0], name=label, count_flops=False,
                dtype=x.dtype)
    except INPUT_ERRORS as traced:
        return ExportError(f"{label}: {traced}")  # holds on any device: the input does not fit
    except Exception:  # the meta trace failing in its own way says nothing of the real forward
        pass
    return ExportError(f"{label}: forward pass on a {_dims(x.shape)} input failed before export: "
                       f"{first_line(exc)}")


def _constants_to_nodes(proto: onnx.ModelProto, state_names: set[str]) -> None:
    """Turn initializers that are not in the model's ``state_dict`` into ``Constant`` nodes.

    Constant folding leaves computed constants (shape arithmetic, an adaptive pool's divisors) as
    initializers; as ``Constant`` nodes they cannot be mistaken for parameters by a reader such as
    :func:`archscope.engine.inspect_onnx`, which counts initializers as parameters.
    """
    import onnx

    moved = [t for t in proto.graph.initializer if t.name not in state_names]
    if not moved:
        return
    nodes = [
        onnx.helper.make_node("Constant", [], [t.name], name=f"constant_{t.name}", value=t)
        for t in moved
    ]
    _remove_initializers(proto, {t.name for t in moved})
    rest = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend([*nodes, *rest])


def _remove_initializers(proto: onnx.ModelProto, names: set[str]) -> None:
    # delete in place, from the end: rebuilding the list would copy every weight tensor
    for i in reversed(range(len(proto.graph.initializer))):
        if proto.graph.initializer[i].name in names:
            del proto.graph.initializer[i]


def _check_target(target: Path) -> None:
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ExportError(f"cannot write {target}: it is a directory; give a file name like m.onnx")
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"cannot write {target}: {directory} is a file, not a directory")
    if not directory.is_dir():
        raise ExportError(f"cannot write {target}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise ExportError(f"cannot write {target}: directory {directory} is not writable")


class ExporterFailed(ExportError):
    """PyTorch's exporter raised; ``output`` is what it printed, logged and warned meanwhile."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def _export_proto(
    model: nn.Module,
    x: torch.Tensor,
    opset: int,
    dynamic_batch: bool,
    output_names: list[str],
    label: str,
) -> tuple[onnx.ModelProto, str]:
    """The exported, constant-folded graph, and what the exporter printed meanwhile.

    Raises:
        ExporterFailed: the exporter raised; the message gives the cause in one line.
    """
    import torch

    try:
        import onnxscript.optimizer
    except ImportError:  # pragma: no cover - onnxscript ships with archscope's dependencies
        raise ExportError(
            "ONNX export needs onnxscript (an archscope dependency); install it with pip install onnxscript"
        ) from None
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    captured: list[str] = []
    try:
        with captured_output() as captured:
            program = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                optimize=False,  # see the module docstring: its BN folding and dedup change counts
                external_data=False,
                opset_version=opset,
                input_names=["input"],
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
            assert program is not None  # dynamo=True without a file name always returns one
            onnxscript.optimizer.fold_constants(program.model)
            onnxscript.optimizer.remove_unused_nodes(program.model)
            proto: onnx.ModelProto = program.model_proto
    except ExportError:
        raise
    except Exception as exc:
        raise ExporterFailed(
            f"{label}: PyTorch's ONNX exporter failed at opset {opset}: {_exporter_reason(exc)}",
            "\n".join(captured),
        ) from None
    produced = _default_opset(proto)
    if produced != opset:
        raise ExportError(
            f"{label}: the exporter produced opset {produced} instead of {opset} (it could not "
            f"convert the graph); use an opset from {MIN_OPSET} to {_latest_opset()}"
        )
    return proto, "\n".join(captured)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (``__cause__``, else ``__context__``)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    return chain


def _shown_path(path: str) -> str:
    """A file as an error shows it: relative to the working directory where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (OSError, ValueError):
        return path


def _exporter_reason(exc: BaseException) -> str:
    """The cause of an exporter failure in one line, not the exporter's "step 1/3 … Next steps".

    torch.onnx wraps what went wrong (``TorchExportError: Failed to export the model with
    torch.export. This is step 1/3 …``) around the real exception, and names the line of the
    model's code that raised it. A data-dependent guard (``if x.mean() > 0:``) is explained in
    ``summary``'s words.
    """
    chain = _exception_chain(exc)
    text = "\n".join(str(e) for e in chain)
    call = re.search(r'The following call raised this error:\s*\n\s*File "([^"]+)", line (\d+), '
                     r"in (\S+)\n\s*(\S.*)", text)
    where = (f"{_shown_path(call.group(1))}, line {call.group(2)}: `{call.group(4).strip()}`"
             if call else "")
    if "GuardOnDataDependentSymNode" in {type(e).__name__ for e in chain} or (
            "data-dependent expression" in text):
        return (f"{READS_VALUES}, which torch.export cannot capture in a graph"
                + (f" ({where})" if where else "")
                + "; compute both branches and choose with torch.where, or use torch.cond")
    root = chain[-1]
    summary = re.search(r"## Exception summary\s*\n\s*(?:<class '[^']+'>: )?(\S.*)", text)
    reason = first_line(root) if root is not exc or summary is None else first_line(
        summary.group(1))
    return reason + (f" ({where})" if where else "")


def _drop_synthetic_zero_bias(proto: onnx.ModelProto, state_names: set[str]) -> None:
    """Remove the all-zero bias the exporter invents for a bias-free Conv/Gemm, and its tensor.

    Only initializers that are not in the model's ``state_dict`` qualify: a real parameter that
    happens to be zero (VGG initialises its biases to 0) stays.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    dropped: set[str] = set()
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3:
            continue
        bias = node.input[2]
        tensor = inits.get(bias)
        if tensor is None or bias in state_names:
            continue
        if not (numpy_helper.to_array(tensor) == 0).all():
            continue
        del node.input[2]
        dropped.add(bias)
    still_used = {i for node in proto.graph.node for i in node.input}
    _remove_initializers(proto, dropped - still_used)


@contextlib.contextmanager
def _staged(target: Path, external: bool) -> Iterator[tuple[Path, Path | None]]:
    """Paths to write the model (and its external data) to; moved onto ``target`` on success.

    A small model is one file, replaced atomically (:func:`archscope._io.atomic_path`). A model
    over 2 GB is staged in a temporary directory beside ``target`` with its data file, whose name
    the model file records, so both are moved only once both are complete and checked.
    """
    if not external:
        stack = contextlib.ExitStack()
        try:  # the temporary file beside the target: a directory os.access misjudged (/proc …)
            tmp = stack.enter_context(atomic_path(target))
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
        with stack:
            yield tmp, None
        return
    data_path = target.with_name(target.name + ".data")
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        yield workdir / target.name, workdir / data_path.name
        os.replace(workdir / data_path.name, data_path)
        os.replace(workdir / target.name, target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _write(proto: onnx.ModelProto, model_file: Path, data_file: Path | None) -> None:
    import onnx

    if data_file is None:
        model_file.write_bytes(proto.SerializeToString())
        return
    onnx.save_model(
        proto, str(model_file), save_as_external_data=True, all_tensors_to_one_file=True,
        location=data_file.name, size_threshold=1024,
    )


def _check_file(model_file: Path, label: str) -> None:
    """``onnx.checker.check_model(full_check=True)``: the checker plus strict shape inference."""
    import onnx

    try:
        onnx.checker.check_model(str(model_file), full_check=True)
    except Exception as exc:
        hint = ""
        pools = ("op_type:MaxPool", "op_type:AveragePool")
        if _default_opset(onnx.load(str(model_file), load_external_data=False)) < 22 and any(
                p in str(exc) for p in pools):
            # ONNX's pooling shape rule keeps a ceil-mode window that would start in the end
            # padding until opset 22; PyTorch drops it (measured: opsets 18-21 fail, 22 passes)
            hint = ("; a ceil-mode pooling whose last window starts in the padding needs "
                    "--opset 22 or newer")
        raise ExportError(
            f"{label}: the ONNX checker rejected the export: {first_line(exc)}{hint}"
        ) from None


def _default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _latest_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _dims(shape: Sequence[int]) -> str:
    return "×".join(str(d) for d in shape)


__all__ = [
    "DEFAULT_ATOL", "DEFAULT_OPSET", "DEFAULT_RTOL", "FP32_ERROR_FACTOR", "MIN_OPSET", "ExportResult",
    "ExporterFailed", "export_onnx",
]
