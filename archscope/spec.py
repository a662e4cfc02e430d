"""The layer-spec language of ``archscope calc``: a network typed as one line of layers.

::

    150x150x3 conv32 k3 → maxpool2 → conv64 k3 → maxpool2 → flatten → dense512 → dense1

Two stages, so that the language can be tested without torch:

* :func:`parse` (:mod:`archscope.spec_parse`, pure Python) turns text into a :class:`ParsedSpec`.
* :func:`build` turns a parsed spec into a real ``nn.Sequential`` (modules named ``conv1``,
  ``relu1``, ``pool1`` …, ``fc1``), tracking shapes with the integer formulas of
  :mod:`archscope.formulas` only to size the layers and to refuse a layer that cannot apply
  (:class:`~archscope.errors.SpecShapeError` names the layer number and the shapes). Shapes,
  parameters and MACs shown to users always come from the engine's
  :class:`~archscope.report.Report` (:func:`calc_report`).

:func:`to_layout` re-orders a report's shapes into the order the user wrote (H×W×C for ``hwc``).
The grammar and examples are in docs/spec.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope.errors import ModelSourceError, SpecShapeError, first_line
from archscope.formulas import ceil_drops_last_window, output_size
from archscope.report import Layout
from archscope.spec_parse import ACTIVATIONS, LayerSpec, ParsedSpec, parse

if TYPE_CHECKING:
    from torch import nn

    from archscope.report import Report


@dataclass(frozen=True)
class BuiltSpec:
    """A built spec: the model, the engine's input shape (C×H×W), and notes for the user.

    ``keras_bn_channels`` is the channels (C) summed over the spec's batchnorm layers when one of
    them is written Keras' way (``BatchNormalization``, ``bn``): Keras' ``model.summary()``
    counts each one's moving mean and variance, 2·C, as non-trainable parameters, where PyTorch
    keeps them as buffers. 0 otherwise.
    """

    model: nn.Module
    input_shape: tuple[int, ...]
    layout: str
    name: str
    notes: tuple[str, ...] = ()
    keras_bn_channels: int = 0


# ──────────────────────────────────────────────────────────────────────────────── build


def show_shape(shape: tuple[int, ...], layout: str) -> str:
    """A sample's shape the way the user wrote it: ``(128, 7, 7)`` → ``7×7×128`` for ``hwc``."""
    if len(shape) == 3 and layout == "hwc":
        shape = (shape[1], shape[2], shape[0])
    return "×".join(str(d) for d in shape)


