"""Parameters and buffers of a traced model: each distinct tensor counted once, in the first row that reads it.

A row reads a stored tensor when one of its aten ops takes it as an input, directly or through a view of it (a
slice, an ``expand``, a transpose ...).  A row is charged the stored tensor's own ``numel()``, never the size of the
view it read, so tied weights, sliced position tables and expanded class tokens all count exactly once.
"""
from __future__ import annotations

from dataclasses import replace
from math import prod

import sympy
import torch

from ..cost import Cost
from ..model import Row, RowKind
from .handlers import ZERO_COST_OPS
from .record import Recording

#: ops that take a tensor only for its shape, dtype or device: they read none of its values
VALUE_BLIND_OPS = frozenset({
    "aten.empty_like", "aten.zeros_like", "aten.ones_like", "aten.full_like", "aten.rand_like", "aten.randn_like",
    "aten.new_zeros", "aten.new_empty", "aten.new_ones", "aten.new_full", "aten.new_empty_strided",
    "aten.zero_", "aten.fill_",
})
#: zero-cost ops whose outputs carry their first input's values (views, detach, dropout): reading such an output
#: reads the stored tensor behind it
PASS_THROUGH_OPS = ZERO_COST_OPS - VALUE_BLIND_OPS

#: the only buffers that are running statistics: a norm layer's running mean and variance
_STATISTICS = ("running_mean", "running_var")


def reads_per_op(rec: Recording) -> list[set[int]]:
    """For each recorded op, the stored tensors (their recording numbers) it reads, directly or through a view."""
    base = {n: n for n in rec.parameters}
    out = []
    for ev in rec.ops:
        out.append(set() if ev.op in VALUE_BLIND_OPS else {base[n] for n in ev.inputs if n in base})
        # a view's output, or an in-place op's (the same tensor under a new number), is the stored tensor still
        if (ev.op in PASS_THROUGH_OPS or ev.op.endswith("_")) and ev.inputs and ev.inputs[0] in base:
            for o in ev.outputs:
                base[o] = base[ev.inputs[0]]
    return out


class StoredTensors:
    """Which row owns each distinct parameter and floating-point buffer of ``model`` (by tensor identity)."""

    def __init__(self, model: torch.nn.Module, rec: Recording):
        self.rec = rec
        self.reads = reads_per_op(rec)
        param_names = {name for name, _ in model.named_parameters()}
        # like ``empirical``, only floating-point buffers count (not integer ids or counters)
        float_buffers = {name for name, b in model.named_buffers() if b.is_floating_point()}
        self.numel = {n: prod(rec.shapes[n]) for n, name in rec.parameters.items()
                      if name in param_names or name in float_buffers}
        self.is_param = {n: rec.parameters[n] in param_names for n in self.numel}
        self.claimed: set[int] = set()
        self.buffer_kinds = _buffer_kinds(model)

    def attribute(self, placed: list[tuple[int, Row, range]]) -> list[Row]:
        """Rows in execution order, each charged the stored tensors it is the first to read."""
        out = []
        for _, row, ops in placed:
            new = sorted(set().union(*(self.reads[k] for k in ops)) - self.claimed) if len(ops) else []
            new = [n for n in new if n in self.numel]
            self.claimed.update(new)
            params = sum(self.numel[n] for n in new if self.is_param[n])
            buffers = sum(self.numel[n] for n in new if not self.is_param[n])
            if row.cost.params == params and row.cost.buffers == buffers and row.cost.params.is_Integer \
                    and row.cost.buffers.is_Integer:  # charged as the catalog has it already (most ops: none)
                out.append(row)
                continue
            out.append(replace(row, cost=replace(row.cost, params=sympy.Integer(params),
                                                 buffers=sympy.Integer(buffers))))
        return out

    def leftover(self) -> tuple[list[Row], list[str]]:
        """Rows (and true notes) for the stored tensors no row read: those some uncosted op read, and those
        forward never reads."""
        read = set().union(*self.reads) if self.reads else set()
        rows, notes = [], []
        groups = (
            ("(parameters read only by uncosted ops)", [n for n in self.numel if n not in self.claimed and n in read],
             "read in this forward pass only by ops symcost does not cost (uncovered ops, or views whose result "
             "reaches no costed op)"),
            ("(parameters not used in forward)", [n for n in self.numel if n not in self.claimed and n not in read],
             "never read in this forward pass"),
        )
        for title, numbers, why in groups:
            if not numbers:
                continue
            params = sum(self.numel[n] for n in numbers if self.is_param[n])
            buffers = sum(self.numel[n] for n in numbers if not self.is_param[n])
            rows.append(Row(title, "unused", {}, (), Cost(params=sympy.Integer(params),
                                                          buffers=sympy.Integer(buffers),
                                                          family="unused", layer="unused"), kind=RowKind.UNUSED))
            names = sorted(self.rec.parameters[n] for n in numbers)
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            what = " and ".join(x for x in (f"{params:,} parameter values" * bool(params),
                                            f"{buffers:,} buffer values" * bool(buffers)) if x)
            notes.append(f"{what} ({shown}) are {why}; they count in the row {title} and nowhere else")
        return rows, notes


def _buffer_kinds(model: torch.nn.Module) -> dict[str, int]:
    """Floating-point buffer values by what they are: a norm layer's running statistics, or other state."""
    from torch.nn.modules.batchnorm import _NormBase

    kinds = {"running statistics": 0, "other": 0}
    for name, b in model.named_buffers():
        if not b.is_floating_point():
            continue
        owner, _, local = name.rpartition(".")
        stats = isinstance(model.get_submodule(owner), _NormBase) and local in _STATISTICS
        kind = "running statistics" if stats else "other"
        kinds[kind] += b.numel()
    return {k: v for k, v in kinds.items() if v}
