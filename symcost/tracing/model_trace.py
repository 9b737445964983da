"""Trace a whole ``nn.Module`` into per-layer symbolic costs: ``trace`` records the model at two sizes, derives each
row's formula, verifies it at a third recording of other residues and bounds it by the symbolic run's size guards
(pieces across a bound, sums over loops)."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Sequence

import sympy
import torch

from ..cost import Cost
from ..layers.base import LayerError, cost_memo
from ..model import ModelCost, Row, RowKind
from . import causal as _causal
from . import ops as _ops  # noqa: F401  (registers the built-in op records)
from . import step_notes
from .module_layers import layer_for_module
from .op_args import layer_for_op
from .handlers import ZERO_COST_OPS, custom_ops
from ..errors import NeedsTensorValues, NoSingleFormula, TraceError, UsageError
from .bounds import Bounds
from .propagate import Propagation
from .record import NoTensorOutput, Recording, record
from .guards import Proof, implied, prove
from .meta_kernels import meta_memo
from .verify import check_points, describe, mixed_points, verify
from .stored import StoredTensors
from .inputs import (as_symbolic, concrete_shape, default_values, dtype_of, flat_sizes, fresh_copy, on_meta,
                     shape_at, shown_shape, trace_sizes)

__all__ = ["trace", "TraceError", "NoSingleFormula"]


def _record(model, shape: tuple | dict, where: str, dtype: str | dict = "float32", symbolic: bool = False,
            backward: bool = False) -> Recording:
    if isinstance(shape, dict):  # named inputs, passed as keywords
        x = {n: torch.zeros(*[int(d) for d in s], dtype=getattr(torch, dtype_of(dtype, n)), device="meta")
             for n, s in shape.items()}
    else:
        x = torch.zeros(*[int(d) for d in shape], dtype=getattr(torch, dtype_of(dtype)), device="meta")
    try:
        with torch.enable_grad() if backward else torch.no_grad():
            rec = record(fresh_copy(model), x, backward)
        _freeze_more()
        return rec
    except NoTensorOutput as e:  # at every size: not a size's problem
        raise TraceError(str(e)) from None
    except Exception as e:  # the model's own complaint, in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        error = NoSingleFormula if symbolic else TraceError  # at a size symcost chose: --at still works
        from .meta_ops import meta_op

        if op := meta_op(e):  # the op, not the input, is the problem: it needs tensor values, at every size
            raise NeedsTensorValues(f"the model calls {op}, which cannot run on meta tensors (its result depends on "
                                    f"tensor values; symcost traces shapes only, at input {shown_shape(shape)}{where})"
                                    ) from None
        if "indices" in msg and not any(dtype_of(dtype, n).startswith("int") for n in
                                        (shape if isinstance(shape, dict) else [""])):
            msg += " (the model takes integer ids: give --input-dtype int64, or input_dtype=\"int64\" in Python)"
        raise error(f"the model cannot run on input {shown_shape(shape)}{where}: {msg}") from None


_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")


def trace(model: torch.nn.Module, input_shape: Sequence | dict, *, target: str = "", train: bool = False,
          sizes: tuple[dict, dict] | None = None, input_dtype: str | dict = "float32",
          default_shape: Sequence[int] | None = None, backward: bool = False,
          custom_mapping: dict | None = None, pieces: bool = True) -> ModelCost:
    """Derive the model's per-layer costs as formulas in the input's symbols.

    ``input_shape`` mixes integers and symbols (sympy symbols or names such as ``"H"``); ``input_dtype`` is
    "float32" or "int64" (token ids for language models).
    Named inputs: ``input_shape`` a dict of keyword -> shape (``{"input_ids": (1, "L"), "decoder_input_ids":
    (1, "M")}``), passed to the forward as keywords, recorded together; ``input_dtype`` then a dict of keyword ->
    dtype (float32 for a name it lacks) or one dtype for all.
    The model is recorded on meta tensors at two sizes (``sizes``: two dicts such as ``({"H": 225}, {"H": 193})``,
    chosen automatically by default, around ``default_shape`` — the model's own input size, aligned to the right of
    ``input_shape`` — when given), shapes are propagated symbolically and checked against both recordings, every
    layer call is costed by the catalog, and the result is verified against a third recording at sizes of other
    residues (``NoSingleFormula`` if any count differs).  A model that runs at none of the trace sizes but at its
    ``default_shape`` is derived exactly at that size, with a note (``ModelCost.fixed_at``).
    ``backward``: also the backward pass of one training step (see ``tracing.step_notes``); its rows have
    ``Row.backward`` set.
    ``pieces``: where a size guard bounds one input size (``x[:, :512]``, ``if W > 512``), also derive the
    formula beyond it, each side proven and verified, and return totals in pieces (``tracing.pieces``); False: the
    one formula of the path traced, its guards its domain.
    ``custom_mapping``: op -> handler for this trace only, before the registered ones (``symcost.register_op``
    documents the handler; as ``FlopCounterMode(custom_mapping=...)``).
    """
    if not isinstance(model, torch.nn.Module):
        hint = (f": a target name goes to symcost.model({model!r}, ...)" if isinstance(model, str)
                else "; a factory of modules takes config=" if callable(model) else "")
        kind = type(model).__name__
        raise UsageError(f"trace() takes an nn.Module, not {'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind}{hint}")
    # a model already on meta is traced as it is, not copied: its train/eval flags are put back as they were
    modes = {m: m.training for m in model.modules()} if isinstance(model, torch.nn.Module) else {}
    try:
        with custom_ops(custom_mapping), cost_memo(), meta_memo(), _old_objects_frozen():
            return _trace(model, input_shape, target, train, sizes, input_dtype, default_shape, backward, pieces)
    finally:
        for m, training in modes.items():
            m.training = training


@contextmanager
def _old_objects_frozen():
    """The objects that exist before a trace left out of the garbage collector's scans during it (``gc.freeze``):
    a trace allocates enough to trigger full collections, which otherwise walk every object of torch, sympy and
    transformers each time (a third of a Llama trace).  Nothing is freed later than it would be by reference
    counting; the objects a trace makes are still collected.  Left alone where something froze objects already."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    _FROZEN.append(True)
    try:
        yield
    finally:
        _FROZEN.pop()
        gc.unfreeze()


