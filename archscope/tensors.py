"""A model's output as a list of tensors: the one walk the engine and every command use.

An output may be a tensor or any nesting of tuples, lists, dicts, named tuples (anything
``torch.utils._pytree`` flattens); its tensors come in order, dict values in insertion order.
Each tensor has a path, the dict keys, attribute names and indices that lead to it, from which
the Report's output keys (``nested.z``) and ONNX output names are made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: one step of a path: a dict key or attribute name (``str``) or a sequence index (``int``)
PathPart = Any


def named_tensors(obj: Any, *, strict: bool = False) -> list[tuple[tuple[PathPart, ...], torch.Tensor]]:
    """The tensors in ``obj`` with their paths, in order.

    A dict key path keeps its keys as they are (``{"age": t}`` → ``(("age",), t)``); a sequence
    index is an ``int``; a named tuple's field is its name.

    Raises:
        TypeError: with ``strict``, a leaf that is not a tensor (``None``, a number, a string …),
            naming its path.
    """
    import torch
    from torch.utils._pytree import tree_flatten_with_path

    leaves, _ = tree_flatten_with_path(obj)
    found = []
    for path, leaf in leaves:
        parts = tuple(_part(entry) for entry in path)
        if isinstance(leaf, torch.Tensor):
            found.append((parts, leaf))
        elif strict:
            where = ".".join(str(p) for p in parts) or "the output"
            raise TypeError(f"{where} is a {type(leaf).__name__}, not a tensor")
    return found


def tensors_of(obj: Any) -> list[torch.Tensor]:
    """The tensors in ``obj`` (a tensor, or tuples/lists/dicts … of them), in order."""
    return [t for _, t in named_tensors(obj)]


def keyed_tensors(obj: Any) -> tuple[list[torch.Tensor], tuple[str, ...]]:
    """The tensors of a model's output and, for a dict output, each one's key.

    The key is the path of dict keys and attribute names joined by ``.`` (``{"nested": {"z": t}}``
    → ``nested.z``; sequence indices are left out: ``{"a": (t, u)}`` → ``a``, ``a``). An output
    that is not a dict has no keys (``()``).
    """
    pairs = named_tensors(obj)
    tensors = [t for _, t in pairs]
    if not isinstance(obj, dict):
        return tensors, ()
    keys = tuple(".".join(str(p) for p in path if not isinstance(p, int)) for path, _ in pairs)
    return tensors, keys


def _part(entry: Any) -> PathPart:
    """A pytree key entry (``MappingKey``, ``SequenceKey``, ``GetAttrKey``) → its key."""
    for attribute in ("key", "idx", "name"):
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return str(entry)


__all__ = ["keyed_tensors", "named_tensors", "tensors_of"]
