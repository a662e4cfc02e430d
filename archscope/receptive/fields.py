"""Receptive field, jump and centre of every layer of a traced :class:`~archscope.report.Report`.

::

    from archscope.receptive import receptive_fields
    fields = receptive_fields(report)          # one LayerField per record, in report order
    fields.find("features.30").rf_text         # VGG16's pool5: "212"; .jump_text "32"

Per spatial axis (rows, columns), following Araujo et al. 2019 (Distill, "Computing Receptive
Fields of Convolutional Neural Networks"):

* **receptive field** ``r``: how many input pixels one output unit reads, from the first to the
  last, ``r_out = r_in + (k−1)·d·j_in``;
* **jump** ``j``: input pixels between two neighbouring output units, ``j_out = j_in·s``;
* **centre** ``c``: the centre of the first output unit's field, in input pixel coordinates
  (pixel 0's centre is 0), ``c_out = c_in + ((k−1)/2·d − p_begin)·j_in``; unit ``u`` is centred
  at ``c + u·j``. Exact (a ``Fraction``: ``15.5`` where the field is even); negative where
  zero padding comes first, as the grid of windows starts in the padding.

How layers count:

* Convs and pools (max, average) are windows ``k, s, p, d``. ``ceil_mode`` changes none of the
  three figures: it only keeps a last window that runs past the end of the input, which reads
  fewer pixels there (as a border unit does with zero padding). ``padding='same'`` pads
  ``d·(k−1)`` in all, the odd one at the end (PyTorch's rule), so only ``⌊d·(k−1)/2⌋`` moves
  the centre. 1×1 stride-1 convs leave all three unchanged.
* Activations, normalisations, dropout, element-wise ops and channel-only layers pass the figures
  through. Normalisation statistics (batch, instance, group, layer) are means over the whole map;
  as usual for receptive fields, they are left out.
* Global pooling (an adaptive pool to 1 on every axis, a mean over the spatial axes) and
  ``Linear`` on a vector: **whole input**. Once a unit reads a whole-input unit (an SE block's
  scale, a classifier), everything after it does too.
* ``Flatten`` (or a ``view`` to one row per sample): **flattened**: each unit keeps its map
  unit's field (``rf``), but there is no grid any more, so no jump and no centre.
* Adaptive pooling from ``n`` to ``o``: where PyTorch's windows (``⌊i·n/o⌋`` to
  ``⌈(i+1)·n/o⌉ − 1``) are all one size and evenly spaced, that window (``k = s = n/o`` where
  ``o`` divides ``n``; ``o = n`` is a pass-through); otherwise (``8 → 3``, or to a larger size,
  which repeats input units) they differ in size or spacing: **not computed**.
* Transposed convs: stride 1 is a window read backwards (``r`` grows as a conv's, the jump stays,
  ``c_out = c_in + (p − (k−1)/2·d)·j_in``). Stride ``s > 1`` spreads each input unit over ``s``
  output units, so output units are not evenly spaced over the input (the centres of a k4 s2 p1
  layer's units sit at −½, ½, ½, 1½ … input units): **not computed**, as for upsampling and
  ``PixelShuffle``.
* Where paths merge (a residual ``add``, a ``cat`` along the channels, a multiply), the field is
  the largest over the paths, ``max(27, 11) = 27``, when every path has the same jump and centre;
  otherwise **not aligned**, naming each path's jump or centre, rather than a guess.
* A layer archscope cannot read (a custom module, a ``permute``, a functional conv or pool or a
  padding layer whose window or padding the trace does not record): **unknown**. A status
  without figures passes on to every layer after it (``after features.3``) until a global pool
  or a dense layer makes it whole input (an unknown input stays unknown: it may have cropped
  the map).
* A container's figures are those of its output's leaf: the last leaf inside it with its output
  shape (a residual block's last ReLU).

The measured counterpart (``tests/test_receptive_measured.py``): with positive weights, average
pools in place of max pools and normalisation as identity, the input gradient of one output unit
is non-zero from pixel ``c + u·j − (r−1)/2`` to ``c + u·j + (r−1)/2`` on each axis.

Records are visited in call order, a topological order of the graph ``LayerRecord.inputs``
describes, so a layer reads the fields its inputs' producers got, whichever path they took. What
each layer does to space is read by :func:`archscope.receptive.geometry.layer_geometry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from fractions import Fraction
from typing import Any

from archscope.receptive.geometry import Geometry, Op, layer_geometry
from archscope.report import MODEL_INPUT, LayerRecord, Report


class RFStatus(str, Enum):
    """What a record's figures are."""

    COMPUTED = "computed"  # rf, jump and centre per spatial axis
    WHOLE_INPUT = "whole input"  # every output unit reads every position of the map
    FLATTENED = "flattened"  # a vector: each unit keeps its field (rf), no grid (no jump, centre)
    NOT_ALIGNED = "not aligned"  # merged paths disagree in jump or centre (or come after such)
    NOT_COMPUTED = "not computed"  # output units not evenly spaced over the input (or after)
    UNKNOWN = "unknown"  # a layer archscope cannot read (or after one)
    NONE = "none"  # a row without an output (parameters only)


