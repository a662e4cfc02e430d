"""Initialization schemes against ``torch.nn.init``: fans, formulas, and the weights drawn.

Oracles: ``torch.nn.init._calculate_fan_in_and_fan_out``, the std of a large tensor drawn by
``torch.nn.init``'s own initializer (LeCun has none: ``kaiming_*_`` with ``nonlinearity='linear'``,
gain 1, is LeCun's variance 1/fan_in), and the formulas worked out by hand below.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archscope.stats import InitSchemeError, fans, formula, model_stats, parse_scheme, parse_schemes
from archscope.stats.initialize import apply_scheme
from archscope.stats.schemes import SCHEME_NAMES

#: Large weights, so that a drawn tensor's std is within 1% of the scheme's (the std of n normal
#: draws is off by about 1/√(2n): 0.03% for a million).
CONV = (256, 128, 3, 3)  # fan_in 3·3·128 = 1152, fan_out 3·3·256 = 2304; 294,912 values
LINEAR = (1024, 1024)  # fan_in = fan_out = 1024; 1,048,576 values


def _torch_draw(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor drawn by torch.nn.init's own initializer for the scheme ``name``."""
    w = torch.empty(shape)
    g = torch.Generator().manual_seed(1)
    draw = {
        "lecun_normal": lambda: nn.init.kaiming_normal_(w, nonlinearity="linear", generator=g),
        "lecun_uniform": lambda: nn.init.kaiming_uniform_(w, nonlinearity="linear", generator=g),
        "xavier_normal": lambda: nn.init.xavier_normal_(w, generator=g),
        "xavier_uniform": lambda: nn.init.xavier_uniform_(w, generator=g),
        "he_normal": lambda: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g),
        "he_uniform": lambda: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g),
        "normal:0.05": lambda: nn.init.normal_(w, 0.0, 0.05, generator=g),
        "uniform:0.2": lambda: nn.init.uniform_(w, -0.2, 0.2, generator=g),
    }[name]
    draw()
    return w


NAMED = ["lecun_normal", "lecun_uniform", "xavier_normal", "xavier_uniform", "he_normal",
         "he_uniform", "normal:0.05", "uniform:0.2"]


@pytest.mark.parametrize("shape", [CONV, LINEAR, (64, 32, 3, 3), (10, 784), (8, 4, 5),
                                   (16, 3, 2, 3, 3)], ids=str)
def test_fans_equal_torch(shape: tuple[int, ...]) -> None:
    fan = fans(shape)
    assert (fan.fan_in, fan.fan_out) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fan_arithmetic_is_written_out() -> None:
    # A conv with 32 input and 64 output channels and a 3×3 kernel: 3·3·32 = 288 in, 3·3·64 = 576 out.
    fan = fans((64, 32, 3, 3))
    assert (fan.fan_in, fan.fan_out) == (3 * 3 * 32, 3 * 3 * 64) == (288, 576)
    assert fan.text("in") == "3·3·32 = 288" and fan.text("out") == "3·3·64 = 576"
    linear = fans((100, 784))
    assert linear.text("in") == "784" and linear.text("out") == "100"


def test_formulas_with_numbers_filled_in() -> None:
    conv = fans((64, 32, 3, 3))
    he = formula(parse_scheme("he_normal"), conv)
    assert he is not None and he.text == "He normal: std = √(2/fan_in) = √(2/288) = 0.0833"
    assert he.value == pytest.approx(math.sqrt(2 / 288))  # 0.08333
    xu = formula(parse_scheme("xavier_uniform"), conv)
    assert xu is not None
    assert xu.text == "Xavier uniform: limit = √(6/(fan_in+fan_out)) = √(6/(288+576)) = 0.0833"
    assert xu.value == pytest.approx(math.sqrt(6 / 864))  # also 0.08333
    assert xu.std == pytest.approx(xu.value / math.sqrt(3))  # U(−a, a) has variance a²/3
    # LeCun uniform: the standard bound √(3/fan_in) (variance 1/fan_in), not the lecture's √(1/fan_in).
    lu = formula(parse_scheme("lecun_uniform"), conv)
    assert lu is not None and lu.text == "LeCun uniform: limit = √(3/fan_in) = √(3/288) = 0.102"
    assert lu.std ** 2 == pytest.approx(1 / 288)
    ln = formula(parse_scheme("lecun_normal"), conv)
    assert ln is not None and ln.text == "LeCun normal: std = √(1/fan_in) = √(1/288) = 0.0589"
    hu = formula(parse_scheme("he_uniform"), fans((100, 784)))
    assert hu is not None and hu.text == "He uniform: limit = √(6/fan_in) = √(6/784) = 0.0875"
    xn = formula(parse_scheme("xavier_normal"), fans((100, 784)))
    assert xn is not None
    assert xn.text == "Xavier normal: std = √(2/(fan_in+fan_out)) = √(2/(784+100)) = 0.0476"
    assert formula(parse_scheme("normal:0.01"), conv).text == "Normal: std = 0.01"  # type: ignore[union-attr]
    assert formula(parse_scheme("zeros"), conv).text == "Zeros: w = 0"  # type: ignore[union-attr]
    assert formula(parse_scheme("default"), conv) is None


