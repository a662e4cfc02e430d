"""One way to print a count, a byte size and a time, in every renderer.

Oracles: the binary units worked out by hand (1 KiB = 1,024 B, 1 MiB = 1,024² B, 1 GiB = 1,024³ B)
and the strings each command's renderer prints for the same byte count.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from archscope.render.units import human_bytes, human_count, milliseconds, seconds


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"),
    (1024, "1.00 KiB"),
    (373_288, "364.54 KiB"),            # 373,288 / 1,024 = 364.539…
    (14_387_320, "13.72 MiB"),          # 14,387,320 / 1,048,576 = 13.720…
    (2**30, "1.00 GiB"),
    (1_953_711_616, "1.82 GiB"),        # 1,953,711,616 / 1,073,741,824 = 1.8195…
])
def test_bytes_in_binary_units_with_two_decimals(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_counts_and_times() -> None:
    assert human_count(2_794_240) == "2.79 M" and human_count(999) == "999"
    assert human_count(138_357_544) == "138.36 M" and human_count(1_500) == "1.50 k"
    assert milliseconds(13.7512) == "13.75" and seconds(2.23) == "2.2 s"


def test_bench_check_and_export_print_the_same_bytes_alike(tmp_path: Path) -> None:
    from archscope.check import CheckResult
    from archscope.export import ExportResult
    from archscope.render.bench import memory_cell
    from archscope.render.check import render_block
    from archscope.render.export import render_export

    n = 14_387_320  # 13.72 MiB
    bench = memory_cell(SimpleNamespace(estimated_memory_bytes=n, memory_error_pct=None))
    check = render_block(CheckResult(model="m", device="cpu", device_name="cpu",
                                     input_shape=(1, 28, 28), batch=1, weights=None,
                                     memory_estimate_bytes=n))
    export = render_export(ExportResult(
        path=tmp_path / "m.onnx", data_path=None, opset=18, input_name="input",
        output_names=("output",), input_shape=(1, 1, 28, 28), dynamic_batch=False, file_bytes=n,
        export_seconds=2.25, nodes=13, max_abs_diff=None, max_abs_output=None, fp32_error=None,
        tolerance=None, onnxruntime_version=None, atol=1e-4), verify=False)
    assert bench == "13.72 MiB"
    assert "  memory   n/a   estimate 13.72 MiB; the peak is measured on CUDA only" in check
    assert export.startswith(f"wrote {tmp_path / 'm.onnx'} (13.72 MiB, opset 18, 13 nodes) in 2.2 s\n")
