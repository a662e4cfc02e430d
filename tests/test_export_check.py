"""The onnxruntime comparison of ``archscope export`` checks something: relative bounds, degenerate
outputs and their re-check with re-drawn weights.

Oracles: onnxruntime run here on the written file (and on copies skewed here with the onnx
package), PyTorch forward passes on deep copies of the models, and numbers worked out by hand.
A fixed absolute bound of 1e-4 passed a zero-initialised head (both outputs all zero) and any
output below 1e-4 whatever onnxruntime computed; each test below fails on that check.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper
from torch import nn

from archscope.cli import main
from archscope.errors import ExportError
from archscope.export import ExportResult, export_onnx
from archscope.export import compare as onnx_compare
from archscope.export import exporter as export_module
from archscope.export.compare import Bound, Degenerate, judge

OLD_ATOL = 1e-4  # the bound before: every test here shows a file it passed without checking
RTOL = 1e-5
FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # 2**-126, the smallest normal float32


class ZeroHead(nn.Module):
    """Patch embedding, LayerNorm and a head zero-initialised as torchvision's ViT does."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).mean(2)  # (N, 8, 2, 2) → (N, 8)
        return self.head(self.norm(x))


class Tiny(nn.Module):
    """An MLP whose weights are scaled down by 1e-4 and 1e-5: outputs of about 5e-10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16, bias=False)
        self.fc2 = nn.Linear(16, 4, bias=False)
        with torch.no_grad():
            self.fc1.weight.mul_(1e-4)
            self.fc2.weight.mul_(1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


SHAPE = (3, 8, 8)


def _x(shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    return torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))  # export's input


def _ort(path: Path | bytes, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(path if isinstance(path, bytes) else str(path),
                                           providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.numpy()})
    return out


def _with_initializers(path: Path, tensors: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The file's graph with the named initializers replaced (the file is not changed)."""
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        if init.name in tensors:
            init.CopyFrom(numpy_helper.from_array(tensors[init.name], init.name))
    return proto


def _skewed(path: Path, name: str, target: Path, factor: float = 1 + 1e-3) -> Path:
    """A copy of ``path`` with the initializer ``name`` multiplied by ``factor``."""
    proto = onnx.load(str(path))
    (init,) = [t for t in proto.graph.initializer if t.name == name]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, name))
    onnx.save(proto, str(target))
    return target


@pytest.fixture(scope="module")
def zero_head(tmp_path_factory: pytest.TempPathFactory) -> tuple[ZeroHead, ExportResult]:
    torch.manual_seed(0)
    model = ZeroHead()
    return model, export_onnx(model, tmp_path_factory.mktemp("zh") / "zh.onnx", SHAPE)


# -- a zero-initialised head ----------------------------------------------------------------------

def test_zero_head_is_degenerate_and_rechecked_on_non_trivial_numbers(
    zero_head: tuple[ZeroHead, ExportResult],
) -> None:
    model, result = zero_head
    x = _x()
    with torch.no_grad():
        assert not model(x).any()  # both outputs all zero: the old check compared 0 with 0
    assert not _ort(result.path, x).any()
    assert result.max_abs_diff == 0 <= OLD_ATOL  # what passed before, checking nothing
    agreement = result.agreement
    assert agreement is not None
    (only,) = agreement.degenerate
    assert only.degenerate is Degenerate.ZERO and only.scale == 0
    recheck = agreement.recheck
    assert recheck is not None and agreement.verified and agreement.passed
    # every parameter holding one value: LayerNorm's ones and zeros and the zero head
    assert recheck.redrawn == ("norm.weight", "norm.bias", "head.weight", "head.bias")
    # the oracle: the same tensors loaded into a copy of the model (PyTorch) and put in place
    # of the file's initializers (onnxruntime), run here
    redrawn = onnx_compare.redraw_constants(model, set(recheck.redrawn))
    twin = copy.deepcopy(model).eval()
    twin.load_state_dict(redrawn, strict=False)
    with torch.no_grad():
        want = twin(x).double().numpy()
    got = _ort(_with_initializers(result.path, {k: v.numpy() for k, v in redrawn.items()})
               .SerializeToString(), x)
    scale = float(np.abs(want).max())
    assert scale > 1e-2 and recheck.scale == pytest.approx(scale, rel=1e-6)
    assert recheck.diff == pytest.approx(float(np.abs(got - want).max()), rel=1e-6, abs=1e-12)
    assert recheck.tolerance == pytest.approx(RTOL * scale) and recheck.diff <= RTOL * scale
    # the model and the file are as they were: the head is still zero in both
    assert not model.head.weight.any() and not model.head.bias.any()
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(result.path)).graph.initializer}
    assert not stored["head.weight"].any() and (stored["norm.weight"] == 1).all()


