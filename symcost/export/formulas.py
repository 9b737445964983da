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

from ..exact import as_expr


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
    canonical: dict = {}    # canonical floor -> (symbol, offset, shift) of the first one named
    for f in sorted(closure, key=lambda a: (_depth(a), sympy.default_sort_key(a))):
        inner = f.xreplace({g: s - c for g, (s, c) in named.items()}) if named else f
        constant, rest = inner.as_coeff_Add()   # sympy takes integers out: ceiling(H_2/2 - 1) = ceiling(H_2/2) - 1
        key, shift = canonical_floor(rest) if isinstance(rest, (sympy.floor, sympy.ceiling)) else (inner, 0)
        shift += int(constant) if constant.is_Integer else 0
        if key in canonical:  # the same integer as a size named already (ceiling(H/2) = floor((H - 1)/2) + 1)
            sym, c0, shift0 = canonical[key]
            named[f] = (sym, c0 + shift0 - shift)
            continue
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
        canonical[key] = (sym, c, shift)
    out = [e.xreplace({f: s - c for f, (s, c) in named.items()}) for e in exprs]
    return out, where


def canonical_floor(f) -> tuple:
    """``(g, k)`` with ``f == g + k`` for every positive integer value of its symbols, ``g`` one canonical form of
    the integers ``f`` computes: ``floor(p/q + r)`` with ``0 <= r < 1`` (``p`` an integer polynomial, ``q`` a
    positive integer), so ``ceiling(H/2)`` and ``floor((H - 1)/2) + 1`` both give ``floor(H/2 + 1/2)``.  ``(f, 0)``
    where the argument is not of that kind."""
    arg = sympy.expand(f.args[0])
    num, den = sympy.fraction(sympy.together(arg))
    num = sympy.expand(num)
    if not (den.is_Integer and den > 0 and num.free_symbols and num.is_polynomial()
            and all(s.is_integer for s in num.free_symbols)
            and all(c.is_Integer for c in sympy.Poly(num, *sorted(num.free_symbols, key=str)).coeffs())):
        return f, 0
    q = int(den)
    if isinstance(f, sympy.ceiling):           # ceiling(p/q) = floor((p + q - 1)/q) for an integer p
        num = num + q - 1
    constant, _ = sympy.expand(num).as_coeff_Add()
    k = int(constant) // q                     # floor(x + k) = floor(x) + k for an integer k
    return sympy.floor(sympy.expand((num - k * q) / q), evaluate=False), k


def _lower_bound(e):
    """A polynomial ``<= e`` at every positive integer value of the symbols (a floor ``floor(p/q)`` of an integer
    ``p`` is at least ``(p - q + 1)/q``, a ceiling at least its argument), or None where ``e`` is not a sum of
    positive multiples of sizes and floors that grow with their arguments."""
    if e.is_Rational or e.is_Symbol:
        return e
    if isinstance(e, sympy.floor):
        inner = _lower_bound(e.args[0])
        if inner is None:
            return None
        _, den = sympy.fraction(sympy.together(e.args[0]))
        return inner - (den - 1) / den if den.is_Integer and den > 0 else inner - 1
    if isinstance(e, sympy.ceiling):
        return _lower_bound(e.args[0])
    if e.is_Add:
        parts = [_lower_bound(a) for a in e.args]
        return None if any(p is None for p in parts) else sympy.Add(*parts)
    if e.is_Mul or e.is_Pow:
        if not e.has(sympy.floor, sympy.ceiling):
            return e
        coeff, rest = e.as_coeff_Mul()
        if coeff > 0 and isinstance(rest, (sympy.floor, sympy.ceiling)):
            inner = _lower_bound(rest)
            return None if inner is None else coeff * inner
    return None


def always_at_least_one(size) -> bool:
    """True where ``size >= 1`` holds at every positive integer value of its symbols (a proof, not a sample):
    ``floor((R - 1)/2) + 1`` does, ``1025 - L`` does not."""
    low = _lower_bound(sympy.expand(as_expr(size)))
    if low is None:
        return False
    # a size is an integer: above 0 is at least 1.  Symbols >= 1: s = t + 1 with t >= 0, so a polynomial in t with
    # no negative coefficient and a positive constant is above 0
    shifted = sympy.expand(low.xreplace({s: s + 1 for s in low.free_symbols}))
    constant, _ = shifted.as_coeff_Add()
    if not shifted.free_symbols:
        return shifted > 0
    return constant > 0 and all(c >= 0 for c in sympy.Poly(shifted, *sorted(shifted.free_symbols, key=str)).coeffs())


