"""A cursor over a spec's tokens, and the grammar's leaves: values and call arguments.

::

    value = [ "-" ] NUMBER | dims | STRING | NAME | tuple | NAME call ;
    tuple = ("(" | "[") [ value { "," value } ] (")" | "]") ;
    call  = "(" [ arg { "," arg } ] ")" ;   arg = value | NAME "=" value ;
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archscope.errors import SpecSyntaxError
from archscope.spec.lexer import Token, describe, syntax_error, tokenize
from archscope.spec.vocabulary import MAX_LAYERS, norm


@dataclass
class Value:
    """A value as read (a number, a tuple, a word …) and the token it starts at, for messages."""

    value: Any
    tok: Token


class KeyedValue(Value):
    """A keyword argument's value, remembering the keyword's token for messages."""

    def __init__(self, value: Value, key_tok: Token) -> None:
        super().__init__(value.value, value.tok)
        self.key_tok = key_tok


@dataclass(frozen=True)
class Call:
    """A nested call used as a value (``regularizers.l2(0.001)``); only ignored keys take one."""

    name: str


class Cursor:
    """The tokens of a spec and a position in them; errors point at a token with a caret."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def error(self, tok: Token, message: str) -> SpecSyntaxError:
        return syntax_error(self.src, tok.pos, message)

    def is_punct(self, tok: Token, *chars: str) -> bool:
        return tok.kind == "punct" and tok.text in chars

    def is_sep(self, tok: Token) -> bool:
        return tok.kind in ("sep", "nl") or self.is_punct(tok, ",")

    def is_cross(self, tok: Token) -> bool:
        return (tok.kind == "word" and tok.text.lower() == "x") or self.is_punct(tok, "×", "*")

    def is_call(self, word: Token) -> bool:
        """Whether a ``(`` follows ``word`` without a space (the cursor is after the word)."""
        return self.is_punct(self.peek(), "(") and self.peek().pos == word.end

    def looks_like_tuple(self) -> bool:
        """``(3, 5)`` at the cursor: a ``(``, a number, a comma."""
        return self.peek(1).kind == "num" and self.is_punct(self.peek(2), ",")

    def skip_seps(self) -> None:
        while self.is_sep(self.peek()):
            self.take()

    def skip_newlines(self) -> None:
        while self.peek().kind == "nl":
            self.take()

    def expect_punct(self, char: str, what: str) -> Token:
        self.skip_newlines()
        tok = self.peek()
        if not self.is_punct(tok, char):
            raise self.error(tok, f"expected {char!r} {what}, got {describe(tok)}")
        return self.take()

    # values --------------------------------------------------------------------------------
    def parse_count(self, after: Token) -> int:
        """A repeat count (1 to :data:`MAX_LAYERS`) after ``after`` (``repeat``, ``x``, ``×``)."""
        tok = self.peek()
        if tok.kind != "num" or not isinstance(tok.value, int):
            raise self.error(tok, f"expected a repeat count after {after.text!r}, "
                             f"got {describe(tok)}")
        self.take()
        if not 1 <= tok.value <= MAX_LAYERS:
            raise self.error(tok, f"repeat count {tok.value} is out of range (1 to {MAX_LAYERS})")
        return int(tok.value)

    def parse_value(self) -> Value:
        """A number, ``3x3``, ``'same'``, a word, ``(3, 3)``, or a call such as ``l2(0.01)``."""
        tok = self.peek()
        if tok.kind in ("num", "dims", "str"):
            self.take()
            return Value(tok.value, tok)
        nxt = self.peek(1)
        if tok.kind == "sep" and tok.text == "-" and nxt.kind == "num" and nxt.pos == tok.end:
            self.i += 2  # a negative number: axis=-1, nn.Flatten(1, -1)
            return Value(-nxt.value, Token("num", tok.text + nxt.text, tok.pos, -nxt.value))
        if tok.kind == "word":
            self.take()
            return self._word_value(tok)
        if self.is_punct(tok, "(", "["):
            self.take()
            return Value(self._tuple_rest(")" if tok.text == "(" else "]"), tok)
        raise self.error(tok, f"expected a value (a number, 3x3, a word), got {describe(tok)}")

    def _word_value(self, tok: Token) -> Value:
        """A word taken as a value: a nested call, ``True``/``False``, ``None`` or the word."""
        if self.is_call(tok):
            self.parse_call_args()
            return Value(Call(tok.text), tok)
        low = tok.text.lower()
        if low in ("true", "false"):
            return Value(low == "true", tok)
        if low == "none":
            return Value(None, tok)
        return Value(tok.text, tok)

    def _tuple_rest(self, closing: str) -> tuple[Any, ...]:
        """A tuple's values after its opening bracket, through ``closing``."""
        items: list[Any] = []
        while not self._closes(closing):
            items.append(self.parse_value().value)
            self._comma_or(closing, "tuple")
        return tuple(items)

    def parse_call_args(self) -> tuple[list[Value], dict[str, Value]]:
        """``( 32, (3, 3), activation='relu' )`` → positional values and keyword values."""
        self.expect_punct("(", "to open the call")
        return self.parse_call_rest()

    def parse_call_rest(self) -> tuple[list[Value], dict[str, Value]]:
        """A call's arguments after its ``(``, through its ``)``."""
        args: list[Value] = []
        kwargs: dict[str, Value] = {}
        while not self._closes(")"):
            tok = self.peek()
            if tok.kind == "word" and self.is_punct(self.peek(1), "="):
                self.take()
                self.take()
                self.skip_newlines()
                kwargs[norm(tok.text)] = KeyedValue(self.parse_value(), tok)
            else:
                if kwargs:
                    raise self.error(tok, "a positional value cannot follow a keyword argument")
                args.append(self.parse_value())
            self._comma_or(")", "call")
        return args, kwargs

    def _closes(self, closing: str) -> bool:
        """Whether ``closing`` is next (over line breaks); taken when it is."""
        self.skip_newlines()
        if self.is_punct(self.peek(), closing):
            self.take()
            return True
        return False

    def _comma_or(self, closing: str, what: str) -> None:
        """After an element of a tuple or a call: a ``,`` (taken) or ``closing`` (left)."""
        self.skip_newlines()
        nxt = self.peek()
        if self.is_punct(nxt, ","):
            self.take()
        elif not self.is_punct(nxt, closing):
            raise self.error(nxt, f"expected ',' or {closing!r} in the {what}, got {describe(nxt)}")
