"""Machine-readable tables: exact integers, never scaled; formulas as sympy strings (no abbreviations)."""
from __future__ import annotations

import csv
import io
import json

import sympy

from .common import formulas
from .formulas import latex as latex_expr
from .tables import Table

LAYER_FIELDS = ("name", "layer", "calls", "output_shape", "params", "macs", "flops", "reads", "writes")
MODEL_FIELDS = ("name", "target", "params", "buffers", "macs", "flops", "reads", "writes")


def _plain(value):
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return value


def render_csv(table: Table) -> str:
    fields = list(LAYER_FIELDS if table.kind == "layers" else MODEL_FIELDS)
    if table.symbolic:
        fields.append("flops_formula")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for r in table.rows:
        row = {**r, "flops_formula": sympy.sstr(r["formula"]) if table.symbolic else None}
        writer.writerow([_plain(row[f]) for f in fields])
    return buf.getvalue()


def to_dict(table: Table) -> dict:
    fields = LAYER_FIELDS if table.kind == "layers" else MODEL_FIELDS
    out = {
        "kind": table.kind,
        "targets": table.targets,
        "input_shape": [d if isinstance(d, int) else str(d) for d in table.input_shape],
        "values": table.values,
        "convention": table.convention.name,
        "convention_summary": table.convention.summary,
        "units": {"macs": "multiply-accumulates", "flops": f"operations under '{table.convention.name}'",
                  "reads": "elements", "writes": "elements"},
    }
    if table.kind == "layers":
        out["depth"] = table.depth
    rows = []
    abbreviated, total_f, where = formulas(table)
    for i, r in enumerate(table.rows):
        row = {f: list(r[f]) if isinstance(r[f], tuple) else r[f] for f in fields}
        if table.symbolic:
            row["flops_formula"] = sympy.sstr(r["formula"])
            row["flops_formula_latex"] = latex_expr(abbreviated[i])
        rows.append(row)
    out["rows"] = rows
    if table.total is not None:
        out["total"] = {k: v for k, v in table.total.items() if k != "formula"}
        if table.symbolic:
            out["total"]["flops_formula"] = sympy.sstr(table.total["formula"])
            out["total"]["flops_formula_latex"] = latex_expr(total_f)
    if table.symbolic:
        out["where"] = {str(k): sympy.sstr(v) for k, v in where.items()}
        out["where_latex"] = {latex_expr(k): latex_expr(v) for k, v in where.items()}
        if table.assume_divisible:
            out["assumed_divisible_by"] = table.assume_divisible
    out["notes"] = table.notes
    return out


def render_json(table: Table) -> str:
    return json.dumps(to_dict(table), indent=2) + "\n"
