"""Integer inputs: ``--dtype long`` for models that start with an Embedding (issue 12, item 5).

Oracles: the model's own real forward on token ids, ``sum(p.numel())``, the Embedding's table
size for the ids drawn, PyTorch's MemTracker around a real CPU training step on token ids, and
byte counts worked out by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from fixtures.engine_cases import TinyLM, TinyTransformerLM, TokenClassifier
from torch import nn

from archscope._modes import random_input
from archscope.bench.trainer import Trainer
from archscope.cli import main
from archscope.engine import inspect, inspect_onnx
from archscope.errors import InputShapeError, LayerInputError
from archscope.losses import training_loss
from archscope.memory import training_memory
from archscope.source import resolve
from archscope.stats.run import model_stats

CASES = Path(__file__).parent / "fixtures" / "engine_cases.py"
TOKENS = f"{CASES}:TokenClassifier"


@pytest.mark.parametrize("cls", [TinyLM, TinyTransformerLM])
def test_a_language_model_is_traced_on_token_ids(cls: type[nn.Module]) -> None:
    model = cls().eval()
    report = inspect(model, (12,), batch=3, dtype=torch.long)
    ids = torch.randint(0, cls.VOCAB, (3, 12))  # type: ignore[attr-defined]
    assert report.output_shapes == (tuple(model(ids).shape),) == ((3, 12, cls.VOCAB),)  # type: ignore[attr-defined]
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.find("embed").output_shapes == ((3, 12, 16),)


def test_floats_into_an_embedding_suggest_dtype_long() -> None:
    with pytest.raises(LayerInputError) as info:
        inspect(TinyLM(), (12,))
    assert str(info.value) == ("embed (Embedding) looks up integer token ids (0 to 49) but the "
                               "model input is float32; give integer inputs with --dtype long "
                               "(dtype=torch.long)")

    class Inner(nn.Module):  # floats made inside the model: no --dtype can help
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.embed = nn.Embedding(10, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embed(self.fc(x))

    with pytest.raises(LayerInputError, match=r"^embed \(Embedding\) looks up integer token ids "
                                              r"\(0 to 9\) but receives a float32 tensor"):
        inspect(Inner(), (4,))


def test_ids_for_a_real_run_are_rows_of_the_first_embedding() -> None:
    generator = torch.Generator().manual_seed(0)
    ids = random_input(TinyLM(), (1000,), 2, torch.long, "cpu", generator)
    assert ids.dtype == torch.long and ids.shape == (2, 1000)
    assert int(ids.min()) == 0 and int(ids.max()) == TinyLM.VOCAB - 1  # every row reachable
    no_table = random_input(nn.Linear(3, 3), (100,), 1, torch.int32, "cpu", generator)
    assert no_table.dtype == torch.int32 and set(no_table.unique().tolist()) == {0, 1}


def test_dtype_names() -> None:
    assert resolve(f"{CASES}:TinyLM", dtype="long").dtype == torch.int64
    assert resolve(f"{CASES}:TinyLM", dtype="int").dtype == torch.int32
    assert resolve(f"{CASES}:TinyLM").dtype is None
    with pytest.raises(InputShapeError, match="input dtype 'int8' is not one of float32"):
        resolve(f"{CASES}:TinyLM", dtype="int8")


def test_dtype_long_on_the_command_line() -> None:
    runner = CliRunner()
    source = f"{CASES}:TinyLM"
    result = runner.invoke(main, ["summary", source, "--input", "12", "--dtype", "long",
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_shapes"] == [[1, 12, TinyLM.VOCAB]]
    refused = runner.invoke(main, ["summary", source, "--input", "12"])
    assert refused.exit_code == 1 and "--dtype long" in refused.stderr
    checked = runner.invoke(main, ["check", source, "--dtype", "long", "--device", "cpu"])
    assert checked.exit_code == 0, checked.output
    drawn = runner.invoke(main, ["diagram", source, "--dtype", "long", "-o", "-"])
    assert drawn.exit_code == 0 and drawn.stdout.startswith("digraph")
    bad = runner.invoke(main, ["summary", source, "--dtype", "int8"])
    assert bad.exit_code == 2


def test_export_takes_token_ids(tmp_path: Path) -> None:
    path = tmp_path / "lm.onnx"
    result = CliRunner().invoke(main, ["export", f"{CASES}:TinyLM", "--input", "12", "--dtype",
                                       "long", "-o", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert exported["input_shape"] == [1, 12]
    assert exported["max_abs_diff"] <= exported["tolerance"]  # onnxruntime ran on the ids
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inspect_onnx(path).total_params == sum(p.numel() for p in TinyLM().parameters())


# -- the run side: bench, stats, memory (and summary's memory line) on token ids ----------------

def test_bench_trains_on_token_ids() -> None:
    result = CliRunner().invoke(main, ["bench", TOKENS, "--dtype", "long", "--device", "cpu",
                                       "--batch-size", "4", "--steps", "2", "--warmup", "1",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["results"][0]
    assert run["error"] is None and all(math.isfinite(v) for v in run["losses"])
    # the estimate's inputs: 4×8 int64 ids (8 bytes each) and 4 int64 class labels
    assert run["memory_estimate"]["breakdown"]["inputs"] == 4 * 8 * 8 + 4 * 8


def test_bench_autocast_on_token_ids() -> None:
    # bf16 autocast applies to the floats the Embedding makes, not to the ids
    result = CliRunner().invoke(main, ["bench", TOKENS, "--dtype", "long", "--device", "cpu",
                                       "--batch-size", "4", "--steps", "2", "--warmup", "0",
                                       "--precision", "bf16", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert all(math.isfinite(v) for v in json.loads(result.stdout)["results"][0]["losses"])


def test_the_trainers_batch_is_token_ids() -> None:
    trainer = Trainer(TokenClassifier(), input_shape=(8,), batch=64, device=torch.device("cpu"),
                      precision="fp32", channels_last=False, compile=False, optimizer="sgd",
                      lr=1e-3, seed=0, dtype=torch.long)
    assert trainer.x.dtype == torch.long and trainer.x.shape == (64, 8)
    assert int(trainer.x.min()) >= 0 and int(trainer.x.max()) < TokenClassifier.VOCAB
    assert math.isfinite(float(trainer.step()))


def test_stats_on_token_ids() -> None:
    result = CliRunner().invoke(main, ["stats", TOKENS, "--dtype", "long", "--device", "cpu",
                                       "--batch", "4", "--format", "json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["runs"][0]
    rows = {row["type"]: row for row in run["layers"]}
    # the oracle: the same build (seed 0) looking up the same ids (the input's generator, seed 0)
    model = resolve(TOKENS, device="cpu", seed=0).model
    ids = torch.randint(0, TokenClassifier.VOCAB, (4, 8), generator=torch.Generator().manual_seed(0))
    looked_up = model[0](ids).detach()
    assert rows["Embedding"]["output_shape"] == [4, 8, 16]
    assert rows["Embedding"]["std"] == pytest.approx(float(looked_up.std(correction=0)), rel=1e-6)
    assert rows["Embedding"]["mean"] == pytest.approx(float(looked_up.mean()), rel=1e-5)
    assert rows["Linear"]["weight_grad_std"] > 0 and math.isfinite(run["loss_value"])


def test_stats_refuses_ids_with_nothing_to_differentiate() -> None:
    with pytest.raises(InputShapeError) as info:
        model_stats(nn.Sequential(nn.Flatten()), (8,), dtype="long", device="cpu")
    assert str(info.value) == ("Sequential: int64 inputs carry no gradient and the model has no "
                               "trainable parameter, so there is no gradient to measure; give "
                               "float inputs (leave --dtype out) or a model with weights")


def _memtracker_peak(batch: int) -> tuple[int, int]:
    """PyTorch's MemTracker over two real CPU training steps of TokenClassifier on token ids
    (bench's step: cross-entropy against class labels, SGD with momentum 0.9): the peak, and
    what it counts as neither parameter, gradient, activation, temporary nor state (the ids
    and labels)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    generator = torch.Generator().manual_seed(0)
    model = TokenClassifier().train()
    ids = torch.randint(0, TokenClassifier.VOCAB, (batch, 8), generator=generator)
    labels = [torch.randint(0, 10, (batch,), generator=generator)]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    tracker = MemTracker()
    tracker.track_external(model, opt, ids, *labels)
    with tracker:
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            training_loss(model(ids), labels).backward()
            opt.step()
            tracker.reset_mod_stats()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    other = next(v for k, v in peak.items() if getattr(k, "value", None) == "Other")
    return int(peak["Total"]), int(other)


def test_memory_on_token_ids_matches_memtracker_to_the_byte() -> None:
    batch = 4
    theirs, other = _memtracker_peak(batch)
    assert other == batch * 8 * 8 + batch * 8  # int64 ids and labels: 8 bytes an element
    ours = training_memory(TokenClassifier(), (8,), batch=batch, device="cpu",
                           input_dtype=torch.long)
    assert ours.peak == theirs
    assert ours.breakdown["inputs"] == other
    result = CliRunner().invoke(main, ["memory", TOKENS, "--dtype", "long", "--device", "cpu",
                                       "--batch", str(batch), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["peak"] == theirs


def test_summary_peak_on_token_ids_is_memorys() -> None:
    runner = CliRunner()
    summary = runner.invoke(main, ["summary", TOKENS, "--dtype", "long", "--batch", "2",
                                   "--format", "json"])
    memory = runner.invoke(main, ["memory", TOKENS, "--dtype", "long", "--batch", "2",
                                  "--format", "json"])
    assert summary.exit_code == 0 and memory.exit_code == 0, summary.output + memory.output
    line = json.loads(summary.stdout)["training_memory"]
    assert line["reason"] == "" and line["peak"] == json.loads(memory.stdout)["peak"] > 0
    # the results say which input they assumed
    assert line["input_dtype"] == json.loads(memory.stdout)["input_dtype"] == "int64"
    # without --dtype the replay and stats feed floats to the Embedding: one line suggests it
    for command in (["memory", TOKENS], ["stats", TOKENS, "--device", "cpu", "--batch", "2"]):
        floats = runner.invoke(main, command)
        error = floats.stderr.splitlines()[-1]  # after stats' progress line
        assert floats.exit_code == 1 and floats.stdout == ""
        assert error.startswith("Error: ") and "with --dtype long" in error


@pytest.mark.parametrize("command", [["summary"], ["memory"], ["stats", "--device", "cpu"],
                                     ["bench", "--device", "cpu", "--steps", "1"]])
def test_a_float_dtype_other_than_the_models_is_refused(command: list[str]) -> None:
    result = CliRunner().invoke(main, [command[0], "lecture_mnist_cnn", "--dtype", "float16",
                                       *command[1:]])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1:] == [  # after stats' progress line
        "Error: --dtype float16: lecture_mnist_cnn's weights are float32, and PyTorch's layers "
        "take a float input only in their weights' dtype; leave --dtype out (the input is then "
        "float32), or train in mixed precision with --precision bf16 or fp16 (bench, memory)"]


def test_check_fails_a_model_whose_weights_are_not_the_float_dtype() -> None:
    # check runs several models: the dtype may suit one and not another, so it is a FAIL there
    result = CliRunner().invoke(main, ["check", "lecture_mnist_cnn", "--dtype", "float16",
                                       "--device", "cpu"])
    assert result.exit_code == 1
    assert ("FAIL lecture_mnist_cnn: --dtype float16: lecture_mnist_cnn's weights are float32"
            in result.stdout)


def test_the_models_own_float_dtype_is_accepted() -> None:
    assert resolve("lecture_mnist_cnn", dtype="float32").dtype == torch.float32
    double = resolve(f"{CASES}:TinyLM", device="cpu").model.double()
    from archscope._modes import check_input_dtype

    check_input_dtype(double, torch.float64, "TinyLM")  # no error
    with pytest.raises(InputShapeError, match="--dtype float32: TinyLM's weights are float64"):
        check_input_dtype(double, torch.float32, "TinyLM")


@pytest.mark.parametrize("command", [
    ["summary"], ["memory"], ["stats"],
    ["bench", "--device", "cpu", "--steps", "1", "--warmup", "1", "--batch-size", "2"],
])
def test_integer_ids_into_a_cnn_say_to_leave_dtype_out(command: list[str]) -> None:
    # PyTorch's own refusal ("Input type (long int) and bias type (float) should be the same")
    # stays, with what to do about it
    result = CliRunner().invoke(main, [command[0], "lecture_mnist_cnn", *command[1:],
                                       "--dtype", "long"])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "Input type (long int)" in error[0]
    assert error[0].endswith("this layer takes floats: leave --dtype out unless the model "
                             "starts with an Embedding)")
    assert "LectureCNN" not in error[0]  # the model as the user named it, not its class
