"""``archscope bench`` on several processes: DistributedDataParallel through torchrun's launcher.

The CPU path is tested for real: two processes on gloo (``--nproc 2 --device cpu``). Their losses
are checked against a data-parallel step written out by hand in the test (two shards, the mean
of their losses, one SGD step), DDP's own bucket sizes against the parameter bytes, and the
figures of the JSON against each other. A model that fails on rank 1 only ends the run with
one line. The ``gpu`` test runs one process through the same path on CUDA (skipped here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from archscope.bench import BenchConfig, BenchResult, BenchRun, run_bench
from archscope.bench.ddp import ddp_bucket_bytes, ddp_estimate_bytes, param_digest, run_distributed
from archscope.bench.launch import one_failure
from archscope.bench.results import DataParallel
from archscope.bench.trainer import Trainer
from archscope.bench.world import (
    DEFAULT_TIMEOUT_S,
    DistributedError,
    RankFailure,
    World,
    detect_world,
    lost_contact,
)
from archscope.cli import main
from archscope.commands import _bench_ddp
from archscope.render.bench import render_table
from archscope.report import TrainingPeak
from archscope.source import resolve

FIXTURES = Path(__file__).parent / "fixtures"
TORCHRUN_ENV = {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}

# --------------------------------------------------------------------------------------------
# torchrun's environment
# --------------------------------------------------------------------------------------------


def test_no_torchrun_environment_is_one_process() -> None:
    assert detect_world({"PATH": "/usr/bin"}) is None


def test_torchrun_environment_gives_the_rank() -> None:
    assert detect_world(TORCHRUN_ENV) == World(rank=1, local_rank=1, world_size=2,
                                               local_world_size=2)
    two_nodes = {**TORCHRUN_ENV, "RANK": "3", "WORLD_SIZE": "4"}  # rank 3 = node 1, GPU 1
    world = detect_world(two_nodes)
    assert world is not None and (world.rank, world.local_rank, world.is_main) == (3, 1, False)


@pytest.mark.parametrize(("change", "message"), [
    ({"RANK": None}, "LOCAL_RANK, WORLD_SIZE set but RANK not"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a number"),
    ({"RANK": "2"}, "RANK=2 is outside WORLD_SIZE=2"),
    ({"LOCAL_RANK": "5"}, "LOCAL_RANK=5 is outside LOCAL_WORLD_SIZE=2"),
    ({"MASTER_PORT": None}, "MASTER_PORT not set"),
])
def test_a_broken_torchrun_environment_is_one_line(change: dict[str, str | None],
                                                    message: str) -> None:
    env = {k: v for k, v in {**TORCHRUN_ENV, **change}.items() if v is not None}
    with pytest.raises(DistributedError, match="^" + message.replace("(", r"\(")):
        detect_world(env)


def test_the_command_default_timeout_is_the_library_s() -> None:
    assert _bench_ddp.DEFAULT_TIMEOUT_S == DEFAULT_TIMEOUT_S


def test_gloo_and_nccl_failures_of_another_rank_are_told_apart() -> None:
    # gloo's own messages (third_party/gloo/gloo/transport/tcp/pair.cc, unbound_buffer.cc), as
    # seen when the other rank exited, or hung past a 3 s timeout
    closed = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
                          "by peer [127.0.0.1]:1409")
    waited = RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:129] Timed out waiting 3000ms "
                          "for send operation to complete")
    assert lost_contact(closed) == "lost"
    assert lost_contact(waited) == "timeout"
    assert lost_contact(torch.distributed.DistBackendError("NCCL error")) == "lost"
    assert lost_contact(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


# --------------------------------------------------------------------------------------------
# Command-line usage
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--scaling"], {}, "--scaling compares several processes with one"),
    (["--nproc", "2"], TORCHRUN_ENV, "--nproc: this process is already rank 1 of 2"),
    (["--nproc", "2", "--batch-size", "auto"], {}, "--batch-size auto searches one GPU's memory"),
    (["--nproc", "0"], {}, "Invalid value for '--nproc'"),
])
def test_usage_errors_are_one_line_with_exit_2(args: list[str], env: dict[str, str],
                                               message: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["bench", "lecture_mnist_cnn", "--device", "cpu", *args])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert message in line


def test_a_partial_torchrun_environment_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    result = CliRunner().invoke(main, ["bench", "lecture_mnist_cnn", "--device", "cpu"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: WORLD_SIZE set but RANK, LOCAL_RANK not")


# --------------------------------------------------------------------------------------------
# The figures, from hand-made numbers
# --------------------------------------------------------------------------------------------


def _result(**kw: Any) -> BenchResult:
    fields: dict[str, Any] = {
        "model": "m", "input_shape": (1, 28, 28), "device": "cpu", "device_name": "cpu",
        "batch": 8, "batch_source": "given", "precision": "fp32", "channels_last": False,
        "compiled": False, "optimizer": "sgd", "steps": 4, "warmup": 2,
        "step_ms": (25.0,) * 4, "span_ms": 100.0, "training_flops": None, "peak_tflops": None,
        "peak_source": None, "peak_memory_bytes": None, "memory_estimate": None,
        "losses": (2.5, 2.4, 2.3, 2.2, 2.1, 2.0),
    }
    fields.update(kw)
    return BenchResult(**fields)


def _two_ranks(single: BenchResult | None = None) -> BenchResult:
    """Rank 0: four 25 ms steps in a 100 ms span; rank 1: four 30 ms steps in a 125 ms span."""
    data_parallel = DataParallel(
        world_size=2, backend="gloo", timeout_s=60.0,
        rank_step_ms=((25.0,) * 4, (30.0,) * 4), rank_span_ms=(100.0, 125.0),
        rank_peak_memory_bytes=(None, None), rank_losses=((2.6,) * 6, (2.4,) * 6),
        rank_param_digests=("ab", "ab"), bucket_bytes=(1000, 3000), ddp_estimate_bytes=4000,
        single=single,
    )
    estimate = TrainingPeak(peak=62_064, batch=8, device="cpu", optimizer_impl="for-loop")
    return _result(step_ms=(25.0,) * 4 + (30.0,) * 4, span_ms=125.0, memory_estimate=estimate,
                   data_parallel=data_parallel)


def test_global_and_per_rank_figures_and_the_scaling_efficiency() -> None:
    # one process: 4 steps × batch 8 = 32 images in 50 ms → 640 img/s
    single = _result(step_ms=(12.5,) * 4, span_ms=50.0)
    r = _two_ranks(single)
    dp = r.data_parallel
    assert dp is not None
    assert dp.global_batch(8) == 16
    # every rank's images, 2 × 4 × 8 = 64, over the slowest span, 125 ms
    assert dp.global_images_per_s(8) == pytest.approx(64 / 0.125) == 512.0
    assert r.images_per_s_overall == pytest.approx(512.0)
    assert dp.per_rank_images_per_s(8) == pytest.approx(256.0)
    assert dp.scaling_efficiency(8) == pytest.approx(512 / (2 * 640))  # 0.4
    assert dp.slowest_rank == 1 and dp.params_identical
    assert r.median_ms == pytest.approx(27.5)  # the eight steps together: 25 ×4, 30 ×4
    # the estimate adds DDP's buckets to one process's predicted peak: 62,064 + 4,000
    assert r.estimated_memory_bytes == 66_064
    data = r.to_dict()["data_parallel"]
    assert (data["global_batch"], data["world_size"], data["slowest_rank"]) == (16, 2, 1)
    assert data["scaling_efficiency"] == pytest.approx(0.4)
    assert data["single_process"]["images_per_s_overall"] == pytest.approx(640.0)


def test_one_process_results_keep_their_json_keys() -> None:
    run = BenchRun("cpu", "cpu", "2.13.0", None, (_result(),))
    assert "data_parallel" not in run.to_dict()["results"][0]
    assert "world_size" not in run.to_dict() and "backend" not in run.to_dict()


def test_the_table_of_a_data_parallel_run() -> None:
    single = _result(step_ms=(12.5,) * 4, span_ms=50.0)
    run = BenchRun("cpu", "cpu", "2.13.0", None, (_two_ranks(single),), world_size=2,
                   backend="gloo")
    text = render_table(run)
    assert text.startswith("archscope bench on 2 × cpu (cpu), DistributedDataParallel over gloo")
    one, two = (line.split() for line in text.splitlines() if line.startswith(" m "))
    assert one[:7] == ["m", "8", "fp32", "640.0", "640.0", "1", "process"]
    assert two[:6] == ["m", "2", "×", "8", "fp32", "512.0"]
    assert two[6:8] == ["256.0", "40.0%"]
    assert "collective timeout 60 s" in text
    assert "scaling: global img/s ÷ (ranks × the one-process img/s" in text


# --------------------------------------------------------------------------------------------
# What ends a run: the line the launcher shows
# --------------------------------------------------------------------------------------------


def _failures(**exitcodes: int) -> Any:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    failures = {int(rank[1:]): ProcessFailure(local_rank=int(rank[1:]), pid=100 + int(rank[1:]),
                                              exitcode=code, error_file="<N/A>")
                for rank, code in exitcodes.items()}
    return ChildFailedError("archscope", failures)


def _report(folder: Path, rank: int, kind: str, reason: str, when: float) -> None:
    (folder / f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "kind": kind, "reason": reason, "time": when}))


def test_a_rank_s_own_failure_is_the_line_even_after_another_lost_contact(
        tmp_path: Path) -> None:
    _report(tmp_path, 0, "lost", "lost contact with another rank", when=10.0)
    _report(tmp_path, 1, "failed", "m: the training step failed: boom", when=11.0)
    failure = one_failure(str(tmp_path), _failures(r0=1, r1=1))
    assert str(failure) == "rank 1: m: the training step failed: boom"


def test_a_rank_killed_without_a_word_is_named_with_its_signal(tmp_path: Path) -> None:
    _report(tmp_path, 0, "lost", "lost contact with another rank", when=10.0)
    failure = one_failure(str(tmp_path), _failures(r1=-9))
    assert str(failure) == ("rank 1: was killed by SIGKILL before it could say why "
                            "(out of host memory?)")
    # the agent's SIGTERM to the ranks still running is not the cause
    failure = one_failure(str(tmp_path), _failures(r2=-15, r3=-9))
    assert failure.rank == 3


def test_an_error_every_rank_meets_is_said_once_without_a_rank(tmp_path: Path) -> None:
    for rank in (0, 1):
        _report(tmp_path, rank, "every rank", "cannot import nets.py: No module named 'x'",
                when=10.0 + rank)
    failure = one_failure(str(tmp_path), _failures(r0=1, r1=1))
    assert str(failure) == "cannot import nets.py: No module named 'x'"
    assert not isinstance(failure, RankFailure)


def test_a_timeout_is_the_line_when_no_rank_failed_itself(tmp_path: Path) -> None:
    _report(tmp_path, 0, "timeout", "waited 3 s (--timeout)", when=10.0)
    _report(tmp_path, 2, "lost", "lost contact with another rank", when=9.0)
    failure = one_failure(str(tmp_path), _failures(r0=1, r2=1))
    assert (str(failure), failure.kind) == ("rank 0: waited 3 s (--timeout)", "timeout")


# --------------------------------------------------------------------------------------------
# DDP in this process: one rank
# --------------------------------------------------------------------------------------------


@pytest.fixture
def one_rank(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """torchrun's rendezvous variables for a world of one, on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    yield World(rank=0, local_rank=0, world_size=1, local_world_size=1)
    if torch.distributed.is_initialized():  # a failed run leaves its group
        torch.distributed.destroy_process_group()


