"""Inspecting ONNX files: hand-built graphs (numbers written out by hand), a file exported by
PyTorch's TorchScript exporter (a producer archscope does not use), and the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archscope.cli import main
from archscope.errors import InputShapeError, ModelSourceError
from archscope.onnx_inspect import inspect_onnx
from archscope.report import MODEL_INPUT, evaluate_formula


def _init(name: str, *shape: int, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _save(tmp_path: Path, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
          input_dims: list[int | str], outputs: list[str], name: str = "g.onnx") -> Path:
    graph = helper.make_graph(
        nodes, "handmade",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.fixture
def small_cnn(tmp_path: Path) -> Path:
    """x(N,3,32,32) → Conv 3→8 k3 → BN → Relu → Conv 8→8 k3 groups 2 no bias → GAP → Flatten
    → Gemm 8→10 (transB) → MatMul 10→4 (shares nothing) + Add bias; plus a Reshape whose shape
    is an int64 initializer and a scalar Mul constant (neither is a parameter)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["bn"],
                         name="bn1"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                         strides=[2, 2], group=2),
        helper.make_node("Mul", ["c2", "half"], ["m"], name="scale"),
        helper.make_node("GlobalAveragePool", ["m"], ["gap"], name="gap"),
        helper.make_node("Reshape", ["gap", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["fc"], name="fc", transB=1),
        helper.make_node("MatMul", ["fc", "w4"], ["mm"], name="proj"),
        helper.make_node("Add", ["mm", "b4"], ["y"], name="proj_bias"),
    ]
    inits = [
        _init("w1", 8, 3, 3, 3), _init("b1", 8),
        _init("g", 8), _init("beta", 8), _init("mean", 8), _init("var", 8),
        _init("w2", 8, 4, 3, 3),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape"),
        _init("w3", 10, 8), _init("b3", 10),
        _init("w4", 10, 4), _init("b4", 4),
    ]
    return _save(tmp_path, nodes, inits, ["N", 3, 32, 32], ["y"])


def test_handmade_graph_rows(small_cnn: Path) -> None:
    report = inspect_onnx(small_cnn, batch=2)
    rows = {r.name: r for r in report.layers}
    assert [r.type for r in report.layers] == [
        "Conv", "BatchNormalization", "Relu", "Conv", "Mul", "GlobalAveragePool", "Reshape",
        "Gemm", "MatMul", "Add",
    ]
    # parameters, written out by hand
    assert rows["conv1"].params == (3 * 3 * 3 + 1) * 8 == 224
    assert rows["conv1"].param_formula == "(3·3·3+1)·8"
    assert rows["bn1"].params == 2 * 8 and rows["bn1"].param_formula == "2·8"  # mean/var: buffers
    assert rows["conv2"].params == 3 * 3 * 4 * 8 == 288  # c_in/groups = 8/2
    assert rows["conv2"].param_formula == "3·3·8/2·8"
    assert rows["scale"].params == 0  # a scalar constant
    assert rows["flatten"].params == 0  # int64 shape tensor
    assert rows["fc"].params == (8 + 1) * 10 and rows["fc"].param_formula == "(8+1)·10"
    assert rows["proj"].params == 10 * 4 and rows["proj"].param_formula == "10·4"
    assert rows["proj_bias"].params == 4 and rows["proj_bias"].param_formula == "4"
    assert report.total_params == 224 + 16 + 288 + 90 + 40 + 4 == 662
    for r in report.layers:
        assert evaluate_formula(r.param_formula) == r.params, r.name
    assert report.buffer_bytes == 2 * 8 * 4
    assert report.param_bytes == 662 * 4
    # shapes from shape inference, the symbolic batch N replaced by 2
    assert report.input_shape == (3, 32, 32) and report.batch == 2
    assert rows["conv1"].output_shapes == ((2, 8, 32, 32),)
    assert rows["conv2"].output_shapes == ((2, 8, 15, 15),)
    assert rows["conv2"].output_formula == "⌊(32 − 3 + 2·0)/2⌋ + 1 = 15"
    assert rows["conv1"].output_formula == "⌊(32 − 3 + 2·1)/1⌋ + 1 = 32"
    assert report.output_shapes == ((2, 4),)
    # MACs from shapes: output elements × (c_in/groups · kh · kw), and M·N·K for dense layers
    assert rows["conv1"].macs == 2 * 8 * 32 * 32 * (3 * 3 * 3)
    assert rows["conv2"].macs == 2 * 8 * 15 * 15 * (4 * 3 * 3)
    assert rows["fc"].macs == 2 * 10 * 8
    assert rows["proj"].macs == 2 * 4 * 10
    assert report.total_macs == sum(r.macs for r in report.layers)
    assert rows["conv2"].hparams["groups"] == 2
    assert rows["fc"].hparams == {"in_features": 8, "out_features": 10}


