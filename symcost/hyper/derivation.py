"""``derive_config``: probe each config field's degree, fit every total on the grid of the windows (sparsely with a
symbolic input), and verify at random configurations off the grid (see the package docstring)."""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from fractions import Fraction

import sympy

from ..conventions import CONVENTIONS
from ..errors import TraceError, UsageError
from .config_cost import ConfigCost
from .fit import tensor_fit, univariate_window, vandermonde_inverse
from .space import ConfigSpace, config_space, parse_config
from .tracer import BACKWARD, FIELD_METRICS, Concrete, InputBasisError, Tracer, input_parts

PROBES = 6                   # values per field when probing its degree (degree <= 4, one point to spare)


def derive_config(target: str | Callable, input_shape, config: str | dict, *, train: bool = False,
                  input_dtype: str | None = None, checks: int = 3, seed: int = 0,
                  progress: Callable[[str], None] | None = None,
                  use_cache: bool = False, backward: bool = False, past=None, conventions=()) -> ConfigCost:
    """Derive ``target``'s totals in its configuration symbols and the input's symbols (see the module docstring).

    ``target``: ``"hf:MODEL_TYPE"``, ``"path/to/file.py:factory"`` or a factory (a callable taking the config
    fields as integer keyword arguments, returning an ``nn.Module``; never cached).
    ``input_shape``: ``"1xL"`` or a tuple; ``config``: ``"hidden_size=d,num_hidden_layers=n"`` or a dict (an
    integer value fixes a field; fields not named keep their defaults).  ``use_cache``: read and write symcost's
    derivation cache (keyed like ``symcost model``'s, plus the config, the checks and the seed).  ``backward``: one
    training step, forward and backward (``ConfigCost.parts``).  ``past``: one decode step of a decoder that takes a
    transformers KV cache (``hf:`` or a factory returning one, with or without its LM head)
    on ``input_shape`` (B x L new tokens) with ``past`` cached tokens (an int or a symbol name, as ``--past``).
    ``conventions``: ``Convention`` objects of your own, fitted beside symcost's (each under its own name; such a
    derivation is not cached, since the cache keeps symcost's conventions only).
    """
    from .. import cache
    from ..parse import InputSpec, size_value
    from ..targets import Target, default_input_dtype, source_hash

    parse_config(config)  # the fields and symbols are checked before the cache is read
    weighed = _conventions(conventions)
    if weighed is not CONVENTIONS:
        use_cache = False
    shape = InputSpec.of(input_shape).shape
    if isinstance(shape, dict):
        raise UsageError(f"config formulas take one input shape, not named inputs ({input_shape})")
    if callable(target):  # a Python factory: no file to key a cache entry by
        use_cache = False
    dtype = input_dtype or ("float32" if callable(target) else default_input_dtype(target))
    if past is not None:
        if backward:
            raise UsageError("--past is one decode step of inference: it does not combine with --backward")
        if len(shape) != 2:
            raise UsageError(f"--past: the input is B x L token ids, got {len(shape)} sizes")
        past = size_value(past, "--past")
    spec = f"{'x'.join(map(str, shape))}:{dtype}:config={sorted(parse_config(config).items())}:{checks}:{seed}" \
        + (":backward" if backward else "") + (f":past={past}" if past is not None else "")
    # keyed without building anything (a factory file's hash, transformers' version), so that a cached call imports
    # neither torch nor transformers
    key = cache.cache_key(target, spec, train, source_hash(target)) if use_cache else ""
    if use_cache:
        cc = cache.load(key, "config_cost")
        if isinstance(cc, ConfigCost):
            cc.store = lambda: cache.store(key, {"config_cost": cc}, cache.user_sources()
                                           if Target.of(target).kind == "file" else None)
            return cc
    from ..layers.base import cost_memo
    from ..tracing.meta_kernels import meta_memo

    space = config_space(target, parse_config(config))
    with cost_memo(), meta_memo():  # one memo for every trace: configurations share most of their layers' shapes
        cc = _derive_space(space, shape, config, train, dtype, checks, seed, progress, backward, past, weighed)
    cc.conventions = weighed  # (not a field: never stored) what ``confirm`` weighs past the sampled configurations
    if callable(target):
        cc.factory = target  # (not a field: never stored) what ``confirm`` builds past the sampled configurations
    if use_cache:
        def store():
            cache.store(key, {"config_cost": cc}, cache.user_sources() if space.source else None)

        cc.store = store
        store()
    return cc


