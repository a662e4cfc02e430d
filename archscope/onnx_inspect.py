"""Inspect an ONNX file: graph nodes become the same :class:`~archscope.report.Report` a PyTorch
model gives, so ``summary`` prints it and ``diagram`` draws it.

An ONNX file may come from any framework, so nothing here assumes archscope made it:

- every node except ``Constant`` is one row (``type`` is the op type, ``name`` the node name);
- output shapes come from :func:`onnx.shape_inference.infer_shapes`;
- a node's parameters are the floating-point initializers of rank ≥ 1 it consumes (scalars and
  integer tensors such as Reshape shapes or pads are constants, not parameters); an initializer
  consumed by several nodes counts once, on the first; BatchNormalization's running mean and
  variance are buffers (as in PyTorch), not parameters;
- parameter formulas follow the lecture's convention: Conv ``(kh·kw·c_in/groups+1)·c_out``,
  Gemm and MatMul ``(in+1)·out`` (``in·out`` without a bias), BatchNormalization ``2·C``, any
  other node the sum of its initializers' shape products (``64·32·3·3 + 64``);
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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope.errors import (
    ForwardError,
    InputShapeError,
    InputTooSmallError,
    ModelSourceError,
    first_line,
)
from archscope.formulas import output_sizes
from archscope.report import MODEL_INPUT, LayerRecord, Report, Shape
from archscope.shapes import format_dims

if TYPE_CHECKING:
    import onnx

#: ONNX ``TensorProto.DataType`` codes of floating-point tensors → bytes per element.
_FLOAT_BYTES = {1: 4, 10: 2, 11: 8, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 23: 1}
#: bytes per element for every other dtype we may meet (int64 shapes …); unknown → 4.
_OTHER_BYTES = {2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 12: 4, 13: 8}

#: op type → input positions that are state (buffers), not parameters.
_BUFFER_INPUTS = {"BatchNormalization": (3, 4)}

_POOL_OPS = ("MaxPool", "AveragePool", "LpPool")


@dataclass(frozen=True)
class _Tensor:
    """An initializer (or Constant output): its shape, dtype and bytes."""

    shape: Shape
    dtype: int

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in _FLOAT_BYTES

    @property
    def nbytes(self) -> int:
        return self.numel * _FLOAT_BYTES.get(self.dtype, _OTHER_BYTES.get(self.dtype, 4))


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
    import onnx

    model = _load(path)
    graph = model.graph
    initializers = {t.name: _Tensor(tuple(t.dims), t.data_type) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise ModelSourceError(f"{path}: the ONNX graph has no inputs; nothing to inspect")
    _fix_input_dims(model, inputs, batch, input_shape, path)
    _strip_weights(model)
    # Shapes recorded in the file may keep the symbolic batch; infer them afresh from the inputs.
    del model.graph.value_info[:]
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    shapes = _infer_shapes(model, path)
    graph = model.graph

    # Constant nodes are not rows; an Identity of an initializer (the TorchScript exporter's way of
    # sharing equal tensors) is an alias of it, not a row either.
    alias: dict[str, str] = {n: n for n in initializers}
    constants: set[str] = set(initializers)
    for node in graph.node:
        if node.op_type == "Constant":
            constants.update(o for o in node.output if o)
        elif _is_alias(node, alias):
            alias[node.output[0]] = alias[node.input[0]]
            constants.add(node.output[0])
    _check_shapes(graph.node, alias, shapes, path)

    producer: dict[str, int] = {i.name: MODEL_INPUT for i in inputs}
    counted: dict[str, str] = {}  # initializer name → the row that counted it
    row_params: list[list[str]] = []  # each row's own parameters (initializer names)
    buffers: set[str] = set()
    records: list[LayerRecord] = []
    for node in graph.node:
        if node.op_type == "Constant" or _is_alias(node, alias):
            continue
        index = len(records)
        node_name = node.name or f"{node.op_type}_{index}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        own: list[tuple[int, str]] = []  # (input position, initializer name) counted here
        shared_with: str | None = None
        buffer_positions = _BUFFER_INPUTS.get(node.op_type, ())
        for pos, input_name in enumerate(node.input):
            tensor_name = alias.get(input_name, input_name)
            tensor = initializers.get(tensor_name)
            if tensor is None or not tensor.is_float or not tensor.shape:
                continue
            if pos in buffer_positions:
                buffers.add(tensor_name)
                continue
            if tensor_name in counted:
                shared_with = shared_with or counted[tensor_name]
                continue
            counted[tensor_name] = node_name
            own.append((pos, tensor_name))
        params = sum(initializers[n].numel for _, n in own)
        row_params.append([n for _, n in own])
        formula = _param_formula(node.op_type, attrs, own, initializers) if params else ""

        resolved = [alias.get(t, t) for t in node.input]
        data_inputs = [t for t in node.input if t and t not in constants]
        in_shapes = tuple(shapes.get(t, ()) for t in data_inputs)
        out_shapes = tuple(shapes.get(o, ()) for o in node.output if o)
        records.append(
            LayerRecord(
                index=index,
                name=node_name,
                type=node.op_type,
                kind="module",
                depth=1,
                parent=None,
                is_leaf=True,
                input_shapes=in_shapes,
                output_shapes=out_shapes,
                params=params,
                trainable_params=params,
                param_formula=formula,
                output_formula=_output_formula(node.op_type, attrs, in_shapes, out_shapes),
                macs=_macs(node.op_type, attrs, resolved, shapes, out_shapes),
                shared_with=shared_with,
                hparams=_hparams(node.op_type, attrs, resolved, shapes, initializers),
                inputs=tuple(producer.get(t, MODEL_INPUT) for t in data_inputs),
            )
        )
        for o in node.output:
            if o:
                producer[o] = index

    frozen: set[str] = set()
    if freeze:
        from archscope.freeze import frozen_names

        frozen = frozen_names(list(counted), freeze, str(path))
        records = [
            replace(r, trainable_params=sum(initializers[n].numel for n in names if n not in frozen))
            for r, names in zip(records, row_params, strict=True)
        ]
    total = sum(r.params for r in records)
    trainable_total = sum(r.trainable_params for r in records)
    total_macs = sum(r.macs for r in records)
    first = shapes.get(inputs[0].name, ())
    out_names = [o.name for o in graph.output]
    notes = [
        "ONNX file: MACs computed from shapes for Conv, ConvTranspose, Gemm and MatMul only",
        "ONNX file: training activation memory is unknown (a graph file records nothing that "
        "autograd would save)",
    ]
    if len(inputs) > 1:
        notes.append(f"ONNX file has {len(inputs)} inputs; input_shape is the first's")
    return Report(
        model=name if name is not None else str(path),
        model_type=graph.name or "ONNX graph",
        input_shape=tuple(first[1:]),
        batch=first[0] if first else (batch or 1),
        total_params=total,
        trainable_params=trainable_total,
        non_trainable_params=total - trainable_total,
        total_macs=total_macs,
        forward_flops=2 * total_macs,
        backward_flops=None,
        param_bytes=sum(initializers[n].nbytes for n in counted),
        trainable_param_bytes=sum(initializers[n].nbytes for n in counted if n not in frozen),
        buffer_bytes=sum(initializers[n].nbytes for n in buffers if n not in counted),
        activation_bytes=None,
        output_shapes=tuple(shapes.get(n, ()) for n in out_names),
        outputs=tuple(producer.get(n, MODEL_INPUT) for n in out_names),
        layers=tuple(records),
        notes=tuple(notes),
        # several outputs are told apart by their graph names (archscope's export keeps dict keys)
        output_keys=tuple(out_names) if len(out_names) > 1 else (),
    )


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


def _fix_input_dims(
    model: onnx.ModelProto,
    inputs: Sequence[Any],
    batch: int | None,
    input_shape: Sequence[int] | None,
    path: str | os.PathLike[str],
) -> None:
    """Give symbolic input dimensions numbers: the batch dim ``batch``, the rest ``input_shape``.

    A fixed dimension keeps its number; asking for another one is an error, never a silent
    override (the graph's fixed shapes downstream, such as a Reshape's target, were exported for
    it) nor a silent no-op.
    """
    first = inputs[0]
    dims = list(first.type.tensor_type.shape.dim)
    if input_shape is not None:
        if len(input_shape) != len(dims) - 1:
            raise InputShapeError(
                f"{path}: input {first.name!r} has {len(dims)} dims (batch included) but "
                f"--input gives {len(input_shape)}; give {len(dims) - 1} numbers"
            )
        pairs = list(zip(dims[1:], input_shape, strict=True))
        if any(d.HasField("dim_value") and d.dim_value != v for d, v in pairs):
            given = "x".join(str(v) for v in input_shape)
            raise InputShapeError(
                f"{path} fixes its input at {_dims_text(dims[1:])}; --input {given} contradicts "
                "it (only symbolic dimensions can be set)"
            )
        for d, v in pairs:
            d.dim_value = int(v)
    if batch is not None and dims and dims[0].HasField("dim_value") and dims[0].dim_value != batch:
        raise InputShapeError(
            f"{path} fixes the batch at {dims[0].dim_value} (input {first.name!r} is "
            f"{_dims_text(dims)}); --batch {batch} cannot change it; export the model again with "
            "a symbolic batch (archscope export --dynamic-batch)"
        )
    for value_info in inputs:
        as_written = _dims_text(value_info.type.tensor_type.shape.dim)
        for j, d in enumerate(value_info.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                continue
            if j == 0:
                d.dim_value = batch if batch is not None else 1
                continue
            label = d.dim_param or "?"
            dims = value_info.type.tensor_type.shape.dim
            example = "x".join(
                str(s.dim_value) if s.HasField("dim_value") else "224" for s in list(dims)[1:]
            )
            raise InputShapeError(
                f"{path}: input {value_info.name!r} ({as_written}) has a symbolic "
                f"dimension {j} ({label}); give the input size with --input, e.g. "
                f"--input {example}"
            )


def _dims_text(dims: Sequence[Any]) -> str:
    """``1×28×28``, symbolic dimensions by name (``batch×3×H×W``)."""
    return "×".join(
        str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims
    )


def _check_shapes(nodes: Sequence[Any], alias: dict[str, str], shapes: dict[str, Shape],
                  path: str | os.PathLike[str]) -> None:
    """Refuse shapes that contradict each other, naming the first node where they do.

    ONNX shape inference in its lenient mode (the only one that reads files from any producer)
    copies a Reshape's target shape without comparing element counts, leaves a Gemm or MatMul
    whose inner dimensions differ without a shape, never checks a Conv's input channels, and
    gives a conv or pool window larger than its input an output of size 0. Each of these means
    the input numbers do not fit the graph.
    """
    import onnx

    index = 0  # row index, which names an unnamed node as the rows do
    for node in nodes:
        if node.op_type == "Constant" or _is_alias(node, alias):
            continue
        where = f"{path}: {node.name or f'{node.op_type}_{index}'} ({node.op_type})"
        index += 1
        ins = [shapes.get(alias.get(t, t)) if t else None for t in node.input]
        out = shapes.get(node.output[0]) if node.output and node.output[0] else None
        x = ins[0] if ins else None
        w = ins[1] if len(ins) > 1 else None
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Reshape" and x is not None and out is not None \
                and prod(x) != prod(out):
            raise ForwardError(
                f"{where}: reshapes {_shape_text(x)} ({prod(x):,} values) to {_shape_text(out)} "
                f"({prod(out):,} values); the input size or batch does not fit this graph"
            )
        if node.op_type == "Conv" and x is not None and w is not None and len(x) >= 2 \
                and len(w) >= 2 and x[1] != w[1] * int(attrs.get("group", 1)):
            channels = w[1] * int(attrs.get("group", 1))
            raise ForwardError(
                f"{where}: has {x[1]} input channels ({_shape_text(x)}) but its weight "
                f"{_shape_text(w)} expects {channels}; the input size does not fit this graph"
            )
        if node.op_type in ("Gemm", "MatMul") and x and w:
            if node.op_type == "Gemm":
                k_x = x[0] if attrs.get("transA", 0) else x[-1]
                k_w = w[-1] if attrs.get("transB", 0) else w[0]
            else:
                k_x, k_w = x[-1], (w[-2] if len(w) >= 2 else w[0])
            if k_x != k_w:
                raise ForwardError(
                    f"{where}: multiplies {_shape_text(x)} by {_shape_text(w)}, whose inner "
                    f"dimensions differ ({k_x} ≠ {k_w}); the input size or batch does not fit "
                    "this graph"
                )
        if node.op_type in ("Conv", "ConvTranspose", *_POOL_OPS) and x is not None \
                and out is not None and 0 in out and 0 not in x:
            raise InputTooSmallError(
                f"{where}: input {_shape_text(x)} gives the empty output "
                f"{_shape_text(out)}; the input is too small for this graph, give a larger --input"
            )


def _shape_text(shape: Shape) -> str:
    return format_dims(shape) or "scalar"


def _strip_weights(model: onnx.ModelProto) -> None:
    """Drop the contents of large floating-point initializers (their dims stay).

    Shape inference needs only their shapes, and it copies the whole model twice: for VGG that
    is half a gigabyte. Small and integer tensors (Reshape shapes, pads …) keep their values, which
    shape inference may read.
    """
    for t in model.graph.initializer:
        if t.data_type in _FLOAT_BYTES and prod(t.dims) > 1024:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("double_data")
            t.ClearField("int32_data")
            del t.external_data[:]
            t.data_location = 0


def _infer_shapes(model: onnx.ModelProto, path: str | os.PathLike[str]) -> dict[str, Shape]:
    """Every tensor's static shape, from ONNX shape inference.

    ONNX's own data propagation stops at some of the shape arithmetic exporters write for a
    symbolic batch (``Shape → Squeeze → Reshape → Concat`` feeding a ``Reshape``). Once the
    inputs have numbers, that arithmetic is constant: it is evaluated here with numpy and replaced
    by ``Constant`` nodes in a copy used only for inference, and inference runs again (a few
    rounds at most). The rows still show the file's own nodes.
    """
    import onnx

    work = onnx.ModelProto()
    work.CopyFrom(model)
    shapes: dict[str, Shape] = {}
    for _ in range(4):
        try:
            inferred = onnx.shape_inference.infer_shapes(work, strict_mode=False, data_prop=True)
        except Exception as exc:  # onnx raises InferenceError and plain RuntimeErrors alike
            raise ModelSourceError(
                f"{path}: ONNX shape inference failed: {first_line(exc)}"
            ) from None
        shapes = _value_shapes(inferred.graph)
        if not _fold_shape_arithmetic(work, shapes):
            break
        del work.graph.value_info[:]
    return shapes


#: ops evaluated on small integer tensors by :func:`_fold_shape_arithmetic`.
_FOLDABLE = {"Shape", "Squeeze", "Unsqueeze", "Reshape", "Concat", "Gather", "Slice", "Cast",
             "Add", "Sub", "Mul", "Div", "Identity", "Constant"}


def _fold_shape_arithmetic(model: onnx.ModelProto, shapes: dict[str, Shape]) -> bool:
    """Replace shape-only computations with Constant nodes; ``True`` if anything changed."""
    import numpy as np
    from onnx import helper, numpy_helper

    values: dict[str, Any] = {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.data_type in (6, 7) and prod(t.dims) <= 64
    }
    changed = False
    new_nodes = []
    for node in model.graph.node:
        out = _evaluate(node, values, shapes, np, helper)
        if out is None or node.op_type == "Constant":
            new_nodes.append(node)
            continue
        values[node.output[0]] = out
        new_nodes.append(helper.make_node(
            "Constant", [], [node.output[0]], name=node.name,
            value=numpy_helper.from_array(out, node.output[0]),
        ))
        changed = True
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
    return changed


def _evaluate(node: Any, values: dict[str, Any], shapes: dict[str, Shape], np: Any,
              helper: Any) -> Any:
    """The value of a small integer node whose inputs are known, else ``None``."""
    op = node.op_type
    if op not in _FOLDABLE or len(node.output) != 1:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    try:
        if op == "Constant":
            if "value_ints" in attrs or "value_int" in attrs:
                values[node.output[0]] = np.array(
                    attrs.get("value_ints", attrs.get("value_int")), dtype=np.int64
                )
            value = attrs.get("value")
            if value is not None and value.data_type in (6, 7) and prod(value.dims) <= 64:
                from onnx import numpy_helper

                values[node.output[0]] = numpy_helper.to_array(value)
            return None
        if op == "Shape":
            shape = shapes.get(node.input[0])
            if shape is None:
                return None
            start, end = attrs.get("start", 0), attrs.get("end", len(shape))
            return np.array(shape[start:end], dtype=np.int64)
        known = [values.get(i) for i in node.input if i]
        if any(a is None for a in known):
            return None
        args: list[Any] = known
        if op in ("Identity", "Cast"):
            return args[0] if op == "Identity" or attrs.get("to") == 7 else None
        if op == "Squeeze":
            axes = attrs.get("axes", args[1].tolist() if len(args) > 1 else None)
            return np.squeeze(args[0], axis=tuple(axes) if axes is not None else None)
        if op == "Unsqueeze":
            axes = attrs.get("axes", args[1].tolist() if len(args) > 1 else [])
            out = args[0]
            for axis in sorted(int(a) % (out.ndim + len(axes)) for a in axes):
                out = np.expand_dims(out, axis)
            return out
        if op == "Reshape":
            return args[0].reshape([int(d) for d in args[1]])
        if op == "Concat":
            return np.concatenate(args, axis=int(attrs.get("axis", 0)))
        if op == "Gather":
            return np.take(args[0], args[1], axis=int(attrs.get("axis", 0)))
        if op == "Slice":
            starts, ends = args[1], args[2]
            axes = args[3] if len(args) > 3 else range(len(starts))
            steps = args[4] if len(args) > 4 else [1] * len(starts)
            index = [slice(None)] * args[0].ndim
            for a, s0, e0, st in zip(axes, starts, ends, steps, strict=False):
                index[int(a)] = slice(int(s0), int(e0), int(st))
            return args[0][tuple(index)]
        a, b = args
        if op == "Div":
            return (a // b).astype(np.result_type(a, b))
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](a, b)
    except (ValueError, IndexError, TypeError, KeyError):
        return None


def _value_shapes(graph: Any) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        t = v.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        if -1 not in dims:
            shapes[v.name] = dims
    for init in graph.initializer:
        shapes.setdefault(init.name, tuple(init.dims))
    return shapes


def _is_alias(node: Any, alias: dict[str, str]) -> bool:
    return node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in alias


def _shape_product(shape: Shape) -> str:
    return "·".join(str(d) for d in shape) if shape else "1"


def _param_formula(
    op: str, attrs: dict[str, Any], own: list[tuple[int, str]], inits: dict[str, _Tensor]
) -> str:
    """The lecture's factorized formula for Conv/Gemm/MatMul/BatchNormalization, else shapes."""
    by_pos = {pos: inits[n].shape for pos, n in own}
    weight = by_pos.get(1)
    if op == "Conv" and weight is not None and len(weight) >= 3 and set(by_pos) <= {1, 2}:
        c_out, c_in_g, *kernel = weight
        groups = int(attrs.get("group", 1))
        c_in = f"{c_in_g * groups}/{groups}" if groups > 1 else str(c_in_g)
        core = "·".join([*(str(k) for k in kernel), c_in])
        if 2 in by_pos and by_pos[2] == (c_out,):
            return f"({core}+1)·{c_out}"
        if 2 not in by_pos:
            return f"{core}·{c_out}"
    is_dense = op in ("Gemm", "MatMul") and weight is not None and len(weight) == 2
    if is_dense and weight is not None and set(by_pos) <= {1, 2}:
        if op == "Gemm" and attrs.get("transB", 0):
            n_out, n_in = weight
        else:
            n_in, n_out = weight
        bias = by_pos.get(2)
        if bias is None:
            return f"{n_in}·{n_out}"
        if prod(bias) == n_out:
            return f"({n_in}+1)·{n_out}"
    if op == "BatchNormalization" and set(by_pos) == {1, 2} and by_pos[1] == by_pos[2]:
        return f"2·{_shape_product(by_pos[1])}"
    return " + ".join(_shape_product(inits[n].shape) for _, n in own)


