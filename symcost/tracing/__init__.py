"""Trace a whole ``nn.Module`` into per-layer symbolic costs (see ``trace``)."""
from __future__ import annotations

import copy
from typing import Sequence

import sympy
import torch

from ..cost import Cost
from ..layers.base import LayerError
from ..model import ModelCost, Row
from ..symbols import user_symbol
from .costing import ZERO_COST_OPS, layer_for_module, layer_for_op
from ..errors import NoSingleFormula, TraceError
from .propagate import Propagation
from .record import Recording, record
from .stored import StoredTensors

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
    # the user's model stays as it is; a copy whose stored tensors are made on meta directly keeps tied weights
    # tied (``.to("meta")`` gives each module its own new Parameter) and copies no data
    memo: dict = {}
    for t in tensors:
        if id(t) not in memo:
            meta = t.detach().to("meta")
            memo[id(t)] = torch.nn.Parameter(meta, t.requires_grad) if isinstance(t, torch.nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _record(model, shape: tuple, where: str, dtype: str = "float32", symbolic: bool = False) -> Recording:
    x = torch.zeros(*[int(d) for d in shape], dtype=getattr(torch, dtype), device="meta")
    try:
        with torch.no_grad():
            return record(model, x)
    except Exception as e:  # the model's own complaint, in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        error = NoSingleFormula if symbolic else TraceError  # at a size symcost chose: --at still works
        raise error(f"the model cannot run on input {'x'.join(map(str, shape))}{where}: {msg}") from None


def trace(model: torch.nn.Module, input_shape: Sequence, *, target: str = "", train: bool = False,
          sizes: tuple[dict, dict] | None = None, input_dtype: str = "float32") -> ModelCost:
    """Derive the model's per-layer costs as formulas in the input's symbols.

    ``input_shape`` mixes integers and symbols (sympy symbols or names such as ``"H"``); ``input_dtype`` is
    "float32" or "int64" (token ids for language models).
    The model is recorded on meta tensors at two sizes (``sizes``: two dicts such as ``({"H": 225}, {"H": 193})``,
    chosen automatically by default), shapes are propagated symbolically
    and checked against both recordings, and every layer call is costed by the catalog.
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
    rec_a = _record(model, shape_a, note, input_dtype, bool(values_a))
    rec_b = _record(model, shape_b, note, input_dtype, True) if values_a else rec_a
    prop = Propagation(rec_a, rec_b, shape, values_a, values_b)
    sym = prop.run()
    mc = _rows(model, rec_a, sym, shape, target, values_a)
    mc.domain = tuple(sorted(prop.sizes, key=sympy.default_sort_key))
    return mc


def _rows(model, rec: Recording, sym: list, shape: tuple, target: str, values_a: dict) -> ModelCost:
    placed: list[tuple[int, Row, range]] = []  # (first op, row, the ops it covers): sorted into execution order
    covered = [False] * len(rec.ops)
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
        _check_params(cost, ev.module, ev.name)
        for k in range(ev.first_op, ev.end_op):
            covered[k] = True
        placed.append((ev.first_op, Row(ev.name or "(model)", layer.name, layer.plain_args(),
                                        (sym[ev.inputs[0]],), cost), range(ev.first_op, ev.end_op)))
    uncovered: dict[str, int] = {}
    zero: dict[str, int] = {}
    concrete = rec.shapes
    for k, ev in enumerate(rec.ops):
        if covered[k]:
            continue
        if ev.op in ZERO_COST_OPS:
            zero[ev.op] = zero.get(ev.op, 0) + 1
            continue
        try:
            found = layer_for_op(ev, sym, concrete)
        except LayerError as e:
            raise TraceError(f"{ev.module or '(model)'}: {ev.op}: {e}") from None
        if found is None:
            uncovered[ev.op] = uncovered.get(ev.op, 0) + 1
            continue
        layer, ins = found
        name = f"{ev.module or '(model)'}:{ev.op.split('.', 1)[1]}"
        placed.append((k, Row(name, layer.name, layer.plain_args(), ins, layer.cost(*ins)), range(k, k + 1)))
    placed.sort(key=lambda p: p[0])  # stable: a module call with no ops stays before the op that follows it
    # params and buffers by the tensors each row reads, not by the catalog's formula: a tied weight, a sliced
    # or expanded parameter and a shared module all count once, at their own size
    stored = StoredTensors(model, rec)
    rows = stored.attribute(placed)
    extra, notes = stored.leftover()
    return ModelCost(target, shape, rows + extra, uncovered, zero, notes, buffer_kinds=stored.buffer_kinds)


def _check_params(cost: Cost, module: torch.nn.Module, name: str) -> None:
    """The catalog's parameter count must equal the module's own: a free self-check of every params formula."""
    have = sum(p.numel() for p in module.parameters())
    if cost.params != have:
        raise TraceError(f"{name or '(model)'}: symcost's parameter count {cost.params} differs from the module's "
                         f"{have}")


def _check_output(cost: Cost, rec: Recording, outputs: list[int], values: dict, name: str) -> None:
    """The catalog's output shape must equal the recorded one: a free self-check of every formula."""
    if not outputs:
        return
    got = tuple(int(d.xreplace(values)) if isinstance(d, sympy.Basic) else int(d) for d in cost.output_shape)
    if got != tuple(rec.shapes[outputs[0]]):
        raise TraceError(f"{name}: symcost's output shape {got} differs from torch's {tuple(rec.shapes[outputs[0]])}")