def test_one_rank_under_ddp_trains_as_one_process_does(one_rank: World) -> None:
    """DDP over one rank averages nothing: the same losses as the one-process loop, exactly."""
    config = BenchConfig(device="cpu", batch_size=4, steps=2, warmup=2)
    alone = run_bench(["lecture_mnist_cnn"], config).results[0]
    run = run_distributed(["lecture_mnist_cnn"], config, world=one_rank, timeout_s=30)
    assert not torch.distributed.is_initialized()  # the group is gone afterwards
    (r,) = run.results
    assert (run.world_size, run.backend, r.batch) == (1, "gloo", 4)
    assert r.losses == alone.losses and r.ok
    assert r.data_parallel is not None and r.data_parallel.params_identical


def test_token_ids_travel_to_the_ranks(one_rank: World) -> None:
    """--dtype long: every rank trains on token ids, as the one-process loop does."""
    from fixtures import engine_cases

    source = f"{engine_cases.__file__}:TokenClassifier"
    config = BenchConfig(device="cpu", batch_size=4, steps=2, warmup=1, dtype="long")
    alone = run_bench([source], config).results[0]
    (r,) = run_distributed([source], config, world=one_rank, timeout_s=30).results
    assert r.ok and alone.ok and r.losses == alone.losses


def test_ddp_s_buckets_hold_every_trainable_parameter_once(one_rank: World) -> None:
    """The estimate's DDP part against DDP's own Reducer, and against the parameters by hand."""
    from fixtures.ddp_nets import Small

    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    model = Small()
    model.c.weight.requires_grad_(False)  # frozen: DDP leaves it out
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    for _ in range(2):  # the second forward rebuilds the buckets in gradient order
        ddp(torch.randn(2, 1, 8, 8)).sum().backward()
    # conv bias 4, fc 4·6·6·10 + 10 = 1450: 1454 fp32 values (the conv's 36 weights frozen)
    assert ddp_estimate_bytes(model) == (4 + 1450) * 4
    buckets = ddp_bucket_bytes(ddp)
    assert buckets is not None and sum(buckets) == (4 + 1450) * 4


