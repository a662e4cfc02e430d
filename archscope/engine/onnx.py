"""The ONNX front-end: graph nodes become the same :class:`~archscope.report.Report` a PyTorch
model gives, so ``summary`` prints it and ``diagram`` draws it.

An ONNX file may come from any framework, so nothing here assumes archscope made it:

- every node except ``Constant`` and those that only pass a weight on is one row (``type`` is
  the op type; ``name`` the PyTorch module's where the initializers it reads carry it, else the
  node's own: :mod:`archscope.engine.onnx_weights`);
- output shapes come from :func:`onnx.shape_inference.infer_shapes`;
- a node's parameters are the floating-point initializers of rank ≥ 1 and the floating-point
  Constant values of two or more elements that it consumes (scalars and integer tensors such as
  Reshape shapes or pads are constants, not parameters: see
  :mod:`archscope.engine.onnx_weights`); a weight consumed by several nodes counts once, on
  the first; BatchNormalization's running mean and variance are buffers (as in PyTorch), not
  parameters;
- parameter formulas are :mod:`archscope.formulas`' lecture convention: Conv
  ``(kh·kw·c_in/groups+1)·c_out``, Gemm and MatMul ``(in+1)·out`` (``in·out`` without a bias),
  BatchNormalization ``2·C``, any other node the sum of its initializers' shape products
  (``64·32·3·3 + 64``);
- each layer's facts (:class:`~archscope.report.LayerFacts`) speak PyTorch's vocabulary: ONNX's
  ``pads`` become one ``(begin, end)`` pair per axis, ``group`` is ``groups``, a Gemm's weight
  gives ``in_features``/``out_features``;
- each shape's batch axis is the dimension that follows the batch when a symbolic batch is given
  another value (shape inference runs a second time, only where a shape alone does not say; see
  :mod:`archscope.engine.batch_axes`); a file that fixes its batch is read from sizes alone;
- MACs are computed from the shapes for Conv, ConvTranspose, Gemm and MatMul only (batch
  included); other ops count 0. (For PyTorch models MACs come from ``torch.utils.flop_counter``;
  an ONNX graph has no such counter.)

Options apply as they do to a PyTorch model, or fail with a one-line error; none is ignored:
``batch`` and ``input_shape`` give symbolic input dimensions numbers and must agree with fixed
ones, and ``freeze`` marks initializers as non-trainable by the prefix rule of
:func:`archscope.freeze.freeze_parameters`. After shape inference, nodes whose shapes contradict
each other (a Reshape that changes the element count, a Conv, Gemm or MatMul whose input does not
fit its weight, an empty output) raise an error naming the node: ONNX's shape inference (in its
lenient mode) does not check them, and would let an impossible network through.

The model is loaded with :mod:`onnx` only; onnxruntime and torch are not needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope import formulas
from archscope.engine.batch_axes import (
    SHAPE_OPS,
    axis_between,
    guess_batch_axis,
    needs_second_trace,
    other_batch,
    settled_axis,
)
from archscope.engine.onnx_shapes import (
    POOL_OPS,
    check_shapes,
    fix_input_dims,
    infer_shapes,
    strip_weights,
    symbolic_batch,
)
from archscope.engine.onnx_weights import (
    Tensor,
    constant_tensors,
    is_parameter,
    is_pass_on,
    module_names,
    row_names,
    weight_aliases,
)
from archscope.errors import ArchscopeError, ModelSourceError, first_line
from archscope.report import (
    MODEL_INPUT,
    BatchAxis,
    Kind,
    LayerFacts,
    LayerRecord,
    PadPair,
    Report,
    Shape,
)

if TYPE_CHECKING:
    import onnx

#: op type → input positions that are state (buffers), not parameters.
_BUFFER_INPUTS = {"BatchNormalization": (3, 4)}

_POOL_KIND = {"MaxPool": "max", "AveragePool": "avg", "LpPool": "lp"}


@dataclass
class _Row:
    """One node as a row, before its batch axes are known."""

    name: str
    op: str
    data_inputs: list[str]
    outputs: list[str]
    in_shapes: tuple[Shape, ...]
    out_shapes: tuple[Shape, ...]
    params: list[str]  # the weights (initializers, Constant values) this row counts
    formula: str
    output_formula: str
    macs: int
    shared_with: str | None
    facts: LayerFacts
    inputs: tuple[int, ...]


def inspect_onnx(
    path: str | os.PathLike[str],
    *,
    batch: int | None = None,
    input_shape: Sequence[int] | None = None,
    freeze: Sequence[str] = (),
    name: str | None = None,
) -> Report:
    """Read the ONNX file at ``path`` and return its :class:`Report`.

    Args:
        path: a ``.onnx`` file (external data files beside it are read too).
        batch: the value given to a symbolic batch dimension (an input's first dim that has a name
            such as ``batch`` instead of a number). ``None``: the file's fixed batch, or 1 for a
            symbolic one. A number other than a fixed batch is an error (a file exported with a
            fixed batch cannot be inspected at another).
        input_shape: C×H×W for the first graph input, without the batch dimension; needed when
            those dimensions are symbolic. Only symbolic dimensions can be set: a number that
            contradicts a fixed dimension is an error.
        freeze: parameter-name prefixes to mark non-trainable, as ``summary --freeze``: a prefix
            matches whole components of initializer names (``features`` freezes
            ``features.conv1.weight``, not ``features_extra.weight``); ``""`` or ``"*"`` freezes
            all.
        name: the report's ``model`` (default: the path as given).

    Raises:
        ModelSourceError: the file is missing or is not a valid ONNX model, or a ``freeze``
            prefix matches no parameter.
        InputShapeError: ``input_shape`` has the wrong rank or contradicts a fixed dimension,
            ``batch`` contradicts a fixed batch, or a dimension stays symbolic.
        ForwardError: shape inference gives a node shapes that contradict each other (names the
            node).
        InputTooSmallError: the input shrinks to nothing at a node (names the node).
    """
    model = _load(path)
    initializers = {t.name: Tensor(tuple(t.dims), t.data_type) for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise ModelSourceError(f"{path}: the ONNX graph has no inputs; nothing to inspect")
    strip_weights(model)
    pristine = _copy(model) if symbolic_batch(inputs[0]) else None
    fix_input_dims(model, inputs, batch, input_shape, path)
    shapes = _shapes(model, path)
    graph = model.graph

    # Constant nodes are not rows, nor the nodes that only pass a weight on (an Identity of an
    # initializer, the Transpose of a weight): see archscope.engine.onnx_weights.
    tensors = {**constant_tensors(graph.node), **initializers}
    alias = weight_aliases(graph.node, tensors)
    nodes = [n for n in graph.node if n.op_type != "Constant" and not is_pass_on(n, alias)]
    modules = module_names(nodes, alias, set(initializers))
    names = row_names([(n.name, n.op_type, m) for n, m in zip(nodes, modules, strict=True)])
    check_shapes(nodes, names, alias, shapes, path)
    rows, counted, buffers = _rows(nodes, names, alias, tensors, shapes,
                                   [i.name for i in inputs])

    first = shapes.get(inputs[0].name, ())
    traced_batch = first[0] if first else (batch or 1)
    out_names = [o.name for o in graph.output]
    tensor_names = [*(t for r in rows for t in (*r.data_inputs, *r.outputs)), *out_names]
    second = needs_second_trace([shapes.get(t, ()) for t in tensor_names], traced_batch)
    # a symbolic batch can take another value: shape inference at it tells the batch axis
    again = (_shapes_at(pristine, other_batch(traced_batch), input_shape, initializers, path)
             if second and pristine is not None else None)
    axis = _axes(rows, shapes, again, traced_batch, {i.name for i in inputs}, settled=not second)

    frozen: set[str] = set()
    if freeze:
        from archscope.freeze import frozen_names

        # a folded Constant weight has no name of its own: it is its module's weight
        module_of = dict(zip(names, modules, strict=True))
        known = {w: w if w in initializers or module_of[row] is None
                 else f"{module_of[row]}.weight" for w, row in counted.items()}
        hits = frozen_names(list(known.values()), freeze, str(path))
        frozen = {w for w, name in known.items() if name in hits}
    records = tuple(
        LayerRecord(
            index=index, name=r.name, type=r.op, kind=Kind.MODULE, depth=1, parent=None,
            is_leaf=True, input_shapes=r.in_shapes, output_shapes=r.out_shapes,
            params=sum(tensors[n].numel for n in r.params),
            trainable_params=sum(tensors[n].numel for n in r.params if n not in frozen),
            param_formula=r.formula, output_formula=r.output_formula, macs=r.macs,
            input_batch_axes=tuple(axis(t) for t in r.data_inputs),
            output_batch_axes=tuple(axis(t) for t in r.outputs),
            shared_with=r.shared_with, facts=r.facts, inputs=r.inputs,
        )
        for index, r in enumerate(rows)
    )
    total = sum(r.params for r in records)
    trainable_total = sum(r.trainable_params for r in records)
    total_macs = sum(r.macs for r in records)
    producer = {o: index for index, r in enumerate(rows) for o in r.outputs}
    notes = [
        "ONNX file: MACs computed from shapes for Conv, ConvTranspose, Gemm and MatMul only",
        "ONNX file: training activation memory is unknown (a graph file records nothing that "
        "autograd would save)",
    ]
    if len(inputs) > 1:
        notes.append(f"ONNX file has {len(inputs)} inputs; input_shape is the first's")
    folded = sum(tensors[n].numel for n in counted if tensors[n].constant)
    if folded:
        notes.append(
            f"ONNX file: {folded:,} of the parameters are held in Constant nodes (weights the "
            "exporter folded, such as the transposed weight of a Linear applied to a ≥3-D "
            "input); they are counted in the rows that read them")
    return Report(
        model=name if name is not None else str(path),
        model_type=graph.name or "ONNX graph",
        input_shape=tuple(first[1:]),
        batch=traced_batch,
        total_params=total,
        trainable_params=trainable_total,
        non_trainable_params=total - trainable_total,
        total_macs=total_macs,
        forward_flops=2 * total_macs,
        backward_flops=None,
        param_bytes=sum(tensors[n].nbytes for n in counted),
        trainable_param_bytes=sum(tensors[n].nbytes for n in counted if n not in frozen),
        buffer_bytes=sum(tensors[n].nbytes for n in buffers if n not in counted),
        activation_bytes=None,
        output_shapes=tuple(shapes.get(n, ()) for n in out_names),
        output_batch_axes=tuple(axis(n) for n in out_names),
        outputs=tuple(producer.get(n, MODEL_INPUT) for n in out_names),
        layers=records,
        notes=tuple(notes),
        # several outputs are told apart by their graph names (archscope's export keeps dict keys)
        output_keys=tuple(out_names) if len(out_names) > 1 else (),
    )


def _rows(nodes: Sequence[Any], names: Sequence[str], alias: dict[str, str],
          tensors: dict[str, Tensor], shapes: dict[str, Shape], input_names: list[str]
          ) -> tuple[list[_Row], dict[str, str], set[str]]:
    """A row per node; the weights counted as parameters (name → the row counting it) and the
    initializers that are buffers."""
    import onnx

    producer: dict[str, int] = dict.fromkeys(input_names, MODEL_INPUT)
    counted: dict[str, str] = {}  # weight name → the row that counted it
    buffers: set[str] = set()
    rows: list[_Row] = []
    for index, (node, node_name) in enumerate(zip(nodes, names, strict=True)):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        own: list[tuple[int, str]] = []  # (input position, weight name) counted here
        shared_with: str | None = None
        buffer_positions = _BUFFER_INPUTS.get(node.op_type, ())
        for pos, input_name in enumerate(node.input):
            tensor_name = alias.get(input_name, input_name)
            if not is_parameter(node.op_type, pos, tensors.get(tensor_name)):
                continue
            if pos in buffer_positions:
                buffers.add(tensor_name)
                continue
            if tensor_name in counted:
                shared_with = shared_with or counted[tensor_name]
                continue
            counted[tensor_name] = node_name
            own.append((pos, tensor_name))
        params = sum(tensors[n].numel for _, n in own)
        weights = {t for t in node.input if t in alias}  # initializers, constants, what passes
        data_inputs = [t for t in node.input if t and t not in weights]
        outputs = [o for o in node.output if o]
        in_shapes = tuple(shapes.get(t, ()) for t in data_inputs)
        out_shapes = tuple(shapes.get(o, ()) for o in outputs)
        # a weight's shape where the node reads it (after a Transpose that passed it on)
        read = {pos: shapes.get(t) or tensors[alias[t]].shape
                for pos, t in enumerate(node.input) if t in alias}
        dense_weight = any(pos == 1 for pos, _ in own) or (
            len(node.input) > 1 and is_parameter(node.op_type, 1,
                                                 tensors.get(alias.get(node.input[1], ""))))
        facts = _facts(node.op_type, attrs, node.input, shapes, dense_weight, in_shapes,
                       out_shapes)
        rows.append(_Row(
            name=node_name, op=node.op_type, data_inputs=data_inputs, outputs=outputs,
            in_shapes=in_shapes, out_shapes=out_shapes, params=[n for _, n in own],
            formula=(_param_formula(node.op_type, attrs, [(pos, read[pos]) for pos, _ in own])
                     if params else ""),
            output_formula=_output_formula(node.op_type, attrs, facts, in_shapes, out_shapes),
            macs=_macs(node.op_type, attrs, node.input, shapes, out_shapes),
            shared_with=shared_with, facts=facts,
            inputs=tuple(producer.get(t, MODEL_INPUT) for t in data_inputs),
        ))
        for o in outputs:
            producer[o] = index
    return rows, counted, buffers


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _shapes(model: onnx.ModelProto, path: str | os.PathLike[str]) -> dict[str, Shape]:
    """Every tensor's shape, inferred afresh from the (numbered) inputs."""
    # Shapes recorded in the file may keep the symbolic batch; infer them afresh from the inputs.
    del model.graph.value_info[:]
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    return infer_shapes(model, path)


