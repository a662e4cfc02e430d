"""ONNX export against independent oracles: onnx.checker, onnxruntime, and PyTorch itself.

Each zoo model is exported once (module-scoped cache) from real CPU weights; onnxruntime runs the
same random input and must agree with PyTorch to 1e-4 in fp32 (and the export's own relative
bound, 1e-5 of each output's scale, must hold), except where PyTorch's own fp32 result is
farther than that from a float64 run of the same model: then within 4× that measured error. The
deep random-init ResNets (BatchNorm statistics still 0 and 1) have logits in the thousands and
are judged relatively. tests/test_export_check.py tests the relative bound itself. The file
re-inspected with :func:`archscope.engine.inspect_onnx` must hold exactly the PyTorch
parameter count. The heavy models (VGG-13/16/19, ResNet-34/101/152 …) are marked ``slow``.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from archscope.cli import main
from archscope.engine import inspect_onnx
from archscope.errors import ExportError, ExportOptionError
from archscope.export import FP32_ERROR_FACTOR, ExporterFailed, ExportResult, export_onnx
from archscope.export import compare as onnx_compare
from archscope.export import exporter as export_module
from archscope.registry import get_entry, model_names

# Published totals, written out (not read from the registry): torchvision's "Params" column and
# the lecture notes' Keras summaries.
PUBLISHED = {
    "lecture_mnist_cnn": 93_322,
    "lecture_catsdogs_cnn": 3_453_121,
    "lecture_mlp": 45_360,
    "lecture_multitask": 266_055,
    "alexnet": 62_378_344,
    "alexnet_torchvision": 61_100_840,
    "vgg11": 132_863_336,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
}

FAST = list(PUBLISHED)
SLOW = [n for n in model_names() if n not in PUBLISHED]

#: Inputs small enough to keep the test fast; models with a fixed-size flatten keep theirs.
SMALL_INPUT = {"vgg": (3, 32, 32), "resnet": (3, 64, 64), "alexnet_torchvision": (3, 64, 64)}

ATOL = 1e-4


def _input_for(name: str) -> tuple[int, ...]:
    entry = get_entry(name)
    return SMALL_INPUT.get(name, SMALL_INPUT.get(entry.family, entry.input_shape))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[ExportResult, int]]:
    """Export a zoo model once per module: (result, PyTorch's unique parameter count)."""
    directory = tmp_path_factory.mktemp("onnx")
    cache: dict[str, tuple[ExportResult, int]] = {}

    def get(name: str) -> tuple[ExportResult, int]:
        if name not in cache:
            torch.manual_seed(0)
            model = get_entry(name).build()
            params = sum(p.numel() for p in model.parameters())
            result = export_onnx(model, directory / f"{name}.onnx", _input_for(name), name=name)
            cache[name] = (result, params)
        return cache[name]

    return get


def _check_export(name: str, exported: Callable[[str], tuple[ExportResult, int]],
                  absolute: bool = True) -> None:
    result, params = exported(name)
    assert result.path.is_file() and result.data_path is None
    # onnx.checker passed inside export_onnx; run it again here as the independent oracle
    onnx.checker.check_model(str(result.path), full_check=True)
    assert result.max_abs_diff is not None, "onnxruntime is a test dependency"
    if absolute:  # the issue's criterion, literally: < 1e-4 whatever the outputs' magnitude
        assert result.max_abs_diff < ATOL, f"{name}: |PyTorch - ORT| = {result.max_abs_diff}"
        assert result.fp32_error is None  # float64 is consulted only above rtol
    elif result.fp32_error is not None:  # PyTorch's own fp32 error was measured, and bounds it
        assert result.fp32_error > 0
        assert result.max_abs_diff <= FP32_ERROR_FACTOR * result.fp32_error
    else:  # the relative bound held: 1e-5 of the outputs' scale
        assert result.max_abs_output is not None
        assert result.max_abs_diff <= result.rtol * result.max_abs_output
    report = inspect_onnx(result.path)
    assert report.total_params == params
    if name in PUBLISHED:
        assert report.total_params == PUBLISHED[name]
    assert sum(r.params for r in report.layers) == report.total_params


@pytest.mark.parametrize("name", FAST)
def test_export_matches_onnxruntime_and_reinspects(
    name: str, exported: Callable[[str], tuple[ExportResult, int]]
) -> None:
    _check_export(name, exported)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_export_heavy_models(
    name: str, exported: Callable[[str], tuple[ExportResult, int]]
) -> None:
    # Random-init ResNet-101/152 in eval mode (BatchNorm statistics still 0 and 1) have logits
    # in the thousands, where PyTorch's own fp32 result is more than 1e-4 from float64.
    _check_export(name, exported, absolute=False)


@pytest.mark.slow
def test_deep_resnet_is_judged_against_its_own_float64_error(tmp_path: Path) -> None:
    # Independent oracles: onnxruntime run here on the file, PyTorch fp32, and PyTorch float64 on
    # a deep copy of the model converted with .double() (not the library's functional_call).
    # Its relative difference (~9e-7) is within the default rtol 1e-5: an rtol of 1e-9, far
    # below fp32's resolution, sends it to the float64 allowance, which must pass it.
    import onnxruntime

    torch.manual_seed(0)  # seed 0 for both builds: the same weights
    result = export_onnx(get_entry("resnet101").build(), tmp_path / "r101.onnx",
                         _input_for("resnet101"), rtol=1e-9)
    torch.manual_seed(0)
    model = get_entry("resnet101").build().eval()
    x = torch.randn(1, *_input_for("resnet101"), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp32 = model(x)
        fp64 = copy.deepcopy(model).double()(x.double())
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (ort,) = session.run(None, {"input": x.numpy()})
    ort_diff = float((torch.from_numpy(ort).double() - fp32.double()).abs().max())
    fp32_error = float((fp32.double() - fp64).abs().max())
    # the random-init logits are in the thousands: fp32 itself is far from exact here
    assert fp32_error > ATOL and ort_diff > ATOL
    assert result.max_abs_diff == pytest.approx(ort_diff, rel=1e-6)
    assert result.fp32_error == pytest.approx(fp32_error, rel=1e-2)
    assert result.tolerance == pytest.approx(FP32_ERROR_FACTOR * fp32_error, rel=1e-2)
    assert ort_diff <= FP32_ERROR_FACTOR * fp32_error


def test_each_output_is_judged_on_its_own_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a large output (~1000) beside a small one: an error of 1e-3 on the small one must fail even
    # though it is tiny next to the large output
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"big": self.fc(x) * 0 + 1000.0, "small": self.fc(x)}

    real = onnx_compare.run_onnxruntime

    def skewed(path: Path, x: torch.Tensor, label: str) -> object:
        (big, small), version = real(path, x, label)
        return [big, small + 1e-3], version

    monkeypatch.setattr(onnx_compare, "run_onnxruntime", skewed)
    # the small head's own fp32 error (against float64) is ~1e-8: 1e-3 is no rounding; its
    # tolerance is 1e-5 of its own scale (about 1), not of the large head's 1000
    with pytest.raises(ExportError, match=r"by up to 0\.001 on outputs up to .*, more than the "
                                          r"tolerance \S+ \(PyTorch's own fp32 error") as info:
        export_onnx(TwoHeads(), tmp_path / "two.onnx", (4,))
    scale, tolerance = _scale_and_tolerance(str(info.value))
    assert scale < 1000 and math.isclose(tolerance, 1e-5 * scale, rel_tol=1e-2)
    assert _leftovers(tmp_path) == []


def _scale_and_tolerance(message: str) -> tuple[float, float]:
    found = re.search(r"on outputs up to (\S+), more than the tolerance (\S+) ", message)
    assert found is not None, message
    return float(found.group(1)), float(found.group(2))


def test_without_a_float64_reference_atol_alone_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = onnx_compare.run_onnxruntime

    def skewed(path: Path, x: torch.Tensor, label: str) -> object:
        (out,), version = real(path, x, label)
        return [out + 5e-4], version

    monkeypatch.setattr(onnx_compare, "run_onnxruntime", skewed)
    monkeypatch.setattr(onnx_compare, "float64_outputs", lambda *a: (None, "no float64 kernel"))
    with pytest.raises(ExportError, match=r"tolerance \S+ \(float64 reference unavailable \(no "
                                          r"float64 kernel\): judged against rtol and atol "
                                          r"alone\)") as info:
        export_onnx(get_entry("lecture_mlp").build(), tmp_path / "m.onnx", (1, 28, 28))
    scale, tolerance = _scale_and_tolerance(str(info.value))
    assert math.isclose(tolerance, 1e-5 * scale, rel_tol=1e-2)
    assert _leftovers(tmp_path) == []


def test_export_keeps_each_layers_own_mode(tmp_path: Path) -> None:
    # fine-tuning style: the model trains but one BatchNorm is kept in eval mode
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    model[1].eval()
    before = [m.training for m in model.modules()]
    export_onnx(model, tmp_path / "m.onnx", (3, 8, 8), dynamic_batch=True)
    assert onnx_compare.float64_outputs(model, torch.randn(1, 3, 8, 8))[1] is None
    assert [m.training for m in model.modules()] == before == [True, True, False, True]


def test_float64_outputs_leave_the_model_as_it_was() -> None:
    model = get_entry("resnet18").build().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 32, 32)
    exact, failure = onnx_compare.float64_outputs(model, x)
    assert failure is None and exact is not None and exact[0].dtype == torch.float64
    assert model.training and torch.get_default_dtype() == torch.float32
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    with torch.no_grad():  # the same function as the model's eval-mode forward, to fp32 accuracy
        assert torch.allclose(exact[0].float(), model.eval()(x), atol=1e-5)


