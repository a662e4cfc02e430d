"""Stand-ins for heavy torch modules that an eager meta trace only touches trivially.

On meta tensors, some of PyTorch's Python kernels reach for three heavy modules only to handle
cases that never arise with concrete shapes:

* ``torch._dynamo``: ``torch._compile._disable_dynamo`` imports it on a wrapped function's first
  call only to mark the function "do not compile"; nothing is compiled during the trace.
* ``torch.fx.experimental.symbolic_shapes`` (and with it sympy): ``torch._check`` and the meta
  kernels call ``expect_true`` / ``guard_or_false`` …, which return a plain ``bool`` unchanged.
* ``sympy``: type promotion checks ``isinstance(x, sympy.Basic)``, never true here.

Each import costs about as much as importing torch itself. While a trace runs
(:func:`deferred_imports`), a stand-in answers those calls for plain Python values and forwards
everything else to the real module (importing it then, after removing every stand-in, so that
the real module's own imports see real modules); once the trace ends the stand-ins are removed
and forward everything.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch


class DeferredImportFailed(Exception):
    """A module's import failed while :func:`deferred_imports`' stand-ins were installed.

    The stand-ins import the real module on first non-trivial use, which can land in the middle
    of another torch module's import (seen: a float16 backward pass in a fresh process importing
    ``torch.utils._sympy.functions`` half-way); the trace is then run again without them.
    """


class _Deferred(types.ModuleType):
    """Stands in for one heavy module (see the module docstring)."""

    def __init__(self, name: str, plain: dict[str, Any], group: list[_Deferred]) -> None:
        super().__init__(name)
        self._plain = plain
        self._group = group
        self._active = True
        self._marked: list[Any] = []
        self._cached: list[str] = []

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # import machinery probing (__path__ …): a plain module
            raise AttributeError(attr)
        if not self._active or attr not in self._plain:
            return getattr(self._real(), attr)
        plain, real_name = self._plain[attr], attr
        if isinstance(plain, type):
            return plain

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._active:
                result = plain(self, *args, **kwargs)
                if result is not _FORWARD:
                    return result
            return getattr(self._real(), real_name)(*args, **kwargs)

        # Kept as an attribute, so the next lookup skips __getattr__ (meta kernels call these
        # tens of thousands of times in one trace); _restore removes it.
        self.__dict__[attr] = call
        self._cached.append(attr)
        return call

    def _real(self) -> Any:
        # Restore every stand-in first: the real module's own imports must see real modules.
        for stub in self._group:
            stub._restore()
        import importlib

        return importlib.import_module(self.__name__)

    def _install(self) -> None:
        parent_name, _, child = self.__name__.rpartition(".")
        if parent_name and parent_name not in sys.modules:  # a light package (torch.utils._sympy)
            import importlib

            importlib.import_module(parent_name)
        sys.modules[self.__name__] = self
        if parent_name:
            setattr(sys.modules[parent_name], child, self)

    def _restore(self) -> None:
        self._active = False
        for attr in self._cached:
            self.__dict__.pop(attr, None)
        self._cached.clear()
        parent_name, _, child = self.__name__.rpartition(".")
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        # vars(), not getattr: torch's module __getattr__ would import torch._dynamo (seconds)
        parent = sys.modules.get(parent_name)
        if parent is not None and vars(parent).get(child) is self:
            delattr(parent, child)
        for fn in self._marked:
            with suppress(AttributeError):
                delattr(fn, "__dynamo_disable")
        self._marked.clear()


_FORWARD = object()


def _disable(stub: _Deferred, fn: Any, recursive: bool = True, wrapping: bool = True) -> Any:
    stub._marked.append(fn)  # forgotten (and so properly disabled later) when the trace ends
    return fn


def _plain_bool(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return a if type(a) is bool else _FORWARD


def _plain_false(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return False if type(a) in (int, bool) else _FORWARD


def _plain_true(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return True if type(a) in (int, bool) else _FORWARD


def _plain_int(stub: _Deferred, a: Any, *args: Any, **kwargs: Any) -> Any:
    return a if type(a) is int else _FORWARD


def _plain_all(stub: _Deferred, *values: Any) -> Any:
    return all(values) if all(type(v) is bool for v in values) else _FORWARD


def _plain_any(stub: _Deferred, *values: Any) -> Any:
    return any(values) if all(type(v) is bool for v in values) else _FORWARD


def _plain_eq(stub: _Deferred, x: Any, y: Any) -> Any:
    def concrete(v: Any) -> bool:
        if isinstance(v, list | tuple | torch.Size):
            return all(concrete(e) for e in v)
        return type(v) in (int, bool, float)

    return bool(x == y) if concrete(x) and concrete(y) else _FORWARD


class _NoSympyObject:
    """Nothing is an instance: no sympy expression occurs in an eager trace with concrete shapes."""


_DEFERRED: dict[str, dict[str, Callable[..., Any] | type]] = {
    "sympy": {"Basic": _NoSympyObject, "Expr": _NoSympyObject},
    # the meta kernel of a dtype conversion (autocast's casts) imports Max without using it for
    # concrete shapes; importing the module imports sympy (about a second)
    "torch.utils._sympy.functions": {"Max": _NoSympyObject},
    "torch._dynamo": {"disable": _disable},
    "torch.fx.experimental.symbolic_shapes": {
        "expect_true": _plain_bool, "guard_or_false": _plain_bool, "guard_or_true": _plain_bool,
        "guard_size_oblivious": _plain_bool, "statically_known_true": _plain_bool,
        "definitely_true": _plain_bool, "sym_and": _plain_all, "sym_or": _plain_any,
        "sym_eq": _plain_eq, "is_nested_int": _plain_false, "has_guarding_hint": _plain_true,
        "guarding_hint_or_throw": _plain_int,
    },
}


@contextmanager
def deferred_imports() -> Iterator[None]:
    """Run the block with stand-ins for the heavy modules not imported yet (see the module
    docstring). An ``ImportError`` inside the block may come from a stand-in: the caller then
    runs the block again without them (see :class:`DeferredImportFailed`)."""
    stubs: list[_Deferred] = []
    stubs += [_Deferred(name, plain, stubs) for name, plain in _DEFERRED.items()
              if name not in sys.modules]
    for stub in stubs:
        stub._install()
    try:
        yield
    finally:
        for stub in stubs:
            stub._restore()


__all__ = ["DeferredImportFailed", "deferred_imports"]
