"""``archscope diagram``: the DOT graph built from a Report, its rendering and the command.

Oracles: hand-built reports whose graph is known, the engine's own records for shapes (the
diagram must not re-derive them), the published parameter totals, and the file formats' magic
bytes / XML parsers for rendered output.
"""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from archscope.cli import main
from archscope.diagram import (
    Diagram,
    build_diagram,
    choose_depth,
    default_depth,
    describe_hparams,
    draw,
    kind_of,
    render_dot,
)
from archscope.errors import RenderError
from archscope.report import MODEL_INPUT, LayerFacts, LayerRecord, Report

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")


# ---------------------------------------------------------------------------------------------
# Hand-built reports (no torch): the graph semantics
# ---------------------------------------------------------------------------------------------


def _rec(index: int, name: str, type_: str, depth: int, parent: int | None, inputs: tuple[int, ...],
         shape: tuple[int, ...], params: int = 0, *, kind: str = "module", leaf: bool = True,
         facts: LayerFacts | None = None,
         in_shapes: tuple[tuple[int, ...], ...] | None = None) -> LayerRecord:
    in_shapes = in_shapes if in_shapes is not None else ()
    return LayerRecord(
        index=index, name=name, type=type_, kind=kind, depth=depth, parent=parent, is_leaf=leaf,
        input_shapes=in_shapes, output_shapes=(shape,),
        params=params, trainable_params=params, param_formula="", output_formula="", macs=0,
        input_batch_axes=(0,) * len(in_shapes), output_batch_axes=(0,),
        facts=facts or LayerFacts(), inputs=inputs if leaf else (),
    )


def _report(layers: list[LayerRecord], outputs: tuple[int, ...], name: str = "toy") -> Report:
    total = sum(r.params for r in layers)
    out_shape = layers[outputs[0]].output_shapes[0]
    return Report(
        model=name, model_type="Toy", input_shape=(8, 16, 16), batch=1, total_params=total,
        trainable_params=total, non_trainable_params=0, total_macs=0, forward_flops=0,
        backward_flops=None, param_bytes=4 * total, trainable_param_bytes=4 * total,
        buffer_bytes=0, activation_bytes=0, output_shapes=(out_shape,), output_batch_axes=(0,),
        outputs=outputs, layers=tuple(layers),
    )


def _residual_toy() -> Report:
    """stem conv → two residual blocks (the first with a 1×1 downsample) → flatten → fc.

    block: conv → bn → relu → conv → (+ identity or downsample) → relu
    """
    x = (1, 8, 16, 16)
    y = (1, 16, 8, 8)
    conv = LayerFacts(kernel=(3, 3), stride=(1, 1), padding=((1, 1), (1, 1)), in_channels=8,
                      out_channels=8, groups=1)
    layers = [
        _rec(0, "stem", "Conv2d", 1, None, (MODEL_INPUT,), x, 584, facts=conv),
        _rec(1, "blocks", "Sequential", 1, None, (), y, leaf=False),
        # block 0 (downsamples 8×16×16 → 16×8×8)
        _rec(2, "blocks.0", "Block", 2, 1, (), y, leaf=False),
        _rec(3, "blocks.0.conv1", "Conv2d", 3, 2, (0,), y, 1168,
             facts=replace(conv, stride=(2, 2), out_channels=16)),
        _rec(4, "blocks.0.bn", "BatchNorm2d", 3, 2, (3,), y, 32),
        _rec(5, "blocks.0.relu", "ReLU", 3, 2, (4,), y),
        _rec(6, "blocks.0.conv2", "Conv2d", 3, 2, (5,), y, 2320),
        _rec(7, "blocks.0.down", "Sequential", 3, 2, (), y, leaf=False),
        _rec(8, "blocks.0.down.0", "Conv2d", 4, 7, (0,), y, 144),
        _rec(9, "blocks.0.add", "add", 3, 2, (6, 8), y, kind="function", in_shapes=(y, y)),
        _rec(10, "blocks.0.relu", "ReLU", 3, 2, (9,), y, **{}),
        # block 1 (identity skip)
        _rec(11, "blocks.1", "Block", 2, 1, (), y, leaf=False),
        _rec(12, "blocks.1.conv1", "Conv2d", 3, 11, (10,), y, 2320),
        _rec(13, "blocks.1.bn", "BatchNorm2d", 3, 11, (12,), y, 32),
        _rec(14, "blocks.1.relu", "ReLU", 3, 11, (13,), y),
        _rec(15, "blocks.1.conv2", "Conv2d", 3, 11, (14,), y, 2320),
        _rec(16, "blocks.1.add", "add", 3, 11, (15, 10), y, kind="function", in_shapes=(y, y)),
        _rec(17, "blocks.1.relu", "ReLU", 3, 11, (16,), y),
        _rec(18, "flatten", "flatten", 1, None, (17,), (1, 1024), kind="function"),
        _rec(19, "fc", "Linear", 1, None, (18,), (1, 10), 10250,
             facts=LayerFacts(in_features=1024, out_features=10)),
    ]
    return _report(layers, (19,))


