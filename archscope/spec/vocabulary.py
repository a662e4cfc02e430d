"""The layer-spec language's words: layers, activations, options and their aliases (pure data).

Every word is compared normalised (:func:`norm`: lower-cased, without ``_``, after the last ``.``),
so Keras' and PyTorch's spellings of a layer or an option meet in one canonical name. The parser
(:mod:`archscope.spec.parser`) and the option binding (:mod:`archscope.spec.binding`) read these
tables; docs/spec.md lists them for users.
"""

from __future__ import annotations

import difflib

#: Largest integer a spec may contain; larger ones are typing mistakes, and would make torch
#: allocate absurd tensors even on the meta device.
MAX_INT = 1_000_000
#: Most layers a spec may expand to (``repeat`` included).
MAX_LAYERS = 2_000

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
NO_ACTIVATION = ("linear", "identity", "none", "null")

KIND_OF_WORD: dict[str, str] = {w: kind for kind, words in _LAYER_WORDS.items() for w in words}
ACT_OF_WORD: dict[str, str] = {w: act for act, (words, _) in ACTIVATIONS.items() for w in words}

INPUT_WORDS = ("input", "inputs", "in", "inputshape", "shape", "inputlayer")
LAYOUT_WORDS = {"hwc": "hwc", "nhwc": "hwc", "chw": "chw", "nchw": "chw",
                 "channelslast": "hwc", "channelsfirst": "chw"}
REPEAT_WORDS = ("repeat", "rep", "times")

#: option word → canonical option (before per-kind overrides in ``KIND_OPTION_ALIASES``).
OPTION_ALIASES: dict[str, str] = {
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
KIND_OPTION_ALIASES: dict[str, dict[str, str]] = {
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
IGNORED_KEYS = frozenset({
    "name", "momentum", "epsilon", "eps", "inplace", "seed", "dtype", "noiseshape", "device",
    "paddingmode", "trackrunningstats", "countincludepad", "returnindices", "divisoroverride",
    "approximate", "threshold",
})
#: keywords of some calls (by kind or activation) that change no count there: a softmax's axis
#: (its output has its input's shape whichever axis sums to 1), Softplus' β.
IGNORED_KIND_KEYS = {"act": frozenset({"dim", "axis"}), "softplus": frozenset({"beta"})}
#: Keras' ``data_format`` values → the spec's layout.
DATA_FORMATS = {"channelslast": "hwc", "channelsfirst": "chw"}
IGNORED_SUFFIXES = ("initializer", "regularizer", "constraint")
#: methods of a Keras model that pasted code calls around its ``model.add(…)`` lines and that add
#: no layer (``model.summary()``, ``model.compile(…)``, ``history = model.fit(…)`` …): skipped.
#: ``model.build(shape)`` is read for its input shape. Others (``model.pop()``) are errors.
MODEL_METHODS = frozenset({
    "summary", "compile", "fit", "build", "evaluate", "predict", "save", "saveweights",
    "loadweights", "fitgenerator", "evaluategenerator", "predictgenerator", "trainonbatch",
    "testonbatch", "predictonbatch", "countparams", "getconfig", "tojson",
})

_CONV_OPTS = ("out", "in", "kernel", "stride", "padding", "dilation", "groups", "bias",
              "activation")
#: per kind: the options it accepts, and the order of positional values (Keras' order; a bare
#: number after the layer word fills the first).
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
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
}
POSITIONAL: dict[str, tuple[str, ...]] = {
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
KERAS_AXIS_FIRST = frozenset({"batchnormalization", "batchnormalisation", "layernormalization",
                               "layernormalisation"})
#: PyTorch's positional order, used when a call has more positional values than Keras takes
#: (``nn.Conv2d(3, 32, 3)``, ``nn.Linear(6272, 512)``).
TORCH_POSITIONAL: dict[str, tuple[str, ...]] = {
    "conv": ("in", "out", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    "dense": ("in", "out", "bias"),
    "flatten": ("start", "end"),  # nn.Flatten(1, -1)
}
#: positional values Keras' call takes before PyTorch's order is assumed.
KERAS_POSITIONAL_COUNT = {"conv": 2, "dense": 1, "flatten": 0}
#: a plain (non-call) value directly after the word; for ``dwconv`` it is the output channels.
PLAIN_POSITIONAL: dict[str, tuple[str, ...]] = {
    **POSITIONAL,
    "dwconv": ("out", "kernel", "stride", "padding"),
}
#: an activation's plain value (``leakyrelu0.2``, ``elu 1.0``).
ACT_POSITIONAL = {"leakyrelu": ("slope",), "elu": ("alpha",)}
#: per activation: the options it accepts, also the order of a call's positional values
#: (``nn.Softmax(1)``): the dim changes no count.
ACT_OPTIONS = {**ACT_POSITIONAL, "softmax": ("dim",), "logsoftmax": ("dim",)}
#: how each option is written, for "it takes …" hints.
OPTION_SHOWN = {
    "kernel": "k3", "stride": "s2", "padding": "p1/same/valid", "dilation": "d2", "groups": "g2",
    "bias": "nobias", "activation": "an activation (relu …)", "multiplier": "m2", "ceil": "ceil",
    "rate": "a rate (0.5)", "size": "size=5", "alpha": "alpha=…", "beta": "beta=…",
    "kconst": "k=2", "slope": "a slope (0.2)", "output": "an output size (7x7)",
    "affine": "affine=false", "in": "in=N", "keepdims": "keepdims=True",
    "axis": "axis=-1", "start": "start_dim=1", "end": "end_dim=-1", "dim": "dim=-1",
}
#: kinds that need an output size: (what it is called, an example).
NEEDS_OUT = {"conv": ("number of filters", "conv32 k3"), "sepconv": ("number of filters",
              "sepconv64 k3"), "pwconv": ("number of filters", "pwconv64"),
              "dense": ("number of units", "dense512")}


def norm(word: str) -> str:
    """``layers.MaxPooling2D`` → ``maxpooling2d``; ``max_pool`` → ``maxpool``."""
    return word.rsplit(".", 1)[-1].replace("_", "").lower()


def did_you_mean(name: str) -> str:
    """`` (did you mean 'maxpool'?)`` for a word close to a layer, activation or option; else ``""``."""
    words = [*KIND_OF_WORD, *ACT_OF_WORD, *OPTION_ALIASES]
    close = difflib.get_close_matches(name, [w for w in words if w != name], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""