def test_the_parameter_digest_sees_any_change() -> None:
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert param_digest(a) == param_digest(b)
    with torch.no_grad():
        b.bias[1] = torch.nextafter(b.bias[1], torch.tensor(9.0))  # one ulp
    assert param_digest(a) != param_digest(b)


# --------------------------------------------------------------------------------------------
# Two processes on gloo, launched as torchrun does
# --------------------------------------------------------------------------------------------

#: per-rank batch, warm-up and timed steps of the two-process run
BATCH, WARMUP, STEPS = 8, 2, 2


@pytest.fixture(scope="module")
def two_ranks() -> dict[str, Any]:
    """One ``--nproc 2 --scaling`` run of lecture_mnist_cnn on the CPU, read by several tests."""
    result = CliRunner().invoke(main, [
        "bench", "lecture_mnist_cnn", "--device", "cpu", "--nproc", "2", "--scaling",
        "--batch-size", str(BATCH), "--warmup", str(WARMUP), "--steps", str(STEPS),
        "--timeout", "120", "--format", "json",
    ])
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)  # only rank 0's run, once
    return data


def test_two_ranks_train_twice_the_batch(two_ranks: dict[str, Any]) -> None:
    assert (two_ranks["world_size"], two_ranks["backend"], two_ranks["ok"]) == (2, "gloo", True)
    (r,) = two_ranks["results"]
    dp = r["data_parallel"]
    assert (r["batch"], dp["batch_per_rank"], dp["global_batch"]) == (BATCH, BATCH, 2 * BATCH)
    assert len(dp["rank_step_ms"]) == 2 and all(len(s) == STEPS for s in dp["rank_step_ms"])


