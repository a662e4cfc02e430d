"""Receptive field, jump and centre against hand arithmetic.

Every figure below is worked out by hand in the test with ``r_out = r_in + (k−1)·d·j_in``,
``j_out = j_in·s`` and ``c_out = c_in + ((k−1)/2·d − p)·j_in`` (Araujo et al. 2019), from the
model input's ``r = 1, j = 1, c = 0``. Published references: VGG16 conv5_3 196 and pool5 212
(jump 32), AlexNet pool5 195 (Araujo et al. 2019, table of ImageNet models). The multi-path
networks are also measured in tests/test_receptive_measured.py.
"""

from __future__ import annotations

import ast
import json
import operator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import archscope
from archscope.engine import inspect_onnx
from archscope.receptive import (
    LayerField,
    Op,
    ReceptiveFields,
    RFStatus,
    layer_geometry,
    receptive_fields,
)
from archscope.registry import get_entry
from archscope.report import LayerFacts, LayerRecord, Report
from archscope.spec import calc_report

HALF = Fraction(1, 2)


def _fields(name: str) -> ReceptiveFields:
    with torch.device("meta"):
        model = get_entry(name).build()
    return receptive_fields(archscope.inspect(model, get_entry(name).input_shape,
                                              count_flops=False))


def _of(model: nn.Module, shape: tuple[int, ...]) -> ReceptiveFields:
    return receptive_fields(archscope.inspect(model, shape, count_flops=False))


def _figures(f: LayerField) -> tuple[int, int, Fraction]:
    """(rf, jump, centre) of a square field."""
    assert f.status is RFStatus.COMPUTED, f
    assert len(set(f.rf)) == len(set(f.jump)) == len(set(f.centre)) == 1, f
    return f.rf[0], f.jump[0], f.centre[0]


# -- chains --------------------------------------------------------------------------------------

def test_vgg16_every_conv_and_pool() -> None:
    fields = _fields("vgg16")
    expected = {
        # block 1 at jump 1: 3×3 convs padding 1 keep the centre at 0
        "features.0": (1 + 2 * 1, 1, 0),  # conv1_1: 3
        "features.2": (3 + 2 * 1, 1, 0),  # conv1_2: 5
        "features.4": (5 + 1 * 1, 2, HALF),  # pool1 2×2/2: 6, centre 0 + ½·1
        "features.5": (6 + 2 * 2, 2, HALF),  # conv2_1: 10
        "features.7": (10 + 2 * 2, 2, HALF),  # conv2_2: 14
        "features.9": (14 + 1 * 2, 4, HALF + HALF * 2),  # pool2: 16, centre 1.5
        "features.10": (16 + 2 * 4, 4, Fraction(3, 2)),  # conv3_1: 24
        "features.12": (24 + 2 * 4, 4, Fraction(3, 2)),  # conv3_2: 32
        "features.14": (32 + 2 * 4, 4, Fraction(3, 2)),  # conv3_3: 40
        "features.16": (40 + 1 * 4, 8, Fraction(3, 2) + HALF * 4),  # pool3: 44, centre 3.5
        "features.17": (44 + 2 * 8, 8, Fraction(7, 2)),  # conv4_1: 60
        "features.19": (60 + 2 * 8, 8, Fraction(7, 2)),  # conv4_2: 76
        "features.21": (76 + 2 * 8, 8, Fraction(7, 2)),  # conv4_3: 92
        "features.23": (92 + 1 * 8, 16, Fraction(7, 2) + HALF * 8),  # pool4: 100, centre 7.5
        "features.24": (100 + 2 * 16, 16, Fraction(15, 2)),  # conv5_1: 132
        "features.26": (132 + 2 * 16, 16, Fraction(15, 2)),  # conv5_2: 164
        "features.28": (164 + 2 * 16, 16, Fraction(15, 2)),  # conv5_3: 196
        "features.30": (196 + 1 * 16, 32, Fraction(15, 2) + HALF * 16),  # pool5: 212, 15.5
    }
    for name, figures in expected.items():
        assert _figures(fields.find(name)) == figures, name
    assert _figures(fields.find("features.28"))[0] == 196  # the published conv5_3
    assert _figures(fields.find("features.30"))[:2] == (212, 32)  # and pool5
    # every ReLU passes its conv's figures through; the 7×7 → 7×7 adaptive pool too
    for i in range(1, 30, 2):
        if f"features.{i}" not in expected:
            assert fields.find(f"features.{i}").rf == fields.find(f"features.{i - 1}").rf
    assert fields.find("avgpool").rf == (212, 212)
    assert fields.find("flatten").status is RFStatus.FLATTENED
    assert fields.find("flatten").rf_text == "212 (flattened)"
    assert fields.find("classifier.0").status is RFStatus.WHOLE_INPUT
    assert fields.find("classifier.6").rf_text == "whole input"
    assert fields.find("features").rf_text == "212"  # the container shows its output's
    pool5 = fields.find("features.30")
    assert pool5.rf_formula == "196 + (2−1)·1·16 = 212"
    assert pool5.jump_formula == "16·2 = 32"
    assert pool5.centre_formula == "7.5 + ((2−1)/2·1 − 0)·16 = 15.5"
    assert (pool5.rf_text, pool5.jump_text, pool5.centre_text) == ("212", "32", "15.5")


