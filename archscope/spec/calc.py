"""What ``calc`` and every ``spec:`` source show: a spec parsed, built on meta and inspected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from archscope.spec.build import build_spec
from archscope.spec.layout import to_layout

if TYPE_CHECKING:
    from archscope.report import Report


def calc_report(text: str, *, name: str | None = None, layout: str = "hwc",
                input_shape: tuple[int, ...] | None = None, batch: int = 1,
                freeze: Sequence[str] = (), backward: bool = False,
                memory: bool = False) -> Report:
    """Parse, build (on meta) and inspect a spec: what ``calc`` and every ``spec:`` source show.

    Shapes are re-ordered into the spec's layout (:func:`to_layout`) and the build's notes (an
    implicit flatten …) are added to the report's notes. ``freeze`` marks parameters frozen as
    ``summary --freeze`` does; ``backward`` also counts training FLOPs; ``memory`` adds the
    training-memory peak of the same model
    (:func:`archscope.memory.summary.with_training_memory`).
    """
    from archscope.engine import inspect

    built = build_spec(text, input_shape=input_shape, device="meta", name=name, layout=layout)
    if freeze:
        from archscope.freeze import freeze_parameters

        freeze_parameters(built.model, freeze)
    report = inspect(built.model, built.input_shape, batch=batch, name=built.name,
                     backward=backward)
    notes = [*report.notes, *built.notes]
    if built.keras_bn_channels:
        notes.append(keras_batchnorm_note(report.total_params, report.non_trainable_params,
                                          built.keras_bn_channels))
    report = replace(report, notes=tuple(notes))
    if memory:  # in PyTorch's C×H×W order, as the model runs
        from archscope.memory.summary import with_training_memory

        report = with_training_memory(report, built.model)
    return to_layout(report, built.layout if len(built.input_shape) == 3 else "chw")


def keras_batchnorm_note(total: int, non_trainable: int, bn_channels: int) -> str:
    """What Keras' ``model.summary()`` would count: each BatchNormalization's moving mean and
    variance (2·C) as non-trainable parameters, where PyTorch keeps them as buffers.

    ``keras_batchnorm_note(1_640_106, 0, 96)`` says 1,640,298 parameters, 192 non-trainable.
    """
    stats = 2 * bn_channels
    return (f"Keras' model.summary() would show {total + stats:,} parameters ({total:,} + "
            f"2·{bn_channels:,}), {non_trainable + stats:,} of them non-trainable: it counts "
            "each BatchNormalization's moving mean and variance (2·C) as parameters; PyTorch "
            "keeps them as buffers (not counted)")
