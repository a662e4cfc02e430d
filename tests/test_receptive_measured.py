"""Receptive fields against an independent measurement: the input gradient of one output unit.

With every weight positive, no bias, max pools swapped for average pools of the same geometry
(a max pool's gradient reaches one pixel per window) and normalisation as identity, nothing can
cancel: the input gradient of an output unit is non-zero exactly on the input pixels the unit
reads. On each spatial axis the **extent** is ``last − first + 1``, from the first to the last
pixel (inclusive) where the gradient of the unit's channels is non-zero, holes (dilation, strides
above the kernel) included; its **centre** is ``(first + last)/2``, a half pixel where the extent
is even. Computed, the unit ``u`` reads ``c + u·j ± (r−1)/2``. Padding cells are not input
pixels, so at the border the measured field is clipped: every measurement below checks that its
field stays at least one pixel off both borders (the field is then whole), and probes a central
unit of an input large enough for that. ReLUs stay: with positive weights and a positive input
every activation is positive, so they pass gradients.

The figures come from ``receptive_fields`` on the trace of the very model measured (same module
geometry, same forward code), so a merge in the wrong place, a wrong jump or centre shows here.
For speed, the ResNets are measured "thin": every conv replaced by a one-channel conv of the same
kernel, stride, padding and dilation (the field does not depend on channels); the full-width
models are the slow variant.
"""

from __future__ import annotations

import copy
from fractions import Fraction

import pytest
import torch
from torch import nn

import archscope
from archscope.receptive import RFStatus, receptive_fields
from archscope.registry import get_entry

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
          nn.ConvTranspose3d)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
          nn.LayerNorm)


def _measurable(model: nn.Module, thin: bool = False) -> nn.Module:
    """A float32 copy with positive weights (1/fan-in), no bias, average pools, no norms."""
    model = copy.deepcopy(model)
    _swap(model, thin)
    return model.float().eval()


def _swap(parent: nn.Module, thin: bool) -> None:
    for name, child in parent.named_children():
        new: nn.Module | None = None
        if isinstance(child, _CONVS):
            new = child
            if thin:
                extra = ({"output_padding": child.output_padding}
                         if isinstance(child, nn.modules.conv._ConvTransposeNd) else {})
                new = type(child)(1, 1, child.kernel_size, stride=child.stride,
                                  padding=child.padding, dilation=child.dilation, bias=False,
                                  **extra)
            elif new.weight.is_meta:
                raise AssertionError("build the model on the CPU to measure it at full width")
            with torch.no_grad():
                new.weight.fill_(1.0 / new.weight[0].numel())
                if new.bias is not None:
                    new.bias.zero_()
        elif isinstance(child, nn.MaxPool2d):
            assert child.dilation in (1, (1, 1)), "an average pool has no dilation"
            new = nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                               ceil_mode=child.ceil_mode)
        elif isinstance(child, _NORMS):
            new = nn.Identity()
        elif isinstance(child, nn.Linear):
            new = nn.Identity() if thin else child
            if not thin:
                with torch.no_grad():
                    child.weight.fill_(1.0 / child.in_features)
                    if child.bias is not None:
                        child.bias.zero_()
        else:
            _swap(child, thin)
        if new is not None:
            setattr(parent, name, new)


