"""The replay: a real training step run on meta tensors that present themselves as the device's.

How it works:

* Every parameter, buffer and input is a meta tensor (no memory, no values) wrapped in a
  :class:`~archscope.memory.proxy.Proxy` whose device is the one predicted (``cuda`` or ``cpu``,
  even in a CPU-only build of PyTorch). The user's model is not changed: its parameters are
  swapped for the proxies during the replay and restored afterwards (the engine's stand-in
  mechanism).
* Because the proxies carry that device's dispatch keys, PyTorch's own code takes the device's
  paths: the CUDA (or CPU) **autocast policy** runs on them (its kernels are registered in every
  build), composite operators decide as they would on the device (dropout keeps a 1-byte mask,
  max-pooling returns int64 indices, the fused optimizers accept the parameters), and attention
  runs the device's kernel (CPU: PyTorch's own choice; CUDA: see
  :func:`~archscope.memory.recorder.cuda_attention_kernel`).
* Autograd is switched off for the proxies (their autograd key is excluded while the forward
  runs: CUDA autograd would need a CUDA device guard) and runs instead on the meta tensors
  inside, in :class:`~archscope.memory.recorder.Recorder`'s ``__torch_dispatch__``: each
  operator on proxies is run again on their meta tensors with autograd on, so the backward
  graph, the tensors it saves and the backward pass are PyTorch's own.
* The recorder sees every operator of the step (forward, loss, backward, optimizer) and each new
  storage it returns (an allocation); a weak reference to each storage reports when it is freed,
  the mechanism of ``torch.distributed._tools.mem_tracker``.

The result is a list of events (allocation, free, re-categorisation) that
:mod:`archscope.memory.timeline` turns into bytes as the device counts them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from archscope._modes import kept_modes
from archscope.engine.deferred import deferred_imports
from archscope.engine.stand_ins import autograd_on, kept_tensor_attributes, meta_state, swapped
from archscope.losses import mean_loss, training_loss
from archscope.memory import step as training
from archscope.memory.proxy import (
    PYTHON_KEYS,
    NoDeviceInit,
    Proxy,
    without_device_autograd,
)
from archscope.memory.recorder import CAT, PHASE, Event, Recorder, Recording
from archscope.memory.result import PHASES
from archscope.memory.timeline import ALLOC, FREE


@contextmanager
def _layers(model: nn.Module, recorder: Recorder) -> Iterator[None]:
    """Forward hooks that keep ``recorder.layer`` on the module running."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[int] = []
    handles = []

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(recorder.layer)
        recorder.layer = recorder.layer_id(names.get(id(module), ""))

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        recorder.layer = stack.pop() if stack else 0

    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter))
        # not always_call: where a module raises, the layer stays the one that failed
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def replay(model: nn.Module, input_shape: tuple[int, ...], *, batch: int, dtype: torch.dtype,
           precision: str, optimizer: str, impl: str, device: torch.device,
           blas_workspace: int = 0, defer: bool = True, loss: str = "bench",
           channels_last: bool = False) -> Recording:
    """Run two training steps of ``model`` on a batch of ``batch`` × ``input_shape`` and record.

    The first step creates the optimizer state; the second is every later step. The model runs
    in training mode; it is left as it was. ``loss`` is ``"bench"`` (targets made before the
    first step, :func:`archscope.losses.training_loss`) or ``"check"`` (no targets,
    :func:`archscope.losses.mean_loss`). ``channels_last`` lays the batch and every 4-D
    parameter and buffer out as ``model.to(memory_format=torch.channels_last)`` does (bench's
    default on CUDA): the sizes are the same, but an operator that needs another layout copies
    (a ``flatten`` of an N×C×H×W map that is not 1×1).
    """
    autocast_dtype = training.AUTOCAST_DTYPES.get(precision)
    recorder = Recorder(device, autocast_dtype, blas_workspace)
    with ExitStack() as stack:
        stack.enter_context(autograd_on())
        # a replayed CUDA step asks whether cuDNN takes the RNN; a CPU build of PyTorch answers
        # with a warning about itself that says nothing of the model
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="PyTorch was compiled without cuDNN")
        stack.enter_context(kept_modes(model))
        stack.enter_context(kept_tensor_attributes(model))
        if defer:
            stack.enter_context(deferred_imports())
        # The dispatch state the meta tensors' operators run in: the caller's, with autograd on
        # and every Python mode out of the way (the recorder records them itself).
        recorder.tls = (torch._C._dispatch_tls_local_include_set(),
                        torch._C._dispatch_tls_local_exclude_set() | PYTHON_KEYS)
        swaps, _ = meta_state(model)
        proxies: dict[int, Proxy] = {}
        proxied_swaps = []
        for module, kind, name, stand_in in swaps:
            if id(stand_in) not in proxies:
                inner = _channels_last(stand_in) if channels_last else stand_in
                proxies[id(stand_in)] = Proxy(inner, device)
            proxied_swaps.append((module, kind, name, proxies[id(stand_in)]))
        stack.enter_context(swapped(proxied_swaps))
        model.train()
        pairs = [(p, p._meta) for p in proxies.values()]
        # autocast caches the casts of float32 leaves that require grad (cached_cast)
        recorder.weights = {id(p) for p, inner in pairs
                            if isinstance(inner, nn.Parameter) and inner.requires_grad}
        stack.enter_context(NoDeviceInit())
        stack.enter_context(recorder)
        stack.enter_context(_layers(model, recorder))
        stack.enter_context(torch.autograd.graph.saved_tensors_hooks(recorder.pack, _same))
        for _, inner in pairs:
            recorder.recategorise(inner, "weights")
        x = torch.empty((batch, *input_shape), dtype=dtype, device="meta")
        x = Proxy(_channels_last(x) if channels_last else x, device)
        recorder.recategorise(x, "inputs")
        params = [p for p in training.trainable(model) if isinstance(p, Proxy)]
        opt = None
        if optimizer != "none" and params:
            opt = training.make_optimizer(optimizer, impl, params)
            for t in training.state_tensors(opt):
                recorder.recategorise(t, "optimizer_state")
        scaler = training.LossScaler(device) if precision == "fp16" else None
        setup_end = len(recorder.events)
        try:
            _steps(model, x, params, opt, scaler, recorder, device, autocast_dtype, setup_end,
                   loss)
        except Exception as exc:
            raise StepFailed(PHASES[recorder.phase],
                             recorder.recording.layers[recorder.layer], exc) from exc
        finally:
            recorder.closed = True  # what the frame's end frees is not part of the step
            for p in params:
                p.grad = None
                p._meta.grad = None
    return recorder.recording


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4-D meta tensor in the channels-last layout (a parameter stays a parameter); any other
    as it is, as ``Module.to(memory_format=…)`` and ``Tensor.contiguous(memory_format=…)`` do."""
    if t.dim() != 4:
        return t
    laid = t.detach().contiguous(memory_format=torch.channels_last)
    return nn.Parameter(laid, t.requires_grad) if isinstance(t, nn.Parameter) else laid


class StepFailed(Exception):
    """The replayed step raised ``cause`` in ``phase``, in ``layer`` (``""``: outside a module)."""

    def __init__(self, phase: str, layer: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.phase, self.layer, self.cause = phase, layer, cause


def _steps(model: nn.Module, x: Proxy, params: list[Proxy], opt: torch.optim.Optimizer | None,
           scaler: training.LossScaler | None, recorder: Recorder, device: torch.device,
           autocast_dtype: torch.dtype | None, setup_end: int, loss_rule: str) -> None:
    """Step 1 for real; step 2 from step 1's forward and backward and a real optimizer step."""
    # Step 1, for real.
    recorder.phase = PHASE["forward"]
    forward_start = len(recorder.events)
    with without_device_autograd(device), \
            training.autocast(device.type, autocast_dtype, recorder.end_autocast):
        recorder.casting = autocast_dtype is not None
        output = model(x)
        recorder.phase, recorder.layer = PHASE["loss"], 0
        kept = None
        if loss_rule == "check":  # check's bare pass: no targets; it keeps the outputs
            loss = mean_loss(output, device)
            kept = output
        else:
            targets, made = _targets(output, recorder, device, setup_end)
            forward_start += made
            loss = training_loss(output, targets)
        del output
    if scaler is not None:
        with without_device_autograd(device):
            loss = scaler.scale(loss)
    recorder.phase = PHASE["backward"]
    _backward(loss, params, recorder)
    del loss, kept
    backward_end = len(recorder.events)
    recorder.phase, recorder.layer = PHASE["optimizer"], 0
    if opt is not None:
        _optimizer_phase(opt, params, scaler, recorder, device)
    # Step 2 is step 1's forward and backward again (the same operators on the same sizes),
    # after zero_grad freed the gradients, then an optimizer step that finds its state made:
    # that step is run for real.
    step_two = [(FREE, ident, 0, cat, 2, PHASE["zero_grad"], 0)
                for ident, cat in recorder.category.items() if cat == CAT["gradients"]]
    step_two += _again(recorder.events[forward_start:backward_end], recorder)
    recorder.step = 2
    mark = len(recorder.events)
    if opt is not None:
        _optimizer_phase(opt, params, scaler, recorder, device)
    recorder.closed = True
    recorder.events[mark:mark] = step_two


