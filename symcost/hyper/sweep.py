"""Exact vectorised evaluation of a config formula: int64 NumPy where it cannot overflow, Python ints elsewhere.

A config formula is a Laurent polynomial with rational coefficients (``2*d**2*k*n/h``): written as one integer
polynomial over one monomial denominator, every term is an int64 product.  A float64 bound on the sum of the
terms' absolute values finds the points where int64 could overflow; those alone are evaluated with Python ints.
Anything else (floors in an input symbol, a sum in a denominator) goes to the general exact evaluator.
"""
from __future__ import annotations

import numpy as np
import sympy

#: int64 holds 2**63 - 1; the float bound of a sum is within a few ulps, so 2**62 leaves room to spare
SAFE = float(2**62)


def _integer_poly(expr: sympy.Expr, symbols: list):
    try:
        p = sympy.Poly(expr, *symbols)
    except sympy.PolynomialError:
        return None
    terms = p.terms()
    if not all(c.is_Integer for _, c in terms):
        return None
    return [(m, int(c)) for m, c in terms]


def _terms_value(terms, arrays: list, dtype) -> np.ndarray:
    total = np.zeros(arrays[0].shape if arrays else (), dtype=dtype)
    for monom, c in terms:
        term = np.full(total.shape, c, dtype=dtype)
        for x, e in zip(arrays, monom):
            if e:
                term = term * x**e
        total = total + term
    return total


def _bound(terms, arrays: list) -> np.ndarray:
    floats = [np.abs(x.astype(np.float64)) for x in arrays]
    return _terms_value([(m, abs(c)) for m, c in terms], floats, np.float64)


def _global_bound(terms, arrays: list) -> int:
    """sum |c| * prod(max|x|**e) over the terms, in Python ints: an upper bound of every partial sum's size."""
    tops = [int(np.abs(x).max()) if x.size else 0 for x in arrays]
    return sum(abs(c) * np.prod([t**e for t, e in zip(tops, m)], dtype=object) for m, c in terms)


def exact_values(expr: sympy.Expr, env: dict[str, np.ndarray], size: int):
    """``(values, integral)``: the exact value at each of ``size`` points (int64, or object where a value needs more
    than 64 bits) and where it is an integer (False where a divisor does not divide: a configuration a condition
    excludes).  ``env``: symbol name -> 1-D int64 array of length ``size``."""
    from ..summary import evaluate_tree, to_tree

    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return np.full(size, int(expr), dtype=np.int64), np.ones(size, dtype=bool)
    symbols = sorted(expr.free_symbols, key=str)
    num, den = sympy.fraction(sympy.together(expr))
    top, bottom = _integer_poly(num, symbols), _integer_poly(den, symbols)
    if top is None or bottom is None or len(bottom) != 1:
        values = evaluate_tree(to_tree(expr), {str(s): env[str(s)].tolist() for s in symbols})
        return values, np.ones(size, dtype=bool)
    arrays = [env[str(s)] for s in symbols]
    n, d = _terms_value(top, arrays, np.int64), _terms_value(bottom, arrays, np.int64)
    if _global_bound(top, arrays) < 2**63 and _global_bound(bottom, arrays) < 2**63:
        risky = None  # no point can overflow (the usual case: one exact bound in Python ints, no float pass)
    else:
        risky = (_bound(top, arrays) >= SAFE) | (_bound(bottom, arrays) >= SAFE)
    if risky is not None and risky.any():  # those points with Python ints
        objects = [x[risky].astype(object) for x in arrays]
        n, d = n.astype(object), d.astype(object)
        n[risky], d[risky] = _terms_value(top, objects, object), _terms_value(bottom, objects, object)
    zero = d == 0
    d = np.where(zero, 1, d)
    integral = (n % d == 0) & ~zero
    values = n // d
    if values.dtype == object and all(abs(v) < SAFE for v in values):
        values = values.astype(np.int64)
    return values, integral
