"""Initialization schemes as arithmetic: fan_in and fan_out, and each scheme's std or bound with
its formula written out (``He normal: std = √(2/fan_in) = √(2/288) = 0.0833``).

Pure Python, no torch import: the CLI parses ``--init`` with it before anything heavy loads.

Conventions (the standard ones, which ``torch.nn.init`` implements):

* ``fan_in`` and ``fan_out`` are computed as ``torch.nn.init._calculate_fan_in_and_fan_out``
  does: for a weight of shape ``(out, in, k1, k2, …)`` the receptive field is ``k1·k2·…`` and
  ``fan_in = k1·k2·…·in``, ``fan_out = k1·k2·…·out`` (a conv with 32 input and 64 output
  channels and a 3×3 kernel: ``fan_in = 3·3·32 = 288``, ``fan_out = 3·3·64 = 576``; a
  ``Linear(784, 100)``: 784 and 100). ``in`` is the weight's second dimension, so a grouped conv
  counts its channels per group, and a transposed conv (weight ``(in, out/groups, k…)``) swaps the
  roles, as torch does.
* LeCun (1998): variance ``1/fan_in``; normal ``std = √(1/fan_in)``, uniform on ``[−a, a]`` with
  ``a = √(3/fan_in)`` (a uniform variable on ``[−a, a]`` has variance ``a²/3``).
* Xavier/Glorot (2010): variance ``2/(fan_in+fan_out)``; normal ``std = √(2/(fan_in+fan_out))``,
  uniform ``a = √(6/(fan_in+fan_out))``.
* He/Kaiming (2015), for ReLU: variance ``2/fan_in``; normal ``std = √(2/fan_in)``, uniform
  ``a = √(6/fan_in)``.
* ``normal:STD`` draws from N(0, STD²), ``uniform:LIMIT`` from U(−LIMIT, LIMIT), ``zeros`` sets 0.
* Every scheme but ``default`` sets the layer's bias to 0, the schemes' usual convention.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from archscope.errors import ArchscopeError


class InitSchemeError(ArchscopeError):
    """An ``--init`` value that names no scheme, or a malformed ``normal:``/``uniform:`` value."""

    exit_code = 2


class Distribution(str, Enum):
    """What a scheme draws the weights from."""

    DEFAULT = "default"  # the model's own initialization, left as it is
    NORMAL = "normal"
    UNIFORM = "uniform"
    ZEROS = "zeros"


@dataclass(frozen=True)
class Scheme:
    """One initialization scheme.

    Attributes:
        name: as ``--init`` takes it, canonical (``he_normal``, ``normal:0.01``).
        label: for people (``He normal``, ``Normal``).
        distribution: what the weights are drawn from.
        rule: for the named schemes, the variance rule (``lecun``, ``xavier``, ``he``); else
            ``None``.
        value: the STD of ``normal:STD`` or the LIMIT of ``uniform:LIMIT``; else ``None``.
    """

    name: str
    label: str
    distribution: Distribution
    rule: str | None = None
    value: float | None = None

    @property
    def sets_bias(self) -> bool:
        """Whether applying the scheme sets biases to 0 (every scheme but ``default``)."""
        return self.distribution is not Distribution.DEFAULT


@dataclass(frozen=True)
class Fans:
    """A weight's fan_in and fan_out with their arithmetic (``3·3·32`` for a conv)."""

    fan_in: int
    fan_out: int
    fan_in_expr: str
    fan_out_expr: str

    def text(self, which: str) -> str:
        """``"3·3·32 = 288"`` (or ``"784"`` where there is nothing to multiply)."""
        expr, value = ((self.fan_in_expr, self.fan_in) if which == "in"
                       else (self.fan_out_expr, self.fan_out))
        return expr if expr == str(value) else f"{expr} = {value}"


@dataclass(frozen=True)
class Formula:
    """A scheme's figure for one weight.

    Attributes:
        quantity: ``"std"`` (normal), ``"limit"`` (uniform) or ``"value"`` (zeros).
        value: the std, the bound or 0.
        std: the standard deviation the drawn weights should have (``limit/√3`` for a uniform).
        text: the formula with the numbers filled in, e.g.
            ``He normal: std = √(2/fan_in) = √(2/288) = 0.0833``.
    """

    quantity: str
    value: float
    std: float
    text: str


