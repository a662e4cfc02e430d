"""The memory model against ``torch.cuda.max_memory_allocated`` on a real GPU (``gpu`` marker).

The step measured is ``archscope bench``'s own (``bench.trainer.Trainer``: channels-last, fused SGD, the
same loss), under bench's backend flags, after two warm-up steps, as bench measures it.
"""

from __future__ import annotations

import gc

import pytest
import torch

from archscope.memory import largest_batch, training_memory
from archscope.source import load_model

pytestmark = pytest.mark.gpu


def _clean() -> None:
    gc.collect()
    torch.cuda.synchronize()
    torch._C._cuda_clearCublasWorkspaces()
    torch.cuda.empty_cache()


def _bench_steps(name: str, batch: int, precision: str, steps: int = 3) -> int:
    """The peak allocated over ``steps`` of bench's training step after two warm-up steps."""
    from archscope.bench import backend_flags
    from archscope.bench.trainer import Trainer

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
        return int(torch.cuda.max_memory_allocated())


@pytest.mark.parametrize(("name", "batch", "precision"), [
    ("lecture_mnist_cnn", 256, "bf16"),
    ("resnet18", 32, "fp32"),
    ("alexnet", 64, "bf16"),
])
def test_peak_matches_max_memory_allocated(name: str, batch: int, precision: str) -> None:
    _clean()
    gpu = torch.cuda.get_device_name()
    measured = _bench_steps(name, batch, precision)
    loaded = load_model(name)
    predicted = training_memory(loaded.model, loaded.input_shape, batch=batch,
                                precision=precision, gpu=gpu).peak
    assert abs(predicted - measured) <= 0.05 * measured, (predicted, measured)


def test_fit_trains_and_a_quarter_more_runs_out_of_memory() -> None:
    _clean()
    name, precision = "lecture_catsdogs_cnn", "bf16"
    total = torch.cuda.get_device_properties(0).total_memory
    allowed = 3 * 2**30
    fraction = allowed / total
    loaded = load_model(name)
    # under set_per_process_memory_fraction the allocator's limit is fraction × total; the CUDA
    # context is outside it, so no context headroom here (cuDNN's share stays)
    fit = largest_batch(loaded.model, loaded.input_shape, allowed, precision=precision,
                        context=0, gpu=torch.cuda.get_device_name())
    assert fit.batch is not None
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        _bench_steps(name, fit.batch, precision, steps=1)
        _clean()
        with pytest.raises(torch.cuda.OutOfMemoryError):
            _bench_steps(name, int(fit.batch * 1.25) + 1, precision, steps=1)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        _clean()
