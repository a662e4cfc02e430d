"""``--weights``: a ``state_dict`` file loaded into a built model with ``strict=True``, and a
one-line error naming what does not fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from archscope.errors import WeightsError, WeightsNotFoundError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn


def load_weights(model: nn.Module, path: str, device: str | torch.device, name: str) -> None:
    """Load a ``state_dict`` file into ``model`` (on ``device``) with ``strict=True``; one-line
    errors.

    Accepts a plain ``state_dict`` or a checkpoint dict holding one under ``state_dict`` or
    ``model``. Loaded with ``weights_only=True`` (no pickled code runs).

    Raises:
        WeightsError: the file is missing or unreadable, holds no ``state_dict``, or its keys or
            shapes do not fit ``model``; or ``model`` is on the meta device.
    """
    import torch

    if torch.device(device).type == "meta":
        raise WeightsError(f"{name}: weights need a model with real weights; build it on the CPU "
                           "or CUDA (device='cpu')")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise WeightsNotFoundError(f"weights file {path!r} not found; check the path") from None
    except Exception as exc:
        raise WeightsError(
            f"{path}: torch.load cannot read it ({type(exc).__name__}: {first_line(exc)}); is it "
            "a file torch.save wrote? Save a state_dict with torch.save(model.state_dict(), path)"
        ) from None
    state = obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict) and _is_state_dict(obj[key]):
                state = obj[key]
                break
    if not isinstance(state, dict) or not _is_state_dict(state):
        raise WeightsError(
            f"{path}: expected a state_dict (a dict of tensors), found {type(obj).__name__}; save "
            "one with torch.save(model.state_dict(), path)"
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
        raise WeightsError(
            f"{path} does not fit {name} (strict=True): {'; '.join(parts)}; "
            "is it the state_dict of this model?"
        )
    wrong = [
        f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise WeightsError(
            f"{path} does not fit {name}: {len(wrong)} tensor(s) have another shape "
            f"({'; '.join(wrong[:_SHOW])}{' …' if len(wrong) > _SHOW else ''}); "
            "check --num-classes"
        )
    model.load_state_dict(state, strict=True)


#: how many state_dict keys or tensors a one-line weights message names.
_SHOW = 3


def _is_state_dict(obj: dict[Any, Any]) -> bool:
    import torch

    return bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _few(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (", …" if len(keys) > _SHOW else "")


__all__ = ["load_weights"]