def _merges(d: Diagram) -> list[str]:
    return [n.id for n in d.nodes if n.role == "merge"]


def test_kinds_come_from_a_type_table() -> None:
    assert kind_of("Conv2d") == "conv"
    assert kind_of("BatchNorm2d") == "norm"
    assert kind_of("ReLU") == "activation"
    assert kind_of("MaxPool2d") == "pool"
    assert kind_of("Linear") == "linear"
    assert kind_of("Dropout") == "dropout"
    assert kind_of("add") == "op"
    # ONNX operator names flow through the same table.
    assert kind_of("Gemm") == "linear"
    assert kind_of("BatchNormalization") == "norm"
    assert kind_of("MyFancyLayer") == "other"


def test_hparams_text() -> None:
    conv = _rec(0, "c", "Conv2d", 1, None, (MODEL_INPUT,), (1, 64, 112, 112), facts=LayerFacts(
        in_channels=3, out_channels=64, kernel=(7, 7), stride=(2, 2),
        padding=((3, 3), (3, 3)), dilation=(1, 1), groups=1))
    assert describe_hparams(conv) == "7×7 s2 p3 · 3→64"
    pool = _rec(0, "p", "MaxPool2d", 1, None, (MODEL_INPUT,), (1, 64, 56, 56),
                facts=LayerFacts(kernel=(3, 3), stride=(2, 2), padding=((1, 1), (1, 1))))
    assert describe_hparams(pool) == "3×3 s2 p1"
    fc = _rec(0, "f", "Linear", 1, None, (MODEL_INPUT,), (1, 10),
              facts=LayerFacts(in_features=512, out_features=10))
    assert describe_hparams(fc) == "512→10"
    drop = _rec(0, "d", "Dropout", 1, None, (MODEL_INPUT,), (1, 10), facts=LayerFacts(p=0.5))
    assert describe_hparams(drop) == "p=0.5"


def test_full_depth_without_folding_draws_every_leaf() -> None:
    report = _residual_toy()
    d = build_diagram(report, depth=4, fold=False)
    assert len(d.layer_nodes) == len(report.leaves())
    assert d.total_params == report.total_params
    # The residual adds: two producers each; the skip edges are dashed, the main ones not.
    for merge in _merges(d):
        edges = d.in_edges(merge)
        assert len(edges) == 2
        assert sorted(e.skip for e in edges) == [False, True]
    skip_sources = {e.src for e in d.edges if e.skip}
    assert skip_sources == {"r0", "r8", "r10"}  # stem → down.0, down.0 → add, block0 out → add


def test_depth_two_keeps_merges_and_downsample_visible() -> None:
    report = _residual_toy()
    d = build_diagram(report, depth=2, fold=False)
    titles = [n.title for n in d.layer_nodes]
    # block 0: main path, downsample branch, add (+ its ReLU); block 1: main path, add.
    assert titles == ["Conv2d", "Block", "down", "add + ReLU", "Block", "add + ReLU", "flatten",
                      "Linear"]
    down = next(n for n in d.nodes if n.title == "down")
    assert down.params == 144
    assert [e.skip for e in d.in_edges(down.id)] == [True]
    for merge in _merges(d):
        assert len(d.in_edges(merge)) == 2
    main0 = next(n for n in d.nodes if n.name == "blocks.0")
    assert main0.params == 1168 + 32 + 2320
    assert d.total_params == report.total_params
    # Edge shapes come from the records, batch dimension dropped.
    assert {e.shape for e in d.in_edges(_merges(d)[0])} == {(16, 8, 8)}


