"""The torchvision reference sweep: every torchvision model against independent oracles.

Every classification model of ``torchvision.models.list_models``, and the segmentation, video and
quantizable ones (107 models), is built on the CPU with random weights (seed 0), inspected with
:func:`archscope.inspect`, then run for real once, in training mode, on the CPU. That one forward
is the oracle for everything archscope measured on the meta device:

* parameters: ``sum(p.numel() for p in model.parameters())`` and torchvision's published
  ``num_params`` of the weights for that input size;
* every module call's input and output shapes, in call order: forward pre-hooks and hooks on the
  real model;
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around the same forward, under the math
  attention backend (``sdpa_kernel(SDPBackend.MATH)``), is ``2 × report.total_macs``;
* activation bytes: the storages the real forward saves for backward, seen through
  ``torch.autograd.graph.saved_tensors_hooks`` (each storage once, the model's parameters left
  out), are ``report.activation_bytes``;
* nothing changed: the ``state_dict()`` (bitwise), every tensor attribute of every submodule,
  whatever Python container holds it (lists, tuples, dicts, dataclasses), and every module's
  train/eval flag are the same before and after ``inspect``, and the real forward then runs.

The detection models read tensor values in their forward, so the meta trace cannot run them:
on the meta device ``inspect`` raises a one-line ``ArchscopeError`` and leaves the model as it
found it (``AnchorGenerator.cell_anchors`` is a list of tensors that its forward reassigns), and
the user's call (a list of images, no autograd) runs after it. Traced for real
(``trace="real"``, on the CPU, in eval mode), they get every check above against a real forward
on the same random batch (seed 0, the input ``--trace real`` draws). An ONNX round trip
(``export_onnx``, then ``archscope summary x.onnx``) of one model per family checks the file's
parameter total against PyTorch's.

Inputs: the smallest crop of the model's published weights (``weights.transforms().crop_size``:
224, 299 for Inception-v3, 600 for EfficientNet-B7; ViT-H/14 and RegNetY-128GF have 224-pixel
linear-probe weights beside their 518/384 ones), 16 frames for video, 224×224 for segmentation
(whose weights resize to 520 without a crop) and detection (``min_size=max_size=224`` where the
builder takes it; the SSDs resize to their own 300 or 320). Batch 1, except where a
training-mode BatchNorm would see one value per channel at batch 1 (``BATCH_TWO``).

torchvision is a test dependency of this file only (``pip install -e '.[test,sweep]'``); without
it the module is skipped. Every test is ``slow``: the whole sweep takes about a quarter of an hour
on two CPU cores (docs/summary.md, "Reference sweep" has the figures)::

    python -m pytest -m slow tests/test_torchvision_sweep.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import archscope
from archscope.cli import main
from archscope.errors import ArchscopeError
from archscope.export import export_onnx
from archscope.report import Kind, Report

models = pytest.importorskip("torchvision.models")

pytestmark = [
    pytest.mark.slow,
    # GoogLeNet and Inception-v3 warn that their default initialisation will change
    pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning"),
]

Shape = tuple[int, ...]

#: A training-mode BatchNorm sees a 1×1 map here (Inception-v3's auxiliary head, DeepLabV3's ASPP
#: pooling branch): PyTorch refuses one value per channel, so these run at batch 2.
BATCH_TWO = frozenset({"inception_v3", "quantized_inception_v3", "deeplabv3_mobilenet_v3_large",
                       "deeplabv3_resnet50", "deeplabv3_resnet101"})

#: Parameters of the model built without weights that torchvision's published ``num_params``
#: leaves out: GoogLeNet's weights come without the two auxiliary heads (its builder sets
#: ``aux1 = aux2 = None`` after loading them). Each head is a 1×1 conv to 128 channels without
#: bias and its BatchNorm, then Linear(2048, 1024) and Linear(1024, 1000):
#: aux1 (from 512 channels) 512·128 + 2·128 + (2048+1)·1024 + (1024+1)·1000 = 3,188,968;
#: aux2 (from 528 channels) 528·128 + 2·128 + (2048+1)·1024 + (1024+1)·1000 = 3,191,016.
UNPUBLISHED_PARAMS = {"googlenet": 3_188_968 + 3_191_016, "quantized_googlenet": 3_188_968 + 3_191_016}


def unpublished_params(case: Case, model: nn.Module) -> int:
    """Parameters of ``model`` (built without weights) that the published weights do not have.

    Besides :data:`UNPUBLISHED_PARAMS`: a detection builder given weights puts
    ``FrozenBatchNorm2d`` (buffers only) in its backbone, and ``nn.BatchNorm2d`` (a weight and a
    bias per channel) without them; the ``_v2`` builders keep ``nn.BatchNorm2d`` either way, and
    the SSDs' backbones have none. ResNet-50's BatchNorms have 26,560 channels (53,120
    parameters), MobileNetV3-Large's 12,200 (24,400).
    """
    frozen = 0
    if case.kind == "detection" and not case.name.endswith("_v2"):
        body = getattr(model.backbone, "body", nn.Identity())
        frozen = sum(p.numel() for m in body.modules() if isinstance(m, nn.BatchNorm2d)
                     for p in m.parameters())
    return UNPUBLISHED_PARAMS.get(case.name, 0) + frozen

#: One model per family for the ONNX round trip (issue 12's list). Swin-T and MaxViT-T stay out:
#: their files' parameter overcount is a known limit of the ONNX reader (docs/onnx.md).
ONNX_ROUND_TRIP = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "densenet121", "vit_b_16",
                   "convnext_tiny", "regnet_y_400mf", "squeezenet1_1"]

#: Detection builders that take ``min_size``/``max_size`` (the SSDs have a fixed 300/320 input).
_SIZED_DETECTION = ("fasterrcnn", "maskrcnn", "keypointrcnn", "retinanet", "fcos")


@dataclass(frozen=True)
class Case:
    """One torchvision model as the sweep builds and feeds it."""

    name: str
    kind: str  # classification, segmentation, video, quantized or detection
    input_shape: Shape
    batch: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def trace(self) -> str:
        """How :func:`archscope.inspect` traces it: for real where the forward reads values."""
        return "real" if self.kind == "detection" else "meta"

    def build(self) -> nn.Module:
        """The model with random weights (seed 0), on the CPU; nothing is downloaded."""
        torch.manual_seed(0)
        return models.get_model(self.name, weights=None, **self.kwargs)

    def published_params(self) -> set[int]:
        """torchvision's ``num_params`` of the weights for this input size (empty for none)."""
        if self.kind in ("segmentation", "detection"):
            found = {w.meta["num_params"] for w in models.get_model_weights(self.name)}
        else:
            found = {w.meta["num_params"] for w in models.get_model_weights(self.name)
                     if _crop(w) == self.input_shape[-1]}
        return found


