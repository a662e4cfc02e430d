"""The layer-spec language: lecture networks typed as specs give the lecture's numbers.

Oracles: the lecture arithmetic written out by hand, hand-built ``nn.Sequential`` models traced by
the same engine, and real CPU forward passes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from archscope.engine import inspect
from archscope.errors import ArchscopeError, SpecShapeError, SpecSyntaxError
from archscope.formulas import output_size
from archscope.report import evaluate_formula
from archscope.spec import build, build_spec, calc_report, parse, read_spec, to_layout

CATSDOGS = ("150x150x3 conv32 k3 → maxpool2 → conv64 k3 → maxpool2 → conv128 k3 → maxpool2 → "
            "conv128 k3 → maxpool2 → flatten → dense512 → dense1")
MNIST_CNN = ("28x28x1 conv32 k3 relu → maxpool2 → conv64 k3 relu → maxpool2 → conv64 k3 relu → "
             "flatten → dense64 relu → dense10 softmax")


def _lecture_form(formula: str) -> str:
    """``⌊(150 − 3 + 2·0)/1⌋ + 1 = 148`` and ``(150−3)/1+1 = 148`` both → ``(150−3)/1+1=148``."""
    return (formula.replace(" ", "").replace("⌊", "").replace("⌋", "").replace("+2·0)", ")")
            .replace("-", "−"))


def _by_type(report, type_name):
    return [r for r in report.leaves() if r.type == type_name]


def _output_values(formula: str) -> list[int]:
    """Each axis of an output formula (``H: …; W: …`` or one) checked: the arithmetic before
    `` = `` evaluates to the value after it; returns the values."""
    values = []
    for part in formula.split("; "):
        expr, value = re.sub(r"^[DHW]: ", "", part).rsplit(" = ", 1)
        assert evaluate_formula(expr) == int(value), formula
        values.append(int(value))
    return values


# ───────────────────────────────────────────────────────────────── lecture networks


def test_catsdogs_lecture_numbers_layer_by_layer() -> None:
    report = calc_report(CATSDOGS)
    convs = _by_type(report, "Conv2d")
    pools = _by_type(report, "MaxPool2d")
    # Lecture 000: (150 − 3)/1 + 1 = 148, pool 148/2 = 74, (74 − 3)/1 + 1 = 72, 72/2 = 36,
    # (36 − 3)/1 + 1 = 34, 34/2 = 17, (17 − 3)/1 + 1 = 15, ⌊15/2⌋ = 7.
    assert [c.output_shape for c in convs] == [(1, 148, 148, 32), (1, 72, 72, 64),
                                               (1, 34, 34, 128), (1, 15, 15, 128)]
    assert [p.output_shape for p in pools] == [(1, 74, 74, 32), (1, 36, 36, 64),
                                               (1, 17, 17, 128), (1, 7, 7, 128)]
    assert _lecture_form(convs[0].output_formula) == "(150−3)/1+1=148"
    # (3·3·3+1)·32 = 896, (3·3·32+1)·64 = 18,496, (3·3·64+1)·128 = 73,856,
    # (3·3·128+1)·128 = 147,584
    assert [c.params for c in convs] == [896, 18_496, 73_856, 147_584]
    assert convs[1].param_formula == "(3·3·32+1)·64"
    flatten = _by_type(report, "Flatten")[0]
    assert flatten.output_shape == (1, 7 * 7 * 128)  # 7·7·128 = 6272
    dense = _by_type(report, "Linear")
    assert [d.params for d in dense] == [(6272 + 1) * 512, (512 + 1) * 1]
    assert dense[0].params == 3_211_776
    assert report.total_params == 896 + 18_496 + 73_856 + 147_584 + 3_211_776 + 513 == 3_453_121
    assert report.input_shape == (150, 150, 3)  # shown the way it was written


def test_keras_mnist_cnn_lecture_numbers() -> None:
    report = calc_report(MNIST_CNN)
    convs = _by_type(report, "Conv2d")
    pools = _by_type(report, "MaxPool2d")
    # Lecture 003: 28 − 3 + 1 = 26 → 13 → 13 − 3 + 1 = 11 → ⌊11/2⌋ = 5 → 5 − 3 + 1 = 3.
    assert [c.output_shape[1] for c in convs] == [26, 11, 3]
    assert [p.output_shape[1] for p in pools] == [13, 5]
    # (3·3·1+1)·32 = 320, (3·3·32+1)·64 = 18,496, (3·3·64+1)·64 = 36,928,
    # (3·3·64+1)·64… then Dense: (3·3·64+1)·64 = (576+1)·64 = 36,928, (64+1)·10 = 650.
    assert [c.params for c in convs] == [320, 18_496, 36_928]
    assert [d.params for d in _by_type(report, "Linear")] == [(576 + 1) * 64, (64 + 1) * 10]
    assert report.total_params == 320 + 18_496 + 36_928 + 36_928 + 650 == 93_322


def test_lecture_mlp() -> None:
    # Lecture 002: 784-50-100-10 with sigmoid: (784+1)·50 + (50+1)·100 + (100+1)·10 = 45,360.
    report = calc_report("784 → dense50 sigmoid → dense100 sigmoid → dense10")
    assert [d.params for d in _by_type(report, "Linear")] == [39_250, 5_100, 1_010]
    assert report.total_params == 45_360
    # 28×28 grey images flattened give the same network
    flat = calc_report("28x28 flatten dense50 sigmoid dense100 sigmoid dense10")
    assert flat.total_params == 45_360


def test_vgg16_feature_stack() -> None:
    spec = ("224x224x3 repeat 2 [conv64 k3 same relu] → maxpool2 → "
            "repeat 2 [conv128 k3 same relu] → maxpool2 → "
            "repeat 3 [conv256 k3 same relu] → maxpool2 → "
            "repeat 3 [conv512 k3 same relu] → maxpool2 → "
            "repeat 3 [conv512 k3 same relu] → maxpool2")
    report = calc_report(spec)
    convs = _by_type(report, "Conv2d")
    assert len(convs) == 13
    # (3·3·3+1)·64 = 1,792; (3·3·64+1)·64 = 36,928; … VGG16's 13 convs hold 14,714,688.
    assert convs[0].params == 1_792
    assert convs[1].params == 36_928
    assert report.total_params == 14_714_688
    # same padding keeps 224 until each pool halves it: 224 → 112 → 56 → 28 → 14 → 7
    assert [p.output_shape[1] for p in _by_type(report, "MaxPool2d")] == [112, 56, 28, 14, 7]
    assert _lecture_form(convs[0].output_formula).endswith("/1+1=224")


def test_alexnet_first_two_layers() -> None:
    spec = ("chw:3x227x227 conv96 k11 s4 relu → lrn → maxpool3/2 → "
            "conv256 k5 p2 relu → lrn → maxpool k3 s2")
    report = calc_report(spec)
    convs = _by_type(report, "Conv2d")
    pools = _by_type(report, "MaxPool2d")
    # (227 − 11)/4 + 1 = 55; overlapping 3×3/2 pooling: (55 − 3)/2 + 1 = 27;
    # (27 − 5 + 2·2)/1 + 1 = 27; (27 − 3)/2 + 1 = 13.
    assert convs[0].output_shape == (1, 96, 55, 55)  # chw: shown as C×H×W
    assert pools[0].output_shape == (1, 96, 27, 27)
    assert convs[1].output_shape == (1, 256, 27, 27)
    assert pools[1].output_shape == (1, 256, 13, 13)
    assert _lecture_form(convs[0].output_formula) == "(227−11)/4+1=55"
    # (11·11·3+1)·96 = 34,944; (5·5·96+1)·256 = 614,656; LRN has no parameters
    assert [c.params for c in convs] == [34_944, 614_656]
    lrns = _by_type(report, "LocalResponseNorm")
    assert len(lrns) == 2 and all(r.params == 0 for r in lrns)
    assert report.total_params == 34_944 + 614_656


def test_whole_alexnet_and_vgg16_match_published_counts() -> None:
    alexnet = ("chw:3x227x227 conv96 k11 s4 relu lrn maxpool3/2 conv256 k5 p2 relu lrn maxpool3/2 "
               "conv384 k3 p1 relu conv384 k3 p1 relu conv256 k3 p1 relu maxpool3/2 flatten "
               "dropout dense4096 relu dropout dense4096 relu dense1000")
    # Krizhevsky 2012 without the two-GPU split: 62,378,344 (torchvision-style counting)
    assert calc_report(alexnet).total_params == 62_378_344
    vgg16 = ("224x224x3 2x[conv64 k3 same relu] maxpool2 2x[conv128 k3 same relu] maxpool2 "
             "3x[conv256 k3 same relu] maxpool2 3x[conv512 k3 same relu] maxpool2 "
             "3x[conv512 k3 same relu] maxpool2 flatten dense4096 relu dropout dense4096 relu "
             "dropout dense1000")
    assert calc_report(vgg16).total_params == 138_357_544  # Simonyan & Zisserman 2014, config D


def test_lrn_uses_the_papers_alpha() -> None:
    # b = a / (k + α·Σa²)^β with α = 1e-4 (paper); PyTorch divides α by n, so it gets α·n.
    lrn = build_spec("chw:8x4x4 lrn", device="meta").model[0]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, pytest.approx(5e-4), 0.75, 2.0)
    own = build_spec("chw:8x4x4 nn.LocalResponseNorm(3, alpha=1e-4, k=1)", device="meta").model[0]
    assert (own.size, own.alpha, own.k) == (3, pytest.approx(1e-4), 1.0)
    x = torch.rand(1, 8, 4, 4)
    paper = x / (2 + 1e-4 * torch.nn.functional.avg_pool3d(
        (x * x).unsqueeze(1), (5, 1, 1), stride=1, padding=(2, 0, 0), count_include_pad=True
    ).squeeze(1) * 5) ** 0.75
    assert torch.allclose(build_spec("chw:8x4x4 lrn").model(x), paper, atol=1e-6)


# ──────────────────────────────────────────────────────────────── syntax variants


_CATSDOGS_VARIANTS = [
    "150x150x3 conv32 k3 -> maxpool2 -> conv64 k3 -> maxpool2 -> conv128 k3 -> maxpool2 -> "
    "conv128 k3 -> maxpool2 -> flatten -> dense512 -> dense1",
    "150x150x3 conv32 k3 | maxpool2 | conv64 k3 | maxpool2 | conv128 k3 | maxpool2 | conv128 k3 |"
    " maxpool2 | flatten | dense512 | dense1",
    "150x150x3, Conv2D 32 3x3, MaxPooling2D 2, Conv2D 64 3x3, MaxPooling2D 2, Conv2D 128 3x3, "
    "MaxPooling2D 2, Conv2D 128 3x3, MaxPooling2D 2, Flatten, Dense 512, Dense 1",
    "150x150x3 conv32 k=3 maxpool2 conv64 k=3 maxpool2 conv128 3x3 maxpool 2x2 conv128 k3 "
    "maxpool2 flatten dense512 dense1",
    "chw:3x150x150 conv32 k3 > maxpool2 > conv64 k3 > maxpool2 > conv128 k3 > maxpool2 > "
    "conv128 k3 > maxpool2 > flatten > dense512 > dense1",
    "input 3x150x150 chw\nconv32 k3  # 148\nmaxpool2\nconv64 k3\nmaxpool2\nconv128 k3\nmaxpool2\n"
    "conv128 k3\nmaxpool2\nflatten\ndense512\ndense1\n",
    # pasted Keras code
    "model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(150, 150, 3)))\n"
    "model.add(layers.MaxPooling2D((2, 2)))\n"
    "model.add(layers.Conv2D(64, (3, 3), activation='relu'))\n"
    "model.add(layers.MaxPooling2D((2, 2)))\n"
    "model.add(layers.Conv2D(128, (3, 3), activation='relu'))\n"
    "model.add(layers.MaxPooling2D((2, 2)))\n"
    "model.add(layers.Conv2D(128, (3, 3), activation='relu'))\n"
    "model.add(layers.MaxPooling2D((2, 2)))\n"
    "model.add(layers.Flatten())\n"
    "model.add(layers.Dense(512, activation='relu'))\n"
    "model.add(layers.Dense(1, activation='sigmoid'))\n",
    # PyTorch words and call syntax (in_channels first)
    "chw:3x150x150 nn.Conv2d(3, 32, 3) nn.MaxPool2d(2) nn.Conv2d(32, 64, kernel_size=3) "
    "nn.MaxPool2d(2) nn.Conv2d(64, 128, 3) nn.MaxPool2d(2) nn.Conv2d(128, 128, 3) "
    "nn.MaxPool2d(2, 2) nn.Flatten() nn.Linear(6272, 512) nn.Linear(512, 1)",
]


@pytest.mark.parametrize("text", _CATSDOGS_VARIANTS)
def test_syntax_variants_build_the_catsdogs_network(text: str) -> None:
    built = build_spec(text, device="meta")
    assert built.input_shape == (3, 150, 150)
    assert sum(p.numel() for p in built.model.parameters()) == 3_453_121
    linears = [m for m in built.model if isinstance(m, nn.Linear)]
    assert [m.in_features for m in linears] == [6272, 512]


def test_keras_mlp_forms() -> None:
    # lecture 002's MLP as Keras writes it: input_shape on Flatten, or input_dim on Dense
    for text in ("Flatten(input_shape=(28, 28)), Dense(50, activation='sigmoid'), "
                 "Dense(100, activation='sigmoid'), Dense(10, activation='softmax')",
                 "Dense(50, activation='sigmoid', input_dim=784)\nDense(100, activation='sigmoid')"
                 "\nDense(10, activation='softmax')"):
        built = build_spec(text, device="meta")
        assert sum(p.numel() for p in built.model.parameters()) == 45_360


# Lecture 003's Keras code as the notes write it (their model.summary() outputs left out).
LECTURE_KERAS_MNIST = """\
import tensorflow as tf
from tensorflow.keras import datasets, layers, models
model = models.Sequential()
# 3차원임으로 input_shape=(28,28,1)이다.
model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(28, 28, 1)))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))
model.summary()
model.add(layers.Flatten())
model.add(layers.Dense(64, activation='relu'))
# layers.kernel_regularizer (l1 (|x|+|y|), l2 (x**2+y**2))
model.add(layers.Dense(10, activation='softmax'))
model.summary()
model.compile(optimizer='adam', loss ='sparse_categorical_crossentropy',
metrics=['accuracy'])
model.fit(train_images, train_labels, epochs=5)
"""


def test_pasted_lecture_keras_code_gives_the_lecture_count() -> None:
    report = calc_report(LECTURE_KERAS_MNIST)
    assert [r.type for r in report.leaves() if r.params or r.type in ("MaxPool2d", "Flatten")] \
        == ["Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d", "Conv2d", "Flatten", "Linear", "Linear"]
    # Lecture 003's model.summary(): (3·3·1+1)·32 = 320, (3·3·32+1)·64 = 18,496,
    # (3·3·64+1)·64 = 36,928, Dense (3·3·64+1)·64 = (576+1)·64 = 36,928, (64+1)·10 = 650.
    assert [r.params for r in report.leaves() if r.params] == [320, 18_496, 36_928, 36_928, 650]
    assert report.total_params == 320 + 18_496 + 36_928 + 36_928 + 650 == 93_322
    assert report.input_shape == (28, 28, 1)
    assert [c.output_shape[1] for c in _by_type(report, "Conv2d")] == [26, 11, 3]


_MNIST_CNN_ADDS = ("model.add(layers.Conv2D(32, (3, 3), activation='relu'{input}))\n"
                   "model.add(layers.MaxPooling2D((2, 2)))\n"
                   "model.add(layers.Conv2D(64, (3, 3), activation='relu'))\n"
                   "model.add(layers.MaxPooling2D((2, 2)))\n"
                   "model.add(layers.Conv2D(64, (3, 3), activation='relu'))\n"
                   "model.add(layers.Flatten())\n"
                   "model.add(layers.Dense(64, activation='relu'))\n"
                   "model.add(layers.Dense(10, activation='softmax'))\n")
_WITH_INPUT = _MNIST_CNN_ADDS.format(input=", input_shape=(28, 28, 1)")


@pytest.mark.parametrize("text", [
    "models.Sequential()\n" + _WITH_INPUT,
    "model = models.Sequential()\n" + _WITH_INPUT,
    "model = keras.Sequential(name='mnist_cnn')\n" + _WITH_INPUT + "model.summary()",
    "model = tf.keras.Sequential()\n" + _WITH_INPUT,
    "import tensorflow as tf; model = tf.keras.models.Sequential(); " + _WITH_INPUT,
    "from tensorflow.keras.layers import (Conv2D, MaxPooling2D,\n    Flatten, Dense)\n"
    "from tensorflow.keras import models as m\n" + _WITH_INPUT,
    # model.build gives the input shape; other names for the model; assignments of results
    "net = models.Sequential()\n" + _MNIST_CNN_ADDS.format(input="").replace("model.", "net.")
    + "net.build((None, 28, 28, 1))\nnet.summary()\nhistory = net.fit(x, y, epochs=5,\n"
    "    validation_data=(x_val, y_val), callbacks=[stop])\n"
    "test_loss, test_acc = net.evaluate(x, y, verbose=2)\nnet.save('mnist.h5')",
    _MNIST_CNN_ADDS.format(input="") + "model.build(input_shape=(None, 28, 28, 1))",
    "model = models.Sequential([\n  layers.Conv2D(32, (3, 3), activation='relu', "
    "input_shape=(28, 28, 1)),\n  layers.MaxPooling2D((2, 2)),\n"
    "  layers.Conv2D(64, (3, 3), activation='relu'),\n  layers.MaxPooling2D((2, 2)),\n"
    "  layers.Conv2D(64, (3, 3), activation='relu'),\n  layers.Flatten(),\n"
    "  layers.Dense(64, activation='relu'),\n  layers.Dense(10, activation='softmax'),\n"
    "], name='mnist_cnn')\nmodel.compile(optimizer='adam', loss='sparse_categorical_crossentropy')",
])
def test_keras_lines_that_add_no_layer_are_skipped(text: str) -> None:
    parsed = parse(text)
    assert parsed.input_dims == (28, 28, 1)
    assert [layer.kind for layer in parsed.layers] == [
        "conv", "maxpool", "conv", "maxpool", "conv", "flatten", "dense", "dense"]
    assert calc_report(text).total_params == 93_322  # 320 + 18,496 + 36,928 + 36,928 + 650


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [
    # only the listed forms are skipped: everything else is still a one-line error with a caret
    ("model = models.Sequential()\nfoo(3)", 2, 1, "unknown layer 'foo'"),
    ("model = foo()", 1, 1, "unknown layer 'model'"),
    ("x = layers.Conv2D(32, (3, 3))(x)", 1, 1, "unknown layer 'x'"),
    ("28x28x1 conv8 k3 → import", 1, 20, "unknown layer 'import'"),
    ("net.summary()", 1, 1, "unknown layer 'net.summary'"),
    ("model = models.Sequential()\nmodel.add(Dense(3, input_dim=4))\nmodel.pop()", 3, 1,
     "model.pop(…) adds no layer archscope can follow"),
    ("model.ad(Dense(3))", 1, 1, "(did you mean model.add?)"),
    ("model.compile(optimizer='adam'", 1, 31, "expected ')' to close model.compile("),
    ("models.Sequential(Dense(3))", 1, 19, "expected a list of layers in [ ]"),
    ("Sequential(foo=1)", 1, 12, "'foo' is not an option of 'Sequential'"),
    ("Dense(3, input_dim=4)\nmodel.build((None, 5))", 2, 13,
     "gives the input shape 5 but 4 was given before"),
])
def test_pasted_keras_errors_keep_the_caret(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text)
    first, shown, caret = str(info.value).split("\n")
    assert first.startswith(f"line {line}, col {col}: "), first
    assert fragment in first
    assert shown == "  " + text.split("\n")[line - 1]
    assert caret.index("^") - 2 == col - 1


# The keras.io "Simple MNIST convnet" example (Keras 3), its variables written out.
KERAS_IO_MNIST = """\
import keras
from keras import layers
model = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ]
)
model.summary()
"""


def test_keras_io_mnist_convnet_with_input_first() -> None:
    report = calc_report(KERAS_IO_MNIST)
    assert report.input_shape == (28, 28, 1)
    # 28 − 3 + 1 = 26 → 13 → 13 − 3 + 1 = 11 → ⌊11/2⌋ = 5; flatten 5·5·64 = 1600.
    # (3·3·1+1)·32 = 320, (3·3·32+1)·64 = 18,496, (1600+1)·10 = 16,010: keras.io's 34,826.
    assert [r.params for r in report.leaves() if r.params] == [320, 18_496, 16_010]
    assert _by_type(report, "Flatten")[0].output_shape == (1, 5 * 5 * 64)
    assert report.total_params == 320 + 18_496 + 16_010 == 34_826


@pytest.mark.parametrize("first", [
    "model = keras.Sequential()\nmodel.add(keras.Input(shape=(28, 28, 1)))\n",
    "model = keras.Sequential()\nmodel.add(layers.Input((28, 28, 1)))\n",
    "model = Sequential()\nmodel.add(InputLayer(input_shape=(28, 28, 1)))\n",
    "model = Sequential()\nmodel.add(layers.InputLayer(batch_input_shape=(None, 28, 28, 1)))\n",
    "model = Sequential()\nmodel.add(keras.layers.InputLayer(shape=(28, 28, 1), name='img'))\n",
    "model = Sequential()\nmodel.add(keras.Input(batch_shape=(None, 28, 28, 1)))\n",
    # the same shape once more on the first layer is allowed, as Keras allows it
    "model = Sequential()\nmodel.add(keras.Input(shape=(28, 28, 1)))  # and again below\n",
])
def test_keras_input_as_the_first_add_sets_the_input(first: str) -> None:
    adds = _MNIST_CNN_ADDS.format(input=", input_shape=(28, 28, 1)" if "again" in first else "")
    parsed = parse(first + adds)
    assert parsed.input_dims == (28, 28, 1) and parsed.layout == "hwc"
    assert parsed.layers[0].kind == "conv"  # Input adds no layer
    assert calc_report(first + adds).total_params == 93_322  # 320 + 18,496 + 36,928·2 + 650


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [
    # a second input shape that contradicts the first
    ("keras.Sequential([keras.Input(shape=(28, 28, 1)), layers.Conv2D(8, 3, "
     "input_shape=(32, 32, 3))])", 1, 83,
     "input_shape gives the input shape 32×32×3 but 28×28×1 was given before"),
    ("28x28x1\nmodel.add(keras.Input(shape=(28, 28, 3)))", 2, 29,
     "keras.Input(…) gives the input shape 28×28×3 but 28×28×1 was given before"),
    ("model.add(keras.Input(shape=(28, 28, 1)))\nmodel.build((None, 14, 14, 1))", 2, 13,
     "model.build(…) gives the input shape 14×14×1 but 28×28×1 was given before"),
    # an Input after a layer is not an input
    ("keras.Sequential([layers.Conv2D(8, 3), keras.Input(shape=(28, 28, 1))])", 1, 40,
     "the input shape must come first, before every layer"),
    ("keras.Input(shape=(None, None, 3))", 1, 19, "archscope needs a fixed size"),
])
def test_keras_input_errors_keep_the_caret(text: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text)
    first, shown, caret = str(info.value).split("\n")
    assert first.startswith(f"line {line}, col {col}: "), first
    assert fragment in first
    # the caret is under the column it names (long lines are shown in a window around it)
    assert shown[caret.index("^")] == text.split("\n")[line - 1][col - 1]


def test_negative_numbers_are_values() -> None:
    report = calc_report("32x32x3 conv8 k3\n"
                         "model.add(BatchNormalization(axis=-1, momentum=0.99, epsilon=0.001))")
    # (3·3·3+1)·8 = 224; BatchNorm2d(8): γ and β, 2·8 = 16
    assert [r.params for r in report.leaves()] == [224, 16]
    assert report.total_params == 224 + 16 == 240
    torch_calls = calc_report("chw:3x8x8 nn.Conv2d(3, 4, 3) nn.Flatten(1, -1) nn.Linear(144, 10) "
                              "nn.Softmax(dim=-1)")
    # (8 − 3)/1 + 1 = 6: 4·6·6 = 144 features; (3·3·3+1)·4 = 112, (144+1)·10 = 1,450
    assert [r.type for r in torch_calls.leaves()] == ["Conv2d", "Flatten", "Linear", "Softmax"]
    assert torch_calls.total_params == 112 + 1_450 == 1_562
    for text in ("784 nn.Linear(784, 10) nn.LogSoftmax(-1)", "784 Dense(10) Softmax(axis=-1)",
                 "784 dense10 → softmax dim=-1", "784 dense10 nn.Softmax(1)"):
        report = calc_report(text)
        assert report.total_params == (784 + 1) * 10 == 7_850, text
        assert len(report.leaves()) == 2, text  # a call after a layer is a layer of its own
    assert parse("8x8x3 bn axis=-1").layers[0].options == {"axis": -1}
    with pytest.raises(SpecSyntaxError, match="stride of conv must be a positive whole number"):
        parse("8x8x3 Conv2D(8, 3, strides=-1)")
    with pytest.raises(SpecSyntaxError, match="col 20: rate of dropout must be a number from 0"):
        parse("8x8x3 Dropout(rate=-0.5)")


def test_keras_conv_keywords_match_a_hand_built_model() -> None:
    text = ("Conv2D(16, (3, 3), strides=2, padding='valid', use_bias=False, "
            "input_shape=(32, 32, 4))\n"
            "Conv2D(32, 3, padding='same', dilation_rate=2, groups=4)\n"
            "MaxPooling2D(pool_size=3, strides=2, padding='same')\n"
            "DepthwiseConv2D(3, depth_multiplier=2)\n"
            "MaxPooling2D((2, 2), strides=None)\n"
            "Flatten()\n"
            "Dense(10, use_bias=False)")
    expected = nn.Sequential(
        nn.Conv2d(4, 16, 3, 2, bias=False),            # (32 − 3)/2 + 1 = 15
        nn.Conv2d(16, 32, 3, padding=2, dilation=2, groups=4),  # same: 2·(3 − 1) = 4 split 2 + 2
        nn.MaxPool2d(3, 2, 1),                         # ⌈15/2⌉ = 8; (8−1)·2 + 3 − 15 = 2: 1 + 1
        nn.Conv2d(32, 64, 3, groups=32),               # 8 − 3 + 1 = 6
        nn.MaxPool2d(2),                               # strides=None: the window, 6/2 = 3
        nn.Flatten(),                                  # 3·3·64 = 576
        nn.Linear(576, 10, bias=False))
    built = build_spec(text)
    assert built.input_shape == (4, 32, 32)
    ours, theirs = inspect(built.model, (4, 32, 32)), inspect(expected, (4, 32, 32))
    assert [(r.type, r.output_shape, r.params) for r in ours.leaves()] == \
        [(r.type, r.output_shape, r.params) for r in theirs.leaves()]
    # 3·3·4·16 = 576 (no bias); (3·3·16/4)·32 + 32 = 1,184; 3·3·32·2 + 64 = 640; 576·10 = 5,760
    assert [r.params for r in ours.leaves() if r.params] == [576, 1_184, 640, 5_760]
    assert ours.total_params == theirs.total_params == 576 + 1_184 + 640 + 5_760 == 8_160
    x = torch.randn(2, 4, 32, 32)
    assert [tuple(m(x).shape) for m in (built.model[:3], expected[:3])] == [(2, 32, 8, 8)] * 2
    assert built.model(x).shape == expected(x).shape == (2, 10)


def _counts(text: str) -> tuple:
    report = calc_report(text)
    return (report.total_params, report.trainable_params,
            [(r.type, r.output_shape, r.params) for r in report.leaves()])


#: (keywords, a spec using them, the same spec without them): each changes no count.
_IGNORED_KEYWORD_CASES = [
    ({"name", "dtype", "kernelinitializer", "kernelregularizer", "biasconstraint"},
     "Conv2D(8, 3, name='c1', dtype='float32', kernel_initializer='he_normal', "
     "kernel_regularizer=regularizers.l2(0.001), bias_constraint=max_norm(3))", "Conv2D(8, 3)"),
    ({"momentum", "epsilon", "axis"}, "BatchNormalization(axis=-1, momentum=0.99, epsilon=0.001)",
     "BatchNormalization()"),
    ({"eps", "trackrunningstats"}, "nn.BatchNorm2d(8, eps=1e-3, momentum=0.1, "
     "track_running_stats=False)", "nn.BatchNorm2d(8)"),
    ({"inplace"}, "nn.ReLU(inplace=True)", "nn.ReLU()"),
    ({"seed", "noiseshape"}, "Dropout(0.5, noise_shape=None, seed=7)", "Dropout(0.5)"),
    ({"device", "paddingmode"}, "nn.Conv2d(8, 8, 3, padding=1, padding_mode='reflect', "
     "device='cpu')", "nn.Conv2d(8, 8, 3, padding=1)"),
    ({"countincludepad", "divisoroverride"}, "nn.AvgPool2d(2, count_include_pad=False, "
     "divisor_override=None)", "nn.AvgPool2d(2)"),
    ({"returnindices"}, "nn.MaxPool2d(2, return_indices=False)", "nn.MaxPool2d(2)"),
    ({"approximate"}, "nn.GELU(approximate='tanh')", "nn.GELU()"),
    ({"threshold", "beta"}, "nn.Softplus(beta=2, threshold=10)", "nn.Softplus()"),
    ({"dim"}, "nn.Softmax(dim=-1)", "nn.Softmax()"),
    ({"axis"}, "Softmax(axis=-1)", "Softmax()"),
    ({"dataformat"}, "MaxPooling2D(2, data_format='channels_last')", "MaxPooling2D(2)"),
    ({"startdim", "enddim"}, "nn.Flatten(start_dim=1, end_dim=-1) Dense(4)", "Flatten() Dense(4)"),
]


@pytest.mark.parametrize(("keys", "with_keys", "without"), _IGNORED_KEYWORD_CASES)
def test_ignored_keywords_change_no_count(keys: set[str], with_keys: str, without: str) -> None:
    # 16×16×8 → the layer; (params, trainable, each row's type, shape and params) agree
    assert _counts(f"16x16x8 {with_keys}") == _counts(f"16x16x8 {without}")


def test_every_ignored_keyword_is_tested() -> None:
    # the docs promise that ignored keywords change no count: each one has a case above
    from archscope.spec.vocabulary import IGNORED_KEYS as _IGNORED_KEYS
    from archscope.spec.vocabulary import IGNORED_KIND_KEYS as _IGNORED_KIND_KEYS

    covered = set().union(*(keys for keys, _, _ in _IGNORED_KEYWORD_CASES))
    ignored = set(_IGNORED_KEYS).union(*_IGNORED_KIND_KEYS.values())
    assert not ignored - covered, ignored - covered


def test_keras_data_format_channels_first_is_honoured() -> None:
    text = ('Conv2D(32, (3, 3), input_shape=(3, 64, 64), data_format="channels_first")\n'
            "MaxPooling2D((2, 2), data_format='channels_first')\nFlatten()\nDense(10)")
    parsed = parse(text)
    assert (parsed.layout, parsed.input_shape) == ("chw", (3, 64, 64))  # read as C×H×W
    report = calc_report(text)
    conv, pool, flatten, dense = report.leaves()
    # (3·3·3+1)·32 = 896, not (3·3·64+1)·32; (64 − 3)/1 + 1 = 62, ⌊62/2⌋ = 31
    assert (conv.params, conv.param_formula, conv.output_shape) == (896, "(3·3·3+1)·32",
                                                                    (1, 32, 62, 62))
    assert pool.output_shape == (1, 32, 31, 31)
    assert flatten.output_shape == (1, 32 * 31 * 31)  # 30,752
    assert dense.params == (30_752 + 1) * 10 == 307_530
    assert report.total_params == 896 + 307_530 == 308_426
    expected = nn.Sequential(nn.Conv2d(3, 32, 3), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(30_752, 10))
    assert report.total_params == sum(p.numel() for p in expected.parameters())
    assert build_spec(text).model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    # Keras 3: an Input first, then layers that say channels_first; chw: agrees with it too
    for same in ("keras.Input(shape=(3, 64, 64))\nConv2D(32, 3, data_format='channels_first')",
                 "chw:3x64x64 Conv2D(32, 3, data_format='channels_first')",
                 "Conv2D(32, 3, data_format='channels_first')\nmodel.build((None, 3, 64, 64))"):
        assert calc_report(same).leaves()[0].output_shape == (1, 32, 62, 62), same


@pytest.mark.parametrize(("text", "col", "fragment"), [
    ("3x64x64 Conv2D(32, 3, data_format='channels_first')", 35,
     "data_format='channels_first' contradicts the input 3x64x64, written H×W×C; write it as "
     "chw:3x64x64"),
    ("Conv2D(8, 3, input_shape=(3, 8, 8), data_format='channels_first'), "
     "MaxPooling2D(data_format='channels_last')", 93,
     "data_format='channels_last' contradicts data_format='channels_first' at line 1, col 49"),
    ("chw:3x8x8 Conv2D(8, 3, data_format='channels_last')", 36,
     "contradicts the input 3x8x8, written C×H×W"),
    ("8x8x3 Conv2D(8, 3, data_format='nhwc')", 32, "data_format must be 'channels_last' or"),
])
def test_contradicting_data_formats_are_caret_errors(text: str, col: int, fragment: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse(text)
    first, shown, caret = str(info.value).split("\n")
    assert first.startswith(f"line 1, col {col}: "), first
    assert fragment in first
    assert shown[caret.index("^")] == text[col - 1] == "'"  # under the data_format value


def test_count_changing_keywords_are_honoured() -> None:
    # Keras' trainable=False freezes the layer: (3·3·3+1)·8 = 224 non-trainable, (8+1)·2 = 18 not
    frozen = calc_report("8x8x3 Conv2D(8, 3, trainable=False) GlobalAveragePooling2D() Dense(2)")
    assert (frozen.total_params, frozen.trainable_params, frozen.non_trainable_params) == \
        (224 + 18, 18, 224)
    # keepdims=True keeps 1×1×C, so a 1×1 conv can follow: (1·1·8+1)·2 = 18
    kept = calc_report("8x8x3 Conv2D(8, 3) GlobalAveragePooling2D(keepdims=True) Conv2D(2, 1)")
    assert [r.output_shape for r in kept.leaves()] == [(1, 6, 6, 8), (1, 1, 1, 8), (1, 1, 1, 2)]
    assert kept.total_params == 224 + 18
    # the channels' axis for batchnorm, every axis of a sample for layernorm
    assert calc_report("chw:8x4x4 BatchNormalization(axis=1)").total_params == 2 * 8
    assert calc_report("4x4x8 BatchNormalization(axis=3)").total_params == 2 * 8
    assert calc_report("4x4x8 BatchNormalization(-1)").total_params == 2 * 8  # Keras: the axis
    assert calc_report("16 Dense(8) BatchNormalization(axis=-1)").total_params == 17 * 8 + 2 * 8
    assert calc_report("4x4x8 LayerNormalization(axis=[1, 2, 3])").total_params == 2 * 4 * 4 * 8
    assert calc_report("chw:8x4x4 nn.Flatten(1, 3) nn.Linear(128, 2)").total_params == 129 * 2


@pytest.mark.parametrize(("text", "fragments"), [
    ("4x4x8 BatchNormalization(axis=1)",
     ["layer 1 (BatchNormalization(axis=1))", "axis=1 normalises its 4×4×8 (H×W×C) input over H",
      "not its channels", "drop axis"]),
    ("chw:8x4x4 BatchNormalization(axis=-1)", ["over W, not its channels"]),
    ("4x4x8 BatchNormalization(axis=4)", ["axis=4 is out of range", "N×H×W×C"]),
    ("4x4x8 LayerNormalization(axis=-1)", ["axis=-1 normalises", "over C alone",
                                           "drop axis, or write axis=[1, 2, 3]"]),
    ("chw:8x4x4 nn.Flatten(2) nn.Linear(16, 2)",
     ["layer 1 (nn.Flatten(2))", "start_dim=2, end_dim=-1 does not flatten its 8×4×4 (C×H×W) "
      "input to one row per sample (dims 1 to 3)", "start_dim=1, end_dim=-1"]),
])
def test_count_changing_keywords_not_honoured_are_refused(text: str,
                                                          fragments: list[str]) -> None:
    with pytest.raises(SpecShapeError) as info:
        build_spec(text, device="meta")
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_keras_batchnorm_note_gives_keras_count() -> None:
    text = ("32x32x3 Conv2D(16, 3) BatchNormalization() Conv2D(32, 3) BatchNormalization() "
            "GlobalAveragePooling2D() Dense(10)")
    report = calc_report(text)
    # (3·3·3+1)·16 = 448, BN 2·16 = 32, (3·3·16+1)·32 = 4,640, BN 2·32 = 64, (32+1)·10 = 330
    assert [r.params for r in report.leaves() if r.params] == [448, 32, 4_640, 64, 330]
    assert report.total_params == 448 + 32 + 4_640 + 64 + 330 == 5_514  # PyTorch's count
    assert report.non_trainable_params == 0
    # Keras adds each BN's moving mean and variance: 2·(16 + 32) = 96 non-trainable
    note = ("Keras' model.summary() would show 5,610 parameters (5,514 + 2·48), 96 of them "
            "non-trainable: it counts each BatchNormalization's moving mean and variance (2·C) "
            "as parameters; PyTorch keeps them as buffers (not counted)")
    assert 5_514 + 2 * (16 + 32) == 5_610
    assert note in report.notes
    # frozen layers are non-trainable in Keras too: + (3·3·3+1)·16 = 448
    frozen = calc_report(text.replace("Conv2D(16, 3)", "Conv2D(16, 3, trainable=False)"))
    assert any("5,610 parameters (5,514 + 2·48), 544 of them non-trainable" in n
               for n in frozen.notes)
    assert 448 + 96 == 544
    # written PyTorch's way, the spec says nothing about Keras
    torch_bn = calc_report("chw:3x32x32 nn.Conv2d(3, 16, 3) nn.BatchNorm2d(16)")
    assert not any("Keras" in n for n in torch_bn.notes)
    assert any("2·8" in n for n in calc_report("8x8x3 conv8 k3 bn").notes)  # bn: Keras' word


def test_repeat_forms_agree() -> None:
    forms = ["32x32x3 repeat 3 [conv8 k3 same relu] maxpool2",
             "32x32x3 3x[conv8 k3 same relu] maxpool2",
             "32x32x3 [conv8 k3 same relu] x3 maxpool2",
             "32x32x3 conv8 k3 same relu x3, maxpool2",
             "32x32x3 repeat 3 [\n  conv8 k3 same\n  relu\n]\nmaxpool2"]
    models = [build_spec(f, device="meta").model for f in forms]
    reprs = {repr(m) for m in models}
    assert len(reprs) == 1, reprs
    assert [type(m).__name__ for m in models[0]] == ["Conv2d", "ReLU"] * 3 + ["MaxPool2d"]


def test_parse_is_pure_and_numbers_layers() -> None:
    parsed = parse("150x150x3 conv32 k3 s2 p1 d2 g1 nobias relu → maxpool3/2 → dense10")
    assert parsed.input_dims == (150, 150, 3) and parsed.layout == "hwc"
    assert parsed.input_shape == (3, 150, 150)
    conv, pool, dense = parsed.layers
    assert conv.kind == "conv" and conv.number == 1
    assert conv.options == {"out": 32, "kernel": (3, 3), "stride": (2, 2), "padding": (1, 1),
                            "dilation": (2, 2), "groups": 1, "bias": False, "activation": "relu"}
    assert pool.options == {"kernel": (3, 3), "stride": (2, 2)} and pool.number == 2
    assert dense.number == 3 and dense.col == parsed.source.index("dense10") + 1
    assert parse("3x32x32 conv8", layout="chw").input_shape == (3, 32, 32)


def test_parse_stage_does_not_import_torch() -> None:
    code = ("import sys; from archscope.spec import parse; "
            "parse('150x150x3 conv32 k3 → maxpool2 → flatten → dense1'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_module_names_are_readable() -> None:
    built = build_spec("28x28x1 conv8 k3 relu bn maxpool2 conv16 k3 relu6 gap dropout0.3 dense10 "
                       "softmax", device="meta")
    assert [n for n, _ in built.model.named_children()] == [
        "conv1", "relu1", "bn1", "pool1", "conv2", "relu6_1", "pool2", "flatten1", "dropout1",
        "fc1", "softmax1"]


def test_layer_kinds_build_what_they_say() -> None:
    built = build_spec(
        "chw:16x32x32 dwconv k3 same → pwconv32 → sepconv64 k3 same relu → conv64 k3 g4 nobias → "
        "avgpool2 → batchnorm → layernorm → lrn size=3 → adaptiveavgpool 2x2 → flatten → "
        "dropout0.5 → dense10 leakyrelu0.2 → gelu → tanh → elu → silu", device="meta")
    types = [type(m).__name__ for m in built.model]
    assert types == ["Conv2d", "Conv2d", "Conv2d", "Conv2d", "ReLU", "Conv2d", "AvgPool2d",
                     "BatchNorm2d", "LayerNorm", "LocalResponseNorm", "AdaptiveAvgPool2d",
                     "Flatten", "Dropout", "Linear", "LeakyReLU", "GELU", "Tanh", "ELU", "SiLU"]
    dw, pw, sep_dw, sep_pw, _, grouped = list(built.model)[:6]
    assert dw.groups == 16 and dw.out_channels == 16 and dw.padding == (1, 1)
    assert pw.kernel_size == (1, 1) and pw.out_channels == 32
    assert sep_dw.groups == 32 and sep_dw.bias is None and sep_pw.out_channels == 64
    assert grouped.groups == 4 and grouped.bias is None
    # (3·3·64/4)·64 = 9,216 without bias
    assert sum(p.numel() for p in grouped.parameters()) == 3 * 3 * 64 // 4 * 64
    assert built.model[14].negative_slope == pytest.approx(0.2)


def test_same_padding_follows_keras() -> None:
    # stride 1: same size; stride 2: ⌈n/s⌉ with the extra pixel at the bottom/right (Keras).
    for text, hw in [("15x15x3 conv4 k3 same", 15), ("15x15x3 conv4 k4 same", 15),
                     ("15x15x3 conv4 k3 s2 same", 8), ("16x16x3 conv4 k3 s2 same", 8),
                     ("15x15x3 maxpool2 same", 8), ("15x15x3 avgpool3 s2 same", 8)]:
        built = build_spec(text)
        out = built.model(torch.zeros(1, *built.input_shape))
        assert out.shape[-2:] == (hw, hw), text
    # asymmetric same padding becomes an explicit padding layer, visible in the table
    built = build_spec("16x16x3 conv4 k3 s2 same", device="meta")
    assert [type(m).__name__ for m in built.model] == ["ZeroPad2d", "Conv2d"]
    assert built.model[0].padding == (0, 1, 0, 1)


def test_hwc_layout_is_displayed_and_chw_is_not() -> None:
    hwc = calc_report("32x24x3 conv8 k3")
    chw = calc_report("chw:3x32x24 conv8 k3")
    assert hwc.layers[0].output_shape == (1, 30, 22, 8)
    assert chw.layers[0].output_shape == (1, 8, 30, 22)
    assert hwc.total_params == chw.total_params == (3 * 3 * 3 + 1) * 8
    assert any("H×W×C (channels last)" in note for note in hwc.notes)
    assert not any("H×W×C (channels last)" in note for note in chw.notes)
    assert to_layout(chw, "chw") is chw


def test_reports_say_their_layout() -> None:
    hwc = calc_report("28x28x1 conv32 k3 → maxpool2")
    assert hwc.layout == "hwc"
    data = hwc.to_dict()
    assert data["layout"] == "hwc"
    assert data["input_shape"] == [28, 28, 1]  # H×W×C
    assert data["layers"][0]["output_shape"] == [1, 26, 26, 32]  # N×H×W×C: (28 − 3)/1 + 1 = 26
    assert data["output_shapes"] == [[1, 13, 13, 32]]
    assert to_layout(hwc, "hwc") is hwc  # already in the user's order: not permuted twice
    chw = calc_report("chw:1x28x28 conv32 k3 → maxpool2")
    assert (chw.layout, chw.to_dict()["layout"]) == ("chw", "chw")
    assert chw.to_dict()["layers"][0]["output_shape"] == [1, 32, 26, 26]
    assert calc_report("784 dense10").layout == "chw"  # no image shapes to re-order
    assert calc_report("3x32x32 conv8", layout="chw").layout == "chw"  # calc --chw


def test_dense_on_an_image_flattens_and_says_so() -> None:
    report = calc_report("28x28x1 conv8 k3 → dense10")
    assert [r.type for r in report.leaves()] == ["Conv2d", "Flatten", "Linear"]
    assert report.leaves()[2].params == (26 * 26 * 8 + 1) * 10
    assert any("layer 2 (dense10)" in n and "flattened it to 5408" in n for n in report.notes)


def test_channels_first_written_as_hwc_gets_a_note() -> None:
    built = build_spec("3x150x150 conv32 k3", device="meta")
    assert built.input_shape == (150, 3, 150)
    assert any("chw:3x150x150" in n for n in built.notes)


def test_read_spec_file_and_inline(tmp_path) -> None:
    path = tmp_path / "net.spec"
    path.write_text("# cats vs dogs\n150x150x3\nconv32 k3\nmaxpool2\n", encoding="utf-8")
    text, name = read_spec(str(path))
    assert name == str(path) and "conv32" in text
    assert read_spec("28x28x1  conv8\tk3") == ("28x28x1  conv8\tk3", "28x28x1 conv8 k3")
    with pytest.raises(ArchscopeError, match="does not exist"):
        read_spec(str(tmp_path / "missing.spec"))


# ──────────────────────────────────────────────────────────────────────── errors


def test_syntax_error_names_token_with_caret() -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse("150x150x3 conv x")
    assert str(info.value) == (
        "line 1, col 16: expected a number after 'conv' (its number of filters, like conv32 k3), "
        "got 'x'\n"
        "  150x150x3 conv x\n"
        "                 ^")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("text", "col", "fragment"), [
    ("28x28x1 conv32 kk3", 16, "'kk' is not an option of 'conv'"),
    ("28x28x1 conv32 k3 → foo", 21, "unknown layer 'foo'"),
    ("28x28x1 conv32 k3 → maxpol2", 21, "did you mean 'maxpool'"),
    ("28x28x1 conv32 k", 17, "expected a value after 'k'"),
    ("28x28x1 conv32 k3 s0", 20, "stride of conv must be a positive whole number"),
    ("28x28x1 dropout 1.5", 17, "rate of dropout must be a number from 0 to 1"),
    ("28x28x1 repeat 2 [conv8 k3", 27, "expected ']'"),
    ("28x28x1 conv8 k3 $", 18, "unexpected character '$'"),
    ("28x28x1 conv8 activation=foo", 26, "unknown activation 'foo'"),
    ("28 28 1 conv32", 4, "write the input shape with x"),
    ("1x28x28x1 conv32", 1, "without the batch size"),
    ("28x28x1 conv9999999", 13, "filters of conv must be a whole number from 1 to 1,000,000"),
    ("28x28x1 Conv2D(32, (3,3), foo=1)", 27, "'foo' is not an option"),
])
def test_syntax_errors(text: str, col: int, fragment: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        build_spec(text, device="meta")
    message = str(info.value)
    first, _shown, caret = message.split("\n")
    assert first.startswith(f"line 1, col {col}: "), message
    assert fragment in first
    assert caret.index("^") - 2 == col - 1  # the caret sits under the column it names


def test_a_huge_number_is_a_caret_error() -> None:
    # Python's int() refuses strings over 4,300 digits: that must not become a traceback
    with pytest.raises(SpecSyntaxError, match=r"^line 1, col 13: a number of 5000 characters; "
                       r"numbers in a spec go up to 1,000,000\n"):
        parse("28x28x1 conv" + "9" * 5000)


@pytest.mark.parametrize(("text", "line", "col", "size", "written"), [
    ("-28x28x1 conv32 k3", 1, 1, -28, "28x28x1"),
    ("-784 dense10", 1, 1, -784, "784"),
    ("chw:-3x28x28 conv8", 1, 5, -3, "3x28x28"),
    ("input -28x28x1 conv8", 1, 7, -28, "28x28x1"),
    ("→ -28x28x1 conv8", 1, 3, -28, "28x28x1"),
    ("import keras\n-28x28x1 conv8", 2, 1, -28, "28x28x1"),
])
def test_a_negative_input_size_is_a_caret_error(text: str, line: int, col: int, size: int,
                                                written: str) -> None:
    # a "-" glued to the input's first number is its sign, not a separator before it (it was
    # skipped, and -28x28x1 read as 28×28×1)
    with pytest.raises(SpecSyntaxError) as info:
        parse(text)
    first, _shown, caret = str(info.value).split("\n")
    assert first == (f"line {line}, col {col}: input size {size} is out of range (1 to "
                     f"1,000,000); write the input shape without the minus, like {written}")
    assert caret.index("^") - 2 == col - 1


def test_a_minus_apart_from_the_input_is_still_a_separator() -> None:
    assert parse("- 28x28x1 conv8").input_dims == (28, 28, 1)  # a leading separator, spaced
    assert parse("--28x28x1 conv8").input_dims == (28, 28, 1)  # "--" is never a sign
    block = parse("-2x[conv8 k1]")  # a separator, then a repeated block (no input)
    assert block.input_dims is None and [layer.kind for layer in block.layers] == ["conv"] * 2

def test_syntax_error_on_a_later_line() -> None:
    with pytest.raises(SpecSyntaxError, match=r"^line 3, col 7: 'q' is not an option") as info:
        parse("28x28x1\nconv8 k3\nconv8 q3\n")
    assert str(info.value).endswith("\n  conv8 q3\n        ^")


@pytest.mark.parametrize(("text", "fragments"), [
    ("28x28x1 conv32 k3 maxpool2 conv64 k3 maxpool2 conv64 k3 maxpool2 conv64 k3",
     ["layer 7 (conv64 k3)", "1×1×64 (H×W×C)", "window does not fit", "= -1"]),
    ("chw:3x8x8 conv8 k9", ["layer 1 (conv8 k9)", "3×8×8 (C×H×W)"]),
    ("28x28x1 flatten conv8 k3", ["layer 2 (conv8 k3)", "784 features", "before flatten"]),
    ("28x28x3 conv8 k3 g2", ["layer 1 (conv8 k3 g2)", "groups=2 must divide"]),
    ("chw:3x28x28 nn.Conv2d(4, 16, 3)", ["layer 1", "in_channels is 4", "has 3 channels"]),
    ("784 dense10 → dense5 in=11", ["layer 2", "in_features is 11", "10 features"]),
    ("28x28x1 maxpool3 p2", ["layer 1 (maxpool3 p2)", "at most half"]),
    ("conv8 k3", ["no input shape"]),
    ("28x28x1", ["no layers"]),
])
def test_shape_errors_name_layer_and_shapes(text: str, fragments: list[str]) -> None:
    with pytest.raises(SpecShapeError) as info:
        build_spec(text, device="meta")
    assert info.value.exit_code == 1
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "\n" not in str(info.value)


# ──────────────────────────────────────────────────────────────── ceil mode


def test_ceil_mode_shows_the_dropped_last_window() -> None:
    # 3 wide with padding 1: windows would start at −1, 1 and 3 = ⌈(3+2−2)/2⌉+1 = 3, but the
    # one at 3 starts in the right padding and PyTorch drops it: 2.
    assert output_size(3, 2, 2, 1, ceil_mode=True) == (2, "⌈(3+2·1−2)/2⌉+1−1 = 2")
    assert evaluate_formula("⌈(3+2·1−2)/2⌉+1−1") == 2
    assert output_size(15, 2, 2, ceil_mode=True) == (8, "⌈(15−2)/2⌉+1 = 8")  # nothing dropped
    report = calc_report("chw:1x3x3 maxpool2 p1 ceil")
    pool = report.leaves()[0]
    assert pool.output_shape == (1, 1, 2, 2)
    assert pool.output_formula == "⌈(3+2·1−2)/2⌉+1−1 = 2"
    assert any("layer 1 (maxpool2 p1 ceil)" in n and "PyTorch drops it" in n
               for n in report.notes)
    assert torch.nn.functional.max_pool2d(torch.zeros(1, 1, 3, 3), 2, 2, 1,
                                          ceil_mode=True).shape[-1] == 2


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 6),
       dilation=st.integers(1, 3), data=st.data(), pool=st.sampled_from(["max", "avg"]),
       ceil=st.booleans())
def test_pool_output_size_and_its_arithmetic_match_pytorch(
        n: int, kernel: int, stride: int, dilation: int, data: st.DataObject, pool: str,
        ceil: bool) -> None:
    if pool == "avg":
        dilation = 1  # AvgPool2d has no dilation
    padding = data.draw(st.integers(0, kernel // 2), label="padding")  # PyTorch: at most half
    out, formula = output_size(n, kernel, stride, padding, dilation, ceil)
    x = torch.zeros(1, 1, n, n)
    try:
        if pool == "max":
            y = torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation,
                                               ceil_mode=ceil)
        else:
            y = torch.nn.functional.avg_pool2d(x, kernel, stride, padding, ceil_mode=ceil)
    except RuntimeError:  # "Output size is too small"
        assert out < 1, formula
        return
    assert out == y.shape[-1] == y.shape[-2], formula
    expr, value = formula.rsplit(" = ", 1)
    assert evaluate_formula(expr) == int(value) == out, formula


# ────────────────────────────────────────────────────── property test against hand-built models


@st.composite
def _stacks(draw: st.DrawFn) -> tuple[str, nn.Sequential, tuple[int, int, int]]:
    """A random valid conv/pool/linear stack: (spec text, the same model hand-built, C×H×W)."""
    c = draw(st.sampled_from([1, 3, 4]))
    h = draw(st.integers(6, 24))
    w = draw(st.integers(6, 24))
    layout = draw(st.sampled_from(["hwc", "chw"]))
    sep = draw(st.sampled_from([" → ", " -> ", " | ", ", ", "\n", " "]))
    head = f"{h}x{w}x{c}" if layout == "hwc" else f"chw:{c}x{h}x{w}"
    parts: list[str] = [head]
    modules: list[nn.Module] = []
    shape = (c, h, w)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool", "relu", "bn"]))
        ch, hh, ww = shape
        if op == "conv":
            out = draw(st.integers(1, 12))
            k = draw(st.integers(1, min(5, hh, ww)))
            s = draw(st.integers(1, 3))
            p = draw(st.integers(0, 2))
            bias = draw(st.booleans())
            style = draw(st.sampled_from(["plain", "keras", "torch"]))
            if style == "plain":
                parts.append(f"conv{out} k{k} s{s} p{p}" + ("" if bias else " nobias"))
            elif style == "keras":
                parts.append(f"Conv2D({out}, ({k}, {k}), strides={s}, padding={p}, "
                             f"use_bias={bias})")
            else:
                parts.append(f"nn.Conv2d({ch}, {out}, {k}, stride={s}, padding={p}, bias={bias})")
            modules.append(nn.Conv2d(ch, out, k, s, p, bias=bias))
            shape = (out, (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1)
        elif op in ("maxpool", "avgpool"):
            k = draw(st.integers(1, min(3, hh, ww)))
            s = draw(st.integers(1, 3))
            parts.append(draw(st.sampled_from([f"{op}{k}/{s}", f"{op} k{k} s{s}"])))
            cls = nn.MaxPool2d if op == "maxpool" else nn.AvgPool2d
            modules.append(cls(k, s))
            shape = (ch, (hh - k) // s + 1, (ww - k) // s + 1)
        elif op == "relu":
            parts.append("relu")
            modules.append(nn.ReLU())
        else:
            parts.append(draw(st.sampled_from(["bn", "BatchNormalization", "batchnorm2d"])))
            modules.append(nn.BatchNorm2d(ch))
    if draw(st.booleans()):
        parts.append("flatten")
        modules.append(nn.Flatten())
        features = shape[0] * shape[1] * shape[2]
        for _ in range(draw(st.integers(1, 2))):
            out = draw(st.integers(1, 20))
            parts.append(draw(st.sampled_from([f"dense{out}", f"Dense({out})",
                                               f"nn.Linear({features}, {out})"])))
            modules.append(nn.Linear(features, out))
            features = out
    return sep.join(parts), nn.Sequential(*modules), (c, h, w)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stacks())
def test_random_stacks_match_hand_built_models(case: tuple[str, nn.Sequential, tuple]) -> None:
    text, expected, chw = case
    built = build_spec(text)
    assert built.input_shape == chw
    ours = inspect(built.model, chw, batch=2)
    theirs = inspect(expected, chw, batch=2)
    assert [(r.type, r.output_shape, r.params) for r in ours.leaves()] == \
        [(r.type, r.output_shape, r.params) for r in theirs.leaves()]
    assert ours.total_params == theirs.total_params
    assert ours.total_macs == theirs.total_macs
    for r in ours.layers:  # every formula evaluates to its value
        assert evaluate_formula(r.param_formula) == r.params, (r.name, r.param_formula)
        if r.output_formula:
            assert all(v in r.output_shape for v in _output_values(r.output_formula))
    # and a real CPU forward pass agrees with the hand-built model's
    x = torch.randn(2, *chw)
    built.model.eval()
    expected.eval()
    assert built.model(x).shape == expected(x).shape


# ──────────────────────────────────────────────────────────────────────── fuzzing

_PIECES = st.sampled_from([
    *"0123456789x×*()[]=,/:→->|; \n#'\"abcdegklmnoprstuv_.",
    "conv", "conv32", "k3", "s2", "p1", "same", "valid", "maxpool", "maxpool3/2", "dense",
    "dense10", "relu", "repeat", "2x[", "]", "flatten", "Conv2D(", "150x150x3 ", "28x28x1 ", "chw:",
    "dwconv", "sepconv", "gap", "lrn", "bn", "ln", "dropout", "0.5", "model.add(", "Sequential([",
    "input_shape=", "x2", "adaptiveavgpool", "zeropad", "leakyrelu", "activation=", "'relu'",
    "nn.Linear(", "nn.Conv2d(", "input ", "hwc", "1e-4", "g2", "d2", "nobias", "(3,3)",
    "import ", "from ", "model = ", "models.Sequential(", "model.summary(", "model.fit(",
    "model.build(", "model.pop(", "None", "history, acc = ",
    "keras.Input(shape=", "InputLayer(", "-1", "axis=-1", "dim=", "data_format='channels_first'",
    "data_format='channels_last'", "trainable=False", "keepdims=True", "nn.Flatten(",
    "BatchNormalization(", "LayerNormalization(axis=", "strides=None", "nn.Softmax(",
])


def _parse_and_build(text: str) -> None:
    try:
        parsed = parse(text)
        build(parsed, device="meta", input_shape=None if parsed.input_dims else (3, 16, 16))
    except ArchscopeError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=25).map("".join))
def test_fuzz_spec_like_text_gives_a_model_or_a_clean_error(text: str) -> None:
    _parse_and_build(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_any_text_gives_a_model_or_a_clean_error(text: str) -> None:
    _parse_and_build(text)


# ──────────────────────────────────────────────────────────────── the docs' examples

SPEC_DOC = Path(__file__).resolve().parents[1] / "docs" / "spec.md"


def _counted_doc_examples() -> list[tuple[str, int]]:
    """Every spec in docs/spec.md that states its parameter count: (spec, count).

    A chunk of a ```text block (chunks are separated by blank lines) whose comment says
    "N parameters", and a ``$ archscope calc '…'`` console example with its "Total params N".
    """
    doc = SPEC_DOC.read_text(encoding="utf-8")
    examples = []
    for block in re.findall(r"```text\n(.*?)```", doc, re.S):
        for chunk in re.split(r"\n\s*\n", block):
            stated = re.search(r"([0-9][0-9,]*) parameters", chunk)
            if stated:
                examples.append((chunk, int(stated.group(1).replace(",", ""))))
    for block in re.findall(r"```console\n(.*?)```", doc, re.S):
        command = re.search(r"^\$ archscope calc '([^']*)'$", block, re.M)
        total = re.search(r"^Total params +([0-9,]+)$", block, re.M)
        if command and total:
            examples.append((command.group(1), int(total.group(1).replace(",", ""))))
    return examples


def test_every_counted_example_in_the_docs_gives_its_count() -> None:
    examples = _counted_doc_examples()
    # the cats-vs-dogs file and calc example, the pasted Keras code, MNIST CNN and MLP,
    # AlexNet, VGG16's feature stack
    assert len(examples) >= 7, examples
    for text, count in examples:
        assert calc_report(text).total_params == count, text


@pytest.mark.parametrize(("text", "params"), [
    # Dense(10) on 784 features: (784+1)·10 = 7,850 — the batch size is never a feature
    ("model = keras.Sequential([keras.Input(batch_shape=(32, 784)), layers.Dense(10)])", 7_850),
    ("model = keras.Sequential([InputLayer(batch_input_shape=(32, 784)), Dense(10)])", 7_850),
    ("model = keras.Sequential([keras.Input(batch_shape=(8, 28, 28)), layers.Flatten(), "
     "layers.Dense(10)])", 7_850),
    ("model = keras.Sequential([layers.Dense(10)])\nmodel.build((32, 784))", 7_850),
])
def test_the_batch_size_of_a_batch_shape_is_dropped_at_any_rank(text: str, params: int) -> None:
    assert calc_report(text).total_params == params


def test_dense_on_an_image_says_what_keras_would_count() -> None:
    # 28×28×1 → Conv2D(32, 3) → 26×26×32. archscope flattens: (21632+1)·64. Keras' Dense acts on
    # the last axis alone: (32+1)·64 = 2,112 (Keras' model.summary() shows 2,112 for this layer).
    report = calc_report("28x28x1 Conv2D(32, 3) Dense(64) Dense(10)")
    assert report.total_params == (9 + 1) * 32 + (26 * 26 * 32 + 1) * 64 + (64 + 1) * 10
    [note] = [n for n in report.notes if "is not flat" in n]
    assert note.endswith("Keras' Dense would act on the channels alone, at every position: "
                         "(32+1)·64 = 2,112 parameters instead of (21632+1)·64 = 1,384,512")