_FROZEN: list = []  # non-empty while ``_old_objects_frozen`` holds objects frozen


def _freeze_more() -> None:
    """After a recording: it, too, out of the collector's scans for the rest of the trace (where we froze)."""
    if _FROZEN:
        gc.freeze()


def _trace(model, input_shape, target, train, sizes, input_dtype, default_shape, backward,
           pieces: bool = True) -> ModelCost:
    shape = as_symbolic(input_shape)
    model = on_meta(model)
    model.train(train)
    for dt in input_dtype.values() if isinstance(input_dtype, dict) else (input_dtype,):
        if dt not in _DTYPES:
            raise TraceError(f"input dtype {dt!r}: expected {', '.join(_DTYPES[:-1])} or {_DTYPES[-1]}")
    symbols = {str(s): s for d in flat_sizes(shape) for s in getattr(d, "free_symbols", ())}
    if not symbols:
        rec = _record(model, shape, "", input_dtype, backward=backward)
        return _derive(model, rec, rec, shape, {}, {}, target, backward)
    default = default_values(shape, default_shape)
    if sizes:  # {"H": 225, ...} or {Symbol: 225}: the two sizes to record at
        pairs = [tuple({symbols.get(str(k), k): sympy.Integer(v) for k, v in d.items()} for d in sizes)]
        _check_sizes(pairs[0], symbols)
    else:
        pairs = trace_sizes(flat_sizes(shape), default)
    note = "" if sizes else " (a size symcost chose to trace a symbolic input at; --trace-sizes chooses others)"
    failed = None
    for values_a, values_b in pairs:
        try:
            rec_a = _record(model, shape_at(shape, values_a), note, input_dtype, True, backward)
            rec_b = _record(model, shape_at(shape, values_b), note, input_dtype, True, backward)
            break
        except NoSingleFormula as e:
            failed = failed or e
    else:
        if sizes or len(default) != len(symbols):
            raise failed
        return _fixed_size(model, shape, default, failed, target, input_dtype, backward)
    if len(rec_a.ops) != len(rec_b.ops):  # a loop over a size (summed) or a branch on it (refused, named)
        from . import loops

        try:
            steps = loops.Steps(record=_record, derive=_derive, rows=_rows, fresh=fresh_copy, concrete=concrete_shape)
            return loops.derive(model, shape, values_a, values_b, rec_a, rec_b, input_dtype, target, backward, steps)
        except NoSingleFormula:  # a branch, not a loop: the trace sizes may lie on both sides of a bound
            found = _straddling(model, shape, values_a, values_b, input_dtype, target, backward, pieces)[0]
            if found is None:
                raise
            return found
    # the far check point, recorded first: where a size the model computes in Python fits several formulas at both
    # trace sizes (H - 1 and 2*floor(H/2) at odd H), the propagation keeps the one that also fits here
    # (where the model refuses it -- a sliding window's limit on a decode step's cache -- the next check point)
    rec_far, far = _far_recording(model, shape, values_a, values_b, input_dtype, backward)
    try:
        mc = _derive(model, rec_a, rec_b, shape, values_a, values_b, target, backward,
                     third=(rec_far, far[1]) if rec_far is not None else None)
    except NoSingleFormula as e:  # name the decision the model made, where a guard shows it
        found, broken = _straddling(model, shape, values_a, values_b, input_dtype, target, backward, pieces)
        if found is not None:
            return found
        if broken is None:
            raise
        raise NoSingleFormula(f"{e} (the size guard that changes between {describe(values_a)} and "
                              f"{describe(values_b)}: {broken.text()})") from None
    proof = _proven(model, mc, shape, values_a, input_dtype, backward)
    _verify(model, mc, shape, values_a, values_b, rec_a, input_dtype, target, backward, far_recording=rec_far,
            far_index=far[0] if far else 0, proof=proof)
    if not pieces:
        return mc
    from .pieces import extend  # beyond a bound on one size: that side's formula too, in one Piecewise

    return extend(mc, proof, values_a, values_b,
                  lambda at_a, at_b: _piece(model, shape, at_a, at_b, input_dtype, target, backward),
                  _domain_note(mc, proof))


