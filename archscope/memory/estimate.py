"""The training-memory estimate: one formula over the engine's report, for ``bench`` and ``check``.

A training step's peak is, to first order, everything that is alive when the backward pass
starts: the parameters, their gradients, the optimizer's state, the activations autograd saved in
the forward pass, the input batch and the buffers. The engine measures the saved activations on
the meta device (:attr:`archscope.report.Report.activation_bytes`); this module adds the rest.
Pure arithmetic: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archscope.report import Report

#: Optimizer state per trainable parameter byte: none (a bare forward + backward, as ``check``
#: runs), SGD's momentum buffer, AdamW's two moments.
OPTIMIZER_STATE = {"none": 0, "sgd": 1, "adamw": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    """The engine's estimate of one training step's peak memory, with its parts (bytes).

    ``total = params + grads + optimizer_state + activations + autocast_weights + inputs +
    buffers``. ``assumptions`` says what the figure takes for granted.
    """

    params: int
    grads: int
    optimizer_state: int
    activations: int
    autocast_weights: int
    inputs: int
    buffers: int
    assumptions: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return (self.params + self.grads + self.optimizer_state + self.activations
                + self.autocast_weights + self.inputs + self.buffers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total, "params": self.params, "grads": self.grads,
            "optimizer_state": self.optimizer_state, "activations": self.activations,
            "autocast_weights": self.autocast_weights, "inputs": self.inputs,
            "buffers": self.buffers, "assumptions": list(self.assumptions),
        }


def estimate_training_memory(
    report: Report, *, precision: str = "fp32", optimizer: str = "none", input_bytes: int = 0,
    target_bytes: int = 0,
) -> MemoryEstimate:
    """Peak memory of one training step, from the engine's (fp32, meta-device) report.

    ``params + grads + optimizer state (none; SGD momentum 1×params; AdamW 2×) + saved
    activations + inputs + buffers``, where the report was traced at the benchmark's batch. The fp32 input
    images are already among the saved activations (the first layer saves them for its weight
    gradient), so only the labels/targets are added in fp32; under bf16/fp16 autocast the first
    layer saves a 16-bit copy, so the fp32 images are added too.

    Mixed precision (bf16/fp16) assumes: every saved activation is 16-bit (half of the fp32 trace;
    softmax/loss and normalisation statistics stay fp32 but are small in a CNN), and autocast keeps
    a 16-bit copy of every weight alive for backward (+½ of the parameter bytes). The estimate is
    for eager mode; ``torch.compile`` may fuse or recompute and save less.
    """
    if optimizer not in OPTIMIZER_STATE:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    if report.activation_bytes is None:
        raise ValueError("the estimate needs a traced model's activation bytes; this report has none")
    params = report.param_bytes
    trainable = getattr(report, "trainable_param_bytes", None)
    if trainable is None:  # a report without the split: take the count's share of the bytes
        trainable = params if report.total_params == 0 else (
            params * report.trainable_params // report.total_params
        )
    state = trainable * OPTIMIZER_STATE[optimizer]
    mixed = precision in ("bf16", "fp16")
    state_words = {"none": "no optimizer state", "sgd": "SGD momentum 1× params",
                   "adamw": "AdamW moments 2× params"}[optimizer]
    assumptions = [
        f"eager-mode estimate: params + grads + optimizer state ({state_words}) + activations "
        "saved for backward + inputs + buffers; allocator slack and cuDNN workspaces not "
        "included",
    ]
    if mixed:
        assumptions.append(
            f"{precision} autocast: saved activations taken as 16-bit (½ of the fp32 trace) plus a "
            "16-bit copy of the weights; fp32 master weights, grads and optimizer state"
        )
        activations = report.activation_bytes // 2
        autocast_weights = trainable // 2
        inputs = input_bytes + target_bytes
    else:
        activations = report.activation_bytes
        autocast_weights = 0
        inputs = target_bytes
    return MemoryEstimate(
        params=params, grads=trainable, optimizer_state=state, activations=activations,
        autocast_weights=autocast_weights, inputs=inputs, buffers=report.buffer_bytes,
        assumptions=tuple(assumptions),
    )


__all__ = ["OPTIMIZER_STATE", "MemoryEstimate", "estimate_training_memory"]
