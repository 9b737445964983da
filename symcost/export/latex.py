"""LaTeX tables: booktabs rules, one unit per column in its header, the convention named in the caption.

By default a ``table`` environment to ``\\input`` (a ``longtable`` when the rows would not fit a page); with
``standalone`` a whole document that compiles with pdflatex.  Packages: booktabs; longtable for long tables;
amsmath with formulas.  Names are escaped (``layer1.0:add_`` -> ``layer1.0:add\\_``).
"""
from __future__ import annotations

import re

import sympy

from ..render import scaled, scaled_total
from .common import LONG_TABLE_ROWS, formulas, numeric_columns, subject
from .formulas import latex as latex_expr
from .tables import Table

_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$", ">": r"$>$",
    "|": r"$|$",
}


def _char(ch: str) -> str:
    if ch in _SPECIALS:
        return _SPECIALS[ch]
    if " " <= ch <= "~":
        return ch
    # pdflatex has no glyph for most of Unicode (CJK, emoji) and a control character (a blank line) would end the
    # paragraph mid-cell: the code point is written instead, which every engine prints
    return f"[U+{ord(ch):04X}]"


def _comment(text: str) -> str:
    """Text for a ``%`` comment line: only what would end the line (or not print) is replaced."""
    return "".join(ch if " " <= ch <= "~" else f"[U+{ord(ch):04X}]" for ch in str(text))


def escape(text: str) -> str:
    """Plain text -> LaTeX text that prints it verbatim (printable ASCII as itself, anything else as its code
    point, ``[U+4E2D]``), with any engine."""
    return "".join(map(_char, str(text)))


#: what a ``\\label`` key may hold: anything else (a brace, a backslash, a space) would end the key or the command
_LABEL = re.compile(r"[A-Za-z0-9:._\-/+]+")


def check_label(label: str) -> str:
    """``label`` if it is a usable ``\\label`` key; else ``UsageError`` naming the first character that is not."""
    from ..errors import UsageError

    if not _LABEL.fullmatch(label):
        bad = next((ch for ch in label if not _LABEL.fullmatch(ch)), "")
        what = f"{bad!r}" if bad else "nothing"
        raise UsageError(f"--label {label!r}: a LaTeX label holds letters, digits and : . _ - / + only, not {what}")
    return label


#: commands whose brace arguments are keys, not text: copied as they are (``\ref{sec:my_label}``)
_KEY_COMMANDS = {"ref", "eqref", "pageref", "cref", "Cref", "autoref", "label", "cite", "citep", "citet", "url",
                 "href", "input", "includegraphics"}


def escape_caption(text: str) -> str:
    """A caption given on the command line, made safe for LaTeX while staying LaTeX: ``_ % & #`` (and ``^``)
    in plain text are escaped, so ``mobilenet_v2, 50%`` works as typed; math (``$R_1$``), commands, the keys of
    references (``\\ref{sec:my_label}``), already escaped characters (``\\_``) and ``~`` are kept."""
    text = " ".join(text.split())   # one paragraph: a blank line would end the caption's argument
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


def check_braces(text: str, option: str) -> None:
    """``UsageError`` unless the braces of ``text`` (LaTeX, ``\\{`` and ``\\}`` escaped) pair up: one too many
    would close the command around it and break the document."""
    from ..errors import UsageError

    depth = 0
    for m in re.finditer(r"\\.|[{}]", text):
        depth += {"{": 1, "}": -1}.get(m.group(), 0)
        if depth < 0:
            break
    if depth:
        raise UsageError(f"{option} {text!r}: its braces do not pair up (write \\{{ or \\}} for a brace itself)")


def breakable(name: str) -> str:
    """A module name escaped for ``\\texttt``, with line breaks allowed after its dots, colons, slashes and
    underscores (``layer1.0.downsample.0`` wraps in a narrow column instead of running over)."""
    out = escape(name)
    for mark in (".", ":", "/", r"\_"):
        out = out.replace(mark, mark + "\\allowbreak ")
    return out


