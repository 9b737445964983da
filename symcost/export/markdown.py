"""Markdown (GitHub) tables: the LaTeX table's columns and units, a plain-text caption, formulas as ``$…$``."""
from __future__ import annotations

import re

from ..render import scaled, scaled_total
from .common import formulas, numeric_columns, subject
from .formulas import latex as latex_expr
from .tables import Table

#: control characters, shown as escapes: a newline would end the table row
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMED = {"\n": r"\n", "\r": r"\r", "\t": r"\t"}


def _visible(text: str) -> str:
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), str(text))


#: marks that start markup anywhere in a line (code, emphasis, links, raw HTML, entities, a cell break), and ``_``
#: where it is not inside a word (``conv_transpose2d`` stays as it is)
_MARKUP = re.compile(r"[\\`*\[\]<>|&~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _cell(text: str) -> str:
    """Plain text in a table cell or caption: every mark that could start markup backslash-escaped (no emphasis,
    link, raw HTML or cell break can come from a name), control characters shown as escapes."""
    return _MARKUP.sub(lambda m: "\\" + m.group(), _visible(text))


def _code(text: str) -> str:
    """A name as a code span in a table cell: fenced by more backticks than any run inside it (a backtick in the
    name cannot end it), ``|`` escaped (GitHub splits cells before it reads code spans)."""
    text = _visible(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _math(expr) -> str:
    return "$" + latex_expr(expr).replace("|", r"\vert ") + "$"


def caption_text(table: Table) -> str:
    inp = "×".join(map(str, table.input_shape)) + " input"
    if table.values:
        inp += " at " + ", ".join(f"{k} = {v}" for k, v in table.values.items())
    if table.kind == "layers":
        text = f"Per-layer cost of {_cell(subject(table))} on a {inp}"
        if table.depth:
            text += f", layers grouped by module name to depth {table.depth}"
    else:
        text = f"Cost of {', '.join(_cell(r['name']) for r in table.rows)} on a {inp}"
    conv = table.convention
    text += f". MACs are multiply-accumulates; FLOPs follow the `{conv.name}` convention ({conv.summary})."
    if table.kind == "models":
        text += " Reads and writes count tensor elements (4 bytes each at fp32), each tensor once per call."
    return text


def render_markdown(table: Table, *, caption: str | None = None, exact: bool = False, digits: int = 2,
                    **_ignored) -> str:
    cols = numeric_columns(table, exact)
    row_f, total_f, where = formulas(table)
    conv = table.convention
    if caption is not None:
        text = caption.strip()
        if conv.name not in text:
            text += ("" if text.endswith((".", "!", "?")) else ".") + f" FLOPs: `{conv.name}` convention."
    else:
        text = caption_text(table)
    head = (["Layer", "Type", "Output"] if table.kind == "layers" else ["Model"]) + [c.header() for c in cols]
    align = (["---"] * (3 if table.kind == "layers" else 1)) + ["---:"] * len(cols)
    if table.symbolic:
        head.append("FLOPs formula")
        align.append("---")
    lines = [text, "", "| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for i, r in enumerate(table.rows):
        cells = [_code(r["name"])]
        if table.kind == "layers":
            cells += [_cell(r["layer"]), "×".join(map(str, r["output_shape"]))]
        cells += [scaled(r[c.key], c.unit, digits) for c in cols]
        if row_f is not None:
            cells.append(_math(row_f[i]))
        lines.append("| " + " | ".join(cells) + " |")
    if table.total is not None:
        cells = ["**Total**", "", ""] + [f"**{scaled_total(table.total[c.key], c.unit, digits)}**" for c in cols]
        if table.symbolic:
            cells.append(_math(total_f) if total_f is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    if where:
        lines += ["", "where " + ", ".join(f"{_math(k)} = {_math(v)}".replace("$ = $", " = ")
                                           for k, v in where.items())]
    if table.symbolic and table.assume_divisible:
        names = ", ".join(map(str, table.symbols))
        lines += ["", f"The formulas assume {names} divisible by {table.assume_divisible}."]
    return "\n".join(lines) + "\n"