def _shapes_at(model: onnx.ModelProto, batch: int, input_shape: Sequence[int] | None,
               initializers: dict[str, Tensor], path: str | os.PathLike[str]
               ) -> dict[str, Shape] | None:
    """Every tensor's shape with the symbolic batch set to ``batch``, or ``None`` where the graph
    does not take that batch."""
    inputs = [i for i in model.graph.input if i.name not in initializers]
    try:
        fix_input_dims(model, inputs, batch, input_shape, path)
        return _shapes(model, path)
    except ArchscopeError:
        return None


def _axes(rows: list[_Row], shapes: dict[str, Shape], again: dict[str, Shape] | None,
          batch: int, input_names: set[str], *, settled: bool) -> Callable[[str], BatchAxis]:
    """Each tensor's batch axis: where every shape is ``settled``, what its sizes say; else the
    dimension that follows the batch to ``again`` (the shapes at another batch), guessed from
    sizes where ``again`` cannot tell (see :mod:`archscope.engine.batch_axes`)."""
    made_by = {o: r for r in rows for o in r.outputs}

    def axis(t: str) -> BatchAxis:
        shape = shapes.get(t, ())
        if settled:
            return settled_axis(shape, batch)
        other = again.get(t) if again is not None else None
        if other is not None and len(other) == len(shape):
            return axis_between(shape, other, batch, other_batch(batch))
        row = made_by.get(t)
        if row is None:
            return guess_batch_axis(shape, batch, None if t in input_names else ())
        return guess_batch_axis(shape, batch, row.in_shapes, row.op.lower() in SHAPE_OPS)

    return axis