def test_redrawn_parameters_are_seeded_and_not_constant(
    zero_head: tuple[ZeroHead, ExportResult],
) -> None:
    model, _ = zero_head
    names = {name for name, _ in model.named_parameters()}
    first = onnx_compare.redraw_constants(model, names)
    again = onnx_compare.redraw_constants(model, names)
    assert list(first) == ["norm.weight", "norm.bias", "head.weight", "head.bias"]  # not patch.*
    for name, tensor in first.items():
        assert torch.equal(tensor, again[name])
        assert tensor.shape == model.get_parameter(name).shape
        assert tensor.unique().numel() == tensor.numel()  # no two values alike
    # a weight around 0 with PyTorch's scale 1/√fan_in = 1/√8; LayerNorm's scale around 1
    assert 0.05 < float(first["head.weight"].std()) < 1
    assert abs(float(first["norm.weight"].mean()) - 1) < 0.2
    # only names the file holds as initializers are re-drawn
    assert list(onnx_compare.redraw_constants(model, {"head.bias"})) == ["head.bias"]


def test_a_skewed_file_fails_the_recheck(
    zero_head: tuple[ZeroHead, ExportResult], tmp_path: Path,
) -> None:
    # the patch convolution's weight off by 1e-3 of itself: with the zero head it changes
    # nothing (0 = 0 passes), with the head re-drawn it must show
    model, result = zero_head
    skewed = _skewed(result.path, "patch.weight", tmp_path / "skewed.onnx")
    x = _x()
    with torch.no_grad():
        reference = [model(x)]
    agreement, _ = onnx_compare.verify_export(model, skewed, x, reference, False, label="zh")
    assert agreement is not None and agreement.recheck is not None
    assert all(o.passed for o in agreement.outputs) and agreement.diff == 0  # vacuous
    assert not agreement.recheck.passed and not agreement.passed
    relative = agreement.recheck.relative
    assert relative is not None and relative > 10 * RTOL
    message = onnx_compare.disagreement(agreement, "zh")
    assert re.fullmatch(r"zh: onnxruntime's output differs from PyTorch's by up to \S+ on outputs "
                        r"up to \S+, more than the tolerance \S+ \(PyTorch's own fp32 error against "
                        r"float64 is \S+\), with 4 constant parameters "
                        r"re-drawn for the check \(norm\.weight, norm\.bias, head\.weight, …\) "
                        r"because the model's own outputs are degenerate \(output: all zero\); "
                        r"no file was written\. Try another --opset", message), message


def test_export_of_a_skewed_graph_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the same skew made inside export_onnx, before the file is written
    real = export_module._constants_to_nodes

    def skew(proto: onnx.ModelProto, state_names: set[str]) -> None:
        real(proto, state_names)
        (init,) = [t for t in proto.graph.initializer if t.name == "patch.weight"]
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * (1 + 1e-3),
                                              init.name))

    monkeypatch.setattr(export_module, "_constants_to_nodes", skew)
    torch.manual_seed(0)
    with pytest.raises(ExportError, match=r"re-drawn for the check .* \(output: all zero\); no "
                                          r"file was written"):
        export_onnx(ZeroHead(), tmp_path / "zh.onnx", SHAPE)
    assert list(tmp_path.iterdir()) == []


