"""One layer's options, bound from call syntax and plain options and checked one by one.

::

    layer  = WORD [ call ] [ value [ "/" value ] ] { option } [ ("x" | "×" | "*") INT ] ;
    option = NAME [ "=" | ":" ] value [ "/" value ] | FLAG ;   (* k3, k=3, padding=same, nobias *)

A call's positional values are bound in its library's order (Keras' ``Conv2D(filters, kernel)``,
PyTorch's ``nn.Conv2d(in, out, kernel)``), its keywords by their canonical names; a plain value
after the word fills the kind's first positional option (``conv32``: 32 filters).
"""

from __future__ import annotations

from typing import Any

from archscope.spec.coercion import coerce
from archscope.spec.cursor import Cursor, KeyedValue, Value
from archscope.spec.input_shape import InputShape
from archscope.spec.lexer import Token, describe, location
from archscope.spec.parsed import LayerSpec
from archscope.spec.vocabulary import (
    ACT_OF_WORD,
    ACT_OPTIONS,
    ACT_POSITIONAL,
    IGNORED_KEYS,
    IGNORED_KIND_KEYS,
    IGNORED_SUFFIXES,
    KERAS_AXIS_FIRST,
    KERAS_POSITIONAL_COUNT,
    KIND_OF_WORD,
    KIND_OPTION_ALIASES,
    KIND_OPTIONS,
    NEEDS_OUT,
    NO_ACTIVATION,
    OPTION_ALIASES,
    OPTION_SHOWN,
    PLAIN_POSITIONAL,
    POSITIONAL,
    REPEAT_WORDS,
    TORCH_POSITIONAL,
    did_you_mean,
    norm,
)


