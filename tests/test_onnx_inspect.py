"""Inspecting ONNX files: hand-built graphs (numbers written out by hand), a file exported by
PyTorch's TorchScript exporter (a producer archscope does not use), lecture_mnist_cnn exported by
archscope (fixed and symbolic batch) for the options --input, --batch, --freeze, --num-classes,
and the CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner, Result
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archscope.cli import main
from archscope.engine import inspect_onnx
from archscope.errors import (
    ForwardError,
    InputShapeError,
    InputTooSmallError,
    ModelSourceError,
)
from archscope.export import export_onnx
from archscope.registry import get_entry
from archscope.report import MODEL_INPUT, LayerFacts, evaluate_formula
from archscope.source import load_report


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
    # the lecture's arithmetic, as for a PyTorch layer: (32 + 2·1 − 3)/1 + 1 = 32, ⌊29/2⌋ + 1 = 15
    assert rows["conv1"].output_formula == "(32+2·1−3)/1+1 = 32"
    assert rows["conv2"].output_formula == "⌊(32−3)/2⌋+1 = 15"
    assert report.output_shapes == ((2, 4),)
    # MACs from shapes: output elements × (c_in/groups · kh · kw), and M·N·K for dense layers
    assert rows["conv1"].macs == 2 * 8 * 32 * 32 * (3 * 3 * 3)
    assert rows["conv2"].macs == 2 * 8 * 15 * 15 * (4 * 3 * 3)
    assert rows["fc"].macs == 2 * 10 * 8
    assert rows["proj"].macs == 2 * 4 * 10
    assert report.total_macs == sum(r.macs for r in report.layers)
    assert rows["conv2"].facts.groups == 2
    assert (rows["fc"].facts.in_features, rows["fc"].facts.out_features) == (8, 10)
    # the facts speak PyTorch's vocabulary: pads [1, 1, 1, 1] are a (begin, end) pair per axis
    assert rows["conv1"].facts == LayerFacts(
        kernel=(3, 3), stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1,
        in_channels=3, out_channels=8, bias=True)
    assert rows["conv2"].facts == LayerFacts(
        kernel=(3, 3), stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=2,
        in_channels=8, out_channels=8, bias=False)
    assert rows["fc"].facts.bias and rows["proj"].facts == LayerFacts(
        in_features=10, out_features=4, bias=False)
    assert rows["bn1"].facts == LayerFacts(num_features=8)
    assert rows["relu"].facts == LayerFacts()


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
    with pytest.raises(InputShapeError) as info:
        inspect_onnx(path)
    assert str(info.value) == (f"{path}: input 'x' (N×3×H×W) has a symbolic dimension 2 (H); "
                               "give the input size with --input, e.g. --input 3x224x224")
    gray = _save(tmp_path, nodes, [], ["N", 1, "H", "W"], ["y"], name="gray.onnx")
    with pytest.raises(InputShapeError, match=r"\(N×1×H×W\) .* e\.g\. --input 1x224x224$"):
        inspect_onnx(gray)
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
    # the TorchScript exporter fixed the batch at 1: asking for 4 is an error, not a silent 1
    with pytest.raises(InputShapeError, match="fixes the batch at 1"):
        inspect_onnx(path, batch=4)
    assert inspect_onnx(path, batch=1).batch == 1


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


# --- options on a file archscope exported: lecture_mnist_cnn, fixed batch and symbolic batch ---

#: lecture_mnist_cnn's MACs per sample, by hand: output elements × (c_in·kh·kw) per conv and
#: out·in per dense layer.
MNIST_MACS = (
    32 * 26 * 26 * (1 * 3 * 3)  # conv1: 194,688
    + 64 * 11 * 11 * (32 * 3 * 3)  # conv2: 2,230,272
    + 64 * 3 * 3 * (64 * 3 * 3)  # conv3: 331,776
    + 64 * 576  # fc1: 36,864
    + 10 * 64  # fc2: 640
)


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(fixed batch 1, symbolic batch) exports of lecture_mnist_cnn, as `archscope export` and
    `archscope export --dynamic-batch` write them."""
    folder = tmp_path_factory.mktemp("mnist")
    files = []
    for dynamic in (False, True):
        torch.manual_seed(0)
        model = get_entry("lecture_mnist_cnn").build()
        path = folder / ("mnist_dyn.onnx" if dynamic else "mnist.onnx")
        export_onnx(model, path, (1, 28, 28), dynamic_batch=dynamic, verify=False)
        files.append(path)
    return files[0], files[1]


