"""``archscope.inspect`` as a library call: the modes and contexts it traces in, the inputs it
accepts and refuses, where parameters are counted, each against an independent reference.

References: a real CPU forward (output shapes, and ``saved_tensors_hooks`` for what autograd
keeps), ``torch.utils.flop_counter.FlopCounterMode``, torchinfo, mypy, and arithmetic by hand.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torchinfo
from fixtures.inspect_cases import (
    Attention,
    AuxHead,
    LinearDropout,
    NestedUnused,
    UsesChildWeight,
)
from fixtures.oracles import saved_bytes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archscope
from archscope.engine import inspect
from archscope.errors import (
    DeviceError,
    InputShapeError,
    InputTooSmallError,
    LayerInputError,
    ModelSourceError,
)
from archscope.freeze import freeze_parameters
from archscope.report import MODEL_INPUT, Report, evaluate_formula
from archscope.source import load_model, load_report

ROOT = Path(__file__).resolve().parent.parent


def _consistent(report: Report) -> None:
    """Indices are positions, references point at real rows, rows add up to the total."""
    for i, r in enumerate(report.layers):
        assert r.index == i
        if r.parent is not None:
            parent = report.layers[r.parent]
            assert parent.index < i and r.depth == parent.depth + 1
        assert all(j == MODEL_INPUT or 0 <= j < i for j in r.inputs)
        assert evaluate_formula(r.param_formula) == r.params
    assert all(j == MODEL_INPUT or 0 <= j < len(report.layers) for j in report.outputs)
    assert sum(r.params for r in report.layers) == report.total_params


# --- 1. train/eval: the modes the user set --------------------------------------------------

def test_an_eval_model_is_traced_in_eval_mode_like_its_real_forward() -> None:
    model = AuxHead().eval()
    real = model(torch.randn(1, *AuxHead.INPUT))
    report = inspect(model, AuxHead.INPUT)
    assert report.output_shapes == (tuple(real.shape),) == ((1, 10),)
    assert any("traced in eval mode, as the model is set" in n and "model.train()" in n
               for n in report.notes)
    assert not any(m.training for m in model.modules())  # restored as it was

    model.train()  # a fresh module trains: two outputs, as its real training forward
    real_train = model(torch.randn(1, *AuxHead.INPUT))
    report = inspect(model, AuxHead.INPUT)
    assert report.output_shapes == tuple(tuple(t.shape) for t in real_train) == ((1, 10), (1, 2))
    assert not any("eval mode" in n for n in report.notes)


@pytest.mark.parametrize("dropout_training", [False, True])
def test_a_per_layer_eval_choice_is_kept_and_measured_like_a_real_forward(
        dropout_training: bool) -> None:
    model = LinearDropout()
    model.drop.train(dropout_training)  # the root trains; the dropout as the user chose
    report = inspect(model, LinearDropout.INPUT, batch=4)
    assert report.activation_bytes == saved_bytes(model, torch.randn(4, 64))
    if not dropout_training:
        # only the Linear's input is saved: 4·64 float32 values
        assert report.activation_bytes == 4 * 64 * 4 == 1024
    assert model.training and model.fc.training and model.drop.training is dropout_training


def test_a_train_mode_batchnorm_with_one_value_per_channel_still_falls_back_to_eval() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(torch.randn(1, 3, 8, 8))  # the real training forward fails at batch 1
    report = inspect(model, (3, 8, 8))
    assert report.output_shapes == (tuple(model.eval()(torch.randn(1, 3, 8, 8)).shape),)
    model.train()
    report = inspect(model, (3, 8, 8))
    assert any("BatchNorm in training mode needs more than one value" in n for n in report.notes)
    assert all(m.training for m in model.modules())


# --- 2. autograd on whatever the caller's context --------------------------------------------

def _small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 30 * 30, 10))


def _real_backward_flops(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() - forward


@pytest.mark.parametrize("context", ["plain", "no_grad", "inference_mode", "detect_anomaly"])
def test_grad_contexts_give_the_same_activation_memory_and_backward_flops(context: str) -> None:
    model = _small_cnn()
    x = torch.randn(2, 3, 32, 32)
    saved = saved_bytes(copy.deepcopy(model), x)
    backward = _real_backward_flops(copy.deepcopy(model), x)
    # saved: conv input 2·3·32·32, BN input and ReLU output 2·8·30·30 each (the Linear's input is
    # a view of the ReLU output), BN's running and batch mean/var 4·8; float32.
    assert saved == 4 * (2 * 3 * 32 * 32 + 2 * 2 * 8 * 30 * 30 + 4 * 8) == 139_904
    # backward: conv weight gradient 2·(2·8·30·30)·27 (the input needs none), Linear input and
    # weight gradients 2·(2·7200·10) each
    assert backward == 2 * 2 * 8 * 900 * 27 + 2 * 2 * (2 * 7200 * 10) == 1_353_600
    contexts: dict[str, Any] = {
        "plain": torch.enable_grad, "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode, "detect_anomaly": torch.autograd.detect_anomaly,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # detect_anomaly warns that it slows things down
        with contexts[context]():
            report = inspect(model, (3, 32, 32), batch=2, backward=True)
            assert torch.is_anomaly_enabled() is (context == "detect_anomaly")
            assert torch.is_inference_mode_enabled() is (context == "inference_mode")
    assert report.activation_bytes == saved
    assert report.backward_flops == backward


def test_a_model_built_under_inference_mode_is_traced() -> None:
    with torch.inference_mode():
        model = _small_cnn()
    assert model[0].weight.is_inference()
    report = inspect(model, (3, 32, 32), batch=2, backward=True)
    reference = _small_cnn()
    assert report.activation_bytes == saved_bytes(reference, torch.randn(2, 3, 32, 32))
    assert report.backward_flops == 1_353_600
    assert model[0].weight.is_inference() and model[1].running_mean.is_inference()


# --- 3. the public API raises ArchscopeError, one line ---------------------------------------

def test_a_shape_given_as_text_is_parsed_like_the_cli() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    report = inspect(model, "3x64x64", batch=2)
    assert report.input_shape == (3, 64, 64)
    assert report.output_shapes == (tuple(model(torch.randn(2, 3, 64, 64)).shape),)
    assert inspect(nn.Linear(784, 10), 784).output_shapes == ((1, 10),)
    summary = archscope.summary_report("lecture_mnist_cnn", input_shape="1x28x28", batch=2)
    assert summary.input_shape == (1, 28, 28) and summary.output_shapes == ((2, 10),)


@pytest.mark.parametrize(("shape", "batch", "match"), [
    (torch.randn(1, 3, 64, 64), 1,
     r"not a Tensor; for a tensor of shape \(1, 3, 64, 64\) pass input_shape=\(3, 64, 64\) and "
     r"batch=1$"),
    ([(3, 8, 8), (10,)], 1, "gives several shapes; archscope traces a model with one input"),
    ((3, 64.9, 64), 1, r"part 2 \(64\.9\) is not an integer"),
    ((3, 0, 64), 1, r"part 2 \(0\) is not positive"),
    ("3x6a", 1, "malformed input shape '3x6a'"),
    (None, 1, "an input shape is needed"),
    ((3, 8, 8), None, "batch None is not a positive integer"),
    ((3, 8, 8), "4", "batch '4' is not a positive integer"),
    ((3, 8, 8), 2.5, "batch 2.5 is not a positive integer"),
    ((3, 8, 8), 0, "batch 0 is not a positive integer"),
])
def test_bad_shapes_and_batches_are_one_line_input_shape_errors(shape: Any, batch: Any,
                                                                 match: str) -> None:
    with pytest.raises(InputShapeError, match=match) as info:
        inspect(nn.Conv2d(3, 4, 3), shape, batch=batch)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("model", "match"), [
    ("resnet18", r"not the string 'resnet18'; .* archscope\.summary_report\('resnet18'\)"),
    (nn.Linear, "not the class Linear: create one first"),
    (None, "not NoneType"),
])
def test_a_model_that_is_not_a_module_instance_is_a_model_source_error(model: Any,
                                                                       match: str) -> None:
    with pytest.raises(ModelSourceError, match=match):
        inspect(model, (3, 8, 8))


def test_lazy_parameters_ask_for_a_real_forward_first() -> None:
    model = nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(ModelSourceError, match=r"^0 \(LazyConv2d\) has lazy parameters .* run one "
                       r"real forward first \(e\.g\. model\(torch\.randn\(1, 3, 8, 8\)\)\)"):
        inspect(model, (3, 8, 8))
    real = model(torch.randn(1, 3, 8, 8))  # materializes them: now it traces
    report = inspect(model, (3, 8, 8))
    assert report.output_shapes == (tuple(real.shape),)
    assert report.total_params == sum(p.numel() for p in model.parameters()) == (
        (3 * 3 * 3 + 1) * 8 + (8 * 6 * 6 + 1) * 10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_model_on_a_missing_device_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match=r"^CUDA is not available .*; use device='cpu' or "
                       "'meta'$"):
        load_model("lecture_mlp", device="cuda")


def test_load_model_on_an_unknown_device_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match=r"^unknown device 'tpu'; use meta, cpu, cuda or cuda:N$"):
        load_model("lecture_mlp", device="tpu")


def test_an_empty_shape_says_so() -> None:
    with pytest.raises(LayerInputError) as info:
        inspect(nn.Conv2d(3, 4, 3), ())
    assert str(info.value) == ("Conv2d (Conv2d) needs a C×H×W input with 3 channels but the "
                               "input shape is empty (no dimension besides the batch); --input "
                               "is C×H×W")


# --- 4. hooks that write tensor attributes ----------------------------------------------------

@pytest.mark.parametrize("wrap", [nn.utils.spectral_norm, nn.utils.weight_norm],
                         ids=["spectral_norm", "weight_norm"])
def test_old_style_weight_reparametrizations_leave_the_model_unchanged(wrap: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # weight_norm is deprecated
        model = nn.Sequential(wrap(nn.Linear(4, 4)), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(3, 4)
    with torch.no_grad():  # the recomputed weight is then a leaf, which deepcopy can copy
        model(x)
    weight = model[0].weight
    assert "weight" in vars(model[0])  # a plain attribute, recomputed by a pre-hook
    twin = copy.deepcopy(model)
    report = inspect(model, (4,), batch=3)
    assert model[0].weight is weight and weight.device.type == "cpu"
    assert torch.equal(model[0].weight, twin[0].weight)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 twin.state_dict().values(), strict=True))
    assert torch.equal(model(x), twin(x))  # still runs, exactly as an untouched copy
    assert report.output_shapes == ((3, 2),)
    assert report.total_params == sum(p.numel() for p in model.parameters())


# --- 5. parameters used by the parent; rows of modules never called ---------------------------

def test_multihead_attention_counts_out_proj_in_its_row_like_torchinfo() -> None:
    model = Attention()
    report = inspect(model, Attention.INPUT, batch=2)
    _consistent(report)
    info = torchinfo.summary(model, input_size=(2, *Attention.INPUT), device="cpu", verbose=0)
    theirs = next(i for i in info.summary_list if i.class_name == "MultiheadAttention")
    mha = report.find("mha")
    # in_proj 3·64·64 + 3·64, out_proj 64·64 + 64
    assert mha.params == theirs.num_params == 3 * 64 * 64 + 3 * 64 + 64 * 64 + 64 == 16_640
    assert not any(r.name == "mha.out_proj" for r in report.layers)
    assert report.notes == (
        "mha.out_proj (NonDynamicallyQuantizableLinear, 4,160 parameters) is not called as a "
        "module: mha's forward uses its parameters directly; they are counted in mha's row",
    )


def test_a_transformer_encoder_counts_every_layer_in_its_rows() -> None:
    model = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2, enable_nested_tensor=False)
    report = inspect(model, (10, 32))
    _consistent(report)
    info = torchinfo.summary(model, input_size=(1, 10, 32), device="cpu", verbose=0, depth=3)
    ours = [r.params for r in report.layers if r.type == "MultiheadAttention"]
    assert ours == [i.num_params for i in info.summary_list
                    if i.class_name == "MultiheadAttention"] == [4 * 32 * 32 + 4 * 32] * 2
    assert not any("never called" in n for n in report.notes)


def test_the_roots_forward_reading_a_childs_weight_is_counted_in_the_root_row() -> None:
    model = UsesChildWeight()
    report = inspect(model, UsesChildWeight.INPUT)
    _consistent(report)
    root = report.layers[-1]
    assert (root.name, root.params, root.depth, root.parent) == ("(UsesChildWeight)", 8 * 4 + 4,
                                                                 1, None)
    assert report.notes == (
        "proj (Linear, 36 parameters) is not called as a module: the model's forward uses its "
        "parameters directly; they are counted in the (UsesChildWeight) row",
    )


def test_a_module_never_called_sits_under_its_nearest_called_ancestor() -> None:
    model = NestedUnused()
    report = inspect(model, NestedUnused.INPUT, batch=2)
    _consistent(report)
    names = [r.name for r in report.layers]
    assert names == ["body", "body.0", "body.1", "body.1.relu", "body.1.conv", "body.1.spare",
                     "flatten", "head"]
    spare = report.find("body.1.spare")
    assert report.layers[spare.parent].name == "body.1" and spare.depth == 3
    assert spare.params == 4 * 4 + 4 and not spare.output_shapes
    assert report.notes == ("body.1.spare (Linear, 20 parameters) is never called in forward; "
                            "its parameters are counted in the total",)
    # the data flow still points at the right rows after the insertion
    assert report.find("flatten").inputs == (names.index("body.1.conv"),)
    assert report.outputs == (names.index("head"),)
    real = model(torch.randn(2, *NestedUnused.INPUT))
    assert report.output_shapes == (tuple(real.shape),)
    assert report.total_params == sum(p.numel() for p in model.parameters())


def test_tables_show_a_module_never_called_inside_its_container() -> None:
    from archscope.render import render

    report = inspect(NestedUnused(), NestedUnused.INPUT)
    lines = render(report, "table").splitlines()
    row = lines.index(next(line for line in lines if line.lstrip().startswith("body.1.spare")))
    assert lines[row].startswith("  body.1.spare ")  # depth 3: two spaces, as body.1.conv
    assert lines[row - 1].startswith("  body.1.conv ")
    collapsed = render(report, "csv", max_depth=1).splitlines()
    assert [line.split(",")[1] for line in collapsed[1:]] == ["body", "flatten", "head"]
    assert collapsed[1].split(",")[6] == str((3 * 3 * 3 + 1) * 4 + (4 + 1) * 4 + 4 * 4 + 4)


# --- 6. a bare layer --------------------------------------------------------------------------

def test_a_bare_layer_is_one_row_like_torchinfo() -> None:
    model = nn.Conv2d(3, 4, 3)
    report = inspect(model, (3, 8, 8))
    _consistent(report)
    info = torchinfo.summary(model, input_size=(1, 3, 8, 8), device="cpu", verbose=0)
    (theirs,) = info.summary_list
    (row,) = report.layers
    assert (row.name, row.type, row.kind, row.depth, row.parent) == ("Conv2d", "Conv2d", "module",
                                                                     1, None)
    assert row.output_shapes == (tuple(theirs.output_size),) == (
        tuple(model(torch.randn(1, 3, 8, 8)).shape),)
    assert row.params == theirs.num_params == (3 * 3 * 3 + 1) * 4 == 112
    assert row.param_formula == "(3·3·3+1)·4"
    x = torch.randn(1, 3, 8, 8)
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert row.macs == report.total_macs == counter.get_total_flops() // 2 == 4 * 6 * 6 * 27
    assert report.outputs == (0,) and row.inputs == (MODEL_INPUT,) and not report.notes


# --- 7. dilated pooling windows ---------------------------------------------------------------

def test_a_dilated_pool_is_too_small_by_its_effective_window() -> None:
    model = nn.Sequential(nn.MaxPool2d(2, dilation=2))
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 1, 2, 6))  # PyTorch agrees: 2 rows cannot hold a 3-row window
    assert model(torch.randn(1, 1, 3, 3)).shape == (1, 1, 1, 1)  # … and 3×3 is the smallest
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 1, 2, 2))
    with pytest.raises(InputTooSmallError) as info:
        inspect(model, (1, 2, 6))
    # (k−1)·d+1 = (2−1)·2+1 = 3
    assert str(info.value) == ("0 (MaxPool2d): input is 2×6, smaller than its 3×3 window (2×2 "
                               "kernel, dilation 2); use an input of at least 1×3×3")
    report = inspect(model, (1, 3, 6))
    assert report.output_shapes == (tuple(model(torch.randn(1, 1, 3, 6)).shape),) == ((1, 1, 1, 2),)


# --- 8. freeze as one string ------------------------------------------------------------------

def test_freeze_given_as_one_string_is_one_prefix() -> None:
    report = load_report("lecture_mnist_cnn", freeze="features")
    model = load_model("lecture_mnist_cnn").model
    under = sum(p.numel() for n, p in model.named_parameters() if n.startswith("features."))
    # three convs: (3·3·1+1)·32 + (3·3·32+1)·64 + (3·3·64+1)·64
    assert report.non_trainable_params == under == 320 + 18_496 + 36_928
    assert freeze_parameters(model, "classifier") == sum(
        p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))


# --- 10. typing -------------------------------------------------------------------------------

def test_the_lazy_api_has_its_real_types_for_mypy(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent("""
        import archscope
        from torch import nn
        report = archscope.inspect(nn.Linear(2, 3), (2,))
        reveal_type(report)
        reveal_type(archscope.summary_report("vgg16").total_params)
        reveal_type(archscope.Report)
        reveal_type(archscope.load_model)
    """))
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n[mypy-torch.*]\nfollow_imports = skip\n")  # fast: torch as Any
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
         str(tmp_path / "cache"), str(script)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    revealed = [line.split("Revealed type is ")[1] for line in out.stdout.splitlines()
                if "Revealed type is" in line]
    assert out.returncode == 0, out.stdout + out.stderr
    assert revealed[0] == '"archscope.report.Report"'
    assert revealed[1] == '"int"'
    assert revealed[2].startswith('"def (model: str, model_type: str, input_shape: tuple[int, ...]')
    assert revealed[3].startswith('"def (source: str, *, num_classes: int | None =')


def test_import_archscope_still_does_not_import_torch() -> None:
    code = "import sys, archscope; print('torch' in sys.modules, archscope.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("False ")


# --- 11. docstrings made true -----------------------------------------------------------------

def test_every_part_of_an_output_formula_evaluates_as_documented() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, (3, 1), stride=(2, 1)), nn.Conv2d(4, 4, 3, padding="same"),
                          nn.MaxPool2d(2, ceil_mode=True))
    report = inspect(model, (3, 13, 6))
    real = model(torch.randn(1, 3, 13, 6))
    assert report.output_shapes == (tuple(real.shape),)
    conv, same, pool = report.layers
    # non-square: one expression per axis, each evaluating before its " = "
    assert conv.output_formula == "H: (13−3)/2+1 = 6; W: (6−1)/1+1 = 6"
    for part, size in zip(conv.output_formula.split("; "), conv.output_shapes[0][2:], strict=True):
        expression, value = part.split(": ", 1)[1].split(" = ")
        assert evaluate_formula(expression) == int(value) == size
    assert same.output_formula == "padding='same' keeps 6×6"  # words, not arithmetic
    expression, value = pool.output_formula.split(" = ")
    assert evaluate_formula(expression) == int(value) == pool.output_shapes[0][2]


class _FuncMLP(nn.Module):
    """No child modules, its own forward: functional ops over its parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(32, 16))
        self.w2 = nn.Parameter(torch.randn(10, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, self.w1)),
                                          self.w2)