def _number(value: int, col, digits: int, total: bool = False) -> str:
    text = (scaled_total if total else scaled)(value, col.unit, digits)
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
        short = rf"Per-layer cost of \texttt{{{breakable(subject(table))}}}"
        text = short + f" on a {inp}"
        if table.depth:
            text += f", layers grouped by module name to depth {table.depth}"
    else:
        names = ", ".join(rf"\texttt{{{breakable(subject_name)}}}" for subject_name in (r["name"] for r in table.rows))
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
    where_shown = "The last column" if table.kind == "models" else "The line under each row"
    text = f" {where_shown} is the FLOPs formula in {syms}"
    if where:
        defs = "; ".join(f"${latex_expr(k)} = {latex_expr(v)}$" for k, v in where.items())
        text += f", where {defs}"
    text += "."
    if table.assume_divisible:
        text += f" The formulas assume {syms} divisible by {table.assume_divisible}."
    return text


def _caption(table: Table, caption: str | None, where) -> tuple[str, str]:
    """(short, full) caption: the user's (escaped, its convention named if it does not say it) or the default."""
    short, text = default_caption(table)
    conv = table.convention
    if caption is not None:
        text = escape_caption(caption.strip())
        check_braces(text, "--caption")
        short = text
        if conv.name not in text:  # the numbers mean nothing without their convention
            text += ("" if text.endswith((".", "!", "?")) else ".")
            text += rf" FLOPs: \texttt{{{escape(conv.name)}}} convention."
    else:
        text += " " + convention_sentence(table)
    return short, text + formula_sentence(table, where)


def _body(table: Table, cols, row_f, total_f, ncols: int, wide: str, digits: int) -> list[str]:
    """The table's rows, then its total: a per-layer table's formulas each on a line of its own under its row."""
    layers = table.kind == "layers"
    body = []
    for i, r in enumerate(table.rows):
        cells = [rf"\texttt{{{breakable(r['name']) if layers else escape(r['name'])}}}"]
        if layers:
            cells += [escape(r["layer"]), _shape(r["output_shape"])]
        cells += [_number(r[c.key], c, digits) for c in cols]
        if row_f is not None and not layers:
            cells.append(f"${latex_expr(row_f[i])}$")
        body.append(" & ".join(cells) + r" \\")
        if row_f is not None and layers:
            body.append(rf"\multicolumn{{{ncols}}}{{{wide}}}{{\quad FLOPs $= {latex_expr(row_f[i])}$}} \\")
    if table.total is not None:
        cells = ["Total", "", ""] + [_number(table.total[c.key], c, digits, total=True) for c in cols]
        body.append(r"\midrule")
        body.append(" & ".join(cells) + r" \\")
        if total_f is not None:
            body.append(rf"\multicolumn{{{ncols}}}{{{wide}}}{{Total FLOPs $= {latex_expr(total_f)}$}} \\")
    return body