def _crop(weights: Any) -> int:
    return int(weights.transforms().crop_size[0])


def _smallest_crop(name: str) -> int:
    return min(_crop(w) for w in models.get_model_weights(name))


def _cases() -> tuple[list[Case], list[Case]]:
    """The fully checked models, and the detection models."""
    full: list[Case] = []
    for name in models.list_models(module=models):
        crop = _smallest_crop(name)
        full.append(Case(name, "classification", (3, crop, crop), 2 if name in BATCH_TWO else 1))
    for name in models.list_models(module=models.segmentation):
        # the published weights' architecture: 21 classes and, except LR-ASPP, the auxiliary head
        kwargs: dict[str, Any] = {"weights_backbone": None}
        if not name.startswith("lraspp"):
            kwargs["aux_loss"] = True
        full.append(Case(name, "segmentation", (3, 224, 224), 2 if name in BATCH_TWO else 1,
                         kwargs))
    for name in models.list_models(module=models.video):
        crop = _smallest_crop(name)
        full.append(Case(name, "video", (3, 16, crop, crop), 1))
    for name in models.list_models(module=models.quantization):
        crop = _smallest_crop(name)
        full.append(Case(name, "quantized", (3, crop, crop), 2 if name in BATCH_TWO else 1,
                         {"quantize": False}))
    detection = []
    for name in models.list_models(module=models.detection):
        kwargs = {"weights_backbone": None}
        if name.startswith(_SIZED_DETECTION):
            kwargs.update(min_size=224, max_size=224)
        detection.append(Case(name, "detection", (3, 224, 224), 1, kwargs))
    return full, detection


FULL, DETECTION = _cases()


# -- the model's state, to compare before and after inspect -----------------------------------

#: A tensor as compared: device, dtype, shape, stride, requires_grad, class, digest of its bytes
#: (``None`` for a tensor without values, on the meta device).
TensorFacts = tuple[str, str, Shape, Shape, bool, str, str | None]


