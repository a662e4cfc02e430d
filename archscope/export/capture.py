"""Keep what a noisy library prints, logs and warns off the terminal, for showing on request.

PyTorch's ONNX exporter prints graph dumps when it fails, torch's symbolic-shape machinery logs
through torch's own handlers, and onnxscript warns; the library never prints
(:mod:`archscope.export.exporter` shows it with ``archscope export --verbose``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator

#: loggers whose handlers the exporter's messages pass through (torch.* logs with its own).
EXPORTER_LOGGERS = ("torch", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Capture what the exporter prints, logs and warns, so that none of it reaches the terminal.

    ``torch.export`` prints graph dumps when it fails, torch's symbolic-shape machinery logs
    warnings through torch's own handlers, and onnxscript warns: the library never prints, so
    all of it is collected into the yielded list (log records first, then printed text, then
    warnings), for the caller to show on request (``archscope export --verbose``). Handlers are
    not replaced, only filtered for the duration. The capture is process-wide (stdout, stderr and
    the root logger's handlers): what another thread prints or logs meanwhile is captured too.
    """
    captured: list[str] = []
    buffer = io.StringIO()

    def capture(handler: logging.Handler) -> Callable[[logging.LogRecord], bool]:
        def keep(record: logging.LogRecord) -> bool:
            try:
                captured.append(handler.format(record))
            except Exception:  # a record whose arguments do not format: keep its template
                captured.append(str(record.msg))
            return False  # never emitted

        return keep

    loggers = [logging.root, *(logger for name, logger in list(logging.root.manager.loggerDict.items())
                               if isinstance(logger, logging.Logger)
                               and name.split(".")[0] in EXPORTER_LOGGERS)]
    filtered: dict[int, tuple[logging.Handler, Callable[[logging.LogRecord], bool]]] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if id(handler) not in filtered:
                keep = capture(handler)
                handler.addFilter(keep)
                filtered[id(handler)] = (handler, keep)
    try:
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            warnings.simplefilter("always")
            try:
                yield captured
            finally:
                printed = buffer.getvalue().strip("\n")
                if printed:
                    captured.append(printed)
                captured.extend(warnings.formatwarning(w.message, w.category, w.filename,
                                                       w.lineno).rstrip("\n") for w in caught)
    finally:
        for handler, keep in filtered.values():
            handler.removeFilter(keep)
