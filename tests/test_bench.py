"""``archscope bench``: timing arithmetic, FLOP/s and MFU, the memory estimate, the loss check, the
batch search, device errors, the peak table and the command line.

The CPU tests inject a clock so the timing arithmetic is asserted exactly (no timing asserts on
wall time); the ``gpu`` tests run the real thing on a CUDA device and skip without one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from archscope import bench as bench_lib
from archscope.bench import (
    BenchConfig,
    BenchResult,
    find_max_batch,
    halve_until_fits,
    make_plan,
    percentile,
    run_bench,
)
from archscope.bench import run as bench_run
from archscope.bench.trainer import Trainer
from archscope.cli import main
from archscope.devices import CPU_NO_PEAK, UNKNOWN_DEVICE, lookup, peak_tflops
from archscope.errors import DeviceError
from archscope.registry import get_entry
from archscope.render.bench import failure_reason, render_table
from archscope.source import resolve

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class FakeClock:
    """Returns the given instants in order (seconds); exact binary fractions keep sums exact."""

    def __init__(self, *instants: float) -> None:
        self.instants = list(instants)
        self.calls = 0

    def __call__(self) -> float:
        value = self.instants[self.calls]
        self.calls += 1
        return value


def _cpu_config(**kw: Any) -> BenchConfig:
    options: dict[str, Any] = {"device": "cpu", "batch_size": 8, "steps": 2, "warmup": 0}
    options.update(kw)
    return BenchConfig(**options)


def _real_training_flops(name: str, batch: int) -> int:
    """Oracle: FlopCounterMode around one real CPU forward + backward (not archscope's engine)."""
    torch.manual_seed(0)
    entry = get_entry(name)
    model = entry.build()
    x = torch.randn(batch, *entry.input_shape)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# Timing arithmetic with an injected clock
# --------------------------------------------------------------------------------------------


def test_two_steps_median_p90_images_per_s_exact() -> None:
    # Step 1: 0.0 → 0.25 s = 250 ms; step 2: 0.25 → 0.75 s = 500 ms.
    clock = FakeClock(0.0, 0.25, 0.25, 0.75)
    run = run_bench(["lecture_mnist_cnn"], _cpu_config(), clock=clock)
    (r,) = run.results
    assert clock.calls == 4  # start and stop of each timed step only: warm-up is not timed
    assert r.step_ms == (250.0, 500.0)
    assert r.median_ms == 375.0  # (250 + 500) / 2
    assert r.p90_ms == 475.0  # linear interpolation: 250 + 0.9·(500 − 250)
    assert r.images_per_s == 8 / 0.375  # batch ÷ median seconds
    assert r.span_ms == 750.0  # first start → last stop
    assert r.images_per_s_overall == 16 / 0.75
    assert r.batch == 8 and r.steps == 2 and r.warmup == 0


def test_three_steps_median_is_the_middle_value() -> None:
    # 125 ms, 500 ms, 250 ms → sorted 125, 250, 500: median 250; p90 = 250 + 0.8·250 = 450.
    clock = FakeClock(0.0, 0.125, 0.5, 1.0, 2.0, 2.25)
    (r,) = run_bench(["lecture_mnist_cnn"], _cpu_config(steps=3, warmup=1), clock=clock).results
    assert r.step_ms == (125.0, 500.0, 250.0)
    assert r.median_ms == 250.0
    assert r.p90_ms == 450.0
    assert len(r.losses) == 4  # warm-up losses are kept: the loss check spans the whole run


def test_percentile_matches_numpy_linear_method() -> None:
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.0]
    # NumPy's default (linear) 90th percentile of these, computed by hand: sorted
    # 1, 1.5, 2, 3, 4, 9; rank 0.9·5 = 4.5 → 4 + 0.5·(9 − 4) = 6.5.
    assert percentile(values, 90) == 6.5
    assert percentile(values, 50) == 2.5
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_achieved_flops_and_mfu_from_engine_flops() -> None:
    clock = FakeClock(0.0, 0.5, 0.5, 1.0)  # 500 ms, 500 ms
    config = _cpu_config(peak_tflops=0.004)
    (r,) = run_bench(["lecture_mnist_cnn"], config, clock=clock).results
    oracle = _real_training_flops("lecture_mnist_cnn", batch=8)
    assert r.training_flops == oracle
    assert r.achieved_tflops == pytest.approx(oracle / 0.5 / 1e12, rel=1e-12)
    assert r.peak_tflops == 0.004 and r.peak_source == "--peak-tflops"
    assert r.mfu == pytest.approx(oracle / 0.5 / 1e12 / 0.004, rel=1e-12)


