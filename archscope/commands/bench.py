"""``archscope bench``: short training benchmarks on synthetic data (see :mod:`archscope.bench`)."""

from __future__ import annotations

from typing import Any

import click

from archscope._io import echo
from archscope.commands._bench_ddp import distributed_options, run_several, several_processes
from archscope.commands._common import (
    ResultsCommand,
    engine_options,
    format_option,
    freeze_option,
    head_options,
    input_option,
    num_classes_option,
)
from archscope.devices import PRECISIONS  # no torch import
from archscope.render.bench import FORMATS


class BatchSizeType(click.ParamType):
    """A positive integer or ``auto``."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            number = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
        if number < 1:
            self.fail(f"{value!r} must be at least 1", param, ctx)
        return number


@click.command("bench", cls=ResultsCommand)
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available), cuda, cuda:N or cpu.")
@click.option("--batch-size", type=BatchSizeType(), default=None,
              help="Batch per step, or 'auto' for the largest that fits in GPU memory "
                   "(default: per model and device, e.g. resnet50 256 on CUDA, 4 on the CPU).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Timed steps (default: 200 on CUDA, 5 on the CPU).")
@click.option("--warmup", type=click.IntRange(min=0), default=None,
              help="Discarded warm-up steps (default: 20 on CUDA, 1 on the CPU).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="fp32 (IEEE), tf32, bf16 or fp16 autocast (default: bf16 on CUDA, fp32 on CPU).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format (default: on for CUDA, off on the CPU).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True,
              help="Wrap the model in torch.compile (compiles during warm-up).")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd",
              show_default=True, help="SGD with momentum 0.9, or AdamW.")
@click.option("--peak-tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The device's peak TFLOP/s at this precision, for MFU "
                   "(default: looked up for known GPUs).")
@input_option
@engine_options(trace=False)
@num_classes_option
@distributed_options
@head_options
@freeze_option
@format_option(FORMATS)
def bench(models: tuple[str, ...], device: str, batch_size: int | str | None, steps: int | None,
          warmup: int | None, precision: str | None, channels_last: bool | None, compile_: bool,
          optimizer: str, peak_tflops: float | None, input_shape: tuple[int, ...] | None,
          dtype: str | None, num_classes: int | None, nproc: int | None, scaling: bool, timeout_s: float,
          head: str | None, base: str | None, freeze: tuple[str, ...],
          fmt: str) -> None:
    """Train MODELs for a few steps on a repeated synthetic batch and report speed and memory.

    With no MODEL: lecture_mnist_cnn, alexnet, vgg16 and resnet50 at their natural input sizes.
    Reports images/s, step time (median, p90), peak GPU memory beside archscope's estimate,
    achieved TFLOP/s, MFU and the first and last loss. A model whose loss does not fall on the
    repeated batch, whose training step raises or that has no trainable parameters is a FAILED
    benchmark (exit code 1); the other models still run. Results go to stdout, progress to stderr.

    On several GPUs: --nproc N, or torchrun --nproc-per-node N -m archscope bench, trains under
    DistributedDataParallel at --batch-size per GPU and reports the global img/s (and, with
    --scaling, the efficiency against one process); a rank that fails stops every rank.

    \b
    Examples:
      archscope bench --device cuda
      archscope bench resnet50 --batch-size 256 --compile
      archscope bench vgg16 --batch-size auto --precision bf16
      archscope bench my_net.py:Net --input 3x64x64 --precision fp32 --format json > bench.json
      archscope bench lecture_mnist_cnn --device cpu --steps 3
      archscope bench my_lm.py:TinyLM --input 128 --dtype long --batch-size 32
      archscope bench resnet50 --nproc 8 --batch-size 256 --scaling
      archscope bench vgg16 --input 3x150x150 --head 'flatten dense256 relu dense1' --freeze features
    """
    from archscope.bench import DEFAULT_MODELS, BenchConfig, run_bench
    from archscope.render.bench import failure_reason, render_bench

    config = BenchConfig(
        device=device, batch_size=batch_size,  # type: ignore[arg-type]
        steps=steps, warmup=warmup, precision=precision, channels_last=channels_last,
        compile=compile_, optimizer=optimizer, peak_tflops=peak_tflops,
        num_classes=num_classes, input_shape=input_shape, head=head, base=base,
        freeze=tuple(freeze), dtype=dtype,
    )
    names = list(models) or list(DEFAULT_MODELS)
    if several_processes(nproc, scaling):
        several = run_several(names, config, nproc=nproc, scaling=scaling, timeout_s=timeout_s,
                              progress_bar=_ProgressBar)
        if several is None:  # a torchrun rank other than 0: rank 0 prints
            return
        run = several
    else:
        with _ProgressBar() as progress:
            run = run_bench(names, config, progress=progress)
    echo(render_bench(run, fmt), nl=False)
    failed = [r for r in run.results if not r.ok]
    for r in failed:
        click.echo(f"FAILED: {r.model}: {failure_reason(r)}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


class _ProgressBar:
    """A rich progress bar on stderr, one task per model; yields the library's callback."""

    def __enter__(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("steps"), console=console, transient=True,
            disable=not console.is_terminal,  # no bar frames in logs or captured stderr
        )
        self._progress.__enter__()
        self._tasks: dict[str, Any] = {}

        def callback(model: str, done: int, total: int) -> None:
            task = self._tasks.get(model)
            if task is None:
                task = self._tasks[model] = self._progress.add_task(model, total=total)
            self._progress.update(task, completed=done)

        return callback

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)
