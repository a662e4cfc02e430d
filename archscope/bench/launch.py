"""``archscope bench --nproc N``: start N ranks on this node the way torchrun does, and bring rank
0's results back.

The ranks are started by ``torch.distributed.run``'s own launcher, called as a function:
``torch.distributed.launcher.api.elastic_launch``, which is what ``torchrun`` runs after parsing
its command line. Each worker gets the environment torchrun gives it (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``) from the same elastic agent and the same
``--standalone`` rendezvous (c10d on a free local port), and runs the same code as under
torchrun: :func:`~archscope.bench.ddp.run_distributed`. Calling the launcher rather than a
subprocess of ``python -m torch.distributed.run`` gives three things:

* results come back as a value (rank 0's :class:`~archscope.bench.BenchRun`, through the
  agent's return queue), so the launching process renders them like any run, and no worker
  writes to stdout;
* failures come back as data: each failing rank leaves its one line in a file of the run's
  temporary folder, and the agent says which rank exited how; so the user reads one line
  naming the rank and the reason, not torchrun's log and traceback;
* one interpreter and one torch import fewer.

When a rank exits with an error, the agent ends the others at once (``max_restarts=0``); the
collective timeout only bounds a rank that hangs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archscope.bench.ddp import refuse_auto_batch, run_distributed
from archscope.bench.plan import DEFAULT_MODELS, BenchConfig
from archscope.bench.results import BenchRun
from archscope.bench.world import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    RankFailure,
    World,
    detect_world,
)
from archscope.errors import ArchscopeError, DeviceError, first_line

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

#: torch's loggers that report a failed worker with a traceback; quiet while the launcher runs,
#: since the failure becomes one line.
_LAUNCHER_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher",
                     "torch.multiprocessing")


def launch_bench(
    models: Sequence[str] = DEFAULT_MODELS,
    config: BenchConfig | None = None,
    *,
    nproc: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    scaling: bool = False,
) -> BenchRun:
    """Benchmark ``models`` under DDP on ``nproc`` processes of this machine; rank 0's run.

    ``config.batch_size`` is the per-process (per-GPU) batch. On CUDA each process takes one
    GPU (``cuda:LOCAL_RANK``); on the CPU they share the cores (each gets its share of threads
    unless ``OMP_NUM_THREADS`` says otherwise).

    Raises:
        RankFailure: a rank failed; the message names it and says why (``rank 1: …``).
        ArchscopeError: what every rank met alike (a model that cannot be built …), as one
            process would say it.
        DistributedError: ``nproc`` below 1, already under torchrun, ``--batch-size auto``.
        DeviceError: fewer GPUs than processes, or no CUDA for ``--device cuda``.
        UnknownModelError: an unknown model name, before any process starts.
    """
    import torch.distributed as dist

    from archscope.registry import check_names

    if nproc < 1:
        raise DistributedError(f"--nproc {nproc}: needs at least one process")
    world = detect_world()
    if world is not None:
        raise DistributedError(
            f"this process is already rank {world.rank} of {world.world_size} under torchrun; "
            "drop --nproc (torchrun started the processes)"
        )
    check_names(models)
    config = config or BenchConfig()
    refuse_auto_batch(config.batch_size)
    _check_devices(config.device, nproc)
    if not dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed")
    with tempfile.TemporaryDirectory(prefix="archscope-ddp-") as folder, _quiet_launcher():
        returned = _launch(folder, nproc, list(models), config, timeout_s, scaling)
    run = returned.get(0)
    if not isinstance(run, BenchRun):  # pragma: no cover - rank 0 returns its run or fails
        raise DistributedError("rank 0 ended without results")
    return run


def _launch(folder: str, nproc: int, models: list[str], config: BenchConfig, timeout_s: float,
            scaling: bool) -> dict[int, Any]:
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torchrun --standalone --nproc-per-node N --max-restarts 0: one node, a c10d rendezvous on a
    # free local port, a fresh run id, no restart after a failure.
    launch = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"archscope-{uuid.uuid4().hex}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
        monitor_interval=0.1, start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=os.path.join(folder, "logs")),
    )
    try:
        with _kept_signal_handlers():  # the agent installs its own and leaves them
            returned: dict[int, Any] = elastic_launch(launch, _worker)(
                models, config, timeout_s, scaling, folder)
    except ChildFailedError as exc:
        raise one_failure(folder, exc) from None
    except SignalException:  # Ctrl-C or SIGTERM reached the launcher: the workers are ended
        raise KeyboardInterrupt from None
    except Exception as exc:  # the rendezvous or the agent itself
        raise DistributedError(
            f"could not start {nproc} processes: {type(exc).__name__}: {first_line(exc)}"
        ) from None
    return returned


def _worker(models: list[str], config: BenchConfig, timeout_s: float, scaling: bool,
            folder: str) -> BenchRun | None:
    """One rank, started by the launcher: run the benchmark; rank 0 returns the run.

    A failure is written to ``folder`` as this rank's one line, and the process exits with 1
    (no traceback: it is the launcher that tells the user).
    """
    world = detect_world()
    if world is None:  # pragma: no cover - the agent always sets the environment
        raise DistributedError("a launcher worker without RANK/WORLD_SIZE")
    _share_cores(world)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # a model's prints are not results
            run = run_distributed(models, config, world=world, timeout_s=timeout_s,
                                  scaling=scaling)
    except RankFailure as exc:
        _write_failure(folder, exc.rank, exc.kind, exc.reason)
        raise SystemExit(1) from None
    except ArchscopeError as exc:  # the same in every rank (the options, a model's build)
        _write_failure(folder, world.rank, "every rank", str(exc), exc.exit_code)
        raise SystemExit(1) from None
    return run if world.is_main else None


def _share_cores(world: World) -> None:
    """Give each of this node's ranks its share of the CPU threads, unless the user chose."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, world.local_world_size)))


