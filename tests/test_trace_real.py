"""``--trace real``: forwards whose shapes depend on tensor values, inspected by running them
(issue 12, item 4).

Oracles: the model's own real forward on the same input (seed 0, as documented) with forward
hooks for every module's output shapes, ``torch.utils.flop_counter.FlopCounterMode`` for the
MACs and ``saved_tensors_hooks`` for what autograd keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from fixtures.engine_cases import ValueSized
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archscope.cli import main
from archscope.engine import inspect
from archscope.errors import DeviceError, ForwardError, ModelSourceError
from archscope.source import load_model, load_report

CASES = Path(__file__).parent / "fixtures" / "engine_cases.py"
SOURCE = f"{CASES}:ValueSized"


def _real(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, tuple[Any, ...]], Any, int, int]:
    """Each module's output shapes, the outputs, the MACs and the bytes autograd saves (each
    storage once, parameters left out) of one real forward."""
    shapes: dict[str, tuple[Any, ...]] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, out: Any) -> None:
            outs = out if isinstance(out, tuple) else (out,)
            shapes.setdefault(name, tuple(tuple(t.shape) for t in outs))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with FlopCounterMode(display=False) as counter, \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    for h in handles:
        h.remove()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return (shapes, out, counter.get_total_flops() // 2,
            sum(n for ptr, n in saved.items() if ptr not in params))


def test_a_value_sized_forward_fails_on_meta_and_names_the_real_trace() -> None:
    with pytest.raises(ForwardError) as info:
        inspect(ValueSized(), ValueSized.INPUT)
    assert "size depends on tensor values" in str(info.value)
    assert str(info.value).endswith("trace it for real with --trace real (trace='real' in "
                                    "Python)")


def test_a_real_trace_equals_a_real_forward_on_the_same_input() -> None:
    torch.manual_seed(1)
    model = ValueSized()
    report = inspect(model, ValueSized.INPUT, batch=2, trace="real")
    # the documented input: N(0, 1) from a generator seeded with 0, on the model's device
    x = torch.randn((2, *ValueSized.INPUT), generator=torch.Generator().manual_seed(0))
    shapes, (out, where), macs, saved = _real(model, x)
    assert report.output_shapes == (tuple(out.shape), tuple(where.shape))
    assert report.find("conv").output_shapes == shapes["conv"] == ((2, 4, 6, 6),)
    called = "head" if "head" in shapes else "other"
    assert report.find(called).output_shapes == shapes[called]
    assert report.find("nonzero").output_shapes == (tuple(where.shape),)
    assert report.total_macs == macs
    assert report.activation_bytes == saved
    assert report.total_params == sum(p.numel() for p in model.parameters())
    assert any(n.startswith("traced for real on cpu with a random input (seed 0)")
               for n in report.notes)


def test_a_real_trace_needs_real_weights() -> None:
    meta = load_model(SOURCE).model  # built on the meta device
    with pytest.raises(DeviceError, match="is on the meta device: a real trace runs its forward"):
        inspect(meta, ValueSized.INPUT, trace="real")
    report = load_report(SOURCE, trace="real", batch=2)  # built on the CPU for it
    assert report.find("conv").output_shapes == ((2, 4, 6, 6),)


def test_trace_real_on_the_command_line() -> None:
    runner = CliRunner()
    meta = runner.invoke(main, ["summary", SOURCE])
    assert meta.exit_code == 1 and meta.stdout == ""
    assert "--trace real" in meta.stderr and "Traceback" not in meta.stderr
    real = runner.invoke(main, ["summary", SOURCE, "--trace", "real", "--format", "json"])
    assert real.exit_code == 0, real.output
    assert '"nonzero"' in real.stdout
    checked = runner.invoke(main, ["check", SOURCE, "--trace", "real", "--device", "cpu"])
    assert checked.exit_code == 0, checked.output
    assert "PASS" in checked.stdout
    bad = runner.invoke(main, ["summary", SOURCE, "--trace", "exact"])
    assert bad.exit_code == 2


def test_trace_real_and_dtype_do_not_apply_to_layer_specs() -> None:
    with pytest.raises(ModelSourceError, match="--trace real does not apply to a layer spec"):
        load_report("spec:28x28x1 conv4 k3 flatten dense2", trace="real")
    result = CliRunner().invoke(main, ["summary", "spec:28x28x1 conv4 k3 flatten dense2",
                                       "--dtype", "long"])
    assert result.exit_code == 2  # an option that cannot apply is a usage error (README)
    assert "--dtype does not apply to a layer spec" in result.stderr
