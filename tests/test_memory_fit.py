"""``--fit``: memory sizes, the headroom, and the largest batch checked against full replays."""

from __future__ import annotations

import pytest

from archscope.errors import ArchscopeError
from archscope.memory import largest_batch, training_memory
from archscope.memory.allocator import OutOfMemory
from archscope.memory.fit import CONTEXT_BYTES, SIZE_FORMS, fitting_devices, headroom, parse_size
from archscope.memory.predict import record, settings
from archscope.memory.timeline import build
from archscope.source import load_model


@pytest.mark.parametrize(("text", "size"), [
    ("12GiB", 12 * 2**30),
    ("12G", 12 * 2**30),
    ("12GB", 12 * 10**9),
    ("11.5GiB", int(11.5 * 2**30)),
    (" 24000 MiB ", 24000 * 2**20),
    ("512MB", 512 * 10**6),
    ("80g", 80 * 2**30),
    ("1.5TiB", int(1.5 * 2**40)),
    ("4096", 4096),
])
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12 gigs", "GiB", "", "-1GiB", "0GiB", "1,5GiB", "12GiBs"])
def test_bad_sizes_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_size(text)
    assert SIZE_FORMS in str(error.value)


def test_headroom_is_the_context_and_a_twentieth_for_workspaces_on_cuda() -> None:
    assert headroom(24 * 10**9, "cuda") == (2**30, 24 * 10**9 // 20)
    assert headroom(24 * 10**9, "cpu") == (0, 0)


def test_cpu_fit_is_the_last_batch_whose_peak_fits() -> None:
    loaded = load_model("lecture_mnist_cnn")
    memory = 20 * 2**20
    fit = largest_batch(loaded.model, loaded.input_shape, memory, device="cpu")
    assert fit.batch is not None and fit.method == "scaled"
    # checked with full replays, independently of the scaled search
    at = training_memory(loaded.model, loaded.input_shape, batch=fit.batch, device="cpu")
    beyond = training_memory(loaded.model, loaded.input_shape, batch=fit.batch + 1, device="cpu")
    assert at.peak == fit.peak <= memory < beyond.peak


def test_cuda_fit_runs_under_the_budget_and_one_more_does_not() -> None:
    loaded = load_model("lecture_mnist_cnn")
    memory = 2 * 2**30
    fit = largest_batch(loaded.model, loaded.input_shape, memory, precision="bf16")
    assert fit.batch is not None
    assert fit.budget == memory - CONTEXT_BYTES - memory // 20
    step = settings(loaded.model, loaded.input_shape, precision="bf16", optimizer="sgd",
                    device="cuda", optimizer_impl=None, gpu=None)
    at = record(loaded.model, step, fit.batch)
    build(at.events, at.layers, cuda=True, limit=fit.budget)  # fits: no OutOfMemory
    beyond = record(loaded.model, step, fit.batch + 1)
    with pytest.raises(OutOfMemory):
        build(beyond.events, beyond.layers, cuda=True, limit=fit.budget)


def test_nothing_fits_in_too_little() -> None:
    loaded = load_model("lecture_mnist_cnn")
    fit = largest_batch(loaded.model, loaded.input_shape, 4096, device="cpu")
    assert fit.batch is None and fit.peak is None


def test_headroom_larger_than_the_memory_is_an_error() -> None:
    loaded = load_model("lecture_mnist_cnn")
    with pytest.raises(ArchscopeError, match="leaves nothing for the step"):
        largest_batch(loaded.model, loaded.input_shape, 2**29)


def test_fitting_devices() -> None:
    assert fitting_devices(10**15) == []  # a petabyte fits nothing, and nothing overflows
    small = fitting_devices(2**20)
    assert "H200" in small and "L4" in small
    # 36 GiB: 80 GB − 1 GiB − 4 GB ≈ 69.8 GiB holds it; 40 GB − 1 GiB − 2 GB ≈ 34.4 GiB and
    # 24 GB − 1 GiB − 1.2 GB ≈ 20.2 GiB do not
    middle = fitting_devices(36 * 2**30)
    assert "H100 SXM" in middle and "A100 SXM 40GB" not in middle and "L4" not in middle
