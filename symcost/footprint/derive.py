"""Bytes as formulas: each storage a step makes, the activations autograd saves, and the peak of live bytes.

A storage's bytes are its element size times the element count of the op output that brought it, in the symbolic
shape the trace's propagation gives that output (checked against both trace sizes, and against every check point).
Live bytes after op ``k`` are the resident storages (parameters, buffers, inputs) plus every storage made at or
before ``k`` and not yet freed: a sum of such terms, one per position.  The peak is the largest of them: only
positions where some op allocates and a free follows can be largest (elsewhere a later or earlier position holds at
least as much, at every size), and of those, one whose terms are, monomial by monomial, at least another's holds at
least as much at every size too (each dimension is >= 1 in the model's domain) and replaces it; so does a weighted
mix of two others.  One position left: its sum is the peak.  Several: the peak is their ``Max``, exact still, each
evaluated where asked.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from collections import Counter
from math import prod

import sympy

from ..errors import NoSingleFormula
from .record import StepMemory

Term = tuple  # (coefficient, atoms): coefficient times the product of the atoms (dimension expressions)


def _term(itemsize: int, dims, nbytes: tuple[int, ...], values: tuple[dict, ...]) -> tuple[int, tuple] | None:
    coef, atoms = itemsize, []
    for d in dims:
        if isinstance(d, sympy.Integer) or isinstance(d, int):
            coef *= int(d)
        else:
            atoms.append(d)
    if coef == 0:
        return 0, ()
    atoms = tuple(sorted(atoms, key=sympy.default_sort_key))
    for v, n in zip(values, nbytes):
        if coef * prod(int(a.xreplace(v)) for a in atoms) != n:
            return None
    return coef, atoms


def term_value(term: Term, values: dict, memo: dict | None = None) -> int:
    coef, atoms = term
    memo = {} if memo is None else memo
    out = coef
    for a in atoms:
        if a not in memo:
            memo[a] = int(a.xreplace(values))
        out *= memo[a]
    return out


def term_expr(term: Term) -> sympy.Expr:
    coef, atoms = term
    return sympy.Integer(coef) * sympy.Mul(*atoms)


def sum_expr(terms: dict) -> sympy.Expr:
    """A sum of monomials (atoms -> coefficient) as one expression."""
    return sympy.Add(*[sympy.Integer(c) * sympy.Mul(*atoms) for atoms, c in terms.items() if c])


class StepFormulas:
    """The formulas of one step, from its recordings at two sizes (``a``, ``b``) and the propagation's shapes."""

    def __init__(self, a: StepMemory, b: StepMemory, sym: list, values_a: dict, values_b: dict):
        self.a = a
        keys_a, keys_b = [x.shape_key() for x in a.allocs], [x.shape_key() for x in b.allocs]
        if keys_a != keys_b:
            raise NoSingleFormula("the step's tensors live and die at different ops at the two trace sizes "
                                  "(control flow that depends on the input size); give concrete sizes")
        for field in ("params", "buffers", "other", "saved_other", "gradients", "input_saved_in", "other_saved_in"):
            if getattr(a, field) != getattr(b, field):
                raise NoSingleFormula(f"the model's {field.replace('_', ' ')} differ between the two trace sizes")
        values = (values_a, values_b)
        rec = a.recording
        self.terms: list[Term] = []
        for x, y in zip(a.allocs, b.allocs):
            n = rec.ops[x.op].outputs[x.out]
            t = _term(x.itemsize, sym[n], (x.nbytes, y.nbytes), values)
            if t is None:
                ev = rec.ops[x.op]
                raise NoSingleFormula(f"{ev.op} in {ev.module or 'the model'} makes a storage of {x.nbytes} bytes "
                                      f"({y.nbytes} at the other trace size) that is not its output's elements times "
                                      "their size: no formula for it")
            self.terms.append(t)
        self.input_terms: dict[int, Term] = {}
        for n, (nbytes, _, itemsize) in a.inputs.items():
            t = _term(itemsize, sym[n], (nbytes, b.inputs[n][0]), values)
            if t is None:
                raise NoSingleFormula(f"an input's storage of {nbytes} bytes is not its elements times their size")
            self.input_terms[n] = t
        self.resident = a.resident()

    # ---- the headings -----------------------------------------------------------
    def inputs(self) -> sympy.Expr:
        return sympy.Add(*[term_expr(t) for t in self.input_terms.values()])

    def saved(self) -> sympy.Expr:
        terms: Counter = Counter()
        for t, x in zip(self.terms, self.a.allocs):
            if x.saved:
                terms[t[1]] += t[0]
        for n, t in self.input_terms.items():
            if self.a.inputs[n][1]:
                terms[t[1]] += t[0]
        terms[()] += self.a.saved_other
        return sum_expr(terms)

    def saved_by_module(self) -> dict:
        """module name -> bytes of the storages autograd first saved while it was the innermost module running."""
        terms: dict[str, Counter] = {}
        for t, x in zip(self.terms, self.a.allocs):
            if x.saved:
                terms.setdefault(x.saved_in, Counter())[t[1]] += t[0]
        for n, module in self.a.input_saved_in.items():
            t = self.input_terms[n]
            terms.setdefault(module, Counter())[t[1]] += t[0]
        for module, nbytes in self.a.other_saved_in.items():
            terms.setdefault(module, Counter())[()] += nbytes
        return {module: sum_expr(c) for module, c in terms.items()}

    # ---- the peak ---------------------------------------------------------------
    def _events(self) -> tuple[dict, dict, Counter]:
        """Which storages each op makes and frees (indices into ``terms``), and the live bytes before the first op."""
        made: dict[int, list[int]] = {}
        freed: dict[int, list[int]] = {}
        for i, x in enumerate(self.a.allocs):
            if self.terms[i][0]:
                made.setdefault(x.op, []).append(i)
                if x.freed is not None:
                    freed.setdefault(x.freed, []).append(i)
        live: Counter = Counter({(): self.resident})
        for t in self.input_terms.values():
            live[t[1]] += t[0]
        return made, freed, live

    def live_at(self, positions) -> dict[int, sympy.Expr]:
        """The live bytes after each op in ``positions`` (resident storages and inputs included), as formulas."""
        wanted = set(positions)
        made, freed, live = self._events()
        out = {}
        for k in range(max(wanted, default=-1) + 1):
            for i in freed.get(k, ()):
                live[self.terms[i][1]] -= self.terms[i][0]
            for i in made.get(k, ()):
                live[self.terms[i][1]] += self.terms[i][0]
            if k in wanted:
                out[k] = sum_expr(live)
        return out

    def live_sums(self) -> list[tuple[int, dict]]:
        """(position, atoms -> coefficient) of every position that can be largest (see the module docstring)."""
        n_ops = self.a.n_ops
        made, freed, live = self._events()
        # op k can hold the most where it allocates and a free comes before the next allocation (or none comes)
        allocating = sorted(made)
        frees = sorted(freed)
        candidates = set()
        for j, k in enumerate(allocating):
            after = allocating[j + 1] if j + 1 < len(allocating) else None
            at = bisect.bisect_right(frees, k)
            f = frees[at] if at < len(frees) else None   # the first free after op k
            if after is None or (f is not None and f <= after):
                candidates.add(k)
        out = []
        for k in range(n_ops):
            for i in freed.get(k, ()):
                live[self.terms[i][1]] -= self.terms[i][0]
            for i in made.get(k, ()):
                live[self.terms[i][1]] += self.terms[i][0]
            if k in candidates:
                out.append((k, {m: c for m, c in live.items() if c}))
        if not out:  # no op allocates: the resident storages are all there is
            out.append((max(n_ops - 1, 0), {m: c for m, c in live.items() if c}))
        return out

    def peak(self, values_a: dict, domain=()) -> list[tuple[int, sympy.Expr]]:
        """(position, formula) of the positions left after removing those another holds at least as much as."""
        cands = self.live_sums()
        memo: dict = {}
        valued = [(sum(c * prod(_v(a, values_a, memo) for a in m) for m, c in s.items()), k, s) for k, s in cands]
        valued.sort(key=lambda v: (-v[0], v[1]))
        kept: list[tuple[int, int, dict]] = []
        for value, k, s in valued:
            if any(_covers(t, s) for _, _, t in kept):
                continue
            kept.append((value, k, s))
        if len(kept) > 1:  # a second, finer test, on bounds of the floors (kept is sorted: largest at A first)
            finer: list = []
            least = minimums(domain)
            # the test proves p >= q wherever each symbol is at least its least value, so it fails where some point
            # of the domain has p < q: a few points, evaluated first, spare most of its sympy work (same outcome)
            at = _at_points([t for _, _, t in kept], least, domain)
            for x in kept:
                if not any(all(a >= b for a, b in zip(at[id(y[2])], at[id(x[2])]))
                           and _covers_bounded(y[2], x[2], least) for y in finer):
                    finer.append(x)
            kept = finer
        changed = len(kept) > 2
        if changed:  # below the mix of two others means below the larger of them at every point of the domain
            at = _at_points([t for _, _, t in kept], minimums(domain), domain)
        while changed:  # a third: below the mix of two others, hence below the larger of them
            changed = False
            for i, x in enumerate(kept):
                others = kept[:i] + kept[i + 1:]
                if any(all(c <= max(u, v) for c, u, v in zip(at[id(x[2])], at[id(a[2])], at[id(b[2])]))
                       and _below_mix(a[2], b[2], x[2]) for j, a in enumerate(others) for b in others[j + 1:]):
                    kept = others
                    changed = True
                    break
        return sorted(((k, sum_expr(s)) for _, k, s in kept), key=lambda p: p[0])