def _conventions(extra) -> dict:
    """symcost's conventions, and the user's own ``extra`` ones under their names (``report_convention``)."""
    from ..conventions import report_convention

    out = CONVENTIONS
    for c in extra:
        conv, known = report_convention(c)
        if known is not CONVENTIONS:
            out = {**out, conv.name: conv}
    return out


def _derive_space(space: ConfigSpace, shape: tuple, config, train: bool, dtype: str, checks: int, seed: int,
                  progress, backward: bool = False, past=None, conventions: dict | None = None) -> ConfigCost:
    inputs = {str(d) for d in (*shape, past) if d is not None and not isinstance(d, int)}
    clash = inputs & {str(s) for s in space.symbols.values()}
    if clash:
        raise UsageError(f"--config symbol {', '.join(sorted(clash))} is also an input symbol; choose another name")
    if not space.symbols:
        raise UsageError("--config names no field as a symbol (e.g. hidden_size=d)")
    tracer = Tracer(space, shape, train, dtype, progress, backward, past, conventions)
    concrete = None
    if inputs:  # which terms exist is found at a concrete input size (odd, of symcost's trace sizes): one
        # recording per trace instead of several; a term whose coefficient vanishes there fails the verification
        from ..tracing import trace_sizes

        symbolic = tuple(d for d in (*shape, past) if isinstance(d, sympy.Basic))
        concrete = Concrete(space, shape, past, trace_sizes(symbolic)[0],
                             lambda s, p: Tracer(space, s, train, dtype, progress, backward, p, conventions))
    return _derive(space, tracer, shape, checks, seed, {f: v for f, v in parse_config(config).items()}, concrete)


def _derive(space: ConfigSpace, tracer: Tracer, shape: tuple, checks: int, seed: int, config: dict,
            concrete: Concrete | None = None) -> ConfigCost:
    order = space.order()
    formulas, verified, windows = fit_totals(space, tracer, checks, seed, concrete)
    memos = concrete.memos if concrete else []
    for t in concrete.tracers.values() if concrete else ():  # ops left uncosted at any configuration traced
        for mine, theirs in ((tracer.uncovered, t.uncovered), (tracer.zero, t.zero)):
            for k, v in theirs.items():
                mine[k] = max(mine.get(k, 0), v)

    def by_convention(prefix: str) -> dict:
        return {name: {**{m: formulas[prefix + m] for m in FIELD_METRICS}, "flops": formulas[f"{prefix}flops:{name}"]}
                for name in tracer.conventions}

    totals = by_convention("")
    backward = by_convention(BACKWARD) if tracer.backward else None
    fit = {"windows": {f: list(windows[f]) for f in order}, "traces": len(tracer.memo), "verified_at": verified,
           "traced_at": [dict(key) for key in {k: 0 for memo in (tracer.memo, *memos) for k in memo}]}
    if concrete:
        fit["concrete_traces"] = sum(len(memo) for memo in memos)
    cheap = f" (and {fit['concrete_traces']} at concrete input sizes, to find the terms)" if concrete else ""
    fitted = f"fitted from {len(tracer.memo)} traces{cheap}; verified exactly at {len(verified)} further configurations"
    notes = [*space.notes, *sorted(tracer.notes), fitted]
    if tracer.backward:
        notes.append("one training step: the forward pass, then backward from the first output seeded with ones "
                     "(the loss itself is not costed)")
    cc = ConfigCost(space.target, shape, config, dict(space.fixed), list(space.relations), totals,
                    tuple(sorted(tracer.domain, key=sympy.default_sort_key)), tracer.uncovered, tracer.zero, notes,
                    fit, backward, list(space.bounds), tracer.past, tracer.train, tracer.dtype)
    tops = ", ".join(f"{k} <= {v}" for k, v in cc.sampled().items())
    cc.notes.append(f"the configurations traced reach {tops}: the model's code may take another path past them (a "
                    "kernel chosen by head_dim), so a number beyond them is given only after a trace at its own "
                    "configuration agrees")
    return cc


