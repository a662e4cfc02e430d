"""``--base NAME`` and ``--head SPEC``: a model's convolutional base with new layers after it,
through every command (summary, diagram, bench, check, export), against hand arithmetic, real
forward passes and FlopCounterMode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archscope.bench import BenchConfig, run_bench
from archscope.bench.plan import make_plan
from archscope.bench.trainer import Trainer
from archscope.cli import main
from archscope.errors import ModelOptionError, SpecShapeError, SpecSyntaxError
from archscope.freeze import freeze_parameters
from archscope.source import load_report, resolve

LECTURE_HEAD = "flatten dense256 relu dense1"

# VGG16's convolutional base (config D), 3×3 convs with bias: Σ (3·3·c_in + 1)·c_out. Keras'
# VGG16(include_top=False).summary() in lecture 000 reads 14,714,688.
_VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
VGG16_BASE = sum((3 * 3 * c_in + 1) * c_out for c_in, c_out in _VGG16_CONVS)


def _json(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_lecture_000_vgg16_base_with_a_new_frozen_classifier() -> None:
    # 150 → five 2×2 pools: 150, 75, 37, 18, 9 → 4; the base ends 512×4×4 = 8192 features.
    # 14,714,688 conv base + (4·4·512+1)·256 + (256+1)·1 = 16,812,353; trainable: the head.
    assert VGG16_BASE == 14_714_688
    head = (4 * 4 * 512 + 1) * 256 + (256 + 1) * 1
    assert head == 2_097_665
    assert VGG16_BASE + head == 16_812_353
    data = _json(CliRunner().invoke(main, [
        "summary", "vgg16", "--input", "3x150x150", "--head", LECTURE_HEAD,
        "--freeze", "features", "--format", "json"]))
    assert (data["total_params"], data["trainable_params"]) == (16_812_353, 2_097_665)
    assert data["non_trainable_params"] == VGG16_BASE
    names = [layer["name"] for layer in data["layers"]]
    assert names[:2] == ["features", "features.0"]  # the base keeps its module names
    assert names[-5:] == ["head", "head.flatten1", "head.fc1", "head.relu1", "head.fc2"]
    assert "avgpool" not in names and "classifier" not in names
    fc1 = next(layer for layer in data["layers"] if layer["name"] == "head.fc1")
    assert fc1["param_formula"] == "(8192+1)·256"
    assert data["model"] == f"vgg16 up to features + head '{LECTURE_HEAD}'"
    assert data["output_shapes"] == [[1, 1]]


def test_base_alone_is_the_convolutional_base() -> None:
    report = load_report("vgg16", input_shape=(3, 150, 150), base="features")
    assert report.total_params == VGG16_BASE
    assert report.output_shapes == ((1, 512, 4, 4),)


def test_resnet_base_ends_before_avgpool() -> None:
    # resnet18 is 11,689,512 with fc (512+1)·1000 = 513,000; the head 'gap dense10' puts a
    # global average pool (no parameters) and (512+1)·10 = 5,130 after layer4.
    report = load_report("resnet18", head="gap dense10", input_shape=(3, 64, 64))
    assert report.total_params == 11_689_512 - (512 + 1) * 1000 + (512 + 1) * 10
    tops = [r.name for r in report.layers if r.depth == 1]
    assert tops == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                    "head"]
    assert report.output_shapes == ((1, 10),)


def test_the_headed_model_runs_for_real_as_traced() -> None:
    # lecture_catsdogs_cnn's base ends 128×7×7 at 150×150; the head is built on that shape.
    subject = resolve("lecture_catsdogs_cnn", device="cpu", head="conv32 k3 relu gap dense3")
    model = subject.model
    assert [n for n, _ in model.named_children()] == ["features", "head"]
    conv = model.get_submodule("head.conv1")
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 128
    with torch.no_grad():
        out = model(torch.randn(2, 3, 150, 150))
    assert tuple(out.shape) == (2, 3)
    real = sum(p.numel() for p in model.parameters())
    base = 896 + 18_496 + 73_856 + 147_584  # the lecture's four convs
    assert real == base + (3 * 3 * 128 + 1) * 32 + (32 + 1) * 3
    assert subject.reference is None  # the published 3,453,121 is the whole model's


def test_weights_load_into_the_model_before_its_top_is_replaced(tmp_path: Path) -> None:
    # a pretrained base, as in transfer learning: the original model's state_dict
    pretrained = resolve("lecture_catsdogs_cnn", device="cpu", seed=7).model
    path = tmp_path / "catsdogs.pt"
    torch.save(pretrained.state_dict(), path)
    subject = resolve("lecture_catsdogs_cnn", device="cpu", weights=str(path), head="gap dense2")
    assert torch.equal(subject.model.get_submodule("features.conv1").weight,
                       pretrained.features.conv1.weight)
    assert subject.weights == str(path)


def test_a_model_outside_the_zoo_names_its_base(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    input_shape = (3, 16, 16)\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.stem = nn.Conv2d(3, 8, 3)\n"
        "        self.body = nn.Conv2d(8, 8, 3)\n"
        "        self.fc = nn.Linear(8 * 12 * 12, 4)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.body(self.stem(x)).flatten(1))\n"
    )
    source = f"{tmp_path}/net.py:Net"
    with pytest.raises(ModelOptionError, match=r"--head needs --base NAME for .*net\.py:Net: .*"
                                               r"top-level modules are: stem, body, fc$"):
        resolve(source, head="gap dense2")
    with pytest.raises(ModelOptionError, match=r"^--base 'trunk' is not a top-level module of "
                                               r".*; its top-level modules are: stem, body, fc$"):
        resolve(source, head="gap dense2", base="trunk")
    report = load_report(source, head="gap dense2", base="stem")
    # stem (3·3·3+1)·8 = 224, then gap and (8+1)·2 = 18; body and fc are gone
    assert report.total_params == 224 + 18
    result = CliRunner().invoke(main, ["summary", source, "--head", "gap dense2"])
    assert result.exit_code == 2
    assert "top-level modules are: stem, body, fc" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["summary", "spec:28x28x1 conv8 k3", "--head", "dense2"],
     "--head does not apply to a layer spec"),
    (["summary", "vgg16", "--head", "dense2", "--num-classes", "5"],
     "--num-classes does not apply with --head"),
    (["summary", "lecture_mlp", "--head", "dense2"], "--head needs --base NAME for lecture_mlp"),
    (["summary", "vgg16", "--base", "avgpol"], "--base 'avgpol' is not a top-level module"),
    (["summary", "vgg16", "--head", "4x4x512 dense2"], "leave out the input size 4×4×512"),
    (["summary", "vgg16", "--head", "dense2 frobnicate"], "--head: line 1, col 8"),
])
def test_head_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_head_layer_that_cannot_apply_names_the_base_output() -> None:
    with pytest.raises(SpecShapeError, match=r"^--head on the base's 512×4×4 output: layer 1 "):
        load_report("vgg16", input_shape=(3, 150, 150), head="conv8 k7")
    with pytest.raises(SpecSyntaxError):
        load_report("vgg16", head="dense")
    result = CliRunner().invoke(main, ["summary", "vgg16", "--input", "3x150x150",
                                       "--head", "conv8 k7"])
    assert result.exit_code == 1 and "--head on the base's 512×4×4 output" in result.stderr


def test_head_on_an_onnx_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelOptionError, match="--base does not apply to an ONNX file"):
        load_report(str(path), base="features")


#: lecture_mnist_cnn's base: 320 + 18,496 + 36,928 (lecture 003), ending 64×3×3 = 576 features.
MNIST_BASE = (3 * 3 * 1 + 1) * 32 + (3 * 3 * 32 + 1) * 64 + (3 * 3 * 64 + 1) * 64


def test_check_runs_the_headed_model() -> None:
    assert MNIST_BASE == 55_744
    check = _json(CliRunner().invoke(main, ["check", "lecture_mnist_cnn", "--head", "dense5",
                                            "--device", "cpu", "--repeats", "1", "--format",
                                            "json"]))
    (model,) = check["models"]
    assert model["passed"] and model["params"] == MNIST_BASE + (576 + 1) * 5
    assert model["reference_params"] is None


def test_check_refuses_head_for_a_zoo_model_without_a_base_before_running() -> None:
    # every zoo model by default: lecture_mlp has no convolutional base, said before any runs
    result = CliRunner().invoke(main, ["check", "--head", "gap dense2", "--device", "cpu"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "--head needs --base NAME for lecture_mlp" in result.stderr
    assert "checking" not in result.stderr


def test_export_writes_the_headed_model(tmp_path: Path) -> None:
    out = tmp_path / "headed.onnx"
    exported = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "--head", "dense5",
                                         "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    report = load_report(str(out))
    assert report.total_params == MNIST_BASE + (576 + 1) * 5
    assert report.output_shapes == ((1, 5),)


def test_diagram_draws_the_head_and_the_frozen_base() -> None:
    result = CliRunner().invoke(main, ["diagram", "lecture_catsdogs_cnn", "--head", "gap dense3",
                                       "--freeze", "features", "-o", "-"])
    assert result.exit_code == 0, result.output
    dot = result.stdout
    assert "head.fc1" in dot and "features.conv1" in dot
    conv1 = next(line for line in dot.splitlines() if "features.conv1" in line)
    assert 'fillcolor="#d9d9d9"' in conv1 and "frozen" in conv1
    fc1 = next(line for line in dot.splitlines() if "head.fc1" in line)
    assert 'fillcolor="#d9d9d9"' not in fc1 and "frozen" not in fc1
    assert ">frozen</td>" in dot  # the legend says what grey means


def test_bench_trains_only_what_is_trainable() -> None:
    head = "flatten dense5"
    subject = resolve("lecture_mnist_cnn", device="cpu", head=head)
    freeze_parameters(subject.model, "features")
    plan = make_plan(BenchConfig(device="cpu", steps=1, warmup=1))
    trainer = Trainer(subject.model, input_shape=(1, 28, 28), batch=2, device=plan.device,
                      precision="fp32", channels_last=False, compile=False, optimizer="sgd",
                      lr=0.001, seed=0)
    optimized = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"])
    assert optimized == (576 + 1) * 5  # the head's dense only
    # the FLOPs follow: a frozen base computes no weight gradients (oracle: FlopCounterMode)
    config = BenchConfig(device="cpu", batch_size=2, steps=1, warmup=1, head=head,
                         freeze=("features",))
    (result,) = run_bench(["lecture_mnist_cnn"], config).results
    model = resolve("lecture_mnist_cnn", device="cpu", head=head).model
    freeze_parameters(model, "features")
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 1, 28, 28)).sum().backward()
    assert result.training_flops == counter.get_total_flops()
    unfrozen = BenchConfig(device="cpu", batch_size=2, steps=1, warmup=1, head=head)
    (full,) = run_bench(["lecture_mnist_cnn"], unfrozen).results
    assert full.training_flops is not None and result.training_flops is not None
    assert result.training_flops < full.training_flops
    assert result.memory_estimate is not None
    # at the peak (in the second step: every momentum buffer made), the optimizer state is the
    # head's SGD momentum alone, in fp32: the frozen base has none
    assert "first step" not in result.memory_estimate.where
    assert dict(result.memory_estimate.breakdown)["optimizer_state"] == 4 * (576 + 1) * 5
    assert f"--freeze features: {MNIST_BASE:,} parameters frozen; the optimizer trains the " \
           f"other {(576 + 1) * 5:,}" in result.notes
