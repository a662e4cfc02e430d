"""ONNX shapes: every tensor's static shape from ONNX shape inference, and the checks that
inference in its lenient mode leaves out.

The model is read with :mod:`onnx` only (numpy folds small shape computations); torch is not
needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any

from archscope.errors import (
    ForwardError,
    InputShapeError,
    InputTooSmallError,
    ModelSourceError,
    first_line,
)
from archscope.report import Shape
from archscope.shapes import format_dims

if TYPE_CHECKING:
    import onnx

#: ONNX ``TensorProto.DataType`` codes of floating-point tensors → bytes per element.
FLOAT_BYTES = {1: 4, 10: 2, 11: 8, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 23: 1}

POOL_OPS = ("MaxPool", "AveragePool", "LpPool")


def check_shapes(nodes: Sequence[Any], names: Sequence[str], alias: dict[str, str],
                 shapes: dict[str, Shape], path: str | os.PathLike[str]) -> None:
    """Refuse shapes that contradict each other, naming the first node where they do.

    ``nodes`` are the nodes that are rows, ``names`` their row names, ``alias`` maps a tensor
    that passes a weight on to that weight (whose shape stands in where inference has none).

    ONNX shape inference in its lenient mode (the only one that reads files from any producer)
    copies a Reshape's target shape without comparing element counts, leaves a Gemm or MatMul
    whose inner dimensions differ without a shape, never checks a Conv's input channels, and
    gives a conv or pool window larger than its input an output of size 0. Each of these means
    the input numbers do not fit the graph.
    """
    import onnx

    for node, name in zip(nodes, names, strict=True):
        where = f"{path}: {name} ({node.op_type})"
        ins = [shapes.get(t, shapes.get(alias.get(t, t))) if t else None for t in node.input]
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
        if node.op_type in ("Conv", "ConvTranspose", *POOL_OPS) and x is not None \
                and out is not None and 0 in out and 0 not in x:
            raise InputTooSmallError(
                f"{where}: input {_shape_text(x)} gives the empty output "
                f"{_shape_text(out)}; the input is too small for this graph, give a larger --input"
            )


def _shape_text(shape: Shape) -> str:
    return format_dims(shape) or "scalar"


def strip_weights(model: onnx.ModelProto) -> None:
    """Drop the contents of large floating-point initializers and Constant values (their dims
    stay).

    Shape inference needs only their shapes, and it copies the whole model twice: for VGG that
    is half a gigabyte. Small and integer tensors (Reshape shapes, pads …) keep their values, which
    shape inference may read.
    """
    values = [a.t for node in model.graph.node if node.op_type == "Constant"
              for a in node.attribute if a.name == "value"]
    for t in [*model.graph.initializer, *values]:
        if t.data_type in FLOAT_BYTES and prod(t.dims) > 1024:
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.ClearField("double_data")
            t.ClearField("int32_data")
            del t.external_data[:]
            t.data_location = 0


def infer_shapes(model: onnx.ModelProto, path: str | os.PathLike[str]) -> dict[str, Shape]:
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


def symbolic_batch(graph_input: Any) -> bool:
    """Whether the input's first dimension is a symbol (``batch``) rather than a number."""
    dims = graph_input.type.tensor_type.shape.dim
    return bool(dims) and not dims[0].HasField("dim_value")


def fix_input_dims(
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
                f"{path} fixes its input at {dims_text(dims[1:])}; --input {given} contradicts "
                "it (only symbolic dimensions can be set)"
            )
        for d, v in pairs:
            d.dim_value = int(v)
    if batch is not None and dims and dims[0].HasField("dim_value") and dims[0].dim_value != batch:
        raise InputShapeError(
            f"{path} fixes the batch at {dims[0].dim_value} (input {first.name!r} is "
            f"{dims_text(dims)}); --batch {batch} cannot change it; export the model again with "
            "a symbolic batch (archscope export --dynamic-batch)"
        )
    for value_info in inputs:
        as_written = dims_text(value_info.type.tensor_type.shape.dim)
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


def dims_text(dims: Sequence[Any]) -> str:
    """``1×28×28``, symbolic dimensions by name (``batch×3×H×W``)."""
    return "×".join(
        str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims
    )


__all__ = ["FLOAT_BYTES", "POOL_OPS", "check_shapes", "dims_text", "fix_input_dims", "infer_shapes",
           "strip_weights", "symbolic_batch"]