def fit_totals(space: ConfigSpace, tracer: Callable[[dict], dict], checks: int, seed: int,
               concrete=None) -> tuple[dict, list[dict], dict]:
    """Every total ``tracer`` gives (a function of a configuration, memoised, to key -> expression in the input's
    symbols) as one formula in the configuration symbols too (steps 1-3 of the module docstring): the formulas, the
    configurations they were verified at, and each field's window of exponents (lowest, width).  ``concrete``: the
    same tracer at concrete input sizes, to find the terms cheaply (a ``Concrete``, whose further sizes also give
    the coefficients; or a tuple of tracers at one size, which find the terms only)."""
    order = space.order()
    probes, base = probe_values(space)
    symbols = [space.symbols[f] for f in order]
    formulas, verified = None, []
    if concrete is not None and not isinstance(concrete, Concrete):
        concrete = _AtOneSize(concrete) if concrete else None
    if concrete:  # the sparse path: which terms exist, from cheap traces at concrete input sizes
        # first each term's coefficient from concrete traces at further input sizes (one symbolic trace names
        # the functions of the input's symbols that occur); where that fails, one symbolic trace per term
        try:
            grids, los = _windows(space, concrete.first, order, probes, base)
        except TraceError:
            grids = None  # (the symbolic probes below refuse it, or find the window)
        for reconstruct in ((True, False) if concrete.reconstructs else (False,)) if grids else ():
            try:
                formulas = _sparse_fit(concrete, tracer, order, grids, los, symbols, reconstruct)
                verified = _verify(space, tracer, order, formulas, grids, checks, seed, base)
                break
            except TraceError as e:
                formulas = None  # a term the concrete sizes did not show: the full grid of symbolic traces decides
                if not (reconstruct and concrete.basis_failed(e, tracer)):
                    break
    if formulas is None:
        grids, los = _windows(space, tracer, order, probes, base)
        points = list(itertools.product(*(range(len(g)) for g in grids)))
        traced = {idx: tracer({f: grids[a][i] for a, (f, i) in enumerate(zip(order, idx))}) for idx in points}
        formulas = {m: tensor_fit(grids, los, {idx: t[m] for idx, t in traced.items()}, symbols)
                    for m in traced[points[0]]}
        verified = _verify(space, tracer, order, formulas, grids, checks, seed, base)
    return formulas, verified, {f: (lo, len(g)) for f, lo, g in zip(order, los, grids)}


def probe_values(space: ConfigSpace) -> tuple[dict[str, list[int]], dict[str, int]]:
    """The values each field is probed at (the others at the base configuration), and the base configuration."""
    probes: dict[str, list[int]] = {}
    for f in space.order():
        probes[f] = space.candidates(f, probes, PROBES, range(1, 10_000))
        if len(probes[f]) < 3:
            raise UsageError(f"{f}: only {len(probes[f])} values satisfy its divisibility conditions; "
                             "too few to fit a formula (fix it with a number in --config)")
    return probes, {f: v[0] for f, v in probes.items()}


class _AtOneSize:
    """Tracers at one concrete input size (``footprint.config``'s): they find the terms; each coefficient in the
    input's symbols then comes from a symbolic trace."""

    reconstructs = False

    def __init__(self, tracers: tuple):
        self.first = tracers[0]
        self.tracers = {(): self.first}

    @property
    def memos(self) -> list[dict]:
        return [self.first.memo]

    def basis_failed(self, error: TraceError, tracer) -> bool:
        return False


