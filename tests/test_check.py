"""``archscope check``: real runs against the meta trace, on the CPU here and on CUDA (``gpu``).

Oracles: the published parameter counts (written out below), PyTorch's real forward/backward
(shapes from forward hooks), and deliberately broken models and weight files that must FAIL.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from archscope.check import CheckResult, check_model
from archscope.cli import main
from archscope.errors import DeviceError, ModelSourceError
from archscope.registry import get_entry, model_names

PUBLISHED = {
    "lecture_mnist_cnn": 93_322,
    "lecture_catsdogs_cnn": 3_453_121,
    "lecture_mlp": 45_360,
    "lecture_multitask": 266_055,
    "resnet18": 11_689_512,
}
FAST = list(PUBLISHED)


def _assert_passed(result: CheckResult) -> None:
    assert result.passed, result.failures
    assert result.layers_compared > 0 and result.shape_mismatches == ()
    assert result.params == result.engine_params == result.reference_params
    assert result.outputs_finite and result.grads_finite


@pytest.mark.parametrize("name", FAST)
def test_cpu_check_passes(name: str) -> None:
    batch = 2
    result = check_model(name, device="cpu", batch=batch, repeats=1)
    _assert_passed(result)
    assert result.params == PUBLISHED[name]
    assert result.device == "cpu" and result.batch == batch
    assert result.input_shape == get_entry(name).input_shape
    assert result.memory_peak_bytes is None and result.memory_error_pct is None
    assert result.memory_estimate_bytes is not None and result.memory_estimate_bytes > 0
    assert len(result.latency_ms) == 1 and result.latency_median_ms is not None


def test_every_layer_is_compared() -> None:
    # resnet18: 1 conv1 + bn1 + relu (called 1 + 2 per block × 8 blocks = 17 times) + maxpool
    # + 4 layers + 8 blocks × (conv1 bn1 conv2 bn2) + 3 downsample (Sequential + conv + bn)
    # + avgpool + fc = 1 + 1 + 17 + 1 + 4 + 8 + 32 + 9 + 1 + 1 = 75 module calls
    result = check_model("resnet18", device="cpu", input_shape=(3, 64, 64), repeats=1)
    _assert_passed(result)
    assert result.layers_compared == 75


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in model_names() if n not in PUBLISHED])
def test_cpu_check_heavy_models(name: str) -> None:
    _assert_passed(check_model(name, device="cpu", repeats=1))


_BROKEN = """
import torch
from torch import nn


class ShapeLiar(nn.Module):
    '''Behaves differently on the meta device, so the trace predicts the wrong shape.'''

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = Head()

    def forward(self, x):
        return self.head(self.conv(x))


class Head(nn.Module):
    def forward(self, x):
        if x.device.type == "meta":
            return x[:, :2]
        return x


class NaNMaker(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) / 0.0 * 0.0   # inf · 0 = NaN
"""


_FINE = """
import torch
from torch import nn


class Attention(nn.Module):
    '''nn.MultiheadAttention uses out_proj's parameters without calling out_proj.'''

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x)[0]


class Spare(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.spare = nn.Linear(8, 4)   # never called

    def forward(self, x):
        return self.fc(x)
"""


@pytest.mark.parametrize(("model", "shape", "params"), [
    # out_proj runs inside mha's forward, as no module call: in_proj 3·16·16+3·16 = 816,
    # out_proj 16·16+16 = 272
    ("Attention", (5, 16), 816 + 272),
    ("Spare", (8,), 2 * (8 * 4 + 4)),
])
def test_parameters_no_call_owns_are_not_a_shape_mismatch(
    tmp_path: Path, model: str, shape: tuple[int, ...], params: int
) -> None:
    path = tmp_path / "fine.py"
    path.write_text(textwrap.dedent(_FINE), encoding="utf-8")
    result = check_model(f"{path}:{model}", device="cpu", input_shape=shape, batch=2, repeats=1)
    assert result.passed, result.failures
    assert result.params == result.engine_params == params
    assert result.shape_mismatches == ()
    assert result.layers_compared == 1  # mha / fc: the one module call of each forward


_FACTORIES = """
from torch import nn


def eval_net():   # a factory that hands back its model in eval mode
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 10)).eval()


