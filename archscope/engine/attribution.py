"""Which row counts each parameter: frames frozen into records, every parameter counted once.

A parameter is counted in the row of the first call that uses it: its module's call, or, for a
module never called as a module, the call whose forward reads it (``nn.MultiheadAttention``
reads its ``out_proj``'s weight). Parameters no call owns (the root's own, a module never
called) get shape-less rows of their own, so the rows always add up to the model's total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from torch import nn

from archscope import formulas
from archscope.engine.diagnosis import plural
from archscope.engine.facts import param_formula
from archscope.engine.frame import Frame
from archscope.report import BatchAxis, Kind, LayerRecord

#: Record index → the call that first read a parameter (``None``: the root's own forward).
Borrowed = dict[int | None, list[nn.Parameter]]


def borrowed_parameters(model: nn.Module, frames: Sequence[Frame],
                        param_users: dict[int, int | None]) -> tuple[Borrowed, tuple[str, ...]]:
    """Parameters of modules never called as modules that another module's forward reads.

    ``nn.MultiheadAttention`` never calls its ``out_proj``: it passes ``out_proj.weight`` and
    ``.bias`` to ``F.multi_head_attention_forward``. Such parameters are counted in the row of
    the call that first read them (``param_users``: id of the user's parameter → record index,
    ``None`` for the root's own forward), as torchinfo counts them in ``MultiheadAttention``'s
    row. Returns them by reading record, and a note for each module.
    """
    called: set[int] = set()
    for frame in frames:
        if frame.module is not None:
            called.add(id(frame.module))
            called.update(id(p) for p in frame.module._parameters.values() if p is not None)
    borrowed: Borrowed = {}
    seen: set[int] = set()
    notes: list[str] = []
    for mname, module in model.named_modules():
        if not mname or id(module) in called:
            continue
        used = [p for p in module._parameters.values()
                if p is not None and id(p) in param_users and id(p) not in called
                and id(p) not in seen]
        if not used:
            continue
        users = [param_users[id(p)] for p in used]
        for p, index in zip(used, users, strict=True):
            borrowed.setdefault(index, []).append(p)
            seen.add(id(p))
        count = sum(p.numel() for p in used)
        first = users[0]
        if first is None:
            user_text, row = "the model's forward", f"the ({type(model).__name__}) row"
        else:
            reader = frames[first].name
            user_text, row = f"{reader}'s forward", f"{reader}'s row"
        notes.append(
            f"{mname} ({type(module).__name__}, {plural(count, 'parameter')}) is not called as a "
            f"module: {user_text} uses {'its parameter' if len(used) == 1 else 'its parameters'} "
            f"directly; {'it is' if len(used) == 1 else 'they are'} counted in {row}"
        )
    return borrowed, tuple(notes)


def records(frames: Sequence[Frame], borrowed: Borrowed,
            axes: Sequence[tuple[tuple[BatchAxis, ...], tuple[BatchAxis, ...]]]
            ) -> tuple[tuple[LayerRecord, ...], set[int]]:
    """Freeze frames into records, attributing each parameter to the first row that uses it.

    A row counts its module's own parameters and those it borrows (see
    :func:`borrowed_parameters`). ``axes`` holds each frame's input and output batch axes.
    Returns the records and the ids of the parameters counted.
    """
    counted: dict[int, str] = {}  # id(parameter) → name of the row that counts it
    out = []
    for f, (input_axes, output_axes) in zip(frames, axes, strict=True):
        params = trainable = 0
        formula = ""
        shared_with: str | None = None
        if f.module is not None:
            extra = borrowed.get(f.index, [])
            own = [p for p in f.module._parameters.values() if p is not None]
            new = [p for p in (*own, *extra) if id(p) not in counted]
            if len(new) < len(own) + len(extra):
                shared_with = next(counted[id(p)] for p in (*own, *extra) if id(p) in counted)
            params = sum(p.numel() for p in new)
            trainable = sum(p.numel() for p in new if p.requires_grad)
            if new and len(new) == len(own) and not extra:
                formula = param_formula(f.module, params)
            elif new:
                formula = formulas.shapes_params([tuple(p.shape) for p in new])[1]
            for p in new:
                counted[id(p)] = f.name
        out.append(LayerRecord(
            index=f.index, name=f.name, type=f.type, kind=f.kind, depth=f.depth, parent=f.parent,
            is_leaf=f.is_leaf, input_shapes=f.input_shapes, output_shapes=f.output_shapes,
            params=params, trainable_params=trainable, param_formula=formula,
            output_formula=f.output_formula, macs=f.macs, input_batch_axes=input_axes,
            output_batch_axes=output_axes, call=f.call, shared_with=shared_with,
            output_keys=f.output_keys, facts=f.facts, inputs=f.inputs,
        ))
    return tuple(out), set(counted)


def uncalled_parameters(model: nn.Module, rows: tuple[LayerRecord, ...], counted: set[int],
                        borrowed: Borrowed
                        ) -> tuple[tuple[LayerRecord, ...], dict[int, int], tuple[str, ...]]:
    """Rows for parameters no traced call owns: the root's own and those of modules never called.

    Such rows have no shapes and no inputs; with them, the rows always add up to the total. A
    module never called sits right after the subtree of its nearest called ancestor, one level
    below it (``parent`` is that ancestor's row); the root's own row comes last, at depth 1.
    Returns the records (re-indexed: ``index``, ``parent`` and ``inputs`` follow the new
    positions), the old → new index map (for ``Report.outputs``) and the notes.
    """
    rows_of = {r.name: r for r in rows if r.kind == Kind.MODULE and r.call == 0}
    seen = set(counted)
    borrowed_ids = {id(p) for params in borrowed.values() for p in params}
    # (old index of the ancestor whose subtree the row follows, or None: at the end) → rows
    after: dict[int | None, list[LayerRecord]] = {}
    notes: list[str] = []
    for mname, module in model.named_modules():
        if mname and mname in rows_of:
            continue
        new = [p for p in module._parameters.values() if p is not None and id(p) not in seen]
        own = sum(p.numel() for p in new)  # the root's row also counts what its forward reads
        if not mname:
            new += [p for p in borrowed.get(None, []) if id(p) not in seen]
        if not new:
            continue
        seen.update(id(p) for p in new)
        count = sum(p.numel() for p in new)
        label = mname or f"({type(model).__name__})"
        parts = mname.split(".") if mname else []
        ancestor = next((rows_of[p] for p in (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
                         if p in rows_of), None)
        after.setdefault(ancestor.index if ancestor else None, []).append(LayerRecord(
            index=-1, name=label, type=type(module).__name__, kind=Kind.MODULE,
            depth=ancestor.depth + 1 if ancestor else 1,
            parent=ancestor.index if ancestor else None,
            is_leaf=True, input_shapes=(), output_shapes=(), params=count,
            trainable_params=sum(p.numel() for p in new if p.requires_grad),
            param_formula=formulas.shapes_params([tuple(p.shape) for p in new])[1],
            output_formula="", macs=0, input_batch_axes=(), output_batch_axes=(),
        ))
        if mname and any(id(p) in borrowed_ids for p in module._parameters.values()):
            # another forward reads some of its parameters (a note says so); the rest are unused
            unused = {id(p) for p in new}
            names = ", ".join(n for n, p in module._parameters.items() if id(p) in unused)
            notes.append(f"{label}.{{{names}}} ({plural(count, 'parameter')}) "
                         f"{'is' if len(new) == 1 else 'are'} never used in forward, while its "
                         f"other parameters are read directly; counted in the total")
        elif mname:
            notes.append(f"{label} ({type(module).__name__}, {plural(count, 'parameter')}) is "
                         f"never called in forward; "
                         f"{'its parameter is' if count == 1 else 'its parameters are'} counted in "
                         "the total")
        elif own:
            notes.append(f"{label} holds {plural(own, 'parameter')} of its own, outside any "
                         f"layer; {'it is' if own == 1 else 'they are'} counted in the total")
    if not after:
        return rows, {r.index: r.index for r in rows}, tuple(notes)
    # Where each ancestor's subtree ends: its last descendant (records are in pre-order).
    ends: dict[int, list[int]] = {}
    for ancestor_index in (i for i in after if i is not None):
        depth, end = rows[ancestor_index].depth, ancestor_index
        while end + 1 < len(rows) and rows[end + 1].depth > depth:
            end += 1
        ends.setdefault(end, []).append(ancestor_index)
    ordered: list[LayerRecord] = []
    for r in rows:
        ordered.append(r)
        # nested subtrees ending together: the deeper ancestor's rows first
        for ancestor_index in sorted(ends.get(r.index, []), key=lambda i: -rows[i].depth):
            ordered.extend(after[ancestor_index])
    ordered.extend(after.get(None, []))
    order = {r.index: i for i, r in enumerate(ordered) if r.index >= 0}
    remapped = tuple(
        replace(r, index=i, parent=None if r.parent is None else order[r.parent],
                inputs=tuple(order.get(j, j) for j in r.inputs))
        for i, r in enumerate(ordered)
    )
    return remapped, order, tuple(notes)


__all__ = ["Borrowed", "borrowed_parameters", "records", "uncalled_parameters"]
