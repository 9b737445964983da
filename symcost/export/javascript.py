"""sympy cost formulas as JavaScript expressions that compute the exact integer, in the browser.

Every value is a ``BigInt``: no float rounding at any size (a float64 is exact only below 2**53, which a large
model's FLOPs at a large input pass).  A formula with fractions (``floor(H/2 - 1/2)``, ``C*H*(H - 1)/2``) is
printed over a common denominator, so all arithmetic stays on integers: ``fl(n, d)`` is floor division, ``ce`` the
ceiling, ``ex(n, d)`` an exact division (it throws if a remainder is left: a formula that is not an integer is a
bug to see, not a number to round).  Symbols are read from an object ``s`` (``s.H``).  The helpers are
``RUNTIME``, to paste once into the page.
"""
from __future__ import annotations

import math

import sympy
from sympy.printing.jscode import JavascriptCodePrinter

from ..cost import as_expr
from ..errors import UsageError

#: the integer helpers the printed expressions call
RUNTIME = """\
const fl = (a, b) => { if (b < 0n) { a = -a; b = -b; } const q = a / b; return (a % b !== 0n && a < 0n) ? q - 1n : q; };
const ce = (a, b) => -fl(-a, b);
const ex = (a, b) => { if (a % b !== 0n) throw new Error("not an integer: " + a + "/" + b); return a / b; };
const mx = (...v) => v.reduce((x, y) => (y > x ? y : x));
const mn = (...v) => v.reduce((x, y) => (y < x ? y : x));
"""

_OPS = {"==": "===", "!=": "!==", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class BigIntPrinter(JavascriptCodePrinter):
    """sympy's JavaScript printer, every number a BigInt and every division exact (see the module's docstring)."""

    def doprint(self, expr, assign_to=None):
        return self._print(as_expr(expr))

    def _whole(self, expr) -> str:
        num, den = self._split(expr)
        return num if den == 1 else f"ex({num}, {den}n)"

    def _split(self, e) -> tuple[str, int]:
        """``(js, d)``: ``e`` equals the BigInt ``js`` divided by the positive integer ``d``."""
        if e.is_Integer:
            return f"{int(e)}n", 1
        if e.is_Rational:
            return f"{int(e.p)}n", int(e.q)
        if e.is_Symbol:
            return f"s.{e.name}", 1
        if e.is_Add:
            parts = [self._split(a) for a in e.args]
            d = math.lcm(*(q for _, q in parts))
            terms = [js if d == q else f"{js}*{d // q}n" for js, q in parts]
            return "(" + " + ".join(terms) + ")", d
        if e.is_Mul:
            parts = [self._split(a) for a in e.args]
            return "(" + "*".join(js for js, _ in parts) + ")", math.prod(q for _, q in parts)
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            js, q = self._split(e.base)
            return f"({js})**{int(e.exp)}n", q ** int(e.exp)
        if isinstance(e, (sympy.floor, sympy.ceiling)):
            js, q = self._split(e.args[0])
            return (js if q == 1 else f"{'fl' if isinstance(e, sympy.floor) else 'ce'}({js}, {q}n)"), 1
        if isinstance(e, (sympy.Max, sympy.Min)):
            name = "mx" if isinstance(e, sympy.Max) else "mn"
            return f"{name}({', '.join(self._whole(a) for a in e.args)})", 1
        if isinstance(e, sympy.Mod):  # sympy's Mod takes the divisor's sign; JavaScript's % the dividend's
            (js, q), (mj, mq) = self._split(e.args[0]), self._split(e.args[1])
            if mq != 1:
                raise UsageError(f"cannot compile a modulus that is not an integer to JavaScript: {e}")
            m = f"({mj}*{q}n)"
            return f"((({js} % {m}) + {m}) % {m})", q
        if isinstance(e, sympy.Piecewise):
            # a formula in pieces (``tracing.pieces``) has a condition on every branch: where none holds the page has
            # refused the size already (its guards), and a value there would be a silent wrong one, so it throws
            last = e.args[-1]
            out = (self._whole(last.expr) if last.cond is sympy.true else
                   '(() => { throw new Error("no piece of the formula holds here"); })()')
            for branch in reversed(e.args[:-1] if last.cond is sympy.true else e.args):
                out = f"({self._cond(branch.cond)} ? {self._whole(branch.expr)} : {out})"
            return out, 1
        raise UsageError(f"cannot compile {type(e).__name__} to JavaScript: {e}")

    def _cond(self, c) -> str:
        if c is sympy.true:
            return "true"
        if c is sympy.false:
            return "false"
        if isinstance(c, sympy.And):
            return "(" + " && ".join(map(self._cond, c.args)) + ")"
        if isinstance(c, sympy.Or):
            return "(" + " || ".join(map(self._cond, c.args)) + ")"
        if isinstance(c, sympy.Not):
            return f"!{self._cond(c.args[0])}"
        if isinstance(c, sympy.core.relational.Relational):
            js, _ = self._split(c.lhs - c.rhs)   # compared with 0 after clearing a positive denominator
            return f"({js} {_OPS[c.rel_op]} 0n)"
        raise UsageError(f"cannot compile condition {c} to JavaScript")

    def _print(self, expr, **kwargs) -> str:
        return self._whole(expr)


def js_expression(expr) -> str:
    """One formula as a JavaScript expression of ``s`` (the symbols' BigInt values) giving its exact value."""
    return BigIntPrinter().doprint(expr)