@dataclass
class Positions:
    """A recorded step's ops (names, modules, where the backward starts) and the live bytes after any of them: where
    the peak of one configuration is, to be found at another (``footprint.config``)."""

    ops: list[str]
    modules: list[str]
    backward_start: int | None
    candidates: list[int]              # the positions the peak is the largest of
    formulas: StepFormulas
    shift: sympy.Expr = sympy.Integer(0)   # a decode step: its ids in place of the recorded input carrying T

    def live(self, positions) -> dict[int, sympy.Expr]:
        return {k: e + self.shift for k, e in self.formulas.live_at(positions).items()}


def _at_points(sums: list[dict], least: dict, domain) -> dict[int, tuple]:
    """Each sum's values (keyed by ``id``) at points of the domain where every symbol is at least its least value:
    all at it, all 997 above it, and each alone 997 above it (those of them the domain holds)."""
    symbols = sorted({s for t in sums for m in t for a in m for s in a.free_symbols} |
                     {s for d in domain for s in d.free_symbols}, key=str)
    low = {s: least.get(s, 1) for s in symbols}
    points = [low, {s: v + 997 for s, v in low.items()}, *({**low, s: low[s] + 997} for s in symbols)]
    values: dict[int, list] = {id(t): [] for t in sums}
    for p in points:
        subs, memo = {s: sympy.Integer(v) for s, v in p.items()}, {}
        if any(int(d.xreplace(subs)) < 1 for d in domain):
            continue
        for t in sums:
            values[id(t)].append(sum(c * prod(_v(a, subs, memo) for a in m) for m, c in t.items()))
    return {k: tuple(v) for k, v in values.items()}