def test_depth_one_collapses_containers_whole() -> None:
    report = _residual_toy()
    d = build_diagram(report, depth=1, fold=False)
    assert [n.title for n in d.layer_nodes] == ["Conv2d", "blocks", "flatten", "Linear"]
    blocks = d.node("c1")
    assert blocks.params == sum(r.params for r in report.layers[2:18])
    assert [(e.src, e.dst, e.shape) for e in d.edges] == [
        ("input", "r0", (8, 16, 16)), ("r0", "c1", (8, 16, 16)), ("c1", "r18", (16, 8, 8)),
        ("r18", "r19", (1024,)), ("r19", "output", (10,)),
    ]
    assert not any(e.skip for e in d.edges)


def test_fold_fuses_norm_and_activation_into_the_layer_before() -> None:
    report = _residual_toy()
    d = build_diagram(report, depth=4, fold=True)
    titles = [n.title for n in d.layer_nodes]
    assert "Conv2d + BN + ReLU" in titles
    assert "BatchNorm2d" not in titles and "ReLU" not in titles
    assert "add + ReLU" in titles
    assert d.total_params == report.total_params
    assert len(d.layer_nodes) < len(build_diagram(report, depth=4, fold=False).layer_nodes)


def test_fold_counts_identical_consecutive_layers() -> None:
    x = (1, 8, 4, 4)
    conv = LayerFacts(kernel=(3, 3), in_channels=8, out_channels=8)
    layers = [
        _rec(i, f"f.{i}", "Conv2d", 1, None, (i - 1 if i else MODEL_INPUT,), x, 584, facts=conv,
             in_shapes=(x,))
        for i in range(4)
    ]
    report = _report(layers, (3,))
    folded = build_diagram(report, fold=True)
    assert len(folded.layer_nodes) == 1
    node = folded.layer_nodes[0]
    assert (node.count, node.params, node.name) == (4, 4 * 584, "f.0–3")
    assert "×4" in render_dot(report, fold=True)
    assert len(build_diagram(report, fold=False).layer_nodes) == 4


def test_dot_is_deterministic_and_well_formed() -> None:
    report = _residual_toy()
    first = render_dot(report, depth=2)
    assert first == render_dot(report, depth=2)
    assert first.startswith('digraph "toy" {') and first.rstrip().endswith("}")
    assert "style=dashed" in first  # the skip edges
    assert "rankdir=LR" in render_dot(report, depth=2, rankdir="LR")
    with pytest.raises(ValueError):
        render_dot(report, rankdir="BT")


def test_draw_says_what_it_drew() -> None:
    report = _residual_toy()
    # The deepest record is blocks.0.down.0: blocks (1) → blocks.0 (2) → down (3) → down.0 (4).
    assert report.find("blocks.0.down.0").depth == 4
    drawing = draw(report, depth=9, fold=False)
    assert (drawing.depth, drawing.deepest, drawing.fmt) == (4, 4, "dot")
    # 20 records less 4 containers (blocks, blocks.0, blocks.0.down, blocks.1): 16 leaves.
    assert drawing.nodes == len(report.leaves()) == 16
    assert drawing.source == render_dot(report, depth=9, fold=False)
    # PNG output carries its resolution; vector formats and DOT do not.
    assert "dpi=110" in draw(report, depth=2, fmt="png").source
    assert "dpi=" not in draw(report, depth=2, fmt="svg").source
    with pytest.raises(ValueError):
        draw(report, rankdir="RL")


