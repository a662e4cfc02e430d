"""Model sources become one :class:`~archscope.source.Subject` per command: built once, its input
size settled, its weights loaded.

Oracles: a model file that logs every time it is imported and built (so the count is the file's
own record, not archscope's), ``torch.equal`` on the weights a file holds, and the published
parameter count of the lecture CNN written out by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from archscope.cli import main
from archscope.errors import InputShapeError, WeightsError
from archscope.source import Reference, Subject, inspect_subject, resolve

# Each import appends "imported" to net.log beside the file, and each build "built".
_COUNTED = '''
from pathlib import Path

from torch import nn

with open(Path(__file__).with_suffix(".log"), "a") as log:
    log.write("imported\\n")


class Net(nn.Module):
    input_shape = (3, 8, 8)

    def __init__(self):
        super().__init__()
        with open(Path(__file__).with_suffix(".log"), "a") as log:
            log.write("built\\n")
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class NoSize(Net):
    input_shape = None
'''


@pytest.fixture
def counted(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(_COUNTED, encoding="utf-8")
    return path


def _log(path: Path) -> list[str]:
    log = path.with_suffix(".log")
    return log.read_text(encoding="utf-8").split() if log.exists() else []


@pytest.mark.parametrize("args", [
    ["summary", "{m}"],
    ["check", "{m}", "--device", "cpu", "--repeats", "1"],
    ["bench", "{m}", "--device", "cpu", "--steps", "2", "--warmup", "1", "--batch-size", "2"],
    ["export", "{m}", "-o", "{tmp}/net.onnx", "--no-verify"],
])
def test_a_users_file_is_imported_and_built_once_per_command(counted: Path,
                                                              args: list[str]) -> None:
    argv = [a.format(m=f"{counted}:Net", tmp=counted.parent) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert _log(counted) == ["imported", "built"]


def test_resolve_settles_the_input_size_once(counted: Path) -> None:
    assert resolve(f"{counted}:Net").input_shape == (3, 8, 8)  # the model's own
    assert resolve(f"{counted}:Net", input_shape="3x16x16").input_shape == (3, 16, 16)
    assert resolve(f"{counted}:NoSize", input_shape=[3, 8, 8]).input_shape == (3, 8, 8)
    with pytest.raises(InputShapeError) as info:
        resolve(f"{counted}:NoSize")
    assert str(info.value) == (f"{counted}:NoSize has no default input size; pass one with "
                               "--input (e.g. 3x224x224)")
    # every command says it the same way, in one line
    for args in (["summary"], ["check", "--device", "cpu"], ["bench", "--device", "cpu"],
                 ["export", "-o", str(counted.parent / "m.onnx")]):
        result = CliRunner().invoke(main, [args[0], f"{counted}:NoSize", *args[1:]])
        assert result.exit_code != 0
        assert f"{counted}:NoSize has no default input size" in (result.stdout + result.stderr)


def test_a_zoo_subject_carries_its_published_count() -> None:
    subject = resolve("lecture_mnist_cnn")
    assert subject.name == "lecture_mnist_cnn" and subject.input_shape == (1, 28, 28)
    assert subject.device == "meta" and subject.weights is None and subject.notes == ()
    assert subject.reference is not None
    # lecture 003's Keras summary: 320 + 18,496 + 36,928 + 36,928 + 650
    assert subject.reference.params == 320 + 18_496 + 36_928 + 36_928 + 650
    assert sum(p.numel() for p in subject.model.parameters()) == subject.reference.params
    assert resolve("lecture_mnist_cnn", num_classes=3).reference is None  # no longer published
    with pytest.raises(dataclasses.FrozenInstanceError):
        subject.name = "other"  # type: ignore[misc]
    assert isinstance(subject.reference, Reference) and isinstance(subject, Subject)


def test_resolve_loads_weights_on_the_device(tmp_path: Path, counted: Path) -> None:
    # weights of the file's own architecture, from a build with another seed
    saved = resolve(f"{counted}:Net", device="cpu", seed=7).model.state_dict()
    path = tmp_path / "w.pt"
    torch.save(saved, path)
    subject = resolve(f"{counted}:Net", device="cpu", weights=str(path))
    assert subject.weights == str(path) and subject.device == "cpu"
    state = subject.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert not torch.equal(resolve(f"{counted}:Net", device="cpu").model.conv.weight,
                           saved["conv.weight"])  # seed 0 builds other weights: they were loaded
    with pytest.raises(WeightsError, match="weights need a model with real weights"):
        resolve(f"{counted}:Net", weights=str(path))  # on the meta device


def test_inspect_subject_traces_in_training_mode_and_keeps_the_models_modes() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
    subject = Subject(model, "net", (4,), notes=("built somewhere",))
    trained = inspect_subject(subject, batch=2, backward=True, training=True)
    as_is = inspect_subject(subject, batch=2, backward=True)
    assert not model.training and not model[1].training  # left in eval mode
    # dropout in training mode saves its mask for backward; in eval mode it is the identity
    assert trained.activation_bytes > as_is.activation_bytes
    assert trained.notes[0] == as_is.notes[0] == "built somewhere"


def test_a_subject_on_the_meta_device_is_not_run_for_real() -> None:
    from archscope.bench import BenchConfig, bench_subject, make_plan
    from archscope.check import check
    from archscope.errors import DeviceError

    subject = resolve("lecture_mlp")  # shapes only
    with pytest.raises(DeviceError, match="lecture_mlp is on the meta device: check runs it"):
        check(subject)
    with pytest.raises(DeviceError, match="lecture_mlp is on meta, the benchmark runs on cpu"):
        bench_subject(subject, make_plan(BenchConfig(device="cpu")))


# -- what a MODEL that names no model should have been -------------------------------------------

@pytest.mark.parametrize("text", ["28x28x1 conv32 k3 flatten dense10",
                                  "150x150x3 conv32 k3 → maxpool2 → dense1",
                                  "chw:3x32x32 conv8 k3"])
def test_a_spec_without_spec_prefix_is_named_as_one(text: str) -> None:
    result = CliRunner().invoke(main, ["summary", text])
    assert result.exit_code == 1
    hint = (f"it looks like a layer spec; write 'spec:{text}' as the MODEL, or count it with "
            f"archscope calc '{text}'")
    assert result.stderr.strip().endswith(hint)
    assert len(result.stderr.strip().splitlines()) == 1
    # and the suggestions work: the spec is a model once it says so
    spec = CliRunner().invoke(main, ["summary", f"spec:{text}", "--format", "json"])
    assert spec.exit_code == 0, spec.output


def test_a_name_that_is_not_a_spec_gets_no_spec_hint() -> None:
    result = CliRunner().invoke(main, ["summary", "vgg 16"])
    assert "did you mean vgg16" in result.stderr and "layer spec" not in result.stderr


def test_a_file_without_a_name_lists_what_it_really_defines(tmp_path: Path) -> None:
    # read with ast, not run: importing this file would raise
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "raise SystemExit('never imported')\n"
        "class Block(nn.Module):\n"
        "    pass\n"
        "class Net(Block):\n"
        "    pass\n"
        "class Config:\n"
        "    pass\n"
        "def build(num_classes=10):\n"
        "    return Net()\n"
        "def _helper():\n"
        "    pass\n"
        "model = nn.Sequential(nn.Linear(2, 2))\n"
    )
    path = f"{tmp_path}/net.py"
    result = CliRunner().invoke(main, ["summary", path])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: unknown model '{path}': name the model after a colon: {path}:Block "
        f"({path} defines Block, Net, build, model)")
    # a file that defines nothing model-like keeps the general advice
    (tmp_path / "empty.py").write_text("x = 1\n")
    empty = CliRunner().invoke(main, ["summary", f"{tmp_path}/empty.py"])
    assert "a model in a Python file is named with the class or function after a colon" in \
        empty.stderr


def test_an_exception_in_a_constructor_names_the_users_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def width():\n    return undefined_name * 2\n")
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "from helpers import width\n"
        "class Net(nn.Module):\n"
        "    input_shape = (3, 8, 8)\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, typo_name)\n"
        "class Deep(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, width())\n"
    )
    runner = CliRunner()
    result = runner.invoke(main, ["summary", f"{tmp_path}/net.py:Net"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: building {tmp_path}/net.py:Net failed: NameError: name 'typo_name' is not "
        f"defined ({tmp_path}/net.py, line 7: `self.fc = nn.Linear(4, typo_name)`)")
    # the innermost line of the user's code, in whichever of their files it is
    deep = runner.invoke(main, ["summary", f"{tmp_path}/net.py:Deep", "--input", "4"])
    assert deep.stderr.strip().endswith(
        f"NameError: name 'undefined_name' is not defined ({tmp_path / 'helpers.py'}, line 2: "
        "`return undefined_name * 2`)")
