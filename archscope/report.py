"""The inspection result: frozen dataclasses that every command and renderer reads.

A :class:`Report` is what :func:`archscope.inspect` returns. It holds one :class:`LayerRecord` per
module call and per functional op (``add``, ``flatten``, ``cat`` …) called directly in a container's
``forward``, in call order, plus rows without shapes for parameters no call owns (the root's own,
a module never called), and the model's totals. The records double as a data-flow graph:
``LayerRecord.inputs`` names the records that produced each input tensor, so ``diagram`` draws the
same trace that ``summary`` prints.

Both front-ends (the PyTorch tracer and the ONNX reader) fill the same typed contract: a
record's :class:`LayerFacts` speak one vocabulary (padding is one ``(begin, end)`` pair per
spatial axis from either), :class:`Kind` and :class:`Layout` are ``str``-valued enums, and every
shape comes with the index of its batch axis, recorded by the front-end rather than guessed by
the renderers.

This module imports nothing heavy: reports can be built, compared and rendered without torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from fractions import Fraction
from typing import Any

Shape = tuple[int, ...]

#: ``LayerRecord.inputs`` uses this index for the model's input tensor(s).
MODEL_INPUT = -1

#: The index of a shape's batch dimension, or ``None`` where it has none (see
#: :attr:`LayerRecord.output_batch_axes`).
BatchAxis = int | None


class Kind(str, Enum):
    """What a record is: a module call or a functional op. Compares equal to its value
    (``Kind.MODULE == "module"``), which is also what ``str()``, f-strings and JSON give."""

    MODULE = "module"
    FUNCTION = "function"

    def __str__(self) -> str:
        return str(self.value)


class Layout(str, Enum):
    """The order of the image shapes in a report: ``"chw"`` (N×C×H×W, PyTorch's) or ``"hwc"``
    (N×H×W×C, a layer spec written channels last). Compares equal to its value."""

    CHW = "chw"
    HWC = "hwc"

    def __str__(self) -> str:
        return str(self.value)


#: A padding of one spatial axis: the zeros added before and after it.
PadPair = tuple[int, int]


@dataclass(frozen=True, repr=False)
class LayerFacts:
    """A layer's hyperparameters, in one vocabulary for every front-end.

    Every field is ``None`` where it does not apply (a ReLU has no facts at all). Spatial fields
    hold one value per spatial axis, in the layer's order (``(3, 3)`` for a 3×3 kernel; a
    ``MaxPool2d(2)`` has ``kernel=(2, 2)``), whatever form the layer was written in.

    Attributes:
        kernel, stride, dilation: of a convolution or pooling window, per spatial axis.
        padding: one ``(begin, end)`` pair of zeros per spatial axis (PyTorch's ``padding=1`` on
            a 2-D conv is ``((1, 1), (1, 1))``; ONNX's ``pads=[0, 0, 1, 1]`` is
            ``((0, 1), (0, 1))``); also of a padding layer (``ZeroPad2d((1, 0, 2, 3))`` is
            ``((2, 3), (1, 0))``: H then W) and ``F.pad``, whatever values it pads with.
        padding_mode: where the padding follows a rule rather than numbers: PyTorch's
            ``"same"``/``"valid"``, ONNX's ``auto_pad`` (``"SAME_UPPER"``, ``"SAME_LOWER"``,
            ``"VALID"``); ``padding`` then holds the pairs the rule gives where they are known.
        output_padding: a transposed convolution's extra size at the end of each axis.
        groups: a convolution's groups.
        in_channels, out_channels: of a convolution.
        in_features, out_features: of a dense layer (``Linear``, ONNX ``Gemm``/``MatMul`` with
            a weight).
        bias: whether a convolution or dense layer adds a bias.
        ceil_mode: a pooling window's rounding (``True``: ceil).
        pool: ``"max"``, ``"avg"`` or ``"lp"`` for a pooling layer.
        output_size: an adaptive pool's target size per spatial axis (``None`` in an axis it
            keeps).
        num_features: the channels a BatchNorm, InstanceNorm or GroupNorm normalises.
        normalized_shape: a LayerNorm's trailing shape.
        p: a dropout's probability.
        start_dim: where a flatten starts; dim: the axis a ``cat`` joins along.
        num_embeddings, embedding_dim: an embedding table's size.
        size, alpha, beta, k: a LocalResponseNorm's window and constants.
    """

    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[PadPair, ...] | None = None
    padding_mode: str | None = None
    dilation: tuple[int, ...] | None = None
    output_padding: tuple[int, ...] | None = None
    groups: int | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    in_features: int | None = None
    out_features: int | None = None
    bias: bool | None = None
    ceil_mode: bool | None = None
    pool: str | None = None
    output_size: tuple[int | None, ...] | None = None
    num_features: int | None = None
    normalized_shape: tuple[int, ...] | None = None
    p: float | None = None
    start_dim: int | None = None
    dim: int | None = None
    num_embeddings: int | None = None
    embedding_dim: int | None = None
    size: int | None = None
    alpha: float | None = None
    beta: float | None = None
    k: float | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if getattr(self, f.name) is not None)
        return f"LayerFacts({shown})"

    def to_dict(self) -> dict[str, Any]:
        """The facts that apply, JSON-ready (tuples as lists, padding as ``[begin, end]``
        pairs); the ``hparams`` object of ``--format json``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class LayerRecord:
    """One module call or functional op, in call order.

    Attributes:
        index: position in ``Report.layers``.
        name: qualified module name (``features.0``, ``layer1.0.conv1``); for functional ops the
            container's name plus the op (``layer1.0.add``); ``""`` never appears. The root model
            is a row only in two cases: a model without child modules (a bare ``nn.Conv2d``) is
            one row named after its class (``Conv2d``), and the parameters a container root holds
            itself (or reads from a child it never calls) are a shape-less row named after its
            class in parentheses (``(Net)``), last.
        type: module class name (``Conv2d``) or op name (``add``, ``flatten``, ``cat``).
        kind: :attr:`Kind.MODULE` or :attr:`Kind.FUNCTION` (equal to ``"module"`` /
            ``"function"``).
        depth: 1 for the root's children, +1 per level; functional ops sit one level below the
            container that called them.
        parent: index of the enclosing container's record, or ``None`` at depth 1. A module
            never called has a shape-less row right after the subtree of its nearest called
            ancestor, whose index is its ``parent`` (``None`` and depth 1 where no ancestor below
            the root was called).
        is_leaf: ``True`` for modules without child modules and for functional ops.
        input_shapes / output_shapes: shapes of every tensor going in / coming out (tuple, list and
            dict outputs are flattened in order), batch dimension included.
        input_batch_axes / output_batch_axes: for each of those shapes, the index of its batch
            dimension, or ``None`` where it has none (the batch folded into another dimension,
            ``x.reshape(-1, 16)``; a tensor about shapes; a sum over the batch). Recorded by the
            front-end: the axis whose size follows the batch when the model is traced at
            another batch size (see :mod:`archscope.engine.batch_axes`). An LSTM's ``h_n``
            ``(1, 4, 20)`` has its batch at 1.
        output_keys: for dict outputs, the key of each output tensor; else empty.
        params: parameters this row owns and counts: its own direct parameters (not its children's),
            minus any already counted by an earlier row (tied weights, repeated calls), plus those
            of a child never called as a module that this call's forward reads directly
            (``nn.MultiheadAttention`` counts its ``out_proj``, as torchinfo does). Rows always add
            up to ``Report.total_params``.
        trainable_params: the part of ``params`` with ``requires_grad``.
        param_formula: the arithmetic giving ``params``, e.g. ``(3·3·32+1)·64``; evaluates with
            :func:`evaluate_formula`. ``""`` when ``params`` is 0 and there is nothing to show.
        output_formula: output-size arithmetic for conv/pool layers, e.g.
            ``(150−3)/1+1 = 148``, one expression per axis where they differ
            (``H: (32−3)/1+1 = 30; W: (20−3)/1+1 = 18``), or words for ``padding='same'``
            (``padding='same' keeps 13×6``); ``""`` elsewhere.
        macs: multiply-accumulates of this call (containers: everything inside the call), from
            ``torch.utils.flop_counter`` (FLOPs / 2), batch included.
        call: 0 for a module's first call, 1 for its second …
        shared_with: for a repeated call or tied weights, the name of the row that counts them.
        facts: the layer's hyperparameters (:class:`LayerFacts`: kernel, stride, padding pairs,
            channels or features …), empty for layers without any.
        inputs: for each input tensor, the index of the record that produced it, or
            :data:`MODEL_INPUT`. Only leaf records and functional ops are producers; a container's
            output is the output of the leaf inside it.
    """

    index: int
    name: str
    type: str
    kind: Kind
    depth: int
    parent: int | None
    is_leaf: bool
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    params: int
    trainable_params: int
    param_formula: str
    output_formula: str
    macs: int
    input_batch_axes: tuple[BatchAxis, ...]
    output_batch_axes: tuple[BatchAxis, ...]
    call: int = 0
    shared_with: str | None = None
    output_keys: tuple[str, ...] = ()
    facts: LayerFacts = field(default_factory=LayerFacts)
    inputs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        for shapes, axes, what in ((self.input_shapes, self.input_batch_axes, "input"),
                                   (self.output_shapes, self.output_batch_axes, "output")):
            if len(axes) != len(shapes):
                raise ValueError(f"{self.name}: {len(shapes)} {what} shapes but {len(axes)} "
                                 f"batch axes; give one axis (or None) per shape")

    @property
    def output_shape(self) -> Shape | None:
        """The first output's shape (most layers have exactly one)."""
        return self.output_shapes[0] if self.output_shapes else None

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params


