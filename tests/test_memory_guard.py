"""Absurd sizes: check, bench and stats refuse a step the device has no room for, before it runs,
in one line that names the prediction and a batch or input that fits.

The free memory is monkeypatched (``archscope.memory.guard.available_memory``), so the tests
decide what "fits" means; the predicted peaks come from archscope memory, whose figures are
checked against PyTorch's MemTracker elsewhere (tests/test_memory_model.py, test_bench.py,
test_check.py).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result

from archscope.cli import main
from archscope.memory import guard, training_memory
from archscope.source import resolve

LECTURE_BYTES = 93_322 * 4  # the lecture CNN's fp32 parameters, already on the CPU


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _free(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(guard, "available_memory", lambda device: (free, "this machine"))


def _check_peak(batch: int, shape: tuple[int, ...] | None = None, source: str =
                "lecture_mnist_cnn") -> int:
    subject = resolve(source, input_shape=shape)
    return training_memory(subject.model, subject.input_shape, batch=batch, device="cpu",
                           optimizer="none", step="check").peak


def _one_line_error(result: Result) -> str:
    """The one error line (besides the commands' progress lines on stderr), no traceback."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith(("checking ", "stats: "))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_check_refuses_a_batch_and_names_the_largest_that_fits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # room for batch 16 exactly: its predicted peak less the weights already loaded
    _free(monkeypatch, _check_peak(16) - LECTURE_BYTES)
    assert _check_peak(17) > _check_peak(16)
    line = _one_line_error(_run("check", "lecture_mnist_cnn", "--device", "cpu", "--batch",
                                "64"))
    need = _check_peak(64) / 2**20
    free = (_check_peak(16) - LECTURE_BYTES) / 2**20
    assert line == (f"Error: lecture_mnist_cnn at 1×28×28 needs {need:.2f} MiB for a training "
                    f"step at batch 64 (predicted); this machine has {free:.2f} MiB free "
                    "besides the model's 364.54 KiB: use --batch 16 or smaller")


_POOLED = """
from torch import nn


class Pooled(nn.Module):
    \"\"\"Any input size: a conv, then a global average pool before the classifier.\"\"\"

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.c(x)).flatten(1))
"""


def test_check_at_batch_one_halves_the_input_until_it_fits(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pooled.py"
    path.write_text(textwrap.dedent(_POOLED), encoding="utf-8")
    source = f"{path}:Pooled"
    weights = (3 * 3 * 3 * 8 + 8 + 8 * 2 + 2) * 4
    # room for 3×64×64 (256 → 128 → 64), not for 3×128×128
    _free(monkeypatch, _check_peak(1, (3, 64, 64), source) - weights)
    assert _check_peak(1, (3, 128, 128), source) > _check_peak(1, (3, 64, 64), source)
    line = _one_line_error(_run("check", source, "--device", "cpu", "--input", "3x256x256"))
    assert line.endswith(": use --batch 1 --input 3x64x64 or smaller")
    assert "needs " in line and "at batch 1 (predicted)" in line


def test_nothing_fits_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # the lecture CNN's dense layer fixes its input size: no smaller input to suggest
    _free(monkeypatch, 0)
    line = _one_line_error(_run("check", "lecture_mnist_cnn", "--device", "cpu"))
    assert line.endswith("not even batch 1 fits at any input size the model takes; use a "
                         "device with more memory")


def test_bench_refuses_a_given_batch_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from archscope.bench import run as bench_run

    subject = resolve("lecture_mnist_cnn")

    def bench_peak(batch: int) -> int:
        return training_memory(subject.model, subject.input_shape, batch=batch,
                               device="cpu").peak

    ran: list[Any] = []
    monkeypatch.setattr(bench_run, "bench_model", lambda *a, **k: ran.append(a))
    _free(monkeypatch, bench_peak(8) - LECTURE_BYTES)
    line = _one_line_error(_run("bench", "lecture_mnist_cnn", "--device", "cpu",
                                "--batch-size", "32", "--steps", "1", "--warmup", "1"))
    assert line.endswith(": use --batch-size 8 or smaller")
    assert f"needs {bench_peak(32) / 2**20:.2f} MiB for a training step at batch 32" in line
    assert ran == []  # nothing trained


def test_stats_refuses_too_big_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 1000)
    line = _one_line_error(_run("stats", "lecture_mnist_cnn", "--device", "cpu", "--batch",
                                "256"))
    assert "lecture_mnist_cnn at 1×28×28 needs " in line
    assert "for a training step at batch 256 (predicted)" in line


def test_a_step_that_fits_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, _check_peak(2) - LECTURE_BYTES)  # exactly enough
    result = _run("check", "lecture_mnist_cnn", "--device", "cpu", "--batch", "2",
                  "--repeats", "1")
    assert result.exit_code == 0, result.output


def test_cpu_available_is_at_most_the_installed_ram() -> None:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < guard.cpu_available() <= total


def test_a_cgroup_limit_lowers_what_is_available(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    limit, usage = tmp_path / "memory.max", tmp_path / "memory.current"
    limit.write_text("1073741824\n")  # a container limited to 1 GiB, 300 MiB of it used
    usage.write_text(f"{300 * 2**20}\n")
    monkeypatch.setattr(guard, "CGROUP_FILES", ((str(limit), str(usage)),))
    assert guard.cpu_available() == 2**30 - 300 * 2**20
    limit.write_text("max\n")  # no limit: the kernel's MemAvailable
    assert guard.cpu_available() > 0


def test_resident_bytes_counts_real_storages_once() -> None:
    from torch import nn

    model = nn.Linear(10, 10)
    tied = nn.Sequential(model, nn.Linear(10, 10))
    tied[1].weight = model.weight  # a shared weight counts once
    assert guard.resident_bytes(tied) == (100 + 10 + 10) * 4
    assert guard.resident_bytes(nn.Linear(10, 10, device="meta")) == 0
    assert guard.resident_bytes(nn.Linear(4, 4).to(torch.float16)) == (16 + 4) * 2


@pytest.mark.gpu
def test_check_on_cuda_refuses_what_the_gpu_cannot_hold() -> None:
    # resnet18's activations at batch 100,000 are terabytes: refused before anything runs, with
    # torch.cuda.mem_get_info's free memory and a batch that fits
    line = _one_line_error(_run("check", "resnet18", "--device", "cuda", "--batch", "100000"))
    assert "needs " in line and "for a training step at batch 100,000 (predicted)" in line
    assert "use --batch " in line and line.endswith(" or smaller")
