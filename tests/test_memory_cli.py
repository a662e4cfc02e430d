"""``archscope memory`` as a user runs it: output, options, errors, the plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archscope.cli import main
from archscope.memory import training_memory
from archscope.render.memory import render_memory_table
from archscope.source import load_model


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_golden_memory_table_lecture_mnist_cnn(golden) -> None:
    loaded = load_model("lecture_mnist_cnn")
    result = training_memory(loaded.model, loaded.input_shape, batch=64, name=loaded.name)
    text = render_memory_table(result, width=100)
    golden.check("memory_lecture_mnist_cnn.txt", text)
    assert max(len(line) for line in text.splitlines()) <= 100


def test_table_names_the_peak_and_where(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mnist_cnn", "--batch", "8",
                                  "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "Peak memory" in result.stdout and "in backward, at " in result.stdout
    assert "Timeline of every step after the first" in result.stdout
    assert "Fits on: H200" in result.stdout
    assert result.stderr == ""


def test_json_is_the_result(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mlp", "--batch", "4", "--device", "cpu",
                                  "--optimizer", "adamw", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "lecture_mlp" and data["batch"] == 4 and data["device"] == "cpu"
    assert data["optimizer"] == "adamw" and data["fit"] is None and "fits_on" not in data
    assert sum(data["breakdown"].values()) == data["peak"]
    assert {"step", "phase", "layer", "total", "breakdown"} <= set(data["timeline"][0])
    # AdamW's moments: 2 × 45,360 parameters × 4 bytes, at the peak of a later step
    assert data["breakdown"]["optimizer_state"] == 2 * 45_360 * 4


def test_freeze_drops_gradients_and_state(runner: CliRunner) -> None:
    frozen = runner.invoke(main, ["memory", "lecture_mnist_cnn", "--device", "cpu",
                                  "--freeze", "features", "--format", "json"])
    assert frozen.exit_code == 0, frozen.output
    # SGD momentum for the classifier only: (576+1)·64 + (64+1)·10 = 37,578 parameters × 4 bytes
    assert json.loads(frozen.stdout)["breakdown"]["optimizer_state"] == 37_578 * 4


def test_fit_finds_a_batch(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mnist_cnn", "--fit", "2GiB",
                                  "--precision", "bf16", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fit"]["batch"] == data["batch"] > 1
    assert data["fit"]["memory"] == 2 * 2**30
    assert "searching for the largest batch" in result.stderr


def test_gpu_finds_a_batch_for_a_known_device(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mlp", "--gpu", "L4", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fit"]["memory"] == 24 * 10**9


def test_unparseable_fit_is_a_usage_error_showing_the_forms(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mlp", "--fit", "twelve gigs"])
    assert result.exit_code == 2
    assert "12GiB, 12GB, 12G" in result.stderr and result.stdout == ""


def test_fit_with_batch_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mlp", "--fit", "1GiB", "--batch", "4"])
    assert result.exit_code == 2 and "--fit and --gpu find the batch" in result.stderr


def test_unknown_gpu_is_a_usage_error_listing_the_known(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "lecture_mlp", "--gpu", "RTX 9090"])
    assert result.exit_code == 2 and "H200" in result.stderr and "L4" in result.stderr


def test_a_batch_too_large_for_any_device_says_so(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "vgg16", "--batch", "100000"])
    assert result.exit_code == 0, result.output
    assert "Fits none of the known GPUs" in result.stdout
    assert " TiB" in result.stdout  # the answer itself, about 2.5 TiB


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_plot_writes_the_file(runner: CliRunner, tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / f"step.{suffix}"
    result = runner.invoke(main, ["memory", "lecture_mlp", "--device", "cpu", "--plot",
                                  str(target)])
    assert result.exit_code == 0, result.output
    assert target.stat().st_size > 1000
    head = target.read_bytes()[:8]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<" in head


def test_plot_without_matplotlib_names_the_extra(runner: CliRunner, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = runner.invoke(main, ["memory", "lecture_mlp", "--device", "cpu", "--plot",
                                  str(tmp_path / "step.png")])
    assert result.exit_code == 1
    assert "pip install 'archscope[plot]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "step.png").exists()


def test_plot_needs_png_or_svg(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["memory", "lecture_mlp", "--plot", str(tmp_path / "a.pdf")])
    assert result.exit_code == 2 and ".png or .svg" in result.stderr


def test_an_onnx_file_is_refused_in_one_line(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["memory", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "ONNX file" in result.stderr
    assert "Traceback" not in result.output


def test_a_failing_step_names_the_phase_and_layer(runner: CliRunner) -> None:
    result = runner.invoke(main, ["memory", "resnet18", "--input", "3x32x32"])
    assert result.exit_code == 1
    assert "failed (forward, in layer4.0.bn1)" in result.stderr
    assert "use --batch 2 or more" in result.stderr
    assert "Traceback" not in result.output