@dataclass(frozen=True)
class LayerField:
    """One record's receptive field.

    Attributes:
        index, name: the record's (``Report.layers[index]``).
        status: see :class:`RFStatus`.
        rf: receptive field per spatial axis (rows, columns …), in input pixels; also kept
            for FLATTENED; ``()`` otherwise.
        jump: input pixels between neighbouring output units, per axis (COMPUTED only).
        centre: centre of the first output unit's field per axis, in input pixel coordinates
            (pixel 0's centre is 0; exact, ``Fraction``; negative where padding comes first).
        rf_formula, jump_formula, centre_formula: the arithmetic that gives them here
            (``5 + (3−1)·1·2 = 9``, ``2·2 = 4``, ``0 + ((3−1)/2·1 − 1)·2 = 0``; a merge:
            ``max(27, 11) = 27``), one expression per axis where the axes differ
            (``H: …; W: …``); ``""`` where the layer passes them through unchanged.
        note: why the status (``not aligned`` names the paths), or how the figures were read
            (an adaptive pool read as a plain window; a container's output leaf).
        source: for a container, the index of the record whose output it returns (its figures
            are that record's); else ``None``.
    """

    index: int
    name: str
    status: RFStatus
    rf: tuple[int, ...] = ()
    jump: tuple[int, ...] = ()
    centre: tuple[Fraction, ...] = ()
    rf_formula: str = ""
    jump_formula: str = ""
    centre_formula: str = ""
    note: str = ""
    source: int | None = None

    @property
    def rf_text(self) -> str:
        """The table cell: ``212``, ``9×5`` (rows × columns where they differ), ``whole input``,
        ``195 (flattened)``, ``not aligned``, ``not computed``, ``unknown``; ``""`` for NONE."""
        if self.status is RFStatus.COMPUTED:
            return _axes_text(self.rf)
        if self.status is RFStatus.FLATTENED:
            return f"{_axes_text(self.rf)} (flattened)" if self.rf else "flattened"
        if self.status is RFStatus.NONE:
            return ""
        return self.status.value

    @property
    def jump_text(self) -> str:
        """``32``, or ``2×1`` where the axes differ; ``""`` unless COMPUTED."""
        return _axes_text(self.jump)

    @property
    def centre_text(self) -> str:
        """``15.5``, or ``1.5×0`` where the axes differ; ``""`` unless COMPUTED."""
        return _axes_text(self.centre)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``status``, ``rf``/``jump``/``centre`` (lists per axis, or ``null``), the
        three formulas, ``note`` and ``source``."""
        return {
            "status": self.status.value,
            "rf": list(self.rf) if self.rf else None,
            "jump": list(self.jump) if self.jump else None,
            "centre": [_json_number(c) for c in self.centre] if self.centre else None,
            "rf_formula": self.rf_formula,
            "jump_formula": self.jump_formula,
            "centre_formula": self.centre_formula,
            "note": self.note,
            "source": self.source,
        }


@dataclass(frozen=True)
class ReceptiveFields:
    """A :class:`LayerField` for every record of a report, in the report's order."""

    layers: tuple[LayerField, ...]

    def __getitem__(self, index: int) -> LayerField:
        return self.layers[index]

    def __iter__(self) -> Iterator[LayerField]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def find(self, name: str) -> LayerField:
        """The first record called ``name`` (a module's first call)."""
        for f in self.layers:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> list[dict[str, Any]]:
        """One :meth:`LayerField.to_dict` per record, in order, with its ``index`` and ``name``."""
        return [{"index": f.index, "name": f.name, **f.to_dict()} for f in self.layers]


