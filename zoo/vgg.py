"""VGG-11/13/16/19, with and without batch normalization.

Paper: K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, https://arxiv.org/abs/1409.1556 (configurations A, B, D and E of its
Table 1 are ``vgg11``, ``vgg13``, ``vgg16`` and ``vgg19``).

Variant: torchvision's ``models/vgg.py``, module for module, so a torchvision ``state_dict`` loads
with ``strict=True`` (``features.N``, ``avgpool``, ``classifier.0/3/6``). Deviations from the paper,
all torchvision's:

- ``avgpool`` (``AdaptiveAvgPool2d((7, 7))``) sits between the conv stack and the classifier. At
  224×224 the conv stack already ends at 7×7, so it is the identity there and adds no parameters;
  at other sizes it lets the classifier accept any input of at least 32×32.
- The ``_bn`` variants put a ``BatchNorm2d`` after every conv (batch norm postdates the paper).
- Initialization is torchvision's (He-normal convs, N(0, 0.01) linears), not the paper's
  pre-training of configuration A.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# An entry is a conv's output channels (3×3, padding 1, then ReLU) or "M" (2×2 max-pool, stride 2).
# fmt: off
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}
# fmt: on


def make_layers(cfg: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """The conv stack for one configuration, indexed as torchvision indexes it."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_channels = int(v)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        if batch_norm:
            layers += [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        else:
            layers += [conv, nn.ReLU(inplace=True)]
        in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network: ``features`` (conv stack), ``avgpool``, ``classifier`` (three linears)."""

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        init_weights: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme; nn.init works on the meta device too (it only fills in place).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 3, 224, 224) → (N, 512, 7, 7)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 512, 7, 7) → (N, 25088)
        x = self.classifier(x)
        return x


def _vgg(cfg: str, batch_norm: bool, num_classes: int, **kwargs: Any) -> VGG:
    return VGG(make_layers(CFGS[cfg], batch_norm=batch_norm), num_classes=num_classes, **kwargs)


def vgg11(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-11, configuration A (Simonyan & Zisserman 2014)."""
    return _vgg("A", False, num_classes, **kwargs)


def vgg11_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-11, configuration A, with batch normalization."""
    return _vgg("A", True, num_classes, **kwargs)


def vgg13(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-13, configuration B (Simonyan & Zisserman 2014)."""
    return _vgg("B", False, num_classes, **kwargs)


def vgg13_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-13, configuration B, with batch normalization."""
    return _vgg("B", True, num_classes, **kwargs)


def vgg16(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-16, configuration D (Simonyan & Zisserman 2014)."""
    return _vgg("D", False, num_classes, **kwargs)


def vgg16_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-16, configuration D, with batch normalization."""
    return _vgg("D", True, num_classes, **kwargs)


def vgg19(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-19, configuration E (Simonyan & Zisserman 2014)."""
    return _vgg("E", False, num_classes, **kwargs)


def vgg19_bn(num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG-19, configuration E, with batch normalization."""
    return _vgg("E", True, num_classes, **kwargs)