@dataclass(frozen=True)
class TrainingPeak:
    """The peak memory of one training step, as ``archscope memory`` predicts it: the totals'
    "Training memory peak" line, and the estimate ``bench`` and ``check`` show.

    Made by :mod:`archscope.memory` (the replay of the step on the meta device); plain data here.

    Attributes:
        peak: the peak in bytes, as ``device`` counts them (CUDA: the caching allocator's blocks,
            what ``torch.cuda.max_memory_allocated`` reports; CPU: the tensors' bytes); ``None``
            where it could not be predicted (``reason`` says why).
        batch: the batch of the step.
        precision: ``fp32``, ``tf32``, ``bf16`` or ``fp16``.
        optimizer: ``sgd``, ``adamw``, ``adam`` or ``none``; ``optimizer_impl``: ``fused``,
            ``foreach``, ``for-loop`` (``""`` without one).
        device: ``cuda`` or ``cpu``: whose kernels and byte counting the figure follows.
        step: ``bench`` (bench's step: targets, cross-entropy/MSE) or ``check`` (check's
            forward and backward pass).
        where: the phase and layer of the peak (``"backward, at layer4.2.relu"``).
        breakdown: (category, bytes) at the peak, in :data:`archscope.memory.CATEGORIES` order.
        reason: why there is no figure (an ONNX file; a step that could not be replayed), else
            ``""``.
        input_dtype: the input batch's dtype, as torch names it (``float32``; ``int64`` for
            token ids, ``--dtype long``); ``None`` without a figure.
    """

    peak: int | None
    batch: int
    precision: str = "fp32"
    optimizer: str = "sgd"
    optimizer_impl: str = ""
    device: str = "cuda"
    step: str = "bench"
    where: str = ""
    breakdown: tuple[tuple[str, int], ...] = ()
    reason: str = ""
    input_dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``training_memory`` object of ``--format json`` (docs/summary.md)."""
        return {"peak": self.peak, "batch": self.batch, "precision": self.precision,
                "optimizer": self.optimizer, "optimizer_impl": self.optimizer_impl,
                "device": self.device, "step": self.step, "input_dtype": self.input_dtype,
                "where": self.where, "breakdown": dict(self.breakdown), "reason": self.reason}


@dataclass(frozen=True)
class Report:
    """Everything archscope knows about one model at one input size.

    Attributes:
        model: the name the model was asked for (zoo name, file reference, spec …).
        model_type: the root module's class name.
        input_shape: one sample's input shape, without the batch dimension, in ``layout``'s order.
        batch: the batch size traced.
        total_params: unique parameters (``sum(p.numel() for p in model.parameters())``).
        trainable_params / non_trainable_params: split of the total by ``requires_grad``.
        total_macs: multiply-accumulates of one forward pass of the whole batch.
        forward_flops / backward_flops: FLOPs of the forward pass and (when traced with
            ``backward=True``) of the backward pass, for the whole batch; ``backward_flops`` is
            ``None`` when not traced.
        param_bytes: bytes of all parameters.
        trainable_param_bytes: bytes of the parameters with ``requires_grad`` (the ones that get
            gradients and optimizer state; differs from the count's share of ``param_bytes`` when
            a frozen part is stored in another dtype).
        buffer_bytes: bytes of all buffers (BatchNorm running statistics …).
        activation_bytes: bytes of the tensors autograd keeps for backward in one training step
            (measured with ``torch.autograd.graph.saved_tensors_hooks``; parameters excluded);
            ``None`` when unknown (an ONNX file records nothing autograd would save).
        output_shapes: shapes of the model's outputs.
        output_batch_axes: the batch axis of each output shape, or ``None`` (see
            :attr:`LayerRecord.output_batch_axes`). The model input's batch axis is always 0.
        outputs: producer record index of each model output (see ``LayerRecord.inputs``).
        layers: every record in call order (a shape-less row for parameters no call owns
            follows its nearest called ancestor's subtree; see ``LayerRecord.parent``).
        notes: caveats found while tracing (e.g. traced in eval mode).
        output_keys: for a model returning a dict, the key of each output; for an ONNX file with
            several outputs, each output's graph name; else empty.
        layout: the order of every image shape in the report (a :class:`Layout`):
            ``"chw"`` (C×H×W, N×C×H×W with the batch; PyTorch's order and the default) or
            ``"hwc"`` (H×W×C, N×H×W×C: a layer spec written that way, re-ordered by
            :func:`archscope.spec.to_layout`). Only the shapes move; counts, MACs and formulas
            are the same.
        training_memory: the peak memory of a training step at ``batch`` (:class:`TrainingPeak`,
            predicted by :mod:`archscope.memory`), where it was asked for (``summary`` and
            ``calc`` ask; ``load_report(memory=True)``), else ``None``.
    """

    model: str
    model_type: str
    input_shape: Shape
    batch: int
    total_params: int
    trainable_params: int
    non_trainable_params: int
    total_macs: int
    forward_flops: int
    backward_flops: int | None
    param_bytes: int
    trainable_param_bytes: int
    buffer_bytes: int
    activation_bytes: int | None
    output_shapes: tuple[Shape, ...]
    output_batch_axes: tuple[BatchAxis, ...]
    outputs: tuple[int, ...]
    layers: tuple[LayerRecord, ...]
    notes: tuple[str, ...] = ()
    output_keys: tuple[str, ...] = ()
    layout: Layout = Layout.CHW
    training_memory: TrainingPeak | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", Layout(self.layout))
        if len(self.output_batch_axes) != len(self.output_shapes):
            raise ValueError(f"{len(self.output_shapes)} output shapes but "
                             f"{len(self.output_batch_axes)} batch axes")

    @property
    def macs_per_sample(self) -> int:
        return self.total_macs // max(self.batch, 1)

    @property
    def training_flops(self) -> int | None:
        """Forward + backward FLOPs of one training step, or ``None`` without a backward trace."""
        if self.backward_flops is None:
            return None
        return self.forward_flops + self.backward_flops

    def leaves(self) -> list[LayerRecord]:
        """Leaf modules and functional ops, in call order."""
        return [r for r in self.layers if r.is_leaf]

    def children(self, index: int | None) -> list[LayerRecord]:
        """Records whose parent is ``index`` (``None``: the top level)."""
        return [r for r in self.layers if r.parent == index]

    def find(self, name: str) -> LayerRecord:
        """The first record called ``name``."""
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the documented, stable keys (see docs/summary.md)."""
        return {
            "model": self.model,
            "model_type": self.model_type,
            "input_shape": list(self.input_shape),
            "layout": self.layout.value,
            "batch": self.batch,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_macs": self.total_macs,
            "macs_per_sample": self.macs_per_sample,
            "forward_flops": self.forward_flops,
            "backward_flops": self.backward_flops,
            "param_bytes": self.param_bytes,
            "trainable_param_bytes": self.trainable_param_bytes,
            "buffer_bytes": self.buffer_bytes,
            "activation_bytes": self.activation_bytes,
            "training_memory": (self.training_memory.to_dict()
                                if self.training_memory is not None else None),
            "output_shapes": [list(s) for s in self.output_shapes],
            "output_batch_axes": list(self.output_batch_axes),
            "output_keys": list(self.output_keys),
            "notes": list(self.notes),
            "layers": [
                {
                    "index": r.index,
                    "name": r.name,
                    "type": r.type,
                    "kind": r.kind.value,
                    "depth": r.depth,
                    "parent": r.parent,
                    "is_leaf": r.is_leaf,
                    "input_shapes": [list(s) for s in r.input_shapes],
                    "input_batch_axes": list(r.input_batch_axes),
                    "output_shape": list(r.output_shape) if r.output_shape is not None else None,
                    "output_shapes": [list(s) for s in r.output_shapes],
                    "output_batch_axes": list(r.output_batch_axes),
                    "params": r.params,
                    "trainable": r.trainable_params,
                    "param_formula": r.param_formula,
                    "output_formula": r.output_formula,
                    "macs": r.macs,
                    "call": r.call,
                    "shared_with": r.shared_with,
                    "hparams": r.facts.to_dict(),
                    "inputs": list(r.inputs),
                }
                for r in self.layers
            ],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def evaluate_formula(formula: str) -> int:
    """Evaluate a formula such as ``(3·3·32+1)·64`` or ``64·32·3·3 + 64`` exactly.

    Every ``param_formula`` evaluates. Only integers, ``+ − · × * /``, parentheses and the floor
    ``⌊…⌋`` and ceiling ``⌈…⌉`` brackets of output sizes are allowed; division is exact
    (``96/2``). An empty formula is 0. Of an ``output_formula``, the expression before `` = ``
    evaluates (``⌈(3+2·1−2)/2⌉+1−1``); a per-axis one (``H: … = 30; W: … = 18``) is split at
    ``; `` and its ``H: `` labels removed first, and ``padding='same' keeps 13×6`` is words,
    not arithmetic.
    """
    text = formula.replace("·", "*").replace("×", "*").replace("−", "-").replace(" ", "")
    if not text:
        return 0
    value, pos = _parse_sum(text, 0)
    if pos != len(text):
        raise ValueError(f"cannot evaluate formula {formula!r} at position {pos}")
    if value.denominator != 1:
        raise ValueError(f"formula {formula!r} is not an integer: {value}")
    return int(value)


def _parse_sum(s: str, i: int) -> tuple[Fraction, int]:
    value, i = _parse_product(s, i)
    while i < len(s) and s[i] in "+-":
        op = s[i]
        rhs, i = _parse_product(s, i + 1)
        value = value + rhs if op == "+" else value - rhs
    return value, i


def _parse_product(s: str, i: int) -> tuple[Fraction, int]:
    value, i = _parse_atom(s, i)
    while i < len(s) and s[i] in "*/":
        op = s[i]
        rhs, i = _parse_atom(s, i + 1)
        value = value * rhs if op == "*" else value / rhs
    return value, i


_BRACKETS = {"(": ")", "⌊": "⌋", "⌈": "⌉"}


def _parse_atom(s: str, i: int) -> tuple[Fraction, int]:
    if i < len(s) and s[i] in _BRACKETS:
        value, j = _parse_sum(s, i + 1)
        if j >= len(s) or s[j] != _BRACKETS[s[i]]:
            raise ValueError(f"unbalanced {s[i]!r} in {s!r}")
        if s[i] == "⌊":
            value = Fraction(math.floor(value))
        elif s[i] == "⌈":
            value = Fraction(math.ceil(value))
        return value, j + 1
    j = i
    while j < len(s) and s[j].isdigit():
        j += 1
    if j == i:
        raise ValueError(f"expected a number at position {i} of {s!r}")
    return Fraction(int(s[i:j])), j


__all__ = ["MODEL_INPUT", "BatchAxis", "Kind", "LayerFacts", "LayerRecord", "Layout", "PadPair",
           "Report", "Shape", "TrainingPeak", "asdict", "evaluate_formula"]
