"""The layer-spec language, parse stage: text → :class:`ParsedSpec` (pure Python, no torch).

A hand-written tokenizer and a recursive-descent parser. The result is the input shape as written,
its layout (``hwc`` as Keras lectures write it, or ``chw``) and a flat tuple of :class:`LayerSpec`
(``repeat`` blocks already expanded). Malformed text raises
:class:`~archscope.errors.SpecSyntaxError` naming the token, its line and column, with a caret under
it. :mod:`archscope.spec` builds the model. The grammar and examples are in docs/spec.md.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from typing import Any

from archscope.errors import SpecSyntaxError

#: Largest integer a spec may contain; larger ones are typing mistakes, and would make torch
#: allocate absurd tensors even on the meta device.
MAX_INT = 1_000_000
#: Most layers a spec may expand to (``repeat`` included).
MAX_LAYERS = 2_000

# ─────────────────────────────────────────────────────────────────────────────── vocabulary

#: canonical layer kind → words that name it (compared lower-cased, without ``_``, after the last
#: ``.``, so ``layers.MaxPooling2D``, ``nn.MaxPool2d`` and ``max_pool`` all work).
_LAYER_WORDS: dict[str, tuple[str, ...]] = {
    "conv": ("conv", "conv2d", "convolution", "convolution2d", "convolutional"),
    "dwconv": ("dwconv", "dwconv2d", "depthwise", "depthwiseconv", "depthwiseconv2d", "dw"),
    "pwconv": ("pwconv", "pwconv2d", "pointwise", "pointwiseconv", "pointwiseconv2d", "pw"),
    "sepconv": ("sepconv", "sepconv2d", "separable", "separableconv", "separableconv2d",
                "separableconvolution2d"),
    "maxpool": ("maxpool", "maxpool2d", "maxpooling", "maxpooling2d", "pool", "mp"),
    "avgpool": ("avgpool", "avgpool2d", "averagepool", "averagepool2d", "averagepooling",
                "averagepooling2d", "avgpooling2d"),
    "gap": ("gap", "globalavgpool", "globalavgpool2d", "globalaveragepool", "globalaveragepool2d",
            "globalaveragepooling", "globalaveragepooling2d", "globalavgpooling2d"),
    "gmp": ("gmp", "globalmaxpool", "globalmaxpool2d", "globalmaxpooling", "globalmaxpooling2d"),
    "adaptiveavgpool": ("adaptiveavgpool", "adaptiveavgpool2d", "adaptiveaveragepool",
                        "adaptiveaveragepooling2d", "aap"),
    "adaptivemaxpool": ("adaptivemaxpool", "adaptivemaxpool2d", "adaptivemaxpooling2d"),
    "flatten": ("flatten", "flat"),
    "dense": ("dense", "linear", "fc", "fullyconnected", "affine"),
    "dropout": ("dropout", "drop"),
    "dropout2d": ("dropout2d", "spatialdropout", "spatialdropout2d"),
    "batchnorm": ("batchnorm", "bn", "batchnorm1d", "batchnorm2d", "batchnormalization",
                  "batchnormalisation"),
    "layernorm": ("layernorm", "ln", "layernormalization", "layernormalisation"),
    "lrn": ("lrn", "localresponsenorm", "localresponsenormalization", "localresponsenormalisation"),
    "zeropad": ("zeropad", "zeropad2d", "zeropadding", "zeropadding2d"),
    "activation": ("activation", "act"),
}

#: activation name → (words that name it, torch class name in ``torch.nn``).
ACTIVATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "relu": (("relu",), "ReLU"),
    "relu6": (("relu6",), "ReLU6"),
    "sigmoid": (("sigmoid", "logistic"), "Sigmoid"),
    "tanh": (("tanh",), "Tanh"),
    "softmax": (("softmax",), "Softmax"),
    "logsoftmax": (("logsoftmax",), "LogSoftmax"),
    "gelu": (("gelu",), "GELU"),
    "leakyrelu": (("leakyrelu", "lrelu", "leaky"), "LeakyReLU"),
    "elu": (("elu",), "ELU"),
    "selu": (("selu",), "SELU"),
    "silu": (("silu", "swish"), "SiLU"),
    "mish": (("mish",), "Mish"),
    "hardswish": (("hardswish", "hswish"), "Hardswish"),
    "hardsigmoid": (("hardsigmoid", "hsigmoid"), "Hardsigmoid"),
    "softplus": (("softplus",), "Softplus"),
    "prelu": (("prelu",), "PReLU"),
}
#: activation values meaning "no activation" (Keras ``activation='linear'``).
_NO_ACTIVATION = ("linear", "identity", "none", "null")

_KIND_OF_WORD: dict[str, str] = {w: kind for kind, words in _LAYER_WORDS.items() for w in words}
_ACT_OF_WORD: dict[str, str] = {w: act for act, (words, _) in ACTIVATIONS.items() for w in words}

_INPUT_WORDS = ("input", "inputs", "in", "inputshape", "shape", "inputlayer")
_LAYOUT_WORDS = {"hwc": "hwc", "nhwc": "hwc", "chw": "chw", "nchw": "chw",
                 "channelslast": "hwc", "channelsfirst": "chw"}
_REPEAT_WORDS = ("repeat", "rep", "times")

#: option word → canonical option (before per-kind overrides in ``_KIND_OPTION_ALIASES``).
_OPTION_ALIASES: dict[str, str] = {
    "k": "kernel", "kernel": "kernel", "kernelsize": "kernel", "ks": "kernel",
    "poolsize": "kernel", "window": "kernel",
    "s": "stride", "stride": "stride", "strides": "stride",
    "p": "padding", "pad": "padding", "padding": "padding",
    "d": "dilation", "dil": "dilation", "dilation": "dilation", "dilationrate": "dilation",
    "g": "groups", "group": "groups", "groups": "groups",
    "bias": "bias", "usebias": "bias",
    "act": "activation", "activation": "activation",
    "out": "out", "filters": "out", "outchannels": "out", "units": "out", "outfeatures": "out",
    "in": "in", "inchannels": "in", "infeatures": "in",
    "rate": "rate",
    "size": "size", "alpha": "alpha", "beta": "beta",
    "m": "multiplier", "multiplier": "multiplier", "depthmultiplier": "multiplier",
    "ceil": "ceil", "ceilmode": "ceil",
    "slope": "slope", "negativeslope": "slope",
    "output": "output", "outputsize": "output",
    "numfeatures": "features", "features": "features", "normalizedshape": "features",
    "affine": "affine", "elementwiseaffine": "affine",
    "inputshape": "input_shape", "inputdim": "input_shape",
    "x": "repeat", "times": "repeat",
    "axis": "axis", "dim": "dim", "startdim": "start", "enddim": "end",
    "keepdims": "keepdims", "trainable": "trainable",
}
_KIND_OPTION_ALIASES: dict[str, dict[str, str]] = {
    "dropout": {"p": "rate"},
    "dropout2d": {"p": "rate"},
    "lrn": {"k": "kconst", "n": "size"},
    "leakyrelu": {"alpha": "slope"},
    "softmax": {"axis": "dim"},
    "logsoftmax": {"axis": "dim"},
}
#: keyword arguments of Keras/PyTorch calls that change no shape or count: accepted and ignored
#: (tests/test_spec.py builds every one of them and compares the counts). Keywords that would
#: change a count are options, checked or refused: ``data_format`` (the spec's layout), ``axis``
#: of batchnorm/layernorm, ``start_dim``/``end_dim`` of flatten, ``keepdims`` of global pooling,
#: ``trainable``.
_IGNORED_KEYS = frozenset({
    "name", "momentum", "epsilon", "eps", "inplace", "seed", "dtype", "noiseshape", "device",
    "paddingmode", "trackrunningstats", "countincludepad", "returnindices", "divisoroverride",
    "approximate", "threshold",
})
#: keywords of some calls (by kind or activation) that change no count there: a softmax's axis
#: (its output has its input's shape whichever axis sums to 1), Softplus' β.
_IGNORED_KIND_KEYS = {"act": frozenset({"dim", "axis"}), "softplus": frozenset({"beta"})}
#: Keras' ``data_format`` values → the spec's layout.
_DATA_FORMATS = {"channelslast": "hwc", "channelsfirst": "chw"}
_IGNORED_SUFFIXES = ("initializer", "regularizer", "constraint")
#: methods of a Keras model that pasted code calls around its ``model.add(…)`` lines and that add
#: no layer (``model.summary()``, ``model.compile(…)``, ``history = model.fit(…)`` …): skipped.
#: ``model.build(shape)`` is read for its input shape. Others (``model.pop()``) are errors.
_MODEL_METHODS = frozenset({
    "summary", "compile", "fit", "build", "evaluate", "predict", "save", "saveweights",
    "loadweights", "fitgenerator", "evaluategenerator", "predictgenerator", "trainonbatch",
    "testonbatch", "predictonbatch", "countparams", "getconfig", "tojson",
})

_CONV_OPTS = ("out", "in", "kernel", "stride", "padding", "dilation", "groups", "bias",
              "activation")
#: per kind: the options it accepts, and the order of positional values (Keras' order; a bare
#: number after the layer word fills the first).
_KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "conv": _CONV_OPTS,
    "dwconv": (*_CONV_OPTS, "multiplier"),
    "pwconv": ("out", "in", "stride", "groups", "bias", "activation"),
    "sepconv": (*_CONV_OPTS, "multiplier"),
    "maxpool": ("kernel", "stride", "padding", "dilation", "ceil"),
    "avgpool": ("kernel", "stride", "padding", "ceil"),
    "gap": ("keepdims",),
    "gmp": ("keepdims",),
    "adaptiveavgpool": ("output",),
    "adaptivemaxpool": ("output",),
    "flatten": ("start", "end"),
    "dense": ("out", "in", "bias", "activation"),
    "dropout": ("rate",),
    "dropout2d": ("rate",),
    "batchnorm": ("features", "affine", "axis"),
    "layernorm": ("features", "affine", "axis"),
    "lrn": ("size", "alpha", "beta", "kconst"),
    "zeropad": ("padding",),
    "act": ("slope", "alpha"),
}
_POSITIONAL: dict[str, tuple[str, ...]] = {
    "conv": ("out", "kernel", "stride", "padding"),
    "dwconv": ("kernel", "stride", "padding", "multiplier"),
    "pwconv": ("out",),
    "sepconv": ("out", "kernel", "stride", "padding"),
    "maxpool": ("kernel", "stride", "padding"),
    "avgpool": ("kernel", "stride", "padding"),
    "adaptiveavgpool": ("output",),
    "adaptivemaxpool": ("output",),
    "dense": ("out",),
    "dropout": ("rate",),
    "dropout2d": ("rate",),
    "batchnorm": ("features",),
    "layernorm": ("features",),
    "lrn": ("size", "alpha", "beta", "kconst"),
    "zeropad": ("padding",),
}
#: Keras' normalization layers, whose first positional value is the axis (PyTorch's BatchNorm2d
#: takes the features).
_KERAS_AXIS_FIRST = frozenset({"batchnormalization", "batchnormalisation", "layernormalization",
                               "layernormalisation"})
#: PyTorch's positional order, used when a call has more positional values than Keras takes
#: (``nn.Conv2d(3, 32, 3)``, ``nn.Linear(6272, 512)``).
_TORCH_POSITIONAL: dict[str, tuple[str, ...]] = {
    "conv": ("in", "out", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    "dense": ("in", "out", "bias"),
    "flatten": ("start", "end"),  # nn.Flatten(1, -1)
}
#: positional values Keras' call takes before PyTorch's order is assumed.
_KERAS_POSITIONAL_COUNT = {"conv": 2, "dense": 1, "flatten": 0}
#: a plain (non-call) value directly after the word; for ``dwconv`` it is the output channels.
_PLAIN_POSITIONAL: dict[str, tuple[str, ...]] = {
    **_POSITIONAL,
    "dwconv": ("out", "kernel", "stride", "padding"),
}
_ACT_POSITIONAL = {"leakyrelu": ("slope",), "elu": ("alpha",)}
#: an activation call's positional values (``nn.Softmax(1)``): the dim changes no count.
_ACT_CALL_POSITIONAL = {**_ACT_POSITIONAL, "softmax": ("dim",), "logsoftmax": ("dim",)}
#: how each option is written, for "it takes …" hints.
_OPTION_SHOWN = {
    "kernel": "k3", "stride": "s2", "padding": "p1/same/valid", "dilation": "d2", "groups": "g2",
    "bias": "nobias", "activation": "an activation (relu …)", "multiplier": "m2", "ceil": "ceil",
    "rate": "a rate (0.5)", "size": "size=5", "alpha": "alpha=…", "beta": "beta=…",
    "kconst": "k=2", "slope": "a slope (0.2)", "output": "an output size (7x7)",
    "affine": "affine=false", "in": "in=N", "keepdims": "keepdims=True",
    "axis": "axis=-1", "start": "start_dim=1", "end": "end_dim=-1", "dim": "dim=-1",
}
#: kinds that need an output size: (what it is called, an example).
_NEEDS_OUT = {"conv": ("number of filters", "conv32 k3"), "sepconv": ("number of filters",
              "sepconv64 k3"), "pwconv": ("number of filters", "pwconv64"),
              "dense": ("number of units", "dense512")}


# ──────────────────────────────────────────────────────────────────────────────── results


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a spec, after ``repeat`` expansion.

    Attributes:
        kind: canonical kind (``conv``, ``maxpool``, ``dense``, ``act`` …; see docs/spec.md).
        options: canonical options (``out``, ``kernel`` as ``(kh, kw)``, ``stride``, ``padding``
            as ``(ph, pw)`` or ``"same"``/``"valid"``, ``activation``, ``rate`` …).
        number: 1-based position in the expanded spec (what error messages call "layer N").
        text: the layer as written (whitespace collapsed), for messages.
        line / col: where it starts in the spec text (1-based).
    """

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    number: int = 0
    text: str = ""
    line: int = 1
    col: int = 1


