"""The memory model against ``torch.cuda.max_memory_allocated``, and its speed against ``summary``.

For every zoo model × {fp32, bf16} × {batch 1, bench's default CUDA batch}: the peak that
``archscope memory`` predicts (on the meta device) beside the peak allocated over three steps of
``archscope bench``'s own training step (``bench.trainer.Trainer``: channels-last, fused SGD, bench's
backend flags) after two warm-up steps, as bench measures it. Then the wall time of
``archscope memory resnet50 --batch 256`` against ``archscope summary resnet50 --batch 256``
(fresh processes, median of --runs), the target being at most 2×.

Usage:
    python benchmarks/memory_accuracy.py                 # needs CUDA: the table, then the timing
    python benchmarks/memory_accuracy.py --timing-only   # any machine: the timing alone
    python benchmarks/memory_accuracy.py --models resnet50 alexnet --precisions bf16

The table is Markdown, for docs/memory.md ("GPU accuracy").
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time


def bench_peak(name: str, batch: int, precision: str, steps: int = 3) -> int:
    """Peak allocated over ``steps`` of bench's training step, after two warm-up steps."""
    import torch

    from archscope.bench import backend_flags
    from archscope.bench.trainer import Trainer
    from archscope.source import load_model

    device = torch.device("cuda")
    loaded = load_model(name, device="cuda")
    with backend_flags(device, precision):
        trainer = Trainer(loaded.model, input_shape=loaded.input_shape, batch=batch,
                           device=device, precision=precision, channels_last=True,
                           compile=False, optimizer="sgd", lr=1e-3, seed=0)
        for _ in range(2):
            trainer.step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            trainer.step()
        torch.cuda.synchronize()
        peak = int(torch.cuda.max_memory_allocated())
    del trainer, loaded
    return peak


def clean() -> None:
    import torch

    gc.collect()
    torch.cuda.synchronize()
    torch._C._cuda_clearCublasWorkspaces()  # each row makes its own, as a fresh process would
    torch.cuda.empty_cache()


def accuracy_table(models: list[str], precisions: list[str]) -> list[str]:
    import torch

    from archscope.bench import default_batch
    from archscope.memory import training_memory
    from archscope.source import load_model

    gpu = torch.cuda.get_device_name()
    lines = [f"GPU: {gpu} · torch {torch.__version__} · CUDA {torch.version.cuda}", "",
             "| model | precision | batch | predicted | measured | error |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name in models:
        for precision in precisions:
            for batch in sorted({1, default_batch(name, "cuda")}):
                loaded = load_model(name)
                predicted = training_memory(loaded.model, loaded.input_shape, batch=batch,
                                            precision=precision, gpu=gpu).peak
                clean()
                try:
                    measured: int | None = bench_peak(name, batch, precision)
                except torch.cuda.OutOfMemoryError:
                    measured = None
                clean()
                error = ("out of memory" if measured is None
                         else f"{100 * (predicted - measured) / measured:+.1f}%")
                line = (f"| {name} | {precision} | {batch} | {predicted / 2**20:,.1f} MiB | "
                        + (f"{measured / 2**20:,.1f} MiB" if measured is not None else "—")
                        + f" | {error} |")
                lines.append(line)
                print(line, flush=True)
    return lines


def wall(args: list[str], runs: int) -> float:
    """Median wall time of ``archscope ARGS`` in a fresh process, output discarded."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archscope", *args], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(runs: int) -> None:
    memory = wall(["memory", "resnet50", "--batch", "256"], runs)
    summary = wall(["summary", "resnet50", "--batch", "256"], runs)
    print(f"\narchscope memory resnet50 --batch 256: {memory:.2f} s (median of {runs})")
    print(f"archscope summary resnet50 --batch 256: {summary:.2f} s (median of {runs})")
    print(f"ratio {memory / summary:.2f}× (target ≤ 2×)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: the whole zoo")
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--runs", type=int, default=5, help="timing runs (default 5)")
    parser.add_argument("--timing-only", action="store_true",
                        help="only time memory against summary (no GPU needed)")
    args = parser.parse_args()
    if not args.timing_only:
        import torch

        if not torch.cuda.is_available():
            print("memory_accuracy.py: the accuracy table needs a CUDA GPU (torch "
                  f"{torch.__version__} sees none); --timing-only times the commands alone",
                  file=sys.stderr)
            return 1
        from archscope.registry import model_names

        accuracy_table(args.models or model_names(), args.precisions)
    timing(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
