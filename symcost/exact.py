"""Exact sizes: sympy integers and expressions, never floats, never a parsed string.

The bottom of the package: costs, conventions, shape rules and the formula printers all build on these.
"""
from __future__ import annotations

import math
from typing import Mapping

import sympy


def as_expr(x) -> sympy.Expr:
    """A sympy number or expression from an int (or an expression): never parses or evaluates a string."""
    if isinstance(x, sympy.Basic):
        return x
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"expected an integer or a sympy expression, got {x!r}")
    return sympy.Integer(x)


def bind(values: Mapping, symbols, partial: bool = False, extra: bool = False) -> dict:
    """``{symbol: sympy value}`` from a mapping keyed by symbols or their names, for ``symbols``.  Raises
    ``UsageError`` for a value that is not an integer (or sympy expression), unless ``partial`` for a symbol left
    without a value, and unless ``extra`` (ignored then) for a name that is none of them."""
    from .errors import UsageError

    by_name = {str(s): s for s in symbols}
    out: dict = {}
    for key, value in values.items():
        name = str(key)
        if name not in by_name and extra:
            continue
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none: it is a number already"
            raise UsageError(f"{name} is not a symbol here; its symbols: {known}")
        try:
            out[by_name[name]] = as_expr(int(value) if hasattr(value, "__index__") and not isinstance(
                value, (bool, sympy.Basic)) else value)
        except TypeError:
            raise UsageError(f"{name} needs an integer, got {value!r}") from None
    missing = sorted(set(by_name) - {str(s) for s in out})
    if missing and not partial:
        raise UsageError(f"no value for {', '.join(missing)}: give one for each of {', '.join(sorted(by_name))}")
    return out


def numel(shape) -> sympy.Expr:
    return sympy.Mul(*[as_expr(d) for d in shape]) if shape else sympy.Integer(1)


def to_int(expr, what: str = "value") -> int:
    """An exact Python int from a numeric sympy expression; refuses anything else."""
    expr = as_expr(expr)
    if expr.free_symbols:
        names = ", ".join(sorted(str(s) for s in expr.free_symbols))
        raise ValueError(f"{what} still depends on {names}: give a value for each")
    if not expr.is_integer:
        expr = sympy.nsimplify(expr)
        if not expr.is_Integer:
            raise ValueError(f"{what} is not an integer: {expr}")
    return int(expr)


class gcd(sympy.Function):
    """Integer gcd that stays unevaluated until both arguments are numbers (``sympy.gcd`` of two
    symbols is the polynomial gcd, 1, which would be wrong here)."""

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sympy.Integer(math.gcd(int(a), int(b)))
        if a == b:
            return a

    def _eval_is_integer(self):
        return True

    def _eval_is_positive(self):
        return True
