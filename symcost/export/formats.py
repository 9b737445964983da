"""A ``Table`` as text in one of the formats: ``render(table, fmt, **options)``."""
from __future__ import annotations

from .tables import Table

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