def test_fuse_and_fold_are_steps_over_values() -> None:
    """The steps return new nodes and edges; what they were given stays as it was."""
    import copy

    from archscope.diagram.fold import fold_runs
    from archscope.diagram.fuse import fuse

    report = _residual_toy()
    plain = build_diagram(report, depth=4, fold=False)
    nodes, edges = list(plain.layer_nodes), list(plain.edges)
    before = copy.deepcopy((nodes, edges))
    fused_nodes, fused_edges = fuse(report, nodes, edges)
    folded_nodes, _ = fold_runs(fused_nodes, fused_edges)
    assert (nodes, edges) == before
    # 16 leaves − 2·2 (BN, ReLU into each block's conv1) − 2 (ReLU into each add) = 10 nodes.
    assert len(fused_nodes) == 10
    assert sum(n.params for n in folded_nodes) == report.total_params


def test_onnx_and_pytorch_convs_read_alike(tmp_path: Path) -> None:
    """ONNX pads four numbers (begin, begin, end, end) where PyTorch pads two: one label."""
    import numpy as np
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from archscope import inspect
    from archscope.engine import inspect_onnx

    weight = numpy_helper.from_array(np.zeros((8, 2, 3, 3), dtype=np.float32), "W")
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv", kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], strides=[2, 2], group=2)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])], [weight],
    )
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (from_onnx,) = inspect_onnx(path).leaves()
    conv = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False)
    (from_torch,) = inspect(conv, (4, 8, 8)).leaves()
    # kernel 3×3, stride 2, padding 1, 4→8 channels, 2 groups
    assert describe_hparams(from_onnx) == describe_hparams(from_torch) == "3×3 s2 p1 · 4→8 · g2"


# ---------------------------------------------------------------------------------------------
# Real reports from the engine
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    from archscope.source import load_report

    return {name: load_report(name) for name in ("lecture_mnist_cnn", "resnet18", "resnet50",
                                                  "vgg16")}


@pytest.mark.parametrize("name", ["lecture_mnist_cnn", "resnet18"])
def test_golden_dot(reports: dict[str, Report], golden, name: str) -> None:
    golden.check(f"diagram_{name}_depth2.dot", render_dot(reports[name], depth=2))


def test_resnet50_depth2_structure(reports: dict[str, Report]) -> None:
    report = reports["resnet50"]
    d = build_diagram(report, depth=2, fold=False)
    layers = report.layers
    merges = [n for n in d.nodes if n.role == "merge"]
    assert len(merges) == 16  # 3 + 4 + 6 + 3 bottleneck blocks
    for m in merges:
        edges = d.in_edges(m.id)
        assert len(edges) == 2
        assert sorted(e.skip for e in edges) == [False, True]
        add = next(layers[i] for i in m.records if layers[i].type == "add")
        # Edge labels are the engine's shapes (batch dropped), not re-derived.
        assert sorted(e.shape for e in edges) == sorted(s[1:] for s in add.input_shapes)
    downsamples = [n for n in d.nodes if n.name.endswith(".downsample")]
    assert [n.name for n in downsamples] == [f"layer{i}.0.downsample" for i in range(1, 5)]
    for n in downsamples:
        (edge_in,) = d.in_edges(n.id)
        (edge_out,) = d.out_edges(n.id)
        assert edge_in.skip and edge_out.skip
        assert d.node(edge_out.dst).role == "merge"
        record = report.find(n.name)
        assert edge_out.shape == record.output_shape[1:]
        assert n.params == sum(r.params for r in layers if r.name.startswith(n.name + "."))
    blocks = [n for n in d.nodes if n.title == "Bottleneck"]
    assert len(blocks) == 16
    # Every edge's label is the output shape of a record the source node draws.
    for e in d.edges:
        if e.src == "input":
            assert e.shape == report.input_shape
            continue
        produced = {layers[i].output_shape[1:] for i in d.node(e.src).records if layers[i].is_leaf}
        assert e.shape in produced
    assert d.total_params == report.total_params == 25_557_032

    folded = build_diagram(report, depth=2, fold=True)
    assert len(folded.layer_nodes) < len(d.layer_nodes)
    assert folded.total_params == report.total_params
    assert sorted(n.count for n in folded.nodes if n.title == "Bottleneck" and n.count > 1) == [
        2, 2, 3, 5]


