"""The layer-spec language of ``archscope calc``: a network typed as one line of layers.

::

    150x150x3 conv32 k3 → maxpool2 → conv64 k3 → maxpool2 → flatten → dense512 → dense1

Two stages, so that the language can be tested without torch:

* :func:`parse` (pure Python) turns text into a :class:`ParsedSpec`: :mod:`.vocabulary` (the
  words), :mod:`.lexer` (tokens, syntax errors with a caret), :mod:`.parser` (the grammar) with
  :mod:`.input_shape`, :mod:`.binding` and :mod:`.coercion` (a layer's options) and
  :mod:`.pasted` (pasted Keras statements that add no layer).
* :func:`build` (:mod:`.build`) turns a parsed spec into a real ``nn.Sequential``; shapes,
  parameters and MACs shown to users always come from the engine's
  :class:`~archscope.report.Report` (:func:`calc_report`, :mod:`.calc`).

:func:`to_layout` re-orders a report's shapes into the order the user wrote (H×W×C for ``hwc``);
:func:`load_spec_source` is what a ``spec:`` model source means. The grammar and examples are in
docs/spec.md. Importing this package does not import torch.
"""

from __future__ import annotations

from archscope.spec.build import BuiltSpec, build, build_spec
from archscope.spec.calc import calc_report, keras_batchnorm_note
from archscope.spec.layout import show_shape, to_layout
from archscope.spec.parsed import LayerSpec, ParsedSpec
from archscope.spec.parser import parse
from archscope.spec.source import load_spec_source, read_spec
from archscope.spec.vocabulary import ACTIVATIONS, MAX_INT, MAX_LAYERS

__all__ = ["ACTIVATIONS", "MAX_INT", "MAX_LAYERS", "BuiltSpec", "LayerSpec", "ParsedSpec", "build",
           "build_spec", "calc_report", "keras_batchnorm_note", "load_spec_source", "parse",
           "read_spec", "show_shape", "to_layout"]
