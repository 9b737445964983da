"""Exact fitting of traced totals as polynomials in configuration symbols (torch-free, sympy only).

A total traced at one configuration is an expression in the input's symbols (``24*L**2 + 744*L``).  Across
configurations it is fitted as ``sum_j c_j * x**(lo + j)`` per configuration symbol ``x`` (a Laurent window
``lo <= exponent < lo + width``; ``lo = -1`` for a divisor such as the number of heads), whose coefficients
``c_j`` are themselves expressions in the input's symbols: the inverse of a rational Vandermonde matrix applied to
the traced expressions, so floors in the input symbols pass through untouched and every step is exact.
"""
from __future__ import annotations

from collections.abc import Sequence

import sympy


def vandermonde_inverse(xs: Sequence[int], lo: int) -> sympy.Matrix:
    """The exact inverse of ``[x_i ** (lo + j)]`` (distinct nonzero ``xs``, one row per value)."""
    w = len(xs)
    return sympy.Matrix(w, w, lambda i, j: sympy.Integer(xs[i]) ** (lo + j)).inv()


def _combine(weights, values) -> sympy.Expr:
    return sympy.expand(sympy.Add(*[w * v for w, v in zip(weights, values) if w != 0]))


def _poly(coeffs, x, lo: int) -> sympy.Expr:
    return sympy.Add(*[c * sympy.Integer(x) ** (lo + j) for j, c in enumerate(coeffs)])


def univariate_window(xs: Sequence[int], ys: Sequence[sympy.Expr], allow_negative: bool) -> tuple[int, int] | None:
    """The narrowest window ``(lo, width)`` whose Laurent polynomial through the first ``width`` points also
    passes exactly through every further point (at least one further point checks each fit); None if none."""
    for width in range(1, len(xs)):
        for lo in ((0, -1) if allow_negative else (0,)):
            inv = vandermonde_inverse(xs[:width], lo)
            coeffs = [_combine(inv.row(j), ys[:width]) for j in range(width)]
            if all(sympy.expand(_poly(coeffs, x, lo) - y) == 0 for x, y in zip(xs[width:], ys[width:])):
                return lo, width
    return None


def tensor_fit(grids: Sequence[Sequence[int]], los: Sequence[int], values: dict[tuple, sympy.Expr],
               symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    """The unique tensor-product Laurent polynomial through ``values`` (grid index tuple -> traced expression):
    one exact Vandermonde inverse per axis (the inverse of a Kronecker product is the product of inverses)."""
    import itertools

    coeffs = dict(values)
    for axis, (xs, lo) in enumerate(zip(grids, los)):
        inv = vandermonde_inverse(xs, lo)
        new = {}
        for idx in coeffs:
            if idx[axis] != 0:
                continue
            line = [coeffs[idx[:axis] + (i,) + idx[axis + 1:]] for i in range(len(xs))]
            for j in range(len(xs)):
                new[idx[:axis] + (j,) + idx[axis + 1:]] = _combine(inv.row(j), line)
        coeffs = new
    terms = []
    for idx in itertools.product(*(range(len(g)) for g in grids)):
        c = coeffs[idx]
        if c != 0:
            terms.append(c * sympy.Mul(*[s ** (lo + i) for s, lo, i in zip(symbols, los, idx)]))
    return sympy.expand(sympy.Add(*terms))
