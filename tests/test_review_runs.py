"""Review fixes for ``bench``, ``check`` and ``export``: failures that are one model's, not the
command's; the batch ``check`` picks for BatchNorm; parameter-free models; reasons cut at word
boundaries; JSON that is always JSON; the exporter's output kept off the terminal; ``--opset``'s
range; the export verdict's wording; the bench footer and loss digits.

Oracles: PyTorch itself (the in-place error its autograd raises, a model without parameters,
BatchNorm's refusal at one value per channel), parameter counts written out by hand, and
``json.loads`` of what the commands print.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from archscope import bench as bench_lib
from archscope.bench import BenchConfig, BenchResult, run_bench
from archscope.check import check_model
from archscope.cli import main
from archscope.commands.bench import failure_reason, render_table
from archscope.errors import first_line
from archscope.export import ExporterFailed, export_onnx
from archscope.registry import get_entry

# Res: ReLU(inplace=True) overwrites the BatchNorm output that the ReLU's own backward needs, and
# `out += idt` then bumps its version again; autograd refuses in backward (the forward runs).
# Good: the same input, trains. DD: an `if` on a tensor's value, which torch.export cannot trace.
_MODELS = '''
import torch
from torch import nn


class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.r = nn.ReLU(inplace=True)

    def forward(self, x):
        idt = x
        out = self.r(self.bn(self.c1(x)))
        out += idt
        return self.r(out)


class Good(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(self.c(x).flatten(1))


class Frozen(Good):
    def __init__(self):
        super().__init__()
        for p in self.parameters():
            p.requires_grad_(False)


class DD(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        x = self.c(x)
        if x.mean() > 0:
            x = x * 2
        return x
'''

_NO_PARAMS = "spec:28x28x1 maxpool2 flatten"
_BN_SPEC = "spec:784 dense64 bn relu dense10"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``nets.py`` in the working directory: short names keep the table's model column whole."""
    monkeypatch.chdir(tmp_path)
    path = Path("nets.py")
    path.write_text(textwrap.dedent(_MODELS), encoding="utf-8")
    return path


def _bench_args(*models: str) -> list[str]:
    return ["bench", *models, "--input", "8x8x8", "--device", "cpu", "--batch-size", "4",
            "--steps", "2", "--warmup", "1"]


# -- 1. bench: a model that cannot be trained is one FAILED result ---------------------------

def test_bench_training_step_failure_is_a_failed_row_and_the_next_model_still_runs(
    models: Path,
) -> None:
    result = CliRunner().invoke(main, _bench_args(f"{models}:Res", f"{models}:Good"))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()
            if line.strip().startswith("nets.py:")}
    res_row, good_row = rows[f"{models}:Res"], rows[f"{models}:Good"]
    assert res_row.split()[1:] == ["4", "fp32", *["—"] * 7, "FAILED"]
    assert re.search(r"\d\.\d{4}→\d\.\d{4}$", good_row), good_row  # Good was measured
    (failed,) = result.stderr.strip().splitlines()
    assert failed == (
        f"FAILED: {models}:Res: the training step failed: one of the variables needed for "
        "gradient computation has been modified by an inplace operation: [torch.FloatTensor "
        "[4, 8, 8, 8]], which is output 0 of Relu, is at version 3; expected version 1 instead. "
        "… (an in-place operation such as ReLU(inplace=True), += or .add_() overwrote a tensor "
        "the backward pass needs: make that operation out-of-place)"
    )


