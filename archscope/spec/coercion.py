"""Each option's value checked and brought to its canonical form (``k3`` → ``(3, 3)``).

One small check per kind of option, chosen by the option's canonical name in :data:`_CHECKS`. A
value that does not fit is a :class:`~archscope.errors.SpecSyntaxError` at the value's token:
``kernel of conv must be a positive whole number or a pair like 3x3, got '0'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from archscope.errors import SpecSyntaxError
from archscope.spec.cursor import Call, Cursor, Value
from archscope.spec.vocabulary import ACT_OF_WORD, ACTIVATIONS, MAX_INT, NO_ACTIVATION, did_you_mean, norm

#: how messages name an option whose canonical name is not its usual one.
_SHOWN = {"in": "input size", "kconst": "k", "multiplier": "depth multiplier", "start": "start_dim",
          "end": "end_dim"}


class _Refused(Exception):
    """A value that does not fit its option: what it must be, or the whole message to give."""

    def __init__(self, expected: str, message: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.message = message


def coerce(cur: Cursor, name: str, value: Value, label: str) -> Any:
    """Check one option's value and bring it to its canonical form.

    Args:
        cur: the spec's cursor, for errors at the value's token.
        name: the option's canonical name (``kernel``, ``out`` …).
        value: the value as read.
        label: the layer's kind or activation (``conv``, ``dense``, ``leakyrelu``), for messages
            and for the options whose values depend on it (``zeropad``'s padding).
    """
    raw, tok = value.value, value.tok
    shown = _SHOWN.get(name, name) if name != "out" else "units" if label == "dense" else "filters"

    def fail(expected: str) -> SpecSyntaxError:
        return cur.error(tok, f"{shown} of {label} must be {expected}, got {tok.text!r}")

    if isinstance(raw, Call):
        raise fail("a plain value")
    check = _CHECKS.get(name)
    if check is None:  # pragma: no cover - every canonical option has a check
        raise fail("a known option")
    try:
        return check(raw, name, label)
    except _Refused as refused:
        if refused.message is not None:
            raise cur.error(tok, refused.message) from None
        raise fail(refused.expected) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value):
        return (value[0], value[1])
    return None


def _count(raw: Any, name: str, label: str) -> int:
    """``out``, ``in``, ``groups``, ``multiplier``, ``size``: 1 to :data:`MAX_INT`."""
    if not _is_int(raw) or not 1 <= raw <= MAX_INT:
        raise _Refused(f"a whole number from 1 to {MAX_INT:,}")
    return int(raw)


def _features(raw: Any, name: str, label: str) -> tuple[int, ...]:
    """A normalisation's features: a count, or a shape (``normalized_shape=(8, 4, 4)``)."""
    if isinstance(raw, tuple) and raw and all(_is_int(v) and 1 <= v <= MAX_INT for v in raw):
        return raw
    return (_count(raw, name, label),)


def _pair_from(raw: Any, least: int, expected: str) -> tuple[int, int]:
    """``3`` → ``(3, 3)``, or a pair, each number from ``least`` to :data:`MAX_INT`."""
    pair = _pair(raw)
    if pair is None or not all(least <= v <= MAX_INT for v in pair):
        raise _Refused(expected)
    return pair


def _size_pair(raw: Any, name: str, label: str) -> tuple[int, int]:
    """``kernel``, ``stride``, ``dilation``, ``output``: ``3`` → ``(3, 3)``, or a pair."""
    return _pair_from(raw, 1, "a positive whole number or a pair like 3x3")


def _padding(raw: Any, name: str, label: str) -> Any:
    """``same``/``valid``, a number or a pair; ``zeropad`` also takes (left, right, top, bottom)."""
    if isinstance(raw, str) and raw.lower() in ("same", "valid"):
        if label == "zeropad":
            raise _Refused("a number or a pair like 1x1")
        return raw.lower()
    if label == "zeropad" and isinstance(raw, tuple) and len(raw) == 4 and all(
            _is_int(v) and 0 <= v <= MAX_INT for v in raw):
        return raw
    return _pair_from(raw, 0, "a whole number, a pair like 1x1, same or valid")


def _axis(raw: Any, name: str, label: str) -> Any:
    """``axis`` (a number or a list), ``start``/``end``/``dim`` (a number): checked against the
    shapes when the model is built."""
    values = raw if name == "axis" and isinstance(raw, tuple) and raw else (raw,)
    if not all(_is_int(v) and -8 <= v <= 8 for v in values):
        raise _Refused("a whole number such as -1" + (" or a list" if name == "axis" else ""))
    return raw


def _flag(raw: Any, name: str, label: str) -> bool:
    """``True``/``False``, 1/0, yes/no, on/off."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("yes", "no", "on", "off"):
        return raw.lower() in ("yes", "on")
    raise _Refused("true or false")


def _rate(raw: Any, name: str, label: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 1:
        raise _Refused("a number from 0 to 1")
    return float(raw)


def _non_negative(raw: Any, name: str, label: str) -> float:
    """``alpha``, ``beta``, ``kconst``, ``slope``."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= MAX_INT:
        raise _Refused("a non-negative number")
    return float(raw)


def _activation(raw: Any, name: str, label: str) -> str | None:
    """An activation's canonical name (``swish`` → ``silu``); ``None`` for none (``linear``)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _Refused("an activation name such as relu")
    key = norm(raw)
    if key in NO_ACTIVATION:
        return None
    if key not in ACT_OF_WORD:
        raise _Refused("", f"unknown activation {raw!r}; use one of "
                       f"{', '.join(ACTIVATIONS)}{did_you_mean(key)}")
    return ACT_OF_WORD[key]


_Check = Callable[[Any, str, str], Any]
_CHECKS: dict[str, _Check] = {
    **dict.fromkeys(("out", "in", "groups", "multiplier", "size"), _count),
    "features": _features,
    **dict.fromkeys(("kernel", "stride", "dilation", "output"), _size_pair),
    "padding": _padding,
    **dict.fromkeys(("axis", "start", "end", "dim"), _axis),
    **dict.fromkeys(("bias", "ceil", "affine", "keepdims", "trainable"), _flag),
    "rate": _rate,
    **dict.fromkeys(("alpha", "beta", "kconst", "slope"), _non_negative),
    "activation": _activation,
}
