"""Pasted Keras code: the statements around a model's layers that add none, skipped.

::

    skipped = "import" … | "from" NAME "import" … | [ NAME { "," NAME } "=" ] MODEL "." METHOD call ;

MODEL is ``model`` or a name given a ``Sequential``; METHOD one of
:data:`~archscope.spec.vocabulary.MODEL_METHODS`. ``model.build(shape)`` gives the input shape.
"""

from __future__ import annotations

import difflib

from archscope.spec.cursor import Cursor, Value
from archscope.spec.input_shape import InputShape
from archscope.spec.lexer import Token
from archscope.spec.vocabulary import ACT_OF_WORD, KIND_OF_WORD, MODEL_METHODS, norm


class PastedCode:
    """Skips the statements of pasted Keras code that add no layer."""

    def __init__(self, cur: Cursor, inputs: InputShape) -> None:
        self.cur = cur
        self.inputs = inputs
        #: names pasted Keras code gives its model (``model = models.Sequential()``)
        self.model_names = {"model"}

    def skip(self) -> bool:
        """Skip a statement of pasted Keras code that adds no layer; ``True`` when one was skipped.

        Only these forms: ``import …`` and ``from … import …`` lines, and the model's
        :data:`MODEL_METHODS` calls (``model.summary()``, ``model.compile(…)``,
        ``history = model.fit(…)``; ``model.build(shape)`` gives the input shape). For
        ``model = models.Sequential(…)`` it drops ``model =`` (remembering the name) and returns
        ``False``: the parser reads the call. Anything else is left to the layer parser, so an
        unknown word is still an error.
        """
        cur = self.cur
        tok = cur.peek()
        if tok.kind != "word":
            return False
        if self._is_import(tok):
            self._skip_line()
            return True
        n = self._assignment_length()
        word, paren = cur.peek(n), cur.peek(n + 1)
        if word.kind != "word" or not cur.is_punct(paren, "(") or paren.pos != word.end:
            return False
        if n and norm(word.text) == "sequential":
            self.model_names.add(tok.text)
            cur.i += n
            return False
        obj, _, method = word.text.rpartition(".")
        key = norm(method)
        if obj not in self.model_names or key == "add" or key in KIND_OF_WORD or \
                key in ACT_OF_WORD:
            return False
        if key not in MODEL_METHODS:
            close = difflib.get_close_matches(key, ["add", *MODEL_METHODS], n=1, cutoff=0.6)
            hint = f" (did you mean {obj}.{close[0]}?)" if close else ""
            raise cur.error(word, f"{word.text}(…) adds no layer archscope can follow{hint}; "
                            f"it reads {obj}.add(…) and skips {obj}.summary(), "
                            f"{obj}.compile(…), {obj}.fit(…) and the like")
        cur.i += n + 1
        if key == "build":
            self._build_call(word)
        else:
            self._skip_call(word)
        return True

    def _is_import(self, tok: Token) -> bool:
        """``import …`` or ``from … import …`` at the cursor (on ``tok``)."""
        cur = self.cur
        return (tok.text == "import" and cur.peek(1).kind == "word") or (
            tok.text == "from" and cur.peek(1).kind == "word"
            and cur.peek(2).kind == "word" and cur.peek(2).text == "import")

    def _assignment_length(self) -> int:
        """Tokens of ``name =`` or ``a, b =`` at the cursor; 0 when there is no assignment."""
        cur = self.cur
        j = 0
        while cur.peek(j).kind == "word" and "." not in cur.peek(j).text:
            if cur.is_punct(cur.peek(j + 1), "="):
                return j + 2
            if not cur.is_punct(cur.peek(j + 1), ","):
                return 0
            j += 2
        return 0

    def _build_call(self, word: Token) -> None:
        """``model.build((None, 28, 28, 1))``: the input shape, unless the same one was given
        before (the cursor is on the ``(``)."""
        args, kwargs = self.cur.parse_call_args()
        shape: Value | None = args[0] if args else kwargs.get("inputshape")
        if shape is not None:
            self.inputs.set(shape, f"{word.text}(…)", batch=True)

    def _skip_line(self) -> None:
        """Skip to the end of the line (or a ``;``), over bracketed continuation lines."""
        cur = self.cur
        depth = 0
        while True:
            tok = cur.peek()
            if tok.kind == "end" or (depth == 0 and (
                    tok.kind == "nl" or (tok.kind == "sep" and tok.text == ";"))):
                return
            cur.take()
            depth = max(self._nesting(tok, depth), 0)

    def _skip_call(self, word: Token) -> None:
        """Skip a call's ``( … )`` (the cursor is on its ``(``), over lines and nested brackets."""
        cur = self.cur
        depth = 0
        while True:
            tok = cur.peek()
            if tok.kind == "end":
                raise cur.error(tok, f"expected ')' to close {word.text}(, got the end of the "
                                "spec")
            cur.take()
            depth = self._nesting(tok, depth)
            if depth == 0:  # the call's own ")": its "(" came first
                return

    def _nesting(self, tok: Token, depth: int) -> int:
        """The bracket depth after ``tok``."""
        if self.cur.is_punct(tok, "(", "["):
            return depth + 1
        if self.cur.is_punct(tok, ")", "]"):
            return depth - 1
        return depth