def test_alexnet_paper_pool5_is_195() -> None:
    # 11×11/4 conv1, overlapping 3×3/2 pools, 5×5 pad 2 conv2, 3×3 pad 1 conv3..5
    fields = _fields("alexnet")
    expected = {
        "features.0": (11, 4, 5),  # 1 + 10·1 = 11; centre 0 + (5 − 0)·1 = 5
        "features.3": (11 + 2 * 4, 8, 5 + 1 * 4),  # pool1: 19, centre 9
        "features.4": (19 + 4 * 8, 8, 9),  # conv2 5×5 pad 2: 51
        "features.7": (51 + 2 * 8, 16, 9 + 1 * 8),  # pool2: 67, centre 17
        "features.8": (67 + 2 * 16, 16, 17),  # conv3: 99
        "features.10": (99 + 2 * 16, 16, 17),  # conv4: 131
        "features.12": (131 + 2 * 16, 16, 17),  # conv5: 163
        "features.14": (163 + 2 * 16, 32, 17 + 1 * 16),  # pool5: 195, centre 33
    }
    for name, figures in expected.items():
        assert _figures(fields.find(name)) == figures, name
    assert fields.find("features.2").rf == (19 - 8, 19 - 8)  # the LRN passes conv1's 11
    assert fields.find("classifier.0").rf_text == "195 (flattened)"  # dropout on the vector
    assert fields.find("classifier.1").status is RFStatus.WHOLE_INPUT


