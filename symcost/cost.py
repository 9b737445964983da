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

from .exact import as_expr, bind, numel, to_int  # noqa: F401  (numel, to_int: the layer modules import them from here)
from .op_kinds import OP_KINDS  # noqa: F401  (symcost.OP_KINDS)

Expr = sympy.Expr




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
        object.__setattr__(self, "output_shape", tuple(as_expr(d) for d in self.output_shape))
        object.__setattr__(self, "ops", {k: as_expr(v) for k, v in self.ops.items() if v != 0})
        for name in ("params", "buffers", "reads", "writes"):
            object.__setattr__(self, name, as_expr(getattr(self, name)))

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
        k = as_expr(k)
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
        from .conventions import as_convention

        conv = as_convention(convention)
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
        from .conventions import as_convention
        from .formula import Formula

        conv = as_convention(convention)
        return Formula(self.layer, (), self, {}, conv)

    def _latex(self, printer) -> str:
        """An align environment under the ``flops`` convention (``cost.formula("torch")`` for another)."""
        return self.formula()._latex(printer)

    def _repr_latex_(self) -> str:
        return self.formula()._repr_latex_()

    def _repr_html_(self) -> str:
        return self.formula()._repr_html_()
