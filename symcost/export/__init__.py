"""Tables of model costs for papers: the data (``tables``) and its renderings (``latex``, ``markdown``,
``csv_json``).  Nothing here imports torch; a table is built from ``ModelCost`` objects.

``tables.layer_table`` / ``tables.model_table`` build a ``Table`` (exact integers, optional sympy formulas);
``render(table, fmt, **options)`` turns it into text.
"""
from __future__ import annotations

from .tables import Table, layer_table, model_table

FORMATS = ("latex", "markdown", "csv", "json")


def render(table: Table, fmt: str, **options) -> str:
    if fmt == "latex":
        from .latex import render_latex

        return render_latex(table, **options)
    if fmt == "markdown":
        from .markdown import render_markdown

        return render_markdown(table, **options)
    if fmt == "csv":
        from .csv_json import render_csv

        return render_csv(table)
    if fmt == "json":
        from .csv_json import render_json

        return render_json(table)
    raise ValueError(f"unknown table format {fmt!r}; choose one of: {', '.join(FORMATS)}")


__all__ = ["FORMATS", "Table", "layer_table", "model_table", "render"]
