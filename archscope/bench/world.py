"""Which process this is in a data-parallel benchmark, and how it reaches the others.

``torchrun`` (``python -m torch.distributed.run``), and ``archscope bench --nproc`` through the same
launcher, start one process per GPU and tell each who it is in environment variables:
``RANK`` (0 … ``WORLD_SIZE``-1 over every node), ``LOCAL_RANK`` (its GPU on this node),
``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, and ``MASTER_ADDR``/``MASTER_PORT`` for the rendezvous.
:func:`detect_world` reads them; :func:`rank_device` picks the rank's device (``cuda:LOCAL_RANK``,
or the CPU); :func:`process_group` joins the others (NCCL on CUDA, gloo on the CPU) with a
timeout, so a rank that hangs ends the run instead of blocking it forever; :func:`lost_contact`
tells a collective that failed because of another rank apart from this rank's own failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archscope.errors import ArchscopeError

if TYPE_CHECKING:
    import torch

#: How long a collective waits for the other ranks before it fails (``--timeout``).
DEFAULT_TIMEOUT_S = 300.0

#: What torchrun sets for every worker; all three mean "this process is one rank of several".
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


class DistributedError(ArchscopeError):
    """A data-parallel run that cannot start: a partial torchrun environment, ``--nproc`` under
    torchrun, more processes than GPUs, an option that several processes cannot share."""


class RankFailure(ArchscopeError):
    """One rank's failure, which ends every rank: ``rank 1: <model>: <reason>``.

    Attributes:
        rank: the rank that failed.
        reason: the one-line reason, without the rank.
        kind: ``"failed"`` (this rank's own failure: a broken model, out of memory, an exception
            in its step), ``"lost"`` (a collective failed because another rank stopped: that rank
            says why) or ``"timeout"`` (a collective waited past the timeout: a rank hung).
    """

    def __init__(self, rank: int, reason: str, kind: str = "failed") -> None:
        super().__init__(f"rank {rank}: {reason}")
        self.rank = rank
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a data-parallel run."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints (under torchrun) and whose device names the run."""
        return self.rank == 0


def detect_world(environ: Mapping[str, str] | None = None) -> World | None:
    """The rank this process is, from torchrun's environment; ``None`` outside torchrun.

    Raises:
        DistributedError: some of ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` are set but not all,
            one is not a number, the rank is outside the world, or ``MASTER_ADDR`` /
            ``MASTER_PORT`` (the rendezvous) are missing.
    """
    env = os.environ if environ is None else environ
    present = [name for name in RANK_VARIABLES if name in env]
    if not present:
        return None
    missing = [name for name in RANK_VARIABLES if name not in env]
    if missing:
        raise DistributedError(
            f"{', '.join(present)} set but {', '.join(missing)} not: a partial torchrun "
            "environment; launch with torchrun --nproc-per-node N -m archscope bench … or "
            "archscope bench --nproc N"
        )
    values = {name: _integer(env, name) for name in (*RANK_VARIABLES, "LOCAL_WORLD_SIZE")
              if name in env}
    world = values["WORLD_SIZE"]
    local_world = values.get("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= values["RANK"] < world:
        raise DistributedError(f"RANK={values['RANK']} is outside WORLD_SIZE={world}; "
                               "launch with torchrun rather than setting them by hand")
    if not 0 <= values["LOCAL_RANK"] < max(local_world, 1):
        raise DistributedError(f"LOCAL_RANK={values['LOCAL_RANK']} is outside "
                               f"LOCAL_WORLD_SIZE={local_world}")
    rendezvous = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if rendezvous:
        raise DistributedError(f"{' and '.join(rendezvous)} not set: the ranks cannot meet; "
                               "launch with torchrun, which sets them")
    return World(rank=values["RANK"], local_rank=values["LOCAL_RANK"], world_size=world,
                 local_world_size=local_world)


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise DistributedError(f"{name}={env[name]!r} is not a number") from None


def rank_device(world: World, requested: str) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` (``auto`` with CUDA, or ``cuda``),
    else the CPU.

    Raises:
        DistributedError: ``cuda:N`` named for several ranks (each takes its GPU from
            ``LOCAL_RANK``).
        RankFailure: this rank's ``LOCAL_RANK`` has no GPU (more ranks than GPUs on the node).
        DeviceError: ``cuda`` without CUDA, or an unknown device (as for one process).
    """
    import torch

    from archscope.devices import resolve_device

    device = resolve_device(requested)
    if device.type != "cuda":
        return device
    if device.index is not None and world.world_size > 1:
        raise DistributedError(
            f"--device {requested}: with several processes each rank takes its GPU from "
            "LOCAL_RANK; pass --device cuda"
        )
    if device.index is not None:
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise RankFailure(world.rank, f"LOCAL_RANK {world.local_rank} has no GPU: this node has "
                                      f"{count}; run at most {count} processes per node")
    return torch.device("cuda", world.local_rank)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(world: World, device: torch.device, timeout_s: float) -> Iterator[str]:
    """Join the other ranks (``env://``: torchrun's ``MASTER_ADDR``/``MASTER_PORT``) for the
    block; yields the backend's name.

    Every collective waits at most ``timeout_s`` seconds for the others. A process group the
    caller already made is used as it is and left alone. Ours is destroyed when the block ends
    normally; after a failure it is not (destroying a group whose collectives failed can block on
    NCCL), and the process is expected to exit.
    """
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed")
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and all_gather_object use the current device
    if dist.is_initialized():
        yield str(dist.get_backend())
        return
    dist.init_process_group(backend, rank=world.rank, world_size=world.world_size,
                            timeout=timedelta(seconds=timeout_s))
    yield backend
    dist.destroy_process_group()


# What gloo says when the rank at the other end of a socket is gone, and when it waited too long
# (third_party/gloo/gloo/transport/tcp/pair.cc, unbound_buffer.cc); NCCL raises DistBackendError.
_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
         "remote process exited", "NCCL communicator was aborted")
_TIMEOUT = ("Timed out waiting", "timed out", "Watchdog caught collective operation timeout")


def lost_contact(exc: BaseException) -> str | None:
    """``"timeout"`` or ``"lost"`` when ``exc`` is a collective that failed because of another
    rank (it waited past the timeout; the rank at the other end is gone), else ``None``."""
    import torch.distributed as dist

    text = str(exc)
    if any(marker in text for marker in _TIMEOUT):
        return "timeout"
    if any(marker in text for marker in _LOST):
        return "lost"
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return "lost"
    return None


def contact_reason(kind: str, timeout_s: float) -> str:
    """The one-line reason for a rank whose collective failed because of another rank."""
    if kind == "timeout":
        return (f"waited {timeout_s:g} s (--timeout) for the other ranks in a collective: one of "
                "them hung or is far slower; raise --timeout if that is expected")
    return "lost contact with another rank, which stopped first (its line says why)"
