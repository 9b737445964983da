"""Tables of model costs for papers: the data (``tables``) and its renderings (``latex``, ``markdown``,
``csv_json``).  Nothing here imports torch; a table is built from ``ModelCost`` objects.

``tables.layer_table`` / ``tables.model_table`` build a ``Table`` (exact integers, optional sympy formulas);
``render(table, fmt, **options)`` turns it into text.
"""
from __future__ import annotations

from .formats import FORMATS, render
from .tables import Table, layer_table, model_table

__all__ = ["FORMATS", "Table", "layer_table", "model_table", "render"]
