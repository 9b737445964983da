"""Formulas short enough for a table cell.

A model's formulas nest floors: resnet50's last stage runs on ``floor(floor(floor(floor(floor(R/2 - 1/2)/2)/2)/2)/2)
+ 1`` pixels a side.  ``abbreviate`` names each floor (and ceiling) once, innermost first, by the size it
computes -- ``R_1 = floor((R - 1)/2) + 1``, ``R_2 = floor((R_1 - 1)/2) + 1`` … -- and rewrites the formulas in
those names (``9408*R_1**2 + …``).  The names extend the input's own symbols (``R`` -> ``R_1``; ``H`` and ``W``
get chains of their own), so a table's formulas read like ``symcost formula``'s.  Nothing is approximated: the
definitions, substituted back, give the original expressions.
"""
from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from ..cost import as_expr


def _depth(f) -> int:
    return len(f.atoms(sympy.floor, sympy.ceiling))


def _offset(f, sizes) -> int:
    """The c with ``f + c`` a tensor size of the model (conv and pool outputs are ``floor(…) + 1``; a ceil-mode
    pool's may be the ceiling itself); 1 when no size says."""
    for size in sizes:
        c = as_expr(size) - f
        if c.is_Integer:
            return int(c)
    return 1


def abbreviate(exprs: list, sizes=(), taken: set[str] = frozenset()) -> tuple[list, dict]:
    """``(rewritten expressions, {symbol: definition})``, definitions in dependency order.

    Each floor or ceiling ``F`` gets a name ``S = F + c``, with ``c`` taken from ``sizes`` (the model's tensor
    sizes, so each name is a size: ``R_1 = floor((R - 1)/2) + 1`` is conv1's output side)."""
    exprs = [as_expr(e) for e in exprs]
    atoms = set()
    for e in exprs:
        atoms |= e.atoms(sympy.floor, sympy.ceiling)
    if not atoms:
        return exprs, {}
    sizes = [d for d in (as_expr(x) for x in sizes) if d.has(sympy.floor, sympy.ceiling)]
    # every floor nested in a named one gets a name too, so the definitions only refer to names
    closure = set()
    for a in atoms:
        closure |= a.atoms(sympy.floor, sympy.ceiling)
    used = set(taken) | {str(s) for e in exprs for s in e.free_symbols}
    counters: dict[str, int] = {}
    named: dict = {}        # original floor -> (symbol, offset)
    where: dict = {}        # symbol -> definition in earlier symbols
    for f in sorted(closure, key=lambda a: (_depth(a), sympy.default_sort_key(a))):
        inner = f.xreplace({g: s - c for g, (s, c) in named.items()}) if named else f
        bases = {str(s) for s in f.free_symbols}
        if len(bases) > 1:   # a layer's own size (H among K_h, s_h, p_h …) names it
            bases = {b for b in bases if len(b) == 1 and b.isupper()}
        base = bases.pop() if len(bases) == 1 else "S"
        while True:
            counters[base] = counters.get(base, 0) + 1
            name = f"{base}_{counters[base]}"
            if name not in used:
                break
        used.add(name)
        sym = sympy.Symbol(name, integer=True, positive=True)
        c = _offset(f, sizes)
        named[f] = (sym, c)
        where[sym] = inner + c
    out = [e.xreplace({f: s - c for f, (s, c) in named.items()}) for e in exprs]
    return out, where


def collect(expr):
    """Like terms collected (``144*L*(L - 1) + 144*L*(2*L - 1)`` -> ``432*L**2 - 288*L``) where that is safe: a
    polynomial in the sizes.  An expression that still holds a floor, ceiling or piecewise is left as it is (its
    products would expand into a larger expression); name the floors first (``readable``)."""
    expr = as_expr(expr)
    if expr.has(sympy.floor, sympy.ceiling, sympy.Piecewise, sympy.Max, sympy.Min):
        return expr
    return sympy.expand(expr)


def readable(exprs: list, sizes=(), taken: set[str] = frozenset()) -> tuple[list, dict]:
    """``abbreviate``, then like terms collected in each rewritten expression: the form every text, LaTeX and
    HTML rendering of a formula uses.  Exact: ``expand_back`` gives expressions equal to the originals."""
    out, where = abbreviate(exprs, sizes, taken)
    return [collect(e) for e in out], where


def from_tree(tree):
    """A ``symcost.summary`` expression tree back to sympy (built from ints and symbol names only, nothing parsed)."""
    kind = tree[0]
    if kind == "num":
        return sympy.Rational(int(tree[1]), int(tree[2]))
    if kind == "sym":
        return sympy.Symbol(tree[1], integer=True, positive=True)
    if kind == "add":
        return sympy.Add(*map(from_tree, tree[1:]))
    if kind == "mul":
        return sympy.Mul(*map(from_tree, tree[1:]))
    if kind == "pow":
        return from_tree(tree[1]) ** int(tree[2])
    if kind == "floor":
        return sympy.floor(from_tree(tree[1]))
    if kind == "ceiling":
        return sympy.ceiling(from_tree(tree[1]))
    raise ValueError(f"unknown expression tree node {kind!r}")


def expand_back(expr, where: dict):
    """The original expression: each name replaced by its definition (latest first)."""
    for sym, definition in reversed(list(where.items())):
        expr = expr.xreplace({sym: definition})
    return expr


class _Printer(LatexPrinter):
    """sympy's LaTeX, with a floor's argument written as one fraction: ``\\lfloor (R - 1)/2 \\rfloor``."""

    def _print_floor(self, expr, exp=None):
        return self._bracket(expr, r"\left\lfloor ", r"\right\rfloor ", exp)

    def _print_ceiling(self, expr, exp=None):
        return self._bracket(expr, r"\left\lceil ", r"\right\rceil ", exp)

    def _bracket(self, expr, left, right, exp):
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        if den == 1:
            body = self._print(num)
        else:
            body = r"\frac{%s}{%s}" % (self._print(num), self._print(den))
        tex = left + body + right
        return r"%s^{%s}" % (tex, exp) if exp is not None else tex


class _TextPrinter(StrPrinter):
    """``sympy.sstr`` with a floor's argument as one fraction: ``floor((H - 1)/2) + 1``."""

    def _print_floor(self, expr):
        return f"floor({self._print(sympy.together(expr.args[0]))})"

    def _print_ceiling(self, expr):
        return f"ceiling({self._print(sympy.together(expr.args[0]))})"


def text(expr) -> str:
    """An expression for a terminal (sympy's own syntax, so it can be pasted into Python)."""
    return _TextPrinter().doprint(as_expr(expr))


def latex(expr) -> str:
    return _Printer({"mul_symbol": None}).doprint(as_expr(expr))