def test_resnet50_depth1_is_stem_stages_head(reports: dict[str, Report]) -> None:
    d = build_diagram(reports["resnet50"], depth=1, fold=True)
    assert [n.title for n in d.layer_nodes] == [
        "Conv2d + BN + ReLU", "MaxPool2d", "layer1", "layer2", "layer3", "layer4",
        "AdaptiveAvgPool2d", "flatten", "Linear",
    ]
    assert not any(e.skip for e in d.edges)
    assert d.total_params == 25_557_032


def test_full_depth_draws_every_layer(reports: dict[str, Report]) -> None:
    report = reports["resnet50"]
    d = build_diagram(report, depth=4, fold=False)
    assert len(d.layer_nodes) == len(report.leaves())


@pytest.mark.parametrize(("name", "depth"), [("resnet50", 2), ("vgg16", 2), ("resnet18", 2),
                                              ("lecture_mnist_cnn", 2)])
def test_default_drawings_fit_one_page(reports: dict[str, Report], name: str, depth: int) -> None:
    report = reports[name]
    assert default_depth(report) == depth
    d = build_diagram(report, depth=depth)
    assert len(d.layer_nodes) <= 40 and d.ranks <= 26
    assert d.total_params == report.total_params


def _dot_nodes(dot: str) -> list[str]:
    """The node ids a DOT source declares (``  r3 [label=…];``; not a frame's ``graph [``)."""
    return re.findall(r"^\s+(?!graph )(\w+) \[label=", dot, re.MULTILINE)


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_no_fold_without_depth_draws_every_layer(reports: dict[str, Report], name: str) -> None:
    # --no-fold asks for every record: full depth, one node per leaf layer or op of the report,
    # plus the input node and one node per model output.
    report = reports[name]
    leaves = [r for r in report.leaves() if r.output_shapes]
    result = CliRunner().invoke(main, ["diagram", name, "--no-fold", "-o", "-"])
    assert result.exit_code == 0, result.output
    deepest = max(r.depth for r in report.layers)
    assert f"{name}: depth {deepest} of {deepest}, {len(leaves)} nodes\n" == result.stderr
    assert len(_dot_nodes(result.stdout)) == len(leaves) + 1 + len(report.output_shapes)
    assert render_dot(report, fold=False) == result.stdout
    # An explicit depth still wins; folding keeps the one-page default.
    assert len(build_diagram(report, depth=1, fold=False).layer_nodes) < len(leaves)
    assert choose_depth(report, 1, fold=False) == 1
    assert choose_depth(report, None, fold=True) == default_depth(report) == 2