def _digest(t: torch.Tensor, memo: dict[tuple[Any, ...], str | None]) -> str | None:
    if t.device.type == "meta":
        return None
    key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
    if key not in memo:
        data = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        memo[key] = hashlib.blake2b(data.numpy().data, digest_size=16).hexdigest()
    return memo[key]


def _tensors_in(obj: Any, path: str, found: list[tuple[str, torch.Tensor]], seen: set[int]) -> None:
    """Every tensor under ``obj`` (dicts, lists, tuples, dataclasses, nested), with its path;
    submodules are left to their own walk."""
    if isinstance(obj, torch.Tensor):
        found.append((path, obj))
        return
    if isinstance(obj, nn.Module) or id(obj) in seen:
        return
    if isinstance(obj, dict):
        seen.add(id(obj))
        for key, value in obj.items():
            _tensors_in(value, f"{path}[{key!r}]", found, seen)
    elif isinstance(obj, list | tuple):
        seen.add(id(obj))
        for i, value in enumerate(obj):
            _tensors_in(value, f"{path}[{i}]", found, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        seen.add(id(obj))
        for f in dataclasses.fields(obj):
            _tensors_in(getattr(obj, f.name), f"{path}.{f.name}", found, seen)


def state_of(model: nn.Module) -> dict[str, Any]:
    """Everything of ``model`` that ``inspect`` must leave as it was: each state_dict entry,
    each tensor held anywhere in a submodule's ``__dict__`` (parameters, buffers, plain
    attributes, tensors in containers), and each module's train/eval flag."""
    memo: dict[tuple[Any, ...], str | None] = {}

    def facts(t: torch.Tensor) -> TensorFacts:
        return (t.device.type, str(t.dtype), tuple(t.shape), t.stride(), t.requires_grad,
                type(t).__name__, _digest(t, memo))

    state: dict[str, Any] = {f"state_dict:{k}": facts(v) for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        state[f"training:{name}"] = module.training
        found: list[tuple[str, torch.Tensor]] = []
        seen: set[int] = set()
        for attribute, value in vars(module).items():
            _tensors_in(value, attribute, found, seen)
        for path, t in found:
            state[f"tensor:{name}:{path}"] = facts(t)
    return state


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two :func:`state_of`, one line per entry."""
    return [f"{key}: {before.get(key, 'absent')} → {after.get(key, 'absent')}"
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]


def test_state_of_sees_every_change() -> None:
    """The oracle of ``test_model_unchanged`` itself: each kind of change it must catch."""

    class Anchors(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)
            self.register_buffer("count", torch.zeros(1))
            self.cell_anchors = [torch.zeros(2, 4), torch.ones(3, 4)]
            self.by_name = {"a": (torch.arange(3.0),)}

    def build() -> Anchors:
        torch.manual_seed(0)
        return Anchors()

    before = state_of(build())
    assert changes(before, state_of(build())) == []
    edits: list[tuple[Callable[[Anchors], object], list[str]]] = [
        # what issue 12 saw: AnchorGenerator's list left on the meta device
        (lambda m: setattr(m, "cell_anchors", [a.to("meta") for a in m.cell_anchors]),
         ["tensor::cell_anchors[0]", "tensor::cell_anchors[1]"]),
        (lambda m: m.cell_anchors[1].add_(1), ["tensor::cell_anchors[1]"]),
        (lambda m: m.by_name["a"][0].mul_(2), ["tensor::by_name['a'][0]"]),
        # a parameter is in the state_dict and in its module's _parameters dict
        (lambda m: m.conv.weight.data.add_(1),
         ["state_dict:conv.weight", "tensor:conv:_parameters['weight']"]),
        (lambda m: m.get_buffer("count").fill_(1), ["state_dict:count", "tensor::_buffers['count']"]),
        (lambda m: m.conv.eval(), ["training:conv"]),
        # state_dict() holds detached tensors: only the parameter itself shows requires_grad
        (lambda m: m.conv.weight.requires_grad_(False), ["tensor:conv:_parameters['weight']"]),
    ]
    for edit, keys in edits:
        model = build()
        edit(model)
        found = [line.split(": ", 1)[0] for line in changes(before, state_of(model))]
        assert found == sorted(keys)


# -- the real forward -------------------------------------------------------------------------

def _shapes(obj: Any) -> tuple[Shape, ...]:
    """The shapes of the tensors in a module's inputs or outputs, in order (tuples, lists,
    named tuples, dict values in insertion order)."""
    if isinstance(obj, torch.Tensor):
        return (tuple(obj.shape),)
    if isinstance(obj, dict):
        return tuple(s for value in obj.values() for s in _shapes(value))
    if isinstance(obj, list | tuple):
        return tuple(s for value in obj for s in _shapes(value))
    return ()


@dataclass
class RealForward:
    """What one real CPU training forward showed."""

    #: (module name, its n-th call) in the order the calls start; the root's call left out
    calls: list[tuple[str, int]] = field(default_factory=list)
    inputs: dict[tuple[str, int], tuple[Shape, ...]] = field(default_factory=dict)
    outputs: dict[tuple[str, int], tuple[Shape, ...]] = field(default_factory=dict)
    output_shapes: tuple[Shape, ...] = ()
    flops: int = 0
    saved_bytes: int = 0


def real_forward(model: nn.Module, case: Case) -> RealForward:
    """Run ``model`` once on a random CPU batch, in the mode it is in, with autograd on, under
    the math attention backend: module hooks, FlopCounterMode and saved-tensor hooks at once."""
    seen = RealForward()
    names = {id(m): n for n, m in model.named_modules()}
    counts: dict[int, int] = {}
    running: list[tuple[str, int] | None] = []

    def pre_hook(module: nn.Module, args: Any, kwargs: Any) -> None:
        if module is model:
            running.append(None)
            return
        call = counts.get(id(module), 0)
        counts[id(module)] = call + 1
        key = (names.get(id(module), f"<unnamed {type(module).__name__}>"), call)
        seen.calls.append(key)
        seen.inputs[key] = _shapes((args, kwargs))
        running.append(key)

    def hook(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        key = running.pop()
        if key is not None:
            seen.outputs[key] = _shapes(output)

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    kept: list[torch.Tensor] = []  # alive until the end, so that no storage address is reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        # Detached, here and in what is returned: autograd keeps this hook and what it returns
        # in the graph, so a tensor with its grad_fn would close a cycle through C++ that the
        # garbage collector cannot see, and every model's activations would stay in memory.
        t = t.detach()
        kept.append(t)
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    x = torch.randn(case.batch, *case.input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with (torch.enable_grad(), sdpa_kernel(SDPBackend.MATH),
              FlopCounterMode(display=False) as counter,
              torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)):
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    seen.output_shapes = _shapes(output)
    seen.flops = int(counter.get_total_flops())
    seen.saved_bytes = sum(saved.values())
    return seen


# -- one model, swept once for every check ----------------------------------------------------

@dataclass
class Sweep:
    """One model's report, its oracles and what happened on the way."""

    case: Case
    params: int
    unpublished: int
    before: dict[str, Any]
    after: dict[str, Any]
    report: Report | None
    inspect_error: str | None
    real: RealForward | None
    forward_error: str | None
    seconds: dict[str, float]

    def traced(self) -> Report:
        assert self.report is not None, f"inspect raised: {self.inspect_error}"
        return self.report

    def ran(self) -> RealForward:
        assert self.real is not None, f"the real forward after inspect raised: {self.forward_error}"
        return self.real


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ArchscopeError):
        return f"{type(exc).__name__}: {exc}"
    return "".join(traceback.format_exception(exc))