@dataclass(frozen=True)
class ParsedSpec:
    """A parsed spec: the input as written, its layout, and the layers."""

    input_dims: tuple[int, ...] | None
    layout: str
    layers: tuple[LayerSpec, ...]
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The input in the engine's order: C×H×W for images (``(F,)`` for a flat input)."""
        return _to_chw(self.input_dims, self.layout)


def _to_chw(dims: tuple[int, ...] | None, layout: str) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if len(dims) == 2:  # H×W: one channel (a grey image)
        return (1, dims[0], dims[1])
    if len(dims) == 3 and layout == "hwc":
        return (dims[2], dims[0], dims[1])
    return dims


# ──────────────────────────────────────────────────────────────────────────────── tokenizer


@dataclass(frozen=True)
class _Token:
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


def _tokenize(src: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if m is None:
            raise _syntax_error(src, pos, f"unexpected character {src[pos]!r}; "
                                "a layer looks like conv32 k3, maxpool2 or dense10")
        kind = m.lastgroup or ""
        text = m.group()
        if kind in ("num", "dims") and len(text) > 40:  # int() refuses over 4,300 digits
            raise _syntax_error(src, pos, f"a number of {len(text)} characters; numbers in a "
                                f"spec go up to {MAX_INT:,}")
        if kind == "num":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(_Token("num", text, pos, value))
        elif kind == "dims":
            tokens.append(_Token("dims", text, pos,
                                 tuple(int(p) for p in re.split(r"[x×X*]", text))))
        elif kind == "str":
            tokens.append(_Token("str", text, pos, text[1:-1]))
        elif kind in ("word", "call"):
            tokens.append(_Token("word", text, pos))
        elif kind in ("sep", "nl", "punct"):
            tokens.append(_Token(kind, text, pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(src)))
    return _merge_relu6(tokens)


def _merge_relu6(tokens: list[_Token]) -> list[_Token]:
    """``relu6`` tokenizes as ``relu`` + ``6``; glue names that end in a digit back together."""
    out: list[_Token] = []
    for tok in tokens:
        prev = out[-1] if out else None
        if (prev is not None and prev.kind == "word" and tok.kind == "num" and prev.end == tok.pos
                and _norm(prev.text + tok.text) in _ACT_OF_WORD):
            out[-1] = _Token("word", prev.text + tok.text, prev.pos)
            continue
        out.append(tok)
    return out


def _norm(word: str) -> str:
    """``layers.MaxPooling2D`` → ``maxpooling2d``; ``max_pool`` → ``maxpool``."""
    return word.rsplit(".", 1)[-1].replace("_", "").lower()


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the spec"
    if tok.kind == "nl":
        return "a line break"
    return repr(tok.text)


def _location(src: str, pos: int) -> tuple[int, int, str]:
    line_no = src.count("\n", 0, pos) + 1
    start = src.rfind("\n", 0, pos) + 1
    end = src.find("\n", pos)
    line = src[start:] if end < 0 else src[start:end]
    return line_no, pos - start + 1, line


def _syntax_error(src: str, pos: int, message: str) -> SpecSyntaxError:
    """``line 1, col 12: <message>`` plus the line and a caret under the column."""
    line_no, col, line = _location(src, pos)
    shown = "".join(c if c.isprintable() else " " for c in line)
    offset = col - 1
    if len(shown) > 76:  # show a window around the column
        lo = max(0, offset - 40)
        hi = lo + 76
        prefix = "…" if lo > 0 else ""
        shown = prefix + shown[lo:hi] + ("…" if hi < len(shown) else "")
        offset = offset - lo + len(prefix)
    return SpecSyntaxError(f"line {line_no}, col {col}: {message}\n  {shown}\n  {' ' * offset}^")


# ──────────────────────────────────────────────────────────────────────────────── parser


@dataclass
class _Value:
    value: Any
    tok: _Token


class _Parser:
    """Recursive descent over the tokens; the grammar is in docs/spec.md."""

    def __init__(self, src: str, layout: str = "hwc") -> None:
        self.src = src
        self.toks = _tokenize(src)
        self.i = 0
        self.input_dims: tuple[int, ...] | None = None
        self.input_tok: _Token | None = None
        self.layout = layout
        #: the layout the user stated (``chw:``, ``hwc``, ``--chw``, an input typed as dims such
        #: as ``3x64x64``), which a Keras ``data_format`` may not contradict; ``None`` while the
        #: order is only Keras' default (an input from ``Input(…)``, ``input_shape=`` …).
        self.fixed_layout: str | None = "chw" if layout == "chw" else None
        #: the first ``data_format=`` met: (layout, its value's token).
        self.data_format: tuple[str, _Token] | None = None
        #: layers parsed so far, so that ``Input(…)`` is accepted only before the first.
        self.layer_count = 0
        #: names pasted Keras code gives its model (``model = models.Sequential()``)
        self.model_names = {"model"}

    # helpers -------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> _Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def error(self, tok: _Token, message: str) -> SpecSyntaxError:
        return _syntax_error(self.src, tok.pos, message)

    def is_punct(self, tok: _Token, *chars: str) -> bool:
        return tok.kind == "punct" and tok.text in chars

    def is_sep(self, tok: _Token) -> bool:
        return tok.kind in ("sep", "nl") or self.is_punct(tok, ",")

    def skip_seps(self) -> None:
        while self.is_sep(self.peek()):
            self.take()

    def skip_newlines(self) -> None:
        while self.peek().kind == "nl":
            self.take()

    def expect_punct(self, char: str, what: str) -> _Token:
        self.skip_newlines()
        tok = self.peek()
        if not self.is_punct(tok, char):
            raise self.error(tok, f"expected {char!r} {what}, got {_describe(tok)}")
        return self.take()

    def is_cross(self, tok: _Token) -> bool:
        return (tok.kind == "word" and tok.text.lower() == "x") or self.is_punct(tok, "×", "*")

    # spec ----------------------------------------------------------------------------------
    def parse(self) -> ParsedSpec:
        self.skip_seps()
        while self.skip_python():  # import lines before the input shape
            self.skip_seps()
        self.parse_input()
        layers = self.parse_items(closing=None)
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, f"unexpected {_describe(tok)}")
        if len(layers) > MAX_LAYERS:
            raise self.error(tok, f"the spec expands to {len(layers)} layers, more than "
                             f"{MAX_LAYERS}; use smaller repeat counts")
        numbered = tuple(replace(layer, number=n) for n, layer in enumerate(layers, 1))
        return ParsedSpec(self.input_dims, self.layout, numbered, self.src)

    def parse_input(self) -> None:
        """``150x150x3``, ``chw:3x150x150``, ``input 3x150x150 chw``, ``Input(shape=(…))``."""
        tok = self.peek()
        start = tok
        said_input = False
        if tok.kind == "word" and _norm(tok.text) in _LAYOUT_WORDS:
            self.set_layout(_LAYOUT_WORDS[_norm(tok.text)])
            self.take()
            if self.is_punct(self.peek(), ":", "="):
                self.take()
            said_input = True
        elif tok.kind == "word" and _norm(tok.text) in _INPUT_WORDS:
            self.take()
            if self.is_punct(self.peek(), "(") and self.peek().pos == tok.end:
                self.parse_keras_input(tok)
                return
            if self.is_punct(self.peek(), ":", "="):
                self.take()
            said_input = True
            nxt = self.peek()
            if nxt.kind == "word" and _norm(nxt.text) in _LAYOUT_WORDS:
                self.set_layout(_LAYOUT_WORDS[_norm(nxt.text)])
                self.take()
                if self.is_punct(self.peek(), ":", "="):
                    self.take()
        tok = self.peek()
        if tok.kind == "num" and self.is_cross(self.peek(1)) and self.is_punct(self.peek(2), "["):
            pass  # "2x[ … ]" is a repeated block, not an input
        elif tok.kind in ("dims", "num") or (self.is_punct(tok, "(") and said_input) or (
                self.is_punct(tok, "(") and self._looks_like_tuple()):
            value = self.parse_value()
            self.set_input(value)
            nxt = self.peek()
            if nxt.kind == "word" and _norm(nxt.text) in _LAYOUT_WORDS:
                self.set_layout(_LAYOUT_WORDS[_norm(nxt.text)])
                self.take()
            elif self.is_punct(nxt, "(") and self.peek(1).kind == "word" and \
                    _norm(self.peek(1).text) in _LAYOUT_WORDS and self.is_punct(self.peek(2), ")"):
                self.set_layout(_LAYOUT_WORDS[_norm(self.peek(1).text)])
                self.i += 3
            else:  # typed as dims (150x150x3): H×W×C as the docs say, whatever Keras code follows
                self.fixed_layout = self.fixed_layout or self.layout
        elif said_input:
            raise self.error(tok, "expected the input shape after "
                             f"{start.text!r}, like 150x150x3, got {_describe(tok)}")

    def _looks_like_tuple(self) -> bool:
        return self.peek(1).kind == "num" and self.is_punct(self.peek(2), ",")

    def parse_keras_input(self, word: _Token) -> None:
        """``Input(shape=(28, 28, 1))``, ``InputLayer(input_shape=…)``, ``Input((28, 28, 1))``:
        the input shape, H×W×C in Keras' order (the cursor is on the ``(``)."""
        args, kwargs = self.parse_call_args()
        shape: _Value | None = None
        batch = False
        for key, value in kwargs.items():
            if key in ("shape", "inputshape", "batchshape", "batchinputshape"):
                shape, batch = value, key.startswith("batch")
            elif key not in _IGNORED_KEYS and key not in ("batchsize", "sparse", "ragged"):
                raise self.error(value.tok, f"unknown keyword {key!r} for {word.text}; "
                                 "use shape=(H, W, C)")
        if args:
            shape, batch = args[0], False
        if shape is None:
            raise self.error(word, f"{word.text}(…) needs shape=(H, W, C)")
        self.set_input(shape, f"{word.text}(…)", batch=batch)

    def set_input(self, value: _Value, what: str = "", *, batch: bool = False) -> None:
        """Record the input shape; ``what`` (``input_shape``, ``Input(…)``) may repeat it, not
        change it. ``batch``: the first number is the batch size (``batch_shape=(None, …)``)."""
        raw = value.value
        dims = raw if isinstance(raw, tuple) else (raw,)
        if dims and (dims[0] is None or batch):
            # Keras' batch size comes first in batch_shape=, batch_input_shape= and
            # model.build(), whatever the rank: (None, 28, 28, 1), (32, 784)
            dims = dims[1:]
        if None in dims:
            raise self.error(value.tok, "the input shape must be whole numbers like 150x150x3; "
                             "archscope needs a fixed size where Keras allows None")
        if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise self.error(value.tok, "the input shape must be whole numbers like 150x150x3")
        if len(dims) > 3:
            raise self.error(value.tok, f"the input shape has {len(dims)} numbers; give H×W×C "
                             "(or chw:C×H×W) without the batch size")
        for d in dims:
            if d < 1 or d > MAX_INT:
                raise self.error(value.tok, f"input size {d} is out of range (1 to {MAX_INT:,})")
        if self.input_dims is not None:
            if dims == self.input_dims and what:
                return  # Keras code may say it twice (Input(…), then input_shape=)
            raise self.error(value.tok, f"{what or 'this'} gives the input shape "
                             f"{'×'.join(map(str, dims))} but "
                             f"{'×'.join(map(str, self.input_dims))} was given before")
        self.input_dims = dims
        self.input_tok = value.tok

    def set_layout(self, layout: str) -> None:
        """An input's stated layout (``chw:``, ``3x150x150 chw``)."""
        self.layout = layout
        self.fixed_layout = layout

    def set_data_format(self, value: _Value) -> None:
        """Keras' ``data_format=``: the spec's layout, the same for every layer.

        ``channels_first`` reads the input as C×H×W (as ``chw:`` does) unless the input was
        written H×W×C (``64x64x3``, ``hwc``) or another layer says ``channels_last``: those are
        errors, since archscope builds every layer in one layout.
        """
        raw = value.value
        if raw is None:  # data_format=None: Keras' image_data_format(), channels_last by default
            return
        fmt = _DATA_FORMATS.get(_norm(raw)) if isinstance(raw, str) else None
        if fmt is None:
            raise self.error(value.tok, f"data_format must be 'channels_last' or "
                             f"'channels_first', got {value.tok.text}")
        written = f"data_format={value.tok.text}"
        if self.data_format is not None and self.data_format[0] != fmt:
            line, col, _ = _location(self.src, self.data_format[1].pos)
            raise self.error(value.tok, f"{written} contradicts data_format="
                             f"{self.data_format[1].text} at line {line}, col {col}; archscope "
                             "builds every layer in one layout")
        if self.fixed_layout is not None and self.fixed_layout != fmt:
            dims = "x".join(map(str, self.input_dims or ()))
            if fmt == "chw":
                raise self.error(value.tok, f"{written} contradicts the input {dims}, written "
                                 f"H×W×C; write it as chw:{dims} to read it channels first")
            said = f"the input {dims}, written C×H×W" if dims else "the spec's C×H×W order"
            raise self.error(value.tok, f"{written} contradicts {said} (chw, --chw); write the "
                             "input H×W×C without chw, or drop data_format")
        self.data_format = (fmt, value.tok)
        self.layout = fmt

    # items ---------------------------------------------------------------------------------
    def parse_items(self, closing: str | None) -> list[LayerSpec]:
        layers: list[LayerSpec] = []
        while True:
            self.skip_seps()
            tok = self.peek()
            if tok.kind == "end" or (closing is not None and self.is_punct(tok, closing)):
                return layers
            if closing is None and self.skip_python():
                continue
            layers.extend(self.parse_item())
            if len(layers) > MAX_LAYERS:
                raise self.error(tok, f"the spec expands to more than {MAX_LAYERS} layers; "
                                 "use smaller repeat counts")
            nxt = self.peek()
            if self.is_sep(nxt) or nxt.kind == "end" or self.is_punct(nxt, "[") or (
                    closing is not None and self.is_punct(nxt, closing)) or (
                    nxt.kind == "num" and self.is_cross(self.peek(1))):
                continue
            if nxt.kind == "word" and (_norm(nxt.text) in _KIND_OF_WORD or _norm(nxt.text) in
                                       _ACT_OF_WORD or _norm(nxt.text) in _REPEAT_WORDS):
                continue  # a new layer without a separator: "conv32 k3 maxpool2"
            if nxt.kind == "word":
                raise self.error(nxt, f"unknown option or layer {nxt.text!r}"
                                 f"{_did_you_mean(_norm(nxt.text))}")
            what = f"'{closing}', " if closing else ""
            raise self.error(nxt, f"expected {what}a separator (→, ->, |, comma or line break) "
                             f"or the next layer, got {_describe(nxt)}")

    def parse_item(self) -> list[LayerSpec]:
        tok = self.peek()
        # repeat N [ ... ]
        if tok.kind == "word" and _norm(tok.text) in ("repeat", "rep"):
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
        if tok.kind in ("dims", "num") or self.is_punct(tok, "("):
            hint = ""
            if self.input_tok is not None and self.toks[self.i - 1] is self.input_tok:
                hint = " (write the input shape with x, like 28x28x1)"
            elif self.input_dims is None or tok.kind == "dims":
                hint = " (the input shape goes first)"
            raise self.error(tok, f"expected a layer such as conv32, maxpool2 or dense10, "
                             f"got {_describe(tok)}{hint}")
        raise self.error(tok, "expected a layer such as conv32, maxpool2 or dense10, "
                         f"got {_describe(tok)}")

    def parse_count(self, after: _Token) -> int:
        tok = self.peek()
        if tok.kind != "num" or not isinstance(tok.value, int):
            raise self.error(tok, f"expected a repeat count after {after.text!r}, "
                             f"got {_describe(tok)}")
        self.take()
        if not 1 <= tok.value <= MAX_LAYERS:
            raise self.error(tok, f"repeat count {tok.value} is out of range (1 to {MAX_LAYERS})")
        return int(tok.value)

    def parse_block(self, count: int) -> list[LayerSpec]:
        self.expect_punct("[", "to open the repeated block")
        layers = self.parse_items(closing="]")
        close = self.peek()
        if not self.is_punct(close, "]"):
            raise self.error(close, f"expected ']' to close the repeated block, got "
                             f"{_describe(close)}")
        self.take()
        if count * len(layers) > MAX_LAYERS:
            raise self.error(close, f"the block repeats to {count * len(layers)} layers, more "
                             f"than {MAX_LAYERS}")
        return layers * count

    # pasted Keras code ---------------------------------------------------------------------
    def skip_python(self) -> bool:
        """Skip a statement of pasted Keras code that adds no layer; ``True`` when one was skipped.

        Only these forms: ``import …`` and ``from … import …`` lines, and the model's
        :data:`_MODEL_METHODS` calls (``model.summary()``, ``model.compile(…)``,
        ``history = model.fit(…)``; ``model.build(shape)`` gives the input shape). For
        ``model = models.Sequential(…)`` it drops ``model =`` (remembering the name) and returns
        ``False``: :meth:`parse_sequential` reads the call. Anything else is left to the layer
        parser, so an unknown word is still an error.
        """
        tok = self.peek()
        if tok.kind != "word":
            return False
        if (tok.text == "import" and self.peek(1).kind == "word") or (
                tok.text == "from" and self.peek(1).kind == "word"
                and self.peek(2).kind == "word" and self.peek(2).text == "import"):
            self.skip_line()
            return True
        n = self.assignment_length()
        word, paren = self.peek(n), self.peek(n + 1)
        if word.kind != "word" or not self.is_punct(paren, "(") or paren.pos != word.end:
            return False
        if n and _norm(word.text) == "sequential":
            self.model_names.add(tok.text)
            self.i += n
            return False
        obj, _, method = word.text.rpartition(".")
        key = _norm(method)
        if obj not in self.model_names or key == "add" or key in _KIND_OF_WORD or \
                key in _ACT_OF_WORD:
            return False
        if key not in _MODEL_METHODS:
            close = difflib.get_close_matches(key, ["add", *_MODEL_METHODS], n=1, cutoff=0.6)
            hint = f" (did you mean {obj}.{close[0]}?)" if close else ""
            raise self.error(word, f"{word.text}(…) adds no layer archscope can follow{hint}; "
                             f"it reads {obj}.add(…) and skips {obj}.summary(), "
                             f"{obj}.compile(…), {obj}.fit(…) and the like")
        self.i += n + 1
        if key != "build":
            self.skip_call(word)
            return True
        args, kwargs = self.parse_call_args()  # model.build((None, 28, 28, 1))
        shape = args[0] if args else kwargs.get("inputshape")
        if shape is not None:
            self.build_input(word, shape)
        return True

    def assignment_length(self) -> int:
        """Tokens of ``name =`` or ``a, b =`` at the cursor; 0 when there is no assignment."""
        j = 0
        while self.peek(j).kind == "word" and "." not in self.peek(j).text:
            if self.is_punct(self.peek(j + 1), "="):
                return j + 2
            if not self.is_punct(self.peek(j + 1), ","):
                return 0
            j += 2
        return 0

    def skip_line(self) -> None:
        """Skip to the end of the line (or a ``;``), over bracketed continuation lines."""
        depth = 0
        while True:
            tok = self.peek()
            if tok.kind == "end" or (depth == 0 and (
                    tok.kind == "nl" or (tok.kind == "sep" and tok.text == ";"))):
                return
            self.take()
            if self.is_punct(tok, "(", "["):
                depth += 1
            elif self.is_punct(tok, ")", "]"):
                depth = max(depth - 1, 0)

    def skip_call(self, word: _Token) -> None:
        """Skip a call's ``( … )`` (the cursor is on its ``(``), over lines and nested brackets."""
        depth = 0
        while True:
            tok = self.peek()
            if tok.kind == "end":
                raise self.error(tok, f"expected ')' to close {word.text}(, got the end of the "
                                 "spec")
            self.take()
            if self.is_punct(tok, "(", "["):
                depth += 1
            elif self.is_punct(tok, ")", "]"):
                depth -= 1
                if depth == 0:
                    return

    def build_input(self, word: _Token, shape: _Value) -> None:
        """``model.build((None, 28, 28, 1))``: the input shape, unless the same one was given
        before."""
        self.set_input(shape, f"{word.text}(…)", batch=True)

    def parse_sequential(self, word: _Token) -> list[LayerSpec]:
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
            if key not in _IGNORED_KEYS:
                tok = value.key_tok if isinstance(value, _KeyedValue) else value.tok
                raise self.error(tok, f"{key!r} is not an option of {word.text!r}; it takes a "
                                 "list of layers and name=")
        return layers

    # layers --------------------------------------------------------------------------------
    def parse_layer(self) -> list[LayerSpec]:
        word = self.take()
        name = _norm(word.text)
        call = self.is_punct(self.peek(), "(") and self.peek().pos == word.end
        if name in ("add", "modeladd") and call:  # model.add(Conv2D(...)) pasted from Keras
            self.take()
            self.skip_newlines()
            layers = self.parse_item()
            self.expect_punct(")", "to close model.add(")
            return layers
        if name == "sequential" and call:
            return self.parse_sequential(word)
        if name in _INPUT_WORDS and call and self.layer_count == 0:
            # keras.Input(shape=…) / InputLayer(…) first in Sequential([…]) or model.add(…)
            self.parse_keras_input(word)
            return []
        if name in _INPUT_WORDS or name in _LAYOUT_WORDS:
            raise self.error(word, "the input shape must come first, before every layer")
        if name in _ACT_OF_WORD:
            kind, act = "act", _ACT_OF_WORD[name]
        elif name in _KIND_OF_WORD:
            kind, act = _KIND_OF_WORD[name], ""
        else:
            raise self.error(word, f"unknown layer {word.text!r}{_did_you_mean(name)}; "
                             "layers: conv, dwconv, sepconv, maxpool, avgpool, gap, flatten, "
                             "dense, dropout, batchnorm, layernorm, lrn, relu … (docs/spec.md)")
        layer = _LayerBuilder(self, word, kind, act)
        if call:
            layer.call_args()
            if name == "localresponsenorm":  # PyTorch's call: PyTorch's α (divided by n)
                layer.opts["torch_alpha"] = True
        layer.plain_args()
        return layer.finish()

    # values --------------------------------------------------------------------------------
    def parse_value(self) -> _Value:
        """A number, ``3x3``, ``'same'``, a word, ``(3, 3)``, or a call such as ``l2(0.01)``."""
        tok = self.peek()
        if tok.kind in ("num", "dims", "str"):
            self.take()
            return _Value(tok.value, tok)
        nxt = self.peek(1)
        if tok.kind == "sep" and tok.text == "-" and nxt.kind == "num" and nxt.pos == tok.end:
            self.i += 2  # a negative number: axis=-1, nn.Flatten(1, -1)
            return _Value(-nxt.value, _Token("num", tok.text + nxt.text, tok.pos, -nxt.value))
        if tok.kind == "word":
            self.take()
            if self.is_punct(self.peek(), "(") and self.peek().pos == tok.end:
                self.parse_call_args()
                return _Value(_Call(tok.text), tok)
            low = tok.text.lower()
            if low in ("true", "false"):
                return _Value(low == "true", tok)
            if low == "none":
                return _Value(None, tok)
            return _Value(tok.text, tok)
        if self.is_punct(tok, "(", "["):
            self.take()
            closing = ")" if tok.text == "(" else "]"
            items: list[Any] = []
            while True:
                self.skip_newlines()
                nxt = self.peek()
                if self.is_punct(nxt, closing):
                    self.take()
                    break
                items.append(self.parse_value().value)
                self.skip_newlines()
                nxt = self.peek()
                if self.is_punct(nxt, ","):
                    self.take()
                elif not self.is_punct(nxt, closing):
                    raise self.error(nxt, f"expected ',' or {closing!r} in the tuple, got "
                                     f"{_describe(nxt)}")
            return _Value(tuple(items), tok)
        raise self.error(tok, f"expected a value (a number, 3x3, a word), got {_describe(tok)}")

    def parse_call_args(self) -> tuple[list[_Value], dict[str, _Value]]:
        """``( 32, (3, 3), activation='relu' )`` → positional values and keyword values."""
        self.expect_punct("(", "to open the call")
        return self.parse_call_rest()

    def parse_call_rest(self) -> tuple[list[_Value], dict[str, _Value]]:
        """A call's arguments after its ``(``, through its ``)``."""
        args: list[_Value] = []
        kwargs: dict[str, _Value] = {}
        while True:
            self.skip_newlines()
            tok = self.peek()
            if self.is_punct(tok, ")"):
                self.take()
                return args, kwargs
            if tok.kind == "word" and self.is_punct(self.peek(1), "="):
                self.take()
                self.take()
                self.skip_newlines()
                kwargs[_norm(tok.text)] = _KeyedValue(self.parse_value(), tok)
            else:
                if kwargs:
                    raise self.error(tok, "a positional value cannot follow a keyword argument")
                args.append(self.parse_value())
            self.skip_newlines()
            nxt = self.peek()
            if self.is_punct(nxt, ","):
                self.take()
            elif not self.is_punct(nxt, ")"):
                raise self.error(nxt, f"expected ',' or ')' in the call, got {_describe(nxt)}")


