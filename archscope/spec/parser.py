"""The layer-spec grammar: text → :class:`~archscope.spec.parsed.ParsedSpec` (pure Python, no torch).

A recursive-descent parser over :mod:`~archscope.spec.lexer`'s tokens. This module reads the
spec's structure (input, items, repeated blocks, the layer words, Keras' ``Sequential`` and
``model.add``); the input shape is read by :mod:`~archscope.spec.input_shape`, a layer's options
by :mod:`~archscope.spec.binding`, and pasted Keras statements are skipped by
:mod:`~archscope.spec.pasted`. ``repeat`` blocks are expanded here. The grammar in full is in
docs/spec.md::

    spec  = { sep } [ input ] items { sep } ;
    items = item { sep item | item } ;                        (* space-separated: a new layer word *)
    item  = "repeat" INT [ "x" ] block | INT ("x" | "×" | "*") block | block [ ("x" | "×" | "*") INT ]
          | layer ;
    block = "[" { sep } items { sep } "]" ;
    layer = WORD … | ("Input" | "InputLayer") call | ("model.add" | "add") "(" item ")"
          | [ NAME "=" ] "Sequential" "(" [ block ] [ "," ] { NAME "=" value } ")" ;
"""

from __future__ import annotations

from dataclasses import replace

from archscope.errors import SpecSyntaxError
from archscope.spec.binding import LayerBinder
from archscope.spec.cursor import Cursor, KeyedValue
from archscope.spec.input_shape import InputShape
from archscope.spec.lexer import Token, describe
from archscope.spec.parsed import LayerSpec, ParsedSpec
from archscope.spec.pasted import PastedCode
from archscope.spec.vocabulary import (
    ACT_OF_WORD,
    IGNORED_KEYS,
    INPUT_WORDS,
    KIND_OF_WORD,
    LAYOUT_WORDS,
    MAX_LAYERS,
    REPEAT_WORDS,
    did_you_mean,
    norm,
)