def _windows(space: ConfigSpace, tracer: Tracer, order: list[str], probes: dict, base: dict):
    """Per field, the narrowest window of exponents explaining every traced total (probing the field alone):
    the grid of the fit (``probes[f][:width]`` per field) and each window's lowest exponent."""
    windows: dict[str, tuple[int, int]] = {}
    for f in order:
        xs = probes[f]
        traced = [tracer({**base, f: x}) for x in xs]
        negative = any(r.den == f for r in space.relations)
        lo_hi = [univariate_window(xs, [t[m] for t in traced], negative) for m in traced[0]]
        for m, w in zip(traced[0], lo_hi):
            if w is None:
                raise TraceError(f"{space.target}: no polynomial of degree <= {len(xs) - 2} in {f} "
                                 f"(= {space.symbols[f]}) explains the traced {m.replace(':', ' ')} at {f} = "
                                 f"{', '.join(map(str, xs))}; symcost refuses rather than approximate")
        lo = min(w[0] for w in lo_hi)
        windows[f] = (lo, max(w[0] + w[1] for w in lo_hi) - lo)
    return [probes[f][:windows[f][1]] for f in order], [windows[f][0] for f in order]


def _sparse_fit(concrete: Concrete, tracer: Tracer, order: list[str], grids, los, symbols,
                reconstruct: bool = True) -> dict:
    """The tensor-grid fit at concrete input sizes names the monomials in the config symbols that occur; at grid
    points whose monomial matrix is invertible, each traced total gives their coefficients as expressions in the
    input's symbols (exact rational inverse): from concrete traces at further input sizes (``reconstruct``,
    ``_reconstructed``), else from one symbolic trace per monomial.  ``_verify`` then checks the whole formula
    against fresh symbolic traces; a term the concrete sizes hid fails it, and the full grid is traced instead."""
    points = list(itertools.product(*(range(len(g)) for g in grids)))
    at = [{f: grids[a][i] for a, (f, i) in enumerate(zip(order, idx))} for idx in points]
    try:
        monomials = sorted(_support(concrete.first, order, grids, los))
    except _SupportError:  # the terms, from the whole tensor grid
        support: set[tuple] = set()
        traced = [concrete.first(p) for p in at]
        for m in traced[0]:
            fitted = tensor_fit(grids, los, {idx: tr[m] for idx, tr in zip(points, traced)}, symbols)
            for term in sympy.Add.make_args(fitted):
                if term != 0:
                    powers = term.as_powers_dict()
                    support.add(tuple(int(powers.get(s, 0)) for s in symbols))
        monomials = sorted(support)

    def row(p: dict) -> list:
        return [math.prod(Fraction(p[f]) ** k for f, k in zip(order, e)) for e in monomials]

    traced_already = set(concrete.first.memo)  # grid points traced already first: fewer new traces
    at.sort(key=lambda p: tuple(sorted(p.items())) not in traced_already)
    chosen = [at[i] for i in _independent((row(p) for p in at), len(monomials))]
    inverse = sympy.Matrix([[sympy.Rational(x.numerator, x.denominator) for x in row(p)] for p in chosen]).inv()
    traced = _reconstructed(concrete, tracer, chosen) if reconstruct else [tracer(p) for p in chosen]
    terms = [sympy.Mul(*[s**k for s, k in zip(symbols, e)]) for e in monomials]
    formulas = {}
    for m in traced[0]:
        values = [t[m] for t in traced]
        coefficients = [sympy.expand(sympy.Add(*[w * v for w, v in zip(inverse.row(j), values) if w != 0]))
                        for j in range(len(monomials))]
        formulas[m] = sympy.expand(sympy.Add(*[c * x for c, x in zip(coefficients, terms) if c != 0]))
    return formulas


class _SupportError(Exception):
    """The terms found field by field disagree with a further trace: the whole tensor grid finds them."""