@dataclass(frozen=True)
class _Call:
    """A nested call used as a value (``regularizers.l2(0.001)``); only ignored keys take one."""

    name: str


class _KeyedValue(_Value):
    """A keyword argument's value, remembering the keyword's token for messages."""

    def __init__(self, value: _Value, key_tok: _Token) -> None:
        super().__init__(value.value, value.tok)
        self.key_tok = key_tok


def _did_you_mean(name: str) -> str:
    words = [*_KIND_OF_WORD, *_ACT_OF_WORD, *_OPTION_ALIASES]
    close = difflib.get_close_matches(name, [w for w in words if w != name], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _LayerBuilder:
    """Collects one layer's options from call syntax and plain options, checking each value."""

    def __init__(self, parser: _Parser, word: _Token, kind: str, act: str) -> None:
        self.p = parser
        self.word = word
        self.kind = kind
        self.act = act
        self.opts: dict[str, Any] = {}
        self.repeat = 1
        self.positional_done = 0

    @property
    def label(self) -> str:
        return self.act or self.kind

    def accepted(self) -> tuple[str, ...]:
        if self.kind == "act":
            return {"leakyrelu": ("slope",), "elu": ("alpha",), "softmax": ("dim",),
                    "logsoftmax": ("dim",)}.get(self.act, ())
        if self.kind == "activation":
            return ("activation",)
        return _KIND_OPTIONS[self.kind]

    def canonical(self, key: str) -> str | None:
        overrides = _KIND_OPTION_ALIASES.get(self.act or self.kind, {})
        return overrides.get(key) or _OPTION_ALIASES.get(key)

    def positional_names(self, count: int, call: bool) -> tuple[str, ...]:
        if self.kind == "act":
            return (_ACT_CALL_POSITIONAL if call else _ACT_POSITIONAL).get(self.act, ())
        if self.kind == "activation":
            return ("activation",)
        if not call:
            return _PLAIN_POSITIONAL.get(self.kind, ())
        if _norm(self.word.text) in _KERAS_AXIS_FIRST:  # BatchNormalization(-1): the axis
            return ("axis",)
        # Keras' Conv2D takes (filters, kernel) and Dense (units); PyTorch's Conv2d (in, out,
        # kernel) and Linear (in, out). PyTorch's spelling (nn.…, Conv2d with a small d) or more
        # values than Keras takes mean PyTorch's order.
        torch_word = self.word.text.startswith(("nn.", "torch.")) or self.word.text.endswith("2d")
        if self.kind in _TORCH_POSITIONAL and (count > _KERAS_POSITIONAL_COUNT[self.kind] or (
                torch_word and count > 1)):
            return _TORCH_POSITIONAL[self.kind]
        return _POSITIONAL.get(self.kind, ())

    # call syntax ---------------------------------------------------------------------------
    def call_args(self) -> None:
        args, kwargs = self.p.parse_call_args()
        names = self.positional_names(len(args), call=True)
        if len(args) > len(names):
            extra = args[len(names)]
            raise self.p.error(extra.tok, f"too many values for {self.word.text!r} (it takes "
                               f"{len(names)}: {', '.join(names) or 'none'})")
        for name, value in zip(names, args, strict=False):
            self.set(name, value)
        for key, value in kwargs.items():
            tok = value.key_tok if isinstance(value, _KeyedValue) else value.tok
            if key in _IGNORED_KEYS or key.endswith(_IGNORED_SUFFIXES) or \
                    key in _IGNORED_KIND_KEYS.get(self.kind, ()) or \
                    key in _IGNORED_KIND_KEYS.get(self.act, ()):
                continue
            if key == "dataformat":
                self.p.set_data_format(value)
                continue
            canon = self.canonical(key)
            if canon == "input_shape":
                self.p.set_input(value, tok.text)
                continue
            if canon == "trainable":  # Keras' trainable=False: its weights are frozen
                self.set("trainable", value)
                continue
            if canon == "stride" and value.value is None:  # Keras' strides=None: the window
                continue
            if canon is None or canon not in self.accepted():
                raise self.p.error(tok, f"{key!r} is not an option of {self.word.text!r}"
                                   f"{self.options_hint()}")
            self.set(canon, value)
        self.positional_done = len(names)

    # plain syntax --------------------------------------------------------------------------
    def plain_args(self) -> None:
        tok = self.p.peek()
        if self.kind in _NEEDS_OUT and "out" not in self.opts and tok.kind != "num" and not (
                tok.kind == "word" and self.canonical(_norm(tok.text)) == "out"):
            meaning, example = _NEEDS_OUT[self.kind]
            raise self.p.error(tok, f"expected a number after {self.word.text!r} (its {meaning}, "
                               f"like {example}), got {_describe(tok)}")
        names = list(self.positional_names(0, call=False))
        positional = [n for n in names if n not in self.opts]
        while True:
            tok = self.p.peek()
            if tok.kind == "num" and self.p.is_cross(self.p.peek(1)) and \
                    self.p.is_punct(self.p.peek(2), "["):
                return  # "2x[ … ]": the next item
            if tok.kind in ("num", "dims") or (self.p.is_punct(tok, "(") and
                                               self.p._looks_like_tuple()):
                if not positional:
                    raise self.p.error(tok, f"unexpected value {tok.text!r} after "
                                       f"{self.word.text!r}; name it, like k3 or s2"
                                       f"{self.options_hint()}")
                name = positional.pop(0)
                if tok.kind == "dims" and name == "out" and "kernel" in positional:
                    name = positional.pop(0)  # conv 3x3: a kernel, not a filter count
                self.set(name, self.p.parse_value())
                self.maybe_stride(name)
                continue
            if self.p.is_punct(tok, "×", "*") and self.p.peek(1).kind == "num":
                self.p.take()
                self.repeat = self.p.parse_count(tok)
                continue
            if tok.kind != "word":
                return
            key = _norm(tok.text)
            canon = self.canonical(key)
            if key in ("same", "valid") and "padding" in self.accepted():
                self.p.take()
                self.set("padding", _Value(key, tok))
            elif key == "nobias" and "bias" in self.accepted():
                self.p.take()
                self.set("bias", _Value(False, tok))
            elif key == "ceil" and "ceil" in self.accepted() and not self.p.is_punct(
                    self.p.peek(1), "=", ":"):
                self.p.take()
                self.set("ceil", _Value(True, tok))
            elif key == "bias" and not self.p.is_punct(self.p.peek(1), "=", ":") and \
                    "bias" in self.accepted():
                self.p.take()
                self.set("bias", _Value(True, tok))
            elif canon == "repeat" and self.p.peek(1).kind == "num":
                self.p.take()
                self.repeat = self.p.parse_count(tok)
            elif canon is not None and canon in self.accepted() and self.has_value_after():
                self.p.take()
                if self.p.is_punct(self.p.peek(), "=", ":"):
                    self.p.take()
                self.set(canon, self.p.parse_value())
                self.maybe_stride(canon)
            elif key in _ACT_OF_WORD and "activation" in self.accepted() and \
                    "activation" not in self.opts and self.p.peek(1).kind != "num" and not (
                        self.p.is_punct(self.p.peek(1), "(") and self.p.peek(1).pos == tok.end):
                # (nn.Linear(…) nn.ReLU(): a call is a layer of its own)
                self.p.take()
                self.set("activation", _Value(tok.text, tok))
            elif key in _KIND_OF_WORD or key in _ACT_OF_WORD or key in _REPEAT_WORDS:
                return  # the next layer
            elif canon is not None and canon in self.accepted():
                nxt = self.p.peek(1)
                raise self.p.error(nxt, f"expected a value after {tok.text!r}, got "
                                   f"{_describe(nxt)}")
            else:
                raise self.p.error(tok, f"{tok.text!r} is not an option of "
                                   f"{self.word.text!r}{_did_you_mean(key)}"
                                   f"{self.options_hint()}")

    def has_value_after(self) -> bool:
        nxt = self.p.peek(1)
        if self.p.is_punct(nxt, "=", ":"):
            return True
        words = (*_ACT_OF_WORD, "same", "valid", "true", "false", "on", "off", *_NO_ACTIVATION)
        return (nxt.kind in ("num", "dims", "str")
                or (nxt.kind == "word" and _norm(nxt.text) in words)
                or (self.p.is_punct(nxt, "(") and self.p.peek(2).kind == "num"))

    def maybe_stride(self, name: str) -> None:
        """``maxpool3/2``, ``k3/2``: a ``/`` after a kernel gives the stride."""
        if name == "kernel" and self.p.is_punct(self.p.peek(), "/"):
            self.p.take()
            self.set("stride", self.p.parse_value())

    def options_hint(self) -> str:
        opts = [_OPTION_SHOWN[o] for o in self.accepted() if o in _OPTION_SHOWN]
        return f"; it takes {', '.join(opts)}" if opts else "; it takes no options"

    # values --------------------------------------------------------------------------------
    def set(self, name: str, value: _Value) -> None:
        self.opts[name] = _coerce(self.p, name, value, self.label)

    def finish(self) -> list[LayerSpec]:
        p = self.p
        kind, opts = self.kind, self.opts
        if kind == "activation":
            act = opts.get("activation")
            if act is None:
                raise p.error(self.word, "Activation needs a name, like Activation('relu')")
            kind, self.act, opts = "act", act, {}
        if kind == "act":
            opts = {"activation": self.act, **opts}
        if kind in _NEEDS_OUT and "out" not in opts:
            meaning, example = _NEEDS_OUT[kind]
            raise p.error(self.word, f"{self.word.text!r} needs its {meaning}, like {example}")
        p.layer_count += 1
        end = p.toks[max(p.i - 1, 0)].end
        text = " ".join(p.src[self.word.pos:end].split())
        line, col, _ = _location(p.src, self.word.pos)
        spec = LayerSpec(kind, opts, 0, text[:60], line, col)
        return [spec] * self.repeat


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, tuple) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (value[0], value[1])
    return None


