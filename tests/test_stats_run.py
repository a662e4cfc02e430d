"""``archscope.stats`` measurements against numbers worked out by hand, and the textbook effects
of initialization with margins (not goldens).

Statistics are population ones (divided by n).
"""

from __future__ import annotations

import itertools
import math
import sys

import pytest
import torch
from torch import nn

from archscope.errors import ForwardError, InputShapeError
from archscope.stats import LayerKind, default_batch, model_stats, source_stats


class TwoLayer(nn.Module):
    """x (N, 2) → Linear(2, 3) → ReLU → Linear(3, 1) → sum: a scalar, backpropagated as it is."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x))).sum()


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "relu_inplace"])
def test_hand_computed_two_layer_network(inplace: bool) -> None:
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    run = model_stats(TwoLayer(inplace), inputs=x)
    fc1, relu, fc2 = run.layers
    assert [r.name for r in run.layers] == ["fc1", "relu", "fc2"]
    assert [r.kind for r in run.layers] == [LayerKind.WEIGHTED, LayerKind.ACTIVATION,
                                           LayerKind.WEIGHTED]
    # fc1: x·W1ᵀ = (1, 2, 1−2) = (1, 2, −1) and (−1, 0.5, −1−0.5) = (−1, 0.5, −1.5)
    h = [1.0, 2.0, -1.0, -1.0, 0.5, -1.5]
    assert fc1.mean == pytest.approx(0.0, abs=1e-7)  # (1+2−1−1+0.5−1.5)/6 = 0
    assert fc1.std == pytest.approx(math.sqrt(9.5 / 6)) == pytest.approx(_std(h))  # √(Σh²/6)
    assert fc1.zero_pct == 0 and fc1.saturated_pct is None
    # ReLU (measured before an in-place ReLU overwrites fc1's output): (1, 2, 0) and (0, 0.5, 0)
    assert relu.mean == pytest.approx(3.5 / 6)
    assert relu.std == pytest.approx(math.sqrt(5.25 / 6 - (3.5 / 6) ** 2))  # 0.7312
    assert relu.zero_pct == pytest.approx(50.0)  # 3 of 6
    # fc2: 1·1 + 2·2 + 3·0 = 5 and 2·0.5 = 1; the loss is their sum, 6
    assert (fc2.mean, fc2.std) == (pytest.approx(3.0), pytest.approx(2.0))
    assert run.loss_value == pytest.approx(6.0) and run.loss == "the output itself (a scalar)"
    # Gradients. dL/dy = 1 per sample: std 0.
    assert fc2.grad_std == pytest.approx(0.0)
    # dL/d(ReLU output) = W2 = (1, 2, 3) for both samples: std √(2/3)
    assert relu.grad_std == pytest.approx(math.sqrt(2 / 3))
    # dL/d(fc1 output) = (1, 2, 3) ⊙ ReLU′: (1, 2, 0) and (0, 2, 0) — the gradient reaching fc1's
    # own output even where an in-place ReLU overwrote it
    assert fc1.grad_std == pytest.approx(_std([1, 2, 0, 0, 2, 0]))  # 0.8975
    # dL/dW2 = Σ_n ReLU_n = (1, 2.5, 0); dL/dW1 = Σ_n δ_n ⊗ x_n = [[1, 2], [2, 4], [0, 0]]
    #   + [[0, 0], [−2, 1], [0, 0]] = [[1, 2], [0, 5], [0, 0]]
    assert fc2.weight_grad_std == pytest.approx(_std([1, 2.5, 0]))  # 1.0274
    assert fc1.weight_grad_std == pytest.approx(_std([1, 2, 0, 5, 0, 0]))  # 1.7951
    assert fc1.weight_std == pytest.approx(_std([1, 0, 0, 1, 1, -1]))  # 0.7454
    assert fc1.grad_ratio == pytest.approx(_std([1, 2, 0, 5, 0, 0]) / _std([1, 0, 0, 1, 1, -1]))
    assert fc2.grad_ratio == pytest.approx(_std([1, 2.5, 0]) / _std([1, 2, 3]))
    assert (fc1.depth, relu.depth, fc2.depth) == (1, None, 2)
    assert [i.name for i in run.init] == ["fc1", "fc2"] and run.init[0].bias == "none"


def test_saturation_within_0_01_of_the_asymptotes() -> None:
    # sigmoid(−10) = 4.5e-5 and sigmoid(−4.6) = 0.00995 are below 0.01, sigmoid(10) = 0.99995 is
    # above 0.99: saturated; sigmoid(0) = 0.5 and sigmoid(4.5) = 0.98901 are not → 3 of 5 = 60 %.
    one = nn.Linear(1, 1, bias=False)
    nn.init.ones_(one.weight)
    x = torch.tensor([[-10.0], [0.0], [10.0], [4.5], [-4.6]])
    run = model_stats(nn.Sequential(one, nn.Sigmoid()), inputs=x)
    assert run.layers[1].saturated_pct == pytest.approx(60.0)
    assert run.layers[1].histogram.lo == 0.0 and run.layers[1].histogram.hi == 1.0
    # tanh(2.65) = 0.99007 and tanh(−3) are beyond ±0.99; tanh(2.6) = 0.98903 and tanh(0) not → 50 %
    x = torch.tensor([[2.65], [-3.0], [2.6], [0.0]])
    run = model_stats(nn.Sequential(one, nn.Tanh()), inputs=x)
    assert run.layers[1].saturated_pct == pytest.approx(50.0)
    assert run.layers[0].saturated_pct is None


def test_the_users_model_and_random_state_are_left_alone() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    model.eval()
    model[1].train()  # a per-layer mode the run must not flatten
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    run = model_stats(model, (3, 8, 8), scheme="he_normal", batch=4, no_norm=True, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert isinstance(model[1], nn.BatchNorm2d)  # --no-norm replaced it in the copy only
    assert run.norms_removed == 1 and "BatchNorm2d" not in [r.type for r in run.layers]
    # the same seed gives the same records; another seed other ones
    again = model_stats(model, (3, 8, 8), scheme="he_normal", batch=4, no_norm=True, seed=3)
    assert again.layers == run.layers and again.init == run.init
    other = model_stats(model, (3, 8, 8), scheme="he_normal", batch=4, no_norm=True, seed=4)
    assert other.layers[0].std != run.layers[0].std


def test_a_modules_shared_instance_is_left_alone(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "stats_user_net.py").write_text(
        "from torch import nn\nnet = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import stats_user_net  # the module the source names: its instance is the importer's too

    state = {k: v.clone() for k, v in stats_user_net.net.state_dict().items()}
    runs = source_stats("stats_user_net:net", "zeros", input_shape=(4,), batch=4, no_norm=True)
    assert runs[0].init[0].weight_std == 0 and runs[0].norms_removed == 1
    assert all(torch.equal(v, state[k]) for k, v in stats_user_net.net.state_dict().items())
    assert isinstance(stats_user_net.net[1], nn.BatchNorm1d)
    monkeypatch.delitem(sys.modules, "stats_user_net")


def test_schemes_share_the_input_and_biases_are_zeroed() -> None:
    runs = source_stats("lecture_mlp", "default,he_normal,zeros", batch=16)
    assert [r.scheme for r in runs] == ["default", "he_normal", "zeros"]
    # the model's own biases are kept by default, zeroed by every other scheme
    assert {i.bias for i in runs[0].init} == {"kept"} and {i.bias for i in runs[1].init} == {"zero"}
    # zeros: every Linear outputs exactly 0, so every unit is the same (lecture 002)
    zero = runs[2]
    fc = [r for r in zero.layers if r.kind is LayerKind.WEIGHTED]
    assert all(r.std == 0 and r.zero_pct == 100 for r in fc)
    assert all(r.weight_grad_std == 0 for r in fc[:-1])  # no gradient reaches the hidden weights
    assert fc[-1].grad_ratio is None  # weight std 0: no ratio
    # every scheme sees the same batch: a ReLU before any weight sees the same values
    first = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
    own, he = (model_stats(first, (4,), scheme=s, batch=8) for s in ("default", "he_normal"))
    assert own.layers[0] == he.layers[0] and own.layers[1] != he.layers[1]


def test_default_batch_rule() -> None:
    # the largest power of two with at most 2,097,152 input values, clamped to 8 … 256
    assert default_batch((784,)) == 256  # 2,097,152 / 784 = 2,674 → 256
    assert default_batch((1, 28, 28)) == 256
    assert default_batch((3, 112, 112)) == 32  # 2,097,152 / 37,632 = 55.7 → 32
    assert default_batch((3, 150, 150)) == 16  # / 67,500 = 31.1 → 16
    assert default_batch((3, 224, 224)) == 8  # / 150,528 = 13.9 → 8
    assert default_batch((3, 1024, 1024)) == 8  # 0.67 → clamped up to 8


def test_losses_for_other_outputs() -> None:
    logit = model_stats(nn.Sequential(nn.Linear(4, 1)), (4,), batch=8)
    assert logit.loss == "binary cross-entropy (one logit) against random 0/1 labels"
    runs = source_stats("lecture_multitask", batch=2, input_shape=(3, 64, 64))
    assert runs[0].loss.startswith("age: binary cross-entropy") and "(summed)" in runs[0].loss
    assert "race: cross-entropy over 5 classes against random labels" in runs[0].loss
    seg = model_stats(nn.Conv2d(3, 4, 1), (3, 5, 5), batch=2)
    assert seg.loss == "cross-entropy over 4 classes against random labels per position"
    assert seg.layers[0].name == "Conv2d"  # a bare layer is named after its class


def test_errors_are_one_line() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.view(-1, 5))

    with pytest.raises(ForwardError, match=r"^broken: the forward pass failed on a 4×3 batch: "
                                           r"RuntimeError: shape '\[-1, 5\]' is invalid"):
        model_stats(Broken(), (3,), batch=4, name="broken")
    with pytest.raises(ForwardError, match="use --batch 2 or more"):
        model_stats(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), (3,), batch=1)
    with pytest.raises(InputShapeError, match="needs input_shape"):
        model_stats(nn.Linear(2, 2))

    class ArgMax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).argmax(1)  # class indices: integers, no gradient

    with pytest.raises(ForwardError, match="no output tensor is floating-point"):
        model_stats(ArgMax(), (3,), batch=2)


# -- the textbook effects -----------------------------------------------------------------------

MLP_SIGMOID = "spec:784 10x[dense100 sigmoid] dense10"
MLP_RELU = "spec:784 10x[dense100 relu] dense10"


@pytest.fixture(scope="module")
def sigmoid_runs() -> dict[str, list]:
    runs = source_stats(MLP_SIGMOID, "normal:1,normal:0.01,xavier_normal", batch=256)
    return {r.scheme: [x for x in r.layers if x.type == "Sigmoid"] for r in runs}


def _outer(layer) -> float:  # type: ignore[no-untyped-def]
    """Share of a sigmoid's values in the outer bins, below 0.05 or above 0.95."""
    counts = layer.histogram.counts
    return (counts[0] + counts[-1]) / sum(counts)


