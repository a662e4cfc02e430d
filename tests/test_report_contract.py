"""The typed Report contract: layer facts in one vocabulary from both front-ends, ``Kind`` and
``Layout`` as ``str`` enums, and records that carry a batch axis per shape.

Oracles: the layer's own constructor arguments (written out in each case), a real CPU forward
(PyTorch's ``padding='same'`` reproduced by explicit padding), ONNX's auto_pad arithmetic worked
out by hand and run by onnxruntime, and PyTorch's ONNX exporter (slow).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archscope.engine import inspect, inspect_onnx
from archscope.engine.facts import module_facts
from archscope.render import render
from archscope.report import Kind, LayerFacts, Layout

# --- LayerFacts from PyTorch modules ------------------------------------------------------------


@pytest.mark.parametrize(("module", "expected"), [
    (nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), dilation=(1, 2), bias=False),
     LayerFacts(in_channels=3, out_channels=8, kernel=(3, 5), stride=(2, 2),
                padding=((1, 1), (2, 2)), dilation=(1, 2), groups=1, bias=False)),
    (nn.Conv1d(4, 4, 3, groups=4, padding="valid"),
     LayerFacts(in_channels=4, out_channels=4, kernel=(3,), stride=(1,), padding=((0, 0),),
                padding_mode="valid", dilation=(1,), groups=4, bias=True)),
    (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
     LayerFacts(in_channels=4, out_channels=2, kernel=(3, 3), stride=(2, 2),
                padding=((1, 1), (1, 1)), dilation=(1, 1), output_padding=(1, 1), groups=1,
                bias=True)),
    (nn.MaxPool2d(3, 2, 1, ceil_mode=True),
     LayerFacts(pool="max", kernel=(3, 3), stride=(2, 2), padding=((1, 1), (1, 1)),
                dilation=(1, 1), ceil_mode=True)),
    (nn.AvgPool1d(2),  # stride defaults to the kernel
     LayerFacts(pool="avg", kernel=(2,), stride=(2,), padding=((0, 0),), dilation=(1,),
                ceil_mode=False)),
    (nn.AdaptiveAvgPool2d((None, 7)), LayerFacts(pool="avg", output_size=(None, 7))),
    (nn.AdaptiveMaxPool1d(4), LayerFacts(pool="max", output_size=(4,))),
    (nn.Linear(5, 2), LayerFacts(in_features=5, out_features=2, bias=True)),
    (nn.BatchNorm2d(4), LayerFacts(num_features=4)),
    (nn.GroupNorm(2, 6), LayerFacts(num_features=6)),
    (nn.LayerNorm([4, 2]), LayerFacts(normalized_shape=(4, 2))),
    (nn.Dropout(0.3), LayerFacts(p=0.3)),
    (nn.LocalResponseNorm(3), LayerFacts(size=3, alpha=1e-4, beta=0.75, k=1.0)),
    (nn.Flatten(2), LayerFacts(start_dim=2)),
    (nn.Embedding(10, 4), LayerFacts(num_embeddings=10, embedding_dim=4)),
    (nn.ReLU(), LayerFacts()),
])
def test_module_facts_are_the_constructor_arguments_per_axis(module: nn.Module,
                                                             expected: LayerFacts) -> None:
    assert module_facts(module) == expected


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize(("kernel", "dilation"), [((3, 3), (1, 1)), ((4, 5), (1, 2)),
                                                  ((2, 2), (3, 1))])
def test_same_padding_pairs_reproduce_pytorchs_same(kernel: tuple[int, int],
                                                    dilation: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
    facts = inspect(conv, (2, 9, 10)).layers[0].facts
    assert facts.padding_mode == "same" and facts.padding is not None
    (top, bottom), (left, right) = facts.padding
    x = torch.randn(1, 2, 9, 10)
    explicit = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, conv.bias,
                        dilation=dilation)
    assert torch.allclose(explicit, conv(x), atol=1e-6)


def test_functional_ops_carry_their_facts() -> None:
    class Ops(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x], dim=1).flatten(start_dim=2)

    report = inspect(Ops(), (3, 4, 4))
    assert {r.type: r.facts for r in report.layers} == {
        "cat": LayerFacts(dim=1), "flatten": LayerFacts(start_dim=2)}


# --- LayerFacts from ONNX nodes: the same vocabulary --------------------------------------------


def _conv_graph(tmp_path: Path, **attrs: object) -> Path:
    """x (1, 1, 9, 9) → Conv with a 4×4 kernel, no bias."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, 1, 4, 4), dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[4, 4], **attrs)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_pads_become_begin_end_pairs(tmp_path: Path) -> None:
    # pads are [x1_begin, x2_begin, x1_end, x2_end]
    facts = inspect_onnx(_conv_graph(tmp_path, pads=[0, 1, 2, 3])).layers[0].facts
    assert facts == LayerFacts(kernel=(4, 4), stride=(1, 1), padding=((0, 2), (1, 3)),
                               dilation=(1, 1), groups=1, in_channels=1, out_channels=1,
                               bias=False)


