"""Trace a whole ``nn.Module`` into per-layer symbolic costs (see ``trace``)."""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Sequence

import sympy
import torch

from ..cost import Cost, numel
from ..layers.base import LayerError
from ..model import ModelCost, Row
from ..symbols import user_symbol
from . import backward as _backward  # noqa: F401  (registers the backward ops' costs and shape rules)
from .costing import ZERO_COST_OPS, layer_for_module, layer_for_op
from .. import moe as _moe  # noqa: F401,E402  (registers aten.topk, the router of a mixture of experts)
from ..errors import NoSingleFormula, TraceError
from .propagate import Propagation
from .record import Recording, record

__all__ = ["trace", "TraceError", "NoSingleFormula", "trace_sizes"]


def _as_symbolic(input_shape: Sequence) -> tuple:
    out = []
    for d in input_shape:
        if isinstance(d, str):
            d = int(d) if d.isdigit() else user_symbol(d)
        out.append(sympy.Integer(d) if isinstance(d, int) else d)
    return tuple(out)


def trace_sizes(shape: tuple) -> tuple[dict, dict]:
    """Two assignments of the input symbols to trace at: sizes that are not multiples of any stride,
    and different enough (per symbol) that the sizes derived from each never coincide in both traces."""
    a, b = {}, {}
    spatial = 0
    for pos, d in enumerate(shape):
        for s in sorted(d.free_symbols, key=str) if isinstance(d, sympy.Basic) else ():
            if s in a:
                continue
            if pos == 0 and len(shape) > 2:      # batch
                a[s], b[s] = sympy.Integer(2), sympy.Integer(3)
            else:
                a[s], b[s] = sympy.Integer(225 + 32 * spatial), sympy.Integer(193 - 24 * spatial)
                spatial += 1
    return a, b


def _on_meta(model: torch.nn.Module) -> torch.nn.Module:
    tensors = list(model.parameters()) + list(model.buffers())
    if tensors and all(t.device.type == "meta" for t in tensors):
        return model
    return copy.deepcopy(model).to("meta")  # the user's model stays as it is


def _record(model, shape: tuple, where: str, dtype: str = "float32", symbolic: bool = False,
            backward: bool = False) -> Recording:
    x = torch.zeros(*[int(d) for d in shape], dtype=getattr(torch, dtype), device="meta")
    try:
        with torch.enable_grad() if backward else torch.no_grad():
            return record(model, x, backward)
    except Exception as e:  # the model's own complaint, in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        error = NoSingleFormula if symbolic else TraceError  # at a size symcost chose: --at still works
        raise error(f"the model cannot run on input {'x'.join(map(str, shape))}{where}: {msg}") from None


def trace(model: torch.nn.Module, input_shape: Sequence, *, target: str = "", train: bool = False,
          sizes: tuple[dict, dict] | None = None, input_dtype: str = "float32", backward: bool = False) -> ModelCost:
    """Derive the model's per-layer costs as formulas in the input's symbols.

    ``input_shape`` mixes integers and symbols (sympy symbols or names such as ``"H"``); ``input_dtype`` is
    "float32" or "int64" (token ids for language models).
    The model is recorded on meta tensors at two sizes (``sizes``: two dicts such as ``({"H": 225}, {"H": 193})``,
    chosen automatically by default), shapes are propagated symbolically
    and checked against both recordings, and every layer call is costed by the catalog.
    ``backward``: also the backward pass of one training step (see ``tracing.backward``); its rows have
    ``Row.backward`` set.
    """
    shape = _as_symbolic(input_shape)
    model = _on_meta(model)
    model.train(train)
    if sizes:  # {"H": 225, ...} or {Symbol: 225}: the two sizes to record at
        by_name = {str(s): s for d in shape for s in getattr(d, "free_symbols", ())}
        values_a, values_b = ({by_name.get(str(k), k): sympy.Integer(v) for k, v in d.items()} for d in sizes)
    else:
        values_a, values_b = trace_sizes(shape)
    shape_a = [int(d.xreplace(values_a)) for d in shape]
    shape_b = [int(d.xreplace(values_b)) for d in shape]
    note = " (a size symcost chose to trace a symbolic input at; give a concrete --input if the model " \
           "accepts only certain sizes)" if values_a else ""
    if input_dtype not in ("float32", "float16", "bfloat16", "int64", "int32"):
        raise TraceError(f"input dtype {input_dtype!r}: expected float32, float16, bfloat16, int64 or int32")
    rec_a = _record(model, shape_a, note, input_dtype, bool(values_a), backward)
    rec_b = _record(model, shape_b, note, input_dtype, True, backward) if values_a else rec_a
    prop = Propagation(rec_a, rec_b, shape, values_a, values_b)
    sym = prop.run()
    mc = _rows(model, rec_a, sym, shape, target, values_a)
    mc.domain = tuple(sorted(prop.sizes, key=sympy.default_sort_key))
    if backward:
        mc.notes.extend(_backward.notes(mc))
    return mc