def test_sigmoid_std_1_saturates(sigmoid_runs: dict[str, list]) -> None:
    layers = sigmoid_runs["normal:1"]
    assert len(layers) == 10
    # pre-activations have std ≈ √(100·0.45) ≈ 6.7: most values sit at 0 or 1
    assert all(_outer(layer) > 0.55 for layer in layers)
    assert all(layer.saturated_pct > 35 for layer in layers)
    assert sum(layer.saturated_pct for layer in layers) / 10 > 45
    assert all(layer.std > 0.4 for layer in layers)  # close to the 0.5 of a coin flip


def test_sigmoid_std_0_01_collapses_to_0_5(sigmoid_runs: dict[str, list]) -> None:
    layers = sigmoid_runs["normal:0.01"]
    assert all(abs(layer.mean - 0.5) < 0.01 for layer in layers)
    assert all(layer.saturated_pct == 0 for layer in layers)
    assert layers[0].std < 0.1  # the N(0, 1) input's 784 values give the first layer some spread
    assert all(layer.std < 0.02 for layer in layers[1:])  # then σ·√100·… ≈ 0.012


def test_sigmoid_xavier_keeps_a_wide_spread(sigmoid_runs: dict[str, list]) -> None:
    xavier, small = sigmoid_runs["xavier_normal"], sigmoid_runs["normal:0.01"]
    assert all(0.08 < layer.std < 0.3 for layer in xavier)
    assert all(x.std > 5 * s.std for x, s in zip(xavier[1:], small[1:], strict=True))
    assert all(layer.saturated_pct < 1 for layer in xavier)