def test_two_ranks_report_the_same_losses_their_mean(two_ranks: dict[str, Any]) -> None:
    (r,) = two_ranks["results"]
    dp = r["data_parallel"]
    rank0, rank1 = dp["rank_losses"]
    assert rank0 != rank1  # each rank trains on its own shard
    assert dp["losses_identical"] is True
    assert r["losses"] == pytest.approx([(a + b) / 2 for a, b in zip(rank0, rank1, strict=True)],
                                        rel=1e-12)
    assert r["loss_fell"] is True and len(r["losses"]) == WARMUP + STEPS


def test_two_ranks_end_with_identical_parameters(two_ranks: dict[str, Any]) -> None:
    dp = two_ranks["results"][0]["data_parallel"]
    first, second = dp["rank_param_digests"]
    assert first == second and dp["params_identical"] is True


def test_two_ranks_take_the_data_parallel_step_written_out_by_hand(
        two_ranks: dict[str, Any]) -> None:
    """The oracle: rank r's shard is the synthetic batch of seed 0 + r; one step is SGD
    (lr 0.001, momentum 0.9) on the mean of the two shards' cross-entropy losses, which is what
    averaging the two ranks' gradients amounts to."""
    model = resolve("lecture_mnist_cnn", device="cpu", seed=0).model
    shards = []
    for rank in (0, 1):
        data = Trainer(model, input_shape=(1, 28, 28), batch=BATCH, device=torch.device("cpu"),
                       precision="fp32", channels_last=False, compile=False, optimizer="sgd",
                       lr=0.001, seed=rank)
        shards.append((data.x, data.targets[0]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    expected = []
    for _ in range(WARMUP + STEPS):
        loss = sum(F.cross_entropy(model(x), y) for x, y in shards) / 2
        expected.append(float(loss.detach()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert two_ranks["results"][0]["losses"] == pytest.approx(expected, rel=1e-5)


def test_two_ranks_figures_agree_with_each_other(two_ranks: dict[str, Any]) -> None:
    (r,) = two_ranks["results"]
    dp = r["data_parallel"]
    steps = [ms for rank in dp["rank_step_ms"] for ms in rank]
    slowest = max(dp["rank_span_ms"])
    assert dp["rank_span_ms"][dp["slowest_rank"]] == slowest == r["span_ms"]
    assert dp["global_images_per_s"] == pytest.approx(2 * BATCH * STEPS / (slowest / 1000))
    assert dp["per_rank_images_per_s"] == pytest.approx(dp["global_images_per_s"] / 2)
    assert r["step_ms_median"] == pytest.approx(statistics.median(steps))
    assert sorted(r["step_ms"]) == sorted(steps)
    # the estimate adds one copy of every trainable gradient, as DDP's own buckets hold
    params = sum(p.numel() for p in resolve("lecture_mnist_cnn").model.parameters())
    assert dp["ddp_estimate_bytes"] == sum(dp["ddp_bucket_bytes"]) == 4 * params
    assert r["estimated_memory_bytes"] == r["memory_estimate"]["peak"] + 4 * params


def test_scaling_runs_one_process_first(two_ranks: dict[str, Any]) -> None:
    (r,) = two_ranks["results"]
    dp = r["data_parallel"]
    single = dp["single_process"]
    assert "data_parallel" not in single and single["batch"] == BATCH
    assert len(single["step_ms"]) == STEPS and single["loss_fell"] is True
    one = BATCH * STEPS / (single["span_ms"] / 1000)
    assert single["images_per_s_overall"] == pytest.approx(one)
    assert dp["scaling_efficiency"] == pytest.approx(dp["global_images_per_s"] / (2 * one))
    # it started from the built weights, as the two ranks did: the same first loss as rank 0's
    assert single["losses"][0] == pytest.approx(dp["rank_losses"][0][0], rel=1e-6)


@pytest.fixture
def ddp_nets(tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / "ddp_nets.py", tmp_path / "ddp_nets.py")
    return tmp_path


def _archscope(args: list[str], cwd: Path,
               timeout: float = 240) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "archscope", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV})
    return done, time.monotonic() - start


def test_a_rank_that_fails_ends_every_rank_with_one_line(
        ddp_nets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ddp_nets)
    timeout = 120
    start = time.monotonic()
    result = CliRunner().invoke(main, [
        "bench", "ddp_nets.py:FailsOnRank1", "--input", "1x8x8", "--device", "cpu",
        "--nproc", "2", "--batch-size", "4", "--steps", "2", "--timeout", str(timeout),
    ])
    took = time.monotonic() - start
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: rank 1: ddp_nets.py:FailsOnRank1: the training step failed: rank 1 refuses to "
        "train"
    ]
    assert took < timeout  # rank 0 was ended at once, not by its collective's timeout


@pytest.mark.slow
def test_a_rank_that_hangs_ends_the_run_at_the_timeout(ddp_nets: Path) -> None:
    done, _ = _archscope([
        "bench", "ddp_nets.py:HangsOnRank1", "--input", "1x8x8", "--device", "cpu",
        "--nproc", "2", "--batch-size", "4", "--steps", "2", "--timeout", "3",
    ], ddp_nets)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "Error: rank 0: waited 3 s (--timeout) for the other ranks in a collective: one of them "
        "hung or is far slower; raise --timeout if that is expected"
    ]