def bare():       # a model that is one layer
    return nn.Conv2d(3, 4, 3)
"""


_PARAMETER_FREE = """
from torch import nn


class InPlaceFirst(nn.Module):   # no parameters; its first op overwrites its input
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.act(x))


class BareBN(nn.BatchNorm1d):     # one layer, PyTorch's forward, BatchNorm at batch 1
    def __init__(self):
        super().__init__(16)
"""


def test_parameter_free_in_place_and_bare_batchnorm_models_pass(tmp_path: Path) -> None:
    path = tmp_path / "free.py"
    path.write_text(_PARAMETER_FREE, encoding="utf-8")
    inplace = check_model(f"{path}:InPlaceFirst", device="cpu", input_shape=(3, 8, 8), repeats=1)
    assert inplace.passed, inplace.failures
    assert inplace.grads_finite and inplace.params == 0
    bare = check_model(f"{path}:BareBN", device="cpu", input_shape=(16,), repeats=1)
    assert bare.passed, bare.failures
    assert bare.batch == 2 and bare.params == 2 * 16 and bare.layers_compared == 1
    assert any(n.startswith("batch 2: at batch 1 BareBN (BareBN)") for n in bare.notes)


def test_a_model_that_is_one_layer_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "factories.py"
    path.write_text(_FACTORIES, encoding="utf-8")
    result = check_model(f"{path}:bare", device="cpu", input_shape=(3, 8, 8), repeats=1)
    assert result.passed, result.failures
    assert result.layers_compared == 1 and result.params == (3 * 3 * 3 + 1) * 4
    out = CliRunner().invoke(main, ["check", f"{path}:bare", "--input", "3x8x8", "--device",
                                    "cpu", "--repeats", "1"]).stdout
    assert "shapes   ok    1 module call matches the meta trace" in out


def test_an_eval_mode_factory_is_traced_in_the_training_mode_it_runs_in(tmp_path: Path) -> None:
    # check trains; its estimate must count what training saves (dropout's mask among it), as
    # the same model built in training mode does, whatever mode the factory returned. The
    # oracle: PyTorch's tracker around check's own step on the model in training mode.
    from torch.distributed._tools.mem_tracker import MemTracker

    from archscope.check import _step

    path = tmp_path / "factories.py"
    path.write_text(_FACTORIES, encoding="utf-8")
    result = check_model(f"{path}:eval_net", device="cpu", input_shape=(3, 8, 8), batch=2,
                         repeats=1)
    assert result.passed, result.failures
    namespace: dict[str, Any] = {}
    exec(_FACTORIES, namespace)
    model = namespace["eval_net"]().train()
    x = torch.randn(2, 3, 8, 8)
    tracker = MemTracker()
    tracker.track_external(model, x)
    with tracker:
        _step(model, x, torch.device("cpu"))
    assert result.memory_estimate_bytes == int(
        tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])


def _write_broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.py"
    path.write_text(textwrap.dedent(_BROKEN), encoding="utf-8")
    return path


def test_shape_mismatch_fails(tmp_path: Path) -> None:
    path = _write_broken(tmp_path)
    result = check_model(f"{path}:ShapeLiar", device="cpu", input_shape=(3, 8, 8), repeats=1)
    assert not result.passed
    assert any(m.startswith("head (Head): real [1, 4, 6, 6] vs trace [1, 2, 6, 6]")
               for m in result.shape_mismatches), result.shape_mismatches
    assert "layer output shape(s) differ from the trace" in " ".join(result.failures)


def test_cli_broken_model_prints_fail_and_exits_1(tmp_path: Path) -> None:
    path = _write_broken(tmp_path)
    result = CliRunner().invoke(
        main, ["check", f"{path}:NaNMaker", "--device", "cpu", "--input", "4", "--repeats", "1"]
    )
    assert result.exit_code == 1
    assert f"FAIL {path}:NaNMaker: non-finite outputs" in result.stdout
    assert "0 passed, 1 failed" in result.stdout
    assert "checking" in result.stderr


def _save_state(tmp_path: Path, state: dict[str, Any], name: str = "w.pt") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_good_weights_pass(tmp_path: Path) -> None:
    torch.manual_seed(1)
    state = get_entry("lecture_mnist_cnn").build().state_dict()
    path = _save_state(tmp_path, {"state_dict": state})  # a checkpoint wrapping the state_dict
    result = check_model("lecture_mnist_cnn", device="cpu", weights=str(path), repeats=1)
    _assert_passed(result)
    assert result.weights == str(path)


def test_nan_weights_fail_with_exit_1(tmp_path: Path) -> None:
    state = get_entry("lecture_mnist_cnn").build().state_dict()
    first_weight = next(k for k in state if k.endswith("weight"))
    state[first_weight].fill_(float("nan"))
    path = _save_state(tmp_path, state)
    result = CliRunner().invoke(main, ["check", "lecture_mnist_cnn", "--device", "cpu",
                                       "--weights", str(path), "--repeats", "1"])
    assert result.exit_code == 1
    assert "FAIL lecture_mnist_cnn" in result.stdout and "non-finite" in result.stdout


def test_weights_with_wrong_keys_are_one_line(tmp_path: Path) -> None:
    state = get_entry("lecture_mlp").build().state_dict()
    renamed = {("module." + k): v for k, v in state.items()}
    path = _save_state(tmp_path, renamed)
    with pytest.raises(ModelSourceError) as info:
        check_model("lecture_mlp", device="cpu", weights=str(path))
    message = str(info.value)
    assert "\n" not in message and "strict=True" in message
    assert f"{len(state)} missing key(s)" in message and "unexpected key(s) (module." in message
    result = CliRunner().invoke(main, ["check", "lecture_mlp", "--device", "cpu",
                                       "--weights", str(path)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "missing key(s)" in errors[0]
    assert "Traceback" not in result.stderr


def test_weights_with_wrong_shapes(tmp_path: Path) -> None:
    state = get_entry("lecture_mnist_cnn").build(num_classes=3).state_dict()
    path = _save_state(tmp_path, state)
    with pytest.raises(ModelSourceError, match="another shape"):
        check_model("lecture_mnist_cnn", device="cpu", weights=str(path))


def test_weights_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ModelSourceError, match=r"junk\.pt: torch\.load cannot read it \(\w+: .*\); "
                                               r"is it a file torch\.save wrote\?"):
        check_model("lecture_mlp", device="cpu", weights=str(path))
    with pytest.raises(ModelSourceError, match="not found"):
        check_model("lecture_mlp", device="cpu", weights=str(tmp_path / "missing.pt"))


def test_weights_need_exactly_one_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", "lecture_mlp", "lecture_mnist_cnn",
                                       "--weights", str(tmp_path / "w.pt")])
    assert result.exit_code == 2 and "exactly one MODEL" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the error shown without CUDA")
def test_cuda_without_cuda_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        check_model("lecture_mlp", device="cuda")
    result = CliRunner().invoke(main, ["check", "lecture_mlp", "--device", "cuda"])
    assert result.exit_code == 1 and "CUDA is not available" in result.stderr


def test_unknown_model_fails_before_running() -> None:
    result = CliRunner().invoke(main, ["check", "lecture_mlp", "resnet19", "--device", "cpu"])
    assert result.exit_code == 1
    assert "unknown model 'resnet19'" in result.stderr and "checking" not in result.stderr


def test_cli_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", "lecture_mlp", "--device", "cpu", "--format",
                                       "json", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["device"] == "cpu"
    (entry,) = data["models"]
    assert entry["model"] == "lecture_mlp" and entry["params"] == 45_360
    assert entry["reference_params"] == 45_360 and entry["memory_peak_bytes"] is None
    assert len(entry["latency_ms"]) == 2 and entry["failures"] == []


def test_cli_table() -> None:
    result = CliRunner().invoke(main, ["check", "lecture_mnist_cnn", "--device", "cpu",
                                       "--repeats", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "shapes   ok    14 module calls match the meta trace" in out
    assert "params   ok    real 93,322 | engine 93,322 | reference 93,322" in out
    assert "memory   n/a" in out and "PASS lecture_mnist_cnn" in out
    assert out.rstrip().endswith("1 passed, 0 failed")


def test_model_state_is_restored() -> None:
    from archscope.check import _time_forward

    model = get_entry("lecture_mlp").build()
    model.train()
    list(model.modules())[1].eval()  # a per-layer choice that model.train(flag) would overwrite
    before = [m.training for m in model.modules()]
    _time_forward(model, torch.randn(1, 1, 28, 28), torch.device("cpu"), 0, 1)
    assert [m.training for m in model.modules()] == before and before.count(False) == 1


# -- on the GPU ---------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", model_names())
def test_cuda_check_every_zoo_model(name: str) -> None:
    result = check_model(name, device="cuda", batch=8)
    _assert_passed(result)
    assert result.device.startswith("cuda")
    assert result.memory_peak_bytes is not None and result.memory_peak_bytes > 0
    assert result.memory_error_pct is not None
    # the estimate is archscope memory's replay of check's own step; cuDNN's per-call
    # workspaces, which the prediction leaves out, are inside the measured peak: 10% leaves them
    # room where the model dominates (for the small lecture models they weigh too much to bound)
    if result.memory_estimate_bytes is not None and result.memory_estimate_bytes > 64 * 2**20:
        assert abs(result.memory_error_pct) < 10
    assert len(result.latency_ms) == 10


@pytest.mark.gpu
def test_cuda_cli_exit_code() -> None:
    result = CliRunner().invoke(main, ["check", "resnet18", "lecture_mnist_cnn",
                                       "--device", "cuda"])
    assert result.exit_code == 0, result.output
    assert "measured peak" in result.stdout


def test_models_that_cannot_be_checked_fail_and_the_run_goes_on(tmp_path: Path) -> None:
    # no input size, an ONNX file, a missing file: each a FAIL with its reason; the rest is checked
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        from torch import nn
        class NoInput(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(x)
    """))
    (tmp_path / "m.onnx").write_bytes(b"")
    sources = [f"{tmp_path}/net.py:NoInput", "lecture_mlp", f"{tmp_path}/m.onnx",
               f"{tmp_path}/missing.py:Net"]
    result = CliRunner().invoke(main, ["check", *sources, "--device", "cpu", "--repeats", "1"])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert lines == [
        f"FAIL {sources[0]}: {sources[0]} has no default input size; pass one with --input "
        "(e.g. 3x224x224)",
        "PASS lecture_mlp",
        f"FAIL {sources[2]}: check runs PyTorch models; an ONNX file is checked "
        "when it is exported (archscope export compares it with onnxruntime)",
        f"FAIL {sources[3]}: no such file: {tmp_path}/missing.py",
    ]
    assert result.stdout.rstrip().endswith(f"1 passed, 3 failed: {', '.join(sources[i] for i in (0, 2, 3))}")
    # each reason is told once: the ONNX file's once in all, in its FAIL line
    assert result.stdout.count("check runs PyTorch models") == 1


def test_a_spec_that_does_not_build_is_a_fail_and_the_run_goes_on() -> None:
    spec = "spec:28x28x1 conv32 k30"  # a 30×30 kernel on a 28×28 input
    result = CliRunner().invoke(main, ["check", spec, "lecture_mlp", "--device", "cpu",
                                       "--repeats", "1"])
    assert result.exit_code == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith(f"FAIL {spec}: ")
    assert "PASS lecture_mlp" in result.stdout


def test_a_float64_model_is_checked_in_float64(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "def double_net():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),\n"
        "                         nn.Linear(4 * 30 * 30, 2)).double()\n"
    )
    result = check_model(f"{tmp_path}/net.py:double_net", device="cpu", input_shape=(3, 32, 32),
                         repeats=1)
    assert result.passed, result.failures
    # (3·3·3+1)·4 + (3600+1)·2 = 112 + 7,202
    assert result.params == result.engine_params == 7_314


# --------------------------------------------------------------------------------------------
# The batch check picks for BatchNorm, models without parameters, failure reasons, JSON
# --------------------------------------------------------------------------------------------


_NO_PARAMS = "spec:28x28x1 maxpool2 flatten"
_BN_SPEC = "spec:784 dense64 bn relu dense10"


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