def sweep(case: Case, forward: Callable[[nn.Module, Case], RealForward] = real_forward,
          trace: str = "meta") -> Sweep:
    """Build, snapshot, inspect (``trace="real"``: for real, on the CPU), snapshot again, then
    run the real forward."""
    clock = {"start": time.perf_counter()}
    model = case.build()
    if case.kind == "detection":
        model.eval()  # a detection model in training mode needs targets
    params = sum(p.numel() for p in model.parameters())
    unpublished = unpublished_params(case, model)
    clock["built"] = time.perf_counter()
    before = state_of(model)
    report = inspect_error = None
    try:
        report = archscope.inspect(model, case.input_shape, batch=case.batch, name=case.name,
                                   trace="real" if trace == "real" else "meta",
                                   device="cpu" if trace == "real" else None)
    except Exception as exc:
        inspect_error = _describe(exc)
    clock["inspected"] = time.perf_counter()
    after = state_of(model)
    real = forward_error = None
    try:
        real = forward(model, case)
    except Exception as exc:
        forward_error = _describe(exc)
    clock["ran"] = time.perf_counter()
    seconds = {"build": clock["built"] - clock["start"],
               "inspect": clock["inspected"] - clock["built"],
               "real forward": clock["ran"] - clock["inspected"]}
    return Sweep(case, params, unpublished, before, after, report, inspect_error, real,
                 forward_error, seconds)