def _one_line_error(result: Result, code: int) -> str:
    """The CLI's stderr for a library error: one line, no traceback, nothing on stdout."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    return result.stderr


def test_input_must_agree_with_the_files_fixed_dims(mnist_files: tuple[Path, Path]) -> None:
    fixed, dynamic = mnist_files
    assert inspect_onnx(fixed, input_shape=(1, 28, 28)).input_shape == (1, 28, 28)  # agrees
    for path in (fixed, dynamic):  # the dynamic file's batch is symbolic, its 1×28×28 is not
        with pytest.raises(InputShapeError) as info:
            inspect_onnx(path, input_shape=(1, 32, 32))
        assert str(info.value) == (
            f"{path} fixes its input at 1×28×28; --input 1x32x32 contradicts it (only symbolic "
            "dimensions can be set)"
        )


def test_cli_input_contradicting_the_file(mnist_files: tuple[Path, Path]) -> None:
    fixed, _ = mnist_files
    result = CliRunner().invoke(main, ["summary", str(fixed), "--input", "1x32x32"])
    stderr = _one_line_error(result, 2)
    assert "fixes its input at 1×28×28; --input 1x32x32 contradicts it" in stderr


@pytest.fixture
def symbolic_hw(tmp_path: Path) -> Path:
    """x(N,C,H,W) → Conv 1→4 k3 → Reshape to a fixed [1, 144] (4·6·6: right for 8×8 only) →
    Gemm 144→2; and a second graph, Conv → Flatten → Gemm, where only the Gemm can object."""
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3])
    nodes = [
        conv,
        helper.make_node("Reshape", ["c", "target"], ["flat"], name="view"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("w", 4, 1, 3, 3),
        numpy_helper.from_array(np.array([1, 144], dtype=np.int64), "target"),
        _init("fc_w", 2, 144),
    ]
    return _save(tmp_path, nodes, inits, ["N", "C", "H", "W"], ["y"])


def test_inconsistent_shapes_name_the_node(symbolic_hw: Path, tmp_path: Path) -> None:
    report = inspect_onnx(symbolic_hw, input_shape=(1, 8, 8))  # the size the graph was built for
    assert report.find("view").output_shapes == ((1, 144),)
    # 10×10 → conv 4×8×8 = 256 values, reshaped to 1×144: ONNX's inference lets it through
    with pytest.raises(ForwardError) as info:
        inspect_onnx(symbolic_hw, input_shape=(1, 10, 10))
    assert str(info.value).startswith(
        f"{symbolic_hw}: view (Reshape): reshapes 1×4×8×8 (256 values) to 1×144 (144 values)"
    )
    with pytest.raises(ForwardError, match=r"conv \(Conv\): has 3 input channels \(1×3×8×8\).*expects 1;"):
        inspect_onnx(symbolic_hw, input_shape=(3, 8, 8))
    with pytest.raises(InputTooSmallError, match=r"conv \(Conv\): input 1×1×2×2 gives the empty"):
        inspect_onnx(symbolic_hw, input_shape=(1, 2, 2))
    # without a Reshape, the Gemm is where 4·8·8 = 256 features meet a 144-input weight
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Flatten", ["c"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["y"], name="fc", transB=1),
    ]
    path = _save(tmp_path, nodes, [_init("w", 4, 1, 3, 3), _init("fc_w", 2, 144)],
                 ["N", 1, "H", "W"], ["y"], name="flat.onnx")
    assert inspect_onnx(path, input_shape=(1, 8, 8)).total_macs == 4 * 6 * 6 * 9 + 2 * 144
    with pytest.raises(ForwardError, match=r"fc \(Gemm\): multiplies 1×256 by 2×144.*256 ≠ 144"):
        inspect_onnx(path, input_shape=(1, 10, 10))
    result = CliRunner().invoke(main, ["summary", str(path), "--input", "1x10x10"])
    assert "fc (Gemm)" in _one_line_error(result, 1)


def test_fixed_batch_refuses_another_batch(mnist_files: tuple[Path, Path]) -> None:
    fixed, _ = mnist_files
    assert inspect_onnx(fixed).batch == 1 and inspect_onnx(fixed, batch=1).batch == 1
    with pytest.raises(InputShapeError) as info:
        inspect_onnx(fixed, batch=8)
    assert str(info.value) == (
        f"{fixed} fixes the batch at 1 (input 'input' is 1×1×28×28); --batch 8 cannot change it; "
        "export the model again with a symbolic batch (archscope export --dynamic-batch)"
    )
    result = CliRunner().invoke(main, ["summary", str(fixed), "--batch", "8"])
    assert "--dynamic-batch" in _one_line_error(result, 2)


def test_cli_default_batch_keeps_a_fixed_batch_other_than_1(tmp_path: Path) -> None:
    # no --batch keeps the file's batch; an explicit one, 1 included, must agree with it
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], [],
                 [4, 3, 8, 8], ["y"])
    runner = CliRunner()
    result = runner.invoke(main, ["summary", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["batch"] == 4
    for batch in ("2", "1"):
        assert "fixes the batch at 4" in _one_line_error(
            runner.invoke(main, ["summary", str(path), "--batch", batch]), 2)
    with pytest.raises(InputShapeError, match="fixes the batch at 4"):
        load_report(str(path), batch=1)  # the library API too
    assert load_report(str(path)).batch == 4


def test_dynamic_batch_applies_everywhere(mnist_files: tuple[Path, Path]) -> None:
    fixed, dynamic = mnist_files
    one = inspect_onnx(fixed)
    eight = inspect_onnx(dynamic, batch=8)
    assert one.total_macs == MNIST_MACS == 2_794_240
    assert eight.batch == 8 and eight.input_shape == (1, 28, 28)
    assert eight.total_macs == 8 * one.total_macs == 22_353_920
    assert eight.macs_per_sample == one.total_macs
    assert eight.forward_flops == 2 * 8 * one.total_macs
    assert eight.output_shapes == ((8, 10),)
    by_name = {r.name: r for r in one.layers}
    for row in eight.layers:
        if row.name not in by_name:  # the shape arithmetic the exporter adds for a symbolic batch
            assert row.macs == 0 and row.type in {"Shape", "Squeeze", "Reshape", "Concat"}
            continue
        assert row.macs == 8 * by_name[row.name].macs, row.name
        (shape,) = row.output_shapes
        assert shape == (8, *by_name[row.name].output_shapes[0][1:]), row.name
    assert eight.total_params == one.total_params == 93_322


def test_cli_dynamic_batch(mnist_files: tuple[Path, Path]) -> None:
    _, dynamic = mnist_files
    runner = CliRunner()
    result = runner.invoke(main, ["summary", str(dynamic), "--batch", "8", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["batch"] == 8
    assert data["total_macs"] == 8 * MNIST_MACS and data["macs_per_sample"] == MNIST_MACS
    assert data["output_shapes"] == [[8, 10]]
    table = runner.invoke(main, ["summary", str(dynamic), "--batch", "8"])
    assert table.exit_code == 0 and table.stderr == ""
    assert "· batch 8" in table.stdout.splitlines()[0] and "MACs per batch of 8" in table.stdout


def test_freeze_applies_to_initializer_names(mnist_files: tuple[Path, Path]) -> None:
    fixed, _ = mnist_files
    report = inspect_onnx(fixed, freeze=["features"])
    # features.conv1..3 frozen: 320 + 18,496 + 36,928; classifier.fc1, fc2 trainable: 36,928 + 650
    assert report.non_trainable_params == 320 + 18_496 + 36_928 == 55_744
    assert report.trainable_params == 36_928 + 650 == 37_578
    assert report.total_params == 93_322
    assert (report.param_bytes, report.trainable_param_bytes) == (93_322 * 4, 37_578 * 4)
    assert [(r.type, r.params, r.trainable_params) for r in report.layers if r.params] == [
        ("Conv", 320, 0), ("Conv", 18_496, 0), ("Conv", 36_928, 0),
        ("Gemm", 36_928, 36_928), ("Gemm", 650, 650),
    ]
    # the same split as the PyTorch model's own parameters under the same names
    model = get_entry("lecture_mnist_cnn").build()
    assert sum(p.numel() for n, p in model.named_parameters() if n.startswith("features.")) \
        == report.non_trainable_params
    # the prefix rule: whole name components, a trailing dot, "*" for everything
    assert inspect_onnx(fixed, freeze=["classifier.fc2"]).trainable_params == 93_322 - 650
    assert inspect_onnx(fixed, freeze=["features."]).trainable_params == 37_578
    assert inspect_onnx(fixed, freeze=["*"]).trainable_params == 0
    with pytest.raises(ModelSourceError) as info:
        inspect_onnx(fixed, freeze=["feat"])  # not a whole component
    assert str(info.value) == (
        f"--freeze 'feat' matches no parameter of {fixed}; top-level names are: classifier, "
        "features"
    )


def test_cli_freeze(mnist_files: tuple[Path, Path]) -> None:
    fixed, _ = mnist_files
    runner = CliRunner()
    result = runner.invoke(main, ["summary", str(fixed), "--freeze", "features", "--format",
                                  "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["trainable_params"], data["non_trainable_params"]) == (37_578, 55_744)
    assert sum(layer["trainable"] for layer in data["layers"]) == 37_578
    assert "matches no parameter" in _one_line_error(  # a bad option value: exit code 2
        runner.invoke(main, ["summary", str(fixed), "--freeze", "nope"]), 2)


def test_num_classes_does_not_apply_to_an_onnx_file(mnist_files: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    fixed, _ = mnist_files
    with pytest.raises(ModelSourceError, match="--num-classes does not apply to an ONNX file"):
        load_report(str(fixed), num_classes=3)
    runner = CliRunner()
    for args in (["summary", str(fixed)], ["diagram", str(fixed), "-o", str(tmp_path / "m.dot")]):
        result = runner.invoke(main, [*args, "--num-classes", "3"])
        # an option that does not apply to an ONNX MODEL: a usage error, exit code 2
        assert "--num-classes does not apply to an ONNX file" in _one_line_error(result, 2)
    assert not (tmp_path / "m.dot").exists()


def test_activation_memory_is_said_to_be_unknown(mnist_files: tuple[Path, Path]) -> None:
    fixed, _ = mnist_files
    report = inspect_onnx(fixed)
    assert report.activation_bytes is None  # unknown, not 0 …
    assert any("activation memory is unknown" in n for n in report.notes)  # … and said so
    result = CliRunner().invoke(main, ["summary", str(fixed)])
    assert result.exit_code == 0
    assert "Note: ONNX file: training activation memory is unknown" in result.stdout
    (line,) = [s for s in result.stdout.splitlines() if s.startswith("Training activation memory")]
    assert line.split() == ["Training", "activation", "memory", "unknown", "(not", "traced)"]
    data = json.loads(CliRunner().invoke(main, ["summary", str(fixed), "--format", "json"]).stdout)
    assert data["activation_bytes"] is None


@pytest.mark.parametrize(("size", "kernel", "stride", "padding"), [(3, 2, 2, 1), (7, 3, 2, 1), (8, 3, 3, 0)])
def test_ceil_mode_pool_arithmetic_evaluates_to_its_shape(
    tmp_path: Path, size: int, kernel: int, stride: int, padding: int
) -> None:
    # PyTorch (and ONNX's pooling shape rule from opset 22) drop a ceil-mode window that would
    # start in the end padding; the expression must show that −1 and evaluate to the shape.
    from archscope.export import export_onnx
    from archscope.report import evaluate_formula

    pool = torch.nn.MaxPool2d(kernel, stride, padding=padding, ceil_mode=True)
    expected = pool(torch.zeros(1, 1, size, size)).shape[-1]  # PyTorch itself is the oracle
    export_onnx(torch.nn.Sequential(pool), tmp_path / "pool.onnx", (1, size, size), opset=22)
    (row,) = [r for r in inspect_onnx(tmp_path / "pool.onnx").layers if r.type == "MaxPool"]
    assert row.output_shape[-1] == expected
    expression, _, value = row.output_formula.partition(" = ")
    assert int(value) == expected and evaluate_formula(expression) == expected


def test_ceil_mode_pool_export_below_opset_22_names_the_fix(tmp_path: Path) -> None:
    from archscope.errors import ExportError
    from archscope.export import export_onnx

    pool = torch.nn.Sequential(torch.nn.MaxPool2d(2, 2, padding=1, ceil_mode=True))
    with pytest.raises(ExportError, match=r"checker rejected .* needs --opset 22 or newer$"):
        export_onnx(pool, tmp_path / "pool.onnx", (1, 3, 3))
    assert list(tmp_path.iterdir()) == []


def test_output_arithmetic_is_the_same_as_for_the_pytorch_model(tmp_path: Path) -> None:
    # one rule for both sources: every conv/pool of the exported ResNet-18 explains its output
    # size exactly as the trace of the PyTorch model does (stride 2, padding 3, ⌊⌋ …)
    from archscope.engine import inspect
    from archscope.export import export_onnx
    from archscope.registry import get_entry

    model = get_entry("resnet18").build()
    export_onnx(model, tmp_path / "r18.onnx", (3, 64, 64), verify=False)
    with torch.device("meta"):
        meta = get_entry("resnet18").build()
    traced = [r.output_formula for r in inspect(meta, (3, 64, 64)).layers if r.output_formula]
    read = [r.output_formula for r in inspect_onnx(tmp_path / "r18.onnx").layers
            if r.output_formula]
    assert read == traced and len(read) == 20 + 1  # 20 convs and the max-pool
    assert read[0] == "⌊(64+2·3−7)/2⌋+1 = 32"


def test_asymmetric_pads_are_written_begin_plus_end() -> None:
    from archscope.formulas import output_size

    # ONNX pads (0, 1): PyTorch pads the end by one and then pools
    padded = torch.nn.functional.pad(torch.zeros(1, 1, 1, 5), (0, 1))
    expected = torch.nn.functional.max_pool2d(padded, (1, 2), (1, 2)).shape[-1]
    assert output_size(5, 2, 2, (0, 1)) == (expected, "(5+0+1−2)/2+1 = 3") and expected == 3


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3)
        self.cls = nn.Linear(4, 10)
        self.box = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x).mean((2, 3))
        return {"logits": self.cls(h), "boxes": self.box(h)}


def test_several_outputs_keep_their_names(tmp_path: Path) -> None:
    # a dict model's keys survive export as output names and come back as the report's keys,
    # in the diagram too; the shapes are the PyTorch model's own
    model = _TwoHeads().eval()
    real = model(torch.zeros(1, 1, 8, 8))
    path = tmp_path / "heads.onnx"
    export_onnx(model, path, (1, 8, 8), verify=False)
    report = inspect_onnx(path)
    assert report.output_keys == ("logits", "boxes")
    assert report.output_shapes == (tuple(real["logits"].shape), tuple(real["boxes"].shape))
    data = json.loads(CliRunner().invoke(main, ["summary", str(path), "--format", "json"]).stdout)
    assert data["output_keys"] == ["logits", "boxes"]
    dot = CliRunner().invoke(main, ["diagram", str(path), "-o", "-"]).stdout
    assert "output logits" in dot and "output boxes" in dot
    # one output has no key to show
    export_onnx(nn.Sequential(nn.Conv2d(1, 2, 3)), tmp_path / "one.onnx", (1, 8, 8), verify=False)
    assert inspect_onnx(tmp_path / "one.onnx").output_keys == ()