def test_bench_json_records_the_failure_and_stays_json(models: Path) -> None:
    result = CliRunner().invoke(main, [*_bench_args(f"{models}:Res", f"{models}:Good"),
                                       "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    res, good = data["results"]
    assert (res["status"], res["loss_fell"], res["losses"], res["step_ms"]) == (
        "failed", False, [], [])
    assert res["images_per_s"] is None and res["first_loss"] is None and res["batch"] == 4
    assert res["error"].startswith("the training step failed: one of the variables needed")
    assert good["status"] == "ok" and good["error"] is None and len(good["losses"]) == 3
    json.dumps(data, allow_nan=False)  # no NaN or inf slipped in for the missing timings


def test_bench_model_without_parameters_is_refused_before_any_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(bench_lib._Trainer, "step", lambda self: ran.append("stepped"))
    run = run_bench([_NO_PARAMS], BenchConfig(device="cpu", steps=2, warmup=0))
    assert ran == []  # refused after the (untimed) forward that checks the model runs
    (r,) = run.results
    assert r.error == "the model has no trainable parameters: nothing to train"
    assert not r.ok and not run.ok and r.status == f"FAILED: {r.error}"
    assert (r.model, r.input_shape, r.batch, r.batch_source) == (
        "28x28x1 maxpool2 flatten", (1, 28, 28), 4, "default")


def test_bench_cli_without_parameters_and_with_frozen_parameters(models: Path) -> None:
    result = CliRunner().invoke(main, ["bench", _NO_PARAMS, "--device", "cpu", "--steps", "2"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("FAILED: 28x28x1 maxpool2 flatten: the model has no "
                                     "trainable parameters: nothing to train")
    frozen = CliRunner().invoke(main, _bench_args(f"{models}:Frozen"))
    assert frozen.exit_code == 1
    assert frozen.stderr.strip() == (f"FAILED: {models}:Frozen: every parameter is frozen "
                                     "(requires_grad=False): nothing to train")


# -- 8. bench footer and loss digits ---------------------------------------------------------

def _result(**kw: Any) -> BenchResult:
    fields: dict[str, Any] = {
        "model": "m", "input_shape": (1, 28, 28), "device": "cpu", "device_name": "cpu",
        "batch": 4, "batch_source": "given", "precision": "fp32", "channels_last": False,
        "compiled": False, "optimizer": "sgd", "steps": 2, "warmup": 1,
        "step_ms": (10.0, 10.0), "span_ms": 20.0, "training_flops": None, "peak_tflops": None,
        "peak_source": None, "peak_memory_bytes": None, "memory_estimate": None,
        "losses": (2.296, 2.2954, 2.2950),
    }
    fields.update(kw)
    return BenchResult(**fields)


def test_bench_losses_keep_five_significant_digits_and_the_footer_counts_in_singular() -> None:
    run = bench_lib.BenchRun("cpu", "cpu", "2.13.0", None, (_result(),))
    text = render_table(run)
    assert "2.2960→2.2950" in text  # not 2.296→2.295
    assert "2 timed steps after 1 warm-up step, optimizer sgd" in text
    many = bench_lib.BenchRun("cpu", "cpu", "2.13.0", None, (_result(steps=1, warmup=0),))
    assert "1 timed step after 0 warm-up steps," in render_table(many)
    stuck = _result(losses=(2.3, 2.3, 2.3))
    assert failure_reason(stuck) == ("the loss did not fall on the repeated batch "
                                     "(2.3000 → 2.3000 over 3 steps)")


# -- 2. check: batch 2 for BatchNorm by default; models without parameters ---------------------

def test_check_runs_a_batchnorm_after_a_linear_at_batch_2_by_default() -> None:
    result = check_model(_BN_SPEC, device="cpu", repeats=1)
    assert result.passed, result.failures
    assert result.batch == 2
    # (784+1)·64 + 2·64 (BatchNorm weight and bias) + (64+1)·10 = 50,240 + 128 + 650
    assert result.params == result.engine_params == 51_018
    assert result.notes[0] == ("batch 2: at batch 1 bn1 (BatchNorm1d) would see one value per "
                               "channel in training mode, which PyTorch refuses; --batch sets the "
                               "batch")


def test_check_at_an_explicit_batch_1_fails_naming_the_fix() -> None:
    result = check_model(_BN_SPEC, device="cpu", batch=1, repeats=1)
    assert not result.passed and result.batch == 1
    assert result.error == (
        "forward/backward failed: Expected more than 1 value per channel when training, got input "
        "size torch.Size([1, 64]) (BatchNorm in training mode needs more than one value per "
        "channel: use --batch 2 or more)"
    )


def test_check_cli_batchnorm_spec_passes_and_shows_the_note() -> None:
    result = CliRunner().invoke(main, ["check", _BN_SPEC, "--device", "cpu", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "784 dense64 bn relu dense10  (cpu, batch 2, input 784)" in result.stdout
    assert "  note     batch 2: at batch 1 bn1 (BatchNorm1d) would see one value" in result.stdout
    assert "PASS 784 dense64 bn relu dense10" in result.stdout


def test_check_model_without_parameters_passes_with_backward_through_the_input() -> None:
    result = check_model(_NO_PARAMS, device="cpu", repeats=1)
    assert result.passed, result.failures
    assert result.params == result.engine_params == 0
    assert result.layers_compared == 2 and result.grads_finite and result.outputs_finite
    assert ("the model has no trainable parameters: the backward pass is checked with respect "
            "to the input") in result.notes


# -- 3. reasons are cut at a sentence or word boundary ----------------------------------------

def test_check_inplace_failure_is_cut_after_a_whole_sentence(models: Path) -> None:
    result = check_model(f"{models}:Res", device="cpu", input_shape=(8, 8, 8), repeats=1)
    assert not result.passed
    assert result.error == (
        "forward/backward failed: one of the variables needed for gradient computation has been "
        "modified by an inplace operation: [torch.FloatTensor [1, 8, 8, 8]], which is output 0 of "
        "Relu, is at version 3; expected version 1 instead. … (an in-place operation such as "
        "ReLU(inplace=True), += or .add_() overwrote a tensor the backward pass needs: make that "
        "operation out-of-place)"
    )


def test_first_line_never_cuts_a_word() -> None:
    words = [f"word{i}" for i in range(100)]  # 100 words, no sentence end: cut at a space
    text = " ".join(words)
    cut = first_line(text, limit=50)
    assert cut == "word0 word1 word2 word3 word4 word5 word6 word7 …" and len(cut) <= 50
    assert first_line("short\nsecond line") == "short"
    assert first_line("\x1b[96mcoloured\x1b[0m") == "coloured"
    assert first_line(ValueError()) == "ValueError"


# -- 4. check --format json writes JSON for a weights file that does not fit -------------------

def test_check_json_with_bad_weights_still_writes_the_document(tmp_path: Path) -> None:
    state = get_entry("lecture_mlp").build().state_dict()
    path = tmp_path / "w.pt"
    torch.save({("module." + k): v for k, v in state.items()}, path)
    result = CliRunner().invoke(main, ["check", "lecture_mlp", "--device", "cpu",
                                       "--weights", str(path), "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["device"] == "cpu"
    (entry,) = data["models"]
    assert entry["model"] == "lecture_mlp" and entry["passed"] is False
    assert entry["weights"] == str(path)
    assert entry["error"].startswith(f"{path} does not fit lecture_mlp (strict=True): "
                                     f"{len(state)} missing key(s)")
    assert entry["failures"] == [entry["error"]]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {entry['error']}"]


# -- 5. export: the exporter's output is captured; the cause is one line -----------------------

def test_export_of_data_dependent_control_flow_is_one_line(models: Path, tmp_path: Path) -> None:
    target = tmp_path / "dd.onnx"
    line = models.read_text(encoding="utf-8").splitlines().index("        if x.mean() > 0:") + 1
    result = CliRunner().invoke(main, ["export", f"{models}:DD", "--input", "3x8x8",
                                       "-o", str(target)])
    assert result.exit_code == 1
    assert result.stdout == ""
    exporting, error = result.stderr.splitlines()  # nothing of the exporter's own output
    assert exporting == f"exporting {models}:DD to {target} …"
    where = re.fullmatch(
        r"Error: nets\.py:DD: PyTorch's ONNX exporter failed at opset 18: the forward reads "
        r"tensor values \(data-dependent control flow such as `if x\.mean\(\) > 0` or "
        r"`\.item\(\)`\), which torch\.export cannot capture in a graph \((.+), line (\d+): "
        r"`if x\.mean\(\) > 0:`\); compute both branches and choose with torch\.where, or use "
        r"torch\.cond", error)
    assert where is not None, error
    assert Path(where.group(1)).samefile(models) and int(where.group(2)) == line
    assert not target.exists()


def test_export_verbose_shows_what_the_exporter_printed(models: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", f"{models}:DD", "--input", "3x8x8",
                                       "-o", str(tmp_path / "dd.onnx"), "--verbose"])
    assert result.exit_code == 1
    assert "def forward(" in result.stderr  # the graph torch.export dumped
    assert result.stderr.splitlines()[-1].startswith("Error: ")


def test_export_library_keeps_the_exporter_output_on_the_error(
    models: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("review_nets", models)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ExporterFailed) as info:
        export_onnx(module.DD(), tmp_path / "dd.onnx", (3, 8, 8))
    assert "\n" not in str(info.value) and "Next steps" not in str(info.value)
    assert "def forward(" in info.value.output
    out, err = capfd.readouterr()
    assert out == "" and "def forward(" not in err and "symbolic_shapes" not in err


# -- 6. --opset's range --------------------------------------------------------------------------

def test_export_opset_below_18_is_a_usage_error_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.onnx"), "--opset", "17"])
    assert result.exit_code == 2
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("Error: Invalid value for '--opset': 17 is not in the range x>=18.")
    assert "exporting" not in result.stderr
    help_text = CliRunner().invoke(main, ["export", "--help"]).stdout
    assert "[default: 18; x>=18]" in " ".join(help_text.split())


# -- 7. the export verdict -----------------------------------------------------------------------

def test_export_verdict_puts_the_bound_right_after_the_difference(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    match = re.fullmatch(r"onnxruntime \S+: max \|PyTorch − ONNX\| = (\S+) ≤ 1\.00e-04 "
                         r"\(outputs up to (\S+)\): passed", line)
    assert match is not None, line
    assert float(match.group(1)) <= 1e-4 < float(match.group(2))


def test_export_verdict_against_pytorchs_own_error(tmp_path: Path) -> None:
    # an atol below any fp32 rounding: the comparison falls back to PyTorch's own fp32 error
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.onnx"), "--atol", "1e-12"])
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    match = re.fullmatch(r"onnxruntime \S+: max \|PyTorch − ONNX\| = (\S+) ≤ (\S+) \(outputs up "
                         r"to \S+; above 1\.00e-12, so judged against 4× PyTorch's own fp32 "
                         r"error against float64, (\S+)\): passed", line)
    assert match is not None, line
    diff, bound, error = (float(g) for g in match.groups())
    assert diff <= bound and math.isclose(bound, 4 * error, rel_tol=1e-2)
