"""The batch axis the engine records for every shape, and how the table, markdown and diagram
show it.

Oracle: a real CPU forward (or onnxruntime run) of the same model at two batch sizes. The
dimension whose size follows the batch is the batch; the expected cell leaves it out where it is
first and writes it ``N`` where it is not. Nothing here re-uses the engine's rule to compute what
it expects.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from archscope import inspect
from archscope.cli import main
from archscope.diagram import build_diagram, render_dot
from archscope.engine.batch_axes import SHAPE_OPS, guess_batch_axis
from archscope.render import render
from archscope.render._columns import sample_shape, shape_cell
from archscope.source import load_report

PLAIN = "shapes without the batch dimension"
MARKED = "shapes without the batch dimension (N where it is not first)"


class Recurrent(nn.Module):
    """``nn.LSTM(10, 20, batch_first=True)``: output (N, T, 20), ``h_n``/``c_n`` (layers, N, 20)."""

    def __init__(self, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(10, 20, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class SeqFirst(nn.Module):
    """A batch-first input turned sequence-first for ``nn.MultiheadAttention(batch_first=False)``."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)  # (T, N, E)
        return self.mha(x, x, x)[0].transpose(0, 1)


class Folded(nn.Module):
    """``reshape(-1, 16)`` folds the batch into the first dimension: (N·T, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(-1, 16))


class FeatureSums(nn.Module):
    """``x.t().sum(1)``: one value per feature (10,), not per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).t().sum(1)


def _real_shapes(module: nn.Module, sample: tuple[int, ...], batch: int) -> list[tuple[int, ...]]:
    """The LSTM's three outputs from a real CPU forward, flattened as the report records them."""
    out, (h_n, c_n) = module(torch.randn(batch, *sample))
    return [tuple(t.shape) for t in (out, h_n, c_n)]


def _expected_cell(at: tuple[int, ...], other: tuple[int, ...]) -> str:
    """The cell for shape ``at``, given the same tensor's shape ``other`` at another batch."""
    moved = [i for i, (a, b) in enumerate(zip(at, other, strict=True)) if a != b]
    assert len(moved) == 1, (at, other)  # exactly one dimension follows the batch
    (b,) = moved
    dims = [str(d) for d in at]
    if b == 0:
        del dims[0]
    else:
        dims[b] = "N"
    return "×".join(dims)


def _table_row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(name + " "))


def _markdown_cells(text: str) -> dict[str, str]:
    """Layer name → Output shape cell of a markdown table."""
    cells = {}
    for line in text.split("\n\n")[1].splitlines()[2:]:
        name, _, shape, *_ = line.strip("| ").split(" | ")
        cells[name.replace("&nbsp;", "").strip("`")] = shape
    return cells


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_states_keep_their_layer_dimension(num_layers: int) -> None:
    torch.manual_seed(0)
    real = Recurrent(num_layers).lstm
    at4, at3 = _real_shapes(real, (5, 10), 4), _real_shapes(real, (5, 10), 3)
    assert at4 == [(4, 5, 20), (num_layers, 4, 20), (num_layers, 4, 20)]
    expected = ", ".join(_expected_cell(a, b) for a, b in zip(at4, at3, strict=True))
    assert expected == f"5×20, {num_layers}×N×20, {num_layers}×N×20"

    report = inspect(Recurrent(num_layers), (5, 10), batch=4)
    lstm = report.find("lstm")
    assert [tuple(s) for s in lstm.output_shapes] == at4  # the trace saw the real shapes
    assert shape_cell(lstm) == expected
    table = render(report, "table", width=None)
    assert re.search(rf"^lstm\s+LSTM\s+{re.escape(expected)}\s", _table_row(table, "lstm"))
    assert table.splitlines()[0].endswith(" · " + MARKED)
    # before: "5×20, 4×20, 4×20", the layers dimension dropped and the batch shown as a size


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_at_batch_1_marks_the_batch_of_its_states(num_layers: int) -> None:
    # At batch 1, h_n is (layers, 1, 20): for one layer both leading dimensions have the
    # batch's size, and only another batch size tells which one follows it.
    torch.manual_seed(0)
    real = Recurrent(num_layers).lstm
    at1, at2 = _real_shapes(real, (5, 10), 1), _real_shapes(real, (5, 10), 2)
    assert at1[1] == (num_layers, 1, 20)
    expected = ", ".join(_expected_cell(a, b) for a, b in zip(at1, at2, strict=True))
    assert expected == f"5×20, {num_layers}×N×20, {num_layers}×N×20"

    report = inspect(Recurrent(num_layers), (5, 10), batch=1)
    assert shape_cell(report.find("lstm")) == expected
    assert report.find("lstm").output_batch_axes == (0, 1, 1)
    assert render(report, "table", width=None).splitlines()[0].endswith(" · " + MARKED)
    # before: "5×20, 1×20, 1×20" for one layer, a leading 1 taken for the batch