def _targets(output: Any, recorder: Recorder, device: torch.device,
             setup_end: int) -> tuple[list[torch.Tensor], int]:
    """bench's targets for ``output``, and how many events making them took. bench makes its
    targets before the first step: so does the timeline (the events move into the setup)."""
    mark = len(recorder.events)
    targets = training.make_targets(output, device)
    for t in targets:
        recorder.recategorise(t, "inputs")
    made = recorder.events[mark:]
    del recorder.events[mark:]
    recorder.events[setup_end:setup_end] = [
        (kind, ident, size, cat, 1, PHASE["setup"], 0) for kind, ident, size, cat, *_ in made]
    return targets, len(made)


def _optimizer_phase(opt: torch.optim.Optimizer, params: list[Proxy],
                     scaler: training.LossScaler | None, recorder: Recorder,
                     device: torch.device) -> None:
    """``optimizer.step()`` (through the loss scaler for fp16) on the gradients backward made."""
    for p in params:
        grad = p._meta.grad
        p.grad = None if grad is None else Proxy(grad, device)
    start = len(recorder.events)
    if scaler is not None:
        scaler.step(opt)
    else:
        training.optimizer_step(opt)
    state = [*training.state_tensors(opt), *(scaler.persistent() if scaler is not None else [])]
    recorder.as_state_from_birth(state, start)




