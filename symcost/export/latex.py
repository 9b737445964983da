"""LaTeX tables: booktabs rules, one unit per column in its header, the convention named in the caption.

By default a ``table`` environment to ``\\input`` (a ``longtable`` when the rows would not fit a page); with
``standalone`` a whole document that compiles with pdflatex.  Packages: booktabs; longtable for long tables;
amsmath with formulas.  Names are escaped (``layer1.0:add_`` -> ``layer1.0:add\\_``).
"""
from __future__ import annotations

import re

import sympy

from .common import LONG_TABLE_ROWS, formulas, numeric_columns, subject
from .formulas import latex as latex_expr
from .numbers import scaled
from .tables import Table

_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$", ">": r"$>$",
    "|": r"$|$",
}


def escape(text: str) -> str:
    """Plain text -> LaTeX text that prints it verbatim."""
    return "".join(_SPECIALS.get(ch, ch) for ch in str(text))


#: commands whose brace arguments are keys, not text: copied as they are (``\ref{sec:my_label}``)
_KEY_COMMANDS = {"ref", "eqref", "pageref", "cref", "Cref", "autoref", "label", "cite", "citep", "citet", "url",
                 "href", "input", "includegraphics"}


def escape_caption(text: str) -> str:
    """A caption given on the command line, made safe for LaTeX while staying LaTeX: ``_ % & #`` (and ``^``)
    in plain text are escaped, so ``mobilenet_v2, 50%`` works as typed; math (``$R_1$``), commands, the keys of
    references (``\\ref{sec:my_label}``), already escaped characters (``\\_``) and ``~`` are kept."""
    out, i, math = [], 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            j = i + 1
            while j < len(text) and text[j].isalpha():
                j += 1
            name = text[i + 1:j]
            j = max(j, i + 2)               # a control symbol (\_, \%) is two characters
            while name in _KEY_COMMANDS and j < len(text) and text[j] == "{":   # keys kept, braces balanced
                depth, k = 0, j
                while k < len(text):
                    depth += {"{": 1, "}": -1}.get(text[k], 0)
                    k += 1
                    if depth == 0:
                        break
                j = k
            out.append(text[i:j])
            i = j
            continue
        if ch == "$":
            math = not math
        elif not math and ch in "_%&#":
            ch = "\\" + ch
        elif not math and ch == "^":
            ch = r"\textasciicircum{}"
        out.append(ch)
        i += 1
    return "".join(out)


def _number(value: int, col, digits: int) -> str:
    text = scaled(value, col.unit, digits)
    return text.replace("<", "$<$")


def _shape(shape) -> str:
    return "$" + r"\times ".join(latex_expr(d) if isinstance(d, sympy.Basic) else str(d) for d in shape) + "$"


def _values(values: dict) -> str:
    return ", ".join(f"${latex_expr(sympy.Symbol(k))} = {v}$" for k, v in values.items())


def default_label(table: Table) -> str:
    base = subject(table) if table.kind == "layers" else "model-comparison"
    base = re.sub(r"[^A-Za-z0-9:.\-]+", "-", base.rsplit("/", 1)[-1]).strip("-") or "symcost"
    return f"tab:{base}" + (f"-depth{table.depth}" if table.depth else "")


def default_caption(table: Table) -> tuple[str, str]:
    """(short caption for the list of tables, full caption)."""
    inp = _shape(table.input_shape) + " input"
    if table.values:
        inp += " at " + _values(table.values)
    if table.kind == "layers":
        short = rf"Per-layer cost of \texttt{{{escape(subject(table))}}}"
        text = short + f" on a {inp}"
        if table.depth:
            text += f", layers grouped by module name to depth {table.depth}"
    else:
        names = ", ".join(rf"\texttt{{{escape(subject_name)}}}" for subject_name in (r["name"] for r in table.rows))
        short = "Cost of " + names
        text = short + f" on a {inp}"
    return short, text + "."


def convention_sentence(table: Table) -> str:
    conv = table.convention
    text = (rf"MACs are multiply-accumulates; FLOPs follow the \texttt{{{escape(conv.name)}}} convention "
            f"({escape(conv.summary)}).")
    if table.kind == "models":
        text += " Reads and writes count tensor elements (4 bytes each at fp32), each tensor once per call."
    return text


def formula_sentence(table: Table, where: dict) -> str:
    if not table.symbolic:
        return ""
    syms = ", ".join(f"${latex_expr(s)}$" for s in table.symbols)
    text = f" The last column is the FLOPs formula in {syms}"
    if where:
        defs = "; ".join(f"${latex_expr(k)} = {latex_expr(v)}$" for k, v in where.items())
        text += f", where {defs}"
    text += "."
    if table.assume_divisible:
        text += f" The formulas assume {syms} divisible by {table.assume_divisible}."
    return text


