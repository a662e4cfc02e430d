"""``archscope bench`` on several processes: its options (``--nproc``, ``--scaling``,
``--timeout``) and the two ways such a run reaches the user.

* ``archscope bench --nproc N …`` launches N ranks here (:func:`archscope.bench.launch.launch_bench`)
  and renders rank 0's results like any run; a failed rank is one ``Error: rank R: …`` line.
* ``torchrun --nproc-per-node N -m archscope bench …`` runs this command in every rank
  (:func:`archscope.bench.ddp.run_distributed`): rank 0 prints the results, the others print
  nothing; a rank that fails prints its one line, and a rank that only lost contact with it
  exits quietly (torchrun then reports which worker failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from archscope.bench import BenchConfig, BenchRun

#: mirrors archscope.bench.world.DEFAULT_TIMEOUT_S (not imported: --help stays free of the
#: library's imports); a test keeps them equal.
DEFAULT_TIMEOUT_S = 300.0


def distributed_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--nproc``, ``--scaling/--no-scaling`` and ``--timeout``."""
    options = [
        click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Train on N processes of this machine, one GPU each (or the CPU), "
                          "under DistributedDataParallel, launched as torchrun would; "
                          "--batch-size is then per GPU."),
        click.option("--scaling/--no-scaling", default=False, show_default=True,
                     help="With several processes: run each model on one process first and "
                          "report the scaling efficiency."),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
                     default=DEFAULT_TIMEOUT_S, show_default=True, metavar="SECONDS",
                     help="With several processes: how long a rank waits for the others in a "
                          "collective before the run fails."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def several_processes(nproc: int | None, scaling: bool) -> bool:
    """Is this a data-parallel run (``--nproc``, or a rank under torchrun)?

    Raises:
        click.UsageError: ``--nproc`` under torchrun, or ``--scaling`` on one process.
    """
    from archscope.bench.world import detect_world

    world = detect_world()
    if world is not None and nproc is not None:
        raise click.UsageError(
            f"--nproc: this process is already rank {world.rank} of {world.world_size} under "
            "torchrun; drop --nproc"
        )
    if world is None and nproc is None:
        if scaling:
            raise click.UsageError("--scaling compares several processes with one: pass "
                                   "--nproc N, or launch with torchrun")
        return False
    return True


def run_several(names: Sequence[str], config: BenchConfig, *, nproc: int | None, scaling: bool,
                timeout_s: float, progress_bar: Callable[[], Any]) -> BenchRun | None:
    """Run the data-parallel benchmark; the run to print, or ``None`` in a rank that prints
    nothing (under torchrun, every rank but 0).

    Raises:
        click.UsageError: ``--batch-size auto``.
        click.exceptions.Exit: a rank other than 0 whose run failed (exit code 1), or that met
            an error every rank meets, or a rank that only lost contact with a failed one
            (quietly: rank 0, or the rank that failed, says why).
        RankFailure: this rank's own failure, as one line.
        ArchscopeError: in rank 0, an error every rank meets alike.
    """
    from archscope.bench.ddp import run_distributed
    from archscope.bench.launch import launch_bench
    from archscope.bench.world import RankFailure, detect_world
    from archscope.errors import ArchscopeError

    if config.batch_size == "auto":
        raise click.UsageError("--batch-size auto searches one GPU's memory; with several "
                               "processes pass the batch per GPU (find it on one GPU with "
                               "--batch-size auto)")
    if nproc is not None:
        return launch_bench(names, config, nproc=nproc, timeout_s=timeout_s, scaling=scaling)
    world = detect_world()
    assert world is not None  # several_processes said so
    try:
        if world.is_main:
            with progress_bar() as progress:
                run = run_distributed(names, config, world=world, timeout_s=timeout_s,
                                      scaling=scaling, progress=progress)
        else:
            run = run_distributed(names, config, world=world, timeout_s=timeout_s,
                                  scaling=scaling)
    except RankFailure as exc:
        if exc.kind == "lost":  # the rank that failed first says why
            raise click.exceptions.Exit(1) from None
        raise
    except ArchscopeError as exc:  # alike in every rank (the options, a model's build)
        if world.is_main:
            raise
        raise click.exceptions.Exit(exc.exit_code) from None
    if world.is_main:
        return run
    if not run.ok:
        raise click.exceptions.Exit(1)  # the same exit code in every rank; rank 0 says why
    return None
