"""Short training benchmarks: how fast, how big and how close to the hardware limit a model trains.

``run_bench(["resnet50"], BenchConfig(device="cuda"))`` builds each model on the device, trains it
on one fixed synthetic batch (random images and labels, made on the device once and repeated, so a
model that learns must drive the loss down) and returns one :class:`BenchResult` per model. Nothing
is printed; :mod:`archscope.render.bench` renders the results for the ``archscope bench`` command.

How the timing is done (the pattern of nanoGPT's ``bench.py`` and ``torch.utils.benchmark``):

* warm-up steps run first and are discarded (cuDNN autotuning, ``torch.compile``, allocator
  growth);
* on CUDA a pair of CUDA events is recorded around every timed step and nothing in the loop waits
  for the GPU: the loss stays on the device (no ``.item()``), the fused optimizers apply
  GradScaler's inf check on the device, and the host synchronizes once after the loop to read the
  events;
* on the CPU, ``time.perf_counter`` (or an injected clock, for tests) brackets every step;
* the report gives the median and the 90th percentile of the step times, images/s = batch ÷ median,
  and achieved FLOP/s = the engine's training FLOPs per step (forward + backward, from
  :func:`archscope.engine.inspect` of the model being benchmarked, on the meta device) ÷ the median
  step time;
* ``optimizer.zero_grad(set_to_none=True)`` frees gradients between steps, as a good loop does.

Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps (the counter is reset after
warm-up), shown beside the step's predicted peak (:func:`archscope.memory.training_memory` of the
same step, :func:`~archscope.bench.run.predicted_peak`), which also refuses a batch the device has
no room for before it runs.

The modules, in the order a step is taken: :mod:`~archscope.bench.run` (the loop, first in its
file, and the per-model orchestration), :mod:`~archscope.bench.plan` (config → plan: device
defaults, precision, backend flags), :mod:`~archscope.bench.batch` (batch search, the 2³¹-element
cap), :mod:`~archscope.bench.trainer` (the training step), :mod:`~archscope.bench.timers`
(host-clock and CUDA-event timers, percentile) and :mod:`~archscope.bench.results` (the result
schema).

On several GPUs (``torchrun``, or ``archscope bench --nproc N``): :mod:`~archscope.bench.ddp`
runs the same loop in every rank under ``DistributedDataParallel`` (``run_distributed``),
:mod:`~archscope.bench.world` says which rank this process is and joins the others,
:mod:`~archscope.bench.launch` starts the ranks as torchrun does (``launch_bench``) and
:class:`~archscope.bench.results.DataParallel` holds every rank's figures.
"""

from __future__ import annotations

from archscope.bench.batch import find_max_batch, halve_until_fits
from archscope.bench.ddp import run_distributed
from archscope.bench.launch import launch_bench
from archscope.bench.plan import (
    DEFAULT_MODELS,
    OPTIMIZERS,
    BenchConfig,
    BenchPlan,
    backend_flags,
    default_batch,
    default_precision,
    make_plan,
    tf32_flags,
)
from archscope.bench.results import BenchResult, BenchRun, DataParallel, failed_result
from archscope.bench.run import Progress, bench_model, bench_subject, run_bench
from archscope.bench.timers import Clock, percentile
from archscope.bench.trainer import TrainingError, nothing_to_train, step_failure
from archscope.bench.world import DistributedError, RankFailure, World, detect_world

__all__ = [
    "DEFAULT_MODELS", "OPTIMIZERS", "BenchConfig", "BenchPlan", "BenchResult", "BenchRun", "Clock",
    "DataParallel", "DistributedError", "Progress", "RankFailure",
    "TrainingError", "World", "backend_flags", "bench_model", "bench_subject", "default_batch",
    "default_precision", "detect_world", "failed_result",
    "find_max_batch", "halve_until_fits", "launch_bench", "make_plan", "nothing_to_train",
    "percentile", "run_bench", "run_distributed", "step_failure", "tf32_flags",
]
