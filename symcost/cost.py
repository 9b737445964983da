"""``Cost``: what one layer call (or a whole model) costs, as sympy expressions.

Every field stays symbolic until the user asks for numbers (``evaluate``), in the
spirit of tinygrad's ``Estimates``.  FLOPs are never stored: they depend on a
counting convention, so a ``Cost`` stores the *primitive operation counts*
(``ops``) and a :class:`~symcost.conventions.Convention` weighs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import sympy

#: Primitive operation kinds a layer reports.  Conventions weigh exactly these.
OP_KINDS: dict[str, str] = {
    "mac": "multiply-accumulate inside a dot product (conv, linear, matmul, attention)",
    "dot": "dot products formed; a length-n dot product needs n-1 additions, not n",
    "bias": "bias additions after a dot product",
    "add": "elementwise addition or subtraction (also each step of a sum)",
    "mul": "elementwise multiplication (squares, scales)",
    "div": "division or reciprocal",
    "cmp": "comparison, max or min (ReLU, clamps, max pooling)",
    "fn": "transcendental function evaluation (exp, sqrt, tanh, erf)",
}

Expr = sympy.Expr


def as_expr(x) -> sympy.Expr:
    """A sympy number or expression from an int (or an expression): never parses or evaluates a string."""
    if isinstance(x, sympy.Basic):
        return x
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"expected an integer or a sympy expression, got {x!r}")
    return sympy.Integer(x)


_sym = as_expr


@dataclass(frozen=True)
class Cost:
    """Cost of one call, every field a sympy expression.

    output_shape: shape of the (first) output.
    params:  trainable parameters, as ``sum(p.numel() for p in module.parameters())``.
    buffers: non-trainable state, e.g. BatchNorm running mean and variance
             (Keras counts these as "non-trainable params").
    ops:     primitive operation counts by kind (see ``OP_KINDS``).
    reads:   elements read, each input, weight and buffer tensor counted once
             per call (an ideal cache), not once per access.
    writes:  elements written, each output counted once.
    family:  the layer family that produced it ("conv", "norm" …); "mixed" for a sum
             of several families.  Conventions of peer tools weigh families differently.
    layer:   the catalog layer name ("conv2d" …), "" for a sum of several.
    """

    output_shape: tuple[sympy.Expr, ...] = ()
    params: sympy.Expr = sympy.Integer(0)
    buffers: sympy.Expr = sympy.Integer(0)
    ops: Mapping[str, sympy.Expr] = field(default_factory=dict)
    reads: sympy.Expr = sympy.Integer(0)
    writes: sympy.Expr = sympy.Integer(0)
    family: str = ""
    layer: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.ops) - set(OP_KINDS)
        if unknown:
            raise ValueError(f"unknown op kind(s) {sorted(unknown)}; known: {sorted(OP_KINDS)}")
        object.__setattr__(self, "output_shape", tuple(_sym(d) for d in self.output_shape))
        object.__setattr__(self, "ops", {k: _sym(v) for k, v in self.ops.items() if v != 0})
        for name in ("params", "buffers", "reads", "writes"):
            object.__setattr__(self, name, _sym(getattr(self, name)))

    @property
    def macs(self) -> sympy.Expr:
        """Multiply-accumulates: convention-free, 0 for layers that have none."""
        return self.ops.get("mac", sympy.Integer(0))

    def op(self, kind: str) -> sympy.Expr:
        return self.ops.get(kind, sympy.Integer(0))

    def __add__(self, other: "Cost") -> "Cost":
        """Fieldwise sum (a model total); the output shape is the later one's."""
        if not isinstance(other, Cost):
            return NotImplemented
        ops = dict(self.ops)
        for k, v in other.ops.items():
            ops[k] = ops.get(k, 0) + v
        return Cost(
            output_shape=other.output_shape or self.output_shape,
            params=self.params + other.params,
            buffers=self.buffers + other.buffers,
            ops=ops,
            reads=self.reads + other.reads,
            writes=self.writes + other.writes,
            family=self.family if self.family == other.family else "mixed",
            layer=self.layer if self.layer == other.layer else "",
        )

    def __radd__(self, other):
        return self if other == 0 else NotImplemented

    def __mul__(self, k) -> "Cost":
        """Scale the work of a call repeated ``k`` times (parameters are shared, not scaled)."""
        k = _sym(k)
        return replace(self, ops={n: k * v for n, v in self.ops.items()}, reads=k * self.reads, writes=k * self.writes)

    __rmul__ = __mul__

    def map(self, fn) -> "Cost":
        """Apply ``fn`` to every expression (``subs``, ``simplify``, ``xreplace`` …)."""
        return Cost(
            output_shape=tuple(fn(d) for d in self.output_shape),
            params=fn(self.params),
            buffers=fn(self.buffers),
            ops={k: fn(v) for k, v in self.ops.items()},
            reads=fn(self.reads),
            writes=fn(self.writes),
            family=self.family,
            layer=self.layer,
        )

    def subs(self, values: Mapping) -> "Cost":
        """Sizes replaced by integers (or expressions): keys are symbols or their names (``{"C_in": 3}``).  A name
        given as a string that is not a symbol of this cost is an error (a typo would otherwise change nothing);
        sympy keys pass to ``Expr.subs`` as they are."""
        mapping = bind({k: v for k, v in values.items() if isinstance(k, str)}, self.free_symbols, partial=True)
        mapping.update({k: v if isinstance(v, sympy.Basic) else as_expr(v) for k, v in values.items()
                        if not isinstance(k, str)})
        return self.map(lambda e: e.subs(mapping))

    def evaluate(self, values: Mapping, convention="flops") -> dict[str, int]:
        """Exact integers (params, buffers, MACs, FLOPs under ``convention``, reads, writes); every symbol of the
        cost needs a value (``UsageError`` names the missing ones)."""
        from .conventions import get_convention

        conv = get_convention(convention) if isinstance(convention, str) else convention
        c = self.subs(bind(values, self.free_symbols))
        return {"params": to_int(c.params, "params"), "buffers": to_int(c.buffers, "buffers"),
                "macs": to_int(c.macs, "MACs"), "flops": to_int(conv.count(c), "FLOPs"),
                "reads": to_int(c.reads, "reads"), "writes": to_int(c.writes, "writes")}

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        out: set = set()
        for e in (*self.output_shape, self.params, self.buffers, self.reads, self.writes, *self.ops.values()):
            out |= e.free_symbols
        return out

    def formula(self, convention="flops"):
        """This cost for people under one convention (a ``symcost.formula.Formula``): nested floors named,
        like terms collected, LaTeX and HTML for notebooks."""
        from .conventions import get_convention
        from .formula import Formula

        conv = get_convention(convention) if isinstance(convention, str) else convention
        return Formula(self.layer, (), self, {}, conv)

    def _latex(self, printer) -> str:
        """An align environment under the ``flops`` convention (``cost.formula("torch")`` for another)."""
        return self.formula()._latex(printer)

    def _repr_latex_(self) -> str:
        return self.formula()._repr_latex_()

    def _repr_html_(self) -> str:
        return self.formula()._repr_html_()


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
    return sympy.Mul(*[_sym(d) for d in shape]) if shape else sympy.Integer(1)


def to_int(expr, what: str = "value") -> int:
    """An exact Python int from a numeric sympy expression; refuses anything else."""
    expr = _sym(expr)
    if expr.free_symbols:
        names = ", ".join(sorted(str(s) for s in expr.free_symbols))
        raise ValueError(f"{what} still depends on {names}: give a value for each")
    if not expr.is_integer:
        expr = sympy.nsimplify(expr)
        if not expr.is_Integer:
            raise ValueError(f"{what} is not an integer: {expr}")
    return int(expr)