def _again(events: list[Event], recorder: Recorder) -> list[Event]:
    """``events`` (a forward and backward) as they recur in the next step: new storages, step 2.

    Storages made outside ``events`` and freed inside them were freed in step 1 already, and
    cuBLAS's workspace, once made, stays: those events do not recur.
    """
    renamed: dict[int, int] = {}
    out: list[Event] = []
    for kind, ident, size, cat, _, phase, layer in events:
        if kind == ALLOC:
            if cat == CAT["workspace"]:
                continue
            renamed[ident] = recorder._next_id
            recorder._next_id += 1
        elif ident not in renamed:
            continue
        out.append((kind, renamed[ident], size, cat, 2, phase, layer))
    return out


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _backward(loss: torch.Tensor, params: list[Proxy], recorder: Recorder) -> None:
    """``loss.backward()`` on the meta graph; each gradient is recorded as it lands."""
    handles = []
    for p in params:
        inner = p._meta

        def landed(param: torch.Tensor) -> None:
            if param.grad is not None:
                recorder.recategorise(param.grad, "gradients")

        handles.append(inner.register_post_accumulate_grad_hook(landed))
    try:
        inner_loss = loss._meta if isinstance(loss, Proxy) else loss
        if inner_loss.requires_grad:
            inner_loss.backward()
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["ALLOC", "FREE", "Event", "Recording", "StepFailed", "replay"]
