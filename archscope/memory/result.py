"""What the memory model returns: a frozen timeline of one training step and its peak.

Plain data (no torch import): :func:`archscope.memory.training_memory` fills it in and the
renderers (``archscope/render/memory.py``) draw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archscope.report import TrainingPeak

#: What each byte is for, in the order breakdowns list them.
#:
#: * ``weights``: parameters (the fp32 masters under autocast) and buffers.
#: * ``weight_copies``: the 16-bit casts of the weights that autocast caches for the forward
#:   (and that backward keeps where a layer saved them).
#: * ``gradients``: the parameters' ``.grad``.
#: * ``optimizer_state``: momentum buffers, Adam moments and step counters, GradScaler's scale.
#: * ``activations``: tensors made in the forward pass that autograd saved for backward.
#: * ``temporaries``: everything else alive for a while: forward outputs nobody saved, the
#:   gradients of activations in backward, the optimizer's intermediate results.
#: * ``inputs``: the input batch and the targets.
#: * ``workspace``: cuBLAS's workspace (CUDA only), kept from the first matrix product on.
CATEGORIES = ("weights", "weight_copies", "gradients", "optimizer_state", "activations",
              "temporaries", "inputs", "workspace")

#: The parts of a step, in order. ``setup`` is what exists before the first step (the model, the
#: batch, optimizer state made at construction).
PHASES = ("setup", "zero_grad", "forward", "loss", "backward", "optimizer")


@dataclass(frozen=True)
class MemoryPoint:
    """One stretch of the step (a layer in one phase) at its highest point.

    Attributes:
        step: 1 for the first step (optimizer state appears in it), 2 for every later one.
        phase: one of :data:`PHASES`.
        layer: the module path running (``layer1.0.conv1``); ``""`` outside any module.
        total: the bytes allocated at this stretch's highest point.
        parts: those bytes by category, in :data:`CATEGORIES` order (they add up to ``total``).
        events: how many allocations and frees the stretch holds.
    """

    step: int
    phase: str
    layer: str
    total: int
    parts: tuple[int, ...]
    events: int = 1

    def breakdown(self) -> dict[str, int]:
        return dict(zip(CATEGORIES, self.parts, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "phase": self.phase, "layer": self.layer, "total": self.total,
                "breakdown": self.breakdown()}


@dataclass(frozen=True)
class TrainingMemory:
    """The memory of a training step, replayed without weights: its timeline and its peak.

    Attributes:
        model: the model's name.
        input_shape: one sample's shape (C×H×W).
        batch: the batch size.
        precision: ``fp32``, ``tf32``, ``bf16`` or ``fp16``.
        optimizer: ``sgd``, ``adamw``, ``adam`` or ``none`` (forward and backward only).
        optimizer_impl: ``fused``, ``foreach``, ``for-loop`` (``""`` without an optimizer).
        device: ``cuda`` or ``cpu``: whose behaviour (kernels, autocast policy, sizes) is
            predicted.
        peak: the highest number of bytes allocated over the first two steps, as the device
            counts them (CUDA: the caching allocator's blocks, what
            ``torch.cuda.max_memory_allocated`` reports; CPU: the tensors' bytes).
        peak_parts: the peak by category (:data:`CATEGORIES` order).
        peak_step, peak_phase, peak_layer: where the peak occurs.
        tensor_peak: the highest sum of the tensors' own sizes (no allocator rounding).
        reserved_peak: CUDA only: the most memory the caching allocator holds from the driver
            (its segments, ``torch.cuda.max_memory_reserved``); ``None`` on the CPU.
        timeline: the step as stretches (one per layer and phase), in order.
        attention: the scaled-dot-product-attention kernels the replay ran, e.g.
            ``("flash",)``; empty for a model without attention.
        notes: what the figure assumes and leaves out.
        step: ``bench`` (bench's step) or ``check`` (check's forward and backward pass).
        input_dtype: the input batch's dtype, as torch names it (``float32``, ``int64``).
    """

    model: str
    input_shape: tuple[int, ...]
    batch: int
    precision: str
    optimizer: str
    optimizer_impl: str
    device: str
    peak: int
    peak_parts: tuple[int, ...]
    peak_step: int
    peak_phase: str
    peak_layer: str
    tensor_peak: int
    reserved_peak: int | None
    timeline: tuple[MemoryPoint, ...]
    attention: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    step: str = "bench"
    input_dtype: str = "float32"

    @property
    def breakdown(self) -> dict[str, int]:
        """The peak by category."""
        return dict(zip(CATEGORIES, self.peak_parts, strict=True))

    @property
    def where(self) -> str:
        """``"backward, at layer1.0.conv1"``: the phase and layer of the peak."""
        place = f"{self.peak_phase}, at {self.peak_layer}" if self.peak_layer else self.peak_phase
        return place if self.peak_step == 2 else f"{place} (first step)"

    def step_points(self, step: int) -> tuple[MemoryPoint, ...]:
        """The timeline of one step (1 or 2), setup included in step 1."""
        return tuple(p for p in self.timeline if p.step == step)

    def as_peak(self) -> TrainingPeak:
        """The peak and its settings without the timeline: what ``summary``'s totals, ``bench``
        and ``check`` carry."""
        return TrainingPeak(
            peak=self.peak, batch=self.batch, precision=self.precision, optimizer=self.optimizer,
            optimizer_impl=self.optimizer_impl, device=self.device, step=self.step,
            where=self.where, breakdown=tuple(self.breakdown.items()),
            input_dtype=self.input_dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "input_shape": list(self.input_shape), "batch": self.batch,
            "precision": self.precision, "optimizer": self.optimizer,
            "optimizer_impl": self.optimizer_impl, "device": self.device, "step": self.step,
            "input_dtype": self.input_dtype, "peak": self.peak, "peak_step": self.peak_step,
            "peak_phase": self.peak_phase, "peak_layer": self.peak_layer, "breakdown": self.breakdown,
            "tensor_peak": self.tensor_peak, "reserved_peak": self.reserved_peak,
            "attention": list(self.attention), "notes": list(self.notes),
            "timeline": [p.to_dict() for p in self.timeline],
        }


__all__ = ["CATEGORIES", "PHASES", "MemoryPoint", "TrainingMemory"]