def _rows(model, rec: Recording, sym: list, shape: tuple, target: str, values_a: dict) -> ModelCost:
    rows: list[Row] = []
    covered = [False] * len(rec.ops)
    used: set[str] = set()          # parameter and buffer names already counted
    param_names = {n for n, _ in model.named_parameters()}
    # like ``empirical``, only floating-point buffers count (not integer ids or counters)
    float_buffers = {n for n, b in model.named_buffers() if b.is_floating_point()}
    seen_modules: set[int] = set()
    owner = {}  # op index -> row position, to keep rows in execution order
    for ev in rec.modules:
        if covered[ev.first_op] if ev.first_op < len(rec.ops) else True:
            continue
        layer = layer_for_module(ev.module)
        if layer is None:
            continue
        if not ev.inputs:
            continue
        try:
            cost = layer.cost(sym[ev.inputs[0]])
        except LayerError as e:
            raise TraceError(f"{ev.name}: {e}") from None
        _check_output(cost, rec, ev.outputs, values_a, ev.name)
        names = [f"{ev.name}.{n}" if ev.name else n for n, _ in
                 list(ev.module.named_parameters()) + list(ev.module.named_buffers())]
        if id(ev.module) in seen_modules:
            cost = replace(cost, params=sympy.Integer(0), buffers=sympy.Integer(0))  # shared weights count once
        seen_modules.add(id(ev.module))
        used.update(names)
        for k in range(ev.first_op, ev.end_op):
            covered[k] = True
        owner[ev.first_op] = len(rows)
        rows.append(Row(ev.name or "(model)", layer.name, layer.plain_args(), (sym[ev.inputs[0]],), cost))
    uncovered: dict[str, int] = {}
    zero: dict[str, int] = {}
    concrete = rec.shapes
    for k, ev in enumerate(rec.ops):
        if covered[k]:
            continue
        if ev.op in ZERO_COST_OPS:
            zero[ev.op] = zero.get(ev.op, 0) + 1
            src = next((rec.parameters[n] for n in ev.inputs if n in rec.parameters), None)
            for o in ev.outputs if src else ():
                rec.parameters[o] = src  # a view of a parameter is that parameter, for attribution
            continue
        try:
            found = layer_for_op(ev, sym, concrete)
        except LayerError as e:
            raise TraceError(f"{ev.module or '(model)'}: {ev.op}: {e}") from None
        if found is None:
            uncovered[ev.op] = uncovered.get(ev.op, 0) + 1
            continue
        layer, ins = found
        cost = layer.cost(*ins)
        # a functional op's params are the parameters it reads first (its formula cannot know
        # whether a weight is a parameter or a computed tensor)
        new = {rec.parameters[n]: n for n in ev.inputs if n in rec.parameters and rec.parameters[n] not in used}
        used.update(new)
        p = sum((numel(concrete[n]) for name, n in new.items() if name in param_names), sympy.Integer(0))
        bf = sum((numel(concrete[n]) for name, n in new.items() if name in float_buffers), sympy.Integer(0))
        cost = replace(cost, params=p, buffers=bf)
        owner[k] = len(rows)
        grad = rec.backward_start is not None and k >= rec.backward_start
        rows.append(Row(f"{'(backward)' if grad else ev.module or '(model)'}:{ev.op.split('.', 1)[1]}", layer.name,
                        layer.plain_args(), ins, cost, backward=grad))
    order = sorted(owner, key=lambda k: k)
    rows = [rows[owner[k]] for k in order]
    notes = []
    leftover_p = sum(p.numel() for n, p in model.named_parameters() if n not in used)
    leftover_b = sum(b.numel() for n, b in model.named_buffers() if n not in used and b.is_floating_point())
    if leftover_p or leftover_b:
        rows.append(Row("(parameters not used in forward)", "unused", {}, (),
                        Cost(params=leftover_p, buffers=leftover_b, family="unused", layer="unused")))
        notes.append(f"{leftover_p} parameters are never used in this forward pass (e.g. auxiliary heads); "
                     "they count in params and nowhere else")
    return ModelCost(target, shape, rows, uncovered, zero, notes)


def _check_output(cost: Cost, rec: Recording, outputs: list[int], values: dict, name: str) -> None:
    """The catalog's output shape must equal the recorded one: a free self-check of every formula."""
    if not outputs:
        return
    got = tuple(int(d.xreplace(values)) if isinstance(d, sympy.Basic) else int(d) for d in cost.output_shape)
    if got != tuple(rec.shapes[outputs[0]]):
        raise TraceError(f"{name}: symcost's output shape {got} differs from torch's {tuple(rec.shapes[outputs[0]])}")
