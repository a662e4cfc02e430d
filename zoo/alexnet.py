"""AlexNet: the 2012 paper as taught, and torchvision's "one weird trick" layout.

Papers:
- A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep Convolutional
  Neural Networks", NeurIPS 2012,
  https://papers.nips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html
  (``alexnet``, and ``alexnet_2gpu``: the paper's two-GPU split).
- A. Krizhevsky, "One weird trick for parallelizing convolutional neural networks", 2014,
  https://arxiv.org/abs/1404.5997 (``alexnet_torchvision``: torchvision's ``models/alexnet.py``,
  module for module, so its ``state_dict`` loads with ``strict=True``).

``alexnet`` follows the 2012 paper (section 3.5 and Figure 2): conv1 96 11×11/4 → ReLU → LRN →
max-pool 3/2 → conv2 256 5×5 pad 2 → ReLU → LRN → max-pool 3/2 → conv3 384 → conv4 384 →
conv5 256 (3×3 pad 1, ReLU) → max-pool 3/2 → 256·6·6 = 9216 → FC 4096 → FC 4096 → FC 1000, with
dropout 0.5 on the two hidden FC layers. Where lecture 004 disagrees with the paper, the paper wins:
the note lists conv3..5 as "3 3 256", "3 3 192", "3 3 192" (kernel depths, the 192 being one GPU's
half of 384, not output channels) and pools before the LRN; the paper has 384/384/256 kernels and
normalizes before pooling ("max-pooling layers ... follow both response-normalization layers").

Deviations and choices, all stated:

- Input 3×227×227. The paper says 224×224, but its own arithmetic (55×55 after conv1, 6×6 after
  pool5) needs 227 with no padding; 224 ends at 5×5 and the classifier refuses it. There is no
  adaptive pool: the paper has none, so a wrong input size fails at ``classifier.1`` instead of
  being silently resized.
- ``groups=1`` (default) is the single-tower network (62,378,344 parameters); ``groups=2`` is the
  paper's two-GPU split, where conv2, conv4 and conv5 see only the kernel maps on their own GPU
  (60,965,224 parameters). conv3 and the FC layers connect across GPUs, so they are not grouped.
- LRN: the paper's ``k=2, n=5, α=1e-4, β=0.75`` with ``b = a / (k + α·Σa²)^β``. PyTorch's
  ``LocalResponseNorm`` (like Caffe's) divides α by n, so the paper's α is passed as ``α·n = 5e-4``.
  It has no parameters either way.
- Dropout sits before FC6 and FC7 (torchvision's order, so ``classifier.1/4/6`` name the same
  linears in both variants); the paper drops the outputs of FC6 and FC7. Same count.
- Output is the logit (the paper's softmax lives in the loss, ``nn.CrossEntropyLoss``).
- Paper initialization: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC
  layers, 0 elsewhere. ``alexnet_torchvision`` keeps PyTorch's default initialization, as
  torchvision does.
"""

from __future__ import annotations

import torch
from torch import nn

# Paper section 3.3: k = 2, n = 5, α = 1e-4, β = 0.75 with α multiplying the plain sum of squares.
_LRN_SIZE = 5
_LRN_ALPHA = 1e-4 * _LRN_SIZE  # PyTorch averages over the n neighbours instead of summing
_LRN_BETA = 0.75
_LRN_K = 2.0


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(size=_LRN_SIZE, alpha=_LRN_ALPHA, beta=_LRN_BETA, k=_LRN_K)


def _paper_features(groups: int) -> nn.Sequential:
    """The 2012 conv stack; ``groups=2`` splits conv2/4/5 over the two GPUs of Figure 2."""
    return nn.Sequential(
        nn.Conv2d(3, 96, kernel_size=11, stride=4),  # 0: 227 → 55
        nn.ReLU(inplace=True),  # 1
        _lrn(),  # 2
        nn.MaxPool2d(kernel_size=3, stride=2),  # 3: 55 → 27 (overlapping: 3×3 windows, stride 2)
        nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups),  # 4: 27 → 27
        nn.ReLU(inplace=True),  # 5
        _lrn(),  # 6
        nn.MaxPool2d(kernel_size=3, stride=2),  # 7: 27 → 13
        nn.Conv2d(256, 384, kernel_size=3, padding=1),  # 8: 13 → 13
        nn.ReLU(inplace=True),  # 9
        nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups),  # 10
        nn.ReLU(inplace=True),  # 11
        nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups),  # 12
        nn.ReLU(inplace=True),  # 13
        nn.MaxPool2d(kernel_size=3, stride=2),  # 14: 13 → 6
    )