class LayerBinder:
    """Collects one layer's options from call syntax and plain options, checking each value."""

    def __init__(self, cur: Cursor, inputs: InputShape, word: Token, kind: str, act: str) -> None:
        self.cur = cur
        self.inputs = inputs
        self.word = word
        self.kind = kind
        self.act = act
        self.opts: dict[str, Any] = {}
        self.repeat = 1

    @property
    def label(self) -> str:
        return self.act or self.kind

    def accepted(self) -> tuple[str, ...]:
        if self.kind == "act":
            return ACT_OPTIONS.get(self.act, ())
        if self.kind == "activation":
            return ("activation",)
        return KIND_OPTIONS[self.kind]

    def canonical(self, key: str) -> str | None:
        overrides = KIND_OPTION_ALIASES.get(self.act or self.kind, {})
        return overrides.get(key) or OPTION_ALIASES.get(key)

    def positional_names(self, count: int, call: bool) -> tuple[str, ...]:
        if self.kind == "act":
            return (ACT_OPTIONS if call else ACT_POSITIONAL).get(self.act, ())
        if self.kind == "activation":
            return ("activation",)
        if not call:
            return PLAIN_POSITIONAL.get(self.kind, ())
        if norm(self.word.text) in KERAS_AXIS_FIRST:  # BatchNormalization(-1): the axis
            return ("axis",)
        # Keras' Conv2D takes (filters, kernel) and Dense (units); PyTorch's Conv2d (in, out,
        # kernel) and Linear (in, out). PyTorch's spelling (nn.…, Conv2d with a small d) or more
        # values than Keras takes mean PyTorch's order.
        torch_word = self.word.text.startswith(("nn.", "torch.")) or self.word.text.endswith("2d")
        if self.kind in TORCH_POSITIONAL and (count > KERAS_POSITIONAL_COUNT[self.kind] or (
                torch_word and count > 1)):
            return TORCH_POSITIONAL[self.kind]
        return POSITIONAL.get(self.kind, ())

    def options_hint(self) -> str:
        opts = [OPTION_SHOWN[o] for o in self.accepted() if o in OPTION_SHOWN]
        return f"; it takes {', '.join(opts)}" if opts else "; it takes no options"

    def set(self, name: str, value: Value) -> None:
        self.opts[name] = coerce(self.cur, name, value, self.label)

    # call syntax ---------------------------------------------------------------------------
    def call_args(self) -> None:
        """``Conv2D(32, (3, 3), activation='relu')`` (the cursor is on the ``(``)."""
        args, kwargs = self.cur.parse_call_args()
        names = self.positional_names(len(args), call=True)
        if len(args) > len(names):
            extra = args[len(names)]
            raise self.cur.error(extra.tok, f"too many values for {self.word.text!r} (it takes "
                                 f"{len(names)}: {', '.join(names) or 'none'})")
        for name, value in zip(names, args, strict=False):
            self.set(name, value)
        for key, value in kwargs.items():
            if not self._ignored(key):
                self._keyword(key, value)

    def _ignored(self, key: str) -> bool:
        """A keyword that changes no count here (``name``, ``kernel_initializer`` …)."""
        return key in IGNORED_KEYS or key.endswith(IGNORED_SUFFIXES) or \
            key in IGNORED_KIND_KEYS.get(self.kind, ()) or key in IGNORED_KIND_KEYS.get(self.act, ())

    def _keyword(self, key: str, value: Value) -> None:
        if key == "dataformat":
            self.inputs.set_data_format(value)
            return
        canon = self.canonical(key)
        tok = value.key_tok if isinstance(value, KeyedValue) else value.tok
        if canon == "input_shape":
            self.inputs.set(value, tok.text)
        elif canon == "trainable":  # Keras' trainable=False: its weights are frozen
            self.set("trainable", value)
        elif canon == "stride" and value.value is None:  # Keras' strides=None: the window
            return
        elif canon is None or canon not in self.accepted():
            raise self.cur.error(tok, f"{key!r} is not an option of {self.word.text!r}"
                                 f"{self.options_hint()}")
        else:
            self.set(canon, value)

    # plain syntax --------------------------------------------------------------------------
    def plain_args(self) -> None:
        """``conv32 k3 s2 same relu``: values and options after the word (and after a call)."""
        self._require_out()
        positional = [n for n in self.positional_names(0, call=False) if n not in self.opts]
        while True:
            tok = self.cur.peek()
            if not (self._plain_value(tok, positional) or self._plain_word(tok)):
                return

    def _require_out(self) -> None:
        """``conv``, ``dense`` … need their size: a number next, unless a call gave it."""
        tok = self.cur.peek()
        if self.kind in NEEDS_OUT and "out" not in self.opts and tok.kind != "num" and not (
                tok.kind == "word" and self.canonical(norm(tok.text)) == "out"):
            meaning, example = NEEDS_OUT[self.kind]
            raise self.cur.error(tok, f"expected a number after {self.word.text!r} (its {meaning}, "
                                 f"like {example}), got {describe(tok)}")

    def _plain_value(self, tok: Token, positional: list[str]) -> bool:
        """A bare value (``32``, ``3x3``, ``(3, 5)``) at ``tok`` for the next positional option,
        or a ``×3`` repeat; ``True`` when one was read."""
        cur = self.cur
        if tok.kind == "num" and cur.is_cross(cur.peek(1)) and cur.is_punct(cur.peek(2), "["):
            return False  # "2x[ … ]": the next item
        if tok.kind in ("num", "dims") or (cur.is_punct(tok, "(") and cur.looks_like_tuple()):
            if not positional:
                raise cur.error(tok, f"unexpected value {tok.text!r} after {self.word.text!r}; "
                                f"name it, like k3 or s2{self.options_hint()}")
            name = positional.pop(0)
            if tok.kind == "dims" and name == "out" and "kernel" in positional:
                name = positional.pop(0)  # conv 3x3: a kernel, not a filter count
            self.set(name, cur.parse_value())
            self._maybe_stride(name)
            return True
        if cur.is_punct(tok, "×", "*") and cur.peek(1).kind == "num":
            cur.take()
            self.repeat = cur.parse_count(tok)
            return True
        return False

    def _plain_word(self, tok: Token) -> bool:
        """An option word at ``tok`` (``k3``, ``same``, ``relu`` …); ``True`` when one was read,
        ``False`` at the next layer or anything that is not a word."""
        cur = self.cur
        if tok.kind != "word":
            return False
        key = norm(tok.text)
        canon = self.canonical(key)
        if self._flag(tok, key):
            return True
        if canon == "repeat" and cur.peek(1).kind == "num":
            cur.take()
            self.repeat = cur.parse_count(tok)
            return True
        if canon is not None and canon in self.accepted() and self._has_value_after():
            cur.take()
            if cur.is_punct(cur.peek(), "=", ":"):
                cur.take()
            self.set(canon, cur.parse_value())
            self._maybe_stride(canon)
            return True
        if self._trailing_activation(tok, key):
            return True
        if key in KIND_OF_WORD or key in ACT_OF_WORD or key in REPEAT_WORDS:
            return False  # the next layer
        if canon is not None and canon in self.accepted():
            nxt = cur.peek(1)
            raise cur.error(nxt, f"expected a value after {tok.text!r}, got {describe(nxt)}")
        raise cur.error(tok, f"{tok.text!r} is not an option of {self.word.text!r}"
                        f"{did_you_mean(key)}{self.options_hint()}")

    def _flag(self, tok: Token, key: str) -> bool:
        """``same``, ``valid``, ``nobias``, ``ceil``, ``bias`` written alone; ``True`` when taken."""
        if key not in ("same", "valid", "nobias", "ceil", "bias"):
            return False
        cur = self.cur
        accepted = self.accepted()
        followed_by_value = cur.is_punct(cur.peek(1), "=", ":")
        if key in ("same", "valid") and "padding" in accepted:
            self.set("padding", Value(key, tok))
        elif key == "nobias" and "bias" in accepted:
            self.set("bias", Value(False, tok))
        elif key in ("ceil", "bias") and key in accepted and not followed_by_value:
            self.set(key, Value(True, tok))
        else:
            return False
        cur.take()
        return True

    def _trailing_activation(self, tok: Token, key: str) -> bool:
        """``conv32 k3 relu``: the layer's activation; ``True`` when taken.

        Not when the layer has one already, nor for ``leakyrelu0.2`` or ``nn.ReLU()`` (``nn.Linear(…)
        nn.ReLU()``: a call is a layer of its own).
        """
        cur = self.cur
        if key in ACT_OF_WORD and "activation" in self.accepted() and \
                "activation" not in self.opts and cur.peek(1).kind != "num" and not (
                    cur.is_punct(cur.peek(1), "(") and cur.peek(1).pos == tok.end):
            cur.take()
            self.set("activation", Value(tok.text, tok))
            return True
        return False

    def _has_value_after(self) -> bool:
        cur = self.cur
        nxt = cur.peek(1)
        if cur.is_punct(nxt, "=", ":"):
            return True
        words = (*ACT_OF_WORD, "same", "valid", "true", "false", "on", "off", *NO_ACTIVATION)
        return (nxt.kind in ("num", "dims", "str")
                or (nxt.kind == "word" and norm(nxt.text) in words)
                or (cur.is_punct(nxt, "(") and cur.peek(2).kind == "num"))

    def _maybe_stride(self, name: str) -> None:
        """``maxpool3/2``, ``k3/2``: a ``/`` after a kernel gives the stride."""
        if name == "kernel" and self.cur.is_punct(self.cur.peek(), "/"):
            self.cur.take()
            self.set("stride", self.cur.parse_value())

    # result --------------------------------------------------------------------------------
    def finish(self) -> list[LayerSpec]:
        """The layer (``repeat`` times), numbered later by the parser."""
        cur = self.cur
        kind, opts = self.kind, self.opts
        if kind == "activation":
            act = opts.get("activation")
            if act is None:
                raise cur.error(self.word, "Activation needs a name, like Activation('relu')")
            kind, self.act, opts = "act", act, {}
        if kind == "act":
            opts = {"activation": self.act, **opts}
        if kind in NEEDS_OUT and "out" not in opts:
            meaning, example = NEEDS_OUT[kind]
            raise cur.error(self.word, f"{self.word.text!r} needs its {meaning}, like {example}")
        end = cur.toks[max(cur.i - 1, 0)].end
        text = " ".join(cur.src[self.word.pos:end].split())
        line, col, _ = location(cur.src, self.word.pos)
        spec = LayerSpec(kind, opts, 0, text[:60], line, col)
        return [spec] * self.repeat