def _coerce(p: _Parser, name: str, value: _Value, label: str) -> Any:
    """Check one option's value and bring it to its canonical form."""
    raw, tok = value.value, value.tok

    shown = {"out": "units" if label == "dense" else "filters", "in": "input size",
             "kconst": "k", "multiplier": "depth multiplier", "start": "start_dim",
             "end": "end_dim"}.get(name, name)

    def fail(expected: str) -> SpecSyntaxError:
        return p.error(tok, f"{shown} of {label} must be {expected}, got {tok.text!r}")

    if isinstance(raw, _Call):
        raise fail("a plain value")
    if name in ("out", "in", "groups", "multiplier", "size"):
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_INT:
            raise fail(f"a whole number from 1 to {MAX_INT:,}")
        return raw
    if name == "features":
        if isinstance(raw, tuple) and raw and all(isinstance(v, int) and not isinstance(v, bool)
                                                  and 1 <= v <= MAX_INT for v in raw):
            return raw
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_INT:
            raise fail(f"a whole number from 1 to {MAX_INT:,}")
        return (raw,)
    if name in ("kernel", "stride", "dilation", "output"):
        pair = _pair(raw)
        if pair is None or not all(1 <= v <= MAX_INT for v in pair):
            raise fail("a positive whole number or a pair like 3x3")
        return pair
    if name == "padding":
        if isinstance(raw, str) and raw.lower() in ("same", "valid"):
            if label == "zeropad":
                raise fail("a number or a pair like 1x1")
            return raw.lower()
        if label == "zeropad" and isinstance(raw, tuple) and len(raw) == 4 and all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT for v in raw):
            return raw
        pair = _pair(raw)
        if pair is None or not all(0 <= v <= MAX_INT for v in pair):
            raise fail("a whole number, a pair like 1x1, same or valid")
        return pair
    if name in ("axis", "start", "end", "dim"):  # checked against the shapes when built
        values = raw if name == "axis" and isinstance(raw, tuple) and raw else (raw,)
        if not all(isinstance(v, int) and not isinstance(v, bool) and -8 <= v <= 8
                   for v in values):
            raise fail("a whole number such as -1" + (" or a list" if name == "axis" else ""))
        return raw
    if name in ("bias", "ceil", "affine", "keepdims", "trainable"):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.lower() in ("yes", "no", "on", "off"):
            return raw.lower() in ("yes", "on")
        raise fail("true or false")
    if name == "rate":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= 1:
            raise fail("a number from 0 to 1")
        return float(raw)
    if name in ("alpha", "beta", "kconst", "slope"):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw <= MAX_INT:
            raise fail("a non-negative number")
        return float(raw)
    if name == "activation":
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise fail("an activation name such as relu")
        key = _norm(raw)
        if key in _NO_ACTIVATION:
            return None
        if key not in _ACT_OF_WORD:
            raise p.error(tok, f"unknown activation {raw!r}; use one of "
                          f"{', '.join(ACTIVATIONS)}{_did_you_mean(key)}")
        return _ACT_OF_WORD[key]
    raise fail("a known option")  # pragma: no cover - every canonical option is handled above


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


__all__ = ["ACTIVATIONS", "MAX_INT", "MAX_LAYERS", "LayerSpec", "ParsedSpec", "parse"]
