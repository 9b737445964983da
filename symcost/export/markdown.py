"""Markdown (GitHub) tables: the LaTeX table's columns and units, a plain-text caption, formulas as ``$…$``."""
from __future__ import annotations

from ..render import scaled
from .common import formulas, numeric_columns, subject
from .formulas import latex as latex_expr
from .tables import Table


def _cell(text: str) -> str:
    return str(text).replace("|", r"\|")


def _math(expr) -> str:
    return "$" + latex_expr(expr).replace("|", r"\vert ") + "$"


def caption_text(table: Table) -> str:
    inp = "×".join(map(str, table.input_shape)) + " input"
    if table.values:
        inp += " at " + ", ".join(f"{k} = {v}" for k, v in table.values.items())
    if table.kind == "layers":
        text = f"Per-layer cost of {subject(table)} on a {inp}"
        if table.depth:
            text += f", layers grouped by module name to depth {table.depth}"
    else:
        text = f"Cost of {', '.join(r['name'] for r in table.rows)} on a {inp}"
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
        cells = [f"`{_cell(r['name'])}`"]
        if table.kind == "layers":
            cells += [_cell(r["layer"]), "×".join(map(str, r["output_shape"]))]
        cells += [scaled(r[c.key], c.unit, digits) for c in cols]
        if row_f is not None:
            cells.append(_math(row_f[i]))
        lines.append("| " + " | ".join(cells) + " |")
    if table.total is not None:
        cells = ["**Total**", "", ""] + [f"**{scaled(table.total[c.key], c.unit, digits)}**" for c in cols]
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