def test_cli_says_degenerate_and_how_it_was_rechecked(tmp_path: Path) -> None:
    net = tmp_path / "zh.py"
    net.write_text(
        "from torch import nn\n\n\ndef zero_head():\n"
        "    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))\n"
        "    nn.init.zeros_(m[2].weight)\n    nn.init.zeros_(m[2].bias)\n    return m\n",
        encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["export", f"{net}:zero_head", "--input", "6",
                                  "-o", str(tmp_path / "a.onnx")])
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    match = re.fullmatch(
        r"onnxruntime \S+: degenerate with the model's own weights \(output: all zero; max "
        r"\|PyTorch − ONNX\| = 0\.00e\+00\); re-checked with 2 constant parameters re-drawn: "
        r"max \|PyTorch − ONNX\| = (\S+) ≤ (\S+) \(outputs up to (\S+); relative (\S+) ≤ rtol "
        r"1e-05\): passed", line)
    assert match is not None, line
    diff, bound, scale, relative = (float(g) for g in match.groups())
    assert diff <= bound and math.isclose(bound, RTOL * scale, rel_tol=1e-2) and scale > 1e-2
    assert relative <= RTOL
    data = json.loads(runner.invoke(main, ["export", f"{net}:zero_head", "--input", "6", "-o",
                                           str(tmp_path / "b.onnx"), "--format", "json"]).stdout)
    assert data["degenerate"] == ["output"] and data["verified"] is True
    assert data["max_rel_diff"] is None and data["max_abs_output"] == 0  # all zero
    assert data["bound"] == "resolution" and data["tolerance"] == FLOAT32_TINY
    recheck = data["recheck"]
    assert recheck["redrawn"] == ["2.weight", "2.bias"] and recheck["degenerate"] == []
    assert recheck["bound"] == "rtol" and recheck["max_abs_output"] > 1e-2
    assert recheck["max_rel_diff"] == pytest.approx(recheck["max_abs_diff"]
                                                    / recheck["max_abs_output"])
    assert data["outputs"][0]["degenerate"] == "zero"


def test_a_dict_output_with_one_zero_head(tmp_path: Path) -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 6)
            self.age = nn.Linear(6, 1)
            self.race = nn.Linear(6, 3)
            nn.init.zeros_(self.race.weight)
            nn.init.zeros_(self.race.bias)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            h = torch.relu(self.body(x))
            return {"age": self.age(h), "race": self.race(h)}

    torch.manual_seed(0)
    result = export_onnx(TwoHeads(), tmp_path / "two.onnx", (4,), dynamic_batch=True)
    agreement = result.agreement
    assert agreement is not None and agreement.recheck is not None
    # judged at batch 2 and at batch 1 (dynamic); only race is degenerate, at both
    assert [(o.name, o.batch, o.degenerate) for o in agreement.outputs] == [
        ("age", 2, None), ("race", 2, Degenerate.ZERO),
        ("age", 1, None), ("race", 1, Degenerate.ZERO)]
    assert result.to_dict()["degenerate"] == ["race"]
    assert agreement.recheck.redrawn == ("race.weight", "race.bias")
    assert [o.name for o in agreement.recheck.outputs] == ["age", "race"]
    assert min(o.scale for o in agreement.recheck.outputs) > 1e-2


def test_nothing_to_redraw_is_not_verified(tmp_path: Path) -> None:
    class AlwaysZero(nn.Module):  # random weights, an output that is 0 whatever they are
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(-self.fc(x).abs())

    result = export_onnx(AlwaysZero(), tmp_path / "z.onnx", (4,))
    agreement = result.agreement
    assert agreement is not None and agreement.passed and not agreement.verified
    assert agreement.recheck is None
    assert result.notes == ("nothing was checked on output: degenerate with the model's own "
                            "weights, and no parameter holds a single value to re-draw",)
    from archscope.render.export import render_export

    assert render_export(result).splitlines()[-1].endswith(
        "degenerate with the model's own weights (output: all zero; max |PyTorch − ONNX| = "
        "0.00e+00); no parameter holds a single value to re-draw: not verified")
    assert result.to_dict()["verified"] is False


def test_outputs_that_stay_degenerate_are_not_verified(tmp_path: Path) -> None:
    class StillZero(nn.Module):  # a zero-initialised layer, re-drawn, and still a zero output
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(-self.fc(x).abs())

    result = export_onnx(StillZero(), tmp_path / "z.onnx", (4,))
    agreement = result.agreement
    assert agreement is not None and agreement.recheck is not None
    assert agreement.recheck.redrawn == ("fc.weight", "fc.bias")
    assert agreement.passed and not agreement.verified
    assert result.notes == ("nothing was checked on output: degenerate even with 2 constant "
                            "parameters re-drawn",)
    from archscope.render.export import render_export

    assert render_export(result).splitlines()[-1].endswith(
        "re-checked with 2 constant parameters re-drawn: max |PyTorch − ONNX| = 0.00e+00 ≤ "
        "1.18e-38 (outputs up to 0; all zero): not verified (still degenerate)")
    assert result.to_dict()["recheck"]["degenerate"] == ["output"]


# -- tiny outputs, judged against their own scale ------------------------------------------------

