"""The zoo against independent oracles: published counts, torchvision's state_dict layout, and real
CPU forward passes. Models are built on the meta device unless a test needs real numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from archscope import registry
from archscope.registry import ModelEntry

# Published parameter counts at the default num_classes, written out here (not read from the
# registry). torchvision: the "Params" column of https://pytorch.org/vision/stable/models.html.
# Lectures: the Keras model.summary() totals in the notes. AlexNet paper: the 2012 layer sizes.
PUBLISHED: dict[str, int] = {
    "lecture_mnist_cnn": 93_322,  # 320 + 18,496 + 36,928 + 36,928 + 650
    "lecture_catsdogs_cnn": 3_453_121,  # Chollet §5.2; Dense512 alone 3,211,776
    "lecture_mlp": 45_360,  # (784+1)·50 + (50+1)·100 + (100+1)·10
    "lecture_multitask": 266_055,  # archscope's design: 240,832 base + 25,223 heads (see below)
    "alexnet": 62_378_344,  # Krizhevsky 2012, one tower (per-layer sum in a test below)
    "alexnet_2gpu": 60_965_224,  # the paper's two GPUs: conv2/4/5 grouped (sum in a test below)
    "alexnet_torchvision": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    # ResNet-18/34 minus their three downsample projections, 8,448 + 33,280 + 132,096 = 173,824
    # (1×1 conv 64·128 + BN 2·128, 128·256 + 2·256, 256·512 + 2·512): tests/test_stats_plain.py
    "plain18": 11_515_688,  # 11,689,512 − 173,824
    "plain34": 21_623_848,  # 21,797,672 − 173,824
}

ENTRIES = registry.list_models()


def _ids(entry: ModelEntry) -> str:
    return entry.name


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(entry: ModelEntry, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    with torch.device("meta"):
        return entry.build(num_classes=num_classes, **kwargs)


def _build(name: str, **kwargs: Any) -> nn.Module:
    """A zoo model with real weights on the CPU."""
    return registry.get_entry(name).build(**kwargs)


def test_every_registry_model_has_a_published_count() -> None:
    assert sorted(PUBLISHED) == sorted(e.name for e in ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_params_equal_published(entry: ModelEntry) -> None:
    model = _meta(entry)
    assert all(p.is_meta for p in model.parameters()), "built on meta: no weights allocated"
    assert _count(model) == PUBLISHED[entry.name]
    assert entry.params == PUBLISHED[entry.name]


def _last_dims(out: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    if isinstance(out, dict):
        return {k: tuple(v.shape) for k, v in out.items()}
    return {"out": tuple(out.shape)}


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_num_classes(entry: ModelEntry) -> None:
    model = _meta(entry, num_classes=7)
    with torch.device("meta"):
        out = model(torch.empty(1, *entry.input_shape))
    dims = _last_dims(out)
    if entry.name == "lecture_multitask":
        assert dims == {"age": (1, 1), "sex": (1, 1), "race": (1, 7)}
    else:
        assert dims == {"out": (1, 7)}


# --- real CPU forward passes (batch 1, real weights) -------------------------------------------

CPU_FORWARD: list[tuple[str, tuple[int, int, int], dict[str, tuple[int, ...]]]] = [
    ("lecture_mnist_cnn", (1, 28, 28), {"out": (1, 10)}),
    ("lecture_catsdogs_cnn", (3, 150, 150), {"out": (1, 1)}),
    ("lecture_mlp", (1, 28, 28), {"out": (1, 10)}),
    ("lecture_multitask", (3, 200, 200), {"age": (1, 1), "sex": (1, 1), "race": (1, 5)}),
    ("alexnet", (3, 227, 227), {"out": (1, 1000)}),
    ("alexnet_torchvision", (3, 224, 224), {"out": (1, 1000)}),
    ("vgg16", (3, 64, 64), {"out": (1, 1000)}),
    ("resnet50", (3, 64, 64), {"out": (1, 1000)}),
]


@pytest.mark.parametrize(
    ("name", "shape", "expected"), CPU_FORWARD, ids=[n for n, *_ in CPU_FORWARD]
)
def test_cpu_forward_shapes(
    name: str, shape: tuple[int, int, int], expected: dict[str, tuple[int, ...]]
) -> None:
    torch.manual_seed(0)
    model = _build(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, *shape))
    assert _last_dims(out) == expected
    for v in out.values() if isinstance(out, dict) else [out]:
        assert torch.isfinite(v).all()


def _spatial_sizes(model: nn.Module, shape: tuple[int, ...]) -> list[int]:
    """Output height of every conv and max-pool, in call order, from a real CPU forward."""
    sizes: list[int] = []

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        assert out.shape[-1] == out.shape[-2]
        sizes.append(out.shape[-1])

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d))
    ]
    with torch.no_grad():
        model(torch.randn(1, *shape))
    for h in handles:
        h.remove()
    return sizes


def test_lecture_shapes() -> None:
    # Lecture 003's summary: 26 → 13 → 11 → 5 → 3; lecture 000: (150 − 3)/1 + 1 = 148, then …
    mnist, catsdogs = _build("lecture_mnist_cnn"), _build("lecture_catsdogs_cnn")
    assert _spatial_sizes(mnist, (1, 28, 28)) == [26, 13, 11, 5, 3]
    assert _spatial_sizes(catsdogs, (3, 150, 150)) == [148, 74, 72, 36, 34, 17, 15, 7]
    multitask = _build("lecture_multitask")
    assert _spatial_sizes(multitask, (3, 200, 200)) == [198, 99, 97, 48, 46, 23, 21, 10]


def test_alexnet_shapes() -> None:
    # Paper: 227 → conv1 55 → pool 27 → conv2 27 → pool 13 → conv3..5 13 → pool 6.
    for groups in (1, 2):
        model = _meta(registry.get_entry("alexnet"), groups=groups)
        with torch.device("meta"):
            assert _spatial_sizes(model, (3, 227, 227)) == [
                55, 27, 27, 13, 13, 13, 13, 6,
            ]  # fmt: skip


# --- per-layer counts, with the lecture's arithmetic -------------------------------------------

LECTURE_LAYERS: dict[str, list[tuple[str, int, int]]] = {
    # (module, arithmetic, published)
    "lecture_mnist_cnn": [
        ("features.conv1", (3 * 3 * 1 + 1) * 32, 320),
        ("features.conv2", (3 * 3 * 32 + 1) * 64, 18_496),
        ("features.conv3", (3 * 3 * 64 + 1) * 64, 36_928),
        ("classifier.fc1", (3 * 3 * 64 + 1) * 64, 36_928),
        ("classifier.fc2", (64 + 1) * 10, 650),
    ],
    "lecture_catsdogs_cnn": [
        ("features.conv1", (3 * 3 * 3 + 1) * 32, 896),
        ("features.conv2", (3 * 3 * 32 + 1) * 64, 18_496),
        ("features.conv3", (3 * 3 * 64 + 1) * 128, 73_856),
        ("features.conv4", (3 * 3 * 128 + 1) * 128, 147_584),
        ("classifier.fc1", (7 * 7 * 128 + 1) * 512, 3_211_776),
        ("classifier.fc2", (512 + 1) * 1, 513),
    ],
    "lecture_mlp": [
        ("fc1", (784 + 1) * 50, 39_250),
        ("fc2", (50 + 1) * 100, 5_100),
        ("fc3", (100 + 1) * 10, 1_010),
    ],
    "lecture_multitask": [
        ("features.conv1", (3 * 3 * 3 + 1) * 32, 896),
        ("features.conv2", (3 * 3 * 32 + 1) * 64, 18_496),
        ("features.conv3", (3 * 3 * 64 + 1) * 128, 73_856),
        ("features.conv4", (3 * 3 * 128 + 1) * 128, 147_584),
        ("age", (128 + 1) * 64 + (64 + 1) * 1, 8_321),
        ("sex", (128 + 1) * 64 + (64 + 1) * 1, 8_321),
        ("race", (128 + 1) * 64 + (64 + 1) * 5, 8_581),
    ],
}


@pytest.mark.parametrize("name", sorted(LECTURE_LAYERS))
def test_lecture_layer_counts(name: str) -> None:
    model = _meta(registry.get_entry(name))
    rows = LECTURE_LAYERS[name]
    for module, arithmetic, published in rows:
        assert arithmetic == published, module
        assert _count(model.get_submodule(module)) == published, module
    # The listed layers are all the parameters there are.
    assert sum(published for _, _, published in rows) == PUBLISHED[name]


def test_alexnet_layer_counts() -> None:
    one = [
        (11 * 11 * 3 + 1) * 96,  # conv1     34,944
        (5 * 5 * 96 + 1) * 256,  # conv2    614,656
        (3 * 3 * 256 + 1) * 384,  # conv3    885,120
        (3 * 3 * 384 + 1) * 384,  # conv4  1,327,488
        (3 * 3 * 384 + 1) * 256,  # conv5    884,992
        (6 * 6 * 256 + 1) * 4096,  # FC6 37,752,832
        (4096 + 1) * 4096,  # FC7           16,781,312
        (4096 + 1) * 1000,  # FC8            4,097,000
    ]
    # groups=2: conv2, conv4, conv5 see half the input channels (the other GPU's maps are unseen).
    two = [*one]
    two[1] = (5 * 5 * 48 + 1) * 256
    two[3] = (3 * 3 * 192 + 1) * 384
    two[4] = (3 * 3 * 192 + 1) * 256
    assert sum(one) == 62_378_344
    assert sum(two) == 60_965_224
    for groups, expected in ((1, one), (2, two)):
        model = _meta(registry.get_entry("alexnet"), groups=groups)
        weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert [_count(m) for m in weighted] == expected
        assert _count(model) == sum(expected)


def test_alexnet_2gpu_is_the_papers_two_gpu_network() -> None:
    # Lecture 004 lists conv4 and conv5 as 3×3×192 kernels: each GPU's 192 of conv3's 384 maps.
    # Per layer (kh·kw·c_in/groups + 1)·c_out, groups=2 on conv2, conv4 and conv5:
    published = [
        (11 * 11 * 3 + 1) * 96,  # conv1       34,944
        (5 * 5 * 48 + 1) * 256,  # conv2      307,456  (5×5×48: half of conv1's 96 maps)
        (3 * 3 * 256 + 1) * 384,  # conv3     885,120  (across GPUs)
        (3 * 3 * 192 + 1) * 384,  # conv4     663,936  (3×3×192)
        (3 * 3 * 192 + 1) * 256,  # conv5     442,624  (3×3×192)
        (6 * 6 * 256 + 1) * 4096,  # FC6   37,752,832
        (4096 + 1) * 4096,  # FC7          16,781,312
        (4096 + 1) * 1000,  # FC8           4,097,000
    ]
    assert published[1:5] == [307_456, 885_120, 663_936, 442_624]
    assert sum(published) == 60_965_224
    model = _meta(registry.get_entry("alexnet_2gpu"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [tuple(c.weight.shape[1:]) for c in convs][3:] == [(192, 3, 3), (192, 3, 3)]
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [_count(m) for m in weighted] == published
    # same layout and module names as `alexnet`: only the three grouped convs differ
    one = _meta(registry.get_entry("alexnet"))
    assert [n for n, _ in one.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert _count(one) - _count(model) == 1_413_120


def test_alexnet_rejects_other_groups() -> None:
    with pytest.raises(ValueError, match="groups"):
        _meta(registry.get_entry("alexnet"), groups=3)


def test_alexnet_paper_init() -> None:
    torch.manual_seed(0)
    model = _build("alexnet")
    # Paper §5: biases 1 in conv2, conv4, conv5 and the hidden FC layers; 0 elsewhere.
    ones = ["features.4", "features.10", "features.12", "classifier.1", "classifier.4"]
    zeros = ["features.0", "features.8", "classifier.6"]
    for name in ones:
        assert torch.all(model.get_parameter(f"{name}.bias") == 1), name
    for name in zeros:
        assert torch.all(model.get_parameter(f"{name}.bias") == 0), name
    assert abs(model.get_parameter("classifier.1.weight").std().item() - 0.01) < 1e-3


# --- torchvision's state_dict layout -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("vgg16", ["features.0.weight", "features.28.bias", "classifier.6.weight"]),
        ("vgg16_bn", ["features.1.running_mean", "features.41.weight", "classifier.3.bias"]),
        ("resnet50", ["layer1.0.downsample.0.weight", "layer4.2.bn3.running_var", "fc.bias"]),
        ("resnet18", ["layer2.0.downsample.1.num_batches_tracked", "layer4.1.conv2.weight"]),
        ("alexnet_torchvision", ["features.10.weight", "classifier.6.bias", "classifier.1.weight"]),
        ("alexnet", ["features.12.weight", "classifier.6.bias", "classifier.4.weight"]),
    ],
)
def test_torchvision_key_names(name: str, keys: list[str]) -> None:
    state = _meta(registry.get_entry(name)).state_dict()
    for key in keys:
        assert key in state


@pytest.mark.parametrize(
    ("name", "n_keys"),
    [
        # conv1 1 + bn1 5 + 8 blocks × (2 convs + 2 BNs × 5) + 3 downsamples × (1 + 5) + fc 2
        ("resnet18", 1 + 5 + 8 * 12 + 3 * 6 + 2),  # 122
        # conv1 1 + bn1 5 + 16 blocks × (3 + 3 × 5) + 4 downsamples × 6 + fc 2
        ("resnet50", 1 + 5 + 16 * 18 + 4 * 6 + 2),  # 320
        ("vgg16", 13 * 2 + 3 * 2),  # 32: weight and bias of 13 convs and 3 linears
        ("vgg16_bn", 13 * (2 + 5) + 3 * 2),  # 97
        ("alexnet_torchvision", 5 * 2 + 3 * 2),  # 16
    ],
)
def test_state_dict_sizes(name: str, n_keys: int) -> None:
    assert len(_meta(registry.get_entry(name)).state_dict()) == n_keys


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def _torchvision_resnet18() -> dict[str, tuple[int, ...]]:
    """torchvision's resnet18 state_dict, key → shape: BasicBlock, [2, 2, 2, 2]."""
    sd: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    c_in = 64
    for stage, c in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            sd[f"{p}.conv1.weight"] = (c, c_in, 3, 3)
            sd.update(_bn(f"{p}.bn1", c))
            sd[f"{p}.conv2.weight"] = (c, c, 3, 3)
            sd.update(_bn(f"{p}.bn2", c))
            if c_in != c:
                sd[f"{p}.downsample.0.weight"] = (c, c_in, 1, 1)
                sd.update(_bn(f"{p}.downsample.1", c))
            c_in = c
    sd["fc.weight"] = (1000, 512)
    sd["fc.bias"] = (1000,)
    return sd