@pytest.mark.parametrize(("auto_pad", "pairs"), [
    # total padding so that the output keeps 9: (9−1)·1 + 4 − 9 = 3 per axis; the odd one at the
    # end for SAME_UPPER, at the beginning for SAME_LOWER
    ("SAME_UPPER", ((1, 2), (1, 2))),
    ("SAME_LOWER", ((2, 1), (2, 1))),
    ("VALID", ((0, 0), (0, 0))),
])
def test_onnx_auto_pad_gives_the_pairs_it_pads(tmp_path: Path, auto_pad: str,
                                               pairs: tuple[tuple[int, int], ...]) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = _conv_graph(tmp_path, auto_pad=auto_pad)
    x = torch.randn(1, 1, 9, 9)
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()})
    (top, bottom), (left, right) = pairs
    # the pairs pad the input as ONNX did: the same output with explicit padding
    explicit = F.conv2d(F.pad(x, (left, right, top, bottom)), torch.ones(1, 1, 4, 4))
    assert torch.allclose(torch.from_numpy(out), explicit, atol=1e-5)
    facts = inspect_onnx(path).layers[0].facts
    assert (facts.padding, facts.padding_mode) == (pairs, auto_pad)
    if auto_pad == "SAME_UPPER":  # PyTorch's padding='same' pads the same way
        assert module_facts(nn.Conv2d(1, 1, 4, padding="same")).padding == pairs


@pytest.mark.slow
def test_pytorch_and_its_onnx_export_have_the_same_facts(tmp_path: Path) -> None:
    from archscope.export import export_onnx

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    path = tmp_path / "m.onnx"
    export_onnx(model, path, (3, 32, 32), verify=False)
    torch_rows = [r for r in inspect(model, (3, 32, 32)).layers
                  if r.type in ("Conv2d", "MaxPool2d", "AvgPool2d", "Linear")]
    onnx_rows = [r for r in inspect_onnx(path).layers
                 if r.type in ("Conv", "MaxPool", "AveragePool", "Gemm")]
    assert [r.facts for r in onnx_rows] == [r.facts for r in torch_rows]


# --- Kind, Layout and the records' own checks --------------------------------------------------


def test_kind_and_layout_are_their_strings() -> None:
    assert Kind.MODULE == "module" and Kind("function") is Kind.FUNCTION
    assert f"{Kind.FUNCTION}" == "function" and str(Layout.HWC) == "hwc"
    assert {"module": 1}[Kind.MODULE] == 1
    assert json.dumps([Kind.MODULE, Layout.CHW]) == '["module", "chw"]'


def test_records_and_reports_hold_enums_and_one_axis_per_shape() -> None:
    report = inspect(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), (3, 6, 6), batch=2)
    conv = report.layers[0]
    assert conv.kind is Kind.MODULE and report.layout is Layout.CHW
    # a plain string is turned into its enum, as the JSON reader of a report would give it
    assert replace(report, layout="hwc").layout is Layout.HWC
    assert replace(conv, kind="function").kind is Kind.FUNCTION
    with pytest.raises(ValueError, match="1 output shapes but 2 batch axes"):
        replace(conv, output_batch_axes=(0, 0))
    with pytest.raises(ValueError, match="1 output shapes but 0 batch axes"):
        replace(report, output_batch_axes=())
    data = json.loads(render(report, "json"))
    assert data["layout"] == "chw" and data["layers"][0]["kind"] == "module"
    # hparams in JSON: the facts that apply, padding as [begin, end] pairs
    assert data["layers"][0]["hparams"] == {
        "kernel": [3, 3], "stride": [1, 1], "padding": [[0, 0], [0, 0]], "dilation": [1, 1],
        "groups": 1, "in_channels": 3, "out_channels": 4, "bias": True}


def test_trainable_param_bytes_is_always_counted() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2).double())
    model[0].requires_grad_(False)
    report = inspect(model, (4,))
    # 20 frozen float32 parameters, 10 trainable float64 ones
    assert report.param_bytes == 20 * 4 + 10 * 8 and report.trainable_param_bytes == 10 * 8