@pytest.fixture(scope="module", params=FULL + DETECTION, ids=lambda case: case.name)
def swept(request: pytest.FixtureRequest) -> Sweep:
    # Module scope with parameters: pytest runs every check of one model before building the next.
    # The detection models (eval mode, traced for real) come last.
    return sweep(request.param, trace=request.param.trace)


def test_parameters(swept: Sweep) -> None:
    report = swept.traced()
    assert report.total_params == swept.params
    assert sum(row.params for row in report.layers) == report.total_params
    published = swept.case.published_params()
    assert published, f"no published weights for {swept.case.name} at {swept.case.input_shape}"
    assert published == {report.total_params - swept.unpublished}


def test_module_shapes(swept: Sweep) -> None:
    report, real = swept.traced(), swept.ran()
    assert real.calls, "the real forward called no submodule"
    module_rows = [row for row in report.layers if row.kind == Kind.MODULE]
    called = [row for row in module_rows if (row.name, row.call) in real.outputs]
    # rows for modules the forward never called (nn.MultiheadAttention's out_proj) have no shapes
    uncalled = [row.name for row in module_rows
                if (row.name, row.call) not in real.outputs and (row.input_shapes or row.output_shapes)]
    assert not uncalled, f"rows with shapes for calls the real forward did not make: {uncalled[:5]}"
    assert [(row.name, row.call) for row in called] == real.calls
    wrong = [f"{row.name} (call {row.call}): {row.input_shapes} → {row.output_shapes}, real "
             f"{real.inputs[row.name, row.call]} → {real.outputs[row.name, row.call]}"
             for row in called
             if (row.input_shapes, row.output_shapes)
             != (real.inputs[row.name, row.call], real.outputs[row.name, row.call])]
    assert not wrong, f"{len(wrong)} of {len(called)} calls differ: " + "; ".join(wrong[:5])
    assert report.output_shapes == real.output_shapes


def test_macs(swept: Sweep) -> None:
    report, real = swept.traced(), swept.ran()
    assert real.flops > 0
    assert report.total_macs * 2 == real.flops
    assert report.forward_flops == real.flops


def test_activation_bytes(swept: Sweep) -> None:
    report, real = swept.traced(), swept.ran()
    assert real.saved_bytes > 0
    assert report.activation_bytes == real.saved_bytes


def _unchanged(result: Sweep) -> None:
    """The model is as ``inspect`` found it, and a real forward runs after it."""
    problems = changes(result.before, result.after)
    if problems:
        problems = [f"inspect changed {len(problems)} entries: " + "; ".join(problems[:3])]
    if result.forward_error is not None:
        problems.append("the real forward after inspect raised "
                        + result.forward_error.strip().splitlines()[-1])
    assert not problems, "\n".join(problems)


def test_model_unchanged(swept: Sweep, request: pytest.FixtureRequest) -> None:
    # where the time goes, for --junitxml (docs/summary.md's per-family timings)
    request.node.user_properties.extend((f"{k} s", round(v, 2)) for k, v in swept.seconds.items())
    _unchanged(swept)


def _detection_forward(model: nn.Module, case: Case) -> RealForward:
    """The user's call of a detection model: a list of images, without autograd."""
    image = torch.rand(case.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model([image])
    return RealForward()


@pytest.mark.parametrize("case", DETECTION, ids=lambda case: case.name)
def test_detection_meta_trace(case: Case) -> None:
    """On the meta device: a one-line error that suggests the real trace; the model unchanged."""
    result = sweep(case, _detection_forward)
    assert result.inspect_error is not None, "the meta trace of a detection model ran"
    assert "Traceback" not in result.inspect_error, result.inspect_error
    assert "\n" not in result.inspect_error.strip(), result.inspect_error
    assert "--trace real" in result.inspect_error
    _unchanged(result)


@pytest.mark.parametrize("name", ONNX_ROUND_TRIP)
def test_onnx_round_trip(name: str, tmp_path: Path) -> None:
    case = next(case for case in FULL if case.name == name)
    model = case.build()
    params = sum(p.numel() for p in model.parameters())
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, case.input_shape, name=name)
    result = CliRunner().invoke(main, ["summary", str(path), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["total_params"] == params
