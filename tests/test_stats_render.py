"""The stats renderers on records built by hand: histograms, alignment across runs, numbers."""

from __future__ import annotations

from archscope.render.stats import (
    activation_rows,
    align,
    counts,
    histogram_values,
    render_stats_table,
    run_labels,
    shared_range,
)
from archscope.stats import Histogram, InitRecord, LayerKind, LayerStats, StatsRun


def _layer(name: str, kind: LayerKind = LayerKind.WEIGHTED, type_: str = "Linear",
           sample: tuple[float, ...] = (0.0, 1.0), grad: float | None = 0.5,
           saturated: float | None = None, depth: int | None = 1) -> LayerStats:
    weighted = kind is LayerKind.WEIGHTED
    return LayerStats(
        name=name, module=name, call=1, type=type_, kind=kind, depth=depth if weighted else None,
        output_shape=(2, 3), mean=0.0, std=1.0, zero_pct=0.0, saturated_pct=saturated,
        grad_std=0.1, weight_std=0.2 if weighted else None,
        weight_grad_std=grad if weighted else None, grad_ratio=None,
        histogram=Histogram(0.0, 1.0, (1, 1)), sample=sample)


def _run(model: str, scheme: str, layers: list[LayerStats]) -> StatsRun:
    init = tuple(InitRecord(layer.name, layer.type, (3, 2), 2, 3, "2", "3", None, None, 0.2, "kept")
                 for layer in layers if layer.kind is LayerKind.WEIGHTED)
    return StatsRun(model=model, scheme=scheme, scheme_label=scheme, skipped=None,
                    input_shape=(2,), batch=2, device="cpu", seed=0, loss="x", loss_value=1.0,
                    init=init, layers=tuple(layers))


def test_counts_bin_like_numpy() -> None:
    # 10 bins over [0, 1]: 0.05 → bin 0, 0.15 → 1, 0.95 and 1.0 (the right edge) → 9
    assert counts([0.05, 0.15, 0.95, 1.0], 0.0, 1.0, 10) == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert counts([-5.0, 5.0], 0.0, 1.0, 4) == [1, 0, 0, 1]  # outside: the end bins
    assert counts([2.0, 2.0], 2.0, 2.0, 5) == [0, 0, 2, 0, 0]  # no width: the middle bin


def test_dead_relus_are_left_out_of_the_histogram_only() -> None:
    relu = _layer("relu", LayerKind.ACTIVATION, "ReLU", sample=(0.0, 0.0, 1.0, 2.0))
    sigmoid = _layer("s", LayerKind.ACTIVATION, "Sigmoid", sample=(0.0, 0.5), saturated=50.0)
    linear = _layer("fc", sample=(0.0, float("nan"), 3.0))
    assert histogram_values(relu) == [1.0, 2.0]
    assert histogram_values(sigmoid) == [0.0, 0.5]  # saturated values are the point
    assert histogram_values(linear) == [0.0, 3.0]  # non-finite values dropped
    assert shared_range([sigmoid]) == (0.0, 1.0)  # a sigmoid spans its asymptotes
    assert shared_range([relu, linear]) == (0.0, 3.0)
    assert shared_range([sigmoid, linear]) == (0.0, 3.0)  # mixed types: the values' own range


def test_align_by_name_leaves_the_resnets_projection_blank() -> None:
    plain = _run("plain", "default", [_layer("conv1"), _layer("layer2.0.conv1")])
    resnet = _run("resnet", "default", [_layer("conv1"), _layer("layer2.0.conv1"),
                                        _layer("layer2.0.downsample.0")])
    rows = align([plain, resnet], StatsRun.weighted)
    assert [name for name, _ in rows] == ["conv1", "layer2.0.conv1", "layer2.0.downsample.0"]
    assert rows[2][1][0] is None and rows[2][1][1] is not None
    assert run_labels([plain, resnet]) == ["plain", "resnet"]


def test_align_by_position_when_names_differ() -> None:
    a = _run("a", "default", [_layer("fc1"), _layer("fc2")])
    b = _run("b", "default", [_layer("features.0"), _layer("features.3"), _layer("head")])
    rows = align([a, b], StatsRun.weighted)
    assert [name for name, _ in rows] == ["fc1 / features.0", "fc2 / features.3", "head"]
    assert rows[2][1][0] is None


def test_activation_rows_fall_back_to_weighted_layers() -> None:
    run = _run("m", "he_normal", [_layer("fc1"), _layer("pool", LayerKind.OTHER, "MaxPool2d")])
    assert [name for name, _ in activation_rows([run])] == ["fc1"]
    assert run_labels([run, _run("m", "zeros", [])]) == ["he_normal", "zeros"]
    assert run_labels([run, _run("n", "zeros", [])]) == ["m · he_normal", "n · zeros"]


def test_table_for_one_run_and_for_several() -> None:
    layers = [_layer("fc1", sample=(0.0, 0.5, 1.0), grad=0.004),
              _layer("relu", LayerKind.ACTIVATION, "ReLU", sample=(0.0, 1.0)),
              _layer("fc2", grad=2e-5, depth=2)]
    one = render_stats_table([_run("m", "default", layers)])
    assert "Initialization: 2 Linear/Conv weights" in one
    assert "the model's own" in one and "biases as the model made them" in one
    assert ("m · default: weight-gradient std 0.00400 at the first Linear/Conv layer (fc1), "
            "2.00e-05 at the last (fc2)") in one
    two = render_stats_table([_run("m", "default", layers),
                              _run("m", "he_normal", [*layers[:2], _layer("fc2", grad=0.02)])])
    assert "Activations side by side" in two and "Weight-gradient std by depth" in two
    assert "he_normal: weight-gradient std 0.00400" in two
    assert "0.0200 at the last (fc2); 1.00× default's first" in two
    assert two.count("Initialization:") == 1  # default has no formulas to show beside the other