def _torchvision_vgg16() -> dict[str, tuple[int, ...]]:
    """torchvision's vgg16 state_dict: each conv's Sequential index, in and out channels."""
    convs = [
        (0, 3, 64), (2, 64, 64),
        (5, 64, 128), (7, 128, 128),
        (10, 128, 256), (12, 256, 256), (14, 256, 256),
        (17, 256, 512), (19, 512, 512), (21, 512, 512),
        (24, 512, 512), (26, 512, 512), (28, 512, 512),
    ]  # fmt: skip
    sd: dict[str, tuple[int, ...]] = {}
    for i, c_in, c_out in convs:
        sd[f"features.{i}.weight"] = (c_out, c_in, 3, 3)
        sd[f"features.{i}.bias"] = (c_out,)
    for i, f_in, f_out in ((0, 25088, 4096), (3, 4096, 4096), (6, 4096, 1000)):
        sd[f"classifier.{i}.weight"] = (f_out, f_in)
        sd[f"classifier.{i}.bias"] = (f_out,)
    return sd


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet18", _torchvision_resnet18()), ("vgg16", _torchvision_vgg16())],
)
def test_state_dict_matches_torchvision(name: str, expected: dict[str, tuple[int, ...]]) -> None:
    model = _meta(registry.get_entry(name))
    assert len(expected) == {"resnet18": 122, "vgg16": 32}[name]
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    # And a state_dict of exactly that layout loads with strict=True.
    fake = {
        k: torch.empty(shape, device="meta", dtype=torch.long if k.endswith("tracked") else None)
        for k, shape in expected.items()
    }
    model.load_state_dict(fake, strict=True)