def test_cpu_without_peak_says_mfu_is_not_computed_for_cpus() -> None:
    clock = FakeClock(0.0, 0.5, 0.5, 1.0)
    run = run_bench(["lecture_mnist_cnn"], _cpu_config(), clock=clock)
    (r,) = run.results
    assert r.peak_tflops is None and r.mfu is None
    assert r.peak_source == CPU_NO_PEAK == "not computed for CPUs"
    footer = render_table(run)
    assert "MFU: not computed for CPUs (--peak-tflops gives a peak to compare with)" in footer
    assert UNKNOWN_DEVICE not in footer  # the wording for a GPU missing from the table
    assert r.peak_memory_bytes is None and r.memory_error_pct is None  # no CUDA counter on CPU


# --------------------------------------------------------------------------------------------
# Learning: the loss falls on a repeated batch; a model that cannot learn fails
# --------------------------------------------------------------------------------------------


def test_loss_falls_over_20_steps_of_mnist_cnn() -> None:
    run = run_bench(["lecture_mnist_cnn"], _cpu_config(batch_size=16, steps=20))
    (r,) = run.results
    assert len(r.losses) == 20
    assert r.loss_fell and r.ok and run.ok
    # Ten random labels: the first loss is about ln 10 = 2.303; memorising pushes it below.
    assert r.first_loss == pytest.approx(2.303, abs=0.1)
    assert r.last_loss < r.first_loss - 0.02
    assert r.losses[19] < r.losses[14] < r.losses[9] < r.losses[4] < r.losses[0]


def test_multi_head_model_sums_head_losses_and_learns() -> None:
    (r,) = run_bench(["lecture_multitask"], _cpu_config(batch_size=2, steps=4, warmup=1)).results
    assert r.loss_fell


@pytest.mark.parametrize("options", [
    {"precision": "fp16", "channels_last": True},  # autocast + GradScaler + NHWC
    {"precision": "tf32", "optimizer": "adamw"},  # on the CPU tf32 runs as fp32, and says so
])
def test_precision_and_optimizer_paths_learn_on_cpu(options: dict[str, Any]) -> None:
    config = _cpu_config(batch_size=4, steps=2, warmup=1, **options)
    (r,) = run_bench(["lecture_mnist_cnn"], config).results
    assert r.loss_fell
    assert r.precision == options["precision"]
    assert r.channels_last is options.get("channels_last", False)
    assert r.optimizer == options.get("optimizer", "sgd")
    assert r.memory_estimate is not None and r.memory_estimate.precision == options["precision"]
    if options["precision"] == "tf32":
        assert any("runs as fp32" in n for n in r.notes)
        assert dict(r.memory_estimate.breakdown)["weight_copies"] == 0
    else:  # autocast's 16-bit weight copies, which the convolutions save for backward
        assert dict(r.memory_estimate.breakdown)["weight_copies"] > 0


_STUCK_MODEL = """
import torch
from torch import nn


class Stuck(nn.Module):
    \"\"\"A parameter that never changes the output: the loss cannot fall.\"\"\"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] + 0.0 * self.w
"""


def test_model_that_does_not_learn_fails_with_exit_1(tmp_path: Any) -> None:
    path = tmp_path / "stuck.py"
    path.write_text(textwrap.dedent(_STUCK_MODEL), encoding="utf-8")
    result = CliRunner().invoke(main, [
        "bench", f"{path}:Stuck", "--input", "1x4x4", "--device", "cpu", "--steps", "2",
        "--warmup", "1", "--batch-size", "4", "--format", "json",
    ])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["results"][0]["status"] == "failed"
    assert "FAILED: " in result.stderr and "loss did not fall" in result.stderr


# --------------------------------------------------------------------------------------------
# The memory estimate: archscope memory's peak of bench's own step, against PyTorch's tracker
# --------------------------------------------------------------------------------------------


def _memtracker_peak_of_bench_steps(name: str, batch: int, **options: Any) -> int:
    """``torch.distributed._tools.mem_tracker.MemTracker``'s peak over two of bench's own
    training steps (``Trainer.step``) on the CPU: an independent measurement of the step."""
    from torch.distributed._tools.mem_tracker import MemTracker

    subject = resolve(name, device="cpu")
    trainer = Trainer(subject.model, input_shape=subject.input_shape, batch=batch,
                      device=torch.device("cpu"), precision=options.get("precision", "fp32"),
                      channels_last=options.get("channels_last", False), compile=False,
                      optimizer=options.get("optimizer", "sgd"), lr=1e-3, seed=0)
    tracker = MemTracker()
    tracker.track_external(trainer.model, trainer.optimizer, trainer.x, *trainer.targets)
    with tracker:
        for _ in range(2):
            trainer.step()
            tracker.reset_mod_stats()
    return int(tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])