def receptive_fields(report: Report) -> ReceptiveFields:
    """Receptive field, jump and centre of every record of ``report``.

    Leaf modules and functional ops get their figures from their layer's geometry
    (:func:`~archscope.receptive.geometry.layer_geometry`) and their inputs' producers; a
    container gets the figures of the leaf that produced its output (the last leaf inside it
    with the container's output shape); a row without an output gets RFStatus.NONE.
    """
    start = _start(report)
    done: dict[int, LayerField] = {}
    for record in report.layers:
        if record.is_leaf:
            geometry = layer_geometry(record, report.layout)
            done[record.index] = _leaf(record, geometry, _inputs(record, done, start))
    fields = [done.get(r.index) or _container(r, report.layers, done, start)
              for r in report.layers]
    return ReceptiveFields(tuple(fields))


# -- the graph ---------------------------------------------------------------------------------

def _start(report: Report) -> LayerField:
    """The model input: one pixel, jump 1, centre 0 on each spatial axis (C×H×W: two)."""
    n = max(len(report.input_shape) - 1, 0)
    if n == 0:  # a flat input (784): a vector from the start
        return LayerField(MODEL_INPUT, "the input", RFStatus.FLATTENED)
    return LayerField(MODEL_INPUT, "the input", RFStatus.COMPUTED, (1,) * n, (1,) * n,
                      (Fraction(0),) * n)


def _inputs(record: LayerRecord, done: dict[int, LayerField],
            start: LayerField) -> list[LayerField]:
    """The fields of the records that produced ``record``'s inputs, each once, in order."""
    seen: list[LayerField] = []
    for i in dict.fromkeys(record.inputs):
        if i == MODEL_INPUT:
            seen.append(start)
        elif i in done:
            seen.append(done[i])
        else:  # not a producer before it: the records are not in a data-flow order
            seen.append(LayerField(i, f"record {i}", RFStatus.UNKNOWN,
                                   note=f"record {i} is not a traced producer before it"))
    return seen


def _leaf(record: LayerRecord, g: Geometry, inputs: list[LayerField]) -> LayerField:
    out = _apply(g, inputs)
    return replace(out, index=record.index, name=record.name)


def _apply(g: Geometry, inputs: list[LayerField]) -> LayerField:
    """A layer's field from its geometry and its inputs' fields (index and name left to fill)."""
    if g.op is Op.NONE:
        return _status(RFStatus.NONE)
    if not inputs:
        return _status(RFStatus.UNKNOWN, "its input does not come from a traced layer")
    if not g.merges:
        inputs = inputs[:1]
    whole = next((f for f in inputs if f.status is RFStatus.WHOLE_INPUT), None)
    if whole is not None:  # an output unit that reads a whole-input unit sees the whole input
        return _status(RFStatus.WHOLE_INPUT)
    if g.op is Op.UNKNOWN:
        return _status(RFStatus.UNKNOWN, g.reason)
    if (blocked := _first(inputs, RFStatus.UNKNOWN)) is not None:
        return _after(blocked)
    if g.op in (Op.GLOBAL, Op.DENSE):  # reads every unit of a map that spans the input
        return _status(RFStatus.WHOLE_INPUT)
    if g.op is Op.UNEVEN:
        return _status(RFStatus.NOT_COMPUTED, g.reason)
    for status in (RFStatus.NOT_COMPUTED, RFStatus.NOT_ALIGNED):
        if (blocked := _first(inputs, status)) is not None:
            return _after(blocked)
    state = _merge(inputs) if len(inputs) > 1 else replace(inputs[0], rf_formula="",
                                                           jump_formula="", centre_formula="",
                                                           note=g.reason, source=None)
    if g.op in (Op.POINTWISE, Op.CONCAT) or state.status not in (RFStatus.COMPUTED,
                                                                  RFStatus.FLATTENED):
        return state
    if g.op is Op.FLATTEN:
        return _status(RFStatus.FLATTENED, rf=state.rf)
    if state.status is RFStatus.FLATTENED or len(state.rf) != g.axes:
        what = "a flattened input" if state.status is RFStatus.FLATTENED else (
            f"an input with {len(state.rf)} spatial axes")
        return _status(RFStatus.UNKNOWN, f"a {g.axes}-axis window on {what}")
    return _transposed(g, state) if g.op is Op.TRANSPOSED else _window(g, state)