def test_lecture_cnns() -> None:
    # 3×3 valid convs (centre + 1·j) and 2×2/2 max-pools (+ 1·j, jump ×2, centre + ½·j)
    chain = [("conv1", 1 + 2 * 1, 1, 0 + 1), ("pool1", 3 + 1, 2, 1 + HALF),
             ("conv2", 4 + 2 * 2, 2, Fraction(3, 2) + 2), ("pool2", 8 + 1 * 2, 4, Fraction(9, 2)),
             ("conv3", 10 + 2 * 4, 4, Fraction(9, 2) + 4)]
    mnist = _fields("lecture_mnist_cnn")
    for name, r, j, c in chain:
        assert _figures(mnist.find(f"features.{name}")) == (r, j, c), name
    assert mnist.find("classifier.flatten").rf_text == "18 (flattened)"
    assert mnist.find("classifier.fc1").status is RFStatus.WHOLE_INPUT

    catsdogs = _fields("lecture_catsdogs_cnn")
    chain += [("pool3", 18 + 1 * 4, 8, Fraction(17, 2) + 2),  # 22, centre 10.5
              ("conv4", 22 + 2 * 8, 8, Fraction(21, 2) + 8),  # 38, centre 18.5
              ("pool4", 38 + 1 * 8, 16, Fraction(37, 2) + 4)]  # 46, centre 22.5
    for name, r, j, c in chain:
        assert _figures(catsdogs.find(f"features.{name}")) == (r, j, c), name
    assert catsdogs.find("classifier.fc2").rf_text == "whole input"

    multitask = _fields("lecture_multitask")  # the same base, a global average pool, 3 heads
    assert _figures(multitask.find("features.pool4")) == (46, 16, Fraction(45, 2))
    for name in ("avgpool", "flatten", "age.fc2", "sex.fc2", "race.fc2", "race"):
        assert multitask.find(name).status is RFStatus.WHOLE_INPUT, name

    mlp = _fields("lecture_mlp")  # flattening the 1×28×28 input: each unit is one pixel
    assert mlp.find("flatten").rf_text == "1 (flattened)"
    assert mlp.find("fc1").status is RFStatus.WHOLE_INPUT


def test_dilated_conv_k3_d2_sees_5() -> None:
    f = _of(nn.Conv2d(1, 1, 3, dilation=2), (1, 9, 9))[0]
    assert _figures(f) == (1 + (3 - 1) * 2 * 1, 1, 2)  # 5; centre (3−1)/2·2 = 2
    assert f.rf_formula == "1 + (3−1)·2·1 = 5"
    assert f.centre_formula == "0 + ((3−1)/2·2 − 0)·1 = 2"


def test_resnet18_by_hand() -> None:
    # torchvision's layout: conv1 7×7/2 pad 3, max-pool 3×3/2 pad 1, BasicBlocks of two 3×3
    # convs (pad 1), the stride on the first conv and on the 1×1 downsample. Every padding is
    # (k−1)/2, so every centre stays 0.
    fields = _fields("resnet18")
    expected = {
        "conv1": (1 + 6 * 1, 2),  # 7
        "maxpool": (7 + 2 * 2, 4),  # 11
        "layer1.0.conv1": (11 + 2 * 4, 4),  # 19
        "layer1.0.add": (max(19 + 2 * 4, 11), 4),  # max(27, 11) = 27: the identity is 11
        "layer1": (27 + 2 * 4 + 2 * 4, 4),  # 43
        "layer2.0.conv1": (43 + 2 * 4, 8),  # 51: 3×3 stride 2 at jump 4
        "layer2.0.downsample.0": (43 + 0 * 4, 8),  # 43: 1×1 stride 2
        "layer2.0.add": (max(51 + 2 * 8, 43), 8),  # max(67, 43) = 67
        "layer2": (67 + 2 * 8 + 2 * 8, 8),  # 99
        "layer3.0.conv1": (99 + 2 * 8, 16),  # 115
        "layer3": (115 + 2 * 16 + 2 * 16 + 2 * 16, 16),  # 211
        "layer4.0.conv1": (211 + 2 * 16, 32),  # 243
        "layer4": (243 + 2 * 32 + 2 * 32 + 2 * 32, 32),  # 435
    }
    for name, (r, j) in expected.items():
        assert _figures(fields.find(name)) == (r, j, 0), name
    assert fields.find("layer2.0.add").rf_formula == "max(67, 43) = 67"
    assert fields.find("avgpool").status is RFStatus.WHOLE_INPUT
    assert fields.find("fc").status is RFStatus.WHOLE_INPUT