def _far_recording(model, shape, values_a: dict, values_b: dict, dtype, backward: bool):
    """The recording at the first check point the model runs at, with (its index, the point); (None, None) if none."""
    for k, point in enumerate(check_points(values_a, values_b)):
        try:
            return _record(model, concrete_shape(shape, point), "", dtype, backward=backward), (k, point)
        except TraceError:
            continue
    return None, None


def _straddling(model, shape, values_a, values_b, input_dtype, target, backward, pieces: bool):
    """Where the two trace sizes lie on both sides of a guard: the formula in pieces if the guard bounds one size
    (``tracing.pieces``), else None; and the guard the second size breaks (None if none does)."""
    first = prove(fresh_copy(model), shape, values_a, input_dtype, backward)
    broken = first.violated(values_b)
    if broken is None or not pieces:
        return None, broken
    from .pieces import straddled

    found = straddled(first, broken, values_a, values_b,
                      lambda at_a, at_b: _piece(model, shape, at_a, at_b, input_dtype, target, backward),
                      _domain_note)
    return found, broken


def _piece(model, shape, values_a: dict, values_b: dict, dtype, target: str, backward: bool) -> tuple[ModelCost, Proof]:
    """The formula of the sizes around ``values_a`` and ``values_b`` (a region beyond a guard), derived, its guards
    proven and verified as the first formula's are (``tracing.pieces``)."""
    rec_a = _record(model, shape_at(shape, values_a), "", dtype, True, backward)
    rec_b = _record(model, shape_at(shape, values_b), "", dtype, True, backward)
    rec_far, far = _far_recording(model, shape, values_a, values_b, dtype, backward)
    mc = _derive(model, rec_a, rec_b, shape, values_a, values_b, target, backward,
                 third=(rec_far, far[1]) if rec_far is not None else None)
    proof = _proven(model, mc, shape, values_a, dtype, backward, note=False)
    _verify(model, mc, shape, values_a, values_b, rec_a, dtype, target, backward, far_recording=rec_far,
            far_index=far[0] if far else 0, proof=proof)
    return mc, proof