@pytest.mark.parametrize(("name", "batch", "options"), [
    ("lecture_mnist_cnn", 8, {}),
    ("lecture_multitask", 2, {}),  # two heads: cross-entropy and MSE summed
    ("lecture_mnist_cnn", 8, {"precision": "bf16"}),  # the CPU's autocast policy
    ("lecture_mnist_cnn", 4, {"channels_last": True}),
])
def test_the_estimate_is_memtrackers_peak_of_benchs_own_step(name: str, batch: int,
                                                             options: dict[str, Any]) -> None:
    (r,) = run_bench([name], _cpu_config(batch_size=batch, steps=1, warmup=1,
                                         **options)).results
    assert r.memory_estimate is not None and r.memory_estimate.peak is not None
    assert r.memory_estimate.peak == _memtracker_peak_of_bench_steps(name, batch, **options)
    assert r.estimated_memory_bytes == r.memory_estimate.peak
    assert (r.memory_estimate.device, r.memory_estimate.optimizer_impl) == ("cpu", "for-loop")
    assert any(n.startswith("estimate: the step's peak as archscope memory predicts it")
               for n in r.notes)


def test_the_adamw_estimate_leaves_out_the_cpu_step_counters() -> None:
    # the for-loop AdamW's step counters are real CPU scalars, not device memory: 4 bytes for
    # each of the lecture CNN's 10 parameter tensors that MemTracker counts and archscope does not
    (r,) = run_bench(["lecture_mnist_cnn"], _cpu_config(batch_size=8, steps=1, warmup=1,
                                                        optimizer="adamw")).results
    assert r.memory_estimate is not None and r.memory_estimate.peak is not None
    theirs = _memtracker_peak_of_bench_steps("lecture_mnist_cnn", 8, optimizer="adamw")
    assert r.memory_estimate.peak == theirs - 10 * 4


def test_the_estimate_counts_trainable_parameters_in_their_own_dtype() -> None:
    from torch import nn

    from archscope.memory import training_memory

    class HalfBackbone(nn.Module):  # a frozen fp16 backbone under a trainable fp32 head
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Conv2d(3, 64, 3).half().requires_grad_(False)
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x.half()).float().mean((2, 3)))

    model = HalfBackbone()
    head_bytes = sum(p.numel() * p.element_size() for p in model.head.parameters())
    all_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert (head_bytes, all_bytes) == (650 * 4, 650 * 4 + 1792 * 2)
    result = training_memory(model, (3, 32, 32), batch=2, device="cpu")
    most = {c: max(p.breakdown()[c] for p in result.timeline) for c in result.breakdown}
    # weights: every parameter in its own dtype; gradients and momentum for the fp32 head alone
    assert most["weights"] == all_bytes
    assert most["gradients"] == most["optimizer_state"] == head_bytes


def test_an_unreplayable_step_leaves_the_estimate_unknown_and_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from archscope.errors import ForwardError
    from archscope.memory import predict

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise ForwardError("the training step failed (forward, in fc): .item() on a meta tensor")

    monkeypatch.setattr(predict, "record", fail)
    (r,) = run_bench(["lecture_mnist_cnn"], _cpu_config(batch_size=2, steps=1, warmup=1)).results
    assert r.ok and r.memory_estimate is not None and r.memory_estimate.peak is None
    assert r.estimated_memory_bytes is None
    assert "no memory estimate: the step could not be replayed: the training step failed " \
           "(forward, in fc): .item() on a meta tensor" in r.notes


# --------------------------------------------------------------------------------------------
# Batch search and out-of-memory handling (the GPU parts, driven by fake predicates)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("largest", [1, 7, 64, 65, 300, 1000, 4096])
def test_find_max_batch_doubles_then_bisects(largest: int) -> None:
    tried: list[int] = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= largest

    assert find_max_batch(fits, start=64) == largest
    assert len(tried) <= 2 * 14  # doubling and bisection, not a linear scan


def test_batch_cap_keeps_every_tensor_under_2_to_the_31_elements() -> None:
    from archscope.bench.batch import batch_cap

    cap = batch_cap(resolve("vgg16"))
    assert cap is not None
    # VGG16's first conv makes the largest tensor: 64·224·224 = 3,211,264 values per image
    assert (cap.layer, cap.elements) == ("features.0", 64 * 224 * 224)
    assert cap.batch == (2**31 - 1) // (64 * 224 * 224) == 668


def test_batch_cap_counts_the_input_and_only_tensors_that_grow_with_the_batch(
    tmp_path: Path,
) -> None:
    from archscope.bench.batch import batch_cap

    # a stem that shrinks the input 16-fold: the input itself is the largest tensor; a fixed
    # 512×512 buffer made in forward does not grow with the batch and does not count
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "class Shrink(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.pool = nn.AvgPool2d(4)\n"
        "        self.fc = nn.Linear(3 * 64 * 64, 2)\n"
        "    def forward(self, x):\n"
        "        mask = torch.ones(512, 512, device=x.device)\n"
        "        return self.fc(self.pool(x).flatten(1)) + mask.sum()\n"
    )
    cap = batch_cap(resolve(f"{tmp_path}/net.py:Shrink", input_shape=(3, 256, 256)))
    assert cap is not None and cap.layer == "the input"
    assert cap.elements == 3 * 256 * 256 and cap.batch == (2**31 - 1) // (3 * 256 * 256)


