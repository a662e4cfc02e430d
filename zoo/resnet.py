"""ResNet-18/34/50/101/152, version 1.5, and the plain 18- and 34-layer nets they are compared with.

Paper: K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, https://arxiv.org/abs/1512.03385 (Table 1 gives the five depths).

Variant: torchvision's ``models/resnet.py`` ("ResNet v1.5"), module for module, so a torchvision
``state_dict`` loads with ``strict=True`` (``conv1 bn1 relu maxpool layer1..4 avgpool fc``; blocks
``conv1..3 bn1..3 relu downsample``, ``downsample`` = ``Sequential(conv1x1, BatchNorm2d)``).
Deviations from the paper, all torchvision's:

- v1.5: a Bottleneck block that downsamples puts its stride on the 3×3 conv (``conv2``), not on
  the first 1×1 conv as the paper (v1) does. Same parameter count; slightly more MACs and accuracy.
  See https://catalog.ngc.nvidia.com/orgs/nvidia/resources/resnet_50_v1_5_for_pytorch.
- Shortcuts that change shape are projections (the paper's option B: 1×1 conv + BN).
- ``avgpool`` is ``AdaptiveAvgPool2d((1, 1))`` (the paper's global average pool), so inputs
  other than 224×224 work too.

The residual addition is written ``out = out + identity`` in ``forward``: a functional op, so the
inspection engine records it (a diagram draws the skip connection from it). torchvision writes
``out += identity``; the result and the ``state_dict`` are the same.

Plain nets (``plain18``, ``plain34``): the paper's §4.1 baselines, "Plain Networks" (Fig. 3, middle;
Table 2, Fig. 4 left), the ResNet-18/34 layouts without any shortcut. Each block is two 3×3 convs
with BatchNorm after each, as in the paper ("The plain networks have BN after each conv"); where a
stage halves the feature map, the block's first conv has stride 2 and doubles the filters, and no
projection exists (so the parameter count is the ResNet's minus its three ``downsample`` 1×1 convs
and their BatchNorms). Module names are the ResNets' (``layer2.0.conv1`` …), and torchvision's
initialization is kept, so a plain net and its ResNet differ only in the shortcuts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs and a shortcut (ResNet-18/34)."""

    expansion: int = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carries the stride: v1.5), 1×1 expand ×4, and a shortcut (ResNet-50+)."""

    expansion: int = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu(out)


class PlainBlock(BasicBlock):
    """Two 3×3 convs, each followed by BatchNorm, and no shortcut: the plain nets' block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


class ResNet(nn.Module):
    """A ResNet: stem (7×7/2 conv, 3×3/2 max-pool), four stages of blocks, global pool, ``fc``."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's scheme; nn.init works on the meta device too (it only fills in place).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            # Each block starts as the identity (Goyal et al. 2017, https://arxiv.org/abs/1706.02677).
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 3, 224, 224) → (N, 64, 56, 56)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)  # → (N, 512·expansion, 7, 7)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 512·expansion, 1, 1) → (N, 512·expansion)
        return self.fc(x)


class PlainNet(ResNet):
    """A ResNet's layout without shortcuts (He et al. 2015, §4.1 "Plain Networks")."""

    def __init__(self, layers: list[int], num_classes: int = 1000) -> None:
        super().__init__(PlainBlock, layers, num_classes=num_classes)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        # No downsample: the first block's stride-2 conv1 halves the map and doubles the filters.
        layers: list[nn.Module] = [block(self.inplanes, planes, stride)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def _resnet(
    block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int, **kwargs: Any
) -> ResNet:
    return ResNet(block, layers, num_classes=num_classes, **kwargs)


def resnet18(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-18 v1.5 (He et al. 2015)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-34 v1.5 (He et al. 2015)."""
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-50 v1.5 (He et al. 2015)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)


def resnet101(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-101 v1.5 (He et al. 2015)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)


def resnet152(num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-152 v1.5 (He et al. 2015)."""
    return _resnet(Bottleneck, [3, 8, 36, 3], num_classes, **kwargs)


def plain18(num_classes: int = 1000) -> ResNet:
    """Plain 18-layer net: ResNet-18 without its shortcuts (He et al. 2015, §4.1)."""
    return PlainNet([2, 2, 2, 2], num_classes)


def plain34(num_classes: int = 1000) -> ResNet:
    """Plain 34-layer net: ResNet-34 without its shortcuts (He et al. 2015, §4.1)."""
    return PlainNet([3, 4, 6, 3], num_classes)
