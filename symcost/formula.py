"""A layer's cost for display: output sizes named (H_out = floor(...)), one convention chosen."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy

from .exact import as_expr

if TYPE_CHECKING:
    from .convention_base import Convention
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


def _out_names(shown: list, named: dict, n: int, taken: set) -> tuple[list, dict]:
    """``readable``'s names of the first ``n`` expressions (the output sizes) renamed ``X_out`` where that name is
    free and the size the only one named after ``X`` (one layer's: ``H_1`` -> ``H_out``; a chain of layers keeps
    ``H_1``, ``H_2``)."""
    rename: dict = {}
    bases = [str(k).rsplit("_", 1)[0] for k in named]
    for d in shown[:n]:
        base = str(d).rsplit("_", 1)[0]
        if d in named and d not in rename and bases.count(base) == 1:
            new = sympy.Symbol(f"{base}_out", integer=True, positive=True)
            if str(new) not in taken and new not in named and new not in rename.values():
                rename[d] = new
    if not rename:
        return shown, named
    return ([e.xreplace(rename) for e in shown],
            {rename.get(k, k): v.xreplace(rename) for k, v in named.items()})


def flag_meanings(layer, cost: Cost, convention: Convention) -> dict[str, str]:
    """``{"b": "1 with bias, 0 without"}`` for each flag of ``layer`` left as a symbol that ``cost``'s formulas
    (under ``convention``) use."""
    used = set().union(*(getattr(e, "free_symbols", set()) for e in
                         (cost.params, cost.buffers, cost.macs, convention.count(cost), cost.reads, cost.writes)))
    return {str(getattr(layer, a.name)): f"1 with {a.name}, 0 without" for a in layer.args
            if a.kind == "flag" and getattr(layer, a.name, None) in used}


@dataclass(frozen=True)
class Formula:
    """A cost for people, under one convention: ``str(formula)`` for a terminal, ``sympy.latex(formula)`` an align
    environment, ``_repr_latex_`` / ``_repr_html_`` for notebooks.  Output sizes are named (``H_out = …``) when
    the inputs are known; nested floors left in the cost are named once (``R_1 = …``), innermost first; like terms
    are collected.  ``cost`` keeps the raw expressions."""

    layer: str
    inputs: tuple
    cost: Cost
    where: dict
    convention: Convention

    @classmethod
    def of(cls, layer, inputs: tuple, convention: Convention) -> Formula:
        cost, where = name_output_sizes(inputs, layer.cost(*inputs))
        return cls(layer.name, inputs, cost, where, convention)

    def entries(self) -> list[tuple[str, object]]:
        """``(name, value)`` in print order; a value is an expression, a shape (tuple) or a list of shapes."""
        from .export.formulas import readable

        c = self.cost
        fields = [("params", c.params)] + ([("buffers", c.buffers)] if c.buffers != 0 else [])
        fields += [("MACs", c.macs), (f"FLOPs[{self.convention.name}]", self.convention.count(c)),
                   ("reads", c.reads), ("writes", c.writes)]
        n = len(c.output_shape)
        taken = {str(s) for s in self.where} | {str(s) for shape in self.inputs for d in shape
                                                 for s in as_expr(d).free_symbols}
        shown, named = readable([*c.output_shape, *(v for _, v in fields)], c.output_shape, taken)
        if not self.where:  # a bare cost: its output sizes called as `symcost formula` calls them (H_out, not H_1)
            shown, named = _out_names(shown, named, n, taken)
        out: list[tuple[str, object]] = []
        if self.inputs:
            out.append(("input", list(self.inputs)))
        out.append(("output", tuple(shown[:n])))
        out += [(k, v) for k, v in self.where.items()] + list(named.items())
        out += [(name, v) for (name, _), v in zip(fields, shown[n:])]
        return out

    def flags(self, layer) -> dict[str, str]:
        """``{"b": "1 with bias, 0 without"}`` for each flag of ``layer`` left as a symbol that the formulas use."""
        return flag_meanings(layer, self.cost, self.convention)

    def as_dict(self, layer) -> dict:
        """Plain data, every expression as its string (``symcost formula --json``)."""
        c, conv = self.cost, self.convention
        return {"layer": self.layer, "convention": conv.name,
                "input_shapes": [[str(d) for d in s] for s in self.inputs],
                "output_shape": [str(d) for d in c.output_shape],
                "where": {str(k): str(v) for k, v in self.where.items()},
                "params": str(c.params), "buffers": str(c.buffers), "macs": str(c.macs),
                "flops": str(conv.count(c)), "reads": str(c.reads), "writes": str(c.writes),
                "ops": {k: str(v) for k, v in c.ops.items()}, "flags": self.flags(layer)}

    def __str__(self) -> str:
        from .export.formulas import text as expr_text

        def text(v) -> str:
            if isinstance(v, list):
                return ", ".join(map(text, v))
            if isinstance(v, tuple):
                return "(" + ", ".join(text(d) for d in v) + ")"
            return expr_text(v)

        from .render import pairs

        return pairs([(str(k), text(v)) for k, v in self.entries()])

    def _latex_rows(self, printer) -> list[tuple[str, str]]:
        def tex(v) -> str:
            if isinstance(v, list):
                return ", ".join(map(tex, v))
            if isinstance(v, tuple):
                return r"\left(" + ", ".join(tex(d) for d in v) + r"\right)"
            return printer._print(as_expr(v))

        def key(k) -> str:
            if isinstance(k, sympy.Basic):
                return printer._print(k)
            if k.startswith("FLOPs["):
                return rf"\text{{FLOPs}}_{{\text{{{k[6:-1]}}}}}"
            return rf"\text{{{k}}}"

        return [(key(k), tex(v)) for k, v in self.entries()]

    def _latex(self, printer) -> str:
        rows = self._latex_rows(printer)
        return "\\begin{align}\n" + " \\\\\n".join(f"{k} &= {v}" for k, v in rows) + "\n\\end{align}"

    def _repr_latex_(self) -> str:
        from .export.formulas import FormulaPrinter

        rows = self._latex_rows(FormulaPrinter({"mul_symbol": None}))
        return "$\\displaystyle \\begin{aligned}" + " \\\\ ".join(f"{k} &= {v}" for k, v in rows) \
            + "\\end{aligned}$"

    def _repr_html_(self) -> str:
        from .export.html import definition_table, mathml, mathml_shape

        def html(v) -> str:
            if isinstance(v, list):
                return ", ".join(map(html, v))
            if isinstance(v, tuple):
                return mathml_shape(v)
            return mathml(v)

        rows = [(str(k), html(v)) for k, v in self.entries()]
        return definition_table(rows) + f"<p>FLOPs: {self.convention.name} ({self.convention.summary})</p>"