def test_fused_sgd_survives_a_first_step_that_grad_scaler_skips() -> None:
    # fp16 training: GradScaler skips a step whose gradients overflowed; fused SGD must not
    # then read momentum buffers it never initialised (CPU fused SGD has the same code path)
    from archscope.bench.trainer import make_optimizer

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = make_optimizer("sgd", model, 0.1, torch.device("cpu"), fused=True)
    assert all(torch.equal(s["momentum_buffer"], torch.zeros_like(p))
               for p, s in optimizer.state.items())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    x = torch.randn(8, 4)
    for overflow in (True, False, False):
        optimizer.zero_grad(set_to_none=True)
        loss = model(x).sum() * (float("inf") if overflow else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the same numbers as plain SGD, which starts its momentum at the first gradient
    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 3)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, foreach=False)
    for _ in range(2):
        plain.zero_grad(set_to_none=True)
        (reference(x).sum() * scaler.get_scale()).backward()
        for p in reference.parameters():
            p.grad /= scaler.get_scale()
        plain.step()
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_a_batch_search_trains_the_model_and_the_built_weights_come_back() -> None:
    # --batch-size auto tries batches by training the model it holds; the benchmark must then
    # start from the weights the model was built with, as a fresh build would
    from archscope.bench.batch import BatchCap, Snapshot, fits_in_memory

    subject = resolve("lecture_mnist_cnn", device="cpu")
    built = {k: v.clone() for k, v in subject.model.state_dict().items()}
    snapshot = Snapshot(subject.model)
    fits = fits_in_memory(subject.model, subject.input_shape, make_plan(_cpu_config()), 0,
                          cap=BatchCap(batch=8, layer="features.conv1", elements=32 * 26 * 26))
    assert fits(4)  # two SGD steps at batch 4
    assert not torch.equal(subject.model.state_dict()["features.conv1.weight"],
                           built["features.conv1.weight"])
    assert not fits(9)  # past the cap: refused without a step
    snapshot.restore(subject.model)
    restored = subject.model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in built.items())
    assert all(p.grad is None for p in subject.model.parameters())
    assert _same_weights(subject.model, resolve("lecture_mnist_cnn", device="cpu").model)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                   b.state_dict().values(), strict=True))


def test_find_max_batch_none_and_limit() -> None:
    assert find_max_batch(lambda b: False, start=64) is None
    # the limit is a candidate itself, not just the powers of two below it
    assert find_max_batch(lambda b: True, start=64, limit=1000) == 1000
    tried: list[int] = []

    def up_to_700(b: int) -> bool:
        tried.append(b)
        return b <= 700

    assert find_max_batch(up_to_700, start=64, limit=1000) == 700
    assert max(tried) == 1000 and tried[:5] == [64, 128, 256, 512, 1000]
    assert find_max_batch(lambda b: True, start=64, limit=40) == 40


def test_halve_until_fits() -> None:
    assert halve_until_fits(lambda b: b <= 100, 512) == 64
    assert halve_until_fits(lambda b: False, 512) is None


def test_oom_at_fixed_batch_names_a_batch_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bench_run, "bench_model", out_of_memory)
    monkeypatch.setattr(bench_run, "fits_in_memory", lambda *a, **k: (lambda b: b <= 20))
    with pytest.raises(DeviceError, match=r"batch 64 ran out of memory .*batch 16 fits: pass "
                                          r"--batch-size 16$"):
        run_bench(["lecture_mnist_cnn"], _cpu_config(batch_size=64))
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "lecture_mnist_cnn", "--device", "cpu",
                                  "--batch-size", "64"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: lecture_mnist_cnn: batch 64 ran out of memory")
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# Devices and defaults
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_device_cuda_without_cuda_is_one_line_error() -> None:
    result = CliRunner().invoke(main, ["bench", "lecture_mnist_cnn", "--device", "cuda"])
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.startswith("Error: CUDA is not available")
    assert "--device cpu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_single_step_cannot_show_learning() -> None:
    result = CliRunner().invoke(main, ["bench", "lecture_mnist_cnn", "--device", "cpu",
                                       "--steps", "1", "--warmup", "0"])
    assert result.exit_code == 2  # option values that cannot work together: a usage error
    assert result.stderr.startswith("Error: --steps 1 --warmup 0: bench needs at least")


def test_forward_failure_is_one_line(tmp_path: Any) -> None:
    path = tmp_path / "broken.py"
    path.write_text("from torch import nn\n\n\nclass Broken(nn.Module):\n"
                    "    def forward(self, x):\n        return nn.functional.linear(x, x)\n",
                    encoding="utf-8")
    result = CliRunner().invoke(main, ["bench", f"{path}:Broken", "--input", "2x3x5",
                                       "--device", "cpu", "--steps", "2"])
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_auto_batch_on_cpu_is_refused() -> None:
    with pytest.raises(DeviceError, match="on the CPU pass a number"):
        run_bench(["lecture_mnist_cnn"], BenchConfig(device="cpu", batch_size="auto"))