def _spatial_attrs(attrs: dict[str, Any], n_spatial: int, kernel: Sequence[int]) -> dict[str, Any]:
    strides = list(attrs.get("strides") or [1] * n_spatial)
    pads = list(attrs.get("pads") or [0] * (2 * n_spatial))
    dilations = list(attrs.get("dilations") or [1] * n_spatial)
    return {"kernel": tuple(kernel), "stride": tuple(strides), "pads": tuple(pads),
            "dilation": tuple(dilations)}


def _kernel(op: str, attrs: dict[str, Any], node_inputs: Sequence[str],
            shapes: dict[str, Shape]) -> tuple[int, ...] | None:
    if "kernel_shape" in attrs:
        return tuple(int(k) for k in attrs["kernel_shape"])
    if op in ("Conv", "ConvTranspose") and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        if w and len(w) >= 3:
            return tuple(w[2:])
    return None


def _output_formula(op: str, attrs: dict[str, Any], in_shapes: tuple[Shape, ...],
                    out_shapes: tuple[Shape, ...]) -> str:
    """``(150−3)/1+1 = 148`` for Conv and pools, as for PyTorch layers (:mod:`archscope.formulas`).

    Empty where the arithmetic does not give the inferred shape (an ``auto_pad``, or an operator
    version whose rounding differs): better no arithmetic than wrong arithmetic.
    """
    if op not in ("Conv", *_POOL_OPS) or not in_shapes or not out_shapes:
        return ""
    x, y = in_shapes[0], out_shapes[0]
    if len(x) < 3 or len(x) != len(y):
        return ""
    n = len(x) - 2
    kernel = attrs.get("kernel_shape")
    if kernel is None or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return ""
    sp = _spatial_attrs(attrs, n, kernel)
    pads = [(sp["pads"][i], sp["pads"][i + n]) for i in range(n)]
    # ceil mode drops a window that would start in the end padding: PyTorch's rule, and ONNX
    # pooling's shape rule from opset 22
    outs, text = output_sizes(x[2:], sp["kernel"], sp["stride"], pads, sp["dilation"],
                              bool(attrs.get("ceil_mode", 0)))
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