def _support(tracer: Tracer, order: list[str], grids, los) -> set[tuple]:
    """The monomials in the configuration symbols (exponent tuples, ``order``'s order) whose coefficient is not
    zero in some traced total, found one field at a time (Zippel's sparse interpolation) rather than on the whole
    tensor grid: with the terms in the first k fields known (the later fields at their base, the grid's first
    value), each further value of field k + 1 needs one trace per term (at grid points where the terms' matrix is
    invertible) and one more that checks them; each term's coefficients over field k + 1's grid then give the
    terms in k + 1 fields.  A term whose coefficient vanishes where it was looked for makes a check fail
    (``_SupportError``: the tensor grid decides); one that slips past both fails the verification."""
    base = {f: g[0] for f, g in zip(order, grids)}
    known: dict[tuple, dict] = {(): tracer(base)}    # exponents of the fields so far -> metric -> coefficient
    for k, f in enumerate(order):
        prefix = list(itertools.product(*grids[:k]))
        terms = list(known)

        def row(p: tuple) -> list:
            return [math.prod(Fraction(x) ** e for x, e in zip(p, t)) for t in terms]

        picked = _independent((row(p) for p in prefix), len(terms))
        if len(picked) < len(terms):
            raise _SupportError
        check = next((i for i in range(len(prefix)) if i not in picked), None)
        inverse = sympy.Matrix([[sympy.Rational(x.numerator, x.denominator) for x in row(prefix[i])]
                                for i in picked]).inv()
        by_value = [known]
        for v in grids[k][1:]:
            def traced(p: tuple) -> dict:
                return tracer({**base, **dict(zip(order[:k], p)), f: v})

            values = [traced(prefix[i]) for i in picked]
            solved = {t: {m: sympy.Add(*[w * tr[m] for w, tr in zip(inverse.row(j), values) if w != 0])
                          for m in values[0]} for j, t in enumerate(terms)}
            if check is not None:
                want, weights = traced(prefix[check]), row(prefix[check])
                if any(sympy.Add(*[sympy.Rational(w.numerator, w.denominator) * solved[t][m]
                                   for w, t in zip(weights, terms)]) != want[m] for m in want):
                    raise _SupportError
            by_value.append(solved)
        inverse_k = vandermonde_inverse(grids[k], los[k])
        known = {}
        for t in terms:
            for m in by_value[0][t]:
                line = [c[t][m] for c in by_value]
                for j in range(len(grids[k])):
                    c = sympy.Add(*[w * y for w, y in zip(inverse_k.row(j), line) if w != 0])
                    if c != 0:
                        known.setdefault((*t, los[k] + j), {})[m] = c
        for t in known.values():  # every metric of a term: zero where it has none
            for m in by_value[0][terms[0]]:
                t.setdefault(m, sympy.Integer(0))
    return set(known)


def _independent(rows, count: int) -> list[int]:
    """The indices of the first ``count`` linearly independent rows (exact Gaussian elimination, Fractions)."""
    chosen, basis = [], []   # basis: reduced rows with their pivot columns
    for i, row in enumerate(rows):
        reduced = list(row)
        for pivot, b in basis:
            if reduced[pivot]:
                factor = reduced[pivot] / b[pivot]
                reduced = [x - factor * y for x, y in zip(reduced, b)]
        pivot = next((j for j, x in enumerate(reduced) if x), None)
        if pivot is not None:
            basis.append((pivot, reduced))
            chosen.append(i)
        if len(chosen) == count:
            break
    return chosen