def test_vgg16_folds_repeated_convs(reports: dict[str, Report]) -> None:
    d = build_diagram(reports["vgg16"], depth=2)
    counts = [(n.title, n.count) for n in d.layer_nodes if n.count > 1]
    assert counts == [("Conv2d + ReLU", 2), ("Conv2d + ReLU", 2), ("Conv2d + ReLU", 3)]
    assert d.total_params == 138_357_544


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("ext", ["svg", "png", "pdf", "dot", "gv"])
def test_write_diagram_formats(reports: dict[str, Report], tmp_path: Path, ext: str) -> None:
    from archscope.diagram import write_diagram

    path = write_diagram(reports["lecture_mnist_cnn"], tmp_path / f"m.{ext}")
    data = path.read_bytes()
    if ext == "svg":
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        assert "Conv2d" in data.decode()
    elif ext == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    elif ext == "pdf":
        assert data.startswith(b"%PDF")
    else:
        assert data.decode().startswith('digraph "lecture_mnist_cnn"')
    assert [p.name for p in tmp_path.iterdir()] == [f"m.{ext}"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_unknown_extension(reports: dict[str, Report], tmp_path: Path) -> None:
    from archscope.diagram import write_diagram

    with pytest.raises(RenderError, match=r"\.svg, \.png"):
        write_diagram(reports["lecture_mnist_cnn"], tmp_path / "m.jpg")


def test_missing_dot_names_the_fix(reports: dict[str, Report], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from archscope.diagram import write_diagram

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RenderError) as info:
        write_diagram(reports["lecture_mnist_cnn"], tmp_path / "m.svg")
    message = str(info.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert not (tmp_path / "m.svg").exists()
    # DOT source needs no Graphviz.
    assert write_diagram(reports["lecture_mnist_cnn"], tmp_path / "m.dot").exists()


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def test_cli_stdout_is_dot() -> None:
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('digraph "lecture_mnist_cnn" {')
    assert result.stdout.rstrip().endswith("}")
    assert "lecture_mnist_cnn: depth 2 of 2" in result.stderr
    assert "digraph" not in result.stderr


@needs_dot
def test_cli_default_file_is_svg_in_cwd(tmp_path: Path) -> None:
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as cwd:
        result = runner.invoke(main, ["diagram", "lecture_mnist_cnn", "--rankdir", "LR"])
        assert result.exit_code == 0, result.output
        svg = Path(cwd) / "lecture_mnist_cnn.svg"
        assert ET.fromstring(svg.read_bytes()).tag.endswith("svg")
    assert result.stdout == ""
    assert "wrote lecture_mnist_cnn.svg" in result.stderr


@needs_dot
def test_cli_png_with_options(tmp_path: Path) -> None:
    out = tmp_path / "r.png"
    result = CliRunner().invoke(main, ["diagram", "resnet18", "-o", str(out), "--depth", "1",
                                       "--no-fold", "--input", "3x64x64", "--num-classes", "7"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")
    assert re.search(r"resnet18: depth 1 of \d, 11 nodes", result.stderr)


def test_cli_num_classes_reaches_the_edges() -> None:
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "-o", "-",
                                       "--num-classes", "7"])
    assert result.exit_code == 0, result.output
    assert 'label=" 7"' in result.stdout


def test_cli_missing_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import archscope.diagram.graphviz

    monkeypatch.setattr(archscope.diagram.graphviz, "find_dot", lambda: None)
    out = tmp_path / "m.pdf"
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Graphviz's `dot` program is not on PATH")
    assert "apt-get install graphviz" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()
    dot_file = tmp_path / "m.gv"
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "-o", str(dot_file)])
    assert result.exit_code == 0, result.output
    assert dot_file.read_text().startswith("digraph")


