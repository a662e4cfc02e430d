"""One-line errors for models that fail to build or to trace, and the notes of odd models.

Every failure here must reach the user as one line on stderr with a non-zero exit code and no
traceback (``cli.py`` turns :class:`~archscope.errors.ArchscopeError` into that), and the library
must raise the matching ``ArchscopeError`` subclass with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from fixtures.broken import (
    BooleanMask,
    NormalisedInput,
    OneUnusedParameter,
    UnusedLayer,
    ValueBranch,
    ValueFirst,
    ValueInLayer,
    WrongChannelsInside,
)
from torch import nn

from archscope.cli import main
from archscope.engine import inspect
from archscope.errors import (
    ForwardError,
    InputTooSmallError,
    ModelBuildError,
    ModelSourceError,
    first_line,
)
from archscope.source import load_model, load_report

FIXTURES = Path(__file__).parent / "fixtures"
BROKEN = FIXTURES / "broken.py"
META_VALUES = ("the forward reads tensor values (data-dependent control flow such as "
               "`if x.mean() > 0` or `.item()`), which cannot be computed on the meta device "
               "where archscope traces; trace it for real with --trace real (trace='real' in "
               "Python)")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def one_line_error(result: Result) -> str:
    """The single ``Error:`` line of a failed command (and no traceback anywhere)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    return errors[0].removeprefix("Error: ")


# -- 1. constructors that raise -------------------------------------------------------------------

#: where RaisesInInit raises, as the error names it: the file as typed, the line and its code.
RAISES_AT = f' ({BROKEN}, line 17: `raise RuntimeError("boom in init")`)'


def test_a_constructor_that_raises_is_one_line(runner: CliRunner) -> None:
    assert BROKEN.read_text().splitlines()[17 - 1].strip() == 'raise RuntimeError("boom in init")'
    result = runner.invoke(main, ["summary", f"{BROKEN}:RaisesInInit"])
    assert result.exit_code == 1
    assert one_line_error(result) == (f"building {BROKEN}:RaisesInInit failed: RuntimeError: "
                                      f"boom in init{RAISES_AT}")


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_load_model_raises_model_build_error(device: str) -> None:
    with pytest.raises(ModelBuildError) as info:
        load_model(f"{BROKEN}:RaisesInInit", device=device)
    assert str(info.value) == (f"building {BROKEN}:RaisesInInit failed: RuntimeError: "
                               f"boom in init{RAISES_AT}")
    assert isinstance(info.value, ModelSourceError)
    assert info.value.stage == "constructor" and info.value.reason == "boom in init"


