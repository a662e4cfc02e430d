"""The lecture notes' Keras models, in PyTorch, with the lecture's parameter counts.

Sources: the Korean course notes archscope's users study (lectures 000, 002 and 003); the models
themselves are textbook ones:

- ``lecture_mnist_cnn``: lecture 003, Keras code in the style of TensorFlow's CNN tutorial
  (https://www.tensorflow.org/tutorials/images/cnn), on 28×28×1 MNIST; its ``model.summary()``
  reads 320 + 18,496 + 36,928 + 36,928 + 650 = 93,322.
- ``lecture_catsdogs_cnn``: lecture 000, F. Chollet, *Deep Learning with Python* (2017), §5.2
  (https://github.com/fchollet/deep-learning-with-python-notebooks, "5.2 using convnets with small
  datasets"): 3,453,121 parameters, Dense512 alone 3,211,776.
- ``lecture_mlp``: lecture 002, the MNIST MLP of 『밑바닥부터 시작하는 딥러닝』 (S. Saito, *Deep
  Learning from Scratch*, ch. 3): 784-50-100-10 with sigmoid, 45,360 parameters.
- ``lecture_multitask``: lecture 000's "one conv base, three heads" (age 0–100, sex, race), which
  the note describes without layer sizes; the layers here are archscope's own design (below).

Keras → PyTorch, stated once for all four:

- Inputs are channels-first (N, C, H, W); Keras prints (None, H, W, C).
- Conv2D(…, (3, 3)) is "valid" (no padding), stride 1; MaxPooling2D((2, 2)) floors odd sizes
  (11 → 5), like ``nn.MaxPool2d(2)``.
- The last layer returns logits: Keras put softmax (or sigmoid) inside the last Dense; in PyTorch
  it belongs to the loss (``nn.CrossEntropyLoss``, ``nn.BCEWithLogitsLoss``), which is numerically
  safer. No parameters change.
- Flatten order differs (Keras flattens H, W, C; PyTorch C, H, W), so Keras weights need a permuted
  first Dense to load; the counts are the same.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _named(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    """``nn.Sequential`` with readable child names (``features.conv1``) instead of indices."""
    return nn.Sequential(OrderedDict(layers))


def _conv_block(
    index: int, c_in: int, c_out: int, pool: bool = True
) -> list[tuple[str, nn.Module]]:
    """Keras ``Conv2D(c_out, (3, 3), activation="relu")``, then ``MaxPooling2D((2, 2))``."""
    layers: list[tuple[str, nn.Module]] = [
        (f"conv{index}", nn.Conv2d(c_in, c_out, kernel_size=3)),
        (f"relu{index}", nn.ReLU()),
    ]
    if pool:
        layers.append((f"pool{index}", nn.MaxPool2d(kernel_size=2)))
    return layers


class LectureCNN(nn.Module):
    """A Keras ``Sequential`` CNN: ``features`` (conv/pool stack), ``classifier`` (flatten, denses).

    The split lets ``--freeze features`` freeze the conv base, as lecture 000 does for transfer
    learning.
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MultiTaskCNN(nn.Module):
    """One shared conv base and three heads; ``forward`` returns ``{"age", "sex", "race"}``.

    Layers (3×200×200 input; 3×3 valid convs with ReLU, 2×2 max-pools):

    ============  =====================  ================================
    module        output                 parameters
    ============  =====================  ================================
    conv1, pool1  32×198×198, 32×99×99   (3·3·3+1)·32    =      896
    conv2, pool2  64×97×97,   64×48×48   (3·3·32+1)·64   =   18,496
    conv3, pool3  128×46×46,  128×23×23  (3·3·64+1)·128  =   73,856
    conv4, pool4  128×21×21,  128×10×10  (3·3·128+1)·128 =  147,584
    avgpool       128×1×1 → 128          0
    age           64 → 1                 (128+1)·64 + (64+1)·1 = 8,321
    sex           64 → 1                 (128+1)·64 + (64+1)·1 = 8,321
    race          64 → 5                 (128+1)·64 + (64+1)·5 = 8,581
    ============  =====================  ================================

    Total: 240,832 (base) + 25,223 (heads) = **266,055**.

    Design: the base is the cats-vs-dogs one (lecture 000). It ends in a global average pool, not a
    flatten: flattening 128×10×10 into a Dense512 would cost (12,800+1)·512 = 6,554,112 parameters,
    the overfitting lecture 000 warns about; the pool hands each head 128 features. Each head is its
    own small Dense64-ReLU-Dense on the shared features (the note: one base, different last layers):

    - ``age``: one linear unit, a regression (targets 0–100; scale them, e.g. to 0–1, and use MSE).
    - ``sex``: one logit (``nn.BCEWithLogitsLoss``).
    - ``race``: ``num_classes`` logits (default 5, as UTKFace's race labels 0–4;
      ``nn.CrossEntropyLoss``).

    The note's point that the three losses have different ranges and need weights to balance them
    belongs to training code, not to the model.
    """

    def __init__(self, num_classes: int = 5, hidden: int = 64) -> None:
        super().__init__()
        self.features = _named(
            *_conv_block(1, 3, 32),
            *_conv_block(2, 32, 64),
            *_conv_block(3, 64, 128),
            *_conv_block(4, 128, 128),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.age = self._head(128, hidden, 1)
        self.sex = self._head(128, hidden, 1)
        self.race = self._head(128, hidden, num_classes)

    @staticmethod
    def _head(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
        return _named(
            ("fc1", nn.Linear(in_features, hidden)),
            ("relu", nn.ReLU()),
            ("fc2", nn.Linear(hidden, out_features)),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.features(x)  # (N, 3, 200, 200) → (N, 128, 10, 10)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 128, 1, 1) → (N, 128)
        return {"age": self.age(x), "sex": self.sex(x), "race": self.race(x)}


def lecture_mnist_cnn(num_classes: int = 10) -> LectureCNN:
    """Lecture 003's Keras MNIST CNN, 1×28×28 → 10 logits, 93,322 parameters.

    Shapes 28 → conv 26 → pool 13 → conv 11 → pool 5 → conv 3; 3·3·64 = 576 features.
    Parameters: conv1 (3·3·1+1)·32 = 320, conv2 (3·3·32+1)·64 = 18,496, conv3 (3·3·64+1)·64 =
    36,928, fc1 (576+1)·64 = 36,928, fc2 (64+1)·10 = 650.
    """
    features = _named(
        *_conv_block(1, 1, 32),  # 28 → 26 → 13
        *_conv_block(2, 32, 64),  # 13 → 11 → 5
        *_conv_block(3, 64, 64, pool=False),  # 5 → 3
    )
    classifier = _named(
        ("flatten", nn.Flatten()),  # (N, 64, 3, 3) → (N, 576)
        ("fc1", nn.Linear(3 * 3 * 64, 64)),
        ("relu", nn.ReLU()),
        ("fc2", nn.Linear(64, num_classes)),  # Keras: softmax here; ours: logits
    )
    return LectureCNN(features, classifier)


def lecture_catsdogs_cnn(num_classes: int = 1) -> LectureCNN:
    """Lecture 000's cats-vs-dogs CNN, 3×150×150 → 1 logit, 3,453,121 parameters.

    Shapes 150 → 148 → 74 → 72 → 36 → 34 → 17 → 15 → 7; 7·7·128 = 6272 features.
    Parameters: (3·3·3+1)·32 = 896, (3·3·32+1)·64 = 18,496, (3·3·64+1)·128 = 73,856,
    (3·3·128+1)·128 = 147,584, Dense512 (6272+1)·512 = 3,211,776, Dense1 (512+1)·1 = 513.
    Keras used ``Dense(1, activation="sigmoid")``; this returns the logit for
    ``nn.BCEWithLogitsLoss`` (apply ``torch.sigmoid`` for a probability).
    """
    features = _named(
        *_conv_block(1, 3, 32),  # 150 → 148 → 74
        *_conv_block(2, 32, 64),  # 74 → 72 → 36
        *_conv_block(3, 64, 128),  # 36 → 34 → 17
        *_conv_block(4, 128, 128),  # 17 → 15 → 7
    )
    classifier = _named(
        ("flatten", nn.Flatten()),  # (N, 128, 7, 7) → (N, 6272)
        ("fc1", nn.Linear(7 * 7 * 128, 512)),
        ("relu", nn.ReLU()),
        ("fc2", nn.Linear(512, num_classes)),  # Keras: sigmoid here; ours: the logit
    )
    return LectureCNN(features, classifier)


def lecture_mlp(num_classes: int = 10) -> nn.Sequential:
    """Lecture 002's MNIST MLP 784-50-100-10 with sigmoid hidden layers, 45,360 parameters.

    Parameters: (784+1)·50 = 39,250, (50+1)·100 = 5,100, (100+1)·10 = 1,010. The book's softmax
    output is left to the loss.
    """
    return _named(
        ("flatten", nn.Flatten()),  # (N, 1, 28, 28) → (N, 784)
        ("fc1", nn.Linear(28 * 28, 50)),
        ("sigmoid1", nn.Sigmoid()),
        ("fc2", nn.Linear(50, 100)),
        ("sigmoid2", nn.Sigmoid()),
        ("fc3", nn.Linear(100, num_classes)),
    )


def lecture_multitask(num_classes: int = 5) -> MultiTaskCNN:
    """Lecture 000's three-headed network (age, sex, race), 3×200×200, 266,055 parameters.

    ``num_classes`` sets the race head; see :class:`MultiTaskCNN` for the layer table.
    """
    return MultiTaskCNN(num_classes=num_classes)
