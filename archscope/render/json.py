"""JSON output: ``Report.to_dict()`` with the stable keys documented in docs/summary.md.

Shapes are in the order the top-level ``layout`` key names (``"chw"``, or ``"hwc"`` for a layer spec
written H×W×C); see docs/spec.md.
"""

from __future__ import annotations

import json

from archscope.report import Report


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