_NAMED: dict[str, tuple[str, Distribution, str]] = {
    "lecun_normal": ("LeCun normal", Distribution.NORMAL, "lecun"),
    "lecun_uniform": ("LeCun uniform", Distribution.UNIFORM, "lecun"),
    "xavier_normal": ("Xavier normal", Distribution.NORMAL, "xavier"),
    "xavier_uniform": ("Xavier uniform", Distribution.UNIFORM, "xavier"),
    "he_normal": ("He normal", Distribution.NORMAL, "he"),
    "he_uniform": ("He uniform", Distribution.UNIFORM, "he"),
}

#: Other names the same schemes go by (Keras says glorot, PyTorch kaiming).
ALIASES = {
    "glorot_normal": "xavier_normal", "glorot_uniform": "xavier_uniform",
    "kaiming_normal": "he_normal", "kaiming_uniform": "he_uniform",
    "zero": "zeros", "own": "default",
}

#: Every scheme ``--init`` takes, in the order help and errors list them.
SCHEME_NAMES = ("default", *_NAMED, "normal:STD", "uniform:LIMIT", "zeros")

#: variance rule → (numerator for a normal's variance, the fans it divides by, as written).
_RULES = {"lecun": (1, "fan_in"), "xavier": (2, "(fan_in+fan_out)"), "he": (2, "fan_in")}


def parse_scheme(text: str) -> Scheme:
    """``"he_normal"`` → the He normal scheme; ``"normal:0.01"`` → N(0, 0.01²).

    Names are case-insensitive, ``-`` and ``_`` alike; ``glorot_*`` and ``kaiming_*`` are
    accepted for ``xavier_*`` and ``he_*``.

    Raises:
        InitSchemeError: an unknown name (the valid ones listed, the closest suggested), or a
            ``normal:``/``uniform:`` value that is not a positive finite number.
    """
    raw = text.strip()
    key = raw.lower().replace("-", "_")
    head, colon, tail = key.partition(":")
    if colon:
        if head not in ("normal", "uniform"):
            raise _unknown(raw)
        what = "STD" if head == "normal" else "LIMIT"
        value = _positive(tail)
        if value is None:
            raise InitSchemeError(f"{raw}: {what} must be a positive number, e.g. {head}:0.01")
        name = f"{head}:{tail.strip()}"
        if head == "normal":
            return Scheme(name, "Normal", Distribution.NORMAL, value=value)
        return Scheme(name, "Uniform", Distribution.UNIFORM, value=value)
    key = ALIASES.get(key, key)
    if key == "default":
        return Scheme("default", "the model's own initialization", Distribution.DEFAULT)
    if key == "zeros":
        return Scheme("zeros", "Zeros", Distribution.ZEROS)
    if key in _NAMED:
        label, distribution, rule = _NAMED[key]
        return Scheme(key, label, distribution, rule)
    if key in ("normal", "uniform"):
        what = "STD" if key == "normal" else "LIMIT"
        raise InitSchemeError(f"{raw} needs its {what}: write {key}:{what}, e.g. {key}:0.01")
    raise _unknown(raw)


def parse_schemes(text: str | Sequence[str]) -> tuple[Scheme, ...]:
    """``"normal:1,normal:0.01,xavier_normal"`` (or a list of such strings) → the schemes, in order.

    Raises:
        InitSchemeError: an empty list, an unknown or malformed scheme, or one given twice.
    """
    parts = [text] if isinstance(text, str) else list(text)
    names = [p.strip() for part in parts for p in part.split(",")]
    if not any(names):
        raise InitSchemeError(f"no init scheme given; choose from {', '.join(SCHEME_NAMES)}")
    schemes: list[Scheme] = []
    for name in names:
        if not name:
            raise InitSchemeError(f"{','.join(names)}: an empty scheme between commas")
        scheme = parse_scheme(name)
        if any(s.name == scheme.name for s in schemes):
            raise InitSchemeError(f"{scheme.name} is named twice; give each scheme once")
        schemes.append(scheme)
    return tuple(schemes)


