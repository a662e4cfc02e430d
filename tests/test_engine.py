"""The inspection engine against independent oracles.

Oracles: published parameter counts, ``sum(p.numel() for p in model.parameters())``, torchinfo's
leaf shapes, a real CPU forward, and ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torchinfo
from fixtures.tricky import TRICKY, CalledTwice, ContainerParameter, DictOutput, TiedWeights
from test_zoo import PUBLISHED
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archscope import registry
from archscope.engine import inspect
from archscope.errors import ForwardError, InputTooSmallError
from archscope.report import MODEL_INPUT, evaluate_formula
from archscope.source import load_model, load_report

ENTRIES = registry.list_models()


@pytest.fixture(scope="module")
def zoo_reports() -> dict[str, object]:
    return {e.name: load_report(e.name) for e in ENTRIES}


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_zoo_totals_equal_published_counts(name: str, zoo_reports: dict) -> None:
    report = zoo_reports[name]
    assert report.total_params == PUBLISHED[name]
    assert report.trainable_params == PUBLISHED[name]
    assert report.non_trainable_params == 0


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_every_formula_evaluates_to_its_row_and_rows_add_up(name: str, zoo_reports: dict) -> None:
    report = zoo_reports[name]
    for r in report.layers:
        assert evaluate_formula(r.param_formula) == r.params, (r.name, r.param_formula)
    assert sum(r.params for r in report.layers) == report.total_params
    assert not report.notes


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_zoo_leaf_shapes_equal_torchinfo(name: str) -> None:
    loaded = load_model(name)
    shape = (3, 64, 64) if loaded.input_shape == (3, 224, 224) else loaded.input_shape
    report = inspect(loaded.model, shape, batch=2)
    info = torchinfo.summary(loaded.model, input_size=(2, *shape), device="meta", verbose=0)
    theirs = [(i.class_name, tuple(i.output_size)) for i in info.summary_list if i.is_leaf_layer]
    ours = [(r.type, r.output_shape) for r in report.layers
            if r.kind == "module" and r.is_leaf and r.output_shapes]
    assert ours == theirs
    # torchinfo 1.8 counts each parameter once per module holding it; no ties in the zoo.
    assert report.total_params == info.total_params


def _real_leaf_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((type(m).__name__, tuple(o.shape))))
             for m in model.modules() if next(m.children(), None) is None]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


@pytest.mark.parametrize(("name", "shape"), [
    ("lecture_mnist_cnn", None), ("lecture_catsdogs_cnn", None), ("lecture_mlp", None),
    ("lecture_multitask", None), ("alexnet", None), ("alexnet_torchvision", None),
    ("vgg16", (3, 64, 64)), ("resnet50", (3, 64, 64)),
])
def test_output_shapes_equal_a_real_cpu_forward(name: str, shape: tuple[int, ...] | None) -> None:
    loaded = load_model(name, device="cpu")
    shape = shape or loaded.input_shape
    report = inspect(loaded.model, shape)
    real = _real_leaf_shapes(loaded.model.eval(), torch.randn(1, *shape))
    ours = [(r.type, r.output_shape) for r in report.layers
            if r.kind == "module" and r.is_leaf and r.output_shapes]
    assert ours == real


def test_lecture_mnist_cnn_layer_by_layer() -> None:
    report = load_report("lecture_mnist_cnn")
    convs = [r for r in report.layers if r.type == "Conv2d"]
    dense = [r for r in report.layers if r.type == "Linear"]
    # Keras model.summary() in lecture 003: (3·3·1+1)·32, (3·3·32+1)·64, (3·3·64+1)·64, …
    assert [r.params for r in convs] == [(3 * 3 * 1 + 1) * 32, (3 * 3 * 32 + 1) * 64,
                                         (3 * 3 * 64 + 1) * 64]
    assert [r.params for r in convs] == [320, 18_496, 36_928]
    assert [r.params for r in dense] == [(3 * 3 * 64 + 1) * 64, (64 + 1) * 10] == [36_928, 650]
    assert [r.param_formula for r in convs] == ["(3·3·1+1)·32", "(3·3·32+1)·64", "(3·3·64+1)·64"]
    spatial = [r.output_shape[-1] for r in report.layers if r.type in {"Conv2d", "MaxPool2d"}]
    assert spatial == [26, 13, 11, 5, 3]  # (28−3)/1+1, 26/2, (13−3)/1+1, ⌊11/2⌋, (5−3)/1+1
    assert convs[0].output_formula == "(28−3)/1+1 = 26"
    assert report.total_params == 93_322


def test_lecture_catsdogs_cnn_layer_by_layer() -> None:
    report = load_report("lecture_catsdogs_cnn")
    spatial = [r.output_shape[-1] for r in report.layers if r.type in {"Conv2d", "MaxPool2d"}]
    assert spatial == [148, 74, 72, 36, 34, 17, 15, 7]  # (150−3)/1+1 = 148, …
    first = next(r for r in report.layers if r.type == "Conv2d")
    assert first.output_formula == "(150−3)/1+1 = 148"
    convs = [r.params for r in report.layers if r.type == "Conv2d"]
    assert convs == [(3 * 3 * 3 + 1) * 32, (3 * 3 * 32 + 1) * 64, (3 * 3 * 64 + 1) * 128,
                     (3 * 3 * 128 + 1) * 128]
    dense512 = next(r for r in report.layers if r.type == "Linear")
    assert dense512.params == (7 * 7 * 128 + 1) * 512 == 3_211_776
    assert dense512.param_formula == "(6272+1)·512"
    assert report.total_params == 3_453_121


@pytest.mark.parametrize("cls", TRICKY, ids=lambda c: c.__name__)
def test_tricky_models_against_unique_sum_torchinfo_and_a_real_forward(cls: type) -> None:
    model = cls()
    report = inspect(model, cls.INPUT, batch=2)
    unique = sum(p.numel() for p in model.parameters())
    assert report.total_params == unique
    assert sum(r.params for r in report.layers) == unique
    for r in report.layers:
        assert evaluate_formula(r.param_formula) == r.params
    info = torchinfo.summary(model, input_size=(2, *cls.INPUT), device="cpu", verbose=0)
    theirs = [(i.class_name, tuple(i.output_size)) for i in info.summary_list if i.is_leaf_layer]
    ours = [(r.type, r.output_shape) for r in report.layers
            if r.kind == "module" and r.is_leaf and r.output_shapes]
    assert ours == theirs
    assert ours == _real_leaf_shapes(model, torch.randn(2, *cls.INPUT))
    if cls is TiedWeights:
        # torchinfo 1.8 counts a tied Parameter once per module (its issue #322): 416, not 288.
        assert info.total_params == unique + 8 * 16
    else:
        assert info.total_params == unique


def test_tied_weights_count_once_and_name_the_owner() -> None:
    report = inspect(TiedWeights(), TiedWeights.INPUT)
    proj = report.find("proj")
    assert proj.params == 8 and proj.param_formula == "8"  # only its own bias
    assert proj.shared_with == "encoder"
    assert report.find("encoder").params == (16 + 1) * 8


def test_a_module_called_twice_appears_per_call_and_counts_once() -> None:
    report = inspect(CalledTwice(), CalledTwice.INPUT)
    calls = [r for r in report.layers if r.name == "conv"]
    assert [r.call for r in calls] == [0, 1]
    assert [r.params for r in calls] == [(3 * 3 * 4 + 1) * 4, 0]
    assert calls[1].shared_with == "conv"
    assert calls[0].macs == calls[1].macs == 4 * 12 * 12 * 3 * 3 * 4


def test_a_container_parameter_is_not_lost() -> None:
    report = inspect(ContainerParameter(), ContainerParameter.INPUT)
    assert report.total_params == (3 * 3 * 3 + 1) * 6 + 6
    own = report.layers[-1]
    assert own.params == 6 and own.param_formula == "1·6·1·1"
    assert any("ContainerParameter" in note for note in report.notes)
    mul = next(r for r in report.layers if r.kind == "function")
    assert mul.type == "mul"


def test_dict_outputs_keep_their_keys() -> None:
    report = inspect(DictOutput(), DictOutput.INPUT, batch=3)
    assert report.output_shapes == ((3, 1), (3, 3))
    assert [report.layers[i].name for i in report.outputs] == ["a", "b"]
    assert report.output_keys == ("a", "b")


def test_frozen_parameters_are_non_trainable_and_save_less_for_backward() -> None:
    from fixtures.tricky import FrozenBase

    frozen = inspect(FrozenBase(), FrozenBase.INPUT, batch=4)
    assert frozen.non_trainable_params == (3 * 3 * 3 + 1) * 8 + 2 * 8
    assert frozen.trainable_params == (8 * 7 * 7 + 1) * 2
    trainable = FrozenBase()
    for p in trainable.parameters():
        p.requires_grad_(True)
    full = inspect(trainable, FrozenBase.INPUT, batch=4)
    assert frozen.activation_bytes < full.activation_bytes


def test_residual_add_is_traced_with_both_inputs() -> None:
    report = load_report("resnet18")
    adds = [r for r in report.layers if r.type == "add"]
    assert len(adds) == 8  # one merge per BasicBlock: [2, 2, 2, 2]
    for add in adds:
        assert len(add.inputs) == 2
        producers = [report.layers[i] for i in add.inputs]
        assert producers[0].type == "BatchNorm2d"
    first = adds[0]
    assert report.layers[first.inputs[1]].type == "MaxPool2d"  # the identity skip
    flatten = next(r for r in report.layers if r.type == "flatten")
    assert flatten.output_shape == (1, 512)
    assert report.layers[0].inputs == (MODEL_INPUT,)


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_macs_equal_flop_counter_mode(name: str) -> None:
    loaded = load_model(name)
    report = inspect(loaded.model, loaded.input_shape, batch=2, backward=True)
    x = torch.empty(2, *loaded.input_shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        loaded.model(x).sum().backward()
    forward_and_backward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loaded.model(x)
    assert report.total_macs == counter.get_total_flops() // 2
    assert report.forward_flops + report.backward_flops == forward_and_backward
    assert report.macs_per_sample == {"resnet50": 4_089_184_256, "vgg16": 15_470_264_320}[name]
    # leaf rows and functional ops add up to the whole
    assert sum(r.macs for r in report.layers if r.is_leaf) == report.total_macs


def test_activation_memory_matches_autograd_saved_tensors_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    report = inspect(model, (3, 8, 8), batch=4)
    # conv saves its input (4·3·8·8); relu saves its output (4·8·6·6); linear saves its input
    # (the flattened relu output: a view of the same storage, counted once). float32 = 4 bytes.
    assert report.activation_bytes == 4 * (4 * 3 * 8 * 8 + 4 * 8 * 6 * 6)
    assert report.param_bytes == 4 * (8 * 3 * 3 * 3 + (8 * 6 * 6 + 1) * 2)


def test_the_users_model_is_not_changed() -> None:
    model = load_model("resnet18", device="cpu").model.eval()
    model.layer1.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inspect(model, (3, 64, 64), batch=2, backward=True)
    assert not model.training and not any(m.training for m in model.modules())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.layer1.parameters()] == [False] * 12
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert not model._forward_hooks and not model.conv1._forward_pre_hooks


def test_input_too_small_names_the_layer_and_the_smallest_input() -> None:
    with pytest.raises(InputTooSmallError) as info:
        load_report("vgg16", input_shape=(3, 16, 16))
    message = str(info.value)
    # 16 → 8 → 4 → 2 → 1 after four pools: the fifth (features.30) has nothing to pool
    assert message.startswith("features.30 (MaxPool2d): input is 1×1, smaller than its 2×2 kernel")
    assert message.endswith("use an input of at least 3×32×32")


def test_a_failing_forward_names_the_layer_reached() -> None:
    with pytest.raises(ForwardError, match=r"classifier.fc1 \(Linear\) expects 576 input features"):
        load_report("lecture_mnist_cnn", input_shape=(1, 32, 32))


def test_a_float64_model_is_traced_in_its_own_dtype() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).double()
    report = inspect(model, (3, 8, 8))
    assert report.total_params == (3 * 3 * 3 + 1) * 4 == 112
    assert report.param_bytes == 112 * 8  # float64: 8 bytes a parameter
    assert next(model.parameters()).dtype == torch.float64  # untouched


def test_half_precision_backward_in_a_fresh_process() -> None:
    # the lazy-import stand-ins once collided with torch's own imports here: a fresh process,
    # where nothing heavy is imported yet, is the case that matters
    code = textwrap.dedent("""
        import torch
        from torch import nn
        import archscope
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).half()
        report = archscope.inspect(model, (3, 8, 8), backward=True)
        print(report.total_params, report.param_bytes, report.backward_flops > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # conv (3·3·3+1)·4 = 112, BatchNorm 2·4 = 8; float16: 2 bytes each
    assert out.stdout.split() == ["120", "240", "True"]


@pytest.mark.parametrize(("layer", "shape", "formula"), [
    (nn.ConvTranspose2d(32, 16, 2, stride=2), (32, 32, 32), "(32−1)·2+2 = 64"),
    (nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1), (4, 7, 7),
     "(7−1)·2−2·1+3+1 = 14"),
    (nn.ConvTranspose2d(4, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=2), (4, 7, 9),
     "H: (7−1)·2−2·1+2·(3−1)+1 = 15; W: (9−1)−2·2+2·(5−1)+1 = 13"),
    (nn.ConvTranspose1d(4, 4, 4, stride=3), (4, 10), "(10−1)·3+4 = 31"),
])
def test_transposed_conv_output_arithmetic(layer: nn.Module, shape: tuple[int, ...],
                                           formula: str) -> None:
    # (n−1)·s − 2·p + d·(k−1) + output_padding + 1, against the real forward's sizes
    real = tuple(layer(torch.zeros(1, *shape)).shape[2:])
    [record] = inspect(nn.Sequential(layer), shape).layers
    assert record.output_formula == formula
    assert evaluate_formula(record.param_formula) == record.params == sum(
        p.numel() for p in layer.parameters())
    sizes = tuple(evaluate_formula(part.split(": ")[-1].split(" = ")[0])
                  for part in formula.split("; "))
    assert (sizes * len(real) if len(sizes) == 1 else sizes) == real  # one text: axes alike