# --- ResNet v1.5 details -----------------------------------------------------------------------


def _bottlenecks(model: nn.Module) -> Iterator[nn.Module]:
    """Every block of a ResNet-50/101/152 (the class of ``layer1[0]``)."""
    block = type(model.get_submodule("layer1.0"))
    return (m for m in model.modules() if isinstance(m, block))


def _stride(model: nn.Module, name: str) -> tuple[int, ...]:
    conv = model.get_submodule(name)
    assert isinstance(conv, nn.Conv2d)
    return tuple(conv.stride)


def test_resnet50_is_v1_5() -> None:
    model = _meta(registry.get_entry("resnet50"))
    # v1.5: the downsampling block strides on its 3×3 conv, not on the first 1×1.
    for stage in ("layer2", "layer3", "layer4"):
        assert _stride(model, f"{stage}.0.conv1") == (1, 1)
        assert _stride(model, f"{stage}.0.conv2") == (2, 2)
        assert _stride(model, f"{stage}.0.downsample.0") == (2, 2)
    assert sum(1 for _ in _bottlenecks(model)) == 3 + 4 + 6 + 3


def test_resnet_zero_init_residual() -> None:
    model = _build("resnet50", zero_init_residual=True)
    assert all(torch.all(b.get_parameter("bn3.weight") == 0) for b in _bottlenecks(model))


