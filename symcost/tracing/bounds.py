"""Limits a model puts on its input sizes that no tensor size shows: a slice of a fixed table (BERT's
``position_ids[:, :L]``) and an embedding looked up at positions ``arange(L)`` (GPT-2's ``wpe``).  Torch refuses a
length past the table (on real tensors; meta tensors do not check indices), so the formula's domain says so too.

Each limit is one more expression that must be >= 1, beside the tensor sizes of ``Propagation.sizes``.
"""
from __future__ import annotations

import sympy

from .record import OpEvent, TensorRef

#: ops whose result holds the same values (or a subset) as their first tensor argument
_SAME_VALUES = {"aten.detach", "aten.unsqueeze", "aten.view", "aten._unsafe_view", "aten.reshape", "aten.expand",
                "aten.alias", "aten.clone", "aten._to_copy", "aten.slice", "aten.select", "aten.lift_fresh",
                "aten.squeeze", "aten.flatten"}


class Bounds:
    """Tracks an upper bound of the values of integer position tensors, and collects the domain conditions."""

    def __init__(self, number) -> None:
        self.number = number            # (value at trace a, value at trace b) -> sympy expression or None
        self.top: dict[int, sympy.Expr] = {}
        self.conditions: set = set()

    def step(self, ev: OpEvent, evb: OpEvent, sym: list) -> None:
        if ev.op == "aten.arange":
            ends = [a for a in ev.args if isinstance(a, int)]
            ends_b = [a for a in evb.args if isinstance(a, int)]
            step = ev.kwargs.get("step", ends[2] if len(ends) > 2 else 1)
            if ends and step == 1 and len(ends) == len(ends_b) and ev.outputs:
                end = self.number(ends[min(1, len(ends) - 1)], ends_b[min(1, len(ends_b) - 1)])
                if end is not None:
                    self.top[ev.outputs[0]] = end - 1
            return
        self.embedding(ev, sym)
        first = next((a for a in ev.args if isinstance(a, TensorRef)), None)
        if first is None:
            return
        if ev.op == "aten.slice" and len(sym[first.index]) > 0:
            dim = ev.args[1] if len(ev.args) > 1 else 0
            size_in, size_out = sym[first.index][dim], sym[ev.outputs[0]][dim]
            if size_in.is_Integer and size_out.free_symbols:   # a symbolic slice of a fixed table
                self.conditions.add(size_in + 1 - size_out)
        top = self.top.get(first.index)
        if top is None:
            return
        if ev.op in _SAME_VALUES:
            self.top[ev.outputs[0]] = top
        elif ev.op == "aten.add" and len(ev.args) > 1 and isinstance(ev.args[1], int):
            self.top[ev.outputs[0]] = top + ev.args[1]

    def embedding(self, ev: OpEvent, sym: list) -> None:
        """``embedding(weight, indices)``: indices up to ``top`` need a table of more than ``top`` rows."""
        if ev.op != "aten.embedding" or len(ev.args) < 2 or not isinstance(ev.args[1], TensorRef):
            return
        top = self.top.get(ev.args[1].index)
        rows = sym[ev.args[0].index][0] if isinstance(ev.args[0], TensorRef) else None
        if top is not None and rows is not None and top.free_symbols:
            self.conditions.add(rows - top)
