"""``archscope calc`` and ``spec:`` model sources on the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from test_spec import LECTURE_KERAS_MNIST

from archscope.cli import main

CATSDOGS = ("150x150x3 conv32 k3 → maxpool2 → conv64 k3 → maxpool2 → conv128 k3 → maxpool2 → "
            "conv128 k3 → maxpool2 → flatten → dense512 → dense1")


def _run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def test_calc_catsdogs_golden(golden) -> None:
    result = _run("calc", CATSDOGS, "--width", "100")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    golden.check("calc_catsdogs.txt", result.stdout)
    # invariants behind the golden file: the lecture's numbers are in it
    for text in ("3,453,121", "3,211,776", "(6272+1)·512", "(3·3·32+1)·64",
                 "H×W×C (channels last)"):
        assert text in result.stdout
    for shape in ("148, 148, 32", "74, 74, 32", "7, 7, 128"):  # H×W×C, the spec's order
        assert shape in result.stdout or shape.replace(", ", "×") in result.stdout


def test_calc_json_keeps_the_users_layout() -> None:
    result = _run("calc", "28x28x1 conv32 k3 relu, maxpool2, flatten, dense10 softmax",
                  "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total_params"] == 320 + (13 * 13 * 32 + 1) * 10
    assert data["layout"] == "hwc"  # says which order the shapes below are in
    assert data["input_shape"] == [28, 28, 1]
    conv = next(layer for layer in data["layers"] if layer["type"] == "Conv2d")
    assert conv["output_shape"] == [1, 26, 26, 32]
    assert conv["param_formula"] == "(3·3·1+1)·32"
    assert conv["output_formula"].replace(" ", "").endswith("/1+1=26")


@pytest.mark.parametrize("fmt", ["markdown", "csv"])
def test_calc_other_formats(fmt: str) -> None:
    result = _run("calc", "chw:3x32x32 conv8 k3 s2 relu → gap → dense10", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "(3·3·3+1)·8" in result.stdout


def test_calc_reads_a_file_with_comments(tmp_path) -> None:
    path = tmp_path / "catsdogs.spec"
    path.write_text(
        "# cats vs dogs (lecture 000)\n"
        "150x150x3\n"
        "conv32 k3 relu   # (150 − 3)/1 + 1 = 148\n"
        "maxpool2\n"
        "conv64 k3 relu\n"
        "maxpool2\n"
        "repeat 2 [\n"
        "  conv128 k3 relu\n"
        "  maxpool2\n"
        "]\n"
        "flatten\n"
        "dropout 0.5\n"
        "dense512 relu\n"
        "dense1 sigmoid\n", encoding="utf-8")
    result = _run("calc", "-f", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == str(path)
    # 896 + 18,496 + 73,856 + 147,584 + (7·7·128+1)·512 = 3,211,776 + (512+1)·1 = 513
    assert data["total_params"] == 896 + 18_496 + 73_856 + 147_584 + 3_211_776 + 513 == 3_453_121
    assert [layer["name"] for layer in data["layers"]][:4] == ["conv1", "relu1", "pool1", "conv2"]
    stdin = _run("calc", "-f", "-", "--format", "json", stdin=path.read_text(encoding="utf-8"))
    assert stdin.exit_code == 0, stdin.output
    assert json.loads(stdin.stdout)["total_params"] == data["total_params"]


def test_calc_chw_flag_and_input_override() -> None:
    chw = _run("calc", "3x32x32 conv8 k3", "--chw", "--format", "json")
    assert json.loads(chw.stdout)["layers"][0]["output_shape"] == [1, 8, 30, 30]
    override = _run("calc", "32x32x3 conv8 k3", "--input", "3x64x64", "--format", "json")
    assert json.loads(override.stdout)["layers"][0]["output_shape"] == [1, 62, 62, 8]
    batch = _run("calc", "32x32x3 conv8 k3", "--batch", "4", "--format", "json")
    assert json.loads(batch.stdout)["layers"][0]["output_shape"] == [4, 30, 30, 8]


def test_calc_unquoted_words_are_joined() -> None:
    result = _run("calc", "28x28x1", "conv8", "k3", "flatten", "dense10", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total_params"] == 80 + (26 * 26 * 8 + 1) * 10


def test_calc_syntax_error_exit_2_with_caret() -> None:
    result = _run("calc", "150x150x3 conv x")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "Error: line 1, col 16: expected a number after 'conv' (its number of filters, like "
        "conv32 k3), got 'x'\n"
        "  150x150x3 conv x\n"
        "                 ^\n")
    assert "Traceback" not in result.output


_NEGATIVE_INPUT_ERROR = (
    "Error: line 1, col 1: input size -28 is out of range (1 to 1,000,000); write the input "
    "shape without the minus, like 28x28x1\n"
    "  -28x28x1 conv32 k3\n"
    "  ^\n")


@pytest.mark.parametrize("args", [
    ("calc", "-28x28x1 conv32 k3"),  # quoted: one argument
    ("calc", "-28x28x1", "conv32", "k3"),  # unquoted: click saw '-2' as an option
    ("calc", "--format", "json", "-28x28x1 conv32", "k3"),
    ("calc", "--", "-28x28x1 conv32 k3"),
])
def test_calc_spec_starting_with_minus_reaches_the_parser(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == _NEGATIVE_INPUT_ERROR  # was "No such option '-2'"


@pytest.mark.parametrize(("args", "error"), [
    (("calc", "28x28x1 conv8", "-x"), "Error: No such option '-x'."),
    (("calc", "28x28x1 conv8", "--bogus"), "Error: No such option '--bogus'."),
    (("calc", "--input", "-3x28x28", "28x28x1 conv8"), "Error: Invalid value for '--input'"),
])
def test_calc_option_errors_stay_option_errors(args: tuple[str, ...], error: str) -> None:
    # only an argument with no letter after its "-" is spec text; options keep click's errors
    result = _run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(error), result.stderr
    assert result.stderr.count("\n") == 1


def test_calc_accepts_explain() -> None:
    # the arithmetic column is always there; --explain (as in summary) is accepted, not refused
    plain = _run("calc", "28x28x1 conv8 k3 → maxpool2", "--width", "100")
    explained = _run("calc", "28x28x1 conv8 k3 → maxpool2", "--explain", "--width", "100")
    assert explained.exit_code == 0, explained.output
    assert explained.stderr == ""
    assert explained.stdout == plain.stdout
    assert "(28−3)/1+1 = 26" in explained.stdout  # the output-size arithmetic, by hand
    assert "--explain" in _run("calc", "--help").stdout

def test_calc_shape_error_exit_1_names_layer() -> None:
    result = _run("calc", "28x28x1 conv32 k3 maxpool2 conv64 k3 maxpool2 conv64 k3 maxpool2 "
                          "conv64 k3")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: layer 7 (conv64 k3): its 3×3 window does not fit its "
                                    "1×1×64 (H×W×C) input")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_calc_implicit_flatten_is_noted() -> None:
    result = _run("calc", "28x28x1 conv8 k3 → dense10")
    assert result.exit_code == 0, result.output
    assert "flattened it to 5408" in result.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (("calc",), "give a spec"),
    (("calc", "28x28x1 dense10", "-f", "-"), "not both"),
    (("calc", "   "), "the spec is empty"),
    (("calc", "-f", "does-not-exist.spec"), "does-not-exist.spec"),
])
def test_calc_usage_errors(args: tuple[str, ...], fragment: str) -> None:
    result = _run(*args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def test_spec_is_a_model_source_for_summary(tmp_path) -> None:
    inline = _run("summary", "spec:28x28x1 conv32 k3 → maxpool2 → flatten → dense10",
                  "--format", "json")
    assert inline.exit_code == 0, inline.output
    data = json.loads(inline.stdout)
    assert data["model"] == "28x28x1 conv32 k3 → maxpool2 → flatten → dense10"
    assert data["layout"] == "hwc"
    assert data["input_shape"] == [28, 28, 1]  # shown in the order the spec is written (H×W×C)
    assert data["layers"][0]["output_shape"] == [1, 26, 26, 32]  # N×H×W×C
    assert data["total_params"] == 320 + (13 * 13 * 32 + 1) * 10
    path = tmp_path / "net.spec"
    path.write_text("28x28x1\nconv32 k3\nmaxpool2\nflatten\ndense10\n", encoding="utf-8")
    from_file = _run("summary", f"spec:{path}", "--format", "json")
    assert from_file.exit_code == 0, from_file.output
    assert json.loads(from_file.stdout)["total_params"] == data["total_params"]
    assert json.loads(from_file.stdout)["model"] == str(path)


def test_layout_key_in_json_of_every_source() -> None:
    table = _run("summary", "spec:28x28x1 conv32 k3 → maxpool2")
    assert table.exit_code == 0, table.output
    assert "26×26×32" in table.stdout and "H×W×C (channels last)" in table.stdout
    chw_spec = _run("summary", "spec:chw:1x28x28 conv32 k3 → maxpool2", "--format", "json")
    data = json.loads(chw_spec.stdout)
    assert (data["layout"], data["input_shape"]) == ("chw", [1, 28, 28])
    assert data["layers"][0]["output_shape"] == [1, 32, 26, 26]
    chw_flag = _run("calc", "3x32x32 conv8 k3", "--chw", "--format", "json")
    assert json.loads(chw_flag.stdout)["layout"] == "chw"
    zoo = _run("summary", "lecture_mnist_cnn", "--format", "json")
    assert zoo.exit_code == 0, zoo.output
    data = json.loads(zoo.stdout)
    assert (data["layout"], data["input_shape"]) == ("chw", [1, 28, 28])
    assert data["layers"][1]["output_shape"] == [1, 32, 26, 26]  # features.conv1, N×C×H×W


def test_pasted_keras_file_as_calc_and_spec_source(tmp_path) -> None:
    path = tmp_path / "mnist_cnn.py"
    path.write_text(LECTURE_KERAS_MNIST, encoding="utf-8")  # lecture 003's code, as pasted
    for args in (("calc", "-f", str(path)), ("summary", f"spec:{path}")):
        result = _run(*args, "--format", "json")
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        # 320 + 18,496 + 36,928 + 36,928 + 650, as lecture 003's model.summary()
        assert json.loads(result.stdout)["total_params"] == 93_322
    unknown = _run("calc", "model = models.Sequential()\nmodel.add(layers.Conv2D(32, (3, 3)))\n"
                   "model.frobnicate()")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("Error: line 3, col 1: model.frobnicate(…) adds no layer")
    assert unknown.stderr.endswith("  model.frobnicate()\n  ^\n")


def test_calc_keras_input_first_and_negative_values() -> None:
    # the reported repro: refused before with "the input shape must come first"
    text = ("model = keras.Sequential([keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3), "
            "layers.Flatten(), layers.Dense(10)])")
    result = _run("calc", text, "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["input_shape"] == [28, 28, 1]
    # (3·3·1+1)·32 = 320; 26·26·32 = 21,632 features; (21,632+1)·10 = 216,330
    assert data["total_params"] == 320 + 216_330 == 216_650
    bn = _run("calc", "28x28x1 Conv2D(8, 3)\n"
              "model.add(BatchNormalization(axis=-1, momentum=0.99, epsilon=0.001))\n"
              "nn.Flatten(1, -1)\nnn.Linear(5408, 10)\nnn.Softmax(dim=-1)", "--format", "json")
    assert bn.exit_code == 0, bn.output
    # (3·3·1+1)·8 = 80, BN 2·8 = 16, 26·26·8 = 5,408 → (5,408+1)·10 = 54,090
    assert json.loads(bn.stdout)["total_params"] == 80 + 16 + 54_090 == 54_186


def test_calc_keras_batchnorm_note() -> None:
    result = _run("calc", "32x32x3 Conv2D(16, 3) BatchNormalization() Conv2D(32, 3) "
                  "BatchNormalization() GlobalAveragePooling2D() Dense(10)", "--width", "100")
    assert result.exit_code == 0, result.output
    # 448 + 32 + 4,640 + 64 + 330 = 5,514; Keras adds 2·(16 + 32) = 96 moving statistics
    assert "5,514" in result.stdout
    assert ("Note: Keras' model.summary() would show 5,610 parameters (5,514 + 2·48), 96 of them "
            "non-trainable") in " ".join(result.stdout.split())  # the note wraps


def test_calc_keras_data_format() -> None:
    text = 'Conv2D(32, (3, 3), input_shape=(3, 64, 64), data_format="channels_first"), ' \
           "Flatten(), Dense(10)"
    result = _run("calc", text, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["layout"], data["input_shape"]) == ("chw", [3, 64, 64])
    conv = data["layers"][0]
    assert (conv["param_formula"], conv["output_shape"]) == ("(3·3·3+1)·32", [1, 32, 62, 62])
    # 896 + (32·62·62 + 1)·10 = 896 + (123,008 + 1)·10 = 896 + 1,230,090
    assert data["total_params"] == 896 + 1_230_090 == 1_230_986
    wrong = _run("calc", "3x64x64 " + text.replace("input_shape=(3, 64, 64), ", ""))
    assert wrong.exit_code == 2
    assert wrong.stdout == ""
    lines = wrong.stderr.splitlines()
    assert lines[0] == ("Error: line 1, col 40: data_format=\"channels_first\" contradicts the "
                        "input 3x64x64, written H×W×C; write it as chw:3x64x64 to read it "
                        "channels first")
    assert len(lines) == 3 and lines[2].endswith("^")
    assert "Traceback" not in wrong.output


def test_calc_ceil_mode_arithmetic_shows_the_dropped_window() -> None:
    result = _run("calc", "chw:1x3x3 maxpool2 p1 ceil", "--format", "json")
    assert result.exit_code == 0, result.output
    pool = json.loads(result.stdout)["layers"][0]
    # ⌈(3+2·1−2)/2⌉+1 = 3 windows, but the last would start in the padding: PyTorch gives 2
    assert pool["output_shape"] == [1, 1, 2, 2]
    assert pool["output_formula"] == "⌈(3+2·1−2)/2⌉+1−1 = 2"
    table = _run("calc", "chw:1x3x3 maxpool2 p1 ceil", "--width", "100")
    assert "⌈(3+2·1−2)/2⌉+1−1 = 2" in table.stdout
    assert "PyTorch drops it" in " ".join(table.stdout.split())  # the note wraps


def test_spec_source_errors() -> None:
    syntax = _run("summary", "spec:28x28x1 conv")
    assert syntax.exit_code == 2 and "expected a number after 'conv'" in syntax.stderr
    missing = _run("summary", "spec:nets/missing.spec")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert "Traceback" not in syntax.output + missing.output


def test_calc_is_listed_in_help() -> None:
    result = _run("--help")
    assert "calc" in result.stdout
    assert _run("calc", "--help").exit_code == 0
