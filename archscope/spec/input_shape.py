"""A spec's input shape and layout, from wherever the spec gives them.

::

    input  = [ ("input" | "in" | "shape") [":" | "="] ] [ layout [":" | "="] ] dims [ layout ]
           | "Input(" ("shape" "=" tuple | tuple) ")" ;
    layout = "hwc" | "chw" | "nhwc" | "nchw" | "channels_last" | "channels_first" ;

Keras code may also give the shape as ``input_shape=`` on the first layer or with
``model.build(…)``, and the layout with ``data_format=``; those must agree with what came before.
"""

from __future__ import annotations

from archscope.spec.cursor import Cursor, Value
from archscope.spec.lexer import Token, describe, location
from archscope.spec.vocabulary import (
    DATA_FORMATS,
    IGNORED_KEYS,
    INPUT_WORDS,
    LAYOUT_WORDS,
    MAX_INT,
    norm,
)


class InputShape:
    """The input as written (``dims``, in ``layout``'s order) and the rules for setting it."""

    def __init__(self, cur: Cursor, layout: str) -> None:
        self.cur = cur
        self.dims: tuple[int, ...] | None = None
        #: the token the dims were read from (the parser's hints look back at it)
        self.tok: Token | None = None
        self.layout = layout
        #: the layout the user stated (``chw:``, ``hwc``, ``--chw``, an input typed as dims such
        #: as ``3x64x64``), which a Keras ``data_format`` may not contradict; ``None`` while the
        #: order is only Keras' default (an input from ``Input(…)``, ``input_shape=`` …).
        self.fixed_layout: str | None = "chw" if layout == "chw" else None
        #: the first ``data_format=`` met: (layout, its value's token).
        self.data_format: tuple[str, Token] | None = None

    # reading -------------------------------------------------------------------------------
    def read(self) -> None:
        """``150x150x3``, ``chw:3x150x150``, ``input 3x150x150 chw``, ``Input(shape=(…))``."""
        cur = self.cur
        start = cur.peek()
        said_input = False
        if start.kind == "word" and norm(start.text) in INPUT_WORDS:
            cur.take()
            if cur.is_call(start):
                self.read_keras_call(start)
                return
            if cur.is_punct(cur.peek(), ":", "="):
                cur.take()
            said_input = True
            self._layout_word()
        elif self._layout_word():
            said_input = True
        self._read_dims(start, said_input)

    def refuse_negative(self) -> None:
        """``-28x28x1``, ``chw:-3x28x28``: a negative size where the input goes, refused at its
        ``-`` (not skipped as a separator, which would read 28×28×1)."""
        cur = self.cur
        tok, nxt = cur.peek(), cur.peek(1)
        if tok.kind != "sep" or tok.text != "-" or nxt.kind not in ("num", "dims") or \
                nxt.pos != tok.end:
            return
        if nxt.kind == "num" and cur.is_cross(cur.peek(2)) and cur.is_punct(cur.peek(3), "["):
            return  # "-2x[ … ]": a separator, then a repeated block
        first = nxt.value[0] if nxt.kind == "dims" else nxt.value
        raise cur.error(tok, f"input size -{first} is out of range (1 to {MAX_INT:,}); "
                        f"write the input shape without the minus, like {nxt.text}")

    def _layout_word(self) -> bool:
        """``chw``, ``chw:``, ``nhwc=`` at the cursor: taken; ``True`` when there was one."""
        cur = self.cur
        tok = cur.peek()
        if tok.kind != "word" or norm(tok.text) not in LAYOUT_WORDS:
            return False
        self.set_layout(LAYOUT_WORDS[norm(tok.text)])
        cur.take()
        if cur.is_punct(cur.peek(), ":", "="):
            cur.take()
        return True

    def _read_dims(self, start: Token, said_input: bool) -> None:
        """The dims after the optional ``input``/layout words, and a layout written after them."""
        cur = self.cur
        self.refuse_negative()
        tok = cur.peek()
        if tok.kind == "num" and cur.is_cross(cur.peek(1)) and cur.is_punct(cur.peek(2), "["):
            return  # "2x[ … ]" is a repeated block, not an input
        if tok.kind in ("dims", "num") or (cur.is_punct(tok, "(") and said_input) or (
                cur.is_punct(tok, "(") and cur.looks_like_tuple()):
            self.set(cur.parse_value())
            self._layout_suffix()
        elif said_input:
            raise cur.error(tok, "expected the input shape after "
                            f"{start.text!r}, like 150x150x3, got {describe(tok)}")

    def _layout_suffix(self) -> None:
        """``3x150x150 chw`` or ``(3, 150, 150) (chw)``; without one, dims fix the layout."""
        cur = self.cur
        nxt = cur.peek()
        if nxt.kind == "word" and norm(nxt.text) in LAYOUT_WORDS:
            self.set_layout(LAYOUT_WORDS[norm(nxt.text)])
            cur.take()
        elif cur.is_punct(nxt, "(") and cur.peek(1).kind == "word" and \
                norm(cur.peek(1).text) in LAYOUT_WORDS and cur.is_punct(cur.peek(2), ")"):
            self.set_layout(LAYOUT_WORDS[norm(cur.peek(1).text)])
            cur.i += 3
        else:  # typed as dims (150x150x3): H×W×C as the docs say, whatever Keras code follows
            self.fixed_layout = self.fixed_layout or self.layout

    def read_keras_call(self, word: Token) -> None:
        """``Input(shape=(28, 28, 1))``, ``InputLayer(input_shape=…)``, ``Input((28, 28, 1))``:
        the input shape, H×W×C in Keras' order (the cursor is on the ``(``)."""
        args, kwargs = self.cur.parse_call_args()
        shape: Value | None = None
        batch = False
        for key, value in kwargs.items():
            if key in ("shape", "inputshape", "batchshape", "batchinputshape"):
                shape, batch = value, key.startswith("batch")
            elif key not in IGNORED_KEYS and key not in ("batchsize", "sparse", "ragged"):
                raise self.cur.error(value.tok, f"unknown keyword {key!r} for {word.text}; "
                                     "use shape=(H, W, C)")
        if args:
            shape, batch = args[0], False
        if shape is None:
            raise self.cur.error(word, f"{word.text}(…) needs shape=(H, W, C)")
        self.set(shape, f"{word.text}(…)", batch=batch)

    # setting -------------------------------------------------------------------------------
    def set(self, value: Value, what: str = "", *, batch: bool = False) -> None:
        """Record the input shape; ``what`` (``input_shape``, ``Input(…)``) may repeat it, not
        change it. ``batch``: the first number is the batch size (``batch_shape=(None, …)``)."""
        error = self.cur.error
        raw = value.value
        dims = raw if isinstance(raw, tuple) else (raw,)
        if dims and (dims[0] is None or batch):
            # Keras' batch size comes first in batch_shape=, batch_input_shape= and
            # model.build(), whatever the rank: (None, 28, 28, 1), (32, 784)
            dims = dims[1:]
        if None in dims:
            raise error(value.tok, "the input shape must be whole numbers like 150x150x3; "
                        "archscope needs a fixed size where Keras allows None")
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise error(value.tok, "the input shape must be whole numbers like 150x150x3")
        if len(dims) > 3:
            raise error(value.tok, f"the input shape has {len(dims)} numbers; give H×W×C "
                        "(or chw:C×H×W) without the batch size")
        for d in dims:
            if d < 1 or d > MAX_INT:
                raise error(value.tok, f"input size {d} is out of range (1 to {MAX_INT:,})")
        if self.dims is not None:
            if dims == self.dims and what:
                return  # Keras code may say it twice (Input(…), then input_shape=)
            raise error(value.tok, f"{what or 'this'} gives the input shape "
                        f"{'×'.join(map(str, dims))} but "
                        f"{'×'.join(map(str, self.dims))} was given before")
        self.dims = dims
        self.tok = value.tok

    def set_layout(self, layout: str) -> None:
        """An input's stated layout (``chw:``, ``3x150x150 chw``)."""
        self.layout = layout
        self.fixed_layout = layout

    def set_data_format(self, value: Value) -> None:
        """Keras' ``data_format=``: the spec's layout, the same for every layer.

        ``channels_first`` reads the input as C×H×W (as ``chw:`` does) unless the input was
        written H×W×C (``64x64x3``, ``hwc``) or another layer says ``channels_last``: those are
        errors, since archscope builds every layer in one layout.
        """
        error = self.cur.error
        raw = value.value
        if raw is None:  # data_format=None: Keras' image_data_format(), channels_last by default
            return
        fmt = DATA_FORMATS.get(norm(raw)) if isinstance(raw, str) else None
        if fmt is None:
            raise error(value.tok, f"data_format must be 'channels_last' or "
                        f"'channels_first', got {value.tok.text}")
        written = f"data_format={value.tok.text}"
        if self.data_format is not None and self.data_format[0] != fmt:
            line, col, _ = location(self.cur.src, self.data_format[1].pos)
            raise error(value.tok, f"{written} contradicts data_format="
                        f"{self.data_format[1].text} at line {line}, col {col}; archscope "
                        "builds every layer in one layout")
        if self.fixed_layout is not None and self.fixed_layout != fmt:
            dims = "x".join(map(str, self.dims or ()))
            if fmt == "chw":
                raise error(value.tok, f"{written} contradicts the input {dims}, written "
                            f"H×W×C; write it as chw:{dims} to read it channels first")
            said = f"the input {dims}, written C×H×W" if dims else "the spec's C×H×W order"
            raise error(value.tok, f"{written} contradicts {said} (chw, --chw); write the "
                        "input H×W×C without chw, or drop data_format")
        self.data_format = (fmt, value.tok)
        self.layout = fmt
