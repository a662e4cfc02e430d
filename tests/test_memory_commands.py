"""One answer for training memory in every command: summary's and calc's line, bench's and
check's estimate and ``archscope memory`` are the same replay of the same step.

The figures are checked against oracles outside archscope: the lecture CNN's peak worked out by
hand below, and PyTorch's MemTracker around the real steps (tests/test_bench.py,
tests/test_check.py, tests/test_memory_model.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from archscope.cli import main
from archscope.memory import training_memory
from archscope.render import render
from archscope.source import load_report, resolve


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _json(*args: str) -> Any:
    result = _run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the totals' line, worked out by hand ------------------------------------------------------


def round512(nbytes: int) -> int:
    """The CUDA caching allocator's block for a small tensor: 512-byte multiples
    (c10/cuda/CUDACachingAllocator.cpp, round_size); every tensor here is under 1 MiB, so it is
    counted at exactly that size."""
    return max(512, -(-nbytes // 512) * 512)


def test_lecture_mnist_cnn_peak_by_hand() -> None:
    # summary's line: one training step of the lecture CNN at batch 1, fp32, SGD with momentum
    # (bench's fused SGD makes its momentum buffers with the optimizer), bytes as the CUDA
    # caching allocator counts them. The peak is in the backward pass at features.relu1.
    f32 = 4
    params = [3 * 3 * 1 * 32, 32, 3 * 3 * 32 * 64, 64, 3 * 3 * 64 * 64, 64,  # conv1..3
              576 * 64, 64, 64 * 10, 10]                                     # fc1, fc2
    weights = sum(round512(n * f32) for n in params)
    assert weights == 1536 + 512 + 73_728 + 512 + 147_456 + 512 + 147_456 + 512 + 2560 + 512
    momentum = weights  # one buffer per parameter, the same sizes
    grads = weights - round512(288 * f32) - round512(32 * f32)  # every layer's but conv1's yet
    inputs = round512(28 * 28 * f32) + round512(8)  # the image batch and one int64 label
    relu1 = 32 * 26 * 26 * f32  # 86,528 = 169 × 512
    saved = relu1  # relu1's output, saved for its own backward (pool1's indices are gone)
    gradients_flowing = 2 * relu1  # the gradient reaching relu1 and the one it makes
    loss = 2 * round512(f32)  # the loss and its gradient, one float each
    cublas = 2 * 4096 * 1024 * 8  # two 32 MiB cuBLAS workspaces (forward and backward threads)
    expected = (weights + momentum + grads + inputs + saved + gradients_flowing + loss + cublas)
    assert expected == 68_497_408  # 65.32 MiB

    data = _json("summary", "lecture_mnist_cnn")
    peak = data["training_memory"]
    assert peak["peak"] == expected
    assert (peak["batch"], peak["precision"], peak["optimizer"], peak["device"]) == (
        1, "fp32", "sgd", "cuda")
    assert peak["where"] == "backward, at features.relu1"
    assert peak["breakdown"] == {
        "weights": weights, "weight_copies": 0, "gradients": grads, "optimizer_state": momentum,
        "activations": saved, "temporaries": gradients_flowing + loss, "inputs": inputs,
        "workspace": cublas}


def test_the_totals_show_the_peak_and_keep_the_saved_activations() -> None:
    text = render(load_report("lecture_mnist_cnn", memory=True), "table", width=100)
    assert "Training activation memory" in text and "saved for backward" in text
    assert ("Training memory peak        65.32 MiB (batch 1, fp32, SGD, CUDA; see archscope "
            "memory)") in text
    markdown = render(load_report("lecture_mnist_cnn", memory=True), "markdown")
    assert ("| Training memory peak | 65.32 MiB (batch 1, fp32, SGD, CUDA; see archscope "
            "memory) |") in markdown


# -- every command, the same bytes ---------------------------------------------------------------


def test_summary_and_memory_agree() -> None:
    summary = _json("summary", "lecture_catsdogs_cnn", "--batch", "2")["training_memory"]
    memory = _json("memory", "lecture_catsdogs_cnn", "--batch", "2")
    assert summary["peak"] == memory["peak"]
    assert summary["where"] == f"{memory['peak_phase']}, at {memory['peak_layer']}"
    assert summary["breakdown"] == memory["breakdown"]


def test_calc_and_a_spec_source_agree_with_memory() -> None:
    spec = "28x28x1 conv8 k3 relu maxpool2 flatten dense10"
    calc = _json("calc", spec, "--batch", "3")["training_memory"]
    summary = _json("summary", f"spec:{spec}", "--batch", "3")["training_memory"]
    memory = _json("memory", f"spec:{spec}", "--batch", "3")
    assert calc["peak"] == summary["peak"] == memory["peak"]
    assert calc["device"] == "cuda" and calc["optimizer"] == "sgd"


def test_bench_and_memory_agree() -> None:
    # bench on the CPU: its step (fp32, SGD in PyTorch's for-loop) predicted for the CPU
    bench = _json("bench", "lecture_mnist_cnn", "--device", "cpu", "--batch-size", "4",
                  "--steps", "1", "--warmup", "1")["results"][0]
    memory = _json("memory", "lecture_mnist_cnn", "--device", "cpu", "--batch", "4")
    assert bench["estimated_memory_bytes"] == bench["memory_estimate"]["peak"] == memory["peak"]
    assert (memory["optimizer_impl"], bench["memory_estimate"]["optimizer_impl"]) == (
        "for-loop", "for-loop")
    adamw = _json("bench", "lecture_mnist_cnn", "--device", "cpu", "--batch-size", "4",
                  "--steps", "1", "--warmup", "1", "--optimizer", "adamw")["results"][0]
    memory = _json("memory", "lecture_mnist_cnn", "--device", "cpu", "--batch", "4",
                   "--optimizer", "adamw")
    assert adamw["memory_estimate"]["peak"] == memory["peak"]


def test_check_is_memorys_check_step() -> None:
    data = _json("check", "lecture_mnist_cnn", "--device", "cpu", "--batch", "2",
                 "--repeats", "1")
    subject = resolve("lecture_mnist_cnn")
    expected = training_memory(subject.model, subject.input_shape, batch=2, device="cpu",
                               optimizer="none", step="check")
    assert data["models"][0]["memory_estimate_bytes"] == expected.peak
    # check's step has no optimizer and no targets: less than bench's step at the same batch
    assert expected.peak < training_memory(subject.model, subject.input_shape, batch=2,
                                           device="cpu").peak


# -- what is not predicted, and where nothing fits -----------------------------------------------


def test_an_onnx_file_says_why_it_has_no_line(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = _run("summary", str(path))
    assert result.exit_code == 0, result.output
    assert ("Training memory peak unknown (an ONNX file has no PyTorch model to replay)"
            in " ".join(result.stdout.split()))
    data = _json("summary", str(path))
    assert data["training_memory"]["peak"] is None
    assert "ONNX" in data["training_memory"]["reason"]


def test_a_step_that_cannot_be_replayed_is_unknown_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from archscope.errors import ForwardError
    from archscope.memory import predict

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ForwardError("the training step failed (forward, in fc): data-dependent shape")

    monkeypatch.setattr(predict, "record", fail)
    data = _json("summary", "lecture_mnist_cnn")
    assert data["total_params"] == 93_322  # everything else is there
    assert data["training_memory"]["peak"] is None
    assert data["training_memory"]["reason"] == (
        "the step could not be replayed: the training step failed (forward, in fc): "
        "data-dependent shape")


def test_csv_does_not_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    from archscope.memory import predict

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("CSV shows no totals: the step must not be replayed")

    monkeypatch.setattr(predict, "record", fail)
    result = _run("summary", "lecture_mnist_cnn", "--format", "csv")
    assert result.exit_code == 0, result.output


def test_parameters_no_device_holds_get_a_note_and_no_overflow() -> None:
    # the 8192² input before a dense layer: 8190² · 32 features → 512 units, fp32
    features = 8190 * 8190 * 32
    params = (3 * 3 * 3 + 1) * 32 + (features + 1) * 512 + (512 + 1) * 10
    result = _run("calc", "8192x8192x3 conv32 k3 flatten dense512 dense10", "--width", "100")
    assert result.exit_code == 0, result.output
    assert f"{params:,}" in result.stdout
    text = " ".join(result.stdout.split())
    assert f"the parameters alone ({params * 4 / 2**40:.2f} TiB) are more than the memory of " \
           "every GPU archscope knows (the largest, H200, has 141 GB): this network fits none " \
           "of them" in text
    data = _json("calc", "8192x8192x3 conv32 k3 flatten dense512 dense10")
    # weights, gradients and momentum of 4.00 TiB each: three times the parameters at least
    assert data["training_memory"]["peak"] >= 3 * params * 4


def test_a_peak_no_device_holds_gets_a_note() -> None:
    # 64 × 64 images at batch 2**19 through a conv: its output alone is
    # 2**19 · 16 · 62 · 62 · 4 bytes = 120.1 GiB, the ReLU's as much again
    data = _json("summary", "spec:64x64x3 conv16 k3 relu flatten dense2", "--batch",
                 str(2**19))
    conv = 2**19 * 16 * 62 * 62 * 4
    assert data["training_memory"]["peak"] > 2 * conv > 141 * 10**9
    assert any(n.startswith("the training memory peak (") and "fits none of the GPUs archscope "
               "knows" in n for n in data["notes"])
    small = _json("summary", "spec:64x64x3 conv16 k3 relu flatten dense2")
    assert not any("fits none" in n for n in small["notes"])


# -- archscope memory takes what every command takes ---------------------------------------------


def test_memory_takes_head_base_freeze_and_num_classes() -> None:
    head = _json("memory", "lecture_mnist_cnn", "--head", "flatten dense5", "--freeze",
                 "features", "--batch", "2")
    subject = resolve("lecture_mnist_cnn", head="flatten dense5", freeze="features")
    expected = training_memory(subject.model, subject.input_shape, batch=2)
    assert head["peak"] == expected.peak
    # the frozen base has no momentum: the head's (576 + 1) · 5 fp32 weights alone, in 512-byte
    # blocks (a 11,520-byte weight and a 20-byte bias)
    assert head["breakdown"]["optimizer_state"] == round512(576 * 5 * 4) + round512(5 * 4)
    classes = _json("memory", "lecture_mnist_cnn", "--num-classes", "3")
    ten = _json("memory", "lecture_mnist_cnn")
    assert classes["breakdown"]["weights"] < ten["breakdown"]["weights"]
    bare = _run("memory", "lecture_mnist_cnn", "--base", "features", "--batch", "2")
    assert bare.exit_code == 0, bare.output


def test_memory_refuses_an_onnx_file_and_a_bad_freeze_like_the_others(tmp_path: Path) -> None:
    result = _run("memory", "lecture_mnist_cnn", "--freeze", "nothing_here")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1


def test_a_replayed_rnn_step_adds_no_warning_about_the_pytorch_build() -> None:
    # a CPU build of PyTorch warns "compiled without cuDNN" when a CUDA step's LSTM asks for it;
    # the replay's question is not the user's business
    import warnings

    from torch import nn

    from archscope.memory import training_memory

    class RNNy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(10, 20, batch_first=True)
            self.fc = nn.Linear(20, 2)

        def forward(self, x):  # type: ignore[no-untyped-def]
            o, _ = self.lstm(x)
            return self.fc(o[:, -1])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = training_memory(RNNy(), (5, 10), batch=4, device="cuda")
    assert result.peak > 0
    assert not [w for w in caught if "cuDNN" in str(w.message)]


VALUE_SIZED = f"{Path(__file__).parent / 'fixtures' / 'engine_cases.py'}:ValueSized"


def test_a_value_reading_forward_keeps_the_line_short_and_says_why_in_a_note() -> None:
    # the replay runs on meta only: its reason must not suggest --trace real, which the user of
    # `summary --trace real` already gave and `memory`/`bench` do not have
    result = _run("summary", VALUE_SIZED, "--trace", "real")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    (row,) = [line for line in lines if line.startswith("Training memory peak")]
    assert row.split(None, 3)[3] == "unknown (the step could not be replayed: see the notes)"
    notes = " ".join(lines[lines.index(next(x for x in lines if "peak unknown" in x)):])
    assert "the memory replay runs on the meta device only" in notes
    assert "--trace real" not in notes.split("peak unknown")[1]
    assert all(len(line) <= 100 for line in lines if not set(line) <= set("─ "))


def test_bench_notes_keep_their_square_brackets() -> None:
    result = _run("bench", VALUE_SIZED, "--device", "cpu", "--steps", "1", "--warmup", "1",
                  "--batch-size", "2")
    assert "`x[x > 0]`" in result.stdout