def _torchvision_features() -> nn.Sequential:
    """torchvision's conv stack (64-192-384-256-256, no LRN), for 224×224 inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0: 224 → 55
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2: 55 → 27
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5: 27 → 13
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),  # 12: 13 → 6
    )


class AlexNet(nn.Module):
    """``features`` (conv stack), optional ``avgpool``, flatten to 9216, ``classifier`` (3 FCs)."""

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        dropout: float = 0.5,
        adaptive_pool: bool = True,
    ) -> None:
        super().__init__()
        self.features = features
        # torchvision resizes any input to 6×6 here; the paper variant has no such layer.
        self.avgpool: nn.Module | None = nn.AdaptiveAvgPool2d((6, 6)) if adaptive_pool else None
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),  # 0
            nn.Linear(256 * 6 * 6, 4096),  # 1: FC6
            nn.ReLU(inplace=True),  # 2
            nn.Dropout(p=dropout),  # 3
            nn.Linear(4096, 4096),  # 4: FC7
            nn.ReLU(inplace=True),  # 5
            nn.Linear(4096, num_classes),  # 6: FC8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, 3, 227, 227) → (N, 256, 6, 6)
        if self.avgpool is not None:
            x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 256, 6, 6) → (N, 9216)
        return self.classifier(x)


def _init_paper(model: AlexNet) -> None:
    """Paper section 5: N(0, 0.01) weights; bias 1 in conv2, conv4, conv5 and FC6/FC7, else 0."""
    ones = {
        model.features[4],
        model.features[10],
        model.features[12],
        model.classifier[1],
        model.classifier[4],
    }
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            if m.bias is not None:
                nn.init.constant_(m.bias, 1.0 if m in ones else 0.0)


def _alexnet(features: nn.Sequential, num_classes: int, dropout: float, *, paper: bool) -> AlexNet:
    model = AlexNet(features, num_classes=num_classes, dropout=dropout, adaptive_pool=not paper)
    if paper:
        _init_paper(model)
    return model


def alexnet(num_classes: int = 1000, groups: int = 1, dropout: float = 0.5) -> AlexNet:
    """AlexNet as in Krizhevsky et al. 2012, for 3×227×227 inputs.

    Args:
        num_classes: outputs of the last FC layer.
        groups: 1 for one tower (62,378,344 parameters), 2 for the paper's two-GPU split of conv2,
            conv4 and conv5 (60,965,224).
        dropout: drop probability before FC6 and FC7.
    """
    if groups not in (1, 2):
        raise ValueError(f"alexnet: groups is 1 (one tower) or 2 (the paper's split), not {groups}")
    return _alexnet(_paper_features(groups), num_classes, dropout, paper=True)


def alexnet_2gpu(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """AlexNet as trained on two GPUs in Krizhevsky et al. 2012 (Figure 2), for 3×227×227 inputs.

    conv2, conv4 and conv5 use ``groups=2``: each GPU's kernels see only the maps on that GPU, so
    conv4 and conv5 have 3×3×192 kernels (lecture 004's "3 3 192") and conv2 5×5×48 ones:
    60,965,224 parameters, 1,413,120 fewer than the one-tower :func:`alexnet`.
    """
    return alexnet(num_classes=num_classes, groups=2, dropout=dropout)


def alexnet_torchvision(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's AlexNet ("One weird trick", Krizhevsky 2014), for 3×224×224 inputs."""
    return _alexnet(_torchvision_features(), num_classes, dropout, paper=False)