def test_relu_he_keeps_the_std_while_0_01_shrinks_it() -> None:
    he, small = source_stats(MLP_RELU, "he_normal,normal:0.01", batch=256)
    he_std = [r.std for r in he.layers if r.type == "ReLU"]
    small_std = [r.std for r in small.layers if r.type == "ReLU"]
    assert len(he_std) == 10
    # He: Var(y) = fan_in·(2/fan_in)·E[x²] keeps E[x²]: the std stays within a factor 2
    assert all(0.5 < s / he_std[0] < 2 for s in he_std)
    # std 0.01: Var(y) = 100·0.01²·E[x²], so each layer's std is about √(0.01/2) ≈ 0.07 of the last
    assert all(b < 0.2 * a for a, b in itertools.pairwise(small_std))
    assert small_std[-1] < 1e-9


# -- on the GPU ---------------------------------------------------------------------------------

@pytest.mark.gpu
def test_cuda_run_leaves_the_cpu_model_and_both_generators_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state()
    run = model_stats(model, (3, 8, 8), scheme="he_normal", batch=64, device="cuda", seed=1)
    assert run.device.startswith("cuda")
    assert torch.equal(torch.get_rng_state(), cpu_rng)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" and p.grad is None for p in model.parameters())
    conv = run.init[0]  # 8·3·3·3 = 216 weights drawn with std √(2/27) = 0.272
    assert conv.formula == "He normal: std = √(2/fan_in) = √(2/27) = 0.272"
    assert conv.weight_std == pytest.approx(math.sqrt(2 / 27), rel=0.15)
    bn = next(r for r in run.layers if r.type == "BatchNorm2d")
    assert bn.mean == pytest.approx(0, abs=1e-4) and bn.std == pytest.approx(1, rel=1e-3)
    relu = next(r for r in run.layers if r.type == "ReLU")
    assert 40 < relu.zero_pct < 60 and all(r.grad_std is not None for r in run.layers)