class _Build:
    """Turns LayerSpecs into named modules while tracking a sample's shape (C×H×W or (F,))."""

    def __init__(self, parsed: ParsedSpec, shape: tuple[int, ...]) -> None:
        import torch
        from torch import nn

        self.torch = torch
        self.nn = nn
        self.layout = parsed.layout
        self.shape = shape
        self.modules: list[tuple[str, nn.Module]] = []
        self.counters: dict[str, int] = {}
        self.notes: list[str] = []
        self.layer = LayerSpec("input")
        #: channels of every batchnorm layer, and whether one is written Keras' way (not nn.…)
        self.bn_channels = 0
        self.keras_bn = False

    # helpers -------------------------------------------------------------------------------
    def where(self) -> str:
        return f"layer {self.layer.number} ({self.layer.text})"

    def shown(self, shape: tuple[int, ...] | None = None) -> str:
        shape = self.shape if shape is None else shape
        label = {3: " (H×W×C)" if self.layout == "hwc" else " (C×H×W)", 1: " features"}
        return show_shape(shape, self.layout) + label.get(len(shape), "")

    def fail(self, message: str) -> SpecShapeError:
        return SpecShapeError(f"{self.where()}: {message}")

    def axes(self, axis: int | tuple[int, ...]) -> tuple[str, set[str]]:
        """Keras' ``axis`` of a batch in the spec's order (N×H×W×C or N×C×H×W; N×F flat) →
        (as written, the axes it names: ``{"C"}``)."""
        names = (("N", "H", "W", "C") if self.layout == "hwc" else ("N", "C", "H", "W")) \
            if len(self.shape) == 3 else ("N", "F")
        given = axis if isinstance(axis, tuple) else (axis,)
        written = f"axis={axis if not isinstance(axis, tuple) else list(axis)}"
        for a in given:
            if not -len(names) <= a < len(names):
                raise self.fail(f"{written} is out of range for its {self.shown()} input "
                                f"({len(names)} axes with the batch: {'×'.join(names)})")
        return written, {names[a % len(names)] for a in given}

    def add(self, prefix: str, module: nn.Module) -> None:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        joint = "_" if prefix[-1].isdigit() else ""  # relu6_1, not relu61
        self.modules.append((f"{prefix}{joint}{n}", module))

    def need_image(self, what: str) -> tuple[int, int, int]:
        if len(self.shape) != 3:
            raise self.fail(f"{what} needs an image-shaped input (H×W×C) but gets "
                            f"{self.shown()}; put it before flatten/dense")
        c, h, w = self.shape
        return c, h, w

    def window(self, kernel: tuple[int, int], stride: tuple[int, int], padding: Any,
               dilation: tuple[int, int], ceil: bool, what: str,
               pool: bool = False) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
        """Explicit padding for a conv/pool and the output size; refuses windows that do not fit.

        ``same`` follows Keras: output ⌈n/s⌉, total padding ``(out − 1)·s + d·(k − 1) + 1 − n``
        split with the extra pixel at the bottom/right; an odd split becomes a padding layer.
        Returns ``((ph, pw), None)`` or ``((0, 0), (left, right, top, bottom))``.
        """
        _, h, w = self.need_image(what)
        pad: tuple[int, int]
        asym: tuple[int, int, int, int] | None = None
        if padding == "same":
            totals = []
            for n, k, s, d in zip((h, w), kernel, stride, dilation, strict=True):
                out = -(-n // s)
                totals.append(max((out - 1) * s + d * (k - 1) + 1 - n, 0))
            before = [t // 2 for t in totals]
            after = [t - b for t, b in zip(totals, before, strict=True)]
            if before == after:
                pad = (before[0], before[1])
            else:
                pad = (0, 0)
                asym = (before[1], after[1], before[0], after[0])
        elif padding == "valid" or padding is None:
            pad = (0, 0)
        else:
            pad = padding
        if pool:
            for p_, k, d in zip(pad, kernel, dilation, strict=True):
                if p_ > (d * (k - 1) + 1) // 2:
                    raise self.fail(f"padding {p_} is more than half of its {kernel[0]}×"
                                    f"{kernel[1]} window; PyTorch allows at most half")
        sizes = (h + (asym[2] + asym[3] if asym else 0), w + (asym[0] + asym[1] if asym else 0))
        outs = []
        dropped = False
        for n, k, s, p_, d in zip(sizes, kernel, stride, pad, dilation, strict=True):
            out, expr = output_size(n, k, s, p_, d, ceil)
            if out < 1:
                raise self.fail(f"its {kernel[0]}×{kernel[1]} window does not fit its "
                                f"{self.shown()} input: {expr}; use a larger input, fewer "
                                "pooling layers or padding same")
            outs.append(out)
            if ceil and ceil_drops_last_window(n, k, s, p_, d) and not dropped:
                dropped = True
                self.notes.append(f"{self.where()}: ceil mode's last window would start in the "
                                  "padding, so PyTorch drops it (the −1 in its output size)")
        self.next_hw = (outs[0], outs[1])
        return pad, asym

    def add_pad(self, asym: tuple[int, int, int, int], value: float = 0.0) -> None:
        nn = self.nn
        self.add("pad", nn.ZeroPad2d(asym) if value == 0.0 else nn.ConstantPad2d(asym, value))

    def add_activation(self, act: str | None, opts: dict[str, Any]) -> None:
        if act is None:
            return
        cls = getattr(self.nn, ACTIVATIONS[act][1])
        module: Any
        if act in ("softmax", "logsoftmax"):
            module = cls(dim=1)
        elif act == "leakyrelu":
            module = cls(negative_slope=opts.get("slope", 0.01))
        elif act == "elu":
            module = cls(alpha=opts.get("alpha", 1.0))
        else:
            module = cls()
        self.add(act, module)

    # layers --------------------------------------------------------------------------------
    def apply(self, layer: LayerSpec) -> None:
        self.layer = layer
        getattr(self, f"_{layer.kind}")(layer.options)

    def _conv(self, o: dict[str, Any], prefix: str = "conv", depthwise: bool = False) -> None:
        c = self.need_image(prefix)[0]
        if "in" in o and o["in"] != c:
            raise self.fail(f"in_channels is {o['in']} but its input {self.shown()} has {c} "
                            "channels")
        if depthwise:
            out = o.get("out", c * o.get("multiplier", 1))
            groups = c
        else:
            out = o["out"]
            groups = o.get("groups", 1)
        if c % groups or out % groups:
            raise self.fail(f"groups={groups} must divide both its {c} input channels and its "
                            f"{out} output channels")
        kernel = o.get("kernel", (1, 1) if prefix == "pwconv" else (3, 3))
        stride = o.get("stride", (1, 1))
        dilation = o.get("dilation", (1, 1))
        pad, asym = self.window(kernel, stride, o.get("padding", "valid"), dilation, False, prefix)
        if asym:
            self.add_pad(asym)
        self.add(prefix, self.nn.Conv2d(c, out, kernel, stride, pad, dilation, groups,
                                        bias=o.get("bias", True)))
        self.shape = (out, *self.next_hw)
        self.add_activation(o.get("activation"), o)

    def _dwconv(self, o: dict[str, Any]) -> None:
        c = self.need_image("dwconv")[0]
        if "out" in o and o["out"] % c:
            raise self.fail(f"a depthwise conv's {o['out']} output channels must be a multiple "
                            f"of its {c} input channels")
        self._conv(o, "dwconv", depthwise=True)

    def _pwconv(self, o: dict[str, Any]) -> None:
        self._conv({**o, "kernel": (1, 1), "padding": (0, 0)}, "pwconv")

    def _sepconv(self, o: dict[str, Any]) -> None:
        """Keras SeparableConv2D: a depthwise k×k conv without bias, then a 1×1 conv."""
        depthwise = {k: v for k, v in o.items() if k not in ("out", "activation", "bias", "in")}
        depthwise["bias"] = False
        if "in" in o:
            depthwise["in"] = o["in"]
        self._conv(depthwise, "dwconv", depthwise=True)
        pointwise: dict[str, Any] = {k: o[k] for k in ("out", "activation", "bias") if k in o}
        self._conv({**pointwise, "kernel": (1, 1), "padding": (0, 0)}, "pwconv")

    def _pool(self, o: dict[str, Any], kind: str) -> None:
        kernel = o.get("kernel", (2, 2))
        stride = o.get("stride", kernel)
        dilation = o.get("dilation", (1, 1))
        ceil = o.get("ceil", False)
        pad, asym = self.window(kernel, stride, o.get("padding", "valid"), dilation, ceil, kind,
                                pool=True)
        c = self.shape[0]
        nn = self.nn
        if kind == "maxpool":
            if asym:  # Keras ignores padded cells in a max: pad with −∞
                self.add_pad(asym, float("-inf"))
            self.add("pool", nn.MaxPool2d(kernel, stride, pad, dilation, ceil_mode=ceil))
        else:
            if asym:
                self.add_pad(asym)
                self.notes.append(f"{self.where()}: Keras' same padding is uneven here; the "
                                  "zero padding counts in the border averages (shapes and counts "
                                  "are unaffected)")
            self.add("pool", nn.AvgPool2d(kernel, stride, pad, ceil_mode=ceil,
                                          count_include_pad=False))
        self.shape = (c, *self.next_hw)

    def _maxpool(self, o: dict[str, Any]) -> None:
        self._pool(o, "maxpool")

    def _avgpool(self, o: dict[str, Any]) -> None:
        self._pool(o, "avgpool")

    def _global(self, cls_name: str, keepdims: bool) -> None:
        """Keras' global pooling: C values, or 1×1×C with ``keepdims=True``."""
        c = self.need_image("global pooling")[0]
        self.add("pool", getattr(self.nn, cls_name)(1))
        if keepdims:
            self.shape = (c, 1, 1)
            return
        self.add("flatten", self.nn.Flatten())
        self.shape = (c,)

    def _gap(self, o: dict[str, Any]) -> None:
        self._global("AdaptiveAvgPool2d", o.get("keepdims", False))

    def _gmp(self, o: dict[str, Any]) -> None:
        self._global("AdaptiveMaxPool2d", o.get("keepdims", False))

    def _adaptive(self, o: dict[str, Any], cls_name: str) -> None:
        c = self.need_image("adaptive pooling")[0]
        size = o.get("output", (1, 1))
        self.add("pool", getattr(self.nn, cls_name)(size))
        self.shape = (c, *size)

    def _adaptiveavgpool(self, o: dict[str, Any]) -> None:
        self._adaptive(o, "AdaptiveAvgPool2d")

    def _adaptivemaxpool(self, o: dict[str, Any]) -> None:
        self._adaptive(o, "AdaptiveMaxPool2d")

    def _flatten(self, o: dict[str, Any]) -> None:
        ndim = len(self.shape) + 1  # with the batch
        start, end = o.get("start", 1), o.get("end", -1)
        if not (-ndim <= start < ndim and -ndim <= end < ndim) or (
                start % ndim, end % ndim) != (1, ndim - 1):
            raise self.fail(f"start_dim={start}, end_dim={end} does not flatten its "
                            f"{self.shown()} input to one row per sample (dims 1 to {ndim - 1}); "
                            "archscope's flatten does only that: start_dim=1, end_dim=-1")
        self.add("flatten", self.nn.Flatten())
        self.shape = (_prod(self.shape),)

    def _dense(self, o: dict[str, Any]) -> None:
        if len(self.shape) != 1:
            before = self.shown()
            channels, units = self.shape[0], o["out"]
            self._flatten({})
            self.notes.append(
                f"{self.where()}: its input {before} is not flat; flattened it to {self.shape[0]} "
                f"first (write flatten before it to say so). Keras' Dense would act on the "
                f"channels alone, at every position: ({channels}+1)·{units} = "
                f"{(channels + 1) * units:,} parameters instead of "
                f"({self.shape[0]}+1)·{units} = {(self.shape[0] + 1) * units:,}"
            )
        features = self.shape[0]
        if "in" in o and o["in"] != features:
            raise self.fail(f"in_features is {o['in']} but its input has {features} features")
        self.add("fc", self.nn.Linear(features, o["out"], bias=o.get("bias", True)))
        self.shape = (o["out"],)
        self.add_activation(o.get("activation"), o)

    def _dropout(self, o: dict[str, Any]) -> None:
        self.add("dropout", self.nn.Dropout(o.get("rate", 0.5)))

    def _dropout2d(self, o: dict[str, Any]) -> None:
        self.need_image("dropout2d")
        self.add("dropout", self.nn.Dropout2d(o.get("rate", 0.5)))

    def _check_features(self, o: dict[str, Any], expected: tuple[int, ...], what: str) -> None:
        given = o.get("features")
        if given is not None and tuple(given) != expected and tuple(given) != expected[:1]:
            raise self.fail(f"{what} is given {'×'.join(map(str, given))} features but its "
                            f"input is {self.shown()}")

    def _batchnorm(self, o: dict[str, Any]) -> None:
        c = self.shape[0]
        self._check_features(o, (c,), "batchnorm")
        if "axis" in o:  # Keras' axis: only the channels' (−1 on H×W×C) is what BatchNorm2d does
            written, axes = self.axes(o["axis"])
            if axes != {"C" if len(self.shape) == 3 else "F"}:
                raise self.fail(f"{written} normalises its {self.shown()} input over "
                                f"{'×'.join(sorted(axes))}, not its channels; archscope's "
                                "batchnorm normalises the channels (axis=-1 on H×W×C, axis=1 on "
                                "C×H×W): drop axis")
        cls = self.nn.BatchNorm2d if len(self.shape) == 3 else self.nn.BatchNorm1d
        self.add("bn", cls(c, affine=o.get("affine", True)))
        self.bn_channels += c
        word = self.layer.text.split("(")[0].split()[0] if self.layer.text else ""
        if not (word.startswith(("nn.", "torch.")) or word.lower().endswith(("1d", "2d"))):
            self.keras_bn = True

    def _layernorm(self, o: dict[str, Any]) -> None:
        """LayerNorm over a sample's whole C×H×W (PyTorch's usual use), or its features."""
        self._check_features(o, self.shape, "layernorm")
        if "axis" in o:  # Keras' default, axis=-1, is C alone on an image: not this layer
            written, axes = self.axes(o["axis"])
            every = {"C", "H", "W"} if len(self.shape) == 3 else {"F"}
            if axes != every:
                raise self.fail(f"{written} normalises its {self.shown()} input over "
                                f"{'×'.join(sorted(axes))} alone; archscope's layernorm "
                                "normalises a sample's whole C×H×W (PyTorch's LayerNorm over its "
                                "last dimensions): drop axis, or write axis=[1, 2, 3]")
        self.add("ln", self.nn.LayerNorm(list(self.shape),
                                         elementwise_affine=o.get("affine", True)))

    def _lrn(self, o: dict[str, Any]) -> None:
        """Defaults are AlexNet's (Krizhevsky et al. 2012, §3.3): n=5, α=1e-4, β=0.75, k=2.

        α is the paper's, ``b = a / (k + α·Σa²)^β``; PyTorch's ``LocalResponseNorm`` divides
        α by n, so it receives ``α·n`` (as in the zoo's AlexNet). Only ``LocalResponseNorm(…)``
        written with PyTorch's name and call takes PyTorch's α as given.
        """
        self.need_image("lrn")
        size = o.get("size", 5)
        alpha = o.get("alpha", 1e-4)
        if not o.get("torch_alpha", False):
            alpha *= size
        self.add("lrn", self.nn.LocalResponseNorm(size, alpha, o.get("beta", 0.75),
                                                  o.get("kconst", 2.0)))

    def _zeropad(self, o: dict[str, Any]) -> None:
        c, h, w = self.need_image("zeropad")
        pad = o.get("padding", (1, 1))
        if len(pad) == 2:  # Keras ZeroPadding2D((ph, pw))
            pad = (pad[1], pad[1], pad[0], pad[0])
        self.add("pad", self.nn.ZeroPad2d(pad))
        self.shape = (c, h + pad[2] + pad[3], w + pad[0] + pad[1])

    def _act(self, o: dict[str, Any]) -> None:
        self.add_activation(o["activation"], o)


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def build(parsed: ParsedSpec, *, input_shape: tuple[int, ...] | None = None,
          device: Any = None, name: str | None = None) -> BuiltSpec:
    """Build ``parsed`` as an ``nn.Sequential`` on ``device`` (default: torch's default device).

    Args:
        parsed: a parsed spec.
        input_shape: C×H×W (or ``(F,)``) overriding the spec's own input shape (``--input``).
        device: where to create the parameters; pass ``"meta"`` to allocate nothing.
        name: the model's name in reports (default: the spec text, whitespace collapsed).

    Raises:
        SpecShapeError: naming the layer number and the shapes when a layer cannot apply.
    """
    import torch
    from torch import nn

    shape = input_shape if input_shape is not None else parsed.input_shape
    if shape is None:
        raise SpecShapeError("the spec has no input shape; start it with one, like "
                             "'150x150x3 conv32 k3 …' (H×W×C) or 'chw:3x150x150 …', "
                             "or pass --input")
    shape = tuple(shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if not 1 <= len(shape) <= 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise SpecShapeError(f"input shape {shape} must be C×H×W or a number of features")
    if not parsed.layers:
        raise SpecShapeError("the spec has no layers; add some, like '28x28x1 conv32 k3 → "
                             "flatten → dense10'")
    state = _Build(parsed, shape)
    notes: list[str] = []
    if parsed.layout == "hwc" and parsed.input_dims is not None and len(parsed.input_dims) == 3 \
            and input_shape is None:
        h, w, c = parsed.input_dims
        if h in (1, 3) and c > 4 and w == c:
            notes.append(f"the input {h}×{w}×{c} is read as H×W×C ({c} channels); "
                         f"write chw:{h}x{w}x{c} if you meant {h} channels")
    with torch.device(device) if device is not None else contextlib.nullcontext():
        for layer in parsed.layers:
            before = len(state.modules)
            try:
                state.apply(layer)
            except (RuntimeError, ValueError, OverflowError) as exc:  # torch refusing a size
                raise state.fail(f"PyTorch cannot build it: {first_line(exc)}") from None
            if layer.options.get("trainable") is False:  # Keras' trainable=False
                for _, module in state.modules[before:]:
                    module.requires_grad_(False)
    model = nn.Sequential()
    for module_name, module in state.modules:
        model.add_module(module_name, module)
    label = name if name is not None else " ".join(parsed.source.split())
    return BuiltSpec(model, shape, parsed.layout, label, tuple(notes + state.notes),
                     state.bn_channels if state.keras_bn else 0)


def read_spec(source: str) -> tuple[str, str]:
    """``spec:`` argument → (spec text, model name): a file's text if it exists, else itself."""
    path = Path(source)
    try:
        is_file = len(source) < 4096 and "\n" not in source and path.is_file()
    except (OSError, ValueError):
        is_file = False
    if is_file:
        try:
            return path.read_text(encoding="utf-8"), source
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelSourceError(f"cannot read spec file {source}: {exc}") from None
    if not any(c.isspace() for c in source) and (
            "/" in source or source.lower().endswith((".spec", ".txt", ".net"))):
        raise ModelSourceError(f"spec file {source} does not exist; give a file's path or the "
                               "layers themselves, like 'spec:28x28x1 conv32 k3 → dense10'")
    return source, " ".join(source.split())


def build_spec(text: str, *, input_shape: tuple[int, ...] | None = None, device: Any = None,
               name: str | None = None, layout: str = "hwc") -> BuiltSpec:
    """Parse and build in one step."""
    return build(parse(text, layout=layout), input_shape=input_shape, device=device, name=name)


def load_spec_source(source: str) -> tuple[nn.Module, str, tuple[int, ...]]:
    """What ``spec:SOURCE`` means to :mod:`archscope.source`: a file or the spec text itself.

    Returns the model built on the current default device, its display name (the file's path or
    the text) and its input shape C×H×W.
    """
    text, name = read_spec(source)
    built = build_spec(text, name=name)
    return built.model, built.name, built.input_shape


def calc_report(text: str, *, name: str | None = None, layout: str = "hwc",
                input_shape: tuple[int, ...] | None = None, batch: int = 1,
                freeze: Sequence[str] = (), backward: bool = False) -> Report:
    """Parse, build (on meta) and inspect a spec: what ``calc`` and every ``spec:`` source show.

    Shapes are re-ordered into the spec's layout (:func:`to_layout`) and the build's notes (an
    implicit flatten …) are added to the report's notes. ``freeze`` marks parameters frozen as
    ``summary --freeze`` does; ``backward`` also counts training FLOPs.
    """
    from archscope.engine import inspect

    built = build_spec(text, input_shape=input_shape, device="meta", name=name, layout=layout)
    if freeze:
        from archscope.freeze import freeze_parameters

        freeze_parameters(built.model, freeze)
    report = inspect(built.model, built.input_shape, batch=batch, name=built.name,
                     backward=backward)
    notes = [*report.notes, *built.notes]
    if built.keras_bn_channels:
        notes.append(keras_batchnorm_note(report.total_params, report.non_trainable_params,
                                          built.keras_bn_channels))
    report = replace(report, notes=tuple(notes))
    return to_layout(report, built.layout if len(built.input_shape) == 3 else "chw")


def keras_batchnorm_note(total: int, non_trainable: int, bn_channels: int) -> str:
    """What Keras' ``model.summary()`` would count: each BatchNormalization's moving mean and
    variance (2·C) as non-trainable parameters, where PyTorch keeps them as buffers.

    ``keras_batchnorm_note(1_640_106, 0, 96)`` says 1,640,298 parameters, 192 non-trainable.
    """
    stats = 2 * bn_channels
    return (f"Keras' model.summary() would show {total + stats:,} parameters ({total:,} + "
            f"2·{bn_channels:,}), {non_trainable + stats:,} of them non-trainable: it counts "
            "each BatchNormalization's moving mean and variance (2·C) as parameters; PyTorch "
            "keeps them as buffers (not counted)")


def to_layout(report: Report, layout: str) -> Report:
    """Show a report's shapes in the user's order: N×C×H×W → N×H×W×C when ``layout == "hwc"``.

    Only the shapes move (and ``Report.layout`` says ``"hwc"``, so JSON is self-describing);
    counts, MACs and formulas are the engine's, unchanged.
    """
    if layout != "hwc" or report.layout == "hwc":  # already in the user's order
        return report

    def perm(shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape

    layers = tuple(
        replace(r, input_shapes=tuple(perm(s) for s in r.input_shapes),
                output_shapes=tuple(perm(s) for s in r.output_shapes))
        for r in report.layers
    )
    shape = report.input_shape
    input_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    note = ("shapes are shown H×W×C (channels last), the order the spec is written in; "
            "PyTorch runs the model as N×C×H×W")
    return replace(report, input_shape=input_shape, layers=layers,
                   output_shapes=tuple(perm(s) for s in report.output_shapes),
                   notes=(*report.notes, note), layout=Layout.HWC)


__all__ = ["BuiltSpec", "LayerSpec", "ParsedSpec", "build", "build_spec", "calc_report",
           "keras_batchnorm_note", "load_spec_source", "parse", "read_spec", "show_shape",
           "to_layout"]
