"""A traced model's cost: one row per layer call, every number a sympy expression.

Nothing here imports torch, so a cached derivation answers without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping

import sympy

from .conventions import Convention, as_convention
from .cost import Cost, bind, to_int
from .errors import OutsideProvenDomain, UsageError
from .summary import outside_message


class Totals(dict):
    """A model's totals: ``params``, ``buffers``, ``macs``, ``flops``, ``reads``, ``writes`` (``KEYS``), each a sympy
    expression, and the convention ``flops`` is counted under.  A dict, so ``totals["flops"]`` and ``.items()``
    work as they always did; ``totals.flops`` too."""

    KEYS = ("params", "buffers", "macs", "flops", "reads", "writes")

    def __init__(self, convention: str, values: Mapping) -> None:
        super().__init__((k, values[k]) for k in self.KEYS)
        self.convention = convention

    def __getattr__(self, key: str):
        if key in self.KEYS:
            return self[key]
        raise AttributeError(key)

    def __reduce__(self):
        return (Totals, (self.convention, dict(self)))

    def __repr__(self) -> str:
        """Readable, as `symcost model` prints totals: nested floors named once (``R_1 = …``), like terms collected
        (the values themselves stay the exact expressions)."""
        from .export.formulas import readable, text
        from .render import pairs

        shown, where = readable(list(self.values()))
        out = f"Totals under {self.convention!r}:\n" + pairs([(k, text(v)) for k, v in zip(self.KEYS, shown)], indent=2)
        return out + "".join(f"\n  where {k} = {text(v)}" for k, v in where.items())

    _repr_pretty_ = lambda self, p, cycle: p.text(repr(self))  # noqa: E731  (IPython: not its dict printer)


def sum_exact(terms: list) -> sympy.Expr:
    """``sympy.Add(*terms)``; in Python integers where every term is a sympy Integer (a trace at concrete sizes:
    the same Integer, without sympy's arithmetic)."""
    if all(getattr(t, "is_Integer", False) for t in terms):
        return sympy.Integer(sum(int(t) for t in terms))
    return sympy.Add(*terms)


def piecewise(branches: list) -> sympy.Expr:
    """``Piecewise`` of ``(value, condition)`` pairs, or the one value where every branch has it (sympy would
    merge equal branches into one under an ``Or`` of their conditions, unreadable)."""
    values = [v for v, _ in branches]
    if all(v == values[0] for v in values[1:]):
        return values[0]
    return sympy.Piecewise(*branches)


class RowKind(str, Enum):
    """What a row is: a catalogued module's call, an op called outside any (functional), or the parameters no
    costed call reads (counted in a row of their own, never a call)."""

    MODULE = "module"
    FUNCTIONAL = "functional"
    UNUSED = "unused parameters"


@dataclass
class Row:
    name: str            # qualified module name; functional ops get ":op" appended
    layer: str           # catalog layer name
    args: dict           # its arguments (plain values)
    input_shapes: tuple  # symbolic
    cost: Cost
    backward: bool = False  # part of the backward pass of a training step (``trace(..., backward=True)``)
    #: a causal attention product: the MACs of its query-key pairs above the diagonal (``tracing.causal``)
    causal_skip: sympy.Expr | int = 0
    kind: RowKind = RowKind.MODULE
    #: a causal attention product, forward or backward: half its MACs (``tracing.causal``; the ``megatron``
    #: convention counts the attention products of causal modules as half the L x S square)
    causal_half: sympy.Expr | int = 0

    @property
    def functional(self) -> bool:
        """A call outside any catalogued module (``x + y`` in a forward): invisible to module-hook tools."""
        return self.kind is RowKind.FUNCTIONAL

    @property
    def label(self) -> str:
        """The row's name as a reader writes the call: a module's qualified name as is; a functional call as
        ``layer1.0: add`` -- its module, then the function by the name the code calls it, without the underscores
        of torch's in-place and private variants (``out += x`` runs ``add_``, ``F.softmax`` runs ``_softmax``).
        ``name`` keeps torch's op: it is the key the timing measurements match."""
        if not self.functional:
            return self.name
        module, op = self.name.rsplit(":", 1)
        return f"{module}: {op.split('.')[0].strip('_') or op}"

    @property
    def is_call(self) -> bool:
        """A layer call (module or functional), not the row of parameters no costed call reads."""
        return self.kind is not RowKind.UNUSED


def shown_condition(condition) -> str:
    """A guard as a reader writes it: ``L <= 511`` (for ``T + 1 < 512`` too), ``Mod(W, 8) == 0``, ``H != 240``."""
    solved = _solved(condition)
    if solved:
        return solved
    if isinstance(condition, (sympy.Eq, sympy.Ne)):
        op = "==" if isinstance(condition, sympy.Eq) else "!="
        return f"{sympy.sstr(condition.lhs)} {op} {sympy.sstr(condition.rhs)}"
    if isinstance(condition, (sympy.And, sympy.Or)):
        joint = " and " if isinstance(condition, sympy.And) else " or "
        return joint.join(f"({shown_condition(a)})" for a in condition.args)
    return sympy.sstr(condition)


def shown_size(size, printer=sympy.sstr) -> str:
    """A tensor size of the domain as a reader writes it; a size of some pieces only (``tracing.pieces``:
    ``Piecewise((floor(W/2) - 2, W >= 513), (1, True))``) as ``floor(W/2) - 2 (where W >= 513)``."""
    if isinstance(size, sympy.Piecewise) and size.args[-1].cond is sympy.true and size.args[-1].expr == 1:
        return " or ".join(f"{printer(e)} (where {shown_condition(c)})" for e, c in size.args[:-1])
    return printer(size)


def at_least_one(condition) -> sympy.Expr | None:
    """An integer expression that is >= 1 exactly where ``condition`` holds (``L < 512`` -> ``512 - L``; ``W != 240``
    -> ``Max(W - 240, 240 - W)``), for a domain of sizes that must be >= 1; None where the sides may not be
    integers."""
    if isinstance(condition, sympy.And):
        parts = [at_least_one(c) for c in condition.args]
        return None if None in parts else sympy.Min(*parts)
    if isinstance(condition, sympy.Or):
        parts = [at_least_one(c) for c in condition.args]
        return None if None in parts else sympy.Max(*parts)
    if not isinstance(condition, sympy.core.relational.Relational):
        return None
    diff = condition.lhs - condition.rhs
    if not diff.is_integer:
        return None
    if isinstance(condition, sympy.Eq):
        return sympy.Min(diff + 1, 1 - diff)
    if isinstance(condition, sympy.Ne):
        return sympy.Max(diff, -diff)
    return {sympy.Lt: -diff, sympy.Le: 1 - diff, sympy.Gt: diff, sympy.Ge: diff + 1}[type(condition)]


def linear_bound(condition) -> tuple[sympy.Symbol, str, sympy.Rational] | None:
    """A relation linear in one integer size as ``(x, op, bound)`` with ``x op bound`` (``-T - 1 > -127`` ->
    ``(T, "<", 126)``); None for anything else (two sizes, a floor, a non-linear size)."""
    if not isinstance(condition, sympy.core.relational.Relational) or len(condition.free_symbols) != 1:
        return None
    x = next(iter(condition.free_symbols))
    d = sympy.expand(condition.lhs - condition.rhs)   # d REL 0
    if not (x.is_integer and d.is_polynomial(x) and sympy.degree(d, x) == 1):
        return None
    a, b = d.coeff(x, 1), d.coeff(x, 0)
    if not (a.is_Rational and b.is_Rational):
        return None
    op = condition.rel_op
    if a < 0:
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    return x, op, -b / a


def integer_range(x, op: str, bound) -> tuple[int | None, int | None]:
    """The integers ``x op bound`` allows, as (lowest, highest) with None for no limit (``<``/``<=``/``>``/``>=``)."""
    if op in ("<", "<="):  # the largest integer allowed
        return None, int(sympy.ceiling(bound) - 1 if op == "<" else sympy.floor(bound))
    return int(sympy.floor(bound) + 1 if op == ">" else sympy.ceiling(bound)), None


def _solved(condition) -> str | None:
    """A relation linear in one integer size as a bound on it: ``-T - 1 > -127`` -> ``T <= 125``."""
    found = linear_bound(condition)
    if found is None:
        return None
    x, op, bound = found
    if op in ("==", "!="):
        return f"{x} {op} {bound}" if bound.is_Integer else None
    low, high = integer_range(x, op, bound)
    return f"{x} <= {high}" if high is not None else f"{x} >= {low}"


class Sweepable:
    """Evaluation of closed-form totals: exact at a point, vectorised over arrays, inside the model's domain.
    Needs ``symbols``, ``domain`` and ``total(convention)``."""

    symbols: list
    domain: tuple

    def check_domain(self, values: Mapping) -> None:
        """Raise ``UsageError`` (a ``ValueError``) if some tensor of the model would have a size below 1 at
        ``values`` (keys: symbols or their names; every symbol needs a value)."""
        from .summary import refuse_other_sizes

        refuse_other_sizes(getattr(self, "fixed_at", {}), [values])
        subs = bind(values, self.symbols, extra=True)
        given = ", ".join(f"{k}={v}" for k, v in values.items())
        for size in self.domain:
            if size.xreplace(subs) < 1:
                raise UsageError(f"the model cannot take {given}: a tensor size {shown_size(size)} becomes "
                                 f"{size.xreplace(subs)}")
        for condition in getattr(self, "guards", ()):
            if not bool(condition.xreplace(subs)):
                raise OutsideProvenDomain(outside_message(given, shown_condition(condition)))

    def evaluate(self, values: Mapping, convention: str | Convention = "flops") -> dict[str, int]:
        """Exact integers at one assignment of the input symbols (``{"H": 224, "W": 224}``; names or symbols;
        others are ignored, so one call serves derivations at a symbolic and at a concrete size).  ``UsageError``
        for a missing symbol and outside the model's domain."""
        self.check_domain(values)
        subs = bind(values, self.symbols, extra=True)
        return {k: to_int(v.xreplace(subs), k) for k, v in self.total(convention).items()}

    def lambdified(self, convention: str | Convention = "flops", metrics=("params", "macs", "flops")):
        """A vectorised function of the symbols (in ``self.symbols`` order) -> dict of int64 arrays, plus
        ``"valid"``: True where every tensor size of the model is >= 1.  Evaluated exactly, with the same evaluator
        as a cached sweep (``summary.evaluate_tree``): no float rounding inside a floor."""
        import numpy as np

        from .summary import evaluate_tree, to_tree, truth

        if getattr(self, "fixed_at", None):
            from .errors import NoSingleFormula

            raise NoSingleFormula(self.notes[-1] if self.notes else "the derivation holds at one size only")
        total = self.total(convention)
        trees = {m: to_tree(total[m]) for m in metrics}
        domain = [to_tree(d) for d in self.domain]
        guards = [to_tree(g) for g in getattr(self, "guards", ())]
        names = [str(s) for s in self.symbols]

        def run(*arrays):
            shape = np.broadcast(*arrays).shape if arrays else ()
            env = {n: np.broadcast_to(np.asarray(a), shape).reshape(-1).tolist() for n, a in zip(names, arrays)}
            out = {m: np.array(evaluate_tree(t, env), dtype=np.int64).reshape(shape) for m, t in trees.items()}
            out["valid"] = np.ones(shape, dtype=bool)
            for tree in domain:
                out["valid"] &= np.array(evaluate_tree(tree, env) >= 1, dtype=bool).reshape(shape)
            for tree in guards:
                out["valid"] &= truth(tree, env).reshape(shape)
            return out

        return run

    def valid(self, *arrays):
        """Vectorised domain check: a boolean array, True where every size is >= 1."""
        return self.lambdified(metrics=())(*arrays)["valid"]


@dataclass
class ModelCost(Sweepable):
    target: str
    input_shape: tuple
    rows: list[Row]
    uncovered: dict[str, int] = field(default_factory=dict)   # aten op -> calls symcost could not cost
    zero_cost_ops: dict[str, int] = field(default_factory=dict)  # views and tensor creation, counted 0 on purpose
    notes: list[str] = field(default_factory=list)
    #: every symbolic tensor size in the model: the formulas hold where all of them are >= 1
    domain: tuple = ()
    #: a model that runs at one size only: its symbols' values there (the numbers hold at those values only)
    fixed_at: dict = field(default_factory=dict)
    #: floating-point buffer values by what they are ("running statistics", "other"): they sum to total buffers
    buffer_kinds: dict = field(default_factory=dict)
    #: named inputs (keyword -> symbolic shape); ``input_shape`` is then all their dims, one input after another
    inputs: dict = field(default_factory=dict)
    #: the size guards of the path traced (sympy relations in the input's symbols, ``tracing.guards``): the
    #: formulas hold where all of them are true (and every size of ``domain`` is >= 1)
    guards: tuple = ()
    #: the guards are the whole domain (read from a run with symbolic sizes); False: sampled (see the notes)
    proven: bool = False
    #: a formula in pieces (``tracing.pieces``): ``(condition, ModelCost)`` per region of one size, each derived,
    #: proven and verified on its own side; the totals are a ``Piecewise`` of theirs and ``rows`` their rows merged
    pieces: tuple = ()

    @property
    def symbols(self) -> list[sympy.Symbol]:
        return sorted({s for d in self.input_shape if isinstance(d, sympy.Basic) for s in d.free_symbols}, key=str)

    def total(self, convention: str | Convention = "flops") -> Totals:
        conv = as_convention(convention)
        if self.pieces:  # each piece's own totals: one Piecewise, not a sum of every row's pieces
            parts = [(cond, mc.total(conv)) for cond, mc in self.pieces]
            return Totals(conv.name, {k: piecewise([(t[k], cond) for cond, t in parts]) for k in Totals.KEYS})
        return Totals(conv.name, {**self.counts(), "flops": sum_exact([conv.count_row(r) for r in self.rows])})

    def counts(self) -> dict[str, sympy.Expr]:
        """The totals no convention weighs (params, buffers, MACs, reads, writes), summed over the rows (of a
        derivation without pieces)."""
        return {m: sum_exact([getattr(r.cost, m) for r in self.rows])
                for m in ("params", "buffers", "macs", "reads", "writes")}

    def by_family(self, convention: str | Convention = "flops", metric: str = "flops") -> dict[str, sympy.Expr]:
        conv = as_convention(convention)
        if self.pieces:
            parts = [(cond, mc.by_family(conv, metric)) for cond, mc in self.pieces]
            families = list(dict.fromkeys(f for _, d in parts for f in d))
            return {f: piecewise([(d.get(f, sympy.Integer(0)), cond) for cond, d in parts]) for f in families}
        out: dict[str, sympy.Expr] = {}
        for r in self.rows:
            if metric == "flops" and not conv.sees(r):
                continue
            value = conv.count_row(r) if metric == "flops" else getattr(r.cost, metric)
            out[r.cost.family] = out.get(r.cost.family, sympy.Integer(0)) + value
        return out

    def _repr_html_(self) -> str:
        """A per-layer table for notebooks (FLOPs under ``flops``; ``symcost.export.html.model_html`` for another
        convention)."""
        from .export.html import model_html

        return model_html(self)

    def summary(self, totals: dict | None = None, conventions: dict | None = None):
        """This derivation's totals under every convention in plain data (see ``symcost.summary``); ``totals``
        replaces them (e.g. after ``--assume-divisible``); ``conventions``: name -> ``Convention`` (symcost's own,
        by default; a user's own too)."""
        from .conventions import CONVENTIONS
        from .summary import EVALUATED, Summary, to_tree

        def shown(e):
            return int(e) if e.is_Integer else sympy.sstr(e)

        from .export.formulas import collect

        conventions = conventions or CONVENTIONS
        totals = totals or {n: self.total(c) for n, c in conventions.items()}
        totals = {n: {m: collect(e) for m, e in t.items()} for n, t in totals.items()}  # like terms collected
        return Summary(
            target=self.target,
            input_shape=[shown(d) for d in self.input_shape],
            symbols=[str(s) for s in self.symbols],
            conventions={n: conventions[n].summary for n in totals},
            totals={n: {m: shown(e) for m, e in t.items()} for n, t in totals.items()},
            trees={n: {m: to_tree(t[m]) for m in EVALUATED} for n, t in totals.items()},
            domain=[(to_tree(d), shown_size(d)) for d in self.domain],
            guards=[(to_tree(g), shown_condition(g)) for g in self.guards],
            uncovered=dict(self.uncovered), zero_cost_ops=dict(self.zero_cost_ops), notes=list(self.notes),
            fixed_at=dict(self.fixed_at),
            buffer_kinds=dict(self.buffer_kinds),
        )
