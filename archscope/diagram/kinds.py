"""Layer types → the diagram's vocabulary: a node's kind (its colour), which layers may be drawn
inside the layer before them, and which functional ops merge tensors.

Dispatch is by a type table (lower-case type names: PyTorch modules, functional ops and ONNX
operators), never by class-name substrings.
"""

from __future__ import annotations

from archscope.report import LayerRecord

#: Layer type (lower case; PyTorch modules, functional ops and ONNX operators) → kind.
_KIND_BY_TYPE: dict[str, str] = {
    **dict.fromkeys(
        (
            "conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d", "convtranspose3d",
            "lazyconv1d", "lazyconv2d", "lazyconv3d", "conv", "convtranspose", "convolution",
            "conv2d_fn",
        ),
        "conv",
    ),
    **dict.fromkeys(
        (
            "batchnorm1d", "batchnorm2d", "batchnorm3d", "syncbatchnorm", "layernorm", "groupnorm",
            "instancenorm1d", "instancenorm2d", "instancenorm3d", "localresponsenorm", "rmsnorm",
            "batchnormalization", "layernormalization", "instancenormalization", "lrn",
            "batch_norm", "layer_norm", "group_norm", "local_response_norm",
        ),
        "norm",
    ),
    **dict.fromkeys(
        (
            "relu", "relu6", "leakyrelu", "prelu", "rrelu", "elu", "celu", "selu", "gelu", "silu",
            "mish", "sigmoid", "logsigmoid", "tanh", "hardtanh", "hardswish", "hardsigmoid",
            "softplus", "softsign", "softmax", "logsoftmax", "softmin", "threshold", "glu",
            "relu_", "leaky_relu", "log_softmax", "hardswish_", "sigmoid_", "tanh_", "gelu_",
        ),
        "activation",
    ),
    **dict.fromkeys(
        (
            "maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d",
            "adaptiveavgpool1d", "adaptiveavgpool2d", "adaptiveavgpool3d", "adaptivemaxpool1d",
            "adaptivemaxpool2d", "adaptivemaxpool3d", "lppool1d", "lppool2d", "fractionalmaxpool2d",
            "maxpool", "averagepool", "globalaveragepool", "globalmaxpool", "max_pool2d",
            "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
        ),
        "pool",
    ),
    **dict.fromkeys(
        ("linear", "bilinear", "lazylinear", "gemm", "matmul", "identitylinear"), "linear"
    ),
    **dict.fromkeys(
        ("dropout", "dropout1d", "dropout2d", "dropout3d", "alphadropout", "featurealphadropout"),
        "dropout",
    ),
    **dict.fromkeys(
        (
            "flatten", "unflatten", "reshape", "view", "add", "add_", "iadd", "sub", "mul", "mul_",
            "div", "cat", "concat", "concatenate", "stack", "sum", "mean", "permute", "transpose",
            "squeeze", "unsqueeze", "identity", "chunk", "split", "getitem", "pad", "reducemean",
            "reducesum", "reducemax", "gather", "shape", "slice", "expand", "tile",
        ),
        "op",
    ),
}

#: Merges that add a residual (their non-main inputs are skip connections).
_RESIDUAL_TYPES = frozenset({"add", "add_", "iadd", "sub", "mul", "mul_"})

#: Functional ops that combine tensors; with two or more distinct producers they are merges.
_MERGE_TYPES = frozenset(
    {"add", "add_", "iadd", "sub", "mul", "mul_", "cat", "concat", "concatenate", "stack", "sum"}
)

#: Kind of a follower → kinds of the node it may be drawn inside (``Conv2d + BN + ReLU``).
FUSE_INTO: dict[str, frozenset[str]] = {
    "norm": frozenset({"conv", "linear"}),
    "activation": frozenset({"conv", "linear", "norm", "op"}),
    "dropout": frozenset({"conv", "linear", "activation", "norm", "pool"}),
}

#: Container types whose class name says nothing: a collapsed one is titled by its name.
GENERIC_CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})


def kind_of(layer_type: str) -> str:
    """The colour kind of a layer type (``Conv2d`` → ``conv``); unknown types are ``other``."""
    return _KIND_BY_TYPE.get(layer_type.lower(), "other")


def is_merge(record: LayerRecord) -> bool:
    """A record combining tensors from two or more producers (``add``, ``cat``, any function)."""
    producers = set(record.inputs)
    if len(producers) < 2:
        return False
    return record.kind == "function" or record.type.lower() in _MERGE_TYPES


def is_residual(record: LayerRecord) -> bool:
    """A leaf ``add``-like merge of two or more producers: its non-main inputs are skips."""
    return record.is_leaf and record.type.lower() in _RESIDUAL_TYPES and len(set(record.inputs)) >= 2