def test_resnet50_by_hand() -> None:
    # v1.5 Bottlenecks: 1×1, 3×3 (carries the stride), 1×1; one 3×3 per block adds 2·j.
    fields = _fields("resnet50")
    expected = {
        "maxpool": (11, 4),
        "layer1.0.conv1": (11, 4),  # a 1×1 stride 1 conv passes the field
        "layer1.0.conv2": (11 + 2 * 4, 4),  # 19
        "layer1.0.downsample.0": (11, 4),  # projection 64 → 256, 1×1 stride 1
        "layer1.0.add": (max(19, 11), 4),
        "layer1": (19 + 2 * 4 + 2 * 4, 4),  # 35
        "layer2.0.conv1": (35, 4),
        "layer2.0.conv2": (35 + 2 * 4, 8),  # 43: the stride is on the 3×3 (v1.5)
        "layer2.0.downsample.0": (35, 8),
        "layer2.0.add": (max(43, 35), 8),
        "layer2": (43 + 3 * 2 * 8, 8),  # 91
        "layer3.0.conv2": (91 + 2 * 8, 16),  # 107
        "layer3": (107 + 5 * 2 * 16, 16),  # 267
        "layer4.0.conv2": (267 + 2 * 16, 32),  # 299
        "layer4": (299 + 2 * 2 * 32, 32),  # 427
    }
    for name, (r, j) in expected.items():
        assert _figures(fields.find(name)) == (r, j, 0), name
    assert fields.find("layer2.0.add").rf_formula == "max(43, 35) = 43"


class _Tap(nn.Module):
    """A container that runs a child on its input and returns the input itself."""

    def __init__(self) -> None:
        super().__init__()
        self.probe = nn.Conv2d(1, 1, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.probe(x)
        return x


def test_containers_that_return_their_input() -> None:
    fields = _of(_Layers(nn.Conv2d(1, 1, 3), _Tap(), nn.Sequential(), nn.ReLU()), (1, 8, 8))
    tap = fields.find("body.1")
    assert (tap.rf, tap.note) == ((3, 3), "returns its input")
    assert fields.find("body.2").rf == (3, 3)  # an empty Sequential is a leaf that passes
    assert fields.find("body.3").rf == (3, 3)


def test_containers_show_their_output_leaf() -> None:
    fields = _fields("resnet18")
    block, relu = fields.find("layer2.0"), fields.find("layer2.0.add")
    assert block.source is not None and fields[block.source].name == "layer2.0.relu"
    assert (block.rf, block.jump, block.centre) == (relu.rf, relu.jump, relu.centre)
    assert block.rf_formula == "" and block.note == "the output of layer2.0.relu"


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "alexnet", "lecture_catsdogs_cnn"])
def test_formulas_evaluate_to_the_figures(name: str) -> None:
    for f in _fields(name):
        for formula, values in ((f.rf_formula, f.rf), (f.jump_formula, f.jump),
                                (f.centre_formula, f.centre)):
            if not formula:
                continue
            parts = formula.split("; ")
            assert len(parts) in (1, len(values)), formula
            for part, value in zip(parts * len(values) if len(parts) == 1 else parts, values,
                                   strict=True):
                body, _, shown = part.split(": ")[-1].rpartition(" = ")
                assert _evaluate(body) == value == _evaluate(shown), (f.name, formula)


# -- what each kind of layer does -----------------------------------------------------------------

