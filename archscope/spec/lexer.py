"""The layer-spec tokenizer, and syntax errors that point at a place in the text with a caret.

A spec is cut into tokens: numbers (``32``, ``0.5``, ``1e-4``), dims (``150x150x3``), words
(``conv``, ``layers.Conv2D``, ``Conv2d``), quoted strings, separators (``→ -> | , ;`` …), line
breaks and punctuation. Whitespace and ``#`` comments are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from archscope.errors import SpecSyntaxError
from archscope.spec.vocabulary import ACT_OF_WORD, MAX_INT, norm


@dataclass(frozen=True)
class Token:
    """One token: its kind, its text as written, where it starts, and its value (numbers, dims,
    strings)."""

    kind: str  # num, dims, word, str, sep, nl, punct, end
    text: str
    pos: int
    value: Any = None

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


_WORD = r"[A-Za-z_][A-Za-z_]*(?:[0-9][dD](?![A-Za-z]))?"
_TOKEN_RE = re.compile(
    r"(?P<ws>[^\S\n]+)"
    r"|(?P<comment>\#[^\n]*)"
    r"|(?P<nl>\n)"
    r"|(?P<sep>[-–—]+>|=+>|→|⟶|⇒|➔|➜|>|\||;|[-–—]+)"
    r"|(?P<dims>[0-9]+(?:[x×X*][0-9]+)+)"
    r"|(?P<num>(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<call>(?:[A-Za-z_][A-Za-z_0-9]*\.)*[A-Za-z_][A-Za-z_0-9]*(?=\())"  # l2(…), Conv2D(…)
    rf"|(?P<word>{_WORD}(?:\.{_WORD})*)"
    r"|(?P<str>'[^'\n]*'|\"[^\"\n]*\")"
    r"|(?P<punct>[()\[\]=,/:×*])"
)


def tokenize(src: str) -> list[Token]:
    """The tokens of ``src``, ending with an ``end`` token.

    Raises:
        SpecSyntaxError: at a character no token starts with, or a number too long to be one.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if m is None:
            raise syntax_error(src, pos, f"unexpected character {src[pos]!r}; "
                               "a layer looks like conv32 k3, maxpool2 or dense10")
        kind = m.lastgroup or ""
        text = m.group()
        if kind in ("num", "dims") and len(text) > 40:  # int() refuses over 4,300 digits
            raise syntax_error(src, pos, f"a number of {len(text)} characters; numbers in a "
                               f"spec go up to {MAX_INT:,}")
        if kind == "num":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(Token("num", text, pos, value))
        elif kind == "dims":
            tokens.append(Token("dims", text, pos,
                                tuple(int(p) for p in re.split(r"[x×X*]", text))))
        elif kind == "str":
            tokens.append(Token("str", text, pos, text[1:-1]))
        elif kind in ("word", "call"):
            tokens.append(Token("word", text, pos))
        elif kind in ("sep", "nl", "punct"):
            tokens.append(Token(kind, text, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(src)))
    return _merge_relu6(tokens)


def _merge_relu6(tokens: list[Token]) -> list[Token]:
    """``relu6`` tokenizes as ``relu`` + ``6``; glue names that end in a digit back together."""
    out: list[Token] = []
    for tok in tokens:
        prev = out[-1] if out else None
        if (prev is not None and prev.kind == "word" and tok.kind == "num" and prev.end == tok.pos
                and norm(prev.text + tok.text) in ACT_OF_WORD):
            out[-1] = Token("word", prev.text + tok.text, prev.pos)
            continue
        out.append(tok)
    return out


def describe(tok: Token) -> str:
    """A token as messages name it: ``'conv'``, ``a line break``, ``the end of the spec``."""
    if tok.kind == "end":
        return "the end of the spec"
    if tok.kind == "nl":
        return "a line break"
    return repr(tok.text)


def location(src: str, pos: int) -> tuple[int, int, str]:
    """(line number, column, the line's text) of a position in ``src``; both numbers 1-based."""
    line_no = src.count("\n", 0, pos) + 1
    start = src.rfind("\n", 0, pos) + 1
    end = src.find("\n", pos)
    line = src[start:] if end < 0 else src[start:end]
    return line_no, pos - start + 1, line


def syntax_error(src: str, pos: int, message: str) -> SpecSyntaxError:
    """``line 1, col 12: <message>`` plus the line and a caret under the column."""
    line_no, col, line = location(src, pos)
    shown = "".join(c if c.isprintable() else " " for c in line)
    offset = col - 1
    if len(shown) > 76:  # show a window around the column
        lo = max(0, offset - 40)
        hi = lo + 76
        prefix = "…" if lo > 0 else ""
        shown = prefix + shown[lo:hi] + ("…" if hi < len(shown) else "")
        offset = offset - lo + len(prefix)
    return SpecSyntaxError(f"line {line_no}, col {col}: {message}\n  {shown}\n  {' ' * offset}^")
