"""Compare ``archscope bench`` with a plain hand-written training loop, on one GPU, in one run.

The issue's targets (a hand-written loop over torchvision's models on an H100 80GB, torch 2.11,
synthetic 224×224 data, SGD with momentum):

=============================  =====  ==================
configuration                  batch  hand-written img/s
=============================  =====  ==================
resnet50 bf16 channels-last    256    3,979 (eager)
resnet50 bf16 channels-last    256    5,630 (torch.compile)
resnet50 fp32 NCHW             256    1,860
vgg16 bf16 channels-last       128    3,163
alexnet bf16 channels-last     512    38,681
resnet50 fp32 peak memory      32     2.87 GiB
=============================  =====  ==================

For each row this script times the hand-written loop *and* archscope on the same device, one after
the other in this process: archscope's default mode (bf16 autocast + channels-last, eager) must be
at least as fast as every hand-written row, its best mode (``--compile``) must reach 6,000 img/s on
resnet50, and its training-memory estimate must be within 10% of the measured peak.

The hand-written loop is what a careful user writes: model and synthetic batch on the GPU,
``cudnn.benchmark = True``, PyTorch's default TF32 settings (cuDNN convolutions in TF32, matmuls
in IEEE fp32), ``torch.optim.SGD(momentum=0.9)`` with its default (foreach) implementation,
``zero_grad(set_to_none=True)``, synchronize, time N steps with ``time.perf_counter``, synchronize.
Both sides are compared on the same measure: images ÷ the time from the first timed step's start
to the last one's end (archscope's ``images_per_s_overall``; its median-based figure is shown
beside it).

It uses torchvision's models when torchvision imports, else archscope's zoo builds of the same
architectures (``resnet50``, ``vgg16``, ``alexnet_torchvision``), and says which.

Usage (on a CUDA machine, from the repository root)::

    python benchmarks/compare_handwritten.py                 # every row, markdown to stdout
    python benchmarks/compare_handwritten.py --rows resnet50-bf16 --steps 50
    python benchmarks/compare_handwritten.py --json out.json --check  # exit 1 if a target fails
    python benchmarks/compare_handwritten.py --device cpu --batch 2 --steps 2 --warmup 1 \\
        --rows alexnet-bf16,resnet50-memory                   # smoke test of the script, no GPU
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from archscope.bench import BenchConfig, BenchResult, run_bench
from archscope.registry import get_entry


@dataclass(frozen=True)
class Row:
    """One target of the issue."""

    key: str
    label: str
    torchvision_name: str
    zoo_name: str
    batch: int
    precision: str  # the hand-written loop's: "bf16" autocast or "fp32" (PyTorch defaults)
    channels_last: bool
    compile: bool
    reference: float  # the hand-written figure on an H100 80GB (img/s, or GiB for memory)
    archscope_mode: str  # "default" (bf16 CL eager), "best" (default + compile), "fp32" (memory)
    absolute_target: float | None = None  # archscope must also reach this many img/s
    memory: bool = False


ROWS = (
    Row("resnet50-bf16", "resnet50 bf16 CL eager", "resnet50", "resnet50", 256, "bf16", True,
        False, 3979, "default"),
    Row("resnet50-bf16-compile", "resnet50 bf16 CL compile", "resnet50", "resnet50", 256, "bf16",
        True, True, 5630, "best", absolute_target=6000),
    Row("resnet50-fp32", "resnet50 fp32 NCHW", "resnet50", "resnet50", 256, "fp32", False, False,
        1860, "default"),
    Row("vgg16-bf16", "vgg16 bf16 CL eager", "vgg16", "vgg16", 128, "bf16", True, False, 3163,
        "default"),
    Row("alexnet-bf16", "alexnet bf16 CL eager", "alexnet", "alexnet_torchvision", 512, "bf16",
        True, False, 38681, "default"),
    Row("resnet50-memory", "resnet50 fp32 NCHW peak memory", "resnet50", "resnet50", 32, "fp32",
        False, False, 2.87, "fp32", memory=True),
)


def _model_builder() -> tuple[Callable[[str, str], nn.Module], str]:
    """torchvision's constructors when importable, else archscope's zoo (same architectures)."""
    try:
        import torchvision.models as tvm
    except Exception as exc:  # a broken torchvision install counts as absent
        reason = (f"torchvision not importable ({type(exc).__name__}): hand-written loop uses "
                  "archscope.zoo models (same architectures, torchvision's module names)")

        def zoo(tv_name: str, zoo_name: str) -> nn.Module:
            return get_entry(zoo_name).build()

        return zoo, reason

    def tv(tv_name: str, zoo_name: str) -> nn.Module:
        model: nn.Module = getattr(tvm, tv_name)(weights=None)
        return model

    return tv, f"torchvision {getattr(sys.modules.get('torchvision'), '__version__', '?')}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def handwritten(model: nn.Module, *, batch: int, precision: str, channels_last: bool,
                compile: bool, steps: int, warmup: int, device: torch.device
                ) -> dict[str, float | None]:
    """The plain loop: returns images/s over all timed steps and the peak memory (bytes)."""
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)  # type: ignore[call-overload]
    model.train()
    step_model: Any = torch.compile(model) if compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 1000, (batch,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    peak = float(torch.cuda.max_memory_allocated(device)) if cuda else None
    return {"images_per_s": batch * steps / elapsed, "peak_memory_bytes": peak}


def archscope_run(row: Row, *, batch: int, steps: int, warmup: int, device: torch.device
                  ) -> BenchResult:
    if row.archscope_mode == "fp32":
        config = BenchConfig(device=str(device), batch_size=batch, steps=steps, warmup=warmup,
                             precision="fp32", channels_last=False)
    elif device.type == "cuda":  # the default mode; "best" adds torch.compile
        config = BenchConfig(device=str(device), batch_size=batch, steps=steps, warmup=warmup,
                             compile=row.archscope_mode == "best")
    else:  # CPU smoke test: the CUDA default mode's settings, spelled out
        config = BenchConfig(device="cpu", batch_size=batch, steps=steps, warmup=warmup,
                             precision="bf16", channels_last=True,
                             compile=row.archscope_mode == "best")
    (result,) = run_bench([row.zoo_name], config).results
    return result


def _clean() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(Exception):
        torch._dynamo.reset()


def compare(rows: list[Row], *, steps: int, warmup: int, device: torch.device,
            batch: int | None = None, repeats: int = 1) -> dict[str, Any]:
    """Run every row: the hand-written loop, then archscope, ``repeats`` times alternately.

    Each side's figure is its median run (the lower middle one for an even count, so that it
    is a run's own figure); alternating spreads clock and thermal drift over both sides.
    ``batch`` overrides the rows'.
    """
    build, source = _model_builder()
    out: list[dict[str, Any]] = []
    for row in rows:
        size = batch or row.batch
        hands: list[dict[str, float | None]] = []
        runs: list[BenchResult] = []
        for _ in range(repeats):
            torch.manual_seed(0)
            saved_benchmark = torch.backends.cudnn.benchmark
            try:
                hands.append(handwritten(
                    build(row.torchvision_name, row.zoo_name), batch=size,
                    precision=row.precision, channels_last=row.channels_last,
                    compile=row.compile, steps=steps, warmup=warmup, device=device))
            finally:
                torch.backends.cudnn.benchmark = saved_benchmark
            _clean()
            runs.append(archscope_run(row, batch=size, steps=steps, warmup=warmup, device=device))
            _clean()
        hand_runs = [h["images_per_s"] or 0.0 for h in hands]
        hand: dict[str, Any] = {
            "images_per_s": statistics.median_low(hand_runs), "images_per_s_runs": hand_runs,
            "peak_memory_bytes": hands[-1]["peak_memory_bytes"],
        }
        ours_runs = [r.images_per_s_overall for r in runs]
        ours = sorted(runs, key=lambda r: r.images_per_s_overall)[(len(runs) - 1) // 2]
        # Same measure as the hand-written loop: images ÷ the whole timed span.
        overall_ips = ours.images_per_s_overall
        entry: dict[str, Any] = {
            "row": {**asdict(row), "batch": size},
            "handwritten": hand,
            "archscope": {
                "mode": (ours.precision + (" CL" if ours.channels_last else "")
                         + (" compile" if ours.compiled else "")),
                "images_per_s_overall": overall_ips,
                "images_per_s_overall_runs": ours_runs,
                "images_per_s_median": ours.images_per_s,
                "mfu": ours.mfu,
                "achieved_tflops": ours.achieved_tflops,
                "peak_memory_bytes": ours.peak_memory_bytes,
                "estimated_memory_bytes": ours.estimated_memory_bytes,
                "memory_error_pct": ours.memory_error_pct,
                "loss_fell": ours.loss_fell,
            },
        }
        if row.memory:
            error = ours.memory_error_pct
            entry["pass"] = error is not None and abs(error) <= 10.0 and ours.loss_fell
        else:
            passed = overall_ips >= (hand["images_per_s"] or 0.0) and ours.loss_fell
            if row.absolute_target is not None:
                passed = passed and overall_ips >= row.absolute_target
            entry["pass"] = passed
        out.append(entry)
    return {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "models": source,
        "steps": steps,
        "repeats": repeats,
        "warmup": warmup,
        "command": " ".join(["python", *sys.argv]),
        "rows": out,
    }


def to_markdown(report: dict[str, Any]) -> str:
    gib = 2**30
    lines = [
        f"Device: {report['device_name']}; torch {report['torch_version']} (CUDA "
        f"{report['cuda_version']}); {report['steps']} timed steps after {report['warmup']} "
        f"warm-up, {report.get('repeats', 1)} alternating run(s) per side (medians); "
        f"hand-written models: {report['models']}.",
        f"Command: `{report['command']}`",
        "",
        "| configuration | batch | issue's hand-written (H100) | hand-written here "
        "| archscope mode | archscope (overall) | archscope (median) | MFU | pass |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for entry in report["rows"]:
        row, hand, ours = entry["row"], entry["handwritten"], entry["archscope"]
        mfu = f"{ours['mfu']:.1%}" if ours["mfu"] is not None else "unknown device"
        if row["memory"]:
            error = ours["memory_error_pct"]
            hand_peak = hand["peak_memory_bytes"]
            measured = "—" if hand_peak is None else f"{hand_peak / gib:.2f} GiB"
            peak = ours["peak_memory_bytes"]
            estimate = ours["estimated_memory_bytes"]
            ours_peak = "—" if peak is None else f"peak {peak / gib:.2f} GiB"
            ours_estimate = "—" if estimate is None else f"estimate {estimate / gib:.2f} GiB"
            if error is not None:
                ours_estimate += f" ({error:+.1f}%)"
            lines.append(
                f"| {row['label']} | {row['batch']} | {row['reference']:.2f} GiB | {measured} | "
                f"{ours['mode']} | {ours_peak} | {ours_estimate} | {mfu} | "
                f"{'yes' if entry['pass'] else 'NO'} |"
            )
        else:
            target = (f" (target ≥ {row['absolute_target']:,.0f})"
                      if row["absolute_target"] is not None else "")
            lines.append(
                f"| {row['label']} | {row['batch']} | {row['reference']:,.0f} | "
                f"{hand['images_per_s']:,.0f} | {ours['mode']} | "
                f"{ours['images_per_s_overall']:,.0f}{target} | "
                f"{ours['images_per_s_median']:,.0f} | {mfu} | {'yes' if entry['pass'] else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="all",
                        help="comma-separated row keys: " + ", ".join(r.key for r in ROWS))
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run (100)")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up steps per run (20)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument("--device", default="cuda",
                        help="cuda (the comparison) or cpu (a smoke test of this script only)")
    parser.add_argument("--batch", type=int, help="override every row's batch (smoke tests)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="alternate the two sides this many times per row and compare "
                             "medians (1; eager rows differ by little, so 3 is fairer)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("Error: CUDA is not available; this comparison needs a GPU "
              "(--device cpu runs a smoke test of the script only)", file=sys.stderr)
        return 1
    wanted = ROWS if args.rows == "all" else tuple(r for r in ROWS if r.key in args.rows.split(","))
    if not wanted:
        print(f"Error: no row matches {args.rows!r}", file=sys.stderr)
        return 2
    report = compare(list(wanted), steps=args.steps, warmup=args.warmup, device=device,
                     batch=args.batch, repeats=max(1, args.repeats))
    sys.stdout.write(to_markdown(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    if args.check and not all(entry["pass"] for entry in report["rows"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