def test_cpu_defaults_are_small() -> None:
    p = make_plan(BenchConfig(device="cpu"))
    assert (p.precision, p.channels_last, p.compile) == ("fp32", False, False)
    assert p.steps <= 10 and p.warmup <= 2
    assert bench_lib.default_batch("resnet50", "cpu") <= 8
    assert bench_lib.default_batch("resnet50", "cuda") == 256
    assert bench_lib.default_batch("vgg16", "cuda") == 128
    assert bench_lib.default_batch("alexnet", "cuda") == 512


@pytest.mark.parametrize(("name", "key", "bf16", "tf32", "fp32"), [
    # Dense figures from the vendors' datasheets/whitepaper, written out here by hand.
    ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4, 494.7, 66.9),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.0, 378.0, 51.2),
    ("NVIDIA H200", "H200", 989.4, 494.7, 66.9),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB", 312.0, 156.0, 19.5),
    ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB", 312.0, 156.0, 19.5),
    ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB", 312.0, 156.0, 19.5),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB", 312.0, 156.0, 19.5),
    ("NVIDIA L4", "L4", 121.0, 60.0, 30.3),
])
def test_peak_table_lookup(name: str, key: str, bf16: float, tf32: float, fp32: float) -> None:
    spec = lookup(name)
    assert spec is not None and spec.key == key
    assert peak_tflops(name, "bf16") == bf16 == peak_tflops(name, "fp16")
    assert peak_tflops(name, "tf32") == tf32
    assert peak_tflops(name, "fp32") == fp32


@pytest.mark.parametrize("name", [
    "NVIDIA GeForce RTX 4090", "NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA L40S",
    "Tesla V100-SXM2-16GB", "NVIDIA GH200 480GB", "cpu",
])
def test_unknown_devices_get_no_guess(name: str) -> None:
    assert lookup(name) is None
    assert peak_tflops(name, "bf16") is None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

_RESULT_KEYS = {
    "model", "input_shape", "device", "device_name", "batch", "batch_source", "precision",
    "channels_last", "compile", "optimizer", "steps", "warmup", "images_per_s", "step_ms_median",
    "step_ms_p90", "step_ms", "span_ms", "images_per_s_overall", "training_flops_per_step",
    "achieved_tflops", "peak_tflops",
    "peak_tflops_source", "mfu", "peak_memory_bytes", "estimated_memory_bytes",
    "memory_error_pct", "memory_estimate", "first_loss", "last_loss", "losses", "loss_fell",
    "status", "notes", "error",
}


def test_cli_json_on_cpu() -> None:
    result = CliRunner().invoke(main, [
        "bench", "lecture_mnist_cnn", "--device", "cpu", "--steps", "3", "--warmup", "1",
        "--format", "json",
    ])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # progress went to stderr: stdout is pure JSON
    assert set(data) == {"archscope_version", "torch_version", "cuda_version", "device",
                         "device_name", "ok", "results"}
    assert data["ok"] is True and data["device"] == "cpu"
    (r,) = data["results"]
    assert set(r) == _RESULT_KEYS
    assert (r["model"], r["batch"], r["steps"], r["warmup"]) == ("lecture_mnist_cnn", 64, 3, 1)
    assert r["input_shape"] == [1, 28, 28] and r["precision"] == "fp32"
    assert len(r["step_ms"]) == 3 and len(r["losses"]) == 4
    assert r["images_per_s"] == pytest.approx(64 / (r["step_ms_median"] / 1000))
    assert r["peak_tflops_source"] == CPU_NO_PEAK and r["mfu"] is None
    assert set(r["memory_estimate"]) == {"peak", "batch", "precision", "optimizer",
                                         "optimizer_impl", "device", "step", "where",
                                         "breakdown", "reason", "input_dtype"}
    assert r["memory_estimate"]["input_dtype"] == "float32"
    assert r["estimated_memory_bytes"] == r["memory_estimate"]["peak"]
    assert (r["memory_estimate"]["batch"], r["memory_estimate"]["step"]) == (64, "bench")


def test_cli_table_on_cpu_with_peak() -> None:
    result = CliRunner().invoke(main, [
        "bench", "lecture_mnist_cnn", "--device", "cpu", "--steps", "2", "--warmup", "0",
        "--batch-size", "4", "--peak-tflops", "0.5",
    ])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for header in ("model", "batch", "img/s", "p50 ms", "p90 ms", "peak mem", "TFLOP/s", "MFU",
                   "loss first→last"):
        assert header in out
    assert "lecture_mnist_cnn" in out and "MFU peak: --peak-tflops" in out


def test_unknown_model_fails_before_any_benchmark_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(bench_run, "bench_subject", lambda subject, *a, **k: ran.append(subject))
    result = CliRunner().invoke(main, ["bench", "lecture_mnist_cnn", "resnet5", "--device", "cpu"])
    assert result.exit_code == 1 and ran == []
    assert result.stderr.strip() == (
        "Error: unknown model 'resnet5'; did you mean resnet50, resnet152, resnet34? "
        "(`archscope list` shows all 22 models)"
    )