def test_alexnet_lrn_is_the_papers_formula() -> None:
    # Paper §3.3: b_i = a_i / (k + α·Σ_{j=i−n/2}^{i+n/2} a_j²)^β, k = 2, n = 5, α = 1e-4, β = 0.75.
    # PyTorch's LocalResponseNorm divides α by n, so the module must compute exactly this.
    lrn = _meta(registry.get_entry("alexnet")).get_submodule("features.2")  # no parameters
    torch.manual_seed(0)
    a = torch.randn(1, 8, 3, 3) * 10
    padded = nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))  # zero channels beyond the edges
    window = torch.stack([padded[:, i : i + 5].sum(1) for i in range(8)], 1)
    expected = a / (2 + 1e-4 * window).pow(0.75)
    torch.testing.assert_close(lrn(a), expected)


def test_real_builds_are_seeded_without_touching_the_callers_rng() -> None:
    # check, export and bench build through load_model: the same command makes the same weights
    from archscope.source import load_model

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = load_model("resnet18", device="cpu").model.state_dict()
    second = load_model("resnet18", device="cpu").model.state_dict()
    other = load_model("resnet18", device="cpu", seed=1).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["conv1.weight"], other["conv1.weight"])
    assert torch.equal(torch.random.get_rng_state(), state)