def test_dict_outputs_keep_their_keys(exported: Callable[[str], tuple[ExportResult, int]]) -> None:
    result, _ = exported("lecture_multitask")
    assert result.output_names == ("age", "sex", "race")
    model = onnx.load(str(result.path), load_external_data=False)
    assert [o.name for o in model.graph.output] == ["age", "sex", "race"]


def test_bn_is_not_folded_and_every_initializer_is_in_the_state_dict(
    exported: Callable[[str], tuple[ExportResult, int]],
) -> None:
    # resnet18 initialises all BN biases to 0 and scales to 1: an exporter that folds BN or merges
    # equal initializers would lose them. Every initializer must be a state_dict entry.
    result, _ = exported("resnet18")
    model = onnx.load(str(result.path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("BatchNormalization") == 20 and ops.count("Conv") == 20
    state = get_entry("resnet18").build().state_dict()
    names = {t.name for t in model.graph.initializer}
    assert names <= set(state)
    assert {k for k in state if not k.endswith("num_batches_tracked")} == names


def test_dynamic_batch_runs_at_other_batches(tmp_path: Path) -> None:
    import onnxruntime

    torch.manual_seed(0)
    model = get_entry("lecture_multitask").build().eval()
    path = tmp_path / "mt.onnx"
    result = export_onnx(model, path, (3, 200, 200), dynamic_batch=True)
    assert result.dynamic_batch and result.max_abs_diff is not None and result.max_abs_diff < ATOL
    graph_input = onnx.load(str(path)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # symbolic, not a number
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 200, 200)
    got = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = model(x)
    for g, w in zip(got, want.values(), strict=True):
        assert g.shape == tuple(w.shape)
        assert abs(g - w.numpy()).max() < ATOL
    # re-inspected at batch 3, shapes come out static
    report = inspect_onnx(path, batch=3)
    assert report.output_shapes == ((3, 1), (3, 1), (3, 5))
    assert report.total_params == PUBLISHED["lecture_multitask"]


def test_model_mode_is_restored(tmp_path: Path) -> None:
    model = get_entry("lecture_mlp").build()
    model.train()
    export_onnx(model, tmp_path / "m.onnx", (1, 28, 28), verify=False)
    assert model.training


class _DataDependent(nn.Module):
    """Python control flow on tensor values: torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)
        return self.fc(-x)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_exporter_failure_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_onnx(_DataDependent(), tmp_path / "bad.onnx", (4,), name="bad")
    message = str(info.value)
    assert "\n" not in message and message.startswith("bad: PyTorch's ONNX exporter failed")
    assert _leftovers(tmp_path) == []


def test_onnxruntime_disagreement_fails_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disagreement = onnx_compare.Agreement(
        (onnx_compare.OutputAgreement(diff=0.5, scale=2.0, tolerance=0.004, fp32_error=1e-3),)
    )
    monkeypatch.setattr(onnx_compare, "compare_onnxruntime", lambda *a, **k: (disagreement, "t"))
    with pytest.raises(ExportError, match=r"by up to 0\.5 on outputs up to 2, more than the "
                                          r"tolerance 0\.004 \(PyTorch's own fp32 error against "
                                          r"float64 is 0\.001\); no file was written"):
        export_onnx(get_entry("lecture_mlp").build(), tmp_path / "m.onnx", (1, 28, 28))
    assert _leftovers(tmp_path) == []


def test_without_onnxruntime_the_comparison_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    result = export_onnx(get_entry("lecture_mlp").build(), tmp_path / "m.onnx", (1, 28, 28))
    assert result.max_abs_diff is None and result.onnxruntime_version is None
    assert result.path.is_file()


def test_large_models_get_an_external_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the 2 GB protobuf limit is tiny: the weights go to m.onnx.data, written atomically.
    monkeypatch.setattr(export_module, "_PROTOBUF_LIMIT", 1)
    torch.manual_seed(0)
    model = get_entry("lecture_mnist_cnn").build()
    result = export_onnx(model, tmp_path / "m.onnx", (1, 28, 28))
    assert result.data_path == tmp_path / "m.onnx.data"
    assert _leftovers(tmp_path) == ["m.onnx", "m.onnx.data"]
    assert result.max_abs_diff is not None and result.max_abs_diff < ATOL
    assert inspect_onnx(result.path).total_params == PUBLISHED["lecture_mnist_cnn"]


def test_unwritable_targets(tmp_path: Path) -> None:
    model = get_entry("lecture_mlp").build()
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "m.onnx", (1, 28, 28))
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, tmp_path, (1, 28, 28))
    assert _leftovers(tmp_path) == []


def test_opsets(tmp_path: Path) -> None:
    model = get_entry("lecture_mlp").build()
    newer = export_onnx(model, tmp_path / "m21.onnx", (1, 28, 28), opset=21)
    assert newer.opset == 21 and onnx.load(str(newer.path)).opset_import[0].version == 21
    assert newer.max_abs_diff is not None and newer.max_abs_diff < ATOL
    with pytest.raises(ExportError, match="opset 13 is too old"):
        export_onnx(model, tmp_path / "m13.onnx", (1, 28, 28), opset=13)
    # an opset past the newest the onnx package knows is refused before exporting (usage, exit 2)
    latest = onnx.defs.onnx_opset_version()
    with pytest.raises(ExportOptionError,
                       match=rf"opset 99 is newer than the onnx package knows; use --opset 18 to "
                             rf"{latest}$"):
        export_onnx(model, tmp_path / "m99.onnx", (1, 28, 28), opset=99)
    assert _leftovers(tmp_path) == ["m21.onnx"]


def test_an_opset_the_exporter_cannot_convert_to_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # past the early check (as if onnx knew opset 99), the exporter keeps 18: refused, no file
    monkeypatch.setattr(export_module, "_latest_opset", lambda: 99)
    model = get_entry("lecture_mlp").build()
    with pytest.raises(ExportError, match=r"produced opset 18 instead of 99 .* from 18 to 99"):
        export_onnx(model, tmp_path / "m99.onnx", (1, 28, 28), opset=99)
    assert _leftovers(tmp_path) == []


def test_meta_model_is_refused(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = nn.Linear(3, 2)
    with pytest.raises(ExportError, match="real weights on the CPU"):
        export_onnx(model, tmp_path / "m.onnx", (3,))


# -- CLI ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_export_of_a_deep_random_resnet_explains_its_tolerance(tmp_path: Path) -> None:
    runner = CliRunner()
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    for path in paths:
        result = runner.invoke(main, ["export", "resnet101", "--input", "3x64x64", "-o", str(path),
                                      "--rtol", "1e-9"])
        assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    assert line.startswith("onnxruntime ") and line.endswith(": passed")
    assert ", above rtol 1e-09, so judged against 4× PyTorch's own fp32 error against float64, " in line
    # the weights are seeded: the same command writes the same file
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_cli_export_then_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "mnist.onnx"
    result = runner.invoke(main, ["export", "lecture_mnist_cnn", "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert "exporting lecture_mnist_cnn" in result.stderr
    assert "max |PyTorch − ONNX|" in result.stdout and "passed" in result.stdout
    assert "input  input [1, 1, 28, 28]" in result.stdout
    summary = runner.invoke(main, ["summary", str(path), "--format", "json"])
    assert summary.exit_code == 0, summary.output
    import json

    data = json.loads(summary.stdout)
    assert data["total_params"] == 93_322


def test_cli_export_with_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    trained = get_entry("lecture_mlp").build()
    weights = tmp_path / "mlp.pt"
    torch.save(trained.state_dict(), weights)
    path = tmp_path / "mlp.onnx"
    result = CliRunner().invoke(main, ["export", "lecture_mlp", "--weights", str(weights),
                                       "-o", str(path)])
    assert result.exit_code == 0, result.output
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    assert (stored["fc1.weight"] == trained.state_dict()["fc1.weight"].numpy()).all()
    bad = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "--weights", str(weights),
                                    "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 1 and "missing key(s)" in bad.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_unwritable_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["export", "lecture_mlp", "-o", str(tmp_path / "no" / "m.onnx")]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot write" in errors[0]
    assert "Traceback" not in result.stderr


def test_unwritable_staging_and_file_as_directory_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("x")
    runner = CliRunner()
    result = runner.invoke(main, ["export", "lecture_mlp", "-o", str(tmp_path / "afile" / "m.onnx")])
    assert result.exit_code == 1 and "afile is a file, not a directory" in result.stderr
    # a directory that os.access calls writable but that refuses new files (/proc, read-only
    # mounts seen as root): the temporary file beside the target cannot be made
    import tempfile

    def refuse(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    result = runner.invoke(main, ["export", "lecture_mlp", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == f"Error: cannot write {tmp_path / 'm.onnx'}: Permission denied"
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_cli_export_notes_a_name_without_onnx_suffix(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "lecture_mlp", "-o", str(tmp_path / "m.bin")])
    assert result.exit_code == 0, result.output
    assert "does not end in .onnx" in result.stderr and "does not end" not in result.stdout
    assert onnx.load(str(tmp_path / "m.bin")).graph.node


def test_cli_export_requires_output() -> None:
    result = CliRunner().invoke(main, ["export", "lecture_mlp"])
    assert result.exit_code == 2
    assert "--output" in result.stderr


def test_a_float64_model_exports_in_float64(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).double()
    # onnxruntime's CPU provider has no float64 Conv: the comparison says so and what to do
    with pytest.raises(ExportError, match=r"no kernel for this operator in torch\.float64 .* "
                                          r"\(--no-verify\)$"):
        export_onnx(model, tmp_path / "d.onnx", (3, 8, 8))
    assert _leftovers(tmp_path) == []
    result = export_onnx(model, tmp_path / "d.onnx", (3, 8, 8), verify=False)
    graph = onnx.load(str(result.path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert next(model.parameters()).dtype == torch.float64


# --------------------------------------------------------------------------------------------
# The exporter's output kept off the terminal, --opset's range, the verdict's wording
# --------------------------------------------------------------------------------------------



def test_export_of_data_dependent_control_flow_is_one_line(models: Path, tmp_path: Path) -> None:
    target = tmp_path / "dd.onnx"
    line = models.read_text(encoding="utf-8").splitlines().index("        if x.mean() > 0:") + 1
    result = CliRunner().invoke(main, ["export", f"{models}:DD", "--input", "3x8x8",
                                       "-o", str(target)])
    assert result.exit_code == 1
    assert result.stdout == ""
    exporting, error = result.stderr.splitlines()  # nothing of the exporter's own output
    assert exporting == f"exporting {models}:DD to {target} …"
    where = re.fullmatch(
        r"Error: nets\.py:DD: PyTorch's ONNX exporter failed at opset 18: the forward reads "
        r"tensor values \(data-dependent control flow such as `if x\.mean\(\) > 0` or "
        r"`\.item\(\)`\), which torch\.export cannot capture in a graph \((.+), line (\d+): "
        r"`if x\.mean\(\) > 0:`\); compute both branches and choose with torch\.where, or use "
        r"torch\.cond", error)
    assert where is not None, error
    assert Path(where.group(1)).samefile(models) and int(where.group(2)) == line
    assert not target.exists()


def test_export_verbose_shows_what_the_exporter_printed(models: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", f"{models}:DD", "--input", "3x8x8",
                                       "-o", str(tmp_path / "dd.onnx"), "--verbose"])
    assert result.exit_code == 1
    assert "def forward(" in result.stderr  # the graph torch.export dumped
    assert result.stderr.splitlines()[-1].startswith("Error: ")


def test_export_library_keeps_the_exporter_output_on_the_error(
    models: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("review_nets", models)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ExporterFailed) as info:
        export_onnx(module.DD(), tmp_path / "dd.onnx", (3, 8, 8))
    assert "\n" not in str(info.value) and "Next steps" not in str(info.value)
    assert "def forward(" in info.value.output
    out, err = capfd.readouterr()
    assert out == "" and "def forward(" not in err and "symbolic_shapes" not in err


def test_export_opset_below_18_is_a_usage_error_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.onnx"), "--opset", "17"])
    assert result.exit_code == 2
    (error,) = result.stderr.strip().splitlines()
    assert error.startswith("Error: Invalid value for '--opset': 17 is not in the range x>=18.")
    assert "exporting" not in result.stderr
    help_text = CliRunner().invoke(main, ["export", "--help"]).stdout
    assert "[default: 18; x>=18]" in " ".join(help_text.split())


def test_export_verdict_puts_the_bound_right_after_the_difference(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    match = re.fullmatch(r"onnxruntime \S+: max \|PyTorch − ONNX\| = (\S+) ≤ (\S+) "
                         r"\(outputs up to (\S+); relative (\S+) ≤ rtol 1e-05\): passed", line)
    assert match is not None, line
    diff, bound, scale, relative = (float(g) for g in match.groups())
    assert diff <= bound and math.isclose(bound, 1e-5 * scale, rel_tol=1e-2) and scale > 1e-4
    assert math.isclose(relative, diff / scale, rel_tol=0.1) and relative <= 1e-5


def test_export_verdict_against_pytorchs_own_error(tmp_path: Path) -> None:
    # an rtol below any fp32 rounding: the comparison falls back to PyTorch's own fp32 error
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o",
                                       str(tmp_path / "m.onnx"), "--rtol", "1e-12"])
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[-1]
    match = re.fullmatch(r"onnxruntime \S+: max \|PyTorch − ONNX\| = (\S+) ≤ (\S+) \(outputs up "
                         r"to \S+; relative \S+, above rtol 1e-12, so judged against 4× PyTorch's "
                         r"own fp32 error against float64, (\S+)\): passed", line)
    assert match is not None, line
    diff, bound, error = (float(g) for g in match.groups())
    assert diff <= bound and math.isclose(bound, 4 * error, rel_tol=1e-2)


def test_export_json_describes_the_file_it_wrote(tmp_path: Path) -> None:
    # the JSON's figures against the file itself: its size on disk and onnx.load's graph
    net = tmp_path / "tiny.py"
    net.write_text("from torch import nn\n\n\ndef tiny():\n    return nn.Linear(4, 2)\n",
                   encoding="utf-8")
    target = tmp_path / "tiny.onnx"
    result = CliRunner().invoke(main, ["export", f"{net}:tiny", "--input", "4", "-o", str(target),
                                       "--no-verify", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the progress line went to stderr
    proto = onnx.load(str(target))
    assert data["path"] == str(target) and data["data_path"] is None
    assert data["file_bytes"] == target.stat().st_size
    assert data["nodes"] == len(proto.graph.node) and data["opset"] == 18
    assert data["input_shape"] == [1, 4] and data["output_names"] == ["output"]
    assert data["max_abs_diff"] is None and data["tolerance"] is None  # --no-verify
    assert result.stderr.startswith(f"exporting {net}:tiny to {target} …")