def _merge(inputs: Sequence[LayerField]) -> LayerField:
    """Paths meeting at an add, a multiply, a ``cat``: the largest field, if they are aligned."""
    axes = {len(f.rf) for f in inputs}
    if len(axes) > 1:
        return _status(RFStatus.UNKNOWN, "paths with different numbers of spatial axes merge")
    rf = tuple(max(column) for column in zip(*(f.rf for f in inputs), strict=True))
    parts = [f"max({', '.join(str(v) for v in column)}) = {max(column)}"
             for column in zip(*(f.rf for f in inputs), strict=True)]
    formula = _per_axis(parts)
    if any(f.status is RFStatus.FLATTENED for f in inputs):
        return _status(RFStatus.FLATTENED, rf=rf, rf_formula=formula)
    jumps: list[tuple[int | Fraction, ...]] = [f.jump for f in inputs]
    centres: list[tuple[int | Fraction, ...]] = [f.centre for f in inputs]
    for what, values in (("jumps", jumps), ("centres", centres)):
        if len(set(values)) > 1:
            paths = ", ".join(f"{_axes_text(v)} ({f.name})"
                              for v, f in zip(values, inputs, strict=True))
            return _status(RFStatus.NOT_ALIGNED, f"paths merge with different {what}: {paths}")
    return LayerField(0, "", RFStatus.COMPUTED, rf, inputs[0].jump, inputs[0].centre,
                      rf_formula=formula)


# -- the arithmetic ----------------------------------------------------------------------------

def _window(g: Geometry, state: LayerField) -> LayerField:
    """A conv, pool or padding layer (Araujo et al. 2019, eqs. for r, j and the centre)."""
    rf, jump, centre = [], [], []
    rf_text, jump_text, centre_text = [], [], []
    for r, j, c, k, s, (p, _), d in zip(state.rf, state.jump, state.centre, g.kernel, g.stride,
                                        g.padding, g.dilation, strict=True):
        r_out, j_out = r + (k - 1) * d * j, j * s
        c_out = c + (Fraction(k - 1, 2) * d - p) * j
        rf.append(r_out)
        jump.append(j_out)
        centre.append(c_out)
        if g.pad_only:
            centre_text.append(f"{_num(c)} − {p}·{j} = {_num(c_out)}")
            continue
        rf_text.append(f"{r} + ({k}−1)·{d}·{j} = {r_out}")
        jump_text.append(f"{j}·{s} = {j_out}")
        centre_text.append(f"{_num(c)} + (({k}−1)/2·{d} − {p})·{j} = {_num(c_out)}")
    return LayerField(0, "", RFStatus.COMPUTED, tuple(rf), tuple(jump), tuple(centre),
                      _per_axis(rf_text), _per_axis(jump_text), _per_axis(centre_text),
                      note=g.reason)


def _transposed(g: Geometry, state: LayerField) -> LayerField:
    """A stride-1 transposed conv: output ``o`` reads inputs ``o + p − m·d`` (``m < k``).

    So its field grows as a conv's, ``r + (k−1)·d·j``, the jump stays, and the first output
    unit is centred at input unit ``p − (k−1)/2·d``: ``c + (p − (k−1)/2·d)·j``.
    """
    rf, centre = [], []
    rf_text, centre_text = [], []
    for r, j, c, k, p, d in zip(state.rf, state.jump, state.centre, g.kernel,
                                g.transposed_padding, g.dilation, strict=True):
        r_out = r + (k - 1) * d * j
        c_out = c + (p - Fraction(k - 1, 2) * d) * j
        rf.append(r_out)
        centre.append(c_out)
        rf_text.append(f"{r} + ({k}−1)·{d}·{j} = {r_out}")
        centre_text.append(f"{_num(c)} + ({p} − ({k}−1)/2·{d})·{j} = {_num(c_out)}")
    return LayerField(0, "", RFStatus.COMPUTED, tuple(rf), state.jump, tuple(centre),
                      _per_axis(rf_text), "", _per_axis(centre_text))


