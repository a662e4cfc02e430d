"""The text renderers: the table fits its width and never cuts a number or a formula.

The oracle is the Report itself: every row's shape, parameter count, formula, output-size
arithmetic and MACs are read back out of the rendered table and compared with ``report.layers``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fixtures.tricky import TiedLM, Twice
from torch import nn

from archscope import inspect
from archscope.cli import main
from archscope.render import PIPED_WIDTH, output_width, render
from archscope.render._columns import formula_cell, params_cell, shape_cell
from archscope.report import LayerRecord, Report
from archscope.source import load_report

CATSDOGS = ("150x150x3 conv32 k3 → maxpool2 → conv64 k3 → maxpool2 → conv128 k3 → maxpool2 → "
            "conv128 k3 → maxpool2 → flatten → dense512 → dense1")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
UNITS = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
# The MACs cell at the end of a row's first line: "118.01 M", "640" or "—".
MACS_CELL = re.compile(r"\s(\d+\.\d\d [kMGT]|\d+|—)$")

CASES = [("resnet50", True), ("alexnet", True), ("lecture_catsdogs_cnn", True), ("vgg16", False)]


@cache
def _report(model: str) -> Report:
    return load_report(model)


@dataclass
class Row:
    """One table row read back: each cell as the pieces it was folded into, one per line."""

    layer: str
    type: list[str]
    shape: str
    params: str
    formula: list[str]
    explain: list[str]
    macs: str


def _parse_table(text: str, explain: bool) -> list[Row]:
    """Read the rows back out of a rendered table, using only the header's positions.

    Left-justified columns start where their header starts, right-justified ones (Params,
    MACs) end where theirs ends; a row starts on a line with a layer name.
    """
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("───"))
    end = lines.index("", rule)
    header = lines[rule - 1]
    assert header.startswith("Layer"), header
    above = lines[rule - 2] if lines[rule - 2].startswith(" ") else ""  # two-line headers
    words = [(m.start(), m.group()) for line in (above, header) for m in re.finditer(r"\S+", line)]
    type_at = header.index("Type")
    shape_at = min(pos for pos, word in words if word == "Output")
    params_end = header.index("Params") + len("Params")
    formula_at = next(pos for pos, word in words if word == "Param")
    explain_at = max(pos for pos, word in words if word == "Output") if explain else None
    rows: list[Row] = []
    for line in lines[rule + 1:end]:
        if line[:type_at].strip():
            macs = MACS_CELL.search(line)
            assert macs is not None, f"no whole MACs cell at the end of {line!r}"
            tail = line[:macs.start()]
            shape_params = line[shape_at:params_end].split()
            assert len(shape_params) == 2, line
            rows.append(Row(layer=line[:type_at].rstrip(), type=[], shape=shape_params[0],
                            params=shape_params[1], formula=[], explain=[], macs=macs.group(1)))
        else:
            tail = line
            assert not line[shape_at:params_end].strip(), f"a shape or count folded: {line!r}"
        row = rows[-1]
        row.type.append(line[type_at:shape_at].strip())
        row.formula.append(tail[formula_at:explain_at].strip())
        if explain_at is not None:
            row.explain.append(tail[explain_at:].strip())
    return rows


def _assert_whole(pieces: list[str], expected: str, what: str) -> None:
    """``pieces`` (one per line) are ``expected`` folded at its spaces or between characters
    that are not both digits: nothing dropped, nothing added, no number split."""
    pieces = [p for p in pieces if p]
    assert re.fullmatch(r"\s*".join(re.escape(p) for p in pieces), expected), (what, pieces)
    for before, after in itertools.pairwise(pieces):
        assert not (before[-1].isdigit() and after[0].isdigit()), (what, pieces)


def _macs_value(cell: str) -> float:
    number, _, unit = cell.partition(" ")
    return float(number) * UNITS.get(unit, 1)


def _assert_rows_match_report(text: str, report: Report, explain: bool) -> None:
    rows = _parse_table(text, explain)
    assert len(rows) == len(report.layers)
    for row, record in zip(rows, report.layers, strict=True):
        name = row.layer.lstrip(" ")
        assert len(row.layer) - len(name) == record.depth - 1, row.layer
        assert record.name == name or record.name.endswith("." + name), (record.name, name)
        assert "".join(row.type) == record.type
        assert record.output_shape is not None
        assert row.shape == "×".join(str(d) for d in record.output_shape[1:])
        if record.is_leaf or record.params:
            assert row.params == f"{record.params:,}", (record.name, row.params)
        else:
            assert row.params == "—"
        _assert_whole(row.formula, record.param_formula, record.name)
        if explain:
            _assert_whole(row.explain, record.output_formula, record.name)
        if record.macs:
            assert abs(_macs_value(row.macs) - record.macs) <= 0.005 * UNITS["k"] ** (
                (len(str(record.macs)) - 1) // 3), (record.name, row.macs, record.macs)
        else:
            assert row.macs == "—"
    assert sum(r.params for r in report.layers) == report.total_params
    assert re.search(rf"^Total params\s+{report.total_params:,}$", text, re.MULTILINE)


def _lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize(("model", "explain"), CASES)
def test_table_fits_the_width_and_cuts_nothing(model: str, explain: bool, width: int) -> None:
    report = _report(model)
    text = render(report, "table", explain=explain, width=width)
    assert max(len(line) for line in _lines(text)) <= width
    assert "…" not in text
    _assert_rows_match_report(text, report, explain)


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize(("model", "explain"), CASES)
def test_table_without_a_width_is_as_wide_as_its_content(model: str, explain: bool,
                                                         width: int) -> None:
    report = _report(model)
    natural = render(report, "table", explain=explain, width=None)
    fitted = render(report, "table", explain=explain, width=width)
    assert "…" not in natural
    _assert_rows_match_report(natural, report, explain)
    # Qualified names and one line per row: the table is only folded where it must be.
    table = natural.split("\n\n")[0].splitlines()
    assert len(table) == len(report.layers) + 3
    if max(len(line) for line in _lines(natural)) <= width:
        assert fitted == natural


@pytest.mark.parametrize(("model", "explain"), [
    ("resnet50", True), ("alexnet", True), ("resnet50", False), ("vgg11_bn", False),
])
def test_a_table_that_cannot_fit_is_wider_never_cut(model: str, explain: bool) -> None:
    # --explain at 60 columns cannot fit: layer, type, shape, params and MACs take 47–49
    # columns before any arithmetic; without it, "downsample" and "Sequential" side by side do
    # not either. The table is then wider than asked, every cell whole, no word split.
    report = _report(model)
    text = render(report, "table", explain=explain, width=60)
    assert max(len(line) for line in _lines(text)) > 60
    assert "…" not in text
    _assert_rows_match_report(text, report, explain=explain)
    words = set(re.findall(r"[A-Za-z_]+", text))
    for layer in report.layers:  # names are never split mid-word (types fold at a capital)
        assert set(re.findall(r"[A-Za-z_]+", layer.name.split(".")[-1])) <= words, layer.name
    # ... and it still gave way as far as it could: narrower than with no width at all.
    natural = render(report, "table", explain=explain, width=None)
    assert max(map(len, _lines(text))) < max(map(len, _lines(natural)))


def test_folds_keep_arithmetic_readable() -> None:
    text = render(_report("alexnet"), "table", explain=True, width=80)
    lines = _lines(text)
    # the output-size arithmetic folds at its " = ", or before "+1", not inside a bracket
    first = next(i for i, line in enumerate(lines) if "(227−11)/4" in line)
    assert "+1 = 55" in lines[first] or "= 55" in lines[first + 1]
    assert not re.search(r"\(\d+$", "\n".join(line.rstrip() for line in lines), re.MULTILINE)
    # layer names are shown under their parent, types fold at a capital
    assert any(line.startswith(" 12 ") for line in lines)
    assert "LocalResponseNorm" not in text
    assert "ResponseNorm" in text or "LocalResponse" in text


def test_depth_rows_still_add_up_at_a_narrow_width() -> None:
    report = _report("resnet50")
    text = render(report, "table", explain=True, width=80, max_depth=1)
    assert max(len(line) for line in text.split("\n\n")[0].splitlines()) <= 80
    rows = _parse_table(text, explain=True)
    shown = [r for r in report.layers if r.depth == 1]
    assert [row.layer for row in rows] == [r.name for r in shown]
    # a folded container shows its subtree's parameters: the rows still add up to the total
    assert sum(int(row.params.replace(",", "")) for row in rows) == report.total_params
    # ResNet-50's layer4: a block with downsample, then two without (BN: 2·C each)
    first = 1024 * 512 + 2 * 512 + 9 * 512 * 512 + 2 * 512 + 512 * 2048 + 2 * 2048 + (
        1024 * 2048 + 2 * 2048)
    other = 2048 * 512 + 2 * 512 + 9 * 512 * 512 + 2 * 512 + 512 * 2048 + 2 * 2048
    assert rows[[r.name for r in shown].index("layer4")].params == f"{first + 2 * other:,}"


def test_title_wraps_at_its_parts() -> None:
    text = render(_report("lecture_catsdogs_cnn"), "table", width=80)
    assert text.splitlines()[:2] == [
        "lecture_catsdogs_cnn (LectureCNN) · input 3×150×150 · batch 1",
        "shapes without the batch dimension",
    ]
    assert max(len(line) for line in _lines(text)) <= 80


def test_totals_fold_their_remark_at_a_narrow_width() -> None:
    text = render(_report("resnet50"), "table", width=60)
    assert max(len(line) for line in text.split("\n\n")[1].splitlines()) <= 60
    assert "(batch 1, saved for backward)" in text


# --- the commands: one width rule for summary and calc --------------------------------------

def test_output_width_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert output_width(None, tty=True) == 80
    assert output_width(None, tty=False) == PIPED_WIDTH == 100
    assert output_width(70, tty=True) == output_width(70, tty=False) == 70


@pytest.mark.parametrize("args", [["summary", "resnet50", "--explain"],
                                  ["summary", "lecture_catsdogs_cnn", "--explain"],
                                  ["calc", CATSDOGS]])
def test_piped_output_is_100_wide_and_width_overrides(args: list[str]) -> None:
    runner = CliRunner()
    piped = runner.invoke(main, args)
    assert piped.exit_code == 0, piped.output
    assert max(len(line) for line in _lines(piped.stdout)) <= 100
    assert "…" not in piped.stdout
    narrow = runner.invoke(main, [*args, "--width", "80"])
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in _lines(narrow.stdout)) <= 80
    assert "…" not in narrow.stdout


def test_calc_piped_table_is_whole() -> None:
    result = CliRunner().invoke(main, ["calc", CATSDOGS])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("MaxPool2d") == 4
    assert "PyTorch runs the\nmodel as N×C×H×W" in result.stdout  # the note wraps at 100


def _run_on_a_terminal(args: list[str], columns: int) -> str:
    """Run ``archscope ARGS`` with stdout on a pseudo-terminal COLUMNS wide; ANSI removed."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "archscope", *args], stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r", "")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize("args", [["summary", "alexnet", "--explain"], ["calc", CATSDOGS]])
