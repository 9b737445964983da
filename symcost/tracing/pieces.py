"""Pieces instead of refusals: a formula on each side of a size threshold, joined into one ``Piecewise``.

A guard such as ``L <= 511`` (``x[:, :512]``) or ``W <= 512`` (``if x.shape[-1] > 512: x = interpolate(x, …)``)
bounds the formula of the path traced; beyond it the model takes another path, with a formula of its own.  Where
the guard is a bound on one input size (linear in that size alone), the model is traced again at sizes beyond it:
that side's formula is derived, its own guards proven by a run with symbolic sizes, and verified at further sizes
of that side, exactly as the first formula is.  The totals are then a ``Piecewise`` over the regions of that size
(``L <= 511`` / ``L >= 512``), each piece exact on its side; a size in no piece is refused naming the guard that
bounds the pieces, as a size outside one formula's domain is.

Bounded on purpose: one size is split (a model with thresholds on two sizes keeps its one formula and its domain),
at most ``MAX_PIECES`` pieces, and a region is tried only where it holds room for two trace sizes and a size to
verify at.  Work is spent only where a guard bounds a size: a model whose guards split nothing is not traced again.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace

import sympy

from ..cost import Cost, as_expr
from ..errors import SymcostError
from ..model import ModelCost, Row, integer_range, linear_bound, piecewise, shown_condition
from .guards import Proof

#: the most pieces a formula comes in (a chunked loop's pieces beyond them are refused, naming the bound)
MAX_PIECES = 4
#: the fewest sizes a bounded region needs to be derived: two trace sizes and one to verify at, with room
_MIN_WIDTH = 6


@dataclass
class _Piece:
    low: int                # the piece's sizes of the split symbol: low <= s <= high (high None: no bound)
    high: int | None
    mc: ModelCost
    proof: Proof
    rest: list              # its guards that are not bounds on the split symbol


def bound(condition) -> tuple[sympy.Symbol, int, int | None] | None:
    """``(s, low, high)`` where ``condition`` is a bound on one integer size linear in it (``L < 512`` -> ``(L, 1,
    511)``, ``-W + 513 <= 0`` -> ``(W, 513, None)``); None for anything else (an equality, a divisibility, two
    sizes)."""
    if not isinstance(condition, (sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge)):
        return None
    found = linear_bound(condition)
    if found is None:
        return None
    s, op, edge = found
    low, high = integer_range(s, op, edge)
    return s, 1 if low is None else low, high


def _interval(guards, s) -> tuple[int, int | None, list]:
    """The sizes of ``s`` the guards allow, as ``(low, high)``, and the guards that are not bounds on ``s``."""
    low, high, rest = 1, None, []
    for g in guards:
        b = bound(g)
        if b is None or b[0] != s:
            rest.append(g)
            continue
        low = max(low, b[1])
        high = b[2] if high is None else (high if b[2] is None else min(high, b[2]))
    return low, high, rest


def _split_symbol(proof: Proof) -> sympy.Symbol | None:
    """The one input size whose bounds leave a region beyond them worth deriving; None where no guard bounds a
    size so, or where bounds on two sizes would (their regions multiply: today's one formula and domain stand)."""
    found = set()
    for g in proof.guards:
        b = bound(g.condition)
        if b is not None and (b[2] is not None or b[1] - 1 >= _MIN_WIDTH):
            found.add(b[0])
    return found.pop() if len(found) == 1 else None


def _sizes_in(low: int, high: int | None) -> tuple[int, int] | None:
    """Two trace sizes inside ``[low, high]``: odd and 64 apart where there is room (as the first trace sizes),
    the larger one below ``high`` by at least one so that a size beside it is left to verify at."""
    if high is None:
        b = 32 * -(-(low - 1) // 32) + 1      # the first 32k + 1 in the region
        return b + 64, b
    if high - low + 1 < _MIN_WIDTH:
        return None
    a = high - 1 if high % 2 == 0 else high
    for gap in (64, 32, 16, 8, 4):
        if a - gap >= low:
            return a, a - gap
    return None


def extend(mc: ModelCost, proof: Proof, values_a: dict, values_b: dict,
           derive: Callable[[dict, dict], tuple[ModelCost, Proof]], domain_note: str | None) -> ModelCost:
    """``mc`` (derived at ``values_a``/``values_b``, its guards ``proof``) joined with the formulas of the regions
    beyond its bounds on one size, where the model runs there: a ``ModelCost`` in pieces, or ``mc`` itself.
    ``derive(values_a, values_b)``: another region's derivation, its guards proven and verified (raises where it
    cannot be made); ``domain_note``: ``mc``'s note about its guards, replaced by one about the pieces."""
    s = _split_symbol(proof)
    if s is None:
        return mc
    low, high, rest = _interval([g.condition for g in proof.guards], s)
    pieces = [_Piece(low, high, mc, proof, _needed(rest, mc))]
    regions = ([((high + 1, None), +1)] if high is not None else []) + \
        ([((1, low - 1), -1)] if low - 1 >= _MIN_WIDTH else [])
    tries = 0
    while regions and len(pieces) < MAX_PIECES and tries < MAX_PIECES:
        (r_low, r_high), direction = regions.pop(0)
        sizes = _sizes_in(r_low, r_high)
        if sizes is None:
            continue
        tries += 1
        at_a, at_b = {**values_a, s: sympy.Integer(sizes[0])}, {**values_b, s: sympy.Integer(sizes[1])}
        try:
            p_mc, p_proof = derive(at_a, at_b)
        except SymcostError:  # the model refuses that side, or no one formula holds there: refused, as today
            continue
        if p_mc.fixed_at or p_mc.pieces or p_mc.buffer_kinds != mc.buffer_kinds:
            continue  # (buffer values by kind are numbers that sum to the buffers of every piece)
        p_low, p_high, p_rest = _interval([g.condition for g in p_proof.guards], s)
        # a sampled piece claims its region at most; a proven one whose guards reach past it is not what we asked
        p_low, p_high = max(p_low, r_low), (r_high if p_high is None else
                                            p_high if r_high is None else min(p_high, r_high))
        if not p_low <= sizes[1] < sizes[0] <= (p_high if p_high is not None else sizes[0]):
            continue
        pieces.append(_Piece(p_low, p_high, p_mc, p_proof, _needed(p_rest, p_mc)))
        if direction > 0 and p_high is not None:
            regions.append(((p_high + 1, None), +1))
        elif direction < 0 and p_low - 1 >= 1:
            regions.append(((1, p_low - 1), -1))
    if len(pieces) == 1:
        return mc
    return _joined(sorted(pieces, key=lambda p: p.low), s, domain_note)


def straddled(proof: Proof, broken, values_a: dict, values_b: dict,
              derive: Callable[[dict, dict], tuple[ModelCost, Proof]],
              domain_note: Callable[[ModelCost, Proof], str | None]) -> ModelCost | None:
    """The two trace sizes fell on both sides of a guard (``broken``, of the path at ``values_a``; ``proof``: that
    path's guards): where it bounds one size, the formula of ``values_a``'s side from two sizes on that side, and
    the pieces beyond; None where it is no such bound or that side has no formula."""
    b = bound(broken.condition)
    if b is None:
        return None
    s = b[0]
    low, high, _ = _interval([g.condition for g in proof.guards], s)
    sizes = _sizes_in(low, high)
    if sizes is None:
        return None
    at_a, at_b = {**values_a, s: sympy.Integer(sizes[0])}, {**values_b, s: sympy.Integer(sizes[1])}
    try:
        mc, first = derive(at_a, at_b)
    except SymcostError:
        return None
    if mc.fixed_at:
        return None
    note = domain_note(mc, first)
    joined = extend(mc, first, at_a, at_b, derive, note)
    if joined is mc and note:  # no other side: one formula, its guards its domain, as any
        mc.notes.append(note)
    return joined


def _needed(guards: list, mc: ModelCost) -> list:
    """The guards a piece's tensor sizes do not imply already (``H >= 3`` where ``H - 2`` is a size: the domain
    of that piece states it)."""
    from .guards import implied

    return [g for g in guards if not implied(g, mc.domain)]


def _bounds(s, low: int, high: int | None, outer: tuple[int, int | None] = (1, None)) -> list:
    """``low <= s <= high`` as relations, leaving out the bounds that ``outer`` states already."""
    out = []
    if low > outer[0]:
        out.append(sympy.Ge(s, low))
    if high is not None and high != outer[1]:
        out.append(sympy.Le(s, high))
    return out


def _joined(pieces: list[_Piece], s, domain_note: str | None) -> ModelCost:
    first = pieces[0].mc
    common = [g for g in pieces[0].rest if all(g in p.rest for p in pieces[1:])]
    specific = [[g for g in p.rest if g not in common] for p in pieces]
    outer = (pieces[0].low, pieces[-1].high)
    # each piece's condition: its bounds between pieces and its own other guards (the outer bounds are guards)
    conditions = [sympy.And(*_bounds(s, p.low, p.high, outer), *own) for p, own in zip(pieces, specific)]
    # where a size lies in some piece: the pieces' intervals (and their own guards), merged where they touch
    if any(specific):
        covered = [sympy.Or(*(sympy.And(*_bounds(s, p.low, p.high), *own) for p, own in zip(pieces, specific)))]
    else:
        spans: list[list] = []
        for p in pieces:
            if spans and spans[-1][1] is not None and spans[-1][1] + 1 == p.low:
                spans[-1][1] = p.high
            else:
                spans.append([p.low, p.high])
        covered = (_bounds(s, *spans[0]) if len(spans) == 1 else
                   [sympy.Or(*(sympy.And(*_bounds(s, lo, hi)) for lo, hi in spans))])
    guards = tuple(common) + tuple(c for c in covered if c is not sympy.true)
    ordered = [(p, c) for p, c in zip(pieces, conditions)]
    notes = _notes(pieces, conditions, s, domain_note)
    from .guards import implied

    domain = _domain(pieces, conditions)
    everywhere = tuple(d for d in domain if not isinstance(d, sympy.Piecewise))  # sizes of every piece
    shown = [shown_condition(g) for g in guards if not implied(g, everywhere)]
    if shown:
        notes.append(f"the pieces hold where {'; '.join(shown)} (size guards of the model's forward, read from a "
                     "run with symbolic sizes); other sizes are traced on their own")
    uncovered = _most([p.mc.uncovered for p in pieces])
    if any(dict(p.mc.uncovered) != dict(first.uncovered) for p in pieces):
        notes.append("the pieces call different ops symcost cannot cost: "
                     + "; ".join(f"{shown_condition(c)}: {', '.join(f'{k} x{v}' for k, v in p.mc.uncovered.items())}"
                                 for p, c in ordered if p.mc.uncovered))
    return ModelCost(
        first.target, first.input_shape, _rows([p.mc.rows for p in pieces], conditions), uncovered,
        _most([p.mc.zero_cost_ops for p in pieces]), notes, domain,
        buffer_kinds=dict(first.buffer_kinds), inputs=dict(first.inputs), guards=guards,
        proven=all(p.proof.proven for p in pieces),
        pieces=tuple((c, p.mc) for p, c in ordered))


def _most(dicts: list[dict]) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = max(out.get(k, 0), v)
    return out


def _notes(pieces: list[_Piece], conditions: list, s, domain_note: str | None) -> list[str]:
    notes: list[str] = []
    for p in pieces:
        for n in p.mc.notes:
            if n == domain_note:
                continue
            where = [c for q, c in zip(pieces, conditions) if n in q.mc.notes]
            if len(where) < len(pieces):  # a note of some pieces only (a layer the other side skips) says which
                n = f"where {' or '.join(shown_condition(c) for c in where)}: {n}"
            if n not in notes:
                notes.append(n)
    parts = " | ".join(shown_condition(c) if c is not sympy.true else "all" for c in conditions)
    note = (f"the formulas come in pieces by {s} ({parts}): the model takes another path beyond a size guard of its "
            f"forward, and each piece is traced at sizes on its own side, its guards read from a run with symbolic "
            f"sizes and verified at further sizes there")
    sampled = [f"{shown_condition(c)}: {p.proof.reason}" for p, c in zip(pieces, conditions) if not p.proof.proven]
    if sampled:
        note += f"; domain sampled, not proven, for the piece where {'; where '.join(sampled)}"
    notes.append(note)
    return notes


def _domain(pieces: list[_Piece], conditions: list) -> tuple:
    """Every tensor size of every piece; a size of some pieces only must be >= 1 in those pieces only."""
    sizes: list = []
    for p in pieces:
        sizes.extend(d for d in p.mc.domain if d not in sizes)
    out = []
    for d in sizes:
        where = [c for p, c in zip(pieces, conditions) if d in p.mc.domain]
        out.append(d if len(where) == len(pieces) else sympy.Piecewise(*((d, c) for c in where), (1, True)))
    return tuple(out)


# ---- the per-layer rows: each piece's rows, matched by name and layer ------------------------------------------

def _key(r: Row) -> tuple:
    return (r.name, r.layer, r.kind, r.backward, r.cost.family, r.cost.layer, str(r.args), len(r.cost.output_shape),
            tuple(len(x) for x in r.input_shapes))


def _rows(per_piece: list[list[Row]], conditions: list) -> list[Row]:
    """One list of rows for all pieces: a row that every piece has (the same layer call) carries a ``Piecewise``
    of its costs; a row of some pieces only costs 0 in the others.  Each piece's rows sum to its totals."""
    groups: list[list] = [[r] for r in per_piece[0]]
    for j, rows in enumerate(per_piece[1:], start=1):
        keys = [_key(next(r for r in g if r is not None)) for g in groups]
        merged: list[list] = []
        matcher = difflib.SequenceMatcher(None, keys, [_key(r) for r in rows], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                merged.extend(g + [r] for g, r in zip(groups[i1:i2], rows[j1:j2]))
                continue
            merged.extend(g + [None] for g in groups[i1:i2])
            merged.extend([None] * j + [r] for r in rows[j1:j2])
        groups = merged
    return [_row(g, conditions) for g in groups]


def _row(group: list, conditions: list) -> Row:
    first = next(r for r in group if r is not None)
    zero = sympy.Integer(0)

    def pw(get):
        return piecewise([(get(r) if r is not None else zero, c) for r, c in zip(group, conditions)])

    n = len(first.cost.output_shape)
    kinds = list(dict.fromkeys(k for r in group if r is not None for k in r.cost.ops))
    cost = Cost(output_shape=tuple(pw(lambda r, i=i: r.cost.output_shape[i]) for i in range(n)),
                params=pw(lambda r: r.cost.params), buffers=pw(lambda r: r.cost.buffers),
                ops={k: pw(lambda r, k=k: r.cost.ops.get(k, zero)) for k in kinds},
                reads=pw(lambda r: r.cost.reads), writes=pw(lambda r: r.cost.writes),
                family=first.cost.family, layer=first.cost.layer)
    shapes = tuple(tuple(pw(lambda r, i=i, k=k: r.input_shapes[i][k]) for k in range(len(shape)))
                   for i, shape in enumerate(first.input_shapes))
    skip = pw(lambda r: as_expr(r.causal_skip))
    half = pw(lambda r: as_expr(r.causal_half))
    return replace(first, input_shapes=shapes, cost=cost, causal_skip=skip, causal_half=half)
