"""ONNX weights wherever a file keeps them, and rows named after the PyTorch modules (issue 12,
item 2; issue 11).

Oracles: ``sum(p.numel() for p in model.parameters())`` of the exported PyTorch model, and
hand-built graphs whose counts are written out by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from fixtures.engine_cases import TinyViT
from onnx import TensorProto, helper, numpy_helper

from archscope.cli import main
from archscope.engine import inspect_onnx
from archscope.export import export_onnx


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyViT, Path]:
    """TinyViT exported by ``archscope.export.export_onnx`` (eval mode, seed 0)."""
    torch.manual_seed(0)
    model = TinyViT().eval()
    path = tmp_path_factory.mktemp("vit") / "vit.onnx"
    export_onnx(model, path, TinyViT.INPUT, verify=False)
    return model, path


def test_folded_constant_weights_count_like_the_pytorch_model(vit: tuple[TinyViT, Path]) -> None:
    model, path = vit
    proto = onnx.load(str(path))
    constants = [a.t for n in proto.graph.node if n.op_type == "Constant" for a in n.attribute
                 if a.name == "value" and a.t.data_type == TensorProto.FLOAT and len(a.t.dims) == 2]
    assert constants  # the exporter did fold the Linears' weights: the case at hand
    report = inspect_onnx(path)
    total = sum(p.numel() for p in model.parameters())
    assert report.total_params == total == report.trainable_params
    assert report.param_bytes == 4 * total
    assert sum(r.params for r in report.layers) == total
    # the Linears on the 3-D token tensor: attention's input projection and the MLP
    folded = (model.attn.in_proj_weight.numel() + model.mlp[0].weight.numel()
              + model.mlp[2].weight.numel())
    assert f"ONNX file: {folded:,} of the parameters are held in Constant nodes" in \
        " ".join(report.notes)
    rows = {r.name: r for r in report.layers}
    assert (rows["mlp.0"].type, rows["mlp.0"].params) == ("MatMul", 16 * 32)
    assert rows["mlp.0"].param_formula == "16·32"
    assert (rows["mlp.0"].facts.in_features, rows["mlp.0"].facts.out_features) == (16, 32)
    assert (rows["mlp.0.add"].type, rows["mlp.0.add"].params) == ("Add", 32)
    assert (rows["mlp.2"].params, rows["attn"].params) == (32 * 16, 16 * 48)


def test_rows_are_named_after_the_pytorch_modules(vit: tuple[TinyViT, Path]) -> None:
    _, path = vit
    report = inspect_onnx(path)
    names = [r.name for r in report.layers]
    assert len(set(names)) == len(names)
    assert not any(n.startswith("node_") or n.endswith("__0") for n in names)
    types = {r.name: r.type for r in report.layers}
    assert (types["patch.0"], types["patch.1"]) == ("Conv", "BatchNormalization")
    assert (types["attn.out_proj"], types["head"], types["norm"]) == (
        "Gemm", "Gemm", "LayerNormalization")


def test_freeze_reaches_the_folded_weights(vit: tuple[TinyViT, Path]) -> None:
    model, path = vit
    report = inspect_onnx(path, freeze=["mlp", "attn"])
    frozen = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("mlp.", "attn.")))
    assert report.non_trainable_params == frozen
    assert report.trainable_params == report.total_params - frozen


def test_a_small_file_shows_its_memory_in_kib(vit: tuple[TinyViT, Path]) -> None:
    _, path = vit
    result = CliRunner().invoke(main, ["summary", str(path), "--width", "100"])
    assert result.exit_code == 0, result.output
    memory = next(line for line in result.stdout.splitlines() if "Parameter memory" in line)
    assert memory.endswith(" KiB") and "MiB" not in result.stdout


def _graph(tmp_path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
           x: list[int], name: str = "g.onnx") -> Path:
    graph = helper.make_graph(
        nodes, "handmade", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"const_{name}",
                            value=numpy_helper.from_array(array, name))


def test_constant_weights_count_and_shape_constants_do_not(tmp_path: Path) -> None:
    f32 = np.float32
    nodes = [
        _const("w", np.ones((4, 6), f32)),  # a weight, transposed below: 24 values
        helper.make_node("Transpose", ["w"], ["wt"], name="t", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["a"], name="fc"),
        helper.make_node("Constant", [], ["b"], name="const_b", value_floats=[0.1] * 4),
        helper.make_node("Add", ["a", "b"], ["a2"], name="fc_bias"),  # 4 values
        _const("half", np.array([0.5], f32)),  # a scalar of rank 1: not a parameter
        helper.make_node("Mul", ["a2", "half"], ["a3"], name="scale"),
        _const("two", np.full((1, 4), 2.0, f32)),  # a divisor: never a parameter
        helper.make_node("Div", ["a3", "two"], ["a4"], name="divide"),
        _const("shape", np.array([2, 2, 2], np.int64)),  # an int64 shape: not a parameter
        helper.make_node("Reshape", ["a4", "shape"], ["y"], name="reshape"),
    ]
    path = _graph(tmp_path, nodes, [], [2, 6])
    report = inspect_onnx(path)
    rows = {r.name: r for r in report.layers}
    assert list(rows) == ["fc", "fc_bias", "scale", "divide", "reshape"]  # the Transpose passes
    assert rows["fc"].params == 6 * 4 and rows["fc"].param_formula == "6·4"  # as MatMul reads it
    assert (rows["fc"].facts.in_features, rows["fc"].facts.out_features) == (6, 4)
    assert rows["fc_bias"].params == 4
    assert rows["scale"].params == rows["divide"].params == rows["reshape"].params == 0
    assert report.total_params == 24 + 4 == 28
    assert report.param_bytes == 28 * 4


def test_initializer_weights_and_a_recurrent_state(tmp_path: Path) -> None:
    f32 = np.float32
    hidden, features = 3, 2
    inits = [numpy_helper.from_array(np.ones(shape, f32), name) for name, shape in (
        ("rnn.W", (1, 4 * hidden, features)), ("rnn.R", (1, 4 * hidden, hidden)),
        ("rnn.B", (1, 8 * hidden)))]
    nodes = [
        _const("h0", np.zeros((1, 1, hidden), f32)),  # the zero initial state: not a parameter
        _const("c0", np.zeros((1, 1, hidden), f32)),
        helper.make_node("LSTM", ["x", "rnn.W", "rnn.R", "rnn.B", "", "h0", "c0"], ["y"],
                         name="node_lstm__0", hidden_size=hidden),
    ]
    report = inspect_onnx(_graph(tmp_path, nodes, inits, [5, 1, features]))
    [row] = report.layers
    assert row.name == "rnn"  # the module its initializers name
    # PyTorch's nn.LSTM(2, 3): weight_ih 4·3·2, weight_hh 4·3·3, two biases 4·3 each
    assert report.total_params == row.params == 4 * 3 * 2 + 4 * 3 * 3 + 2 * 4 * 3 == 84