def _write_failure(folder: str, rank: int, kind: str, reason: str, exit_code: int = 1) -> None:
    path = Path(folder) / f"rank{rank}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"rank": rank, "kind": kind, "reason": reason,
                                     "exit_code": exit_code, "time": time.time()}),
                         encoding="utf-8")
    os.replace(temporary, path)  # the launcher never reads half a file


def one_failure(folder: str, exc: ChildFailedError) -> ArchscopeError:
    """The one line that says why the run ended.

    A rank's own failure first (the earliest, then the lowest rank); then an error every rank
    met alike (the options, a model that cannot be built), without a rank; then a rank that
    died without saying why (a signal: killed for host memory, a crash in native code); then a
    rank that timed out waiting, and last one that only lost contact.
    """
    reports = []
    for path in sorted(Path(folder).glob("rank*.json")):
        with contextlib.suppress(OSError, ValueError):
            reports.append(json.loads(path.read_text(encoding="utf-8")))

    def first(kind: str) -> dict[str, Any] | None:
        of_kind = [r for r in reports if r.get("kind") == kind]
        return min(of_kind, key=lambda r: (r["time"], r["rank"])) if of_kind else None

    own = first("failed")
    if own is not None:
        return RankFailure(own["rank"], own["reason"], "failed")
    alike = first("every rank")
    if alike is not None:
        error = ArchscopeError(alike["reason"])
        error.exit_code = int(alike.get("exit_code", 1))
        return error
    said = {r["rank"] for r in reports}
    silent = {rank: failure for rank, failure in exc.failures.items() if rank not in said}
    if silent:  # SIGTERM last: the agent sends it to the ranks still running after a failure
        rank = min(silent, key=lambda r: (silent[r].signal_name() == "SIGTERM",
                                          silent[r].timestamp, r))
        return RankFailure(rank, _how_it_ended(silent[rank]), "failed")
    report = first("timeout") or first("lost")
    if report is not None:
        return RankFailure(report["rank"], report["reason"], report["kind"])
    rank, failure = exc.get_first_failure()  # pragma: no cover - a failure always says something
    return RankFailure(rank, _how_it_ended(failure), "failed")


def _how_it_ended(failure: Any) -> str:
    """A rank that exited without leaving its line: its exit code or signal, and what it said."""
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()} before it could say why"
        if failure.signal_name() == "SIGKILL":
            how += " (out of host memory?)"
    else:
        how = f"exited with code {failure.exitcode} before it could say why"
    message = str(failure.message or "")
    if message and "elastic/errors.html" not in message and "Signal" not in message:
        how += f": {first_line(message, 200)}"
    return how


def _check_devices(requested: str, nproc: int) -> None:
    """Enough GPUs for ``nproc`` processes when the run is on CUDA, before any starts."""
    import torch

    from archscope.devices import resolve_device

    device = resolve_device(requested)
    if device.type != "cuda":
        return
    if device.index is not None and nproc > 1:
        raise DistributedError(f"--device {requested}: each process takes its GPU from "
                               "LOCAL_RANK; pass --device cuda")
    count = torch.cuda.device_count()
    if nproc > count:
        raise DeviceError(f"--nproc {nproc} needs {nproc} GPUs, one per process; this machine "
                          f"has {count}: pass --nproc {count} (or --device cpu)")


@contextlib.contextmanager
def _kept_signal_handlers() -> Iterator[None]:
    """Put back the caller's signal handlers, which the elastic agent replaces with its own
    (torch/distributed/elastic/multiprocessing/api.py, ``PContext.start``)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # the agent installs none outside the main thread
        return
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]
    saved = [(number, signal.getsignal(number)) for number in numbers]
    try:
        yield
    finally:
        for number, handler in saved:
            if handler is not None:
                signal.signal(number, handler)


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """Silence torch's launcher loggers for the run, and restore their levels."""
    loggers = [logging.getLogger(name) for name in _LAUNCHER_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
