"""The plain nets of He et al. (ResNet-18/34 without shortcuts) and the vanishing gradient.

Oracles: the parameter counts worked out from the layer shapes below and
``sum(p.numel() for p in model.parameters())``; torchvision's ResNet layout; real forward and
backward passes.
"""

from __future__ import annotations

import pytest
import torch
from archscope.zoo.resnet import PlainBlock
from torch import nn

from archscope.registry import get_entry
from archscope.source import load_model
from archscope.stats import model_stats


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(name: str) -> nn.Module:
    return load_model(name).model  # on the meta device: shapes only


# The three projections a ResNet-18/34 has and a plain net lacks, one per stage that halves the
# map (conv1×1 without bias + BatchNorm's weight and bias):
#   layer2.0.downsample: 64·128 + 2·128   =   8,192 +   256 =   8,448
#   layer3.0.downsample: 128·256 + 2·256  =  32,768 +   512 =  33,280
#   layer4.0.downsample: 256·512 + 2·512  = 131,072 + 1,024 = 132,096
PROJECTIONS = 8_448 + 33_280 + 132_096  # 173,824


@pytest.mark.parametrize(("plain", "resnet", "published", "expected"), [
    ("plain18", "resnet18", 11_689_512, 11_515_688),  # 11,689,512 − 173,824
    ("plain34", "resnet34", 21_797_672, 21_623_848),  # 21,797,672 − 173,824
])
def test_plain_params_are_the_resnets_minus_the_projections(
        plain: str, resnet: str, published: int, expected: int) -> None:
    assert PROJECTIONS == 173_824 and published - PROJECTIONS == expected
    model = _meta(plain)
    assert _count(model) == expected == get_entry(plain).params
    projections = sum(_count(m) for name, m in _meta(resnet).named_modules()
                      if name.endswith("downsample"))
    assert projections == PROJECTIONS
    # the same names as the ResNet, the downsample entries gone
    theirs = {k for k in _meta(resnet).state_dict() if ".downsample." not in k}
    assert set(model.state_dict()) == theirs


def test_plain34_has_34_weighted_layers_and_no_shortcut() -> None:
    model = _meta("plain34")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 1 + 2 * (3 + 4 + 6 + 3) + 1 == 34
    # every block's first conv carries the stride where the stage halves the map
    assert [model.get_submodule(f"layer{s}.0.conv1").stride for s in (1, 2, 3, 4)] == [
        (1, 1), (2, 2), (2, 2), (2, 2)]
    # no shortcut: the output of a block is zero where its second BatchNorm outputs ≤ 0
    torch.manual_seed(0)
    block = PlainBlock(64, 64)
    assert type(model.get_submodule("layer1.0")) is PlainBlock
    x = torch.randn(2, 64, 8, 8)
    expected = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))
    torch.testing.assert_close(block(x), expected)


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    return {name: load_model(name, device="cpu").model for name in ("plain18", "resnet18")}


def _first_grad(model: nn.Module, no_norm: bool, shape: tuple[int, ...], batch: int) -> float:
    run = model_stats(model, shape, batch=batch, no_norm=no_norm)
    first = run.weighted()[0]
    assert first.name == "conv1" and first.weight_grad_std is not None
    return first.weight_grad_std


class _Block(nn.Module):
    """Linear-BN-ReLU-Linear-BN, then ReLU, with or without the shortcut: a BasicBlock in miniature."""

    def __init__(self, residual: bool, width: int = 32) -> None:
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(width, width), nn.BatchNorm1d(width)
        self.fc2, self.bn2 = nn.Linear(width, width), nn.BatchNorm1d(width)
        self.relu = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.fc2(self.relu(self.bn1(self.fc1(x)))))
        return self.relu(out + x if self.residual else out)


def _tiny(residual: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 32), *(_Block(residual) for _ in range(16)),
                         nn.Linear(32, 10))


def test_the_effect_in_miniature() -> None:
    # 34 Linear layers, 32 wide, PyTorch's default init (variance 1/(3·fan_in): a ReLU layer keeps
    # a sixth of its input's second moment). Measured: without BatchNorm 8.4e-16 (plain) against
    # 0.0094 (residual); with it 6.3 against 0.36.
    plain, residual = _tiny(False), _tiny(True)
    first = [model_stats(m, (32,), batch=64, no_norm=True).weighted()[0].weight_grad_std
             for m in (plain, residual)]
    assert first[0] is not None and first[1] is not None and first[1] > 100 * first[0]
    first = [model_stats(m, (32,), batch=64).weighted()[0].weight_grad_std
             for m in (plain, residual)]
    assert first[0] is not None and first[1] is not None and first[0] >= first[1]


# The zoo's nets, in the slow tests: each run copies and differentiates 11–22 million weights.
# The 18-layer pair on 32×32 inputs, batch 8 (measured: plain18 2.6e-5 against resnet18 0.028
# without BatchNorm; 1.7 against 0.81 with it), and the 34-layer pair.

@pytest.mark.slow
def test_without_batchnorm_plain18s_first_gradient_vanishes(nets: dict[str, nn.Module]) -> None:
    plain = _first_grad(nets["plain18"], True, (3, 32, 32), 8)
    resnet = _first_grad(nets["resnet18"], True, (3, 32, 32), 8)
    assert resnet > 100 * plain


@pytest.mark.slow
def test_with_batchnorm_plain18s_first_gradient_is_not_smaller(nets: dict[str, nn.Module]) -> None:
    plain = _first_grad(nets["plain18"], False, (3, 32, 32), 8)
    resnet = _first_grad(nets["resnet18"], False, (3, 32, 32), 8)
    assert plain >= resnet


@pytest.fixture(scope="module")
def nets34() -> dict[str, nn.Module]:
    return {name: load_model(name, device="cpu").model for name in ("plain34", "resnet34")}


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "batch"), [((3, 32, 32), 8), ((3, 112, 112), 16)],
                         ids=["32x32-batch8", "112x112-batch16"])
def test_vanishing_gradient_plain34_against_resnet34(
        nets34: dict[str, nn.Module], shape: tuple[int, ...], batch: int) -> None:
    # The measurement at 112×112, batch 16, torchvision's init: without BatchNorm about
    # 3e-4 (plain34) against about 1 (resnet34); with it 3.7 against 0.35.
    plain = _first_grad(nets34["plain34"], True, shape, batch)
    resnet = _first_grad(nets34["resnet34"], True, shape, batch)
    assert resnet > 100 * plain
    plain = _first_grad(nets34["plain34"], False, shape, batch)
    resnet = _first_grad(nets34["resnet34"], False, shape, batch)
    assert plain >= resnet