def _load(path: str | os.PathLike[str]) -> onnx.ModelProto:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelSourceError(f"ONNX file {str(path)!r} not found; check the path")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf DecodeError, missing external data …
        raise ModelSourceError(
            f"{path}: not a readable ONNX model ({first_line(exc)}); export it again or check "
            "that its external data files sit beside it"
        ) from None
    if not model.graph.node:
        raise ModelSourceError(f"{path}: the ONNX graph has no nodes; is it an ONNX model file?")
    return model


def _param_formula(op: str, attrs: dict[str, Any], own: list[tuple[int, Shape]]) -> str:
    """The lecture formula (:mod:`archscope.formulas`) for Conv/Gemm/MatMul/BatchNormalization
    whose weights (input position → shape as the node reads it) fit it, else the sum of the
    weights' shape products."""
    by_pos = dict(own)
    weight = by_pos.get(1)
    bias = by_pos.get(2)
    if op == "Conv" and weight is not None and len(weight) >= 3 and set(by_pos) <= {1, 2}:
        c_out, c_in_per_group, *kernel = weight
        groups = int(attrs.get("group", 1))
        if bias is None or bias == (c_out,):
            return formulas.conv_params(c_in_per_group * groups, c_out, kernel, groups,
                                        bias is not None)[1]
    is_dense = op in ("Gemm", "MatMul") and weight is not None and len(weight) == 2
    if is_dense and weight is not None and set(by_pos) <= {1, 2}:
        n_in, n_out = weight[::-1] if op == "Gemm" and attrs.get("transB", 0) else weight
        if bias is None or prod(bias) == n_out:
            return formulas.linear_params(n_in, n_out, bias is not None)[1]
    scale = by_pos.get(1)
    if op == "BatchNormalization" and set(by_pos) == {1, 2} and scale == bias \
            and scale is not None and len(scale) == 1:
        return formulas.norm_params(scale[0])[1]
    return formulas.shapes_params([shape for _, shape in own])[1]