def render_latex(table: Table, *, caption: str | None = None, label: str | None = None, standalone: bool = False,
                 exact: bool = False, digits: int = 2, environment: str = "auto") -> str:
    cols = numeric_columns(table, exact)
    row_f, total_f, where = formulas(table)
    short, text = default_caption(table)
    conv = table.convention
    if caption is not None:
        text = escape_caption(caption.strip())
        short = text
        if conv.name not in text:  # the numbers mean nothing without their convention
            text += ("" if text.endswith((".", "!", "?")) else ".")
            text += rf" FLOPs: \texttt{{{escape(conv.name)}}} convention."
    else:
        text += " " + convention_sentence(table)
    text += formula_sentence(table, where)
    label = label if label is not None else default_label(table)

    if table.kind == "layers":
        head = ["Layer", "Type", "Output"]
        spec = "lll"
    else:
        head = ["Model"]
        spec = "l"
    head += [c.header() for c in cols]
    spec += "r" * len(cols)
    long = environment == "longtable" or (environment == "auto" and len(table.rows) >= LONG_TABLE_ROWS)
    # formulas wrap at their + signs in a tabularx X column (a float) so the table keeps to the line width
    wrap = table.symbolic and not long
    if table.symbolic:
        head.append("FLOPs formula")
        spec += r">{\raggedright\arraybackslash}X" if wrap else "l"
    ncols = len(head)

    body = []
    for i, r in enumerate(table.rows):
        cells = [rf"\texttt{{{escape(r['name'])}}}"]
        if table.kind == "layers":
            cells += [escape(r["layer"]), _shape(r["output_shape"])]
        cells += [_number(r[c.key], c, digits) for c in cols]
        if row_f is not None:
            cells.append(f"${latex_expr(row_f[i])}$")
        body.append(" & ".join(cells) + r" \\")
    if table.total is not None:
        cells = ["Total", "", ""] + [_number(table.total[c.key], c, digits) for c in cols]
        if table.symbolic:
            cells.append("")
        body.append(r"\midrule")
        body.append(" & ".join(cells) + r" \\")
        if total_f is not None:
            wide = r">{\raggedright\arraybackslash}p{\dimexpr\linewidth-2\tabcolsep}"   # wraps at + signs
            body.append(rf"\multicolumn{{{ncols}}}{{{wide}}}{{Total FLOPs $= {latex_expr(total_f)}$}} \\")
    header = " & ".join(head) + r" \\"

    packages = (["booktabs"] + (["longtable"] if long else []) + (["array"] if table.symbolic else [])
                + (["tabularx"] if wrap else []) + (["amsmath"] if table.symbolic else []))
    lines = [f"% symcost table: {', '.join(table.targets)}; input {'x'.join(map(str, table.input_shape))}"
             + (" at " + ", ".join(f"{k}={v}" for k, v in table.values.items()) if table.values else "")
             + f"; convention {conv.name}",
             "% needs " + ", ".join(rf"\usepackage{{{p}}}" for p in packages)]
    tight = [r"\setlength{\tabcolsep}{4pt}"] if table.symbolic else []   # room for the formula column
    cap = rf"\caption[{{{short}}}]{{{text}}}"
    if long:
        lines += [r"{\small", *tight, rf"\begin{{longtable}}{{{spec}}}",
                  cap + rf"\label{{{label}}} \\",
                  r"\toprule", header, r"\midrule", r"\endfirsthead",
                  rf"\multicolumn{{{ncols}}}{{l}}{{\emph{{\tablename~\thetable, continued}}}} \\",
                  r"\toprule", header, r"\midrule", r"\endhead",
                  r"\midrule", rf"\multicolumn{{{ncols}}}{{r}}{{\emph{{continued on the next page}}}} \\",
                  r"\endfoot", r"\bottomrule", r"\endlastfoot",
                  *body, r"\end{longtable}", "}"]
    else:
        lines += [r"\begin{table}[htbp]", r"\centering", r"\small", *tight, cap, rf"\label{{{label}}}",
                  (rf"\begin{{tabularx}}{{\linewidth}}{{{spec}}}" if wrap else rf"\begin{{tabular}}{{{spec}}}"),
                  r"\toprule", header, r"\midrule", *body, r"\bottomrule",
                  r"\end{tabularx}" if wrap else r"\end{tabular}", r"\end{table}"]
    out = "\n".join(lines) + "\n"
    if standalone:
        preamble = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}",
                    *(rf"\usepackage{{{p}}}" for p in packages), r"\begin{document}"]
        out = "\n".join(preamble) + "\n" + out + r"\end{document}" + "\n"
    return out