def test_memory_cell_shows_the_estimate_and_its_error_against_the_peak() -> None:
    from archscope.render.bench import memory_cell as _memory_cell

    result = SimpleNamespace(estimated_memory_bytes=2**30, memory_error_pct=None)
    assert _memory_cell(result) == "1.00 GiB"  # the CPU: no peak to compare with
    result = SimpleNamespace(estimated_memory_bytes=2**30, memory_error_pct=-4.25)
    assert _memory_cell(result) == "1.00 GiB (-4.2%)"


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-size", "0"], "must be at least 1"),
    (["--batch-size", "many"], "neither a positive integer nor 'auto'"),
    (["--precision", "fp8"], "Invalid value for '--precision'"),
])
def test_cli_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", "lecture_mnist_cnn", "--device", "cpu", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_importing_the_command_does_not_import_torch() -> None:
    code = ("import sys, archscope.commands.bench, archscope.devices; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# On a CUDA device (skipped here without one)
# --------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_resnet50_learns_and_mfu_is_sane() -> None:
    run = run_bench(["resnet50"], BenchConfig(device="cuda", batch_size=64, steps=30, warmup=5))
    (r,) = run.results
    assert r.loss_fell
    assert r.precision in ("bf16", "fp16") and r.channels_last  # the fast default mode
    assert r.achieved_tflops is not None and r.achieved_tflops > 0
    if r.peak_tflops is None:
        pytest.skip(f"{r.device_name} is not in archscope.devices: MFU not checked")
    assert r.mfu is not None and 0 < r.mfu < 1
    assert r.peak_memory_bytes is not None and r.peak_memory_bytes > 0


@pytest.mark.gpu
def test_gpu_memory_estimate_within_10_percent_resnet50_batch32_fp32() -> None:
    config = BenchConfig(device="cuda", batch_size=32, steps=5, warmup=3, precision="fp32",
                         channels_last=False)
    (r,) = run_bench(["resnet50"], config).results
    assert r.loss_fell
    assert r.memory_error_pct is not None
    assert abs(r.memory_error_pct) <= 10.0, (r.peak_memory_bytes, r.memory_estimate)


@pytest.mark.gpu
def test_gpu_fp16_with_grad_scaler_and_compile_learn() -> None:
    fp16 = BenchConfig(device="cuda", batch_size=64, steps=20, warmup=3, precision="fp16")
    assert run_bench(["resnet18"], fp16).ok
    compiled = BenchConfig(device="cuda", batch_size=256, steps=20, warmup=3, compile=True)
    assert run_bench(["lecture_mnist_cnn"], compiled).ok


@pytest.mark.gpu
def test_gpu_auto_batch_and_oom_message() -> None:
    # 64×64 keeps the search short; it stops below 2³¹ elements in any tensor
    (r,) = run_bench(["resnet18"], BenchConfig(device="cuda", batch_size="auto", steps=3,
                                               warmup=1, input_shape=(3, 64, 64))).results
    assert r.batch_source == "auto" and r.batch >= 64 and r.ok
    assert r.batch * 64 * 32 * 32 <= 2**31 - 1  # conv1's output, 64×32×32 per image
    # resnet50 in fp32 needs about 89 MiB per image: 1.3× the GPU's memory cannot fit, while
    # its largest tensor (64×112×112 per image) stays under 2³¹ elements up to batch 2675
    total = torch.cuda.get_device_properties(0).total_memory
    batch = int(1.3 * total / (89 * 2**20))
    assert batch * 64 * 112 * 112 < 2**31
    with pytest.raises(DeviceError, match=r"ran out of memory .* fits: pass --batch-size"):
        run_bench(["resnet50"], BenchConfig(device="cuda", batch_size=batch, steps=1, warmup=1,
                                            precision="fp32", channels_last=False))


@pytest.mark.gpu
def test_gpu_batch_past_32_bit_indexing_is_refused_before_it_runs() -> None:
    with pytest.raises(DeviceError, match=r"vgg16: at batch 4096 features\.0's output would "
                                          r"hold 13,153,337,344 elements, past the 2³¹ .* "
                                          r"--batch-size 668 or less"):
        run_bench(["vgg16"], BenchConfig(device="cuda", batch_size=4096, steps=1, warmup=1))


def test_compare_handwritten_script_runs_both_sides_alternately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the GPU comparison's own logic, on the CPU: two alternating runs per side, medians compared
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / "compare_handwritten.py"
    spec = importlib.util.spec_from_file_location("compare_handwritten", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compare_handwritten", script)  # for its dataclasses
    spec.loader.exec_module(script)
    out = tmp_path / "compare.json"
    code = script.main(["--device", "cpu", "--batch", "2", "--steps", "2", "--warmup", "1",
                        "--rows", "alexnet-bf16", "--repeats", "2", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert report["repeats"] == 2 and row["row"]["zoo_name"] == "alexnet_torchvision"
    hand, ours = row["handwritten"], row["archscope"]
    assert len(hand["images_per_s_runs"]) == len(ours["images_per_s_overall_runs"]) == 2
    # each side's figure is its lower-middle run: with two runs, the slower one
    assert hand["images_per_s"] == min(hand["images_per_s_runs"])
    assert ours["images_per_s_overall"] == min(ours["images_per_s_overall_runs"])
    assert row["pass"] == (ours["images_per_s_overall"] >= hand["images_per_s"] and ours["loss_fell"])


def test_losses_are_reproducible_with_dropout() -> None:
    # AlexNet trains with dropout, which draws from the global generator: seeded per benchmark
    config = _cpu_config(batch_size=2, steps=2, input_shape=(3, 227, 227))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = run_bench(["alexnet"], config).results[0].losses
    torch.manual_seed(999)  # whatever the caller's generator holds
    second = run_bench(["alexnet"], config).results[0].losses
    assert first == second and len(first) == 2
    torch.manual_seed(123)
    run_bench(["alexnet"], config)
    assert torch.equal(torch.random.get_rng_state(), state)  # left as the caller had it


@pytest.mark.parametrize("setup", ["", "torch.set_float32_matmul_precision('medium')",
                                   "torch.backends.fp32_precision = 'tf32'"])
def test_tf32_flags_use_the_api_the_process_uses_and_restore_it(setup: str) -> None:
    # TF32 flags are process-global, and torch ≥ 2.9's two APIs raise when mixed: each starting
    # state runs in its own process
    code = textwrap.dedent(f"""
        import torch
        from archscope.bench import tf32_flags
        m, c = torch.backends.cuda.matmul, torch.backends.cudnn
        def readable():
            values = []
            for get in (lambda: m.allow_tf32, lambda: c.allow_tf32,
                        torch.get_float32_matmul_precision, lambda: m.fp32_precision):
                try:
                    values.append(get())
                except RuntimeError:
                    values.append("raises")
            return values
        {setup}
        before = readable()
        for enabled in (True, False):
            with tf32_flags(enabled):
                inside = readable()
                on = m.fp32_precision == ("tf32" if enabled else "ieee")
            print(on, inside.count("raises") <= before.count("raises"), readable() == before
                  or (before[3] == "none" and readable()[:3] == before[:3]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"] * 6, out.stdout


def test_an_eval_mode_factory_is_estimated_in_the_training_mode_it_trains_in(
        tmp_path: Path) -> None:
    # bench trains; its estimate must count what training saves (dropout's mask among it), as the
    # same model built in training mode does, whatever mode the factory returned
    from torch.distributed._tools.mem_tracker import MemTracker

    source = textwrap.dedent("""
        from torch import nn


        def eval_net():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                                 nn.Linear(8 * 6 * 6, 10)).eval()
    """)
    path = tmp_path / "factories.py"
    path.write_text(source, encoding="utf-8")
    config = _cpu_config(batch_size=2, input_shape=(3, 8, 8))
    (r,) = run_bench([f"{path}:eval_net"], config).results
    assert r.memory_estimate is not None
    # the oracle: PyTorch's tracker over two of bench's steps of the model as bench trains it
    subject = resolve(f"{path}:eval_net", device="cpu", input_shape=(3, 8, 8))
    trainer = Trainer(subject.model, input_shape=(3, 8, 8), batch=2, device=torch.device("cpu"),
                      precision="fp32", channels_last=False, compile=False, optimizer="sgd",
                      lr=1e-3, seed=0)
    tracker = MemTracker()
    tracker.track_external(trainer.model, trainer.optimizer, trainer.x, *trainer.targets)
    with tracker:
        for _ in range(2):
            trainer.step()
            tracker.reset_mod_stats()
    measured = int(tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"])
    assert r.memory_estimate.peak == measured


def test_a_broken_device_is_not_one_models_failure() -> None:
    # an illegal memory access leaves CUDA unusable for every later model: it stops the run
    # rather than becoming a FAILED row
    from archscope.bench.trainer import device_broken

    assert device_broken(RuntimeError(
        "CUDA error: an illegal memory access was encountered"))
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None:
        assert device_broken(accelerator_error("unspecified launch failure"))
    assert not device_broken(RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        "inplace operation"))


# --------------------------------------------------------------------------------------------
# A model that cannot be trained is one FAILED result; the footer and loss digits
# --------------------------------------------------------------------------------------------


_NO_PARAMS = "spec:28x28x1 maxpool2 flatten"


def _bench_args(*models: str) -> list[str]:
    return ["bench", *models, "--input", "8x8x8", "--device", "cpu", "--batch-size", "4",
            "--steps", "2", "--warmup", "1"]


def test_bench_training_step_failure_is_a_failed_row_and_the_next_model_still_runs(
    models: Path,
) -> None:
    result = CliRunner().invoke(main, _bench_args(f"{models}:Res", f"{models}:Good"))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()
            if line.strip().startswith("nets.py:")}
    res_row, good_row = rows[f"{models}:Res"], rows[f"{models}:Good"]
    assert res_row.split()[1:] == ["4", "fp32", *["—"] * 7, "FAILED"]
    assert re.search(r"\d\.\d{4}→\d\.\d{4}$", good_row), good_row  # Good was measured
    (failed,) = result.stderr.strip().splitlines()
    assert failed == (
        f"FAILED: {models}:Res: the training step failed: one of the variables needed for "
        "gradient computation has been modified by an inplace operation: [torch.FloatTensor "
        "[4, 8, 8, 8]], which is output 0 of Relu, is at version 3; expected version 1 instead. "
        "… (an in-place operation such as ReLU(inplace=True), += or .add_() overwrote a tensor "
        "the backward pass needs: make that operation out-of-place)"
    )


def test_bench_json_records_the_failure_and_stays_json(models: Path) -> None:
    result = CliRunner().invoke(main, [*_bench_args(f"{models}:Res", f"{models}:Good"),
                                       "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    res, good = data["results"]
    assert (res["status"], res["loss_fell"], res["losses"], res["step_ms"]) == (
        "failed", False, [], [])
    assert res["images_per_s"] is None and res["first_loss"] is None and res["batch"] == 4
    assert res["error"].startswith("the training step failed: one of the variables needed")
    assert good["status"] == "ok" and good["error"] is None and len(good["losses"]) == 3
    json.dumps(data, allow_nan=False)  # no NaN or inf slipped in for the missing timings


def test_bench_model_without_parameters_is_refused_before_any_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(Trainer, "step", lambda self: ran.append("stepped"))
    run = run_bench([_NO_PARAMS], BenchConfig(device="cpu", steps=2, warmup=0))
    assert ran == []  # refused after the (untimed) forward that checks the model runs
    (r,) = run.results
    assert r.error == "the model has no trainable parameters: nothing to train"
    assert not r.ok and not run.ok and r.status == f"FAILED: {r.error}"
    assert (r.model, r.input_shape, r.batch, r.batch_source) == (
        "28x28x1 maxpool2 flatten", (1, 28, 28), 4, "default")


def test_bench_cli_without_parameters_and_with_frozen_parameters(models: Path) -> None:
    result = CliRunner().invoke(main, ["bench", _NO_PARAMS, "--device", "cpu", "--steps", "2"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("FAILED: 28x28x1 maxpool2 flatten: the model has no "
                                     "trainable parameters: nothing to train")
    frozen = CliRunner().invoke(main, _bench_args(f"{models}:Frozen"))
    assert frozen.exit_code == 1
    assert frozen.stderr.strip() == (f"FAILED: {models}:Frozen: every parameter is frozen "
                                     "(requires_grad=False): nothing to train")


def _result(**kw: Any) -> BenchResult:
    fields: dict[str, Any] = {
        "model": "m", "input_shape": (1, 28, 28), "device": "cpu", "device_name": "cpu",
        "batch": 4, "batch_source": "given", "precision": "fp32", "channels_last": False,
        "compiled": False, "optimizer": "sgd", "steps": 2, "warmup": 1,
        "step_ms": (10.0, 10.0), "span_ms": 20.0, "training_flops": None, "peak_tflops": None,
        "peak_source": None, "peak_memory_bytes": None, "memory_estimate": None,
        "losses": (2.296, 2.2954, 2.2950),
    }
    fields.update(kw)
    return BenchResult(**fields)


def test_footer_keeps_the_unknown_gpu_wording_beside_the_cpu_one() -> None:
    gpu = _result(device="cuda", device_name="NVIDIA GeForce RTX 4090", peak_source=UNKNOWN_DEVICE)
    run = bench_lib.BenchRun("cuda", "NVIDIA GeForce RTX 4090", "2.13.0", "12.8", (gpu,))
    assert "MFU peak: unknown device: pass --peak-tflops" in render_table(run)
    cpu = bench_lib.BenchRun("cpu", "cpu", "2.13.0", None, (_result(peak_source=CPU_NO_PEAK),))
    text = render_table(cpu)
    assert "MFU: not computed for CPUs" in text and "MFU peak" not in text


def test_bench_losses_keep_five_significant_digits_and_the_footer_counts_in_singular() -> None:
    run = bench_lib.BenchRun("cpu", "cpu", "2.13.0", None, (_result(),))
    text = render_table(run)
    assert "2.2960→2.2950" in text  # not 2.296→2.295
    assert "2 timed steps after 1 warm-up step, optimizer sgd" in text
    many = bench_lib.BenchRun("cpu", "cpu", "2.13.0", None, (_result(steps=1, warmup=0),))
    assert "1 timed step after 0 warm-up steps," in render_table(many)
    stuck = _result(losses=(2.3, 2.3, 2.3))
    assert failure_reason(stuck) == ("the loss did not fall on the repeated batch "
                                     "(2.3000 → 2.3000 over 3 steps)")