def _measure(model: nn.Module, shape: tuple[int, ...], probes: list[str]
             ) -> dict[str, tuple[tuple[int, ...], list[tuple[int, int]], tuple[int, ...]]]:
    """Per probed module: (central unit, (first, last) per axis, input spatial size)."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    handles = [modules[name].register_forward_hook(
        lambda _m, _a, out, name=name: outputs.setdefault(name, out)) for name in probes]
    x = torch.ones(1, *shape, dtype=torch.float32, requires_grad=True)
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    found = {}
    for name in probes:
        out = outputs[name]
        unit = tuple(s // 2 for s in out.shape[2:])
        (grad,) = torch.autograd.grad(out[(0, slice(None), *unit)].sum(), x, retain_graph=True)
        reached = grad[0].abs().sum(0) > 0  # spatial mask
        spans = []
        for axis in range(reached.dim()):
            others = tuple(a for a in range(reached.dim()) if a != axis)
            hit = reached.any(dim=others) if others else reached
            idx = hit.nonzero().flatten().tolist()
            spans.append((idx[0], idx[-1]))
        found[name] = (unit, spans, tuple(shape[1:]))
    return found


def _check(model: nn.Module, shape: tuple[int, ...], probes: list[str], thin: bool = False,
           traced: nn.Module | None = None) -> dict[str, int]:
    """Measure ``probes`` and compare each with the computed field; returns the fields."""
    report = archscope.inspect(traced or model, shape, count_flops=False)
    fields = receptive_fields(report)
    sample = (1, *shape[1:]) if thin else shape  # a thin model reads one channel
    measured = _measure(_measurable(model, thin), sample, probes)
    seen = {}
    for name, (unit, spans, size) in measured.items():
        f = fields.find(name)
        assert f.status is RFStatus.COMPUTED, (name, f)
        for axis, (first, last) in enumerate(spans):
            assert first > 0 and last < size[axis] - 1, f"{name}: field touches the border"
            assert last - first + 1 == f.rf[axis], (name, axis, first, last, f.rf)
            assert Fraction(first + last, 2) == f.centre[axis] + unit[axis] * f.jump[axis], (
                name, axis, first, last, unit, f.centre, f.jump)
        seen[name] = f.rf[0]
    return seen


def _thin(name: str) -> nn.Module:
    with torch.device("meta"):
        return get_entry(name).build()


def test_resnet18_measured_thin() -> None:
    # Input 224: layer3's central unit (7, 7) is centred at 0 + 7·16 = 112 and reads
    # 112 ± (211−1)/2, pixels 7 … 217 of 224: inside the image. The block layer2.0 merges a
    # stride-2 3×3 path with the stride-2 1×1 downsample.
    seen = _check(_thin("resnet18"), (3, 224, 224), ["maxpool", "layer2.0", "layer3"],
                  thin=True)
    assert seen == {"maxpool": 11, "layer2.0": 67, "layer3": 211}


def test_resnet50_measured_thin() -> None:
    # Input 288: layer3's central unit (9, 9) reads 9·16 ± (267−1)/2 = 11 … 277 of 288.
    seen = _check(_thin("resnet50"), (3, 288, 288), ["layer1.0", "layer2.0", "layer3"],
                  thin=True)
    assert seen == {"layer1.0": 19, "layer2.0": 43, "layer3": 267}


@pytest.mark.slow
@pytest.mark.parametrize("name, rf", [("resnet18", 435), ("resnet50", 427)])
def test_resnets_measured_to_the_last_stage(name: str, rf: int) -> None:
    # Input 448: layer4's central unit (7, 7) is centred at 7·32 = 224 and reads 224 ± 217
    # (ResNet-18) or 224 ± 213 (ResNet-50): inside the image.
    probes = ["conv1", "maxpool", "layer1", "layer2", "layer3.0", "layer3", "layer4.0",
              "layer4"]
    seen = _check(_thin(name), (3, 448, 448), probes, thin=True)
    assert seen["layer4"] == rf
    full = get_entry(name).build()  # on the CPU: every channel, the real forward
    assert _check(full, (3, 448, 448), ["layer4"])["layer4"] == rf


class Inception(nn.Module):
    """GoogLeNet-style block: 1×1, 1×1→3×3, 1×1→5×5 (or two 3×3), 3×3 max pool→1×1 → cat."""

    def __init__(self, c: int, factorised: bool = False) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(c, 2, 1)
        self.b3 = nn.Sequential(nn.Conv2d(c, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
        wide = [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)] \
            if factorised else [nn.Conv2d(2, 2, 5, padding=2)]
        self.b5 = nn.Sequential(nn.Conv2d(c, 2, 1), nn.ReLU(), *wide)
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(c, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.inc1 = Inception(4)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.inc2 = Inception(8, factorised=True)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.inc2(self.pool(self.inc1(self.stem(x)))))


def test_inception_concatenation_measured() -> None:
    # By hand: stem 1 + (3−1)·1·1 = 3, jump 2, centre 0. inc1's branches: 1×1 3; 3×3
    # 3 + 2·2 = 7; 5×5 3 + 4·2 = 11; pool 3×3 then 1×1: 7 → cat max(3, 7, 11, 7) = 11, all
    # centred at 0 (padding (k−1)/2). pool: 11 + 2·2 = 15, jump 4. inc2: 3×3 15 + 2·4 = 23;
    # two 3×3 23 + 2·4 = 31; pool branch 23 → max = 31.
    model = InceptionNet()
    seen = _check(model, (3, 64, 64), ["stem", "inc1.b1", "inc1.b3", "inc1.b5", "inc1.bp",
                                       "inc1", "pool", "inc2.b5", "inc2"])
    assert [seen[n] for n in ("stem", "inc1.b1", "inc1.b3", "inc1.b5", "inc1", "pool", "inc2")] \
        == [3, 3, 7, 11, 11, 15, 31]
    fields = receptive_fields(archscope.inspect(model, (3, 64, 64), count_flops=False))
    assert fields.find("inc1.cat").rf_formula == "max(3, 7, 11, 7) = 11"
    assert fields.find("head.0").status is RFStatus.WHOLE_INPUT


class Chain(nn.Module):
    """Dilation, a transposed conv of stride 1, ceil-mode pools and a pass-through 1×1."""

    def __init__(self) -> None:
        super().__init__()
        self.dilated = nn.Conv2d(1, 1, 3, dilation=2)
        self.up = nn.ConvTranspose2d(1, 1, 3, stride=1, padding=0)
        self.up_padded = nn.ConvTranspose2d(1, 1, 4, stride=1, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.point = nn.Conv2d(1, 1, 1)
        self.pool2 = nn.MaxPool2d(2, 2, padding=1, ceil_mode=True)
        self.last = nn.Conv2d(1, 1, (3, 5), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up_padded(self.up(self.dilated(x)))
        return self.last(self.pool2(self.point(self.pool(x))))


def test_chain_of_windows_measured() -> None:
    # By hand: dilated k3 d2: 1 + (3−1)·2·1 = 5, centre 0 + (1·2 − 0) = 2.
    # up (transposed k3 p0): 5 + 2 = 7, centre 2 + (0 − 1)·1 = 1.
    # up_padded (transposed k4 d2 p2): 7 + 3·2 = 13, centre 1 + (2 − 3/2·2)·1 = 0.
    # pool k3 s2 (ceil): 13 + 2 = 15, jump 2, centre 0 + 1 = 1. point: unchanged.
    # pool2 k2 s2 p1 (ceil): 15 + 1·2 = 17, jump 4, centre 1 + (1/2 − 1)·2 = 0.
    # last (3×5, padding 0×1): rows 17 + 2·4 = 25, columns 17 + 4·4 = 33; centre rows
    # 0 + (1 − 0)·4 = 4, columns 0 + (2 − 1)·4 = 4.
    model = Chain()
    seen = _check(model, (1, 61, 61), ["dilated", "up", "up_padded", "pool", "point", "pool2",
                                       "last"])
    assert seen == {"dilated": 5, "up": 7, "up_padded": 13, "pool": 15, "point": 15,
                    "pool2": 17, "last": 25}
    f = receptive_fields(archscope.inspect(model, (1, 61, 61), count_flops=False)).find("last")
    assert (f.rf, f.jump, f.centre) == ((25, 33), (4, 4), (4, 4))
    assert f.rf_text == "25×33"


class SqueezeExcite(nn.Module):
    """A conv whose output is scaled by a gate computed from the global mean (SENet)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.gate = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * self.gate(self.squeeze(y))


