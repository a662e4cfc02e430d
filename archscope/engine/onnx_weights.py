"""ONNX weights and row names: which tensors of a graph are parameters, which nodes only pass a
weight on, and what each row is called.

Parameters live in two places in an ONNX file:

* **initializers** (how ``archscope export`` writes every parameter and buffer, under its
  ``state_dict`` name), and
* **Constant nodes**: PyTorch's exporter folds the transposed weight of an ``nn.Linear`` applied
  to a ≥3-D input (ViT's attention and MLP, ConvNeXt's pointwise layers) into a new tensor,
  which becomes a ``Constant`` feeding a ``MatMul``. ViT-B/16 keeps 77,857,560 of its 86,567,656
  parameters there.

The rule (docs/onnx.md, "Parameters"): a floating-point tensor is a parameter of the node that
consumes it when it is an initializer of rank ≥ 1, or the ``value`` (``value_floats``) of a
Constant node with at least 2 elements: shape tensors (integers) and scalars (one element, of any
rank: the exporter's ``[0.5]`` scale factors) are constants. Inputs that are read as something
other than a weight (Resize's scales, Pad's pads, Clip's bounds, a divisor) never count. A node
that only passes a weight on (``Identity``, ``Cast``, ``Transpose``, ``Reshape``, ``Squeeze``,
``Unsqueeze`` of a weight, its other inputs constants) is not a row: the weight counts in the
row of the node that uses it.

Rows are named after the PyTorch module where the initializers a node reads carry its name
(``layer1.0.conv1.weight`` → ``layer1.0.conv1``; the MatMul of a folded weight takes the name of
the bias it is added to); other nodes keep their own names, without the exporter's decorations
(``node_relu_3`` → ``relu_3``), each name unique. A folded weight is frozen with its module
(``--freeze encoder`` freezes ``encoder.…``'s Constant weights as ``encoder.….weight``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

from archscope.engine.onnx_shapes import FLOAT_BYTES
from archscope.report import Shape

#: bytes per element for every other dtype we may meet (int64 shapes …); unknown → 4.
_OTHER_BYTES = {2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 12: 4, 13: 8}

#: ops that pass their first input on unchanged in value (a weight stays that weight).
_PASS_ON = frozenset({"Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze"})

#: (op, input position) read as something other than a weight: never a parameter. A recurrent
#: layer's initial state (PyTorch's exporter writes the zeros of ``h_0``/``c_0`` as Constants)
#: is state, as the running statistics of a BatchNormalization are.
_NOT_WEIGHTS = frozenset({
    ("Resize", 1), ("Resize", 2), ("Resize", 3), ("Upsample", 1), ("Pad", 1), ("Pad", 2),
    ("Clip", 1), ("Clip", 2), ("Div", 1), ("Where", 0), ("Range", 0), ("Range", 1),
    ("Range", 2), ("ConstantOfShape", 0), ("Expand", 1), ("Tile", 1), ("ScatterND", 2),
    ("ScatterElements", 2),
    ("LSTM", 4), ("LSTM", 5), ("LSTM", 6), ("GRU", 4), ("GRU", 5), ("RNN", 4), ("RNN", 5),
})

#: the fewest elements a Constant's float tensor has to be a parameter (one is a scalar).
MIN_CONSTANT_WEIGHT = 2


@dataclass(frozen=True)
class Tensor:
    """An initializer or a Constant node's value: its shape, dtype and bytes."""

    shape: Shape
    dtype: int
    constant: bool = False  # held in a Constant node rather than an initializer

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_BYTES

    @property
    def nbytes(self) -> int:
        return self.numel * FLOAT_BYTES.get(self.dtype, _OTHER_BYTES.get(self.dtype, 4))

    @property
    def is_weight(self) -> bool:
        """A float tensor that can be a parameter (see the module docstring)."""
        if not self.is_float or not self.shape:
            return False
        return not self.constant or self.numel >= MIN_CONSTANT_WEIGHT


def constant_tensors(nodes: Sequence[Any]) -> dict[str, Tensor]:
    """The tensors Constant nodes hold (``value``, ``value_float(s)``, ``value_int(s)``), by
    output name."""
    found: dict[str, Tensor] = {}
    for node in nodes:
        if node.op_type != "Constant" or not node.output:
            continue
        for a in node.attribute:
            if a.name == "value":
                found[node.output[0]] = Tensor(tuple(a.t.dims), a.t.data_type, constant=True)
            elif a.name == "value_floats":
                found[node.output[0]] = Tensor((len(a.floats),), 1, constant=True)
            elif a.name == "value_float":
                found[node.output[0]] = Tensor((), 1, constant=True)
            elif a.name == "value_ints":
                found[node.output[0]] = Tensor((len(a.ints),), 7, constant=True)
            elif a.name == "value_int":
                found[node.output[0]] = Tensor((), 7, constant=True)
    return found


