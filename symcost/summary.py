"""A derivation's totals in plain Python data: what a sweep needs, evaluated with NumPy alone.

``ModelCost.summary()`` turns each total (under every convention) and each symbolic tensor size into a small
expression tree of tuples — ``("add", a, b, …)``, ``("floor", x)``, ``("sym", "R")``, ``("num", p, q)``,
``("piecewise", (value, condition), …)``, ``("le", a, b)`` … — plus its printed form.  A cached sweep then needs
neither torch nor sympy: the tree is interpreted over NumPy arrays (no string is ever evaluated).

Arithmetic is exact: every value is a rational with a constant denominator, kept as (Python-int numerators in an
object array, int denominator), so floors and comparisons never suffer float rounding (float64 gives
``floor(49 * (1/49)) = 0``).  A node the tree form does not know stays a sympy expression (``("sympy", expr)``),
evaluated exactly by sympy point by point: slower, never wrong.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Mapping

METRICS = ("params", "macs", "flops")
#: what each evaluation of a sweep gives (a point's memory traffic too, as a concrete derivation's totals do)
EVALUATED = (*METRICS, "reads", "writes")

_RELATIONS = {"le": operator.le, "lt": operator.lt, "ge": operator.ge, "gt": operator.gt, "eq": operator.eq,
              "ne": operator.ne}


class Unsupported(ValueError):
    """An expression node the tree evaluator does not know."""


def outside_message(given: str, guard: str) -> str:
    """Why a point gets no number from the formula: it breaks a size guard of the traced path."""
    return (f"{given} is outside the formula's domain: it holds where {guard} (a size guard of the model's "
            "forward); traced at that size on its own, the model gives exact numbers (symcost model --at does so)")


def to_tree(expr):
    """sympy expression -> nested tuples; a node without a tuple form becomes ``("sympy", node)``."""
    import sympy

    from .exact import gcd

    if expr is sympy.true or expr is sympy.false:
        return ("bool", bool(expr))
    if expr.is_Integer:
        return ("num", int(expr), 1)
    if expr.is_Rational:
        return ("num", int(expr.p), int(expr.q))
    if expr.is_Symbol:
        return ("sym", str(expr))
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return ("pow", to_tree(expr.base), int(expr.exp))
    kinds = {sympy.Add: "add", sympy.Mul: "mul", sympy.floor: "floor", sympy.ceiling: "ceiling",
             sympy.Min: "min", sympy.Max: "max", sympy.Mod: "mod", gcd: "gcd", sympy.And: "and", sympy.Or: "or",
             sympy.Not: "not", sympy.Le: "le", sympy.Lt: "lt", sympy.Ge: "ge", sympy.Gt: "gt", sympy.Eq: "eq",
             sympy.Ne: "ne"}
    if expr.func in kinds:
        return (kinds[expr.func], *map(to_tree, expr.args))
    if isinstance(expr, sympy.Piecewise):
        return ("piecewise", *((to_tree(value), to_tree(cond)) for value, cond in expr.args))
    return ("sympy", expr)


def _common(a, b):
    """Two rationals (numerators, denominator) over one denominator."""
    (an, ad), (bn, bd) = a, b
    d = ad * bd // math.gcd(ad, bd)
    return an * (d // ad), bn * (d // bd), d


def _rational(tree, env: dict, size: int):
    """The exact value of a numeric tree: (numerators, positive int denominator)."""
    import numpy as np

    kind, args = tree[0], tree[1:]
    if kind == "num":
        return args[0], args[1]
    if kind == "sym":
        return env[args[0]], 1
    if kind == "add":
        out = _rational(args[0], env, size)
        for t in args[1:]:
            an, bn, d = _common(out, _rational(t, env, size))
            out = an + bn, d
        return out
    if kind == "mul":
        num, den = 1, 1
        for t in args:
            n, d = _rational(t, env, size)
            num, den = num * n, den * d
        return num, den
    if kind == "pow":
        n, d = _rational(args[0], env, size)
        return n ** args[1], d ** args[1]
    if kind == "floor":
        n, d = _rational(args[0], env, size)
        return n // d, 1
    if kind == "ceiling":
        n, d = _rational(args[0], env, size)
        return -((-n) // d), 1
    if kind in ("min", "max"):
        out = _rational(args[0], env, size)
        for t in args[1:]:
            an, bn, d = _common(out, _rational(t, env, size))
            out = np.where((an <= bn) == (kind == "min"), an, bn), d
        return out
    if kind == "mod":  # sympy's Mod(a, b) = a - b*floor(a/b)
        (an, ad), (bn, bd) = _rational(args[0], env, size), _rational(args[1], env, size)
        q = (an * bd) // (ad * bn)
        return an * bd - bn * q * ad, ad * bd
    if kind == "gcd":
        (an, ad), (bn, bd) = _rational(args[0], env, size), _rational(args[1], env, size)
        if ad != 1 or bd != 1:
            raise Unsupported(f"gcd of non-integers in {tree}")
        return np.frompyfunc(math.gcd, 2, 1)(an, bn), 1
    if kind == "piecewise":  # the first branch whose condition holds
        out, done = (np.zeros(size, dtype=object), 1), np.zeros(size, dtype=bool)
        for value, cond in args:
            take = _truth(cond, env, size) & ~done
            if take.any():
                an, bn, d = _common(out, _rational(value, env, size))
                out = np.where(take, bn, an), d
            done |= take
        if not done.all():
            raise Unsupported(f"no branch of {tree} holds at some point")
        return out
    if kind == "sympy":
        return _by_sympy(args[0], env, size)
    raise Unsupported(kind)


def refuse_other_sizes(fixed_at: Mapping, points: list[Mapping]) -> None:
    """A derivation made at one size (``fixed_at``) says nothing about another: ``NoSingleFormula``."""
    from .errors import NoSingleFormula

    for p in points:
        other = {str(k): v for k, v in p.items() if str(k) in fixed_at and int(v) != fixed_at[str(k)]}
        if other:
            raise NoSingleFormula(f"no formula in {', '.join(fixed_at)}: the derivation holds at "
                                  + ", ".join(f"{k}={v}" for k, v in fixed_at.items()) + " only, not at "
                                  + ", ".join(f"{k}={v}" for k, v in other.items()))


def truth(tree, env: dict):
    """A condition tree's value at every point (``env`` as for ``evaluate_tree``): a 1-D boolean array."""
    import numpy as np

    arrays = {k: np.array(v, dtype=object).reshape(-1) for k, v in env.items()}
    size = max((len(v) for v in arrays.values()), default=1)
    return _truth(tree, {k: np.broadcast_to(v, (size,)) for k, v in arrays.items()}, size)


