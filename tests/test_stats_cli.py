"""``archscope stats`` as a user runs it: the issue's commands, formats, pictures, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archscope.cli import main

MLP = "spec:784 10x[dense100 sigmoid] dense10"
TINY = "spec:16 3x[dense8 tanh] dense4"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _rows(stdout: str, title: str) -> dict[str, str]:
    """The rows of the table under ``title``: first cell → the rest of the line."""
    lines = stdout.split(title, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("─")) + 1
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        name, _, rest = line.partition(" ")
        rows[name] = rest
    return rows


def _first_layer_ratio(stdout: str, model: str) -> float:
    """The summary line's ``N× plain34's first`` for ``model``."""
    line = next(line for line in stdout.splitlines() if line.startswith(f"{model}: weight-gradient"))
    match = re.search(r"; ([0-9.,e+-]+)× ", line)
    assert match is not None, line
    return float(match.group(1).replace(",", ""))


def test_sigmoid_mlp_saturated_collapsed_healthy(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stats", MLP, "--init", "normal:1,normal:0.01,xavier_normal"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"stats: {MLP} on cpu (normal:1, normal:0.01, xavier_normal)")
    out = result.stdout
    # each scheme's formula, filled in, beside the std drawn
    assert "Xavier normal: std = √(2/(fan_in+fan_out)) = √(2/(784+100)) = 0.0476" in out
    assert "Normal: std = 0.01" in out and "biases set to 0" in out
    rows = _rows(out, "Activations side by side")
    assert len([n for n in rows if n.startswith("sigmoid")]) == 10
    for name in (f"sigmoid{i}" for i in range(2, 11)):
        sats = [float(s) for s in re.findall(r"sat\s+([0-9.]+)%", rows[name])]
        stds = [float(s) for s in re.findall(r"\s([0-9.]+)\s+sat", rows[name])]
        assert len(sats) == len(stds) == 3
        assert sats[0] > 35 and sats[1] == 0 and sats[2] < 1  # saturated, collapsed, healthy
        assert stds[0] > 0.4 and stds[1] < 0.02 and 0.08 < stds[2] < 0.3
    grads = _rows(out, "Weight-gradient std by depth")
    assert list(grads)[:2] == ["fc1", "fc2"] and len(grads) == 11


def test_two_models_side_by_side(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stats", "lecture_mlp", "lecture_mnist_cnn", "--batch", "16"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("stats: ") == 2
    # no shared layer names: rows by position, named after both layers
    table = result.stdout.split("Activations side by side", 1)[1]
    assert "\nsigmoid1 / features.relu1 " in table
    header = table.splitlines()[1]
    assert header.split() == ["Layer", "lecture_mlp", "lecture_mnist_cnn"]
    assert "lecture_mnist_cnn: weight-gradient std" in result.stdout


@pytest.mark.slow
def test_plain18_against_resnet18_without_and_with_norm(runner: CliRunner) -> None:
    args = ["stats", "plain18", "resnet18", "--input", "3x32x32", "--batch", "8"]
    result = runner.invoke(main, [*args, "--no-norm"])
    assert result.exit_code == 0, result.output
    assert "--no-norm: 20 normalization layers replaced by identity" in result.stdout  # 1 + 16 + 3
    assert _first_layer_ratio(result.stdout, "resnet18") > 100
    grads = _rows(result.stdout, "Weight-gradient std by depth")
    # the ResNet's projections have no counterpart in the plain net: blank cells
    assert grads["layer2.0.downsample.0"].split() != [] and len(grads["layer2.0.downsample.0"].split()) == 1
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert _first_layer_ratio(result.stdout, "resnet18") <= 1  # not smaller with BatchNorm


@pytest.mark.slow
@pytest.mark.parametrize("no_norm", [True, False], ids=["no-norm", "norm"])
def test_the_issues_plain34_commands(runner: CliRunner, no_norm: bool) -> None:
    args = ["stats", "plain34", "resnet34", *(["--no-norm"] if no_norm else [])]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "input 3×224×224 · batch 8" in result.stdout  # the default batch for 224×224
    ratio = _first_layer_ratio(result.stdout, "resnet34")
    assert ratio > 100 if no_norm else ratio <= 1


def test_json_is_clean_and_complete(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stats", TINY, "--init", "he_uniform,zeros", "--format", "json",
                                  "--batch", "32", "--seed", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    he, zeros = data["runs"]
    assert (he["scheme"], zeros["scheme"], he["batch"], he["seed"]) == ("he_uniform", "zeros", 32, 3)
    assert he["input_shape"] == [16] and he["skipped"] is None
    first = he["init"][0]
    assert first["formula"] == "He uniform: limit = √(6/fan_in) = √(6/16) = 0.612"
    assert (first["fan_in"], first["fan_out"], first["bias"]) == (16, 8, "zero")
    layer = he["layers"][1]
    assert layer["type"] == "Tanh" and layer["kind"] == "activation"
    for key in ("mean", "std", "zero_pct", "saturated_pct", "grad_std", "output_shape",
                "histogram"):
        assert key in layer
    assert "sample" not in layer and sum(layer["histogram"]["counts"]) == 32 * 8
    assert zeros["layers"][0]["std"] == 0 and zeros["layers"][0]["grad_ratio"] is None
    assert result.stderr.startswith("stats: ")


def test_no_weights_says_the_scheme_cannot_apply(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stats", "spec:28x28x1 maxpool2 flatten", "--init",
                                  "he_normal,zeros"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "he_normal cannot apply to 28x28x1 maxpool2 flatten: it has no Linear or Conv weight to draw",
        "",
        "zeros cannot apply to 28x28x1 maxpool2 flatten: it has no Linear or Conv weight to draw",
    ]


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_plot_writes_one_picture(runner: CliRunner, tmp_path, ext: str) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / f"tiny.{ext}"
    result = runner.invoke(main, ["stats", TINY, "--init", "xavier_normal,normal:1",
                                  "--batch", "16", "--plot", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stderr.endswith(f"wrote {target}\n")
    data = target.read_bytes()
    assert data.startswith(b"\x89PNG") if ext == "png" else b"<svg" in data[:500]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--init", "he_normla"], 2, "Error: Invalid value for '--init': unknown init scheme "
                                 "'he_normla'; did you mean he_normal? (choose from default, "
                                 "lecun_normal, lecun_uniform, xavier_normal, xavier_uniform, "
                                 "he_normal, he_uniform, normal:STD, uniform:LIMIT, zeros)."),
    (["--init", "normal:abc"], 2, "Error: Invalid value for '--init': normal:abc: STD must be a "
                                  "positive number, e.g. normal:0.01."),
    (["--init", "uniform"], 2, "Error: Invalid value for '--init': uniform needs its LIMIT: write "
                               "uniform:LIMIT, e.g. uniform:0.01."),
    (["--plot", "out.jpg"], 2, "Error: --plot out.jpg: the picture is written as .png or .svg, "
                               "not .jpg"),
    (["--batch", "0"], 2, "Error: Invalid value for '--batch'"),
    (["--seed", "-1"], 2, "Error: Invalid value for '--seed': -1 is not a seed; use a whole number "
                          "from 0 to 2**63 − 1."),
    (["--device", "cuda:7"], 1, "Error: "),
])
def test_errors_are_one_line(runner: CliRunner, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(main, ["stats", "lecture_mlp", *args])
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_unknown_model_fails_before_anything_runs(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stats", "lecture_mlp", "plain43"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: unknown model 'plain43'; did you mean plain34")


def test_plot_without_matplotlib_names_the_extra(runner: CliRunner, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    result = runner.invoke(main, ["stats", TINY, "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == ("Error: --plot needs matplotlib, which is not installed: "
                             "pip install 'archscope[plot]'\n")


def test_help_imports_neither_torch_nor_matplotlib() -> None:
    code = ("import sys; from click.testing import CliRunner; from archscope.cli import main; "
            "r = CliRunner().invoke(main, ['stats', '--help']); assert r.exit_code == 0; "
            "assert 'normal:STD' in r.output; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.parametrize("no_norm", [True, False], ids=["no-norm", "norm"])
def test_the_issues_plain34_commands_on_cuda(runner: CliRunner, no_norm: bool) -> None:
    args = ["stats", "plain34", "resnet34", "--device", "cuda", "--input", "3x112x112",
            "--batch", "16", *(["--no-norm"] if no_norm else [])]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert " · cuda" in result.stdout
    ratio = _first_layer_ratio(result.stdout, "resnet34")
    assert ratio > 100 if no_norm else ratio <= 1