class _BareBN(nn.BatchNorm1d):
    def __init__(self) -> None:
        super().__init__(16)


def test_a_childless_model_with_its_own_forward_keeps_a_row_per_op() -> None:
    model = _FuncMLP()
    report = inspect(model, (16,))
    _consistent(report)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 16))
    assert [(r.name, r.macs) for r in report.layers] == [
        ("linear", 16 * 32), ("relu", 0), ("linear", 32 * 10), ("(_FuncMLP)", 0)]
    assert report.total_macs == counter.get_total_flops() // 2 == 832
    assert report.layers[-1].params == report.total_params == 32 * 16 + 10 * 32
    # a subclass of a PyTorch layer that keeps its forward is one row, like the layer
    [row] = inspect(_BareBN(), (16,), batch=2).layers
    assert (row.name, row.params, row.output_shapes) == ("_BareBN", 32, ((2, 16),))


class _PartlyBorrowed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 4)
        self.tail = nn.Linear(4, 4)  # only its weight is read, by the root's forward

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(self.head(y), self.tail.weight)


def test_a_module_partly_read_by_another_forward_gets_consistent_notes() -> None:
    report = inspect(_PartlyBorrowed(), (4,))
    _consistent(report)
    rows = {r.name: r.params for r in report.layers if r.params}
    assert rows == {"head": 20, "(_PartlyBorrowed)": 16, "tail": 4}
    notes = [n for n in report.notes if n.startswith("tail")]
    assert len(notes) == 2
    assert "tail (Linear, 16 parameters) is not called as a module" in notes[0]
    assert notes[1] == ("tail.{bias} (4 parameters) is never used in forward, while its other "
                        "parameters are read directly; counted in the total")
    assert all("never called" not in n for n in report.notes)