def test_handmade_graph_edges(small_cnn: Path) -> None:
    report = inspect_onnx(small_cnn)
    index = {r.name: r.index for r in report.layers}
    rows = {r.name: r for r in report.layers}
    assert rows["conv1"].inputs == (MODEL_INPUT,)
    assert rows["bn1"].inputs == (index["conv1"],)  # initializers are not edges
    assert rows["proj_bias"].inputs == (index["proj"],)
    assert report.outputs == (index["proj_bias"],)


def test_shared_initializer_counts_once(tmp_path: Path) -> None:
    # the same weight applied twice (tied), once directly and once through an Identity alias
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="first"),
        helper.make_node("Identity", ["w"], ["w_alias"], name="alias"),
        helper.make_node("MatMul", ["a", "w_alias"], ["y"], name="second"),
    ]
    path = _save(tmp_path, nodes, [_init("w", 6, 6)], [1, 6], ["y"])
    report = inspect_onnx(path)
    assert [r.name for r in report.layers] == ["first", "second"]
    assert report.total_params == 36
    second = report.find("second")
    assert second.params == 0 and second.shared_with == "first"
    assert second.inputs == (report.find("first").index,)


def test_symbolic_spatial_dims_need_an_input_shape(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    path = _save(tmp_path, nodes, [], ["N", 3, "H", "W"], ["y"])
    with pytest.raises(InputShapeError, match="--input"):
        inspect_onnx(path)
    report = inspect_onnx(path, input_shape=(3, 8, 9), batch=4)
    assert report.output_shapes == ((4, 3, 8, 9),)
    with pytest.raises(InputShapeError, match="gives 2"):
        inspect_onnx(path, input_shape=(8, 9))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="not found"):
        inspect_onnx(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffthis is not protobuf" * 10)
    with pytest.raises(ModelSourceError, match=str(garbage)):
        inspect_onnx(garbage)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 32, 3)
        self.bn = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.fc = nn.Linear(64 * 11 * 11, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn(self.conv(x))))  # (N, 32, 13, 13)
        x = torch.relu(self.conv2(x))  # (N, 64, 11, 11)
        return self.fc(torch.flatten(x, 1))


def test_file_from_the_torchscript_exporter(tmp_path: Path) -> None:
    # A producer archscope does not use: the (deprecated) TorchScript exporter, BN kept unfolded.
    # Random BN affine values so that its equal-initializer deduplication has nothing to merge.
    torch.manual_seed(0)
    model = _Net().eval()
    nn.init.normal_(model.bn.weight)
    nn.init.normal_(model.bn.bias)
    x = torch.randn(1, 1, 28, 28)
    path = tmp_path / "ts.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                          training=torch.onnx.TrainingMode.PRESERVE, input_names=["x"])
    report = inspect_onnx(path)
    assert report.total_params == sum(p.numel() for p in model.parameters())
    convs = [r for r in report.layers if r.type == "Conv"]
    assert [c.param_formula for c in convs] == ["(3·3·1+1)·32", "3·3·32·64"]
    assert [c.output_shapes[0] for c in convs] == [(1, 32, 26, 26), (1, 64, 11, 11)]
    gemm = next(r for r in report.layers if r.type == "Gemm")
    assert gemm.param_formula == "(7744+1)·10"
    # MACs: independent oracle is PyTorch's own FLOP counter (FLOPs / 2) for conv and linear
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert report.total_macs == counter.get_total_flops() // 2
    # the TorchScript exporter fixed the batch at 1: asking for 4 keeps 1 and says so
    fixed = inspect_onnx(path, batch=4)
    assert fixed.batch == 1 and any("fixes the batch at 1" in n for n in fixed.notes)


def test_cli_summary_and_diagram_of_an_onnx_file(small_cnn: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["summary", str(small_cnn)])
    assert table.exit_code == 0, table.output
    assert "(3·3·3+1)·8" in table.stdout and "662" in table.stdout
    as_json = runner.invoke(main, ["summary", str(small_cnn), "--format", "json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["total_params"] == 662
    assert [layer["type"] for layer in data["layers"]][:2] == ["Conv", "BatchNormalization"]
    dot = tmp_path / "g.dot"
    drawn = runner.invoke(main, ["diagram", str(small_cnn), "-o", str(dot)])
    assert drawn.exit_code == 0, drawn.output
    assert "conv1" in dot.read_text()


def test_cli_summary_of_a_missing_onnx_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["summary", str(tmp_path / "nope.onnx")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_input_fills_symbolic_dims(tmp_path: Path) -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2])]
    path = _save(tmp_path, nodes, [], ["N", 3, "H", "W"], ["y"])
    runner = CliRunner()
    missing = runner.invoke(main, ["summary", str(path)])
    assert missing.exit_code == 2 and "--input" in missing.stderr
    result = runner.invoke(main, ["summary", str(path), "--input", "3x8x10", "--batch", "2",
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layers"][0]["output_shapes"] == [[2, 3, 4, 5]]
