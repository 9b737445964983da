"""A layer's cost for display: output sizes named (H_out = floor(...)), one convention chosen."""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .conventions import Convention
from .cost import Cost


def name_output_sizes(inputs: tuple, cost: Cost) -> tuple[Cost, dict]:
    """Replace each computed output size (a floor, a sum …) by a named symbol ``X_out``."""
    first = inputs[0] if inputs else ()
    names: dict = {}
    for i, dim in enumerate(cost.output_shape):
        if dim.is_Symbol or dim.is_Integer or dim in names:
            continue
        src = first[i] if i < len(first) and len(first) == len(cost.output_shape) else None
        base = str(src) if isinstance(src, sympy.Symbol) else f"O{i}"
        names[dim] = sympy.Symbol(f"{base}_out", integer=True, positive=True)
    named = cost.map(lambda e: e.xreplace(names)) if names else cost
    return named, {v: k for k, v in names.items()}


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """Collect like terms (an attention's FLOPs) unless floors are inside, whose products expand badly."""
    if expr.has(sympy.floor, sympy.ceiling, sympy.Piecewise):
        return expr
    return sympy.expand(expr)


@dataclass(frozen=True)
class Formula:
    """What ``symcost formula`` prints; ``sympy.latex(formula)`` gives an align environment."""

    layer: str
    inputs: tuple
    cost: Cost
    where: dict
    convention: Convention

    @classmethod
    def of(cls, layer, inputs: tuple, convention: Convention) -> "Formula":
        cost, where = name_output_sizes(inputs, layer.cost(*inputs))
        return cls(layer.name, inputs, cost.map(_tidy), where, convention)

    def rows(self, fmt) -> list[tuple[str, str]]:
        c = self.cost
        out = [("input", ", ".join("(" + ", ".join(fmt(d) for d in s) + ")" for s in self.inputs)),
               ("output", "(" + ", ".join(fmt(d) for d in c.output_shape) + ")")]
        out += [(fmt(k), fmt(v)) for k, v in self.where.items()]
        out += [("params", fmt(c.params))]
        if c.buffers != 0:
            out.append(("buffers", fmt(c.buffers)))
        out += [("MACs", fmt(c.macs)), (f"FLOPs[{self.convention.name}]", fmt(self.convention.count(c))),
                ("reads", fmt(c.reads)), ("writes", fmt(c.writes))]
        return out

    def __str__(self) -> str:
        rows = self.rows(lambda e: sympy.sstr(e) if isinstance(e, sympy.Basic) else str(e))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def _latex(self, printer) -> str:
        lines = [(r"\text{input}", ", ".join(r"\left(" + ", ".join(printer._print(d) for d in s) + r"\right)"
                                             for s in self.inputs)),
                 (r"\text{output}", r"\left(" + ", ".join(printer._print(d) for d in self.cost.output_shape) + r"\right)")]
        lines += [(printer._print(k), printer._print(v)) for k, v in self.where.items()]
        c = self.cost
        lines += [(r"\text{params}", printer._print(c.params))]
        if c.buffers != 0:
            lines.append((r"\text{buffers}", printer._print(c.buffers)))
        lines += [(r"\text{MACs}", printer._print(c.macs)),
                  (rf"\text{{FLOPs}}_{{\text{{{self.convention.name}}}}}", printer._print(self.convention.count(c))),
                  (r"\text{reads}", printer._print(c.reads)), (r"\text{writes}", printer._print(c.writes))]
        return "\\begin{align}\n" + " \\\\\n".join(f"{k} &= {v}" for k, v in lines) + "\n\\end{align}"