def test_tiny_outputs_are_judged_relatively(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Tiny()
    result = export_onnx(model, tmp_path / "tiny.onnx", (8,))
    x = _x((8,))
    with torch.no_grad():
        want = model(x)
    scale = float(want.abs().max())
    assert 1e-11 < scale < 1e-9  # PyTorch's Linear init is ~1/√fan_in, then 1e-4·1e-5
    agreement = result.agreement
    assert agreement is not None and not agreement.degenerate and agreement.recheck is None
    assert result.max_abs_output == pytest.approx(scale)
    assert result.tolerance == pytest.approx(RTOL * scale)  # about 1e-15, not 1e-4
    # fc2's weight off by 1e-3 of itself: the outputs move by 1e-3 of their scale, ~5e-13
    skewed = _skewed(result.path, "fc2.weight", tmp_path / "skewed.onnx")
    got = _ort(skewed, x)
    moved = float(np.abs(got.astype(np.float64) - want.double().numpy()).max())
    assert moved < OLD_ATOL  # the old absolute bound passed it
    assert moved / scale == pytest.approx(1e-3, rel=1e-2)  # y = W₂h: scaling W₂ scales y
    agreement, _ = onnx_compare.verify_export(model, skewed, x, [want], False, label="tiny")
    assert agreement is not None and not agreement.passed and not agreement.degenerate
    assert agreement.diff == pytest.approx(moved, rel=1e-6)
    # PyTorch's own fp32 error was measured (the difference is past the relative bound) and is
    # far smaller than the skew: it does not excuse it
    assert agreement.fp32_error is not None and 4 * agreement.fp32_error < moved
    message = onnx_compare.disagreement(agreement, "tiny")
    assert f"more than the tolerance {RTOL * scale:.3g} (PyTorch's own fp32 error " in message


# -- the bound and the degenerate cases, on numbers worked out by hand ----------------------------

def test_judge_takes_the_largest_bound_and_names_it() -> None:
    # scale 2: rtol gives 2e-5; atol 0; the float32 floor 1.2e-38
    o = judge(1e-5, 2.0, rtol=RTOL, atol=0.0, tiny=FLOAT32_TINY)
    assert (o.tolerance, o.bound, o.degenerate, o.passed) == (2e-5, Bound.RELATIVE, None, True)
    assert o.relative == 5e-6
    # PyTorch's own error 1e-4: 4 × 1e-4 = 4e-4 > 2e-5, and 4e-4 < 1 % of 2 (0.02): not degenerate
    o = judge(3e-4, 2.0, rtol=RTOL, atol=0.0, tiny=FLOAT32_TINY, fp32_error=1e-4)
    assert (o.tolerance, o.bound, o.degenerate, o.passed) == (4e-4, Bound.FP32_ERROR, None, True)
    # PyTorch's own error 5e-3: 4 × 5e-3 = 0.02 = 1 % of 2: the output is mostly rounding
    o = judge(1e-2, 2.0, rtol=RTOL, atol=0.0, tiny=FLOAT32_TINY, fp32_error=5e-3)
    assert (o.bound, o.degenerate) == (Bound.FP32_ERROR, Degenerate.ROUNDING)
    # --atol 1e-4 on outputs of 1e-9: the old check, which passes anything: degenerate
    o = judge(5e-5, 1e-9, rtol=RTOL, atol=1e-4, tiny=FLOAT32_TINY)
    assert (o.tolerance, o.bound, o.degenerate, o.passed) == (1e-4, Bound.ABSOLUTE,
                                                               Degenerate.ATOL, True)
    # all zero: the floor is the smallest normal float32, any larger difference fails
    o = judge(0.0, 0.0, rtol=RTOL, atol=0.0, tiny=FLOAT32_TINY)
    assert (o.tolerance, o.bound, o.degenerate, o.relative) == (FLOAT32_TINY, Bound.RESOLUTION,
                                                                Degenerate.ZERO, None)
    assert not judge(1e-30, 0.0, rtol=RTOL, atol=0.0, tiny=FLOAT32_TINY).passed
    # a subnormal scale (1e-40 < 2**-126): its values carry fewer bits than the bound assumes
    o = judge(0.0, 1e-40, rtol=RTOL, atol=0.0, tiny=FLOAT32_TINY)
    assert o.degenerate is Degenerate.SUBNORMAL and o.bound is Bound.RESOLUTION