class _Crop(nn.Module):
    """A leaf archscope cannot read: it crops the map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 1:-1, 1:-1]


class _Layers(nn.Module):
    def __init__(self, *layers: nn.Module, functional: Any = None) -> None:
        super().__init__()
        self.body = nn.Sequential(*layers)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> Any:
        x = self.body(x)
        return self.functional(x) if self.functional is not None else x


def test_transposed_conv_with_a_stride_is_not_computed() -> None:
    fields = _of(_Layers(nn.Conv2d(1, 2, 3, padding=1), nn.ConvTranspose2d(2, 2, 4, 2, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1)), (1, 8, 8))
    up, relu, pool = fields.find("body.1"), fields.find("body.2"), fields.find("body.3")
    assert up.status is RFStatus.NOT_COMPUTED and up.rf_text == "not computed"
    assert up.note.startswith("a stride-2 transposed conv spreads each input unit")
    assert relu.status is RFStatus.NOT_COMPUTED and relu.note == "after body.1"
    assert pool.status is RFStatus.WHOLE_INPUT  # the map still spans the input


def test_adaptive_pools() -> None:
    cases = [
        (8, 4, RFStatus.COMPUTED),  # 8 → 4: a 2×2 window, stride 2
        (8, 8, RFStatus.COMPUTED),  # a pass-through
        (7, 3, RFStatus.COMPUTED),  # windows 0–2, 2–4, 4–6: a 3-wide window, stride 2
        (8, 3, RFStatus.NOT_COMPUTED),  # windows 0–2, 2–5, 5–7: 3, 4, 3 units, uneven
        (4, 8, RFStatus.NOT_COMPUTED),  # to a larger size: repeats units
        (8, 1, RFStatus.WHOLE_INPUT),
    ]
    for n, o, status in cases:
        f = _of(_Layers(nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveMaxPool2d(o)),
                (1, n, n)).find("body.1")
        assert f.status is status, (n, o, f)
    f = _of(_Layers(nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveAvgPool2d(4)),
            (1, 8, 8)).find("body.1")
    assert _figures(f) == (3 + (2 - 1) * 1 * 1, 2, 0 + HALF)  # as MaxPool2d(2)
    assert f.note == "adaptive pooling 8×8 → 4×4 reads a 2×2 window with stride 2×2"
    f = _of(_Layers(nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveAvgPool2d(3)),
            (1, 7, 7)).find("body.1")
    assert _figures(f) == (3 + (3 - 1) * 1 * 1, 2, 0 + 1)  # as MaxPool2d(3, 2)
    grows = _of(_Layers(nn.AdaptiveAvgPool2d(8)), (1, 4, 4)).find("body.0")
    assert grows.note.startswith("adaptive pooling 4 → 8 (to a larger size): its windows")


def test_ceil_mode_changes_no_figure() -> None:
    # 9 → k3 s2: floor mode 4 windows (0, 2, 4, 6), ceil mode the same 4; 10 → floor 4, ceil 5
    # (a last window at 8 reading 8, 9 and the padding): the grid is the same, only its end.
    for n in (9, 10):
        floor = _of(_Layers(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3, 2)), (1, n, n)).find("body.1")
        ceil = _of(_Layers(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3, 2, ceil_mode=True)),
                   (1, n, n)).find("body.1")
        assert _figures(ceil) == _figures(floor) == (3 + 2 * 1, 2, 1 + 1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_padding_same_with_an_even_kernel_pads_the_end() -> None:
    # k4 'same': 3 zeros, 1 before and 2 after (PyTorch puts the odd one at the end)
    f = _of(nn.Conv2d(1, 1, 4, padding="same"), (1, 8, 8))[0]
    assert _figures(f) == (4, 1, Fraction(3, 2) - 1)
    assert f.centre_formula == "0 + ((4−1)/2·1 − 1)·1 = 0.5"


def test_rows_and_columns_that_differ() -> None:
    f = _of(nn.Conv2d(1, 1, (3, 5), stride=(2, 1), padding=(1, 0)), (1, 9, 9))[0]
    assert (f.rf, f.jump, f.centre) == ((3, 5), (2, 1), (0, 2))
    assert (f.rf_text, f.jump_text, f.centre_text) == ("3×5", "2×1", "0×2")
    assert f.rf_formula == "H: 1 + (3−1)·1·1 = 3; W: 1 + (5−1)·1·1 = 5"


def test_one_dimensional_and_three_dimensional_convs() -> None:
    assert _figures(_of(nn.Conv1d(2, 2, 5, stride=2), (2, 20))[0]) == (5, 2, 2)
    f = _of(nn.Conv3d(1, 1, (1, 3, 3), padding=(0, 1, 1)), (1, 4, 8, 8))[0]
    assert f.rf == (1, 3, 3) and f.rf_formula.startswith("D: 1 + (1−1)·1·1 = 1; H: ")


def test_flatten_view_mean_and_linear() -> None:
    conv = nn.Conv2d(1, 2, 3)
    viewed = _of(_Layers(conv, functional=lambda x: x.view(x.size(0), -1)), (1, 6, 6))
    assert viewed.find("view").rf_text == "3 (flattened)"
    mean = _of(_Layers(conv, functional=lambda x: x.mean((2, 3))), (1, 6, 6))
    assert mean.find("mean").status is RFStatus.WHOLE_INPUT
    kept = _of(_Layers(conv, functional=lambda x: x.mean(2)), (1, 6, 6))  # rows only
    assert kept.find("mean").status is RFStatus.UNKNOWN
    on_map = _of(_Layers(conv, nn.Linear(4, 3)), (1, 6, 6)).find("body.1")
    assert on_map.status is RFStatus.UNKNOWN
    assert on_map.note == "a Linear on a 4-D tensor mixes its last axis only"


def test_unknown_layers_pass_unknown_on() -> None:
    fields = _of(_Layers(nn.Conv2d(1, 1, 3), _Crop(), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(1, 2)), (1, 8, 8))
    crop = fields.find("body.1")
    assert crop.status is RFStatus.UNKNOWN
    assert crop.note == "archscope does not know what _Crop does to space"
    for name in ("body.2", "body.3", "body.5"):  # a crop may have cut the map: still unknown
        assert fields.find(name).status is RFStatus.UNKNOWN
        assert fields.find(name).note == "after body.1"
    # (a functional max_pool2d records its window now: tests/test_receptive_facts.py)


def test_spatial_concatenation_and_upsampling_are_not_computed() -> None:
    stitched = _of(_Layers(nn.Conv2d(1, 1, 3), functional=lambda x: torch.cat([x, x], 2)),
                   (1, 8, 8)).find("cat")
    assert stitched.status is RFStatus.NOT_COMPUTED
    up = _of(_Layers(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)), (1, 8, 8)).find("body.1")
    assert up.status is RFStatus.NOT_COMPUTED


def test_rows_without_an_output() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)
            self.spare = nn.Linear(2, 2)  # never called: a row without shapes

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    fields = _of(Unused(), (1, 8, 8))
    spare = fields.find("spare")
    assert spare.status is RFStatus.NONE and spare.rf_text == ""
    assert spare.to_dict()["rf"] is None


def test_json() -> None:
    fields = _fields("vgg16")
    data = json.loads(json.dumps(fields.to_dict()))
    pool5 = next(d for d in data if d["name"] == "features.30")
    assert pool5 == {
        "index": fields.find("features.30").index, "name": "features.30", "status": "computed",
        "rf": [212, 212], "jump": [32, 32], "centre": [15.5, 15.5],
        "rf_formula": "196 + (2−1)·1·16 = 212", "jump_formula": "16·2 = 32",
        "centre_formula": "7.5 + ((2−1)/2·1 − 0)·16 = 15.5", "note": "", "source": None,
    }
    head = next(d for d in data if d["name"] == "classifier.6")
    assert (head["status"], head["rf"], head["jump"], head["centre"]) == (
        "whole input", None, None, None)
    assert len(data) == len(fields) and [d["index"] for d in data] == list(range(len(data)))


# -- layer specs (calc) and the VGG lesson ---------------------------------------------------------

def test_vgg_lesson_two_3x3_see_what_one_5x5_sees() -> None:
    stacked = calc_report("32x32x64 conv64 k3 same conv64 k3 same")
    wide = calc_report("32x32x64 conv64 k5 same")
    assert stacked.layout == "hwc"  # shapes H×W×C: the field reads the right axes
    s, w = receptive_fields(stacked), receptive_fields(wide)
    assert _figures(s.find("conv2")) == (3 + 2 * 1, 1, 0) == _figures(w.find("conv1"))
    # 2·(3·3·64+1)·64 = 73,856 against (5·5·64+1)·64 = 102,464
    assert stacked.total_params == 2 * (3 * 3 * 64 + 1) * 64 == 73_856
    assert wide.total_params == (5 * 5 * 64 + 1) * 64 == 102_464
    three = receptive_fields(calc_report("32x32x64 conv64 k3 same conv64 k3 same conv64 k3 same"))
    assert _figures(three.find("conv3"))[0] == 7 == _figures(
        receptive_fields(calc_report("32x32x64 conv64 k7 same")).find("conv1"))[0]


def test_spec_with_pooling_and_a_global_pool() -> None:
    fields = receptive_fields(calc_report("64x64x3 conv8 k3 maxpool conv8 k3 gap dense10"))
    assert _figures(fields.find("pool1")) == (3 + 1, 2, 1 + HALF)
    assert _figures(fields.find("conv2")) == (4 + 2 * 2, 2, Fraction(3, 2) + 2)
    assert fields.find("fc1").status is RFStatus.WHOLE_INPUT


# -- ONNX files ------------------------------------------------------------------------------------

def _onnx(tmp_path: Path, same: str) -> Path:
    """x(1,3,16,16) → Conv k3 pads 1 → Relu → MaxPool 2/2 → (Conv k3 pads 1, Conv 1×1) → Add →
    Conv k2 (``same``) → Concat with the Add → GlobalAveragePool → Flatten."""
    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)

    pad = {"auto_pad": "SAME_UPPER"} if same == "auto" else {"pads": [0, 0, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "w3"], ["c3"], name="short", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "c3"], ["a"], name="add"),
        helper.make_node("Conv", ["a", "w4"], ["c4"], name="even", kernel_shape=[2, 2], **pad),
        helper.make_node("Concat", ["a", "c4"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
    ]
    inits = [init("w1", 4, 3, 3, 3), init("w2", 4, 4, 3, 3), init("w3", 4, 4, 1, 1),
             init("w4", 4, 4, 2, 2)]
    graph = helper.make_graph(
        nodes, "rf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, None)], initializer=inits)
    path = tmp_path / f"rf_{same}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_graph(tmp_path: Path) -> None:
    fields = receptive_fields(inspect_onnx(str(_onnx(tmp_path, "pads"))))
    assert _figures(fields.find("conv1")) == (3, 1, 0)
    assert _figures(fields.find("pool1")) == (4, 2, HALF)
    assert _figures(fields.find("add")) == (max(4 + 2 * 2, 4), 2, HALF)
    # pads (0, 0, 1, 1): nothing before, so the 2×2 conv moves the centre by ½·2
    assert _figures(fields.find("even")) == (8 + 1 * 2, 2, HALF + HALF * 2)
    cat = fields.find("cat")
    assert cat.status is RFStatus.NOT_ALIGNED
    assert cat.note == "paths merge with different centres: 0.5 (add), 1.5 (even)"
    assert fields.find("gap").status is RFStatus.WHOLE_INPUT
    # auto_pad SAME_UPPER on a 2×2 kernel pads 2−1 = 1 in all, the odd one at the end: (0, 1)
    # per axis, the pads the explicit file lists, so the figures are the same
    auto = receptive_fields(inspect_onnx(str(_onnx(tmp_path, "auto")))).find("even")
    assert _figures(auto) == (8 + 1 * 2, 2, HALF + HALF * 2)


# -- the one reader of layer facts -----------------------------------------------------------------

def _record(type_: str, facts: LayerFacts, shape_in: tuple[int, ...],
            shape_out: tuple[int, ...], inputs: tuple[int, ...] = (-1,)) -> LayerRecord:
    return LayerRecord(index=0, name="layer", type=type_, kind="module", depth=1, parent=None,
                       is_leaf=True, input_shapes=(shape_in,), output_shapes=(shape_out,),
                       params=0, trainable_params=0, param_formula="", output_formula="",
                       macs=0, facts=facts, inputs=inputs, input_batch_axes=(0,),
                       output_batch_axes=(0,))


@pytest.mark.parametrize("pairs", [((1, 1), (1, 1)), ((1, 2), (0, 1))])
def test_padding_pairs_are_read_as_recorded(pairs: Any) -> None:
    out = (1, 1, 8 + sum(pairs[0]) - 2, 8 + sum(pairs[1]) - 2)
    facts = LayerFacts(kernel=(3, 3), stride=(1, 1), padding=pairs)
    g = layer_geometry(_record("Conv", facts, (1, 1, 8, 8), out))
    assert g.op is Op.WINDOW and g.padding == pairs


def test_functional_pools_read_their_facts_once_recorded() -> None:
    # F.max_pool2d(x, 2) as a trace that records functional windows would: stride None → kernel
    record = replace(_record("max_pool2d", LayerFacts(kernel=(2, 2)), (1, 1, 8, 8), (1, 1, 4, 4)),
                     kind="function")
    g = layer_geometry(record)
    assert (g.op, g.kernel, g.stride, g.padding) == (Op.WINDOW, (2, 2), (2, 2), ((0, 0),) * 2)
    bare = layer_geometry(replace(record, facts=LayerFacts()))
    assert bare.op is Op.UNKNOWN
    assert bare.reason == "a functional max_pool2d: the trace does not record its window"


def test_padding_layers_read_begin_and_end_pairs() -> None:
    # ZeroPad2d((left 1, right 0, top 2, bottom 0)) as typed facts record it: ((2, 0), (1, 0))
    pad = _record("ZeroPad2d", LayerFacts(padding=((2, 0), (1, 0))), (1, 1, 8, 8), (1, 1, 10, 9))
    conv = replace(_record("Conv2d", LayerFacts(kernel=(3, 3), stride=(2, 2),
                                                padding=((0, 0), (0, 0))),
                           (1, 1, 10, 9), (1, 1, 4, 4), inputs=(0,)), index=1, name="conv")
    report = Report(model="m", model_type="M", input_shape=(1, 8, 8), batch=1, total_params=0,
                    trainable_params=0, non_trainable_params=0, total_macs=0, forward_flops=0,
                    backward_flops=None, param_bytes=0, buffer_bytes=0, activation_bytes=0,
                    output_shapes=((1, 1, 4, 4),), outputs=(1,), layers=(pad, conv),
                    trainable_param_bytes=0, output_batch_axes=(0,))
    fields = receptive_fields(report)
    assert fields[0].centre == (-2, -1) and fields[0].rf == (1, 1)
    assert fields[0].centre_formula == "H: 0 − 2·1 = −2; W: 0 − 1·1 = −1"
    # then 3×3/2: centre −2 + 1 = −1 (rows), −1 + 1 = 0 (columns)
    assert (fields[1].rf, fields[1].jump, fields[1].centre) == ((3, 3), (2, 2), (-1, 0))
    # today's trace records no padding for a ZeroPad2d: unknown, not guessed
    bare = layer_geometry(_record("ZeroPad2d", LayerFacts(), (1, 1, 8, 8), (1, 1, 10, 9)))
    assert bare.op is Op.UNKNOWN


# -- a small evaluator for the formulas (max, decimals, the minus sign) ----------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def _evaluate(text: str) -> Fraction:
    expr = text.replace("·", "*").replace("−", "-")
    return _eval(ast.parse(expr, mode="eval").body)


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return Fraction(_OPS[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "max":
        return max(_eval(a) for a in node.args)
    raise AssertionError(f"unexpected formula part {ast.dump(node)}")