def render_latex(table: Table, *, caption: str | None = None, label: str | None = None, standalone: bool = False,
                 exact: bool = False, digits: int = 2, environment: str = "auto") -> str:
    cols = numeric_columns(table, exact)
    row_f, total_f, where = formulas(table)
    short, text = _caption(table, caption, where)
    conv = table.convention
    label = check_label(label) if label is not None else default_label(table)

    long = environment == "longtable" or (environment == "auto" and len(table.rows) >= LONG_TABLE_ROWS)
    # Fitting the line width (a test compiles every kind and reads the log for overfull boxes):
    # per-layer tables give the name column what is left (tabularx X; xltabular, a longtable with X columns, for
    # long ones) and break names at their dots; formulas wrap at + signs in an X column; a comparison without
    # formulas keeps its natural widths and is scaled down only when wider than the line (adjustbox).
    ragged = r">{\raggedright\arraybackslash}"
    wide = ragged + r"p{\dimexpr\linewidth-2\tabcolsep}"   # a row of its own, wrapping at + signs
    layers = table.kind == "layers"
    if layers:
        head = ["Layer", "Type", "Output"]
        spec = ragged + "X" + "ll"
    else:
        head = ["Model"]
        spec = "l"
    head += [c.title for c in cols]
    spec += "r" * len(cols)
    # a comparison's formulas get a column; a per-layer table has no room for one: each formula goes on a
    # line of its own under its row
    if table.symbolic and not layers:
        head.append("FLOPs formula")
        spec += ragged + "X"
    xcols = layers or table.symbolic
    ncols = len(head)

    body = _body(table, cols, row_f, total_f, ncols, wide, digits)
    # units on a second header line: a column is as wide as its numbers, not as "Params (K)"
    units = [""] * (3 if layers else 1) + [f"({c.prefix})" if c.prefix else "" for c in cols]
    units += [""] * (ncols - len(units))
    header = " & ".join(head) + r" \\" + ("\n" + " & ".join(units) + r" \\" if any(units) else "")

    packages = (["booktabs"] + (["xltabular"] if long and xcols else ["longtable"] if long else [])
                + (["array"] if xcols else []) + (["tabularx"] if xcols and not long else [])
                + (["adjustbox"] if not xcols and not long else []) + (["amsmath"] if table.symbolic else []))
    lines = [f"% symcost table: {_comment(', '.join(table.targets))}; input {'x'.join(map(str, table.input_shape))}"
             + (" at " + ", ".join(f"{k}={v}" for k, v in table.values.items()) if table.values else "")
             + f"; convention {conv.name}",
             "% needs " + ", ".join(rf"\usepackage{{{p}}}" for p in packages)]
    size = r"\footnotesize" if xcols else r"\small"
    tight = [r"\setlength{\tabcolsep}{4pt}"] if xcols or long else []
    cap = rf"\caption[{{{short}}}]{{{text}}}"
    if long:
        env = "xltabular" if xcols else "longtable"
        width = r"{\linewidth}" if xcols else ""
        # a new page when fewer than about 8 lines are left (not a caption and two rows at a page's foot), and a
        # caption as wide as a float's
        lines += [r"\par\vspace{0pt plus 8\baselineskip}\penalty-200\vspace{0pt plus -8\baselineskip}",
                  "{" + size, *tight, r"\setlength{\LTcapwidth}{\linewidth}", rf"\begin{{{env}}}{width}{{{spec}}}",
                  cap + rf"\label{{{label}}} \\",
                  r"\toprule", header, r"\midrule", r"\endfirsthead",
                  rf"\multicolumn{{{ncols}}}{{l}}{{\emph{{\tablename~\thetable, continued}}}} \\",
                  r"\toprule", header, r"\midrule", r"\endhead",
                  r"\midrule", rf"\multicolumn{{{ncols}}}{{r}}{{\emph{{continued on the next page}}}} \\",
                  r"\endfoot", r"\bottomrule", r"\endlastfoot",
                  *body, rf"\end{{{env}}}", "}"]
    else:
        if xcols:
            begin, end = rf"\begin{{tabularx}}{{\linewidth}}{{{spec}}}", r"\end{tabularx}"
        else:
            begin = r"\begin{adjustbox}{max width=\linewidth}" + "\n" + rf"\begin{{tabular}}{{{spec}}}"
            end = r"\end{tabular}" + "\n" + r"\end{adjustbox}"
        lines += [r"\begin{table}[htbp]", r"\centering", size, *tight, cap, rf"\label{{{label}}}",
                  begin, r"\toprule", header, r"\midrule", *body, r"\bottomrule", end, r"\end{table}"]
    out = "\n".join(lines) + "\n"
    if standalone:
        preamble = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}",
                    *(rf"\usepackage{{{p}}}" for p in packages), r"\begin{document}"]
        out = "\n".join(preamble) + "\n" + out + r"\end{document}" + "\n"
    return out