class SeqFirstLSTM(nn.Module):
    """``nn.LSTM(16, 20)`` (sequence first) fed ``x.transpose(0, 1)``: (T, N, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(0, 1))
        return out


def test_sequence_first_lstm_where_the_batch_equals_the_sequence(tmp_path: Path) -> None:
    # --batch 7 --input 7x16: (7, 7, 16) after the transpose, two dimensions of the batch's
    # size. A real forward at batch 7 and 5 says which one follows the batch.
    torch.manual_seed(0)
    real = SeqFirstLSTM()
    outs = {b: real.lstm(torch.randn(b, 7, 16).transpose(0, 1)) for b in (7, 5)}
    shapes = {b: [tuple(t.shape) for t in (out, *states)] for b, (out, states) in outs.items()}
    assert shapes[7] == [(7, 7, 20), (1, 7, 20), (1, 7, 20)]
    expected = ", ".join(_expected_cell(a, b) for a, b in zip(shapes[7], shapes[5], strict=True))
    assert expected == "7×N×20, 1×N×20, 1×N×20"

    report = inspect(SeqFirstLSTM(), (7, 16), batch=7)
    cells = {r.name: shape_cell(r) for r in report.layers}
    assert cells == {"transpose": "7×N×16", "lstm": expected}
    assert report.find("lstm").input_batch_axes == (1,)
    assert report.output_batch_axes == (1,)
    # the CLI, as the user asks for it
    path = tmp_path / "seq.py"
    path.write_text("from torch import nn\n\n"
                    "class SeqFirstLSTM(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.lstm = nn.LSTM(16, 20)\n\n"
                    "    def forward(self, x):\n"
                    "        return self.lstm(x.transpose(0, 1))[0]\n")
    result = CliRunner().invoke(main, ["summary", f"{path}:SeqFirstLSTM", "--batch", "7",
                                       "--input", "7x16"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^lstm\s+LSTM\s+7×N×20, 1×N×20, 1×N×20\s", result.stdout, re.MULTILINE)
    assert re.search(r"^transpose\s+transpose\s+7×N×16\s", result.stdout, re.MULTILINE)
    assert MARKED in " ".join(result.stdout.splitlines()[:2])  # the title, wrapped at 100
    # before: "7×16" for the transpose and "7×20, 1×N×20, 1×N×20" for the LSTM: the leading 7
    # (the sequence) was taken for the batch


def test_sequence_first_transpose_marks_the_batch() -> None:
    torch.manual_seed(0)
    real = SeqFirst()
    shapes = {b: tuple(real.mha(*(torch.randn(b, 7, 16).transpose(0, 1),) * 3)[0].shape)
              for b in (3, 2)}
    assert shapes[3] == (7, 3, 16)
    expected = _expected_cell(shapes[3], shapes[2])
    assert expected == "7×N×16"

    report = inspect(SeqFirst(), (7, 16), batch=3)
    cells = [shape_cell(r) for r in report.layers]
    transpose_in, mha, _, transpose_out = report.layers
    assert transpose_in.output_shapes == ((7, 3, 16),)
    assert cells[0] == expected
    # the averaged attention weights lead with the batch: (3, 7, 7) → 7×7
    assert cells[1] == f"{expected}, 7×7" and mha.output_shapes == ((7, 3, 16), (3, 7, 7))
    assert cells[3] == "7×16" and transpose_out.output_shapes == ((3, 7, 16),)
    # before: "3×16" for (7, 3, 16), the sequence dropped


def test_diagram_edges_follow_the_table() -> None:
    for report in (inspect(SeqFirst(), (7, 16), batch=3),
                   inspect(Recurrent(2), (5, 10), batch=4)):
        d = build_diagram(report, fold=False)
        for e in d.edges:
            if e.src == "input":
                continue
            (producer,) = d.node(e.src).records
            rec = report.layers[producer]
            label = "×".join(map(str, e.shape or ())) or "scalar"
            # the first output is what flows on (the LSTM's h_n/c_n are not used)
            first = shape_cell(rec).split(", ")[0]
            assert label == first, e
    report = inspect(SeqFirst(), (7, 16), batch=3)
    d = build_diagram(report, fold=False)
    assert [e.shape for e in d.edges] == [(7, 16), (7, "N", 16), (7, "N", 16), (7, 16)]
    assert 'label=" 7×N×16"' in render_dot(report, depth=None, fold=False)


def test_markdown_shows_the_tables_shape_cells() -> None:
    reports = [load_report("lecture_mnist_cnn"), load_report("lecture_catsdogs_cnn", batch=2),
               inspect(Recurrent(), (5, 10), batch=4), inspect(SeqFirst(), (7, 16), batch=3)]
    for report in reports:
        markdown = render(report, "markdown")
        cells = _markdown_cells(markdown)
        assert cells == {r.name: shape_cell(r)
                         for r in report.layers}
        assert not any("[" in c for c in cells.values())
        # the same title as the table, on two lines Markdown joins into one
        title = render(report, "table", width=None).splitlines()[0]
        heading = " ".join(markdown.splitlines()[:2]).replace(f"**{report.model}**", report.model)
        assert heading == title
    mnist = _markdown_cells(render(reports[0], "markdown"))
    assert next(iter(mnist.values())) != "[1, 32, 26, 26]"
    assert "32×26×26" in mnist.values()


def test_titles_say_n_only_where_a_shape_marks_it() -> None:
    cnn = load_report("lecture_catsdogs_cnn", batch=2)
    assert render(cnn, "table", width=None).splitlines()[0].endswith(" · " + PLAIN)
    assert render(cnn, "markdown").splitlines()[1] == "· " + PLAIN
    rnn = inspect(Recurrent(), (5, 10), batch=4)
    assert render(rnn, "markdown").splitlines()[1] == "· " + MARKED
    # --depth 1 hides nothing here, and a hidden marked row would not count
    seq = inspect(SeqFirst(), (7, 16), batch=3)
    assert render(seq, "table", width=None, max_depth=1).splitlines()[0].endswith(MARKED)


def test_cnn_shapes_do_not_change_with_the_batch() -> None:
    one, four = load_report("lecture_mnist_cnn"), load_report("lecture_mnist_cnn", batch=4)
    assert [shape_cell(r) for r in one.layers] == [
        shape_cell(r) for r in four.layers]
    conv = next(r for r in four.layers if r.type == "Conv2d")
    assert (conv.output_shape, shape_cell(conv)) == (
        (4, 32, 26, 26), "32×26×26")


def test_a_folded_batch_is_shown_whole() -> None:
    torch.manual_seed(0)
    # the batch folded into 20; fc's 4 features happen to be the batch's size
    at4, at3 = Folded()(torch.randn(4, 5, 16)).shape, Folded()(torch.randn(3, 5, 16)).shape
    assert (at4, at3) == ((20, 4), (15, 4))  # the 4 does not follow the batch
    report = inspect(Folded(), (5, 16), batch=4)
    cells = {r.name: shape_cell(r) for r in report.layers}
    assert cells == {"reshape": "20×16", "fc": "20×4"}


def test_one_value_per_feature_is_not_one_per_sample() -> None:
    # (4, 10) → t() → (10, 4) → sum(1) → (10,): ten sums over the batch, not a value per sample
    assert FeatureSums()(torch.randn(4, 10)).shape == (10,)
    report = inspect(FeatureSums(), (10,), batch=4)
    cells = {r.name: shape_cell(r) for r in report.layers}
    assert cells == {"fc": "10", "t": "10×N", "sum": "10"}


def _guessed(shape: tuple[int, ...], producer_inputs: tuple[tuple[int, ...], ...] | None,
             batch: int, type_: str = "op") -> tuple[int | str, ...]:
    """The cell's dims where no second trace can tell the batch axis (a fixed-batch ONNX file,
    a forward that fails at another batch): the axis read from sizes alone."""
    axis = guess_batch_axis(shape, batch, producer_inputs, type_.lower() in SHAPE_OPS)
    return sample_shape(shape, axis)


@pytest.mark.parametrize(("shape", "batch", "expected"), [
    ((4, 32, 26, 26), 4, (32, 26, 26)),    # the batch first: left out
    ((1, 4, 20), 4, (1, "N", 20)),         # h_n: the batch second
    ((7, 5, 4), 4, (7, 5, "N")),           # permuted: the batch last
    ((4, 7, 4), 4, (7, 4)),                # dim 0 of the batch's size is the batch
    ((7, 4, 4), 4, (7, 4, 4)),             # two candidates, none first: whole
    ((20, 16), 4, (20, 16)),               # none: whole
    ((1, 7, 16), 1, (7, 16)),              # batch 1: a leading 1 is the batch
    ((7, 1, 16), 1, (7, "N", 16)),         # batch 1: the only 1
    ((16, 1, 1), 1, (16, 1, 1)),           # batch 1: several 1s, none first: whole
    ((), 4, ()),                           # a 0-d tensor
])
def test_sample_shape_rule(shape: tuple[int, ...], batch: int,
                           expected: tuple[int | str, ...]) -> None:
    assert _guessed(shape, ((batch, 8),), batch) == expected


def test_a_mark_needs_the_batch_in_an_input() -> None:
    # Linear(16, 4) on a folded (20, 16) at batch 4: no input has a 4, so the 4 is not the batch
    assert _guessed((20, 4), ((20, 16),), 4) == (20, 4)
    assert _guessed((5, 4), ((4, 5),), 4) == (5, "N")  # x.t()


def test_one_dimensional_shapes() -> None:
    # one value per sample: the batch's size, reduced from a tensor that leads with the batch
    assert _guessed((4,), ((4, 10),), 4) == ()
    # not the batch's size: whole, even when an input leads with that size
    assert _guessed((10,), ((10, 4),), 4) == (10,)
    # a shape op's output describes a shape
    assert _guessed((4,), ((4, 10),), 4, "Shape") == (4,)
    # the model input always carries the batch first
    assert _guessed((4, 3), None, 4) == (3,)


def test_the_recorded_axis_is_what_the_cell_leaves_out() -> None:
    assert sample_shape((4, 32, 26, 26), 0) == (32, 26, 26)
    assert sample_shape((1, 4, 20), 1) == (1, "N", 20)
    assert sample_shape((7, 4, 4), 2) == (7, 4, "N")
    assert sample_shape((20, 4), None) == (20, 4)
    assert sample_shape((4,), 0) == ()


def test_json_and_csv_keep_full_shapes() -> None:
    report = inspect(Recurrent(), (5, 10), batch=4)
    layers = {r["name"]: r for r in json.loads(render(report, "json"))["layers"]}
    assert layers["lstm"]["output_shapes"] == [[4, 5, 20], [1, 4, 20], [1, 4, 20]]
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert rows["lstm"]["output_shape"] == "4x5x20;1x4x20;1x4x20"


def test_summary_cli_shows_the_lstm_states(tmp_path: Path) -> None:
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\n"
                    "class RNNy(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.lstm = nn.LSTM(10, 20, batch_first=True)\n"
                    "        self.fc = nn.Linear(20, 2)\n\n"
                    "    def forward(self, x):\n"
                    "        o, _ = self.lstm(x)\n"
                    "        return self.fc(o[:, -1])\n")
    for fmt, row in (("table", r"^lstm\s+LSTM\s+5×20, 1×N×20, 1×N×20\s"),
                     ("markdown", r"^\| `lstm` \| LSTM \| 5×20, 1×N×20, 1×N×20 \|")):
        result = CliRunner().invoke(main, ["summary", f"{path}:RNNy", "--input", "5x10",
                                           "--batch", "4", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert re.search(row, result.stdout, re.MULTILINE), result.stdout
        assert "4×20" not in result.stdout


# --- the engine's second trace ---------------------------------------------------------------


class Counted(nn.Module):
    """A small CNN that counts its forwards in a list outside itself (inspect leaves every
    attribute of the model as it found it, a counter included)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _FORWARDS.append(self)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