def _reconstructed(concrete: Concrete, tracer: Tracer, chosen: list[dict]) -> list[dict]:
    """The totals at each configuration of ``chosen`` as expressions in the input's symbols, without a symbolic
    trace at each: one symbolic trace (at the first) names the functions of the input's symbols that occur (its
    basis: ``L**2, L, 1``); at as many input sizes (those a symbolic trace records and verifies at, where these
    functions are independent), concrete traces give each total's coefficients in that basis, exactly.  The first
    configuration's totals, rebuilt the same way, must equal its symbolic trace (else ``InputBasisError``); the
    formula is then verified at configurations not fitted on (``_verify``), each by a symbolic trace."""
    exact = tracer(chosen[0])
    inputs = concrete.inputs
    basis = sorted(set().union(*(input_parts(e, inputs) for e in exact.values())), key=sympy.default_sort_key)
    concrete.basis = basis
    domain = [d for d in tracer.domain if d.free_symbols <= inputs]

    def inside(p: dict) -> bool:
        return all(d.xreplace(p) >= 1 for d in domain)

    candidates = [p for p in concrete.points if inside(p)]
    values = [[b.xreplace(p) for b in basis] for p in candidates]
    if any(not v.is_Rational for row in values for v in row):
        raise InputBasisError("a function of the input's symbols has no exact value at a concrete size")
    picked = _independent(([Fraction(int(v.p), int(v.q)) for v in row] for row in values), len(basis))
    if len(picked) < len(basis):
        raise InputBasisError(f"{len(basis)} functions of the input's symbols, {len(picked)} independent sizes")
    inverse = sympy.Matrix([values[i] for i in picked]).inv()
    tracers = [concrete.at(candidates[i]) for i in picked]

    def rebuilt(config: dict) -> dict:
        traced = [t(config) for t in tracers]
        out = {}
        for m in traced[0]:
            column = [t[m] for t in traced]
            if any(not v.is_Rational for v in column):
                raise InputBasisError(f"the {m} traced at a concrete size is not a number")
            coefficients = inverse * sympy.Matrix(column)
            out[m] = sympy.expand(sympy.Add(*[c * b for c, b in zip(coefficients, basis) if c != 0]))
        return out

    if any(sympy.expand(e - exact[m]) != 0 for m, e in rebuilt(chosen[0]).items()):
        raise InputBasisError("the totals rebuilt from concrete sizes differ from the symbolic trace's")
    return [exact, *(rebuilt(c) for c in chosen[1:])]


def _verify(space: ConfigSpace, tracer: Tracer, order: list[str], formulas: dict, grids, checks: int,
            seed: int, base: dict) -> list[dict]:
    rng = random.Random(seed)
    on_grid = set(itertools.product(*grids))
    done: list[dict] = []
    for _ in range(checks * 20):
        if len(done) == checks:
            break
        values: dict[str, list[int]] = {}
        for f in order:
            options = space.candidates(f, values, 12, range(1, 14))
            values[f] = [rng.choice(options)]
        point = {f: v[0] for f, v in values.items()}
        if tuple(point[f] for f in order) in on_grid or point in done:
            continue
        wrong = _mismatch(space, tracer, formulas, point)
        if wrong:
            where = ", ".join(f"{f}={v}" for f, v in point.items())
            culprits = _culprits(space, tracer, formulas, order, base, point) or order
            raise TraceError(f"{space.target}: the formula fitted for {wrong.replace(':', ' ')} differs from a fresh "
                             f"trace at {where}: the cost is not one polynomial in {', '.join(culprits)}; symcost "
                             "refuses rather than approximate")
        done.append(point)
    return done


def _mismatch(space: ConfigSpace, tracer: Tracer, formulas: dict, point: dict) -> str:
    """The first metric whose formula differs from a fresh trace at ``point`` ("" if none)."""
    traced = tracer(point)
    subs = {space.symbols[f]: sympy.Integer(v) for f, v in point.items()}
    return next((m for m, e in formulas.items() if sympy.expand(e.xreplace(subs) - traced[m]) != 0), "")


def _culprits(space: ConfigSpace, tracer: Tracer, formulas: dict, order: list[str], base: dict,
              point: dict) -> list[str]:
    """The fields that alone, moved from the base configuration to ``point``'s value, break the formula."""
    out = []
    for f in order:
        moved = {**base, f: point[f]}
        if space.admissible(moved) and _mismatch(space, tracer, formulas, moved):
            out.append(f)
    return out
