"""Integer inputs: ``--dtype long`` for models that start with an Embedding (issue 12, item 5).

Oracles: the model's own real forward on token ids, ``sum(p.numel())``, the Embedding's table
size for the ids drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from fixtures.engine_cases import TinyLM, TinyTransformerLM
from torch import nn

from archscope._modes import random_input
from archscope.cli import main
from archscope.engine import inspect, inspect_onnx
from archscope.errors import InputShapeError, LayerInputError
from archscope.source import resolve

CASES = Path(__file__).parent / "fixtures" / "engine_cases.py"


@pytest.mark.parametrize("cls", [TinyLM, TinyTransformerLM])
def test_a_language_model_is_traced_on_token_ids(cls: type[nn.Module]) -> None:
    model = cls().eval()
    report = inspect(model, (12,), batch=3, dtype=torch.long)
    ids = torch.randint(0, cls.VOCAB, (3, 12))  # type: ignore[attr-defined]
    assert report.output_shapes == (tuple(model(ids).shape),) == ((3, 12, cls.VOCAB),)  # type: ignore[attr-defined]
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert report.find("embed").output_shapes == ((3, 12, 16),)


def test_floats_into_an_embedding_suggest_dtype_long() -> None:
    with pytest.raises(LayerInputError) as info:
        inspect(TinyLM(), (12,))
    assert str(info.value) == ("embed (Embedding) looks up integer token ids (0 to 49) but the "
                               "model input is float32; give integer inputs with --dtype long "
                               "(dtype=torch.long)")

    class Inner(nn.Module):  # floats made inside the model: no --dtype can help
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.embed = nn.Embedding(10, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embed(self.fc(x))

    with pytest.raises(LayerInputError, match=r"^embed \(Embedding\) looks up integer token ids "
                                              r"\(0 to 9\) but receives a float32 tensor"):
        inspect(Inner(), (4,))


def test_ids_for_a_real_run_are_rows_of_the_first_embedding() -> None:
    generator = torch.Generator().manual_seed(0)
    ids = random_input(TinyLM(), (1000,), 2, torch.long, "cpu", generator)
    assert ids.dtype == torch.long and ids.shape == (2, 1000)
    assert int(ids.min()) == 0 and int(ids.max()) == TinyLM.VOCAB - 1  # every row reachable
    no_table = random_input(nn.Linear(3, 3), (100,), 1, torch.int32, "cpu", generator)
    assert no_table.dtype == torch.int32 and set(no_table.unique().tolist()) == {0, 1}


def test_dtype_names() -> None:
    assert resolve(f"{CASES}:TinyLM", dtype="long").dtype == torch.int64
    assert resolve(f"{CASES}:TinyLM", dtype="int").dtype == torch.int32
    assert resolve(f"{CASES}:TinyLM").dtype is None
    with pytest.raises(InputShapeError, match="input dtype 'int8' is not one of float32"):
        resolve(f"{CASES}:TinyLM", dtype="int8")


def test_dtype_long_on_the_command_line() -> None:
    runner = CliRunner()
    source = f"{CASES}:TinyLM"
    result = runner.invoke(main, ["summary", source, "--input", "12", "--dtype", "long",
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_shapes"] == [[1, 12, TinyLM.VOCAB]]
    refused = runner.invoke(main, ["summary", source, "--input", "12"])
    assert refused.exit_code == 1 and "--dtype long" in refused.stderr
    checked = runner.invoke(main, ["check", source, "--dtype", "long", "--device", "cpu"])
    assert checked.exit_code == 0, checked.output
    drawn = runner.invoke(main, ["diagram", source, "--dtype", "long", "-o", "-"])
    assert drawn.exit_code == 0 and drawn.stdout.startswith("digraph")
    bad = runner.invoke(main, ["summary", source, "--dtype", "int8"])
    assert bad.exit_code == 2


def test_export_takes_token_ids(tmp_path: Path) -> None:
    path = tmp_path / "lm.onnx"
    result = CliRunner().invoke(main, ["export", f"{CASES}:TinyLM", "--input", "12", "--dtype",
                                       "long", "-o", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert exported["input_shape"] == [1, 12]
    assert exported["max_abs_diff"] <= exported["tolerance"]  # onnxruntime ran on the ids
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inspect_onnx(path).total_params == sum(p.numel() for p in TinyLM().parameters())