def test_on_a_terminal_the_table_fits_the_terminal(args: list[str]) -> None:
    text = _run_on_a_terminal(args, 80)
    lines = [line.rstrip() for line in text.splitlines()]
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    assert "Total params" in text


# --- shared weights and the markdown header -----------------------------------------------

def _row(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def test_tied_weights_are_marked_and_counts_add_up() -> None:
    report = inspect(TiedLM(), (3,), dtype=torch.long)
    out = report.find("out")
    assert out.params == 10 and out.shared_with == "emb"  # its bias; the weight is emb's
    table = render(report, "table")
    assert re.search(r"^out\s+Linear\s+3×10\s+10\s+10 \+ shared with emb\s+120$",
                     _row(table, "out "))
    markdown = render(report, "markdown")
    assert "| `out` | Linear | 3×10 | 10 | 10 + shared with emb | 120 |" in markdown
    # 10·4 (emb) + 10 (out's bias) = 50 = the total: the shared weight counts once
    assert report.find("emb").params + out.params == report.total_params == 50
    assert re.search(r"Total params\s+50$", table, re.MULTILINE)


def test_a_repeated_call_is_marked_as_one() -> None:
    # A module called twice: its second row is the same weights, not a tie to another layer.
    report = inspect(Twice(), (4, 8, 8))
    second = report.layers[1]
    assert (second.name, second.call, second.shared_with, second.params) == ("conv", 1, "conv", 0)
    table = render(report, "table")
    row = [line for line in table.splitlines() if line.startswith("conv ")][1]
    assert re.search(r"\(call 2\)\s+same weights as call 1\s", row)
    assert "shared with conv" not in table
    assert "| (call 2) | same weights as call 1 |" in render(report, "markdown")
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [(r["params"], r["param_formula"]) for r in rows] == [
        ("148", "(3·3·4+1)·4"), ("0", "same weights as call 1")]
    assert report.total_params == (3 * 3 * 4 + 1) * 4


def test_csv_marks_shared_weights_as_the_table_does() -> None:
    report = inspect(TiedLM(), (3,), dtype=torch.long)
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert rows["out"]["param_formula"] == "10 + shared with emb"  # as in the table's cell
    assert (rows["out"]["shared_with"], rows["emb"]["shared_with"]) == ("emb", "")
    assert sum(int(r["params"]) for r in rows.values()) == report.total_params == 50
    table_formulas = {r.name: formula_cell(r, report, None) for r in report.layers}
    assert {name: r["param_formula"] for name, r in rows.items()} == table_formulas


# --- --depth: every format shows the same rows, and they add up --------------------------

@cache
def _meta_total(name: str) -> int:
    """The oracle: the zoo model's own parameter count, built on meta (no weights)."""
    from archscope.registry import get_entry

    with torch.device("meta"):
        model = get_entry(name).build()
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("model", ["resnet50", "vgg16"])
def test_every_format_adds_up_at_every_depth(model: str, depth: int) -> None:
    report = _report(model)
    total = _meta_total(model)
    shown = [r.name for r in report.layers if r.depth <= depth]
    csv_rows = list(csv.DictReader(io.StringIO(render(report, "csv", max_depth=depth))))
    assert [r["name"] for r in csv_rows] == shown
    assert sum(int(r["params"]) for r in csv_rows) == total
    assert sum(int(r["trainable"]) for r in csv_rows) == total
    layers = json.loads(render(report, "json", max_depth=depth))["layers"]
    assert [r["name"] for r in layers] == shown
    assert sum(r["params"] for r in layers) == total
    assert all(r["collapsed"] == (not r["is_leaf"] and r["depth"] == depth) for r in layers)
    # The table and markdown show the same counts.
    markdown = render(report, "markdown", max_depth=depth).split("\n\n")[1].splitlines()[2:]
    assert len(markdown) == len(csv_rows)
    for line, r in zip(markdown, csv_rows, strict=True):
        name, _, _, params, *_ = line.strip("| ").split(" | ")
        assert name.replace("&nbsp;", "") == f"`{r['name']}`"
        assert params == params_cell(report.layers[int(r["index"])], report, depth)
        assert (params, r["params"]) == ("—", "0") or int(params.replace(",", "")) == int(
            r["params"])


def test_a_collapsed_container_carries_its_childrens_parameters() -> None:
    report = _report("resnet50")
    full = {r["name"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    children = sum(int(r["params"]) for name, r in full.items() if name.startswith("layer1."))
    # layer1: 3 bottlenecks 64→256 on 256 channels, the first with a 1×1 downsample from 64.
    block = 256 * 64 + 2 * 64 + 9 * 64 * 64 + 2 * 64 + 64 * 256 + 2 * 256
    assert children == block + (64 * 256 + 2 * 256) - (256 - 64) * 64 + 2 * block == 215_808
    at_1 = {r["name"]: r for r in csv.DictReader(io.StringIO(render(report, "csv", max_depth=1)))}
    assert int(at_1["layer1"]["params"]) == children
    assert at_1["layer1"]["param_formula"] == ""
    layer1 = next(r for r in json.loads(render(report, "json", max_depth=1))["layers"]
                  if r["name"] == "layer1")
    assert (layer1["params"], layer1["trainable"], layer1["collapsed"]) == (children, children, True)
    assert layer1["macs"] == report.find("layer1").macs  # a container's MACs cover its calls
    # Without --depth the JSON keeps every row, its own parameters only.
    rows = json.loads(render(report, "json"))["layers"]
    assert len(rows) == len(report.layers) and not any(r["collapsed"] for r in rows)
    assert next(r for r in rows if r["name"] == "layer1")["params"] == 0


class Unused(nn.Module):
    """A module never called, inside a container: its row has no parent."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Linear(4, 4))
        self.f.add_module("unused", nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f[0](x)


def test_rows_of_uncalled_modules_count_at_any_depth() -> None:
    report = inspect(Unused(), (4,))
    assert report.total_params == 20 + 10
    for fmt in ("csv", "json"):
        text = render(report, fmt, max_depth=1)
        params = ([int(r["params"]) for r in csv.DictReader(io.StringIO(text))] if fmt == "csv"
                  else [r["params"] for r in json.loads(text)["layers"]])
        assert sum(params) == 30, fmt
    # f itself is never called (only f[0] is): f.unused sits at depth 1 beside f.0
    assert re.search(r"^f\.unused\s+Linear\s+—\s+10\s", render(report, "table", max_depth=1),
                     re.MULTILINE)


# --- the batch dimension -------------------------------------------------------------------

class PerSample(nn.Module):
    """One value per sample: a (N,) output, batch included."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.flatten(1))[:, 0])


def test_only_a_batch_dimension_is_dropped() -> None:
    # PyTorch: (1, 1) → [:, 0] → (1,) is one value per sample; flatten of everything is not.
    report = inspect(PerSample(), (2, 4))
    cells = {r.name: shape_cell(r) for r in report.layers}
    assert cells == {"flatten": "8", "fc": "1", "getitem": "scalar", "sigmoid": "scalar"}
    flat = LayerRecord(index=0, name="view", type="view", kind="function", depth=1, parent=None,
                       is_leaf=True, input_shapes=((1, 64, 3, 3),), output_shapes=((576,),),
                       params=0, trainable_params=0, param_formula="", output_formula="", macs=0,
                       input_batch_axes=(0,), output_batch_axes=(None,))
    assert shape_cell(flat) == "576"  # x.view(-1): the batch is folded in


def test_onnx_shape_arithmetic_keeps_its_dimension(tmp_path: Path) -> None:
    # lecture_mnist_cnn exported with a symbolic batch computes its reshape target at run time:
    # Shape → [1], Squeeze → [], Reshape → [1], Concat → [2]. None of them carries the batch.
    pytest.importorskip("onnx")
    path = tmp_path / "mnistd.onnx"
    result = CliRunner().invoke(main, ["export", "lecture_mnist_cnn", "-o", str(path),
                                       "--dynamic-batch"])
    assert result.exit_code == 0, result.output
    report = load_report(str(path))
    by_type: dict[str, list[str]] = {}
    for r in report.layers:
        by_type.setdefault(r.type, []).append(shape_cell(r))
    assert by_type["Shape"] == ["1"] and by_type["Squeeze"] == ["scalar"]
    assert by_type["Concat"] == ["2"] and by_type["Reshape"] == ["1", "576"]
    assert by_type["Conv"][0] == "32×26×26" and by_type["Gemm"] == ["64", "10"]
    text = render(report, "table", explain=True)
    assert re.search(r"^Concat_4\s+Concat\s+2\s", text, re.MULTILINE)  # node_Concat_4


def test_markdown_header_matches_the_table() -> None:
    report = _report("lecture_catsdogs_cnn")
    markdown = render(report, "markdown")
    assert markdown.splitlines()[0] == ("**lecture_catsdogs_cnn** (LectureCNN) · input "
                                        "3×150×150 · batch 1")
    assert render(report, "table").startswith("lecture_catsdogs_cnn (LectureCNN) · input "
                                              "3×150×150 · batch 1 · ")