def _proven(model, mc: ModelCost, shape, values_a: dict, dtype, backward: bool, note: bool = True) -> Proof:
    """The size guards of the path traced at ``values_a`` become the formulas' domain (``tracing.guards``).  (Where
    the second trace size breaks one, the formula still fits both recordings, and is claimed on the first's side
    only, where the verification checks it.)"""
    proof = prove(fresh_copy(model), shape, values_a, dtype, backward)
    mc.guards = tuple(g.condition for g in proof.guards)
    mc.proven = proof.proven
    text = _domain_note(mc, proof) if note else None
    if text:
        mc.notes.append(text)
    return proof


def _domain_note(mc: ModelCost, proof: Proof) -> str | None:
    """What the guards say about the formulas' domain, or None where they say nothing a reader needs."""
    shown = [g.text() for g in proof.guards if not implied(g.condition, mc.domain)]
    if proof.proven and shown:
        return (f"the formulas hold where {'; '.join(shown)} (size guards of the model's forward, read from a run "
                "with symbolic sizes); other sizes are traced on their own")
    if not proof.proven:
        return (f"domain sampled, not proven: {proof.reason}; the formulas are verified at five recorded sizes"
                + (f", and hold only where {'; '.join(shown)}" if shown else ""))
    return None


def _check_sizes(pair: tuple[dict, dict], symbols: dict) -> None:
    for d in pair:
        missing = sorted(set(symbols) - {str(k) for k in d})
        if missing or any(int(v) < 1 for v in d.values()):
            raise TraceError(f"trace sizes {d}: need a positive integer for every input symbol "
                             f"({', '.join(sorted(symbols))})")
    if any(pair[0][s] == pair[1][s] for s in pair[0]):
        raise TraceError("the two trace sizes must differ in every symbol")


def _derive(model, rec_a: Recording, rec_b: Recording, shape: tuple, values_a: dict, values_b: dict,
            target: str, backward: bool = False, third: tuple[Recording, dict] | None = None) -> ModelCost:
    prop = Propagation(rec_a, rec_b, shape, values_a, values_b, third)
    sym = prop.run()
    mc = _rows(model, rec_a, sym, shape, target, values_a, prop.costed)
    bounds = Bounds(lambda x, y: sympy.Integer(x) if x == y else prop.lookup.get((x, y)))
    for ev, evb in zip(rec_a.ops, rec_b.ops):
        bounds.step(ev, evb, sym)
    mc.domain = tuple(sorted(prop.sizes | bounds.conditions, key=sympy.default_sort_key))
    if backward:
        mc.notes.extend(step_notes.notes(mc))
    return mc


def _verify(model, mc: ModelCost, shape: tuple, values_a: dict, values_b: dict, rec_a: Recording, dtype: str,
            target: str, backward: bool = False, far_recording: Recording | None = None, far_index: int = 0,
            proof: Proof | None = None) -> None:
    """The derivation against more recordings at sizes of other residues (see ``verify``): the far check point
    (or, where the model refuses it, the next), then two points whose halvings alternate in parity, where the model
    runs.  ``far_recording``: the recording made already at check point ``far_index``."""
    points = check_points(values_a, values_b)
    checked = False
    for k, values in enumerate(points):
        if proof is not None and proof.violated(values) is not None:
            continue  # another path: the formula does not claim this size
        if _verified_at(model, mc, shape, values, rec_a, dtype, target, backward,
                        far_recording if k == far_index else None):
            checked = True
            break
    else:
        if not any(proof is not None and proof.violated(p) is not None for p in points):
            raise NoSingleFormula(f"the model runs at the trace sizes but not at {describe(points[0])} (which a "
                                  f"formula in {', '.join(map(str, mc.symbols))} would cover)")
    for mixed in mixed_points(values_a, values_b):
        if proof is None or proof.violated(mixed) is None:
            checked |= _verified_at(model, mc, shape, mixed, rec_a, dtype, target, backward)
    if not checked:
        raise NoSingleFormula("no size inside the formulas' domain besides the trace sizes could be recorded to "
                              "verify them")


