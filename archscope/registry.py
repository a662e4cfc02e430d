"""The zoo's catalogue: model name → builder, default input, reference parameter count and the
batches ``archscope bench`` trains it at by default: each model's facts in one place.

The table is plain data so that ``archscope list`` and ``--help`` never import torch; a builder's
module is imported only when the model is built.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope.errors import UnknownModelError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class BenchBatch:
    """The batch ``archscope bench`` trains a model at when ``--batch-size`` is not given.

    Attributes:
        cuda: on a GPU: keeps a data-centre GPU busy without running out of memory on a 24 GB L4
            at bf16 (the reference runs: resnet50 256, vgg16 128, alexnet 512); small models get
            big batches so that the step is not dominated by kernel launches.
        cpu: on the CPU (CI runners, laptops): small, so that a run takes seconds.
    """

    cuda: int = 64
    cpu: int = 4

    def on(self, device_type: str) -> int:
        """The batch for ``device_type`` (``cuda`` or ``cpu``)."""
        return self.cuda if device_type == "cuda" else self.cpu


#: The default batches of a model that is not in the zoo.
GENERIC_BENCH_BATCH = BenchBatch()


@dataclass(frozen=True)
class ModelEntry:
    """One zoo model.

    Attributes:
        name: the name users type (``vgg16``).
        family: ``lecture``, ``alexnet``, ``vgg`` or ``resnet``.
        builder: ``"module:function"`` of the builder; it takes ``num_classes`` and keyword options.
        input_shape: the natural input, C×H×W.
        params: the published parameter count at the default ``num_classes``.
        params_source: where ``params`` comes from.
        description: one line for ``archscope list``.
        kwargs: fixed keyword arguments passed to the builder.
        bench_batch: the batches ``archscope bench`` trains it at by default.
        base: the last top-level module of its convolutional base (``features`` for VGG,
            AlexNet and the lecture CNNs, ``layer4`` for ResNet: everything before ``avgpool``),
            what ``--head`` keeps; ``None`` for a model without one (``lecture_mlp``).
    """

    name: str
    family: str
    builder: str
    input_shape: tuple[int, int, int]
    params: int
    params_source: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    bench_batch: BenchBatch = GENERIC_BENCH_BATCH
    base: str | None = None

    def build(self, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
        """Build the model (on the current default device: wrap in ``torch.device("meta")``)."""
        module_name, _, func_name = self.builder.partition(":")
        func = getattr(importlib.import_module(module_name), func_name)
        options = {**self.kwargs, **kwargs}
        if num_classes is not None:
            options["num_classes"] = num_classes
        model: nn.Module = func(**options)
        return model


_TV = "torchvision.models documentation (weights table)"
# batch 4 makes AlexNet's loss jump about on the CPU
_ALEXNET_BATCH = BenchBatch(cuda=512, cpu=16)

_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry(
        "lecture_mnist_cnn", "lecture", "archscope.zoo.lecture:lecture_mnist_cnn", (1, 28, 28),
        93_322, "lecture 003, Keras model.summary(): 320 + 18,496 + 36,928 + 36,928 + 650",
        "Keras MNIST CNN: conv32-pool-conv64-pool-conv64-dense64-dense10",
        bench_batch=BenchBatch(cuda=2048, cpu=64), base="features",
    ),
    ModelEntry(
        "lecture_catsdogs_cnn", "lecture", "archscope.zoo.lecture:lecture_catsdogs_cnn",
        (3, 150, 150), 3_453_121, "lecture 000, Keras model.summary() (Dense512 alone 3,211,776)",
        "cats-vs-dogs CNN: 4×(conv3×3 + maxpool2), dense512, dense1",
        bench_batch=BenchBatch(cuda=256, cpu=16), base="features",
    ),
    ModelEntry(
        "lecture_mlp", "lecture", "archscope.zoo.lecture:lecture_mlp", (1, 28, 28), 45_360,
        "lecture 002: (784+1)·50 + (50+1)·100 + (100+1)·10",
        "MNIST MLP 784-50-100-10 with sigmoid",
        bench_batch=BenchBatch(cuda=2048, cpu=64),
    ),
    ModelEntry(
        "lecture_multitask", "lecture", "archscope.zoo.lecture:lecture_multitask", (3, 200, 200),
        266_055, "archscope's own design (lecture 000's three-headed age/sex/race network)",
        "shared conv base with age, sex and race heads (dict output)",
        bench_batch=BenchBatch(cuda=256), base="features",
    ),
    ModelEntry(
        "alexnet", "alexnet", "archscope.zoo.alexnet:alexnet", (3, 227, 227), 62_378_344,
        "Krizhevsky et al. 2012 layer sizes, single tower (two GPUs: alexnet_2gpu)",
        "AlexNet as taught: 96-256-384-384-256, LRN, overlapping pooling, dropout",
        bench_batch=_ALEXNET_BATCH, base="features",
    ),
    ModelEntry(
        "alexnet_2gpu", "alexnet", "archscope.zoo.alexnet:alexnet_2gpu", (3, 227, 227), 60_965_224,
        "Krizhevsky et al. 2012, two GPUs: conv2, conv4, conv5 grouped (lecture 004's 3×3×192)",
        "AlexNet as in the paper's Figure 2: conv2/4/5 with groups=2 (the two-GPU split)",
        bench_batch=_ALEXNET_BATCH, base="features",
    ),
    ModelEntry(
        "alexnet_torchvision", "alexnet", "archscope.zoo.alexnet:alexnet_torchvision",
        (3, 224, 224), 61_100_840, _TV,
        "torchvision's AlexNet ('One weird trick' layout: 64-192-384-256-256)",
        bench_batch=_ALEXNET_BATCH, base="features",
    ),
    *(
        ModelEntry(
            f"vgg{depth}{suffix}", "vgg", f"archscope.zoo.vgg:vgg{depth}{suffix}", (3, 224, 224),
            params, _TV,
            f"VGG-{depth}{' with batch norm' if suffix else ''} (Simonyan & Zisserman 2014)",
            bench_batch=BenchBatch(cuda=128), base="features",
        )
        for depth, suffix, params in (
            (11, "", 132_863_336), (11, "_bn", 132_868_840),
            (13, "", 133_047_848), (13, "_bn", 133_053_736),
            (16, "", 138_357_544), (16, "_bn", 138_365_992),
            (19, "", 143_667_240), (19, "_bn", 143_678_248),
        )
    ),
    *(
        ModelEntry(
            f"resnet{depth}", "resnet", f"archscope.zoo.resnet:resnet{depth}", (3, 224, 224),
            params, _TV,
            f"ResNet-{depth} v1.5 ({'basic' if depth < 50 else 'bottleneck'} blocks, He et al. 2015)",
            bench_batch=BenchBatch(cuda=256 if depth <= 50 else 128), base="layer4",
        )
        for depth, params in (
            (18, 11_689_512), (34, 21_797_672), (50, 25_557_032),
            (101, 44_549_160), (152, 60_192_808),
        )
    ),
    *(
        ModelEntry(
            f"plain{depth}", "resnet", f"archscope.zoo.resnet:plain{depth}", (3, 224, 224),
            params, f"resnet{depth}'s {resnet:,} minus its 3 downsample projections (173,824)",
            f"plain {depth}-layer net: ResNet-{depth} without shortcuts (He et al. 2015, §4.1)",
        )
        for depth, resnet, params in ((18, 11_689_512, 11_515_688), (34, 21_797_672, 21_623_848))
    ),
)

_BY_NAME: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}


def list_models() -> list[ModelEntry]:
    """Every zoo model, in catalogue order."""
    return list(_ENTRIES)


def model_names() -> list[str]:
    return [e.name for e in _ENTRIES]


def bench_batch(name: str) -> BenchBatch:
    """The default bench batches of the zoo model called exactly ``name``, else the generic ones
    (a model from a file, a module or a spec)."""
    entry = _BY_NAME.get(name)
    return entry.bench_batch if entry is not None else GENERIC_BENCH_BATCH


def check_names(sources: Sequence[str]) -> None:
    """Fail before anything runs if a source that can only be a zoo name is not one.

    Sources with a ``:`` (``file.py:Name``, ``package.module:name``, ``spec:…``) or ending in
    ``.onnx`` are other kinds of source and are left to the loader.

    Raises:
        UnknownModelError: for the first unknown zoo name, with the closest names.
    """
    for source in sources:
        if ":" not in source and not source.lower().endswith(".onnx"):
            get_entry(source)


def get_entry(name: str) -> ModelEntry:
    """Look a model up by name (case-insensitive, ``-`` and ``_`` alike).

    Raises:
        UnknownModelError: with the closest names, when ``name`` is not in the zoo.
    """
    key = name.strip().lower().replace("-", "_")
    if key in _BY_NAME:
        return _BY_NAME[key]
    spec = spec_hint(name)
    if spec:
        raise UnknownModelError(f"unknown model {name!r}: {spec}")
    if key.endswith(".py") or "/" in name or "\\" in name:
        from archscope.pyfile import name_hint

        hint = name_hint(name) if key.endswith(".py") and Path(name).is_file() else ""
        if hint:
            raise UnknownModelError(
                f"unknown model {name!r}: name the model after a colon: {hint}"
            )
        stem = name.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py") or "net"
        raise UnknownModelError(
            f"unknown model {name!r}: a model in a Python file is named with the class or "
            f"function after a colon, path/to/file.py:Name (e.g. {name}:{stem.capitalize()})"
        )
    close = difflib.get_close_matches(key, list(_BY_NAME), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}{hint} (`archscope list` shows all {len(_BY_NAME)} models)"
    )


#: a layer spec's start: a size such as ``28x28x1`` or ``chw:3x32x32``, then a space.
_SPEC_START = re.compile(r"^\s*(?:(?:chw|hwc):)?\d+(?:\s*[x×*]\s*\d+)*\s")


def spec_hint(source: str) -> str:
    """What to type when ``source``, given as a MODEL, is a layer spec without ``spec:``
    (``28x28x1 conv32 k3 flatten dense10``): ``""`` when it does not look like one.

    It looks like one when it has a space and parses as a spec (:func:`archscope.spec.parse`),
    or starts with a size and a space.
    """
    text = " ".join(source.split())
    if " " not in text or text.startswith("spec:"):
        return ""
    looks = bool(_SPEC_START.match(text))
    if not looks:
        from archscope.errors import SpecSyntaxError
        from archscope.spec import parse

        try:
            looks = parse(text).input_dims is not None
        except SpecSyntaxError:
            looks = False
    if not looks:
        return ""
    return (f"it looks like a layer spec; write 'spec:{text}' as the MODEL, or count it with "
            f"archscope calc '{text}'")