def test_cli_missing_dot_fails_before_loading_the_model(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import archscope.diagram.graphviz

    # With DOT output the unknown model is what fails …
    result = CliRunner().invoke(main, ["diagram", "no_such_model", "-o", str(tmp_path / "m.dot")])
    assert result.exit_code == 1 and "no_such_model" in result.stderr
    # … without Graphviz, SVG output fails first: the model is never looked up.
    monkeypatch.setattr(archscope.diagram.graphviz, "find_dot", lambda: None)
    result = CliRunner().invoke(main, ["diagram", "no_such_model", "-o", str(tmp_path / "m.svg")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Graphviz's `dot` program is not on PATH")
    assert "no_such_model" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_path_is_one_error(tmp_path: Path) -> None:
    from archscope.diagram import write_diagram

    target = tmp_path / "missing" / "m.dot"
    with pytest.raises(RenderError, match=r"^cannot write .*m\.dot: .*; choose another path"):
        write_diagram(_residual_toy(), target)
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "-o", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot write {target}: ")
    assert "Traceback" not in result.output


def test_cli_bad_extension_and_rankdir(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.jpeg")])
    assert result.exit_code == 2  # a bad option value: a usage error
    assert "cannot tell the diagram format" in result.stderr
    result = CliRunner().invoke(main, ["diagram", "lecture_mnist_cnn", "--rankdir", "BT"])
    assert result.exit_code == 2


def test_onnx_reports_flow_through_the_same_code(tmp_path: Path) -> None:
    """A flat ONNX graph (no containers): residual add found, skip dashed, ops coloured."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from archscope.source import load_report

    weight = numpy_helper.from_array(np.zeros((4, 4, 3, 3), dtype=np.float32), "W")
    bias = numpy_helper.from_array(np.zeros((4,), dtype=np.float32), "B")
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "x"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "residual.onnx"
    onnx.save(model, str(path))

    report = load_report(str(path))
    d = build_diagram(report, fold=False)
    assert [n.kind for n in d.layer_nodes] == ["conv", "activation", "op"]
    (merge,) = [n for n in d.nodes if n.role == "merge"]
    edges = d.in_edges(merge.id)
    assert sorted((e.src, e.skip) for e in edges) == [("input", True), (d.layer_nodes[1].id, False)]
    assert {e.shape for e in edges} == {(4, 8, 8)}
    assert d.total_params == report.total_params == 4 * 4 * 9 + 4
    folded = build_diagram(report, fold=True)
    assert [n.title for n in folded.layer_nodes] == ["Conv + Relu", "Add"]


def test_default_file_names(tmp_path: Path) -> None:
    from archscope.commands.diagram import _file_stem

    spec = tmp_path / "small.spec"
    spec.write_text("28x28x1 conv8 k3\n")
    assert _file_stem("resnet50") == "resnet50"
    assert _file_stem("models/my_net.py:Net") == "my_net_Net"
    assert _file_stem("pkg.module:build") == "pkg.module_build"
    assert _file_stem("exports/r18.onnx") == "r18"
    assert _file_stem(f"spec:{spec}") == "small"
    assert _file_stem("spec:28x28x1 conv32 k3 → maxpool2 → " + "dense10 → " * 40) == "spec"


def _tiny_models() -> dict[str, object]:
    import torch
    from torch import nn

    class Inception(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b1 = nn.Conv2d(3, 8, 1)
            self.b2 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))
            self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(3, 8, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)

    class Dense(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1)
            self.c2 = nn.Conv2d(7, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.cat([x, self.c1(x)], 1)
            return torch.cat([x, self.c2(x)], 1)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inc = Inception()
            self.dense = nn.Sequential(nn.Conv2d(24, 3, 1), Dense())
            self.cls = nn.Parameter(torch.zeros(11))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dense(self.inc(x)).mean((2, 3)) + self.cls

    return {"net": Net()}


def test_parallel_branches_and_dense_chains() -> None:
    """Inception branches stay separate nodes in a frame; a DenseNet-like chain of cats expands
    instead of becoming a cycle; a model's own parameter is named in the title."""
    from archscope.engine import inspect

    report = inspect(_tiny_models()["net"], (3, 8, 8), name="net")
    d = build_diagram(report, depth=1, fold=False)
    inc = report.find("inc").index
    assert inc in d.clusters
    in_frame = [n for n in d.nodes if n.cluster == inc]
    assert sorted(n.name for n in in_frame) == ["inc.b1", "inc.b2", "inc.b3", "inc.cat"]
    (cat,) = [n for n in in_frame if n.role == "merge"]
    assert len(d.in_edges(cat.id)) == 3 and not any(e.skip for e in d.edges)
    order = {n.id: i for i, n in enumerate(d.nodes)}
    assert all(order[e.src] < order[e.dst] for e in d.edges)  # acyclic, in call order
    assert [r.name for r in d.outside] == ["(Net)"]
    assert "11 params outside the data flow: (Net)" in render_dot(report, depth=1)
    # At depth 2 the Dense block's main path reads its own cat: it is framed, not collapsed.
    d2 = build_diagram(report, depth=2, fold=False)
    dense = report.find("dense.1").index
    assert [n.title for n in d2.nodes if n.cluster == dense] == ["Conv2d", "cat", "Conv2d", "cat"]
    order = {n.id: i for i, n in enumerate(d2.nodes)}
    assert all(order[e.src] < order[e.dst] for e in d2.edges)
    for depth in (1, 2, 3):
        for fold in (True, False):
            assert build_diagram(report, depth=depth, fold=fold).total_params == report.total_params


def test_title_says_param_or_params() -> None:
    x = (1, 8, 16, 16)
    layers = [
        _rec(0, "conv", "Conv2d", 1, None, (MODEL_INPUT,), x, 584),
        LayerRecord(index=1, name="(Toy)", type="Toy", kind="module", depth=1, parent=None,
                    is_leaf=True, input_shapes=(), output_shapes=(), params=1,
                    trainable_params=1, param_formula="1", output_formula="", macs=0,
                    input_batch_axes=(), output_batch_axes=()),
    ]
    dot = render_dot(_report(layers, (0,)))
    assert "1 param outside the data flow: (Toy)" in dot
    assert "1 params" not in dot
    assert "585 params · input" in dot


def test_shared_weights_are_marked_on_the_later_node() -> None:
    import torch
    from fixtures.tricky import TiedLM, Twice

    from archscope.engine import inspect

    tied = inspect(TiedLM(), (3,), dtype=torch.long)
    d = build_diagram(tied, fold=False)
    assert [(n.name, n.params, n.shared) for n in d.layer_nodes] == [
        ("emb", 40, ""), ("out", 10, "shared with emb")]
    assert "out · 10 params · shared with emb" in render_dot(tied)
    twice = inspect(Twice(), (4, 8, 8))
    d = build_diagram(twice, fold=False)
    assert [(n.name, n.params, n.shared) for n in d.layer_nodes] == [
        ("conv", 148, ""), ("conv", 0, "same weights as call 1")]
    assert d.total_params == twice.total_params == 148
    # A node drawing both the weights and their second use says nothing.
    collapsed = _report([
        _rec(0, "block", "Block", 1, None, (), (1, 4, 8, 8), leaf=False),
        *(LayerRecord(index=i, name="block.conv", type="Conv2d", kind="module", depth=2,
                      parent=0, is_leaf=True, input_shapes=((1, 4, 8, 8),),
                      output_shapes=((1, 4, 8, 8),), params=148 if i == 1 else 0,
                      trainable_params=148 if i == 1 else 0, param_formula="", output_formula="",
                      macs=0, input_batch_axes=(0,), output_batch_axes=(0,), call=i - 1,
                      shared_with=None if i == 1 else "block.conv",
                      inputs=(i - 1 if i == 2 else MODEL_INPUT,)) for i in (1, 2)),
    ], (2,))
    (node,) = build_diagram(collapsed, depth=1).layer_nodes
    assert (node.params, node.shared) == (148, "")


def test_edges_drop_only_a_batch_dimension(tmp_path: Path) -> None:
    """ONNX shape arithmetic ([1], [2]) keeps its dimension; a (N,) output is one value per
    sample: the table's rule."""
    import torch
    from torch import nn

    from archscope.engine import inspect
    from archscope.render._columns import shape_cell
    from archscope.source import load_report

    path = tmp_path / "mnistd.onnx"
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o", str(path),
                                       "--dynamic-batch"])
    assert result.exit_code == 0, result.output
    report = load_report(str(path))
    d = build_diagram(report, fold=False)
    for e in d.edges:  # every edge reads like its producer's Output shape cell in the table
        if e.src != "input":
            (producer,) = d.node(e.src).records
            label = "×".join(map(str, e.shape)) or "scalar"
            assert label == shape_cell(report.layers[producer]), e
    concat = next(r.index for r in report.layers if r.type == "Concat")
    assert [e.shape for e in d.out_edges(f"r{concat}")] == [(2,)]

    class PerSample(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)[:, 0]

    dot = render_dot(inspect(PerSample(), (8,)))
    assert '<b>output</b><br/>scalar>' in dot and 'label=" scalar"' in dot


def test_frozen_layers_are_grey_and_partly_frozen_blocks_say_so() -> None:
    from archscope.source import load_report

    plain = draw(load_report("lecture_mnist_cnn"), fmt="dot").source
    assert "frozen" not in plain and "#d9d9d9" not in plain  # nothing frozen: nothing changes
    frozen = load_report("lecture_mnist_cnn", freeze="features")
    dot = draw(frozen, fmt="dot").source
    lines = dot.splitlines()
    for name in ("features.conv1", "features.conv2", "features.conv3"):
        (line,) = [x for x in lines if f">{name}+" in x or f">{name} " in x]
        assert 'fillcolor="#d9d9d9"' in line and "params · frozen</font>" in line
    (fc1,) = [x for x in lines if "classifier.fc1" in x]
    assert "#d9d9d9" not in fc1 and "frozen" not in fc1
    assert ">frozen</td>" in dot
    # a collapsed block with some of its parameters frozen keeps its colour and says so
    part = draw(load_report("lecture_mnist_cnn", freeze="features.conv1"), depth=1,
                fmt="dot").source
    (features,) = [x for x in part.splitlines() if ">features ·" in x]
    assert "partly frozen" in features and "#d9d9d9" not in features
    assert ">frozen</td>" not in part  # no node is wholly frozen: no legend cell