def _truth(tree, env: dict, size: int):
    """A condition tree's value: a boolean array."""
    import numpy as np

    kind, args = tree[0], tree[1:]
    if kind == "bool":
        return np.full(size, args[0])
    if kind in _RELATIONS:
        an, bn, _ = _common(_rational(args[0], env, size), _rational(args[1], env, size))
        return np.broadcast_to(np.asarray(_RELATIONS[kind](an, bn), dtype=bool), (size,))
    if kind in ("and", "or"):
        parts = [_truth(t, env, size) for t in args]
        return np.logical_and.reduce(parts) if kind == "and" else np.logical_or.reduce(parts)
    if kind == "not":
        return ~_truth(args[0], env, size)
    if kind == "sympy":
        return np.array([bool(v) for v in _by_sympy(args[0], env, size, boolean=True)], dtype=bool)
    raise Unsupported(kind)


def _by_sympy(expr, env: dict, size: int, boolean: bool = False):
    """The fallback: sympy substitutes each point exactly (no float anywhere)."""
    import numpy as np
    import sympy

    symbols = sorted(expr.free_symbols, key=str)
    values = []
    for i in range(size):
        v = expr.xreplace({s: sympy.Integer(int(np.broadcast_to(env[str(s)], (size,))[i])) for s in symbols})
        if boolean:
            values.append(bool(v))
        elif not v.is_Rational:
            raise Unsupported(f"{expr} is not a rational number at a point: {v}")
        else:
            values.append(v)
    if boolean:
        return values
    den = math.lcm(*(int(v.q) for v in values)) if values else 1
    return np.array([int(v.p) * (den // int(v.q)) for v in values], dtype=object), den


def evaluate_tree(tree, env: dict):
    """The tree's exact value at every point: a 1-D object array of Python ints (``env``: symbol -> a sequence of
    ints, all of one length, or an int).  ``ValueError`` if the value at some point is not an integer."""
    import numpy as np

    arrays = {k: np.array(v, dtype=object).reshape(-1) for k, v in env.items()}
    size = max((len(v) for v in arrays.values()), default=1)
    arrays = {k: np.broadcast_to(v, (size,)) for k, v in arrays.items()}
    num, den = _rational(tree, arrays, size)
    num = np.broadcast_to(np.asarray(num, dtype=object), (size,))
    if any(n % den for n in num):
        raise ValueError(f"an expression that counts things is not an integer: {tree}")
    return np.array([n // den for n in num], dtype=object)


@dataclass
class Summary:
    """Totals under every convention (as numbers or printed formulas, and as trees) and the model's domain."""

    target: str
    input_shape: list            # ints and symbol names
    symbols: list[str]
    conventions: dict            # convention -> its one-line summary
    totals: dict                 # convention -> metric -> int or printed formula
    trees: dict                  # convention -> metric -> tree (params, macs, flops)
    domain: list                 # (tree, printed) per symbolic tensor size: the formulas hold where all are >= 1
    uncovered: dict
    zero_cost_ops: dict
    notes: list
    fixed_at: dict = field(default_factory=dict)   # a model that runs at one size only: the numbers hold there only
    buffer_kinds: dict = field(default_factory=dict)  # buffer values by kind ("running statistics", "other")
    guards: list = field(default_factory=list)     # (tree, printed) per size guard of the traced path: all must hold

    def outside(self, points: list[dict]) -> list[tuple[int, str]]:
        """(index, the guard it breaks) for each point outside the guards (inside them the formulas hold)."""
        env = {s: [int(p[s]) for p in points] for s in self.symbols}
        out: dict[int, str] = {}
        for tree, printed in self.guards:
            for i, ok in enumerate(truth(tree, env)):
                if not ok:
                    out.setdefault(i, printed)
        return sorted(out.items())

    def total(self, convention: str) -> dict:
        if convention not in self.totals:
            from .errors import unknown_convention

            raise unknown_convention(convention, self.totals)
        return self.totals[convention]

    def evaluate(self, points: list[dict], convention: str) -> list[dict]:
        """Exact integers at each point (``{"R": 224}``); ``ValueError`` naming the first point outside the domain."""
        self.total(convention)
        refuse_other_sizes(self.fixed_at, points)
        env = {s: [int(p[s]) for p in points] for s in self.symbols}
        for tree, printed in self.domain:
            sizes = evaluate_tree(tree, env)
            bad = [i for i, v in enumerate(sizes) if v < 1]
            if bad:
                i = bad[0]
                given = ", ".join(f"{k}={v}" for k, v in points[i].items())
                extra = f" ({len(bad)} of {len(points)} requested points are outside)" if len(points) > 1 else ""
                raise ValueError(f"the model cannot take {given}: a tensor size {printed} becomes {sizes[i]}{extra}")
        bad = self.outside(points)
        if bad:
            from .errors import OutsideProvenDomain
            i, guard = bad[0]
            extra = f" ({len(bad)} of {len(points)} requested points are outside)" if len(points) > 1 else ""
            raise OutsideProvenDomain(outside_message(", ".join(f"{k}={v}" for k, v in points[i].items()), guard)
                                      + extra)
        values = {m: evaluate_tree(self.trees[convention][m], env) for m in EVALUATED}
        return [{"values": p, **{m: int(values[m][i]) for m in EVALUATED}} for i, p in enumerate(points)]
