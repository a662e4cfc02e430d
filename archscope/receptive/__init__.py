"""Receptive field, jump and centre of every layer of a traced Report (``--rf``).

:mod:`~archscope.receptive.fields` follows the traced graph and does the arithmetic;
:mod:`~archscope.receptive.geometry` reads what one layer does to space from its record. Pure
Python: no torch import.
"""

from __future__ import annotations

from archscope.receptive.fields import LayerField, ReceptiveFields, RFStatus, receptive_fields
from archscope.receptive.geometry import Geometry, Op, layer_geometry

__all__ = ["Geometry", "LayerField", "Op", "RFStatus", "ReceptiveFields", "layer_geometry",
           "receptive_fields"]