def _v(atom, values: dict, memo: dict) -> int:
    if atom not in memo:
        memo[atom] = int(atom.xreplace(values))
    return memo[atom]


def _below_mix(a: dict, b: dict, c: dict) -> bool:
    """c <= max(a, b) at every size, shown by a weight w in [0, 1] with w*a + (1 - w)*b - c >= 0 monomial by
    monomial (each atom >= 1): then c <= w*a + (1 - w)*b <= max(a, b).  The weights each monomial allows form an
    interval; exact rationals."""
    lo, hi = Fraction(0), Fraction(1)
    for m in set(a) | set(b) | set(c):
        ca, cb, cc = a.get(m, 0), b.get(m, 0), c.get(m, 0)
        slope, need = ca - cb, cc - cb   # w * slope >= need
        if slope > 0:
            lo = max(lo, Fraction(need, slope))
        elif slope < 0:
            hi = min(hi, Fraction(need, slope))
        elif need > 0:
            return False
        if lo > hi:
            return False
    return True


def _covers(p: dict, q: dict) -> bool:
    """p >= q at every size: every monomial's coefficient in p - q is >= 0 (each atom is >= 1 in the domain)."""
    return all(p.get(m, 0) >= c for m, c in q.items() if c > 0) and \
        all(c >= 0 for m, c in p.items() if m not in q)