@pytest.mark.parametrize("args", [
    ["diagram", "{src}", "-o", "{tmp}/m.dot"],
    ["export", "{src}", "-o", "{tmp}/m.onnx"],
    ["bench", "{src}", "--device", "cpu"],
])  # check reports it as a FAIL and goes on: test_check_fails_a_model_that_cannot_be_built…
def test_every_command_reports_a_raising_constructor_in_one_line(
        runner: CliRunner, tmp_path: Path, args: list[str]) -> None:
    src = f"{BROKEN}:RaisesInInit"
    result = runner.invoke(main, [a.format(src=src, tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert one_line_error(result) == f"building {src} failed: RuntimeError: boom in init{RAISES_AT}"
    assert not list(tmp_path.iterdir())  # nothing written


def test_check_fails_a_model_that_cannot_be_built_and_goes_on(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", f"{BROKEN}:RaisesInInit", "lecture_mnist_cnn",
                                  "--device", "cpu", "--repeats", "1"])
    assert result.exit_code == 1
    assert f"FAIL {BROKEN}:RaisesInInit: building" in result.stdout
    assert "PASS lecture_mnist_cnn" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_a_constructor_that_needs_real_tensors_is_built_on_the_cpu(runner: CliRunner) -> None:
    loaded = load_model(f"{BROKEN}:ItemInInit")
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    note = ("built on the CPU: its constructor needs real tensors "
            "(Tensor.item() cannot be called on meta tensors)")
    assert loaded.notes == (note,)
    report = load_report(f"{BROKEN}:ItemInInit")
    assert report.total_params == (3 * 3 * 3 + 1) * 6 + (6 + 1) * 4
    assert report.output_shapes == ((1, 4),)
    assert report.notes[0] == note
    result = runner.invoke(main, ["summary", f"{BROKEN}:ItemInInit", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notes"][0] == note
    # the real-device commands build it on their device without a note
    assert load_model(f"{BROKEN}:ItemInInit", device="cpu").notes == ()


def test_a_cpu_build_is_seeded_and_leaves_the_random_state_alone() -> None:
    state = torch.random.get_rng_state()
    a = load_model(f"{BROKEN}:ItemInInit").model
    b = load_model(f"{BROKEN}:ItemInInit", device="cpu").model
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_an_import_that_needs_real_tensors_is_built_on_the_cpu() -> None:
    report = load_report(f"{FIXTURES / 'meta_import.py'}:Net")
    assert report.total_params == (3 * 3 * 2 + 1) * 3
    assert report.notes == ("built on the CPU: importing it needs real tensors "
                            "(Tensor.item() cannot be called on meta tensors)",)


def test_a_plain_cpu_tensor_attribute_is_named_as_the_cause(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", f"{BROKEN}:ItemInInitPlainTensor"])
    assert result.exit_code == 1
    assert one_line_error(result) == (
        "the model's forward failed after conv (Conv2d): a tensor on cpu meets the meta tensors "
        "archscope traces with: a tensor attribute that is not a registered buffer (use "
        "self.register_buffer) or one made in forward without device=x.device")


def test_num_classes_a_factory_does_not_take_is_named(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", f"{BROKEN}:no_num_classes", "--input", "3x8x8",
                                  "--num-classes", "5"])
    assert result.exit_code == 1
    message = one_line_error(result)
    assert message.startswith(f"building {BROKEN}:no_num_classes failed: TypeError: ")
    assert "unexpected keyword argument 'num_classes'" in message
    assert message.endswith("; --num-classes calls it with num_classes=5")


def test_an_import_that_raises_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "bad_import.py"
    source.write_text("raise ValueError('broken module')\n")
    result = runner.invoke(main, ["summary", f"{source}:Net"])
    assert result.exit_code == 1
    assert one_line_error(result) == (f"importing {source} failed: ValueError: broken module "
                                      f"({source}, line 1: `raise ValueError('broken module')`)")


# -- 2. --input in the wrong layout ---------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["lecture_mnist_cnn", "--input", "28x28x1"],
     "features.conv1 (Conv2d) expects 1 input channel but the input has 28; --input is C×H×W "
     "(did you mean 1x28x28?)"),
    (["lecture_mnist_cnn", "--input", "3x28x28"],
     "features.conv1 (Conv2d) expects 1 input channel but the input has 3; --input is C×H×W and "
     "this model needs C = 1"),
    (["lecture_mnist_cnn", "--input", "28x28"],
     "features.conv1 (Conv2d) needs a C×H×W input with 1 channel but the input is 28×28 "
     "(2 dimensions); --input is C×H×W"),
    (["resnet18", "--input", "224x224x3"],
     "conv1 (Conv2d) expects 3 input channels but the input has 224; --input is C×H×W "
     "(did you mean 3x224x224?)"),
    (["resnet18", "--input", "3x224"],
     "conv1 (Conv2d) needs a C×H×W input with 3 channels but the input is 3×224 (2 dimensions); "
     "--input is C×H×W"),
    (["resnet18", "--input", "3x224x224x1"],
     "conv1 (Conv2d) needs a C×H×W input with 3 channels but the input is 3×224×224×1 "
     "(4 dimensions); --input is C×H×W"),
])
def test_an_input_in_the_wrong_layout_says_so(runner: CliRunner, args: list[str],
                                              message: str) -> None:
    result = runner.invoke(main, ["summary", *args])
    assert result.exit_code == 1
    assert one_line_error(result) == message


def test_the_layout_hint_holds_for_any_conv() -> None:
    conv1d = nn.Sequential(nn.Conv1d(4, 8, 3))
    with pytest.raises(ForwardError, match=r"^0 \(Conv1d\) expects 4 input channels but the input "
                       r"has 16; --input is C×L \(did you mean 4x16\?\)$"):
        inspect(conv1d, (16, 4))
    conv3d = nn.Sequential(nn.Conv3d(2, 4, 3))
    with pytest.raises(ForwardError, match=r"\(did you mean 2x8x8x8\?\)$"):
        inspect(conv3d, (8, 8, 8, 2))
    # behind a shape-keeping op the first conv still sees the input as given
    with pytest.raises(ForwardError, match=r"^conv \(Conv2d\) expects 3 input channels but the "
                       r"input has 32; --input is C×H×W \(did you mean 3x32x32\?\)$"):
        inspect(NormalisedInput(), (32, 32, 3))
    # batch 4 does not change the message
    with pytest.raises(ForwardError, match=r"\(did you mean 3x32x32\?\)$"):
        inspect(NormalisedInput(), (32, 32, 3), batch=4)


def test_a_channel_mismatch_inside_the_model_blames_the_model() -> None:
    with pytest.raises(ForwardError) as info:
        inspect(WrongChannelsInside(), (3, 12, 12))
    assert str(info.value) == (
        "block.0 (Conv2d) expects 32 input channels but the input has 16 (input [1, 16, 10, 10]); "
        "its in_channels do not match the channels the layer before it produces")


def test_right_inputs_still_trace() -> None:
    assert inspect(NormalisedInput(), (3, 32, 32)).output_shapes == ((1, 8, 30, 30),)
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ConvTranspose2d(8, 2, 3, groups=2))
    assert inspect(grouped, (4, 6, 6), batch=2).output_shapes == ((2, 2, 6, 6),)
    # a conv used per sample (unbatched) inside forward is left alone
    per_sample = _PerSample()
    assert inspect(per_sample, (2, 5, 5), batch=3).output_shapes == ((3, 4, 3, 3),)


