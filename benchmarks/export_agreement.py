"""How closely onnxruntime reproduces PyTorch on every zoo model, and how large a skew is seen.

For each model (seed 0, its natural input, batch 1, fp32) the script exports the file as
``archscope export`` does (without its own comparison) and measures, per output, with its own
code (not archscope's comparison):

* ``S``: max|PyTorch fp32 output|, the scale;
* ``ORT/S``: max|onnxruntime − PyTorch fp32| ÷ S;
* ``f64/S``: max|PyTorch fp32 − PyTorch float64| ÷ S (float64 on a ``.double()`` deep copy);
* the same ``ORT/S`` with the file deliberately skewed, one initializer replaced in the loaded
  graph (the file itself is not changed): ``first ×1.001`` (the first weight tensor scaled by
  1 + 1e-3), ``last ×1.001`` (the last weight tensor), ``one ×1.001`` (one element of the last
  weight alone, the one whose product with its input is largest), and ``no bias`` (the last
  bias set to zero; ``—`` when it already is zero).

A model's figure is the largest over its outputs. Usage:

    python benchmarks/export_agreement.py                 # every zoo model (about 10 minutes)
    python benchmarks/export_agreement.py resnet18 vgg11  # some
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import numpy_helper

from archscope.export import export_onnx
from archscope.export.compare import flatten_outputs
from archscope.registry import get_entry, model_names

SKEW = 1e-3


def _run(proto: onnx.ModelProto, x: np.ndarray,
         overrides: dict[str, np.ndarray] | None = None) -> list[Any]:
    """onnxruntime's outputs for the file's graph with some initializers replaced in memory.

    Not through ``SessionOptions.add_initializer``: with the default graph optimizations,
    onnxruntime 1.32 ignores an override of a Conv weight (its NCHWc layout transform reads the
    file's tensor), so a skewed Conv weight would go unseen.
    """
    inits = {t.name: t for t in proto.graph.initializer}
    kept = {name: onnx.TensorProto() for name in overrides or {}}
    for name, value in (overrides or {}).items():
        kept[name].CopyFrom(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    try:
        session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        return list(session.run(None, {session.get_inputs()[0].name: x}))
    finally:
        for name, tensor in kept.items():
            inits[name].CopyFrom(tensor)


def _relative(got: list[Any], want: list[torch.Tensor]) -> float:
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        w64 = w.double().numpy()
        scale = float(np.abs(w64).max())
        diff = float(np.abs(g.astype(np.float64) - w64).max())
        worst = max(worst, diff / scale if scale else (0.0 if diff == 0 else math.inf))
    return worst


def measure(name: str, directory: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    entry = get_entry(name)
    model = entry.build().eval()
    path = directory / f"{name}.onnx"
    started = time.perf_counter()
    export_onnx(model, path, entry.input_shape, verify=False, name=name)
    seconds = time.perf_counter() - started
    proto = onnx.load(str(path))
    x = torch.randn(1, *entry.input_shape, generator=torch.Generator().manual_seed(0))
    state = model.state_dict()
    weights = [k for k, v in model.named_parameters() if v.dim() >= 2]
    first, last = weights[0], weights[-1]
    head = model.get_submodule(last.rsplit(".", 1)[0])
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    with torch.no_grad():
        _, fp32 = flatten_outputs(model(x))
        _, fp64 = flatten_outputs(copy.deepcopy(model).double()(x.double()))
    hook.remove()
    row: dict[str, Any] = {
        "model": name,
        "input": "×".join(map(str, entry.input_shape)),
        "scale": max(float(t.abs().max()) for t in fp32),
        "ort": _relative(_run(proto, x.numpy()), fp32),
        "f64": max(float((a.double() - b).abs().max() / a.abs().max()) for a, b in
                   zip(fp32, fp64, strict=True)),
        "seconds": seconds,
    }
    bias = last.rsplit(".", 1)[0] + ".bias"
    w_last = state[last].numpy()
    one = w_last.copy()
    # the single weight that contributes most to the output: |w_ij · h_j| for a Linear head
    # whose input h was seen, else the largest |w|
    fits = seen and seen[0].numel() == w_last.shape[-1]
    h = seen[0].reshape(-1).abs().numpy() if fits else 1.0
    one.flat[int((np.abs(w_last) * h).argmax())] *= 1 + SKEW
    skews = {
        "first": {first: state[first].numpy() * (1 + SKEW)},
        "last": {last: w_last * (1 + SKEW)},
        "one": {last: one},
    }
    if bias in state and bool(state[bias].any()):
        skews["bias"] = {bias: np.zeros_like(state[bias].numpy())}
    for key, overrides in skews.items():
        row[key] = _relative(_run(proto, x.numpy(), overrides), fp32)
    row.setdefault("bias", None)
    path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="zoo models (default: all)")
    args = parser.parse_args()
    names = args.models or model_names()
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print("| model | input | max \\|output\\| S | ORT/S | f64/S | first ×1.001 | last ×1.001 | "
          "one ×1.001 | no bias | export s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = measure(name, Path(tmp))
            bias = f"{r['bias']:.1e}" if r["bias"] is not None else "—"
            print(f"| `{name}` | {r['input']} | {r['scale']:.3g} | {r['ort']:.1e} | "
                  f"{r['f64']:.1e} | {r['first']:.1e} | {r['last']:.1e} | {r['one']:.1e} | "
                  f"{bias} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