def _hparams(op: str, attrs: dict[str, Any], node_inputs: Sequence[str],
             shapes: dict[str, Shape], inits: dict[str, _Tensor]) -> dict[str, Any]:
    hp: dict[str, Any] = {}
    kernel = _kernel(op, attrs, node_inputs, shapes)
    if op in ("Conv", "ConvTranspose", *_POOL_OPS) and kernel is not None:
        sp = _spatial_attrs(attrs, len(kernel), kernel)
        hp.update(kernel=sp["kernel"], stride=sp["stride"], padding=sp["pads"])
        if any(d != 1 for d in sp["dilation"]):
            hp["dilation"] = sp["dilation"]
    if op in ("Conv", "ConvTranspose") and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        groups = int(attrs.get("group", 1))
        if w:
            if op == "Conv":
                hp.update(in_channels=w[1] * groups, out_channels=w[0])
            else:
                hp.update(in_channels=w[0], out_channels=w[1] * groups)
        if groups != 1:
            hp["groups"] = groups
    if op in ("Gemm", "MatMul") and len(node_inputs) > 1:
        w = shapes.get(node_inputs[1])
        if w and len(w) == 2 and node_inputs[1] in inits:
            n_in, n_out = (w[1], w[0]) if op == "Gemm" and attrs.get("transB", 0) else w
            hp.update(in_features=n_in, out_features=n_out)
    return hp


__all__ = ["inspect_onnx"]