def _verified_at(model, mc: ModelCost, shape: tuple, values: dict, rec_a: Recording, dtype: str, target: str,
                 backward: bool, rec: Recording | None = None) -> bool:
    """Verify at one assignment (``rec``: its recording, if made already); False where the model does not run
    there (``NoSingleFormula`` on a difference)."""
    concrete = concrete_shape(shape, values)
    if rec is None:
        try:
            rec = _record(model, concrete, "", dtype, backward=backward)
        except TraceError:
            return False
    verify(mc, rec, _derive(model, rec, rec, concrete, {}, {}, target, backward), values, rec_a)
    return True


def _fixed_size(model, shape: tuple, default: dict, failed: Exception, target: str, dtype: str,
                backward: bool = False) -> ModelCost:
    """A model that runs at its own size only: the exact derivation there, and why no formula exists."""
    concrete = concrete_shape(shape, {s: sympy.Integer(v) for s, v in default.items()})
    rec = _record(model, concrete, "", dtype, backward=backward)
    mc = _derive(model, rec, rec, concrete, {}, {}, target, backward)
    mc.fixed_at = {str(s): int(v) for s, v in default.items()}
    mc.notes.append(f"no formula in {', '.join(map(str, sorted(default, key=str)))}: the model runs at "
                    f"{describe(mc.fixed_at)} but not at the sizes a formula is derived from ({failed}); "
                    f"these are the exact numbers at {describe(mc.fixed_at)} only")
    return mc


def _rows(model, rec: Recording, sym: list, shape: tuple, target: str, values_a: dict, costed: dict) -> ModelCost:
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
        if ev.op in ZERO_COST_OPS or _all_empty(ev, sym):
            zero[ev.op] = zero.get(ev.op, 0) + 1
            continue
        if k in costed:  # costed already by shape propagation (its output shape is its layer's)
            layer, ins, cost = costed[k]
        else:
            try:
                found = layer_for_op(ev, sym, concrete)
            except LayerError as e:
                raise TraceError(f"{ev.module or '(model)'}: {ev.op}: {e}") from None
            if found is None:
                uncovered[ev.op] = uncovered.get(ev.op, 0) + 1
                continue
            layer, ins = found
            cost = layer.cost(*ins)
        grad = rec.backward_start is not None and k >= rec.backward_start
        name = f"{'(backward)' if grad else ev.module or '(model)'}:{ev.op.split('.', 1)[1]}"
        placed.append((k, Row(name, layer.name, layer.plain_args(), ins, cost, backward=grad,
                                  kind=RowKind.FUNCTIONAL), range(k, k + 1)))
    placed.sort(key=lambda p: p[0])  # stable: a module call with no ops stays before the op that follows it
    rec.row_ops = [ops for _, _, ops in placed]  # which ops each row covers (``tracing.loops`` sums a loop's rows)
    # params and buffers by the tensors each row reads, not by the catalog's formula: a tied weight, a sliced
    # or expanded parameter and a shared module all count once, at their own size
    stored = StoredTensors(model, rec)
    rows = stored.attribute(placed)
    extra, notes = stored.leftover()
    notes.extend(_causal.mark(model, rows))
    named = dict(shape) if isinstance(shape, dict) else {}
    return ModelCost(target, flat_sizes(shape), rows + extra, uncovered, zero, notes, buffer_kinds=stored.buffer_kinds,
                     inputs=named)


def _all_empty(ev, sym: list) -> bool:
    """Every output has a dimension that is 0 at every size (the unrotated part of a head that rotary embeddings
    cover whole): the op writes nothing and reads nothing it needs."""
    return bool(ev.outputs) and all(any(d == 0 for d in sym[n]) for n in ev.outputs)


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


