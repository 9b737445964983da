"""What every rendering of a table shares: its columns, their units, the caption's facts."""
from __future__ import annotations

from dataclasses import dataclass

from ..render import choose_unit
from .formulas import readable
from .tables import Table, display_name

#: numeric columns per table kind: (key, title)
NUMERIC = {
    "layers": (("params", "Params"), ("macs", "MACs"), ("flops", "FLOPs")),
    "models": (("params", "Params"), ("macs", "MACs"), ("flops", "FLOPs"), ("reads", "Reads"), ("writes", "Writes")),
}

#: the layer table has this many rows or more: LaTeX uses longtable (a float cannot break across pages)
LONG_TABLE_ROWS = 40


@dataclass
class Column:
    key: str
    title: str
    unit: int
    prefix: str

    def header(self) -> str:
        return f"{self.title} ({self.prefix})" if self.prefix else self.title


def numeric_columns(table: Table, exact: bool = False) -> list[Column]:
    cols = []
    for key, title in NUMERIC[table.kind]:
        unit, prefix = (1, "") if exact else choose_unit([r[key] for r in table.rows])
        cols.append(Column(key, title, unit, prefix))
    return cols


def formulas(table: Table):
    """(row formulas, total formula or None, where) with floors named, or (None, None, {})."""
    if not table.symbolic:
        return None, None, {}
    exprs = [r["formula"] for r in table.rows]
    has_total = table.total is not None and "formula" in table.total
    if has_total:
        exprs.append(table.total["formula"])
    out, where = readable(exprs, table.sizes)
    if has_total:
        return out[:-1], out[-1], where
    return out, None, where


def shape_text(shape, times: str = "x") -> str:
    return times.join(str(d) for d in shape)


def subject(table: Table) -> str:
    if table.kind == "layers":
        return display_name(table.targets[0])
    return f"{len(table.targets)} models"
