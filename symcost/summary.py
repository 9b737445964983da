"""A derivation's totals in plain Python data: what a sweep needs, evaluated with NumPy alone.

``ModelCost.summary()`` turns each total (under every convention) and each symbolic tensor size into a small
expression tree of tuples — ``("add", a, b, …)``, ``("floor", x)``, ``("sym", "R")``, ``("num", p, q)`` — plus its
printed form.  A cached sweep then needs neither torch nor sympy: the tree is interpreted over NumPy arrays (no
string is ever evaluated).  Trees use the same float64-then-round arithmetic as ``sympy.lambdify``; every value is
an integer far below 2**53.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

METRICS = ("params", "macs", "flops")


class Unsupported(ValueError):
    """An expression node the tree form does not know (the caller falls back to sympy)."""


def to_tree(expr):
    """sympy expression -> nested tuples (raises ``Unsupported`` for anything else)."""
    import sympy

    if expr.is_Integer:
        return ("num", int(expr), 1)
    if expr.is_Rational:
        return ("num", int(expr.p), int(expr.q))
    if expr.is_Symbol:
        return ("sym", str(expr))
    if expr.is_Add:
        return ("add", *map(to_tree, expr.args))
    if expr.is_Mul:
        return ("mul", *map(to_tree, expr.args))
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return ("pow", to_tree(expr.base), int(expr.exp))
    if isinstance(expr, sympy.floor):
        return ("floor", to_tree(expr.args[0]))
    if isinstance(expr, sympy.ceiling):
        return ("ceiling", to_tree(expr.args[0]))
    raise Unsupported(f"{type(expr).__name__} in {expr}")


def evaluate_tree(tree, env: Mapping):
    """The tree's value over NumPy arrays (or scalars) bound to its symbols."""
    import numpy as np

    kind = tree[0]
    if kind == "num":
        return np.float64(tree[1]) / tree[2]
    if kind == "sym":
        return np.asarray(env[tree[1]], dtype=np.float64)
    if kind == "add":
        return sum(evaluate_tree(t, env) for t in tree[1:])
    if kind == "mul":
        out = np.float64(1)
        for t in tree[1:]:
            out = out * evaluate_tree(t, env)
        return out
    if kind == "pow":
        return evaluate_tree(tree[1], env) ** tree[2]
    if kind == "floor":
        return np.floor(evaluate_tree(tree[1], env))
    if kind == "ceiling":
        return np.ceil(evaluate_tree(tree[1], env))
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

    def total(self, convention: str) -> dict:
        if convention not in self.totals:
            raise ValueError(f"unknown convention {convention!r}; choose one of: {', '.join(self.totals)}")
        return self.totals[convention]

    def evaluate(self, points: list[dict], convention: str) -> list[dict]:
        """Exact integers at each point (``{"R": 224}``); ``ValueError`` naming the first point outside the domain."""
        import numpy as np

        self.total(convention)
        refuse_other_sizes(self.fixed_at, points)
        env = {s: np.array([p[s] for p in points], dtype=np.int64) for s in self.symbols}
        ok = np.ones(len(points), dtype=bool)
        for tree, printed in self.domain:
            bad = np.broadcast_to(evaluate_tree(tree, env), ok.shape) < 1
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                value = int(np.rint(np.broadcast_to(evaluate_tree(tree, env), ok.shape)[i]))
                given = ", ".join(f"{k}={v}" for k, v in points[i].items())
                extra = f" ({int(bad.sum())} of {len(points)} requested points are outside)" if len(points) > 1 else ""
                raise ValueError(f"the model cannot take {given}: a tensor size {printed} becomes {value}{extra}")
        values = {m: np.rint(np.broadcast_to(evaluate_tree(self.trees[convention][m], env), ok.shape)).astype(np.int64)
                  for m in METRICS}
        return [{"values": p, **{m: int(values[m][i]) for m in METRICS}} for i, p in enumerate(points)]
