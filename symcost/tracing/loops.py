"""Loops over a size: a recurrence whose trip count is a size becomes a sum.

``nn.LSTM``/``nn.GRU``/``nn.RNN`` run as aten ops once per step, a Python loop over blocks of 16 tokens once per
block, ``torch.split(x, 1024, dim=1)`` followed by per-chunk attention once per chunk: the number of ops grows with
the input, so the two trace sizes run different numbers of ops and no op-by-op formula exists.  Here each recording's
ops are cut into runs of a repeated body (the same ops, in the same modules, on the same parameters), compared across
recordings at three lengths: the bodies must be the same and only the number of repetitions may differ (anything
else is a branch on the size, named as such).  The trip count of each loop is a formula in an input size (T,
ceiling(L/16), …; the block size read from the loop's own tensors where its last block is partial), fitted to the
three recordings.  Every iteration of a loop must have the sizes of the others, but for a different first and/or
last one (split's last chunk of L - 1024*(ceiling(L/1024) - 1) tokens): the recordings are cut down to those
iterations and one representative, derived symbolically like any model, and the representative's rows are counted
(trip count - special iterations) times.  The result is verified like any formula, by its totals against full
recordings at further lengths (multiples of the block, just above and below a block boundary, other residues): a
difference is refused, never printed.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable

import sympy

from ..errors import NoSingleFormula
from ..model import ModelCost
from .handlers import ZERO_COST_OPS
from .record import ModuleEvent, OpEvent, Recording, TensorRef


@dataclass(frozen=True)
class Steps:
    """The tracer's own steps, handed down by ``tracing.trace`` (which calls this module: importing them back up
    would be a cycle): record a model at a concrete shape, derive rows from recordings, cost rows, copy the model
    as built, and a shape at given sizes."""

    record: Callable
    derive: Callable
    rows: Callable
    fresh: Callable
    concrete: Callable

_MOD = (1 << 61) - 1
_BASE = 1_000_003


@dataclass
class Segment:
    start: int     # first op
    period: int    # ops per repetition
    count: int     # repetitions
    body: tuple    # the ops' keys, for comparing recordings


class _Keys:
    """An op's identity for finding repetitions: its name, the module running it and the parameters it reads (so
    that two layers of the same kind, on different weights, are not taken for a repetition)."""

    def __init__(self) -> None:
        self.ids: dict = {}

    def of(self, rec: Recording) -> list[int]:
        out = []
        for ev in rec.ops:
            key = (ev.op, ev.module, tuple(rec.parameters.get(n, "") for n in ev.inputs if n in rec.parameters))
            out.append(self.ids.setdefault(key, len(self.ids)))
        return out


def segments(seq: list[int]) -> list[Segment]:
    """``seq`` cut greedily from the left into runs of a repeated body: at each position the period whose
    repetitions cover the most ops (the shortest among equals), else one op."""
    n = len(seq)
    prefix, power = [0] * (n + 1), [1] * (n + 1)
    for i, x in enumerate(seq):
        prefix[i + 1] = (prefix[i] * _BASE + x + 1) % _MOD
        power[i + 1] = power[i] * _BASE % _MOD

    def h(i: int, j: int) -> int:
        return (prefix[j] - prefix[i] * power[j - i]) % _MOD

    where: dict = defaultdict(list)
    for i, x in enumerate(seq):
        where[x].append(i)
    out, i = [], 0
    while i < n:
        best_p, best_c = 1, 1
        occ = where[seq[i]]
        for j in occ[bisect_right(occ, i):]:
            p = j - i
            if i + 2 * p > n:
                break
            if h(i, j) != h(j, j + p):
                continue
            c = 2
            while i + (c + 1) * p <= n and h(i, j) == h(i + c * p, i + (c + 1) * p):
                c += 1
            if p * c > best_p * best_c:
                best_p, best_c = p, c
        out.append(Segment(i, best_p, best_c, tuple(seq[i:i + best_p])))
        i += best_p * best_c
    return out


def _first_difference(keys_a: list[int], keys_b: list[int], rec_a: Recording, rec_b: Recording) -> str:
    k = next((i for i, (x, y) in enumerate(zip(keys_a, keys_b)) if x != y), min(len(keys_a), len(keys_b)))

    def at(rec, i):
        if i >= len(rec.ops):
            return "nothing more"
        return f"{rec.ops[i].op} in {rec.ops[i].module or 'the model'}"
    return f"op {k + 1}: {at(rec_a, k)} at one size, {at(rec_b, k)} at the other"


def refusal(rec_a: Recording, rec_b: Recording, values_a: dict, values_b: dict) -> NoSingleFormula | None:
    """Why two recordings that run different ops have no single formula, naming what they show: ``None`` where the
    difference is the number of repetitions of the same steps (a loop, for ``derive``)."""
    from .verify import describe

    keys = _Keys()
    ka, kb = keys.of(rec_a), keys.of(rec_b)
    sa, sb = segments(ka), segments(kb)
    if [s.body for s in sa] == [s.body for s in sb]:
        return None
    first = _first_difference(ka, kb, rec_a, rec_b)
    return NoSingleFormula(
        f"the model runs different operations at {describe(values_a)} ({len(ka)} ops) and at {describe(values_b)} "
        f"({len(kb)} ops), and the difference is not a repetition of the same steps ({first}): "
        "a branch on the input size (Python control flow), which has no single formula; trace it at a concrete size")


# ---- trip counts ---------------------------------------------------------------------------------------------------

def _trip_formula(counts: list[int], points: list[dict], blocks: list[int]):
    """The trip count as a formula in one input size that gives ``counts`` at ``points``: x + c, ceiling(x/k) or
    floor(x/k), with k first from ``blocks`` (the block sizes the loop's own tensors show), then the roundest k."""
    symbols = sorted({s for p in points for s in p}, key=str)
    for s in symbols:
        xs = [int(p[s]) for p in points]
        if len(set(xs)) < len(xs):
            continue
        for c in range(-4, 5):
            if all(n == x + c for n, x in zip(counts, xs)):
                return s + c, s, None
        for k in blocks:   # the loop's own block, offset by a few iterations run apart (a backward's first ones)
            for c in range(-4, 5):
                if k > 1 and all(n == -(-x // k) + c for n, x in zip(counts, xs)):
                    return sympy.ceiling(s / k) + c, s, k
                if k > 1 and all(n == x // k + c for n, x in zip(counts, xs)):
                    return sympy.floor(s / k) + c, s, k
        generic = sorted(range(2, max(xs) + 1), key=lambda k: (-((k & -k).bit_length()), k))
        for k in generic:
            if all(n == -(-x // k) for n, x in zip(counts, xs)):
                return sympy.ceiling(s / k), s, k
            if all(n == x // k for n, x in zip(counts, xs)):
                return sympy.floor(s / k), s, k
    return None


def _estimate(count_a: int, count_b: int, values_a: dict, values_b: dict):
    """From the two trace sizes: the size a loop runs over and its ops per unit of size (1 for a step per token,
    16 for blocks of 16: the roundest block that gives both counts), or None."""
    for s in sorted(values_a, key=str):
        xa, xb = int(values_a[s]), int(values_b[s])
        if xa == xb or count_a == count_b or (xa - xb) * (count_a - count_b) <= 0:
            continue
        slope = max(1, round((xa - xb) / (count_a - count_b)))
        fits = [k for k in range(max(1, slope // 2), 2 * slope + 2)
                if (-(-xa // k), -(-xb // k)) == (count_a, count_b) or (xa // k, xb // k) == (count_a, count_b)]
        if fits:
            return s, min(fits, key=lambda k: (-((k & -k).bit_length()), k))
        if abs(count_a - xa / slope) <= 2 and abs(count_b - xb / slope) <= 2:
            return s, slope
    return None


def _lengths(k: int) -> list[int]:
    """Three lengths for a loop of blocks of ``k`` to record at (fit), then the lengths to verify at: at least four
    iterations, the last block partial where blocks are longer than 1, of different residues; then a multiple of the
    block, one just above and one just below a block boundary."""
    if k == 1:
        return [9, 6, 12], [16, 17, 7, 2, 1]
    fit = [5 * k + max(1, k // 2) + 1, 4 * k + max(1, k // 4), 7 * k + max(1, 3 * k // 4)]
    return fit, [6 * k, 6 * k + 1, 5 * k - 1, 2 * k + 1, k, k - 1]


# ---- cutting a recording down to the iterations that differ ---------------------------------------------------------

def _signature(rec: Recording, start: int, period: int) -> tuple:
    return tuple((tuple(rec.shapes[n] for n in ev.inputs), tuple(rec.shapes[n] for n in ev.outputs))
                 for ev in rec.ops[start:start + period])


@dataclass
class Loop:
    index: int            # into the segments
    period: int
    counts: list          # at each fit recording
    first: bool = False   # the first iteration differs from the others
    last: bool = False    # the last one does
    trip: sympy.Expr | None = None
    module: str = ""

    @property
    def special(self) -> int:
        return int(self.first) + int(self.last)

    def kept(self, count: int) -> list[tuple[int, str]]:
        """(iteration, role) of the iterations kept, in order."""
        out = [(0, "first")] if self.first else []
        out.append((1 if self.first else 0, "body"))
        if self.last:
            out.append((count - 1, "last"))
        return out


def _roles(loop: Loop, recs: list[Recording], segs: list[list[Segment]]) -> None:
    """Which of a loop's iterations differ from the rest; every other one must have the same sizes (a body whose
    sizes change from one iteration to the next has no sum of this form)."""
    for rec, seg in zip(recs, segs):
        s = seg[loop.index]
        sig = [_signature(rec, s.start + i * s.period, s.period) for i in range(s.count)]
        loop.first |= sig[0] != sig[1]
        loop.last |= sig[-1] != sig[-2]
    for rec, seg in zip(recs, segs):
        s = seg[loop.index]
        sig = [_signature(rec, s.start + i * s.period, s.period) for i in range(s.count)]
        inner = sig[int(loop.first): s.count - int(loop.last)]
        if any(x != inner[0] for x in inner):
            raise NoSingleFormula(
                f"a loop in {loop.module or 'the model'} repeats the same {s.period} operations {s.count} times, but "
                "their sizes change from one iteration to the next (beyond a different first or last one): symcost "
                "sums loops whose iterations are alike; trace it at a concrete size")


def _numbers(x) -> list[int]:
    """The tensor numbers in ``x``, in order (an op's inputs from its arguments)."""
    out: list[int] = []
    _remap(x, lambda n: out.append(n) or n)
    return out


def _remap(x, new):
    t = type(x)
    if t is TensorRef:
        return TensorRef(new(x.index))
    if t is tuple:
        return tuple(_remap(a, new) for a in x)
    if t is list:
        return [_remap(a, new) for a in x]
    if t is dict:
        return {k: _remap(v, new) for k, v in x.items()}
    return x


def _shape_of_lists(ev: OpEvent) -> tuple:
    """The number of outputs and the length of each list argument: what differs between recordings at an op that
    takes or makes one tensor per iteration (``unbind`` before a recurrence, ``stack``/``cat`` after it)."""
    return len(ev.outputs), tuple(len(a) for a in ev.args if isinstance(a, (list, tuple)) and
                                  any(isinstance(x, TensorRef) for x in a))


#: ops that gather one tensor per iteration into one: costed from their output, so the list is one stand-in of
#: the output's shape (the elements read are the same)
_GATHERING = ("aten.cat", "aten.stack")


def _cut(rec: Recording, keep: list[int], per_iteration: set) -> Recording:
    """``rec`` with only the ops ``keep`` (sorted), tensors renumbered in order of first use so that recordings at
    different sizes cut alike line up tensor by tensor; module calls that lose all their ops are dropped.  At the
    kept ops ``per_iteration`` (positions in ``keep``) the tensors of the dropped iterations go: outputs no kept op
    reads, and a list of one tensor per iteration (given to cat or stack) becomes one tensor of the output's shape."""
    numbers: dict[int, int] = {}
    shapes: list = []

    def new(n: int) -> int:
        if n not in numbers:
            numbers[n] = len(shapes)
            shapes.append(rec.shapes[n])
        return numbers[n]

    def stand_in(shape: tuple) -> int:
        shapes.append(shape)
        return len(shapes) - 1

    for n in (rec.inputs.values() if rec.inputs else (rec.input_index,)):
        new(n)
    for n in sorted(rec.parameters):
        new(n)
    kept = set(keep)
    read = {n for k in keep for n in rec.ops[k].inputs}
    for ev in rec.modules:
        read.update(ev.inputs)
        read.update(ev.outputs)
    before = [0] * (len(rec.ops) + 1)  # kept ops before each op index
    for k in range(len(rec.ops)):
        before[k + 1] = before[k] + (k in kept)
    starting: dict = defaultdict(list)
    for ev in rec.modules:
        starting[ev.first_op].append(ev)
    modules, ops = [], []
    for k in range(len(rec.ops) + 1):
        for ev in starting.get(k, ()):
            first, end = before[ev.first_op], before[ev.end_op]
            if first == end and ev.first_op != ev.end_op:
                continue   # all its ops cut
            if ev.first_op == ev.end_op and ev.first_op < len(rec.ops) and ev.first_op not in kept:
                continue
            modules.append(ModuleEvent(ev.name, ev.module, [new(n) for n in ev.inputs], list(ev.outputs), first, end))
        if k not in kept:
            continue
        ev = rec.ops[k]
        args, outs = ev.args, ev.outputs
        if len(ops) in per_iteration:
            lists = [a for a in args if isinstance(a, (list, tuple)) and any(isinstance(x, TensorRef) for x in a)]
            if lists and ev.op not in _GATHERING:
                raise NoSingleFormula(f"{ev.op} in {ev.module or 'the model'} takes one tensor per iteration of a "
                                      "loop over a size; symcost sums such loops only where cat or stack gathers them")
            if lists:
                one = TensorRef(-1 - stand_in(rec.shapes[ev.outputs[0]]))
                args = tuple([one] if isinstance(a, (list, tuple)) and any(isinstance(x, TensorRef) for x in a)
                             else a for a in args)
            outs = [n for n in outs if n in read] or outs[:1]
        args = _remap(args, lambda n: -1 - n if n < 0 else new(n))
        kwargs = _remap(ev.kwargs, new)
        ins = _numbers((args, kwargs))
        ops.append(OpEvent(ev.op, args, kwargs, ins, [new(n) for n in outs], ev.module))
    for m in modules:
        m.outputs = [new(n) for n in m.outputs]
    return Recording(ops, modules, shapes, {numbers[n] for n in rec.produced if n in numbers},
                     {numbers[n]: name for n, name in rec.parameters.items()},
                     numbers[rec.input_index],
                     None if rec.backward_start is None else before[rec.backward_start],
                     {name: numbers[n] for name, n in rec.inputs.items()})


# ---- the derivation ------------------------------------------------------------------------------------------------

def derive(model, shape, values_a: dict, values_b: dict, rec_a: Recording, rec_b: Recording, dtype, target: str,
           backward: bool, steps: Steps) -> ModelCost:
    """The model's costs with each loop over a size summed in closed form (see the module's doc), verified at
    further lengths; ``NoSingleFormula`` naming what was seen where no such sum holds."""
    from .verify import describe

    found = refusal(rec_a, rec_b, values_a, values_b)
    if found is not None:
        raise _with_guard(found, model, steps, shape, values_a, values_b, dtype, backward) from None
    keys = _Keys()
    sa, sb = segments(keys.of(rec_a)), segments(keys.of(rec_b))
    varying = [j for j, (x, y) in enumerate(zip(sa, sb)) if x.count != y.count]
    # the lengths to record at follow the first loop's block (a backward pass's loops run a few iterations apart);
    # every loop's trip count is then fitted on its own
    guess = _estimate(sa[varying[0]].count, sb[varying[0]].count, values_a, values_b)
    if guess is None:
        raise NoSingleFormula(
            f"the model repeats the same steps a different number of times at {describe(values_a)} and at "
            f"{describe(values_b)} (a loop), but no input size explains the counts (each loop: "
            f"{', '.join(f'{sa[j].count} and {sb[j].count}' for j in varying)}); trace it at a concrete size")
    symbol, k = guess
    fit, check = _lengths(k)
    from .verify import check_points

    far = check_points(values_a, values_b)[0]
    points = [{**v, symbol: sympy.Integer(x)} for v, x in zip((values_a, values_b, far), fit)]
    try:
        recs = [steps.record(model, steps.concrete(shape, p), "", dtype, backward=backward) for p in points]
    except Exception:  # noqa: BLE001  (the model refuses short lengths: the trace sizes and a far one instead)
        raise NoSingleFormula(f"the model loops over {symbol} but does not run at {symbol} = "
                              f"{', '.join(map(str, fit))}, where symcost sums its loops; trace it at a concrete "
                              "size") from None
    return _derive_at(model, steps, shape, points, recs, check, symbol, k, dtype, target, backward)


def _with_guard(e: NoSingleFormula, model, steps, shape, values_a: dict, values_b: dict, dtype, backward: bool):
    """``e`` naming the decision the model made, where a size guard of a symbolic run shows it."""
    from .guards import prove
    from .verify import describe

    broken = prove(steps.fresh(model), shape, values_a, dtype, backward).violated(values_b)
    if broken is None:
        return e
    return NoSingleFormula(f"{e} (the size guard that changes between {describe(values_a)} and "
                           f"{describe(values_b)}: {broken.text()})")


def _derive_at(model, steps, shape, points, recs, check, symbol, block, dtype, target, backward) -> ModelCost:
    from .bounds import Bounds
    from .propagate import Propagation

    keys = _Keys()
    segs = [segments(keys.of(r)) for r in recs]
    bodies = [[s.body for s in seg] for seg in segs]
    if any(b != bodies[0] for b in bodies):
        j = next(i for i, b in enumerate(bodies) if b != bodies[0])
        raise refusal(recs[0], recs[j], points[0], points[j]) or NoSingleFormula("no single formula holds")
    loops = []
    for j in range(len(segs[0])):
        counts = [seg[j].count for seg in segs]
        if len(set(counts)) > 1:
            if min(counts) < 3:
                raise NoSingleFormula(f"a loop over {symbol} runs only {min(counts)} times at the lengths symcost "
                                      "records it at; trace it at a concrete size")
            ev = recs[0].ops[segs[0][j].start]
            loops.append(Loop(j, segs[0][j].period, counts, module=ev.module))
    if not loops:   # a step run once more above some size, not once per block: a branch
        from .verify import describe

        raise NoSingleFormula(
            f"the model runs some steps a different number of times at the trace sizes but the same number at "
            f"{'; '.join(describe(p) for p in points)}: not a loop over the size but a branch on it (Python control "
            "flow), which has no single formula; trace it at a concrete size")
    for loop in loops:
        _roles(loop, recs, segs)
    # each recording cut to the ops outside loops and each loop's kept iterations (role: first, body, last)
    keeps, roles = [], []
    loop_at = {lp.index: lp for lp in loops}
    for rec, seg in zip(recs, segs):
        keep, role = [], {}
        for j, s in enumerate(seg):
            if j not in loop_at:
                keep.extend(range(s.start, s.start + s.period * s.count))
                continue
            for it, name in loop_at[j].kept(s.count):
                for k in range(s.start + it * s.period, s.start + (it + 1) * s.period):
                    role[len(keep)] = (j, name)
                    keep.append(k)
        keeps.append(keep)
        roles.append(role)
    per_iteration = {i for i in range(len(keeps[0]))
                     if len({_shape_of_lists(rec.ops[keep[i]]) for rec, keep in zip(recs, keeps)}) > 1}
    cut = [_cut(rec, keep, per_iteration) for rec, keep in zip(recs, keeps)]
    for loop in loops:
        loop.trip = _fit_trip(loop, recs, segs, points, (block,))
        if loop.trip is None:
            raise NoSingleFormula(
                f"a loop in {loop.module or 'the model'} runs {', '.join(map(str, loop.counts))} times at "
                f"{symbol} = {', '.join(str(p[symbol]) for p in points)}: no formula in the input sizes gives these "
                "counts; trace it at a concrete size")
    prop = Propagation(cut[0], cut[1], shape, points[0], points[1], (cut[2], points[2]))
    _seed_remainders(prop, loops, recs, segs, points)
    sym = prop.run()
    mc = steps.rows(model, cut[0], sym, shape, target, points[0], prop.costed)
    bounds = Bounds(lambda x, y: sympy.Integer(x) if x == y else prop.lookup.get((x, y)))
    for ev, evb in zip(cut[0].ops, cut[1].ops):
        bounds.step(ev, evb, sym)
    domain = set(prop.sizes | bounds.conditions)
    _sum_rows(mc, cut[0], roles[0], loops)
    for loop in loops:
        # as many iterations as are kept apart (a first and a last of their own: two), or none for a loop with no
        # special iteration: no number for a length the recordings never showed (a loop run -1 times)
        domain.add(loop.trip - loop.special + 1)
        mc.notes.append(_note(loop))
    mc.domain = tuple(sorted(domain, key=sympy.default_sort_key))
    if backward:
        from . import step_notes

        mc.notes.extend(step_notes.notes(mc))
    verified = _verify(model, steps, mc, shape, points, check, symbol, dtype, target, backward)
    _guards(model, steps, mc, shape, points, verified, symbol, dtype, target, backward)
    return mc


def _guards(model, steps, mc: ModelCost, shape, points: list, verified: list, symbol, dtype, target: str,
            backward: bool) -> None:
    """The size guards of a run with symbolic sizes (``tracing.guards``) as the domain, less those on the loop
    itself (the chunk count ``torch.split`` fixes, a last chunk's size): a guard that some recording where the sum
    was checked breaks is summed over, and the domain is then sampled (the recordings), not proven."""
    from .guards import implied
    from .guards import prove
    from .verify import describe

    proof = prove(steps.fresh(model), shape, points[0], dtype, backward)
    seen = [*points, *verified]
    for g in proof.guards:
        if all(bool(g.condition.xreplace(v)) for v in seen):
            found = _across(model, steps, mc, shape, g.condition, symbol, points, dtype, target, backward)
            if found is not None:
                seen.append(found)
    kept = [g for g in proof.guards if all(bool(g.condition.xreplace(v)) for v in seen)]
    summed = [g for g in proof.guards if g not in kept]
    mc.guards = tuple(g.condition for g in kept)
    mc.proven = proof.proven and not summed
    shown = [g.text() for g in kept if not implied(g.condition, mc.domain)]
    lengths = (f"derived from {'; '.join(describe(v) for v in points)} and verified at "
               f"{'; '.join(describe(v) for v in seen[len(points):])}")
    if mc.proven:
        if shown:
            mc.notes.append(f"the formulas hold where {'; '.join(shown)} (size guards of the model's forward, read "
                            "from a run with symbolic sizes); other sizes are traced on their own")
        return
    why = proof.reason if not proof.proven else (
        f"the size guards on the loop ({'; '.join(dict.fromkeys(g.text() for g in summed))}) are summed over")
    mc.notes.append(f"domain sampled, not proven: {why}; the loop's sum is {lengths}"
                    + (f", and holds only where {'; '.join(shown)}" if shown else ""))


def _fit_trip(loop: Loop, recs, segs, points, block: tuple = ()):
    """The trip count's formula; the block size first from the loop's own tensors: a dim of every body iteration
    equal to k where the last iteration's (the first's, in a backward pass, which runs the blocks in reverse) is
    x - k*(count - 1)."""
    blocks = []
    rec, s, p = recs[0], segs[0][loop.index], points[0]
    body = _signature(rec, s.start + int(loop.first) * s.period, s.period)
    ends = [it for it, on in ((0, loop.first), (s.count - 1, loop.last)) if on]
    for s_name in sorted(p, key=str):
        x = int(p[s_name])
        for it in ends:
            for (bi, bo), (li, lo) in zip(body, _signature(rec, s.start + it * s.period, s.period)):
                for bs, ls in zip((*bi, *bo), (*li, *lo)):
                    for kb, kl in zip(bs, ls):
                        if kb != kl and s.count > 1 and (x - kl) % (s.count - 1) == 0 and \
                                (x - kl) // (s.count - 1) == kb and kb not in blocks:
                            blocks.append(kb)
    found = _trip_formula(loop.counts, points, [*blocks, *block])
    return found[0] if found else None


def _seed_remainders(prop, loops, recs, segs, points) -> None:
    """The partial block's size x - k*(trip - 1), a size no op rule computes, made known to the propagation."""
    for loop in loops:
        for ceil in loop.trip.atoms(sympy.ceiling):
            inner = ceil.args[0]
            x = next(iter(inner.free_symbols))
            rest = x - (1 / inner.coeff(x)) * (ceil - 1)
            vals = tuple(int(rest.xreplace(p)) for p in points)
            prop.seen.setdefault(vals, rest)
            prop.lookup.setdefault(vals[:2], rest)


def _sum_rows(mc: ModelCost, rec: Recording, role: dict, loops: list[Loop]) -> None:
    """The representative iteration's rows counted (trip - special iterations) times; a row across several
    iterations (a module that runs a whole loop) must be one the catalog costs on its own."""
    by_index = {lp.index: lp for lp in loops}
    spans = getattr(rec, "row_ops", None)
    if spans is None:
        raise NoSingleFormula("the rows of a loop cannot be told apart")
    rows = list(mc.rows)
    zero_in_loops: dict = defaultdict(int)
    covered = set()
    for i, span in enumerate(spans):
        covered.update(span)
        found = {role.get(k) for k in span}
        if len(span) == 0 or found == {None}:
            continue
        if len(found) > 1:
            # a module whose call holds whole loops (the catalog costs it from its input): every kept op of each
            # loop it touches is inside it; else it straddles iterations
            whole = all(all(k in span for k, r in role.items() if r is not None and r[0] == j)
                        for j in {f[0] for f in found if f is not None})
            if whole:
                continue
            raise NoSingleFormula(f"{rows[i].name}: a module call straddles the iterations of a loop; trace it at a "
                                  "concrete size")
        (j, name), = found
        if name == "body":
            lp = by_index[j]
            rows[i] = replace(rows[i], cost=rows[i].cost * (lp.trip - lp.special))
    for k, ev in enumerate(rec.ops):
        if k not in covered and role.get(k) is not None and ev.op in ZERO_COST_OPS:
            zero_in_loops[ev.op] += 1
    for op in zero_in_loops:   # counts that vary with the size are not shown as numbers: named in the loop's note
        mc.zero_cost_ops.pop(op, None)
    if any(role.get(k) is not None and ev.op in mc.uncovered for k, ev in enumerate(rec.ops)):
        raise NoSingleFormula(f"ops symcost cannot cost ({', '.join(sorted(mc.uncovered))}) run inside a loop over "
                              "a size; trace it at a concrete size")
    mc.rows = rows


def _note(loop: Loop) -> str:
    ops = f"{loop.period} operation{'s' * (loop.period > 1)}"
    head = (f"a loop in {loop.module or 'the model'} runs the same {ops} {sympy.sstr(loop.trip)} times: its rows "
            "count every iteration (one iteration's cost times the trip count")
    parts = [head]
    if loop.first or loop.last:
        which = " and ".join(w for w, on in (("first", loop.first), ("last", loop.last)) if on)
        parts.append(f", the {which} iteration, whose sizes differ, in rows of its own")
    parts.append("); views inside the loop are not counted in the zero-cost ops")
    return "".join(parts)


def _sums(mc: ModelCost, values: dict | None = None) -> dict:
    out: dict = defaultdict(lambda: sympy.Integer(0))
    for r in mc.rows:
        c = r.cost
        for f in ("params", "buffers", "reads", "writes"):
            out[f] += getattr(c, f)
        for kind, v in c.ops.items():
            out[f"{kind} ops"] += v
    if values is not None:
        return {k: v.xreplace(values) for k, v in out.items()}
    return dict(out)


def _verify(model, steps, mc, shape, points, check, symbol, dtype, target, backward) -> list[dict]:
    """Totals (every primitive count, params, buffers, reads, writes) against full recordings at further lengths,
    the other sizes as the usual check points give them; at least two must run.  Returns the sizes checked."""
    from .verify import check_points, mixed_points

    others = check_points(points[0], points[1]) + mixed_points(points[0], points[1])
    formula = _sums(mc)
    done = []
    for x, other in zip(check, others * 2):
        values = {**other, symbol: sympy.Integer(x)}
        if _checked(model, steps, mc, formula, shape, values, dtype, target, backward):
            done.append(values)
    if len(done) < 2:
        raise NoSingleFormula(f"the model loops over {symbol}, and too few lengths besides the traced ones run to "
                              "verify the sum; trace it at a concrete size")
    return done


def _checked(model, steps, mc, formula: dict, shape, values: dict, dtype, target, backward) -> bool:
    """The sum's totals at ``values`` against the model recorded there: False where that is outside the domain or
    the model does not run, ``NoSingleFormula`` on a difference."""
    from .verify import describe

    if any(int(d.xreplace(values)) < 1 for d in mc.domain):
        return False
    concrete = steps.concrete(shape, values)
    try:
        rec = steps.record(model, concrete, "", dtype, backward=backward)
    except Exception:  # noqa: BLE001  (the model does not run there)
        return False
    derived = steps.derive(model, rec, rec, concrete, {}, {}, target, backward)
    if dict(derived.uncovered) != dict(mc.uncovered):
        raise NoSingleFormula(f"the ops symcost cannot cost differ at {describe(values)} from the loop's lengths: no "
                              "single formula holds; trace it at a concrete size")
    real = _sums(derived)
    ours = {k: v.xreplace(values) for k, v in formula.items()}
    for key in sorted(set(ours) | set(real)):
        a, b = ours.get(key, 0), real.get(key, 0)
        if a != b:
            raise NoSingleFormula(
                f"the loop's sum gives {key} = {a} at {describe(values)}, but the model recorded at that size "
                f"gives {b}: no single formula holds; trace it at a concrete size")
    return True


def _across(model, steps, mc, shape, guard, symbol, points: list, dtype, target, backward) -> dict | None:
    """Where a guard in the loop's size alone (a last chunk's size at the traced length: ``L != 160``) breaks near
    the traced lengths, the sum checked there: the sizes, or None where it breaks nowhere near or the model does
    not run there (the guard then stays in the domain)."""
    if guard.free_symbols != {symbol}:
        return None
    top = 4 * max(int(p[symbol]) for p in points)
    base = points[0]
    for x in sorted(range(1, top), key=lambda x: abs(x - int(base[symbol]))):
        values = {**base, symbol: sympy.Integer(x)}
        if not bool(guard.xreplace(values)):
            ok = _checked(model, steps, mc, _sums(mc), shape, values, dtype, target, backward)
            return values if ok else None
    return None