# -- containers --------------------------------------------------------------------------------

def _container(record: LayerRecord, layers: Sequence[LayerRecord], done: dict[int, LayerField],
               start: LayerField) -> LayerField:
    """A container's figures are those of the leaf that produced its output.

    The trace records producers for leaves only, so the leaf is the last one inside the
    container (in call order) whose output has the container's output shape: a block's last
    ReLU, an Inception block's ``cat``. A container without one that returns its input as it
    came (an empty ``nn.Sequential``) shows its input's figures.
    """
    if not record.output_shapes:
        return LayerField(record.index, record.name, RFStatus.NONE)
    shape = record.output_shapes[0]
    inside: set[int] = {record.index}
    source: int | None = None
    for r in layers[record.index + 1:]:
        if r.parent not in inside:
            if r.depth <= record.depth:  # past the container's subtree
                break
            continue
        inside.add(r.index)
        if r.index in done and r.output_shapes and r.output_shapes[0] == shape:
            source = r.index
    if source is None:
        if record.input_shapes[:1] == (shape,) and len(set(record.inputs)) == 1:
            given = _inputs(record, done, start)[0]
            return replace(given, index=record.index, name=record.name, rf_formula="",
                           jump_formula="", centre_formula="", note="returns its input",
                           source=None)
        return LayerField(record.index, record.name, RFStatus.UNKNOWN,
                          note="no layer inside it produces its output")
    leaf = done[source]
    return replace(leaf, index=record.index, name=record.name, rf_formula="", jump_formula="",
                   centre_formula="", note=f"the output of {leaf.name}", source=source)


# -- helpers -----------------------------------------------------------------------------------

def _status(status: RFStatus, note: str = "", rf: tuple[int, ...] = (),
            rf_formula: str = "") -> LayerField:
    return LayerField(0, "", status, rf=rf, rf_formula=rf_formula, note=note)


def _first(inputs: Sequence[LayerField], status: RFStatus) -> LayerField | None:
    return next((f for f in inputs if f.status is status), None)


def _after(blocked: LayerField) -> LayerField:
    """The status of an input that has no figures, passed on, naming where it began."""
    origin = blocked.note if blocked.note.startswith("after ") else f"after {blocked.name}"
    return _status(blocked.status, origin)


def _per_axis(parts: Sequence[str]) -> str:
    """One expression where every axis reads alike, else ``H: …; W: …`` (as output sizes)."""
    if len(set(parts)) <= 1:
        return parts[0] if parts else ""
    labels = "DHW"[-len(parts):] if len(parts) <= 3 else [str(i) for i in range(len(parts))]
    return "; ".join(f"{a}: {p}" for a, p in zip(labels, parts, strict=True))


def _axes_text(values: Sequence[int | Fraction]) -> str:
    """One number where every axis agrees, else rows × columns (``9×5``)."""
    if not values:
        return ""
    if len(set(values)) == 1:
        return _num(values[0])
    return "×".join(_num(v) for v in values)


def _num(value: int | Fraction) -> str:
    """``3``, ``15.5``, ``−0.5``: exact (a fraction that has no finite decimal stays ``p/q``)."""
    value = Fraction(value)
    sign = "−" if value < 0 else ""
    value = abs(value)
    if value.denominator == 1:
        return f"{sign}{value.numerator}"
    digits, scaled = 0, value
    while scaled.denominator != 1 and digits < 12:
        scaled *= 10
        digits += 1
    if scaled.denominator != 1:
        return f"{sign}{value.numerator}/{value.denominator}"
    text = str(scaled.numerator).rjust(digits + 1, "0")
    return f"{sign}{text[:-digits]}.{text[-digits:]}"


def _json_number(value: Fraction) -> int | float:
    return value.numerator if value.denominator == 1 else float(value)


__all__ = ["Geometry", "LayerField", "Op", "RFStatus", "ReceptiveFields", "layer_geometry",
           "receptive_fields"]
