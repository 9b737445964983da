"""The data of a cost table, independent of how it is rendered.

Two kinds of table:

* ``layer_table``: one model, one row per layer call (``Row`` of ``ModelCost``), or, with ``depth``, one row per
  module prefix of ``depth`` components (``layer1.0.conv1`` at depth 1 is ``layer1``; a functional call
  ``layer1.0:add_`` belongs to its module ``layer1.0``; a call outside every module, ``(model):flatten``, stays a
  row of its own), the rows of a group summed.
* ``model_table``: several models, one row each (their totals).

Every number is an exact ``int``: the derivation's expression evaluated at the input's values.  With
``symbolic=True`` each row also carries its FLOPs formula (a sympy expression in the input's symbols).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..conventions import Convention
from ..cost import as_expr, to_int

METRICS = ("params", "macs", "flops", "reads", "writes")


@dataclass
class Table:
    kind: str                      # "layers" or "models"
    convention: Convention
    input_shape: tuple             # as given: ints and sympy symbols
    values: dict                   # symbol name -> int (empty for a concrete input)
    targets: list                  # target specs, in order
    rows: list                     # dicts: see layer_table / model_table
    total: dict | None = None      # per-layer tables: the model's totals
    depth: int | None = None
    symbolic: bool = False         # rows carry "formula" (FLOPs in the input symbols)
    assume_divisible: int | None = None
    notes: list = field(default_factory=list)
    #: the models' symbolic tensor sizes, so the formulas' abbreviations name sizes (see formulas.abbreviate)
    sizes: list = field(default_factory=list)

    @property
    def concrete_shape(self) -> tuple:
        subs = {sympy.Symbol(k, integer=True, positive=True): v for k, v in self.values.items()}
        return tuple(int(as_expr(d).xreplace(subs)) for d in self.input_shape)

    @property
    def symbols(self) -> list:
        return sorted({s for d in self.input_shape if isinstance(d, sympy.Basic) for s in d.free_symbols}, key=str)


def display_name(target: str) -> str:
    """``torchvision:resnet50`` -> ``resnet50``; a file target keeps its ``file.py:callable`` form."""
    from ..targets import Target

    spec = Target.of(target)
    return spec.name if spec.is_torchvision else spec.spec


def _metrics(row, conv) -> dict:
    c = row.cost
    return {"params": c.params, "macs": c.macs, "flops": conv.count_row(row), "reads": c.reads, "writes": c.writes}


class _Evaluator:
    def __init__(self, symbols, values: dict):
        self.subs = {s: sympy.Integer(values[str(s)]) for s in symbols}

    def __call__(self, expr, what: str) -> int:
        return to_int(as_expr(expr).xreplace(self.subs), what)


def _sizes(mcs) -> list:
    seen: dict = {}
    for mc in mcs:
        for r in mc.rows:
            for d in r.cost.output_shape:
                if isinstance(d, sympy.Basic) and d.free_symbols:
                    seen.setdefault(d, None)
        for d in getattr(mc, "domain", ()):
            if isinstance(d, sympy.Basic) and d.free_symbols:
                seen.setdefault(d, None)
    return list(seen)


def group_key(name: str, depth: int | None) -> str:
    """The table row a layer call belongs to at ``depth`` (None: the call itself)."""
    if depth is None:
        return name
    module = name.split(":", 1)[0]
    if module == "(model)":       # a call outside every module: nothing to group it with
        return name
    parts = module.split(".")
    return ".".join(parts[:depth])


def layer_table(mc, target: str, conv: Convention, values: dict | None = None, *, depth: int | None = None,
                symbolic: bool = False, assume_divisible: int | None = None, module_types: dict | None = None,
                input_shape: tuple | None = None) -> Table:
    """One model's per-layer (or per-group) table.

    Rows: ``name``, ``layer`` (catalog layer, or the module's class for a group of several calls, from
    ``module_types``), ``calls``, ``output_shape`` (ints; a group's last call), ``params``, ``macs``, ``flops``,
    ``reads``, ``writes`` and, with ``symbolic``, ``formula``.
    """
    values = dict(values or {})
    ev = _Evaluator(mc.symbols, values)
    groups: dict = {}
    for i, r in enumerate(mc.rows):   # without depth every call is a row (a module called twice: two rows)
        groups.setdefault(group_key(r.name, depth) if depth is not None else i, []).append(r)
    rows = []
    for key, members in groups.items():
        sums = {m: sympy.Integer(0) for m in METRICS}
        for r in members:
            for m, v in _metrics(r, conv).items():
                sums[m] += v
        single = len(members) == 1
        if single:
            name, layer = members[0].label, members[0].layer
        else:   # a group's module, or (outside every module) the function its calls share
            name = members[0].label if key == members[0].name else key
            layer = (module_types or {}).get(key) or _layer_summary(members)
        row = {"name": name, "layer": layer, "calls": len(members),
               "output_shape": tuple(ev(d, f"{name} output size") for d in members[-1].cost.output_shape),
               **{m: ev(sums[m], f"{name} {m}") for m in METRICS}}
        if symbolic:
            row["formula"] = _formula(sums["flops"], mc.symbols, assume_divisible)
        rows.append(row)
    totals = mc.total(conv)
    total = {m: ev(totals[m], f"total {m}") for m in METRICS}
    total["buffers"] = ev(totals["buffers"], "total buffers")
    if symbolic:
        total["formula"] = _formula(totals["flops"], mc.symbols, assume_divisible)
    return Table("layers", conv, tuple(input_shape if input_shape is not None else mc.input_shape), values,
                 [target], rows, total, depth, symbolic, assume_divisible, _notes(mc, conv),
                 _sizes([mc]) if symbolic else [])


def _notes(mc, conv) -> list[str]:
    """The derivation's notes shown under ``conv``: one about another convention (``torch-causal: …``) is left out."""
    from ..conventions import CONVENTIONS, notes_for

    return notes_for(mc.notes, conv.name, CONVENTIONS)


def _layer_summary(members) -> str:
    kinds = sorted({r.layer for r in members})
    return kinds[0] if len(kinds) == 1 else f"{len(members)} calls"


def _formula(expr, symbols, assume_divisible):
    expr = as_expr(expr)
    if assume_divisible and symbols:
        from ..sweep import assume_divisible as divisible

        expr = divisible(expr, symbols, assume_divisible)
    return expr


def model_table(models: list, conv: Convention, values: dict | None = None, *, symbolic: bool = False,
                assume_divisible: int | None = None, input_shape: tuple | None = None) -> Table:
    """Several models' totals, one row each: ``name``, ``target``, ``params``, ``buffers``, ``macs``, ``flops``,
    ``reads``, ``writes`` and, with ``symbolic``, ``formula``.  ``models``: (target, ModelCost) pairs."""
    values = dict(values or {})
    rows, notes = [], []
    for target, mc in models:
        ev = _Evaluator(mc.symbols, values)
        totals = mc.total(conv)
        row = {"name": display_name(target), "target": target,
               **{m: ev(totals[m], f"{target} {m}") for m in ("params", "buffers", *METRICS[1:])}}
        if symbolic:
            row["formula"] = _formula(totals["flops"], mc.symbols, assume_divisible)
        rows.append(row)
        notes += [f"{display_name(target)}: {n}" for n in _notes(mc, conv)]
    shape = input_shape if input_shape is not None else (models[0][1].input_shape if models else ())
    return Table("models", conv, tuple(shape), values, [t for t, _ in models], rows, None, None, symbolic,
                 assume_divisible, notes, _sizes([mc for _, mc in models]) if symbolic else [])