def _kernel(op: str, attrs: dict[str, Any], node_inputs: Sequence[str],
            shapes: dict[str, Shape]) -> tuple[int, ...] | None:
    if "kernel_shape" in attrs:
        return tuple(int(k) for k in attrs["kernel_shape"])
    if op in ("Conv", "ConvTranspose") and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        if w and len(w) >= 3:
            return tuple(w[2:])
    return None


def _facts(op: str, attrs: dict[str, Any], node_inputs: Sequence[str], shapes: dict[str, Shape],
           dense_weight: bool, in_shapes: tuple[Shape, ...],
           out_shapes: tuple[Shape, ...]) -> LayerFacts:
    """A node's :class:`LayerFacts`, in PyTorch's vocabulary (``dense_weight``: a Gemm's or
    MatMul's second input is a weight)."""
    facts: dict[str, Any] = {}
    kernel = _kernel(op, attrs, node_inputs, shapes)
    if op in ("Conv", "ConvTranspose", *POOL_OPS) and kernel is not None:
        n = len(kernel)
        stride = tuple(int(s) for s in attrs.get("strides") or [1] * n)
        dilation = tuple(int(d) for d in attrs.get("dilations") or [1] * n)
        pads = [int(p) for p in attrs.get("pads") or [0] * (2 * n)]
        padding: tuple[PadPair, ...] | None = tuple((pads[i], pads[i + n]) for i in range(n))
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        mode = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if mode == "VALID":
            padding = ((0, 0),) * n
        elif mode != "NOTSET":
            padding = _same_pads(op, mode, kernel, stride, dilation, in_shapes, out_shapes)
        facts.update(kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                     padding_mode=None if mode == "NOTSET" else mode)
        if op in POOL_OPS:
            facts.update(pool=_POOL_KIND[op], ceil_mode=bool(attrs.get("ceil_mode", 0)))
        if op == "ConvTranspose":
            facts["output_padding"] = tuple(int(p) for p in attrs.get("output_padding") or [0] * n)
    if op in ("Conv", "ConvTranspose") and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        groups = int(attrs.get("group", 1))
        if w:
            if op == "Conv":
                facts.update(in_channels=w[1] * groups, out_channels=w[0])
            else:
                facts.update(in_channels=w[0], out_channels=w[1] * groups)
        facts.update(groups=groups, bias=len(node_inputs) > 2 and bool(node_inputs[2]))
    if op in ("Gemm", "MatMul") and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        if w and len(w) == 2 and dense_weight:
            n_in, n_out = (w[1], w[0]) if op == "Gemm" and attrs.get("transB", 0) else w
            facts.update(in_features=n_in, out_features=n_out,
                         bias=op == "Gemm" and len(node_inputs) > 2 and bool(node_inputs[2]))
    if op in ("BatchNormalization", "InstanceNormalization") and len(node_inputs) > 1:
        scale = shapes.get(node_inputs[1])
        if scale and len(scale) == 1:
            facts["num_features"] = scale[0]
    if op == "LRN":
        facts.update(size=int(attrs["size"]), alpha=float(attrs.get("alpha", 0.0001)),
                     beta=float(attrs.get("beta", 0.75)), k=float(attrs.get("bias", 1.0)))
    if op == "Dropout" and "ratio" in attrs:
        facts["p"] = float(attrs["ratio"])
    return LayerFacts(**facts)


