"""The training memory ``summary`` and ``calc`` show: the peak of one step, and what fits nowhere.

Every command gives one answer: the "Training memory peak" line of the totals is
:func:`archscope.memory.training_memory` for the step :data:`SUMMARY_STEP` describes, the step
``archscope memory MODEL`` predicts without options (fp32, SGD with momentum 0.9 in bench's
fused implementation, the CUDA caching allocator's bytes on a Hopper-class GPU, the summary's
batch). The replay reuses the model the summary traced (one build).

A figure that no device in :data:`archscope.devices.DEVICES` could hold gets a note: the
parameters alone (against each device's whole memory) or the training peak (against what is
left after :func:`archscope.memory.fit.headroom`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from archscope.errors import ArchscopeError
from archscope.report import TrainingPeak

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from torch import nn

    from archscope.report import Report

#: The step the totals' line predicts: ``archscope memory``'s defaults.
SUMMARY_STEP: dict[str, Any] = {"precision": "fp32", "optimizer": "sgd", "device": "cuda"}

#: Why an ONNX file has no training-memory line.
ONNX_REASON = "an ONNX file has no PyTorch model to replay"


def predict_peak(model: nn.Module, input_shape: Sequence[int], *, batch: int,
                 name: str | None = None, precision: str = "fp32", optimizer: str = "sgd",
                 device: str = "cuda", gpu: str | None = None, step: str = "bench",
                 channels_last: bool = False,
                 input_dtype: torch.dtype | str | None = None) -> TrainingPeak:
    """:func:`archscope.memory.training_memory` reduced to its peak (:class:`TrainingPeak`).

    A step that cannot be replayed (a forward that reads tensor values …) is not an error here:
    the result has no figure and says why (``reason``), so the command that asked still shows
    everything else.
    """
    from archscope.memory.predict import training_memory

    try:
        result = training_memory(model, input_shape, batch=batch, precision=precision,
                                 optimizer=optimizer, device=device, gpu=gpu, name=name,
                                 step=step, channels_last=channels_last,
                                 input_dtype=input_dtype)
    except ArchscopeError as exc:
        return TrainingPeak(peak=None, batch=batch, precision=precision, optimizer=optimizer,
                            device=device, step=step,
                            reason=f"the step could not be replayed: {exc}")
    return result.as_peak()


def with_training_memory(report: Report, model: nn.Module | None, *,
                         input_dtype: torch.dtype | str | None = None) -> Report:
    """``report`` with the training-memory peak of ``model`` at the report's batch and input
    (:data:`SUMMARY_STEP`, the input in ``input_dtype``: ``None`` for the model's float dtype,
    ``torch.long`` for token ids) and the notes of :func:`device_notes`; ``model=None`` (an ONNX
    file) gets no figure and the reason.

    The report's input shape must be ``model``'s (C×H×W): call it before a layer spec's
    shapes are put in H×W×C order.
    """
    if model is None:
        peak = TrainingPeak(peak=None, batch=report.batch, reason=ONNX_REASON)
    else:
        peak = predict_peak(model, report.input_shape, batch=report.batch, name=report.model,
                            input_dtype=input_dtype, **SUMMARY_STEP)
    report = replace(report, training_memory=peak)
    why = ((f"training memory peak unknown: {peak.reason}",)
           if peak.peak is None and model is not None else ())
    return replace(report, notes=(*report.notes, *why, *device_notes(report)))


def device_notes(report: Report) -> tuple[str, ...]:
    """A note where the parameters, or else the training peak, fit none of the known GPUs."""
    from archscope.devices import DEVICES
    from archscope.memory.fit import fitting_devices
    from archscope.render.units import human_bytes

    sized = [d for d in DEVICES if d.memory_bytes is not None]
    if not sized:
        return ()
    largest = max(sized, key=lambda d: d.memory_bytes or 0)
    biggest = f"the largest, {largest.key}, has {largest.memory_gb:g} GB"
    if all(report.param_bytes > (d.memory_bytes or 0) for d in sized):
        return (f"the parameters alone ({human_bytes(report.param_bytes)}) are more than the "
                f"memory of every GPU archscope knows ({biggest}): this network fits none of "
                "them; use a smaller input or fewer features before the first dense layer",)
    peak = report.training_memory
    if peak is not None and peak.peak is not None and not fitting_devices(peak.peak):
        return (f"the training memory peak ({human_bytes(peak.peak)} at batch {peak.batch:,}) "
                f"fits none of the GPUs archscope knows ({biggest}, less 1 GiB and 5% of "
                "headroom): use a smaller batch or input (archscope memory --fit finds the "
                "batch)",)
    return ()


__all__ = ["ONNX_REASON", "SUMMARY_STEP", "device_notes", "predict_peak",
           "with_training_memory"]