def nondecreasing(e, s) -> bool:
    """Whether ``e`` is shown nondecreasing in symbol ``s``: built from ``s`` and constants by sums, positive
    multiples, floor and ceiling."""
    if s not in e.free_symbols:
        return True
    if e == s:
        return True
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        return nondecreasing(e.args[0], s)
    if e.is_Add:
        return all(nondecreasing(a, s) for a in e.args)
    if e.is_Mul:
        const, rest = e.as_coeff_Mul()
        return bool(const > 0) and not rest.is_Mul and nondecreasing(rest, s)
    return False


def minimums(domain) -> dict:
    """symbol -> the least value it takes in the domain (each size >= 1), from the sizes in that symbol alone that
    are shown nondecreasing in it (1 where none says more)."""
    out: dict = {}
    for d in domain:
        free = d.free_symbols
        if len(free) != 1:
            continue
        (s,) = free
        if not nondecreasing(d, s):
            continue
        v = out.get(s, 1)
        while v < 1 << 16 and int(d.xreplace({s: sympy.Integer(v)})) < 1:
            v += 1
        out[s] = v
    return out


def _covers_bounded(p: dict, q: dict, least: dict) -> bool:
    """p >= q at every size where each symbol is >= 1, shown on a polynomial below p - q: its monomials with a
    positive coefficient kept where they are polynomials in the symbols (dropped, >= 0, where a floor appears), those
    with a negative one with each atom raised to an upper bound (``_upper``: floor(y) <= y; a product of upper bounds
    of atoms >= 1 bounds their product); then, each symbol shifted by its least value in the domain (``minimums``:
    each is then >= 0), every coefficient >= 0."""
    terms = []
    for m in set(p) | set(q):
        c = p.get(m, 0) - q.get(m, 0)
        if c > 0:
            if all(not a.has(sympy.floor, sympy.ceiling) for a in m):
                terms.append(c * sympy.Mul(*m))
        elif c < 0:
            ups = [_upper(a) for a in m]
            if any(u is None for u in ups):
                return False
            terms.append(c * sympy.Mul(*ups))
    d = sympy.expand(sympy.Add(*terms))
    symbols = sorted(d.free_symbols, key=str)
    if not symbols:
        return bool(d >= 0)
    d = sympy.expand(d.xreplace({s: s + least.get(s, 1) for s in symbols}))
    try:
        coeffs = sympy.Poly(d, *symbols).coeffs()
    except sympy.PolynomialError:
        return False
    return all(c.is_Rational and c >= 0 for c in coeffs)


def _upper(e):
    """A polynomial in the symbols >= ``e`` at every size (floor(y) <= y, ceiling(y) < y + 1, applied where ``e`` is
    nondecreasing in them: sums, positive multiples); None where that cannot be shown."""
    if e.is_Number or e.is_Symbol:
        return e
    if isinstance(e, sympy.floor):
        return _upper(e.args[0])
    if isinstance(e, sympy.ceiling):
        inner = _upper(e.args[0])
        return None if inner is None else inner + 1
    if e.is_Add:
        parts = [_upper(a) for a in e.args]
        return None if any(x is None for x in parts) else sympy.Add(*parts)
    if e.is_Mul:
        const, rest = e.as_coeff_Mul()
        if const > 0 and not rest.is_Mul:
            inner = _upper(rest)
            return None if inner is None else const * inner
        if const > 0 and all(not a.has(sympy.floor, sympy.ceiling) for a in rest.args):
            return e
    return None


def numbers(step: StepMemory) -> dict:
    """The recorded step's own numbers (bytes), to check formulas against: live bytes after each op, its peak."""
    resident = step.resident() + sum(b for b, _, _ in step.inputs.values())
    delta = [0] * (step.n_ops + 1)   # live after op k: made at or before k, freed (after op freed - 1) after k
    for x in step.allocs:
        delta[x.op] += x.nbytes
        if x.freed is not None:
            delta[x.freed] -= x.nbytes
    live, best, at = resident, resident, max(step.n_ops - 1, 0)
    for k in range(step.n_ops):
        live += delta[k]
        if live > best:
            best, at = live, k
    saved = sum(x.nbytes for x in step.allocs if x.saved) + sum(b for b, s, _ in step.inputs.values() if s) + \
        step.saved_other
    return {"peak": best, "peak_op": at, "saved": saved, "inputs": sum(b for b, _, _ in step.inputs.values())}