class _Parser(Cursor):
    """Recursive descent over the tokens; the grammar is in docs/spec.md."""

    def __init__(self, src: str, layout: str = "hwc") -> None:
        super().__init__(src)
        self.inputs = InputShape(self, layout)
        self.pasted = PastedCode(self, self.inputs)
        #: layers parsed so far, so that ``Input(…)`` is accepted only before the first.
        self.layer_count = 0

    # spec ----------------------------------------------------------------------------------
    def parse(self) -> ParsedSpec:
        self._skip_leading_seps()
        while self.pasted.skip():  # import lines before the input shape
            self._skip_leading_seps()
        self.inputs.read()
        layers = self.parse_items(closing=None)
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, f"unexpected {describe(tok)}")
        if len(layers) > MAX_LAYERS:
            raise self.error(tok, f"the spec expands to {len(layers)} layers, more than "
                             f"{MAX_LAYERS}; use smaller repeat counts")
        numbered = tuple(replace(layer, number=n) for n, layer in enumerate(layers, 1))
        return ParsedSpec(self.inputs.dims, self.inputs.layout, numbered, self.src)

    def _skip_leading_seps(self) -> None:
        """Separators before the input; a ``-`` glued to a number there is a negative size."""
        while self.is_sep(self.peek()):
            self.inputs.refuse_negative()
            self.take()

    # items ---------------------------------------------------------------------------------
    def parse_items(self, closing: str | None) -> list[LayerSpec]:
        """Items up to ``closing`` (``]`` of a block) or the end of the spec."""
        layers: list[LayerSpec] = []
        while True:
            self.skip_seps()
            tok = self.peek()
            if tok.kind == "end" or (closing is not None and self.is_punct(tok, closing)):
                return layers
            if closing is None and self.pasted.skip():
                continue
            layers.extend(self.parse_item())
            if len(layers) > MAX_LAYERS:
                raise self.error(tok, f"the spec expands to more than {MAX_LAYERS} layers; "
                                 "use smaller repeat counts")
            self._check_after_item(closing)

    def _check_after_item(self, closing: str | None) -> None:
        """After an item: a separator, the end, a block, or a new layer word; else an error."""
        nxt = self.peek()
        if self.is_sep(nxt) or nxt.kind == "end" or self.is_punct(nxt, "[") or (
                closing is not None and self.is_punct(nxt, closing)) or (
                nxt.kind == "num" and self.is_cross(self.peek(1))):
            return
        if nxt.kind == "word" and (norm(nxt.text) in KIND_OF_WORD or norm(nxt.text) in
                                   ACT_OF_WORD or norm(nxt.text) in REPEAT_WORDS):
            return  # a new layer without a separator: "conv32 k3 maxpool2"
        if nxt.kind == "word":
            raise self.error(nxt, f"unknown option or layer {nxt.text!r}"
                             f"{did_you_mean(norm(nxt.text))}")
        what = f"'{closing}', " if closing else ""
        raise self.error(nxt, f"expected {what}a separator (→, ->, |, comma or line break) "
                         f"or the next layer, got {describe(nxt)}")

    def parse_item(self) -> list[LayerSpec]:
        tok = self.peek()
        # repeat N [ ... ]
        if tok.kind == "word" and norm(tok.text) in ("repeat", "rep"):
            self.take()
            count = self.parse_count(tok)
            if self.is_cross(self.peek()):
                self.take()
            return self.parse_block(count)
        # N x [ ... ]
        if tok.kind == "num" and self.is_cross(self.peek(1)) and self.is_punct(self.peek(2), "["):
            count = self.parse_count(tok)
            self.take()
            return self.parse_block(count)
        # [ ... ] x N
        if self.is_punct(tok, "["):
            block = self.parse_block(1)
            if self.is_cross(self.peek()):
                cross = self.take()
                block = block * self.parse_count(cross)
            return block
        if tok.kind == "word":
            return self.parse_layer()
        raise self._not_a_layer(tok)

    def _not_a_layer(self, tok: Token) -> SpecSyntaxError:
        hint = ""
        if tok.kind in ("dims", "num") or self.is_punct(tok, "("):
            if self.inputs.tok is not None and self.toks[self.i - 1] is self.inputs.tok:
                hint = " (write the input shape with x, like 28x28x1)"
            elif self.inputs.dims is None or tok.kind == "dims":
                hint = " (the input shape goes first)"
        return self.error(tok, f"expected a layer such as conv32, maxpool2 or dense10, "
                          f"got {describe(tok)}{hint}")

    def parse_block(self, count: int) -> list[LayerSpec]:
        """``[ … ]``, its layers ``count`` times."""
        self.expect_punct("[", "to open the repeated block")
        layers = self.parse_items(closing="]")
        close = self.peek()
        if not self.is_punct(close, "]"):
            raise self.error(close, f"expected ']' to close the repeated block, got "
                             f"{describe(close)}")
        self.take()
        if count * len(layers) > MAX_LAYERS:
            raise self.error(close, f"the block repeats to {count * len(layers)} layers, more "
                             f"than {MAX_LAYERS}")
        return layers * count

    # layers --------------------------------------------------------------------------------
    def parse_layer(self) -> list[LayerSpec]:
        word = self.take()
        name = norm(word.text)
        call = self.is_call(word)
        if name in ("add", "modeladd") and call:  # model.add(Conv2D(...)) pasted from Keras
            self.take()
            self.skip_newlines()
            layers = self.parse_item()
            self.expect_punct(")", "to close model.add(")
            return layers
        if name == "sequential" and call:
            return self.parse_sequential(word)
        if name in INPUT_WORDS and call and self.layer_count == 0:
            # keras.Input(shape=…) / InputLayer(…) first in Sequential([…]) or model.add(…)
            self.inputs.read_keras_call(word)
            return []
        if name in INPUT_WORDS or name in LAYOUT_WORDS:
            raise self.error(word, "the input shape must come first, before every layer")
        if name in ACT_OF_WORD:
            kind, act = "act", ACT_OF_WORD[name]
        elif name in KIND_OF_WORD:
            kind, act = KIND_OF_WORD[name], ""
        else:
            raise self.error(word, f"unknown layer {word.text!r}{did_you_mean(name)}; "
                             "layers: conv, dwconv, sepconv, maxpool, avgpool, gap, flatten, "
                             "dense, dropout, batchnorm, layernorm, lrn, relu … (docs/spec.md)")
        layer = LayerBinder(self, self.inputs, word, kind, act)
        if call:
            layer.call_args()
            if name == "localresponsenorm":  # PyTorch's call: PyTorch's α (divided by n)
                layer.opts["torch_alpha"] = True
        layer.plain_args()
        layers = layer.finish()
        self.layer_count += 1
        return layers

    def parse_sequential(self, word: Token) -> list[LayerSpec]:
        """``Sequential([Conv2D(…), …])``: its layers; ``Sequential()``, ``Sequential(name=…)``
        (before ``model.add(…)`` lines): none."""
        self.take()  # "("
        self.skip_newlines()
        layers: list[LayerSpec] = []
        if self.is_punct(self.peek(), "["):
            layers = self.parse_block(1)
            self.skip_newlines()
            if not self.is_punct(self.peek(), ","):
                self.expect_punct(")", f"to close {word.text}(")
                return layers
            self.take()
        args, kwargs = self.parse_call_rest()
        if args:
            raise self.error(args[0].tok, "expected a list of layers in [ ], like "
                             "Sequential([Conv2D(32, (3, 3)), …]), or nothing, got "
                             f"{args[0].tok.text!r}")
        for key, value in kwargs.items():
            if key not in IGNORED_KEYS:
                tok = value.key_tok if isinstance(value, KeyedValue) else value.tok
                raise self.error(tok, f"{key!r} is not an option of {word.text!r}; it takes a "
                                 "list of layers and name=")
        return layers


def parse(text: str, *, layout: str = "hwc") -> ParsedSpec:
    """Parse a layer spec (see docs/spec.md); pure Python, no torch.

    Args:
        text: the spec.
        layout: how to read an input shape written without ``hwc``/``chw``: ``"hwc"`` (H×W×C,
            Keras' order, the default) or ``"chw"`` (``calc --chw``).

    Raises:
        SpecSyntaxError: naming the offending token, its line and column, with a caret under it.
    """
    if layout not in ("hwc", "chw"):
        raise ValueError(f"layout must be 'hwc' or 'chw', not {layout!r}")
    return _Parser(text, layout).parse()