def _positive(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _unknown(raw: str) -> InitSchemeError:
    choices = [n.partition(":")[0] for n in SCHEME_NAMES] + list(ALIASES)
    close = difflib.get_close_matches(raw.lower().replace("-", "_").partition(":")[0], choices,
                                      n=1, cutoff=0.6)
    hint = f"; did you mean {ALIASES.get(close[0], close[0])}?" if close else ""
    return InitSchemeError(
        f"unknown init scheme {raw!r}{hint} (choose from {', '.join(SCHEME_NAMES)})")


def fans(shape: Sequence[int]) -> Fans:
    """fan_in and fan_out of a weight of ``shape``, as ``torch.nn.init`` computes them.

    >>> fans((64, 32, 3, 3)).text("in"), fans((64, 32, 3, 3)).text("out")
    ('3·3·32 = 288', '3·3·64 = 576')
    >>> fans((100, 784)).fan_in
    784

    Raises:
        ValueError: a shape of fewer than two dimensions (torch refuses it too).
    """
    dims = [int(d) for d in shape]
    if len(dims) < 2:
        raise ValueError(f"fan_in and fan_out need a weight of at least 2 dimensions, not {dims}")
    receptive = math.prod(dims[2:])
    kernel = "·".join(str(k) for k in dims[2:])

    def expr(channels: int) -> str:
        return f"{kernel}·{channels}" if kernel else str(channels)

    return Fans(receptive * dims[1], receptive * dims[0], expr(dims[1]), expr(dims[0]))


def formula(scheme: Scheme, fan: Fans) -> Formula | None:
    """The scheme's std or bound for a weight with these fans, with its arithmetic; ``None``
    for ``default`` (nothing is drawn).

    >>> formula(parse_scheme("he_normal"), fans((64, 32, 3, 3))).text
    'He normal: std = √(2/fan_in) = √(2/288) = 0.0833'
    >>> formula(parse_scheme("xavier_uniform"), fans((64, 32, 3, 3))).text
    'Xavier uniform: limit = √(6/(fan_in+fan_out)) = √(6/(288+576)) = 0.0833'
    """
    if scheme.distribution is Distribution.DEFAULT:
        return None
    if scheme.distribution is Distribution.ZEROS:
        return Formula("value", 0.0, 0.0, "Zeros: w = 0")
    uniform = scheme.distribution is Distribution.UNIFORM
    if scheme.rule is None:  # normal:STD, uniform:LIMIT
        assert scheme.value is not None
        value = scheme.value
        quantity = "limit" if uniform else "std"
        typed = scheme.name.partition(":")[2]  # the value as the user wrote it
        return Formula(quantity, value, value / math.sqrt(3) if uniform else value,
                       f"{scheme.label}: {quantity} = {typed}")
    numerator, fans_text = _RULES[scheme.rule]
    if uniform:  # U(−a, a) has variance a²/3: three times the normal's variance under the root
        numerator *= 3
    denominator = fan.fan_in if scheme.rule != "xavier" else fan.fan_in + fan.fan_out
    filled = str(fan.fan_in) if scheme.rule != "xavier" else f"({fan.fan_in}+{fan.fan_out})"
    value = math.sqrt(numerator / denominator)
    quantity = "limit" if uniform else "std"
    text = (f"{scheme.label}: {quantity} = √({numerator}/{fans_text}) = √({numerator}/{filled}) "
            f"= {number(value)}")
    return Formula(quantity, value, value / math.sqrt(3) if uniform else value, text)


def number(value: float) -> str:
    """Three significant digits, without an exponent between 0.001 and 10,000.

    >>> number(math.sqrt(2 / 288)), number(1.0), number(2.5e-7), number(0.0)
    ('0.0833', '1.00', '2.5e-07', '0')
    """
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    magnitude = math.floor(math.log10(abs(value)))
    if -3 <= magnitude < 4:
        return f"{value:.{max(0, 2 - magnitude)}f}"
    return f"{value:.1e}" if abs(value) < 1 else f"{value:.3g}"