def condition_text(size) -> str | None:
    """``size >= 1`` as a reader writes it: None where it always holds (``floor((R - 1)/2) + 1 >= 1``), a bound on
    the symbol where ``size`` is linear in one (``1025 - L >= 1`` -> ``L <= 1024``), else ``size >= 1``."""
    size = as_expr(size)
    if always_at_least_one(size):
        return None
    symbols = list(size.free_symbols)
    if len(symbols) == 1 and size.is_polynomial(symbols[0]) and sympy.degree(size, symbols[0]) == 1:
        s = symbols[0]
        a, b = size.coeff(s, 1), size.coeff(s, 0)
        if a.is_Integer and b.is_Integer:     # a*s + b >= 1
            if a < 0:
                return f"{s} <= {(int(b) - 1) // -int(a)}"
            return f"{s} >= {-((int(b) - 1) // int(a))}"
    return f"{text(size)} >= 1"


def collect(expr):
    """Like terms collected (``144*L*(L - 1) + 144*L*(2*L - 1)`` -> ``432*L**2 - 288*L``) where that is safe: a
    polynomial in the sizes.  An expression that still holds a floor, ceiling or piecewise is left as it is (its
    products would expand into a larger expression); name the floors first (``readable``)."""
    expr = as_expr(expr)
    if isinstance(expr, sympy.Piecewise):  # a formula in pieces: each piece collected
        return sympy.Piecewise(*((collect(e), c) for e, c in expr.args))
    if expr.has(sympy.floor, sympy.ceiling, sympy.Piecewise, sympy.Max, sympy.Min):
        return expr
    return sympy.expand(expr)


def readable(exprs: list, sizes=(), taken: set[str] = frozenset()) -> tuple[list, dict]:
    """``abbreviate``, then like terms collected in each rewritten expression: the form every text, LaTeX and
    HTML rendering of a formula uses.  Exact: ``expand_back`` gives expressions equal to the originals."""
    out, where = abbreviate(exprs, sizes, taken)
    return [collect(e) for e in out], where


def from_tree(tree):
    """A ``symcost.summary`` expression tree back to sympy (built from ints and symbol names only, nothing parsed):
    every node ``summary.to_tree`` writes."""
    from ..exact import gcd

    kind, args = tree[0], tree[1:]
    if kind == "num":
        return sympy.Rational(int(args[0]), int(args[1]))
    if kind == "sym":
        return sympy.Symbol(args[0], integer=True, positive=True)
    if kind == "bool":
        return sympy.true if args[0] else sympy.false
    if kind == "pow":
        return from_tree(args[0]) ** int(args[1])
    if kind == "piecewise":
        return sympy.Piecewise(*((from_tree(value), from_tree(cond)) for value, cond in args))
    if kind == "sympy" and isinstance(args[0], sympy.Basic):  # kept as it is in memory (never in a cache file)
        return args[0]
    funcs = {"add": sympy.Add, "mul": sympy.Mul, "floor": sympy.floor, "ceiling": sympy.ceiling, "min": sympy.Min,
             "max": sympy.Max, "mod": sympy.Mod, "gcd": gcd, "and": sympy.And, "or": sympy.Or, "not": sympy.Not,
             "le": sympy.Le, "lt": sympy.Lt, "ge": sympy.Ge, "gt": sympy.Gt, "eq": sympy.Eq, "ne": sympy.Ne}
    if kind in funcs:
        return funcs[kind](*map(from_tree, args))
    raise ValueError(f"unknown expression tree node {kind!r}")


def expand_back(expr, where: dict):
    """The original expression: each name replaced by its definition (latest first)."""
    for sym, definition in reversed(list(where.items())):
        expr = expr.xreplace({sym: definition})
    return expr


class FormulaPrinter(LatexPrinter):
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
    return FormulaPrinter({"mul_symbol": None}).doprint(as_expr(expr))