@pytest.mark.slow
def test_two_processes_train_on_token_ids() -> None:
    """--dtype long travels to the launched ranks with the rest of the options."""
    from fixtures import engine_cases

    result = CliRunner().invoke(main, [
        "bench", f"{engine_cases.__file__}:TokenClassifier", "--dtype", "long", "--device",
        "cpu", "--nproc", "2", "--batch-size", "4", "--steps", "2", "--warmup", "1",
        "--timeout", "120", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    (r,) = run["results"]
    assert run["world_size"] == 2 and r["error"] is None and len(r["losses"]) == 3


@pytest.mark.slow
def test_under_torchrun_only_rank_0_prints(ddp_nets: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", "-m", "archscope", "bench"]
    done = subprocess.run([*torchrun, "lecture_mnist_cnn", "--device", "cpu", "--batch-size", "4",
                           "--steps", "2", "--format", "json"],
                          cwd=ddp_nets, text=True, capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # one document: rank 1 printed nothing
    assert (data["world_size"], data["backend"]) == (2, "gloo")
    assert data["results"][0]["data_parallel"]["params_identical"] is True
    failed = subprocess.run([*torchrun, "ddp_nets.py:FailsOnRank1", "--input", "1x8x8",
                             "--device", "cpu", "--batch-size", "4", "--steps", "2"],
                            cwd=ddp_nets, text=True, capture_output=True, timeout=240)
    assert failed.returncode != 0 and failed.stdout == ""
    ours = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert ours == ["Error: rank 1: ddp_nets.py:FailsOnRank1: the training step failed: rank 1 "
                    "refuses to train"]  # below it, torchrun's own report of the failed worker


# --------------------------------------------------------------------------------------------
# On CUDA (skipped here without one)
# --------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_one_process_through_ddp_matches_one_process() -> None:
    from archscope.bench import launch_bench

    config = BenchConfig(device="cuda", batch_size=64, steps=50, warmup=10)
    alone = run_bench(["resnet18"], config).results[0]
    run = launch_bench(["resnet18"], config, nproc=1)
    (r,) = run.results
    assert (run.world_size, run.backend) == (1, "nccl") and r.ok and alone.ok
    dp = r.data_parallel
    assert dp is not None
    assert dp.per_rank_images_per_s(64) == pytest.approx(alone.images_per_s_overall, rel=0.10)
    assert r.first_loss == pytest.approx(alone.first_loss, rel=0.02)
    # DDP holds one more copy of the gradients: its peak is above one process's by about that
    assert alone.peak_memory_bytes is not None and r.peak_memory_bytes is not None
    extra = r.peak_memory_bytes - alone.peak_memory_bytes
    assert extra == pytest.approx(dp.ddp_estimate_bytes, rel=0.5)


def test_a_rank_refuses_a_step_the_device_has_no_room_for(
        one_rank: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the one-process bench does, before anything trains, with DDP's buckets on top."""
    from archscope.bench.world import RankFailure
    from archscope.memory import guard

    subject = resolve("lecture_mnist_cnn")
    peak = training_memory_peak(subject, batch=8)
    buckets = 93_322 * 4  # one flat fp32 copy of the lecture CNN's trainable gradients
    resident = 93_322 * 4  # its parameters, already on the CPU
    # room for the one-process step, not for DDP's buckets as well
    monkeypatch.setattr(guard, "available_memory",
                        lambda device: (peak + buckets - resident - 1, "this machine"))
    config = BenchConfig(device="cpu", batch_size=8, steps=1, warmup=1)
    with pytest.raises(RankFailure, match=r"rank 0: lecture_mnist_cnn at 1×28×28 needs "
                                          r".* for a training step at batch 8 .*--batch-size 7"):
        run_distributed(["lecture_mnist_cnn"], config, world=one_rank, timeout_s=30)
    monkeypatch.setattr(guard, "available_memory",
                        lambda device: (peak + buckets - resident, "this machine"))
    (r,) = run_distributed(["lecture_mnist_cnn"], config, world=one_rank, timeout_s=30).results
    assert r.ok


def training_memory_peak(subject: Any, *, batch: int) -> int:
    from archscope.memory import training_memory

    return training_memory(subject.model, subject.input_shape, batch=batch, device="cpu").peak