class _PerSample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 2, 1)
        self.conv = nn.Conv2d(2, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return torch.stack([self.conv(sample) for sample in x])


# -- 3. the smallest-input hint for BatchNorm models ----------------------------------------------

def test_batchnorm_models_get_the_smallest_input_hint(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", "vgg16_bn", "--input", "3x16x16"])
    assert result.exit_code == 1
    assert one_line_error(result) == ("features.43 (MaxPool2d): input is 1×1, smaller than its 2×2 "
                                      "kernel; use an input of at least 3×32×32")
    with pytest.raises(InputTooSmallError, match=r"use an input of at least 3×32×32$"):
        load_report("vgg16_bn", input_shape=(3, 16, 16))


# -- 4. forward passes that read tensor values ----------------------------------------------------

def test_a_value_branch_names_the_last_layer_reached(runner: CliRunner) -> None:
    result = runner.invoke(main, ["summary", f"{BROKEN}:ValueBranch"])
    assert result.exit_code == 1
    assert one_line_error(result) == (
        f"the model's forward failed after features.conv1 (Conv2d): {META_VALUES}")
    with pytest.raises(ForwardError, match=r"after features\.conv1 \(Conv2d\): the forward reads"):
        inspect(ValueBranch(), ValueBranch.input_shape)


@pytest.mark.parametrize(("model", "message"), [
    (ValueInLayer, f"forward failed in gate (Gate) with input [1, 8, 14, 14]: {META_VALUES}"),
    (ValueFirst, f"the model's forward failed before reaching a layer: {META_VALUES}"),
    (BooleanMask, "the model's forward failed after conv (Conv2d): the forward makes a tensor "
                  "whose size depends on tensor values (`x[x > 0]`, `nonzero`), which cannot be "
                  "computed on the meta device where archscope traces; trace it for real with "
                  "--trace real (trace='real' in Python)"),
])
def test_value_reads_are_explained(model: type[nn.Module], message: str) -> None:
    with pytest.raises(ForwardError) as info:
        inspect(model(), model.input_shape)  # type: ignore[attr-defined]
    assert str(info.value) == message


# -- 5. notes about parameters no call owns --------------------------------------------------------

def test_notes_on_uncalled_parameters_read_well(runner: CliRunner) -> None:
    report = inspect(UnusedLayer(), UnusedLayer.input_shape)
    assert report.notes == (
        "(UnusedLayer) holds 1 parameter of its own, outside any layer; it is counted in the total",
        "unused (Linear, 30 parameters) is never called in forward; its parameters are counted in "
        "the total",
    )
    assert report.total_params == (4 + 1) * 2 + 30 + 1
    one = inspect(OneUnusedParameter(), OneUnusedParameter.input_shape)
    assert one.notes == (
        "(OneUnusedParameter) holds 2 parameters of its own, outside any layer; they are counted "
        "in the total",
        "unused (Linear, 1 parameter) is never called in forward; its parameter is counted in the "
        "total",
    )
    result = runner.invoke(main, ["summary", f"{BROKEN}:UnusedLayer", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notes"] == list(report.notes)


def test_a_layer_that_overrides_forward_is_not_prechecked() -> None:
    # CoordConv appends two channels inside its own forward: its in_channels (10) describe what
    # its convolution sees, not the 8 channels it receives. The model runs, so it must trace.
    from fixtures.custom_forward import Net
    from torch.utils.flop_counter import FlopCounterMode

    model = Net()
    report = inspect(model, (3, 30, 30))
    with FlopCounterMode(display=False) as counter:
        real = model(torch.randn(1, 3, 30, 30))
    coord = next(r for r in report.layers if r.name == "coord")
    assert coord.output_shape == tuple(real.shape) == (1, 16, 28, 28)
    assert coord.params == (3 * 3 * 10 + 1) * 16
    assert report.total_macs * 2 == counter.get_total_flops()
    # the stock conv before it is still checked
    with pytest.raises(ForwardError, match=r"stem \(Conv2d\) expects 3 input channels but the "
                                           r"input has 30; --input is C×H×W \(did you mean "):
        inspect(Net(), (30, 30, 3))


def test_a_module_whose_dependency_is_missing_fails_to_build(runner: CliRunner) -> None:
    # the module is found, its own import fails: a build failure of that model (check goes on),
    # not "cannot import module", which is kept for a module that does not exist
    with pytest.raises(ModelBuildError, match=r"^importing fixtures\.needs_dep\.net failed: "
                                              r"ModuleNotFoundError: No module named "
                                              r"'archscope_test_dependency_that_is_not_installed' "
                                              r"\(\S*needs_dep/net\.py, line 5: `import archscope_"
                                              r"test_dependency_that_is_not_installed  # noqa: "
                                              r"F401`\)$"):
        load_model("fixtures.needs_dep.net:Net")
    with pytest.raises(ModelSourceError, match=r"^cannot import module 'fixtures\.no_such'"):
        load_model("fixtures.no_such:Net")
    result = runner.invoke(main, ["check", "fixtures.needs_dep.net:Net", "lecture_mlp",
                                  "--device", "cpu", "--repeats", "1"])
    assert result.exit_code == 1
    assert "PASS lecture_mlp" in result.stdout and "1 passed, 1 failed" in result.stdout


@pytest.mark.parametrize("args", [
    ["export", "lecture_mnist_cnn", "--input", "28x28x1", "-o", "{tmp}/m.onnx"],
    ["bench", "lecture_mnist_cnn", "--input", "28x28x1", "--device", "cpu", "--steps", "1"],
])
def test_export_and_bench_name_a_wrong_layout_too(
        runner: CliRunner, tmp_path: Path, args: list[str]) -> None:
    # they run the model for real; when that fails, the meta trace's diagnosis is reported
    result = runner.invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0
    assert one_line_error(result) == (
        "lecture_mnist_cnn: features.conv1 (Conv2d) expects 1 input channel but the input has 28; "
        "--input is C×H×W (did you mean 1x28x28?)")
    assert not list(tmp_path.iterdir())


def test_bench_keeps_pytorchs_error_when_the_trace_fails_for_a_meta_only_reason(
        runner: CliRunner, tmp_path: Path) -> None:
    # the trace cannot read values on meta; the real forward fails for another reason (BatchNorm
    # in training mode at batch 1): that reason is the one to report
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "class MaskNet(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 4)\n"
        "        self.bn = nn.BatchNorm1d(4)\n"
        "    def forward(self, x):\n"
        "        x = self.fc(x)\n"
        "        if x.sum() > 1e9:\n"
        "            x = x * 2\n"
        "        return self.bn(x)\n"
    )
    result = runner.invoke(main, ["bench", f"{tmp_path}/net.py:MaskNet", "--input", "4",
                                  "--device", "cpu", "--batch-size", "1", "--steps", "1"])
    assert result.exit_code != 0
    message = one_line_error(result)
    assert "Expected more than 1 value per channel when training" in message
    assert "meta device" not in message


def test_a_conv_that_pads_in_its_conv_forward_is_not_prechecked() -> None:
    # TF-style "same" padding done in _conv_forward: the stock window check would call a 4×4
    # input too small for the 5×5 kernel, while the layer really gives 2×2
    class SamePad(nn.Conv2d):
        def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
            x = nn.functional.pad(x, (2, 2, 2, 2))
            return super()._conv_forward(x, weight, bias)

    model = nn.Sequential(SamePad(3, 8, 5, stride=2))
    real = model(torch.randn(1, 3, 4, 4))
    report = inspect(model, (3, 4, 4))
    assert report.output_shapes == (tuple(real.shape),) == ((1, 8, 2, 2),)
    assert report.layers[-1].output_formula == ""  # no arithmetic rather than the wrong one


@pytest.mark.parametrize(("args", "expected"), [
    (["summary", "vgg16", "--xyzzy"],  # (--bogus is close to --base: click would suggest it)
     "No such option '--xyzzy'. See 'archscope summary --help'."),
    (["summry", "vgg16"],
     "No such command 'summry'; did you mean 'summary'? See 'archscope --help'."),
    (["diagam", "vgg16"],
     "No such command 'diagam'; did you mean 'diagram'? See 'archscope --help'."),
    (["frobnicate"], "No such command 'frobnicate'. See 'archscope --help'."),
    (["summary"], "Missing argument 'MODEL'. See 'archscope summary --help'."),
    (["--bogus"], "No such option '--bogus'. See 'archscope --help'."),
    (["bench", "--precision", "fp8"],
     "Invalid value for '--precision': 'fp8' is not one of 'fp32', 'tf32', 'bf16', 'fp16'. "
     "See 'archscope bench --help'."),
])
def test_usage_errors_are_one_line(runner: CliRunner, args: list[str], expected: str) -> None:
    result = runner.invoke(main, args, prog_name="archscope")
    assert result.exit_code == 2
    assert one_line_error(result) == expected
    assert result.stderr.strip() == f"Error: {expected}"  # no Usage: block, no "Try" line


def test_a_bare_archscope_still_shows_its_help(runner: CliRunner) -> None:
    result = runner.invoke(main, [])
    assert "Commands:" in result.output and "summary" in result.output
    assert "Error:" not in result.output


def test_first_line_never_cuts_a_word() -> None:
    words = [f"word{i}" for i in range(100)]  # 100 words, no sentence end: cut at a space
    text = " ".join(words)
    cut = first_line(text, limit=50)
    assert cut == "word0 word1 word2 word3 word4 word5 word6 word7 …" and len(cut) <= 50
    assert first_line("short\nsecond line") == "short"
    assert first_line("\x1b[96mcoloured\x1b[0m") == "coloured"
    assert first_line(ValueError()) == "ValueError"


# -- exit codes: usage errors 2, everything else 1 (README.md, "Exit codes") ----------------------

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-conv ONNX file with its batch fixed at 1, written with onnx.helper (no exporter)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(torch.zeros(4, 1, 3, 3).numpy(), "conv.weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "conv.weight"], ["output"], name="conv")], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 6, 6])],
        [weight])
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


_USAGE = [  # bad option values, and options that do not apply to the MODEL given: exit 2
    ["summary", "vgg16", "--input", "3x22a"],
    ["summary", "vgg16", "--freeze", "nothing"],
    ["summary", "{onnx}", "--num-classes", "3"],
    ["summary", "{onnx}", "--batch", "8"],
    ["summary", "spec:28x28x1 conv8 k3", "--num-classes", "3"],
    ["summary", "vgg16", "--head", "dense2", "--num-classes", "3"],
    ["diagram", "vgg16", "-o", "{tmp}/m.jpeg"],
    ["diagram", "{onnx}", "--num-classes", "3", "-o", "{tmp}/m.dot"],
    ["calc", "28x28x1 conv32 k3 frobnicate"],
    ["check", "lecture_mlp", "--device", "gpu"],
    ["check", "lecture_mlp", "--device", "cpu", "--weights", "{tmp}/missing.pt"],
    ["check", "lecture_mlp", "vgg16", "--weights", "{tmp}/w.pt"],
    ["check", "spec:28x28x1 conv8 k3", "--device", "cpu", "--num-classes", "3"],
    ["bench", "lecture_mlp", "--device", "gpu"],
    ["bench", "lecture_mlp", "--precision", "x"],
    ["bench", "lecture_mlp", "--device", "cpu", "--batch-size", "auto"],
    ["bench", "lecture_mlp", "--device", "cpu", "--steps", "1", "--warmup", "0"],
    ["export", "lecture_mlp", "-o", "{tmp}/m.onnx", "--opset", "13"],
    ["export", "lecture_mlp", "-o", "{tmp}/m.onnx", "--opset", "99"],
    ["export", "lecture_mlp", "-o", "{tmp}/m.onnx", "--input", "1x28x"],
    ["export", "lecture_mlp", "-o", "{tmp}/m.onnx", "--device", "gpu"],
]
_OTHER = [  # the model, the machine or the run: exit 1
    ["summary", "vgg61"],
    ["summary", "vgg16", "--input", "3x16x16"],
    ["summary", "lecture_mlp", "--input", "1x28"],  # well-formed, but not this model's size
    ["summary", f"{BROKEN}:RaisesInInit"],
    ["check", "lecture_mlp", "--device", "cuda"],
    ["bench", "lecture_mlp", "--device", "cuda"],
    ["export", "{onnx}", "-o", "{tmp}/m.onnx"],
    ["export", "vgg61", "-o", "{tmp}/m.onnx"],
    ["diagram", "vgg61", "-o", "{tmp}/m.dot"],
]


@pytest.mark.parametrize(("args", "code"), [(a, 2) for a in _USAGE] + [(a, 1) for a in _OTHER],
                         ids=[" ".join(a) for a in _USAGE + _OTHER])
def test_exit_codes_usage_2_everything_else_1(runner: CliRunner, tmp_path: Path, tiny_onnx: Path,
                                              args: list[str], code: int) -> None:
    if torch.cuda.is_available() and "cuda" in args:
        pytest.skip("CUDA is available here")
    result = runner.invoke(main, [a.format(tmp=tmp_path, onnx=tiny_onnx) for a in args])
    assert result.exit_code == code, result.output
    assert any(line.startswith("Error: ") for line in result.stderr.splitlines())
    assert "Traceback" not in result.stderr
