"""HTML for notebooks: formulas as MathML (which browsers and Jupyter render natively, no script, no network) and
a model's per-layer table.  Used by the ``_repr_html_`` hooks of ``Cost``, ``Formula`` and ``ModelCost``."""
from __future__ import annotations

from html import escape

import sympy
from sympy.printing.mathml import MathMLPresentationPrinter

from ..exact import as_expr


class _MathML(MathMLPresentationPrinter):
    """sympy's presentation MathML, a floor's argument written as one fraction (as the LaTeX printer does)."""

    def _print_floor(self, e):
        return self._bracket(e, "\u230a", "\u230b")

    def _print_ceiling(self, e):
        return self._bracket(e, "\u2308", "\u2309")

    def _print_Piecewise(self, e):
        """A brace over one line per piece, ``value  if condition`` (a formula in pieces: ``tracing.pieces``)."""
        def element(tag, *children, text=None):
            node = self.dom.createElement(tag)
            if text is not None:
                node.appendChild(self.dom.createTextNode(text))
            for child in children:
                node.appendChild(child)
            return node

        lines = [element("mtr", element("mtd", self._print(value)),
                         element("mtd", element("mtext", text="otherwise") if cond is sympy.true else
                                 element("mrow", element("mtext", text="if\u00a0"), self._print(cond))))
                 for value, cond in e.args]
        table = element("mtable", *lines)
        table.setAttribute("columnalign", "left")
        return element("mrow", element("mo", text="{"), table)

    def _bracket(self, e, left, right):
        mrow = self.dom.createElement("mrow")
        for text, node in ((left, None), (None, sympy.together(e.args[0])), (right, None)):
            if node is None:
                mo = self.dom.createElement("mo")
                mo.appendChild(self.dom.createTextNode(text))
                mrow.appendChild(mo)
            else:
                mrow.appendChild(self._print(node))
        return mrow


def mathml(expr) -> str:
    """One inline ``<math>`` element."""
    body = _MathML({"mul_symbol": None}).doprint(as_expr(expr))
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML">{body}</math>'


def mathml_shape(shape) -> str:
    """``(N, C, H_1, W_1)`` as one ``<math>`` element."""
    printer = _MathML({"mul_symbol": None})
    parts = '<mo>,</mo>'.join(printer.doprint(as_expr(d)) for d in shape)
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML"><mo>(</mo>{parts}<mo>)</mo></math>'


def definition_table(entries: list[tuple[str, str]]) -> str:
    """Two columns, a name and its (already HTML) value."""
    rows = "".join(f'<tr><th style="text-align:left">{escape(k)}</th><td style="text-align:left">{v}</td></tr>'
                   for k, v in entries)
    return f'<table class="symcost">{rows}</table>'


def _cell(value) -> str:
    """A number with grouped digits, or a formula as MathML."""
    value = as_expr(value) if not isinstance(value, int) else value
    if isinstance(value, int) or value.is_Integer:
        return f"{int(value):,}"
    return mathml(value)


def model_html(mc, convention: str = "flops", max_rows: int = 400) -> str:
    """A ``ModelCost`` as an HTML table: one row per layer call (output shape, params, MACs, FLOPs under
    ``convention``), the totals, and the named floors (``R_1 = …``) the formulas use."""
    from ..conventions import as_convention
    from .formulas import readable

    conv = as_convention(convention)
    rows = mc.rows
    total = mc.total(conv)
    cells = []
    for r in rows:
        cells.append([*r.cost.output_shape, r.cost.params, r.cost.macs, conv.count_row(r)])
    flat = [e for c in cells for e in c] + [total["params"], total["macs"], total["flops"]]
    sizes = [d for r in rows for d in r.cost.output_shape] + list(getattr(mc, "domain", ()))
    shown, where = readable(flat, sizes)
    head = ("<tr><th>layer</th><th>type</th><th>output</th><th>params</th><th>MACs</th>"
            f"<th>FLOPs [{escape(conv.name)}]</th></tr>")
    body, i = [], 0
    for r, c in zip(rows, cells):
        n = len(c) - 3
        shape, (params, macs, flops) = shown[i:i + n], shown[i + n:i + n + 3]
        i += len(c)
        if len(body) < max_rows:
            body.append(f"<tr><td><code>{escape(r.label)}</code></td><td>{escape(r.layer)}</td>"
                        f"<td>{mathml_shape(shape)}</td><td>{_cell(params)}</td><td>{_cell(macs)}</td>"
                        f"<td>{_cell(flops)}</td></tr>")
    if len(rows) > max_rows:
        body.append(f'<tr><td colspan="6">… {len(rows) - max_rows} more layer calls</td></tr>')
    tp, tm, tf = shown[i:i + 3]
    body.append(f"<tr><th>total</th><td></td><td></td><th>{_cell(tp)}</th><th>{_cell(tm)}</th>"
                f"<th>{_cell(tf)}</th></tr>")
    # a short caption: a table is at least as wide as its caption's line, and the convention's summary is long
    caption = f"{escape(mc.target)} on {escape('x'.join(map(str, mc.input_shape)))}; FLOPs: {escape(conv.name)}"
    out = [f'<table class="symcost"><caption>{caption}</caption><thead>{head}</thead>'
           f'<tbody>{"".join(body)}</tbody></table>',
           f"<p>FLOPs [{escape(conv.name)}]: {escape(conv.summary)}</p>"]
    if where:
        out.append("<p>where " + ", ".join(f"{mathml(sympy.Eq(k, v, evaluate=False))}" for k, v in where.items())
                   + "</p>")
    if mc.uncovered:
        out.append("<p><b>Uncovered</b> (not costed, not counted): "
                   + escape(", ".join(f"{k} x{v}" for k, v in mc.uncovered.items())) + "</p>")
    from ..conventions import CONVENTIONS
    from ..conventions import notes_for

    out += [f"<p>note: {escape(n)}</p>" for n in notes_for(mc.notes, conv.name, CONVENTIONS)]
    return "\n".join(out)