def test_squeeze_excitation_sees_the_whole_input() -> None:
    model = SqueezeExcite()
    fields = receptive_fields(archscope.inspect(model, (1, 16, 16), count_flops=False))
    assert fields.find("mul").status is RFStatus.WHOLE_INPUT
    measurable = _measurable(model)
    x = torch.ones(1, 1, 16, 16, dtype=torch.float32, requires_grad=True)
    out = measurable(x)
    (grad,) = torch.autograd.grad(out[0, :, 8, 8].sum(), x)
    assert bool((grad != 0).all())  # every input pixel reaches one output unit


class Misaligned(nn.Module):
    """Branches that meet on a 16×16 input: a stride-2 conv beside a stride-1 one (both 8×8),
    and a k3 padding-1 conv beside a k2 ``padding='same'`` conv (both 16×16, centres 0 and ½)."""

    def __init__(self) -> None:
        super().__init__()
        self.strided = nn.Conv2d(1, 1, 9, stride=2, padding=4)  # 16 → 8, jump 2
        self.wide = nn.Conv2d(1, 1, 9)  # 16 → 8, jump 1
        self.odd = nn.Conv2d(1, 1, 3, padding=1)  # centre 0
        self.even = nn.Conv2d(1, 1, 2, padding="same")  # pads (0, 1): centre ½

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.strided(x) + self.wide(x), torch.cat([self.odd(x), self.even(x)], 1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_branches_with_other_jumps_or_centres_are_not_aligned() -> None:
    fields = receptive_fields(archscope.inspect(Misaligned(), (1, 16, 16), count_flops=False))
    add, cat = fields.find("add"), fields.find("cat")
    assert add.status is RFStatus.NOT_ALIGNED
    assert add.note == "paths merge with different jumps: 2 (strided), 1 (wide)"
    assert cat.status is RFStatus.NOT_ALIGNED
    assert cat.note == "paths merge with different centres: 0 (odd), 0.5 (even)"
    assert add.rf == () and add.rf_text == "not aligned"
    # Measured: the add's units are not one field moved by one jump. Unit u reads columns
    # 2u−4 … 2u+4 (strided) and u … u+8 (wide): units 2, 3, 4, 5 span 0…10, 2…11, 4…12, 5…14.
    measurable = _measurable(Misaligned())
    x = torch.ones(1, 1, 16, 16, dtype=torch.float32, requires_grad=True)
    out = measurable(x)[0]
    extents = []
    for u in range(2, 6):
        (grad,) = torch.autograd.grad(out[0, 0, 4, u], x, retain_graph=True)
        cols = (grad[0, 0].abs().sum(0) > 0).nonzero().flatten().tolist()
        extents.append(cols[-1] - cols[0] + 1)
    assert extents == [11, 10, 9, 10]
