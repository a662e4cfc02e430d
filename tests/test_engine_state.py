"""``inspect`` never changes the user's model, whatever its forward writes and however the trace
ends (issue 12, item 1).

Oracles: the model's own real forward before and after the trace, object identity (``is``) of
every attribute and of what it holds, and ``state_dict`` values; PyTorch's random state.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fixtures.engine_cases import Reassigns
from torch import nn

from archscope.engine import inspect
from archscope.errors import ForwardError


def _contents(value: Any) -> Any:
    """What an attribute holds, as identities: the objects themselves, at any depth."""
    if isinstance(value, list | tuple):
        return (type(value), id(value), tuple(_contents(v) for v in value))
    if isinstance(value, dict):
        return (dict, id(value), tuple((k, _contents(v)) for k, v in value.items()))
    if hasattr(value, "__dataclass_fields__"):
        return (type(value), id(value), tuple((k, _contents(v)) for k, v in vars(value).items()))
    return id(value)


def _state(model: nn.Module) -> dict[str, Any]:
    """Every attribute of every submodule (the module machinery aside), as identities, and the
    values of the plain tensors among them."""
    machinery = set(vars(nn.Module()))
    state: dict[str, Any] = {}
    for name, module in model.named_modules():
        for key, value in vars(module).items():
            if key not in machinery:
                state[f"{name}.{key}"] = _contents(value)
        state[f"{name}._parameters"] = {k: id(v) for k, v in module._parameters.items()}
        state[f"{name}._buffers"] = {k: id(v) for k, v in module._buffers.items()}
    return state


def _values(model: Reassigns) -> list[torch.Tensor]:
    tensors = [*model.cell_anchors, *model.table.values(), *model.nested[0], *model.nested[1],
               model.anchors.sizes, model.anchors.ratios, *model.history, model.total]
    return [t.clone() for t in tensors]


@pytest.mark.parametrize("trace", ["meta", "real"])
def test_a_forward_that_writes_its_attributes_leaves_the_model_as_it_was(trace: str) -> None:
    model = Reassigns()
    x = torch.randn(2, *Reassigns.INPUT)
    before = model(x)  # one real forward: the attributes now hold what a forward leaves
    state, values = _state(model), _values(model)
    report = inspect(model, Reassigns.INPUT, batch=2, trace=trace)  # type: ignore[arg-type]
    assert report.output_shapes == (tuple(before.shape),)
    assert _state(model) == state  # the same objects, the same contents, no attribute added
    assert all(torch.equal(a, b) for a, b in zip(_values(model), values, strict=True))
    assert all(not t.is_meta for t in (*model.cell_anchors, model.anchors.sizes))
    assert model.calls == 1 and len(model.history) == 1
    assert torch.equal(model(x), before)  # the next real forward runs, and gives the same


@pytest.mark.parametrize("trace", ["meta", "real"])
def test_a_trace_that_fails_half_way_leaves_the_model_as_it_was(trace: str) -> None:
    model = Reassigns(fail=True)
    model.fail = False
    x = torch.randn(1, *Reassigns.INPUT)
    before = model(x)
    model.fail = True
    state, values = _state(model), _values(model)
    with pytest.raises(ForwardError, match="the forward broke after writing its attributes"):
        inspect(model, Reassigns.INPUT, trace=trace)  # type: ignore[arg-type]
    assert _state(model) == state
    assert all(torch.equal(a, b) for a, b in zip(_values(model), values, strict=True))
    model.fail = False
    assert torch.equal(model(x), before)


def test_an_attribute_added_and_a_buffer_registered_in_forward_are_removed() -> None:
    class Lazy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.register_buffer("seen", torch.zeros(4, device=x.device), persistent=False)
            self.fc.note = "called"
            return self.fc(x)

    model = Lazy()
    inspect(model, (4,))
    assert "seen" not in model._buffers and "seen" not in model._non_persistent_buffers_set
    assert not hasattr(model.fc, "note")
    assert list(model.state_dict()) == ["fc.weight", "fc.bias"]


def test_a_real_trace_leaves_weights_gradients_statistics_and_random_state_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cpu_state = torch.get_rng_state()
    report = inspect(model, (3, 8, 8), batch=2, backward=True, trace="real")
    assert report.backward_flops  # the backward pass ran, on the stand-ins
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model[1].num_batches_tracked.item() == 0  # the running statistics were not updated
    assert torch.equal(torch.get_rng_state(), cpu_state)  # dropout drew from a forked generator
    assert all(p.device.type == "cpu" for p in model.parameters())