class _UpTo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x, output_size=[14, 14])  # picks 14 where the formula gives 13


def test_transposed_conv_given_an_output_size_shows_no_wrong_arithmetic() -> None:
    [record] = inspect(_UpTo(), (4, 7, 7)).layers
    assert record.output_shapes == ((1, 4, 14, 14),) and record.output_formula == ""


def test_stand_ins_are_swapped_in_for_a_block_and_out_even_after_an_error() -> None:
    from archscope.engine.stand_ins import autograd_on, kept_tensor_attributes, meta_state, swapped

    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 3))
    model[2].weight = model[0].weight  # tied: one stand-in for both
    before = dict([*model.named_parameters(remove_duplicate=False), *model.named_buffers()])
    swaps, parameter_storages = meta_state(model)
    assert len(parameter_storages) == len(list(model.parameters())) == 5
    with (pytest.raises(RuntimeError, match="inside"), torch.no_grad(), autograd_on(),
          kept_tensor_attributes(model), swapped(swaps)):
        assert torch.is_grad_enabled()
        assert all(p.is_meta for p in model.parameters())
        assert model[2].weight is model[0].weight
        model[0].extra = torch.zeros(1)  # a tensor attribute written during the block
        raise RuntimeError("inside")
    after = dict([*model.named_parameters(remove_duplicate=False), *model.named_buffers()])
    assert after.keys() == before.keys() and all(after[n] is t for n, t in before.items())
    assert not hasattr(model[0], "extra")