@pytest.mark.parametrize("shape", [CONV, LINEAR], ids=["conv", "linear"])
@pytest.mark.parametrize("name", NAMED)
def test_scheme_std_against_torch_nn_init(name: str, shape: tuple[int, ...]) -> None:
    scheme = parse_scheme(name)
    drawn = formula(scheme, fans(shape))
    assert drawn is not None
    printed = float(drawn.text.rsplit("= ", 1)[1])  # the figure as the table shows it
    theirs = _torch_draw(name, shape)
    if drawn.quantity == "limit":
        # torch's bound is the largest |w|; the std of U(−a, a) is a/√3
        assert theirs.abs().max().item() == pytest.approx(printed, rel=0.01)
        assert theirs.abs().max().item() <= drawn.value * (1 + 1e-6)
    assert theirs.std().item() == pytest.approx(drawn.std, rel=0.01)
    # and what archscope itself draws into a layer of that shape
    layer = nn.Conv2d(shape[1], shape[0], shape[2:]) if len(shape) == 4 else nn.Linear(*shape[::-1])
    (record,) = apply_scheme(layer, scheme, torch.Generator().manual_seed(2))
    assert record.weight_std == pytest.approx(drawn.std, rel=0.01)
    assert layer.weight.std().item() == pytest.approx(theirs.std().item(), rel=0.01)
    assert record.expected_std == drawn.std and record.formula == drawn.text
    assert record.bias == "zero" and torch.all(layer.bias == 0)


def test_zeros_and_default() -> None:
    layer = nn.Linear(20, 10)
    before = layer.weight.detach().clone()
    (kept,) = apply_scheme(layer, parse_scheme("default"))
    assert torch.equal(layer.weight, before) and kept.bias == "kept" and kept.formula is None
    assert kept.weight_std == pytest.approx(before.std(correction=0).item())
    (zero,) = apply_scheme(layer, parse_scheme("zeros"))
    assert torch.all(layer.weight == 0) and torch.all(layer.bias == 0) and zero.weight_std == 0


def test_grouped_and_transposed_convs_use_torchs_fans() -> None:
    grouped = nn.Conv2d(32, 64, 3, groups=4, bias=False)  # weight (64, 8, 3, 3): fan_in 3·3·8 = 72
    (record,) = apply_scheme(grouped, parse_scheme("he_normal"))
    assert (record.fan_in, record.fan_out) == (72, 576) and record.bias == "none"
    transposed = nn.ConvTranspose2d(16, 8, 2)  # weight (16, 8, 2, 2): torch takes dim 1 as fan_in
    (record,) = apply_scheme(transposed, parse_scheme("he_normal"))
    expected = nn.init._calculate_fan_in_and_fan_out(transposed.weight)
    assert (record.fan_in, record.fan_out) == expected == (2 * 2 * 8, 2 * 2 * 16)


def test_scheme_names_parse() -> None:
    for name in SCHEME_NAMES:
        text = name.replace("STD", "0.5").replace("LIMIT", "0.5")
        assert parse_scheme(text).name == text
    assert parse_scheme("Kaiming-Normal").name == "he_normal"
    assert parse_scheme("glorot_uniform").name == "xavier_uniform"
    assert [s.name for s in parse_schemes("normal:1, normal:0.01,xavier_normal")] == [
        "normal:1", "normal:0.01", "xavier_normal"]


@pytest.mark.parametrize(("text", "message"), [
    ("he_normla", "unknown init scheme 'he_normla'; did you mean he_normal? (choose from default, "
                  "lecun_normal"),
    ("normal:abc", "normal:abc: STD must be a positive number, e.g. normal:0.01"),
    ("normal:", "normal:: STD must be a positive number"),
    ("uniform:-1", "uniform:-1: LIMIT must be a positive number, e.g. uniform:0.01"),
    ("normal:nan", "STD must be a positive number"),
    ("normal", "normal needs its STD: write normal:STD, e.g. normal:0.01"),
    ("he_normal,he_normal", "he_normal is named twice"),
    ("he_normal,", "an empty scheme between commas"),
    ("orthogonal", "unknown init scheme 'orthogonal'"),
])
def test_bad_schemes_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(InitSchemeError) as info:
        parse_schemes(text)
    assert message in str(info.value)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_a_model_without_weights_says_the_scheme_cannot_apply() -> None:
    pool = nn.Sequential(nn.MaxPool2d(2), nn.Flatten())
    run = model_stats(pool, (1, 4, 4), scheme="he_normal", batch=2, name="pool")
    assert run.skipped == "he_normal cannot apply to pool: it has no Linear or Conv weight to draw"
    assert run.layers == () and run.init == ()
    # the model's own (no) initialization still runs: the gradient follows the input
    own = model_stats(pool, (1, 4, 4), batch=2, name="pool")
    assert own.skipped is None and [r.type for r in own.layers] == ["MaxPool2d", "Flatten"]
    assert all(r.grad_std is not None for r in own.layers)
