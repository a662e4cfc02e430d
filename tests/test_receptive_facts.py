"""The trace records what the receptive-field code reads for padding layers and functional
convolutions and pools (issue 11): their receptive fields are then computed.

Figures by hand, with ``r_out = r_in + (k−1)·d·j_in``, ``j_out = j_in·s`` and
``c_out = c_in + ((k−1)/2·d − p)·j_in`` (``p``: the padding before), from ``r = 1, j = 1,
c = 0``; facts against the module PyTorch would use for the same call.
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from archscope.engine import inspect
from archscope.engine.facts import module_facts
from archscope.receptive import RFStatus, receptive_fields


class Functional(nn.Module):
    """Padding layers, ``F.pad`` and functional convs and pools, in one chain."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.w2 = nn.Parameter(torch.randn(4, 4, 3, 3))
        self.zero = nn.ZeroPad2d(1)
        self.reflect = nn.ReflectionPad2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(self.zero(x), self.w1)
        x = F.max_pool2d(self.reflect(x), 3, stride=2, padding=1, dilation=2)
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1)), 2)
        return F.conv2d(x, self.w2, padding="same", dilation=2)


def test_padding_layers_and_functional_windows_have_receptive_fields() -> None:
    report = inspect(Functional(), (3, 16, 16), count_flops=False)
    fields = receptive_fields(report)
    figures = []
    for record, f in zip(report.layers, fields, strict=True):
        if record.output_shapes:
            assert f.status is RFStatus.COMPUTED, (record.name, f)
            assert len(set(f.rf)) == len(set(f.jump)) == len(set(f.centre)) == 1
            figures.append((record.name, f.rf[0], f.jump[0], f.centre[0]))
    assert figures == [
        ("zero", 1, 1, -1),  # ZeroPad2d(1): the centre moves back by the padding
        ("conv2d", 1 + 2 * 1, 1, -1 + 1),  # 3×3: 3, centre 0
        ("reflect", 3, 1, 0 - 2),
        ("max_pool2d", 3 + 2 * 2 * 1, 2, -2 + (2 - 1) * 1),  # 3×3, dilation 2, pad 1: 7
        ("pad", 7, 2, -1 - 1 * 2),  # F.pad (1, 1, 1, 1) at jump 2
        ("avg_pool2d", 7 + 1 * 2, 4, -3 + Fraction(1, 2) * 2),  # 2×2/2: 9, centre −2
        ("conv2d", 9 + 2 * 2 * 4, 4, -2 + (2 - 2) * 4),  # 'same' pads 2 at dilation 2: 25
    ]


def test_functional_facts_are_those_of_the_equivalent_modules() -> None:
    report = inspect(Functional(), (3, 16, 16), count_flops=False)
    convs = [r for r in report.layers if r.type == "conv2d"]
    assert convs[0].facts == module_facts(nn.Conv2d(3, 4, 3, bias=False))
    assert convs[1].facts == module_facts(nn.Conv2d(4, 4, 3, padding="same", dilation=2,
                                                    bias=False))
    pool = report.find("max_pool2d").facts
    assert pool == module_facts(nn.MaxPool2d(3, stride=2, padding=1, dilation=2))
    assert report.find("avg_pool2d").facts == module_facts(nn.AvgPool2d(2))
    assert report.find("pad").facts.padding == ((1, 1), (1, 1))
    # ZeroPad2d's (left, right, top, bottom) become (begin, end) pairs in axis order, H then W
    asymmetric = inspect(nn.Sequential(nn.ZeroPad2d((1, 0, 2, 3))), (1, 4, 4)).layers[0]
    assert asymmetric.facts.padding == ((2, 3), (1, 0))
    assert asymmetric.output_shapes == ((1, 1, 4 + 2 + 3, 4 + 1 + 0),)