def _same_pads(op: str, mode: str, kernel: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int], in_shapes: tuple[Shape, ...],
               out_shapes: tuple[Shape, ...]) -> tuple[PadPair, ...] | None:
    """The pads ``auto_pad="SAME_UPPER"``/``"SAME_LOWER"`` gives a Conv or pool (ONNX's rule:
    the total that makes the output ``⌈n/s⌉``, the odd one at the end for UPPER, at the
    beginning for LOWER); ``None`` where the shapes are unknown."""
    n = len(kernel)
    if op == "ConvTranspose" or not in_shapes or not out_shapes \
            or len(in_shapes[0]) != n + 2 or len(out_shapes[0]) != n + 2:
        return None
    pairs = []
    for x, y, k, s, d in zip(in_shapes[0][2:], out_shapes[0][2:], kernel, stride, dilation,
                             strict=True):
        total = max((y - 1) * s + d * (k - 1) + 1 - x, 0)
        small, large = total // 2, total - total // 2
        pairs.append((small, large) if mode == "SAME_UPPER" else (large, small))
    return tuple(pairs)


def _output_formula(op: str, attrs: dict[str, Any], facts: LayerFacts,
                    in_shapes: tuple[Shape, ...], out_shapes: tuple[Shape, ...]) -> str:
    """``(150−3)/1+1 = 148`` for Conv and pools, as for PyTorch layers (:mod:`archscope.formulas`).

    Empty where the arithmetic does not give the inferred shape (an ``auto_pad``, or an operator
    version whose rounding differs): better no arithmetic than wrong arithmetic.
    """
    if op not in ("Conv", *POOL_OPS) or not in_shapes or not out_shapes:
        return ""
    x, y = in_shapes[0], out_shapes[0]
    if len(x) < 3 or len(x) != len(y):
        return ""
    if "kernel_shape" not in attrs or facts.padding_mode is not None or facts.kernel is None \
            or facts.stride is None or facts.padding is None or facts.dilation is None:
        return ""
    # ceil mode drops a window that would start in the end padding: PyTorch's rule, and ONNX
    # pooling's shape rule from opset 22
    outs, text = formulas.output_sizes(x[2:], facts.kernel, facts.stride, facts.padding,
                                       facts.dilation, bool(facts.ceil_mode))
    return text if outs == tuple(y[2:]) else ""


def _macs(op: str, attrs: dict[str, Any], node_inputs: Sequence[str], shapes: dict[str, Shape],
          out_shapes: tuple[Shape, ...]) -> int:
    """Multiply-accumulates from shapes: output elements × reduction length (batch included)."""
    if not out_shapes or not out_shapes[0]:
        return 0
    out = out_shapes[0]
    if op == "Conv" and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        if w and len(w) >= 3:
            return prod(out) * prod(w[1:])  # each output: c_in/groups · kh · kw MACs
    if op == "ConvTranspose" and len(node_inputs) > 1:
        w, x = shapes.get(node_inputs[1]), shapes.get(node_inputs[0])
        if w and x and len(w) >= 3:
            # every input element meets c_out/groups · kh · kw weights
            return prod(x) * prod(w[1:])
    if op in ("Gemm", "MatMul") and len(node_inputs) > 1:
        a = shapes.get(node_inputs[0])
        if a:
            k = a[0] if op == "Gemm" and attrs.get("transA", 0) else a[-1]
            return prod(out) * k
    return 0


__all__ = ["inspect_onnx"]
