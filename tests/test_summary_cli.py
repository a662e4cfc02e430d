"""``archscope summary`` and ``archscope list`` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archscope.cli import main
from archscope.render import render
from archscope.source import load_report


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_golden_table_lecture_mnist_cnn(golden) -> None:
    # the training memory line (memory=True, as summary asks): 65.32 MiB, worked out by hand in
    # tests/test_memory_commands.py::test_lecture_mnist_cnn_peak_by_hand
    text = render(load_report("lecture_mnist_cnn", memory=True), "table", width=100)
    golden.check("lecture_mnist_cnn.txt", text)
    assert "Training memory peak        65.32 MiB (batch 1, fp32, SGD, CUDA" in text


def test_golden_table_explain_lecture_catsdogs_cnn(golden) -> None:
    text = render(load_report("lecture_catsdogs_cnn", memory=True), "table", explain=True,
                  width=100)
    golden.check("lecture_catsdogs_cnn_explain.txt", text)
    assert "(150−3)/1+1 = 148" in text
    assert "(6272+1)·512" in text and "3,211,776" in text


def test_summary_table_shows_lecture_numbers(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", "lecture_mnist_cnn"])
    assert result.exit_code == 0, result.output
    assert "(3·3·32+1)·64" in result.stdout and "18,496" in result.stdout
    assert "Total params" in result.stdout and "93,322" in result.stdout
    assert result.stderr == ""


def test_summary_json_has_the_documented_keys(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", "vgg16", "--format", "json", "--batch", "2"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    for key in ("model", "input_shape", "batch", "total_params", "trainable_params",
                "non_trainable_params", "total_macs", "param_bytes", "activation_bytes", "layers"):
        assert key in data
    assert data["total_params"] == 138_357_544
    assert data["batch"] == 2 and data["input_shape"] == [3, 224, 224]
    assert data["total_macs"] == 2 * 15_470_264_320
    layer = data["layers"][1]
    for key in ("name", "type", "depth", "output_shape", "params", "param_formula", "macs",
                "trainable"):
        assert key in layer
    assert layer["name"] == "features.0" and layer["output_shape"] == [2, 64, 224, 224]
    assert sum(r["params"] for r in data["layers"]) == data["total_params"]


def test_summary_markdown_and_csv(runner: CliRunner) -> None:
    md = runner.invoke(main, ["summary", "lecture_mlp", "--format", "markdown"])
    assert md.exit_code == 0
    assert "| `fc1` |" in md.stdout.replace("&nbsp;", "") or "(784+1)·50" in md.stdout
    rows = list(csv.DictReader(io.StringIO(
        runner.invoke(main, ["summary", "lecture_mlp", "--format", "csv"]).stdout)))
    assert sum(int(r["params"]) for r in rows) == (784 + 1) * 50 + (50 + 1) * 100 + (100 + 1) * 10


def test_summary_freeze_marks_parameters_frozen(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", "lecture_catsdogs_cnn", "--freeze", "features",
                                  "--format", "json"])
    data = json.loads(result.stdout)
    base = (3 * 3 * 3 + 1) * 32 + (3 * 3 * 32 + 1) * 64 + (3 * 3 * 64 + 1) * 128 + (3 * 3 * 128 + 1) * 128
    assert data["non_trainable_params"] == base
    assert data["trainable_params"] == 3_453_121 - base


def test_summary_depth_and_input_and_num_classes(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", "resnet50", "--depth", "1", "--input", "3x128x128",
                                  "--num-classes", "10", "--format", "json"])
    data = json.loads(result.stdout)
    assert data["total_params"] == 25_557_032 - (2048 + 1) * 1000 + (2048 + 1) * 10
    assert data["layers"][-1]["output_shape"] == [1, 10]
    table = runner.invoke(main, ["summary", "resnet50", "--depth", "1"]).stdout
    assert "layer1.0" not in table and "layer4" in table


def test_summary_of_a_file_reference(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self, num_classes=3):\n"
        "        super().__init__(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4*6*6, num_classes))\n"
    )
    result = runner.invoke(main, ["summary", f"{source}:Net", "--input", "3x8x8",
                                  "--num-classes", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total_params"] == (3 * 3 * 3 + 1) * 4 + (144 + 1) * 5
    module = runner.invoke(main, ["summary", "archscope.zoo.lecture:lecture_mlp", "--input",
                                  "1x28x28", "--format", "json"])
    assert json.loads(module.stdout)["total_params"] == 45_360


@pytest.mark.parametrize(("args", "message"), [
    (["summary", "vgg61"], "unknown model 'vgg61'; did you mean vgg19, vgg16"),
    (["summary", "net.py"], "unknown model 'net.py': a model in a Python file is named with the "
                            "class or function after a colon, path/to/file.py:Name (e.g. net.py:Net)"),
    (["summary", "models/alexnet.py"], "path/to/file.py:Name (e.g. models/alexnet.py:Alexnet)"),
    (["summary", "resnet50", "--input", "3x22a"], "part 2 ('22a') is not a positive integer"),
    (["summary", "vgg16", "--input", "3x16x16"],
     "features.30 (MaxPool2d): input is 1×1, smaller than its 2×2 kernel; use an input of at least 3×32×32"),
    (["summary", "lecture_mnist_cnn", "--input", "1x32x32"],
     "classifier.fc1 (Linear) expects 576 input features but receives 1024"),
    (["summary", "no_such_file.py:Net"], "no such file: no_such_file.py"),
    (["summary", "archscope.zoo.vgg:vgg99"], "archscope.zoo.vgg does not define 'vgg99'"),
    (["summary", "lecture_mlp", "--freeze", "nothing"], "--freeze 'nothing' matches no parameter"),
])
def test_errors_are_one_line_without_traceback(runner: CliRunner, args: list[str],
                                               message: str) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    # one error line (click adds its usage lines above an option's error)
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        result.stderr.strip().splitlines()[-1]]


def test_a_forward_that_fails_names_the_layer(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "broken.py"
    source.write_text(
        "import torch, torch.nn as nn\n"
        "class Boom(nn.Module):\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('kaboom')\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.stem = nn.Conv2d(3, 4, 3); self.boom = Boom()\n"
        "    def forward(self, x):\n"
        "        return self.boom(self.stem(x))\n"
    )
    result = runner.invoke(main, ["summary", f"{source}:Net", "--input", "3x8x8"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: forward failed in boom (Boom) with input "
                                     "[1, 4, 6, 6]: kaboom")


def test_list_shows_every_model(runner: CliRunner) -> None:
    result = runner.invoke(main, ["list"])
    assert result.exit_code == 0
    assert "vgg16" in result.stdout and "138,357,544" in result.stdout
    data = json.loads(runner.invoke(main, ["list", "--format", "json"]).stdout)
    assert len(data) == 22  # 19 + alexnet_2gpu, plain18, plain34


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "archscope", "list"], check=True,
                         capture_output=True, text=True).stdout
    assert "lecture_mnist_cnn" in out


_CHATTY = '''
import torch
from torch import nn

print("importing chatty")


class Chatty(nn.Module):
    def __init__(self):
        super().__init__()
        print("building Chatty")
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        print("shape after conv:", x.shape)
        return self.fc(x.mean((2, 3)))
'''


@pytest.mark.parametrize("args", [
    ["summary", "{m}", "--format", "json"],
    ["summary", "{m}", "--format", "csv"],
    ["diagram", "{m}", "-o", "-"],
    ["bench", "{m}", "--device", "cpu", "--steps", "2", "--warmup", "1", "--format", "json"],
    ["check", "{m}", "--device", "cpu", "--repeats", "1", "--format", "json"],
])
def test_what_a_model_prints_goes_to_stderr(runner: CliRunner, tmp_path: Path,
                                            args: list[str]) -> None:
    # print() in a model file or its forward must not corrupt machine-readable output
    path = tmp_path / "chatty.py"
    path.write_text(_CHATTY, encoding="utf-8")
    argv = [a.format(m=f"{path}:Chatty") for a in args] + ["--input", "3x8x8"]
    result = runner.invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert "importing chatty" in result.stderr and "shape after conv" in result.stderr
    for printed in ("importing chatty", "building Chatty", "shape after conv"):
        assert printed not in result.stdout
    if "json" in args:
        data = json.loads(result.stdout)
        assert data  # parses
    elif "csv" in args:
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["name"] for r in rows] == ["conv", "mean", "fc"]
        assert sum(int(r["params"]) for r in rows) == (3 * 3 * 3 + 1) * 4 + (4 + 1) * 2
    else:
        assert result.stdout.startswith("digraph")


def test_help_still_goes_to_stdout(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", "--help"])
    assert result.exit_code == 0 and result.stdout.startswith("Usage:")


def test_readme_calc_example_is_lecture_000s_network(runner: CliRunner) -> None:
    # The README's calc line, as a user copies it; lecture 000's Keras summary, by hand:
    # (3·3·3+1)·32 + (3·3·32+1)·64 + (3·3·64+1)·128 + (3·3·128+1)·128 + (7·7·128+1)·512 + (512+1)·1
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    (line,) = [x for x in readme.splitlines() if x.startswith("archscope calc '150x150x3")]
    spec = line.removeprefix("archscope calc '").split("'")[0]
    lecture = [896, 18_496, 73_856, 147_584, 3_211_776, 513]
    assert lecture == [(3 * 3 * 3 + 1) * 32, (3 * 3 * 32 + 1) * 64, (3 * 3 * 64 + 1) * 128,
                       (3 * 3 * 128 + 1) * 128, (7 * 7 * 128 + 1) * 512, (512 + 1) * 1]
    assert sum(lecture) == 3_453_121
    calc = json.loads(runner.invoke(main, ["calc", spec, "--format", "json"]).stdout)
    assert calc["total_params"] == 3_453_121
    assert [r["params"] for r in calc["layers"] if r["params"]] == lecture
    # the same network as the zoo's lecture_catsdogs_cnn: parameters, MACs, activation memory
    zoo = load_report("lecture_catsdogs_cnn")
    assert (calc["total_macs"], calc["activation_bytes"]) == (zoo.total_macs,
                                                             zoo.activation_bytes)
    assert "3,453,121" in readme
