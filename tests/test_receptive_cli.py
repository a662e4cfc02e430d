"""``--rf`` on summary, calc and diagram: the receptive field of every layer in every format.

The figures are worked out by hand here (r_out = r_in + (k−1)·d·j_in, j_out = j_in·s) and, for
VGG16, the published ones (Araujo et al. 2019, Distill: conv5_3 196, pool5 212, jump 32).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from click.testing import CliRunner

from archscope.cli import main


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _layers(text: str) -> dict[str, dict[str, Any]]:
    return {layer["name"]: layer for layer in json.loads(text)["layers"]}


def test_the_vgg_lesson_two_3x3_convs_see_what_one_5x5_sees() -> None:
    two = _layers(_run("calc", "32x32x64 conv64 k3 same conv64 k3 same", "--rf", "--format",
                       "json"))
    one = _layers(_run("calc", "32x32x64 conv64 k5 same", "--rf", "--format", "json"))
    # 1 + (3−1)·1 = 3, then 3 + (3−1)·1 = 5; one 5×5: 1 + (5−1)·1 = 5
    assert two["conv1"]["receptive_field"]["rf"] == [3, 3]
    assert two["conv2"]["receptive_field"]["rf"] == [5, 5]
    assert two["conv2"]["receptive_field"]["rf_formula"] == "3 + (3−1)·1·1 = 5"
    assert one["conv1"]["receptive_field"]["rf"] == [5, 5]
    # with fewer weights: 2·(3·3·64+1)·64 = 73,856 against (5·5·64+1)·64 = 102,464
    assert sum(layer["params"] for layer in two.values()) == 2 * (3 * 3 * 64 + 1) * 64 == 73_856
    assert sum(layer["params"] for layer in one.values()) == (5 * 5 * 64 + 1) * 64 == 102_464


def test_summary_json_has_vgg16s_published_fields() -> None:
    layers = _layers(_run("summary", "vgg16", "--rf", "--format", "json"))
    conv5_3, pool5 = layers["features.28"]["receptive_field"], layers["features.30"]["receptive_field"]
    assert (conv5_3["rf"], conv5_3["jump"]) == ([196, 196], [16, 16])
    assert (pool5["rf"], pool5["jump"]) == ([212, 212], [32, 32])
    assert layers["classifier.0"]["receptive_field"]["status"] == "whole input"


def test_without_rf_nothing_changes() -> None:
    plain = _run("summary", "lecture_mnist_cnn", "--format", "json")
    assert "receptive_field" not in plain
    assert "RF" not in _run("summary", "lecture_mnist_cnn")


def test_table_columns_and_legend() -> None:
    text = _run("summary", "lecture_mnist_cnn", "--rf", "--width", "140")
    header = next(line for line in text.splitlines() if line.startswith("Layer"))
    assert header.split()[-5:] == ["RF", "Jump", "Centre", "RF", "arithmetic"]
    # conv3 (3×3) after conv 3×3 → pool 2 → conv 3×3 → pool 2: 3, 4, 8, 10, then 10 + 2·4 = 18
    conv3 = next(line for line in text.splitlines() if line.strip().startswith("features.conv3"))
    assert "10 + (3−1)·1·4 = 18" in conv3
    assert "RF: the input pixels one output unit sees" in text


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_csv_and_markdown_carry_the_figures(fmt: str) -> None:
    text = _run("summary", "lecture_mnist_cnn", "--rf", "--format", fmt)
    if fmt == "csv":
        rows = {row["name"]: row for row in csv.DictReader(io.StringIO(text))}
        assert (rows["features.pool2"]["rf"], rows["features.pool2"]["jump"]) == ("10", "4")
        assert rows["classifier.fc1"]["rf"] == "whole input"
    else:
        assert "| RF | Jump | Centre | RF arithmetic |" in text
        assert "| 18 | 4 | 8.5 | 10 + (3−1)·1·4 = 18 |" in text


def test_diagram_writes_the_field_on_each_node() -> None:
    dot = _run("diagram", "vgg16", "--rf", "--depth", "1", "-o", "-")
    # depth 1 draws features as one block: its output is pool5's
    assert "RF 212 · jump 32" in dot
    assert "RF whole input" in dot  # the classifier
    assert "RF " not in _run("diagram", "vgg16", "--depth", "1", "-o", "-")