_FORWARDS: list[nn.Module] = []


def _forwards(model: nn.Module) -> int:
    return sum(m is model for m in _FORWARDS)


def test_a_second_trace_only_where_a_shape_does_not_say() -> None:
    # batch 4: every shape leads with the batch and has no other 4: one forward
    model = Counted()
    report = inspect(model, (3, 8, 8), batch=4)
    assert _forwards(model) == 1
    assert all(axes == (0,) for r in report.layers
               for axes in (r.input_batch_axes, r.output_batch_axes))
    # batch 1: any size-1 dimension could be the batch; a second forward at batch 2 says which
    model = Counted()
    report = inspect(model, (3, 8, 8), batch=1)
    assert _forwards(model) == 2
    assert [r.output_batch_axes for r in report.layers] == [(0,)] * 4  # conv relu flatten fc
    assert report.output_batch_axes == (0,)


class FixedBatch(nn.Module):
    """``x.view(4, 16).t()``: runs only at batch 4, so no second trace can tell the axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(4, 16).t()


def test_a_forward_that_fixes_its_batch_is_read_from_sizes() -> None:
    with pytest.raises(RuntimeError):
        FixedBatch()(torch.randn(5, 16))  # the second trace's batch fails for real too
    report = inspect(FixedBatch(), (16,), batch=4)
    # (16, 4): the only 4 came in with the batch (the transposed input leads with it)
    assert {r.name: shape_cell(r) for r in report.layers} == {"view": "16", "t": "16×N"}


def test_json_carries_the_batch_axes() -> None:
    report = inspect(Recurrent(), (5, 10), batch=4)
    data = json.loads(render(report, "json"))
    layers = {r["name"]: r for r in data["layers"]}
    assert layers["lstm"]["output_batch_axes"] == [0, 1, 1]
    assert layers["lstm"]["input_batch_axes"] == [0]
    assert data["output_batch_axes"] == [0]


def _transpose_graph(tmp_path: Path, batch: int | str) -> Path:
    """x (N, 4, 8) → Transpose(1, 0, 2) → (4, N, 8) → Relu: at N = 4 two dimensions are 4."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[1, 0, 2]),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / f"seq_{batch}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_symbolic_batch_gets_its_axis_from_a_second_shape_inference(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = _transpose_graph(tmp_path, "N")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    at = {b: session.run(None, {"x": torch.randn(b, 4, 8).numpy()})[0].shape for b in (4, 5)}
    expected = _expected_cell(at[4], at[5])
    assert expected == "4×N×8"

    report = load_report(str(path), batch=4)
    assert [shape_cell(r) for r in report.layers] == [expected, expected]
    assert report.find("transpose").input_batch_axes == (0,)
    assert report.output_batch_axes == (1,)


def test_onnx_fixed_batch_is_read_from_sizes(tmp_path: Path) -> None:
    # The file fixes the batch at 4: no other batch can be inferred, so the sizes decide, and
    # (4, 4, 8) reads as batch first, as before the axis was recorded.
    report = load_report(str(_transpose_graph(tmp_path, 4)))
    assert [shape_cell(r) for r in report.layers] == ["4×8", "4×8"]
