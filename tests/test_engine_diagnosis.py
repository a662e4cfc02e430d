"""What the engine says about a network that does not fit its input, and the figures it reports
for adaptive pools, nested outputs and eval-mode BatchNorm (issue 11; issue 12, item 6).

Oracles: output sizes worked out by hand, the model's own real forward, and
``saved_tensors_hooks`` on a real CPU forward for the bytes autograd keeps.
"""

from __future__ import annotations

import pytest
import torch
from fixtures.oracles import saved_bytes
from torch import nn

from archscope.engine import inspect
from archscope.errors import LayerInputError
from archscope.render import render
from archscope.source import load_report


class NoFlatten(nn.Module):
    """A conv stack whose Linear expects the flattened map, without the flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(4 * 6 * 6, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_a_forgotten_flatten_is_named_with_its_numbers() -> None:
    with pytest.raises(LayerInputError) as info:
        inspect(NoFlatten(), (3, 8, 8))
    # 8 − 3 + 1 = 6: a 4×6×6 map, 4·6·6 = 144 = the Linear's in_features
    assert str(info.value) == ("classifier.0 (Linear) expects 144 features; it receives a 4×6×6 "
                               "map (4·6·6 = 144): flatten it first (nn.Flatten() or "
                               "torch.flatten(x, 1))")


def test_the_wrong_input_size_names_the_sizes_the_network_was_built_for() -> None:
    with pytest.raises(LayerInputError) as info:
        load_report("alexnet", input_shape=(3, 224, 224))
    # conv1 11×11/4 no padding, three 3×3/2 max pools, conv2 5×5 pad 2, conv3–5 3×3 pad 1:
    # 224 → ⌊213/4⌋+1 = 54 → 26 → 26 → 12 → 12 → 5: 256·5·5 = 6400 features, not 9216 = 256·6·6.
    # 227 → 216/4+1 = 55 → 27 → 27 → 13 → 13 → 6: the smallest size that gives 6×6 (226 → 54);
    # 258 → ⌊247/4⌋+1 = 62 → 30 → 30 → 14 → 14 → 6, the largest (259 → 63 → 31 → 15 → 7).
    assert str(info.value) == (
        "classifier.1 (Linear) expects 9216 input features but receives 6400 (input [1, 6400]); "
        "the network was built for inputs from 3×227×227 to 3×258×258: use --input 3x227x227")


def test_an_adaptive_pool_that_upsamples_says_so() -> None:
    report = load_report("vgg16", input_shape=(3, 150, 150))
    # 150 → 75 → 37 → 18 → 9 → 4 after five 2×2 pools: a 4×4 map into a 7×7 adaptive pool
    assert report.notes == ("avgpool (AdaptiveAvgPool2d): its 4×4 input is upsampled to 7×7: "
                            "values are repeated, not pooled; the layers after it were built "
                            "for a larger input",)
    assert not load_report("vgg16", input_shape=(3, 224, 224)).notes  # 7×7 into 7×7


def test_a_nested_dict_output_is_keyed_by_its_path() -> None:
    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> dict[str, object]:
            return {"y": self.a(x), "nested": {"z": self.b(x)}}

    model = Heads()
    report = inspect(model, (4,))
    real = model(torch.randn(1, 4))
    assert report.output_keys == ("y", "nested.z")
    assert report.output_shapes == (tuple(real["y"].shape), tuple(real["nested"]["z"].shape))
    table = render(report, "table", width=100)
    assert "Outputs" in table and "y: 3, nested.z: 2" in table


@pytest.mark.parametrize("train", [False, True])
def test_batchnorm_saves_what_a_real_cpu_step_saves(train: bool) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8)).train(train)
    report = inspect(model, (3, 10, 10), batch=2)
    assert report.activation_bytes == saved_bytes(model, torch.randn(2, 3, 10, 10))