def weight_aliases(nodes: Sequence[Any], tensors: dict[str, Tensor]) -> dict[str, str]:
    """Tensor name → the initializer or Constant whose values it carries.

    Every initializer and Constant output maps to itself; the output of an ``Identity`` of an
    initializer (the TorchScript exporter's way of sharing equal tensors), or of a node of
    :data:`_PASS_ON` applied to a weight with constant other inputs, maps to that weight. Those
    nodes are not rows (:func:`is_pass_on`).
    """
    alias = {name: name for name in tensors}
    for node in nodes:
        if node.op_type not in _PASS_ON or len(node.output) != 1 or not node.input:
            continue
        source = alias.get(node.input[0])
        if source is None or not all(t in alias for t in node.input[1:] if t):
            continue
        if node.op_type == "Identity" or tensors[source].is_weight:
            alias[node.output[0]] = source
    return alias


def is_pass_on(node: Any, alias: dict[str, str]) -> bool:
    """Whether ``node`` only passes a weight on (see :func:`weight_aliases`): not a row."""
    return node.op_type in _PASS_ON and len(node.output) == 1 and node.output[0] in alias


def is_parameter(op: str, position: int, tensor: Tensor | None) -> bool:
    """Whether ``tensor``, read by an ``op`` node at input ``position``, is a parameter."""
    return tensor is not None and tensor.is_weight and (op, position) not in _NOT_WEIGHTS


def module_names(nodes: Sequence[Any], alias: dict[str, str], initializers: set[str]
                 ) -> list[str | None]:
    """The PyTorch module each node belongs to, where the initializers it reads say so.

    A node whose initializers are all called ``PREFIX.LEAF`` with one ``PREFIX`` belongs to
    ``PREFIX`` (``archscope export`` keeps ``state_dict`` names). A MatMul whose weight is a
    folded Constant (no name) and whose result goes to one Add of a module's bias belongs to that
    module: together they are its ``nn.Linear``.
    """
    read = [[alias.get(t, t) for t in n.input if alias.get(t, t) in initializers] for n in nodes]
    modules: list[str | None] = []
    for state in read:
        prefixes = {name.rpartition(".")[0] for name in state}
        modules.append(prefixes.pop() if len(prefixes) == 1 and "" not in prefixes else None)
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            readers.setdefault(t, []).append(i)
    for i, n in enumerate(nodes):
        if modules[i] is None and not read[i] and n.op_type == "MatMul" and n.output:
            after = readers.get(n.output[0], [])
            if len(after) == 1 and nodes[after[0]].op_type == "Add":
                modules[i] = modules[after[0]]
    return modules


def row_names(nodes: Sequence[tuple[str, str, str | None]]) -> list[str]:
    """A unique name for each row, from ``(node name, op type, module or None)``.

    The first node of a module is named after it (``layer1.0.conv1``), a later one
    ``module.op`` (``attn.add``). Other nodes keep their own name without the exporter's
    decorations (``node_`` before, ``__0`` after), or ``Op_N`` (``N``: the row's index) where
    they have none. A name already taken gets ``_2``, ``_3`` … .
    """
    taken: set[str] = set()
    names: list[str | None] = [None] * len(nodes)

    def claim(name: str) -> str:
        unique, k = name, 1
        while unique in taken:
            k += 1
            unique = f"{name}_{k}"
        taken.add(unique)
        return unique

    for i, (_, op, module) in enumerate(nodes):  # module names first: they are the contract
        if module is not None:
            names[i] = claim(module if module not in taken else f"{module}.{op.lower()}")
    for i, (node_name, op, _) in enumerate(nodes):
        if names[i] is None:
            names[i] = claim(_short(node_name) or f"{op}_{i}")
    return [n for n in names if n is not None]


def _short(name: str) -> str:
    """``node__native_batch_norm_legit_no_training_52__0`` → ``native_batch_norm_legit_no_training_52``,
    ``node_relu_3`` → ``relu_3``; a name without those decorations is kept."""
    short = re.sub(r"__\d+$", "", name.removeprefix("node_")).strip("_")
    return short or name


__all__ = ["MIN_CONSTANT_WEIGHT", "Tensor", "constant_tensors", "is_parameter", "is_pass_on",
           "module_names", "row_names", "weight_aliases"]
