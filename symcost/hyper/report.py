"""What ``symcost model --config`` and ``symcost table --config-values`` report, as data.

``config_report``: the formulas of a ``ConfigCost`` (every convention's FLOPs, conditions, domain, fit), evaluated
at ``--at`` points or at named configurations; ``config_table``: one table row per named configuration, each from
the formula of its group (a row with as many key/value heads as query heads needs the tied formula).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..model import Totals

METRICS = Totals.KEYS


def read_config_values(path: str) -> dict[str, dict]:
    """``{"7B": {"hidden_size": 4096, …}, …}`` (or a list of objects with a "name") -> {row name: {field: int}}."""
    from ..parse import json_once

    try:
        data = json_once(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"--config-values {path!r}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--config-values {path!r}: not JSON ({e.msg}, line {e.lineno})") from None
    except ValueError as e:  # a row or a field given twice
        raise UsageError(f"--config-values {path!r}: {e}") from None
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise UsageError(f"--config-values {path!r}: expected objects of field: integer")
        names = [str(r.get("name", i)) for i, r in enumerate(data)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"--config-values {path!r}: row {twice[0]!r} is given twice")
        data = {n: {k: v for k, v in r.items() if k != "name"} for n, r in zip(names, data)}
    if not isinstance(data, dict) or not data or not all(isinstance(r, dict) for r in data.values()):
        raise UsageError(f"--config-values {path!r}: expected {{\"row name\": {{\"field\": integer, …}}, …}}")
    for name, row in data.items():
        for k, v in row.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UsageError(f"--config-values {path!r}: row {name!r}: {k} must be a positive integer, got {v!r}")
    return data


def fields_of(rows: dict[str, dict]) -> str:
    """The config spec naming every field the rows give (``--config-values`` without ``--config``)."""
    return ",".join(sorted({k for row in rows.values() for k in row}))


def config_points(cc, rows: dict[str, dict], at_values: dict[str, int]) -> list[tuple[str, dict]]:
    """Each row (fields of the config, or symbol names) as an assignment of ``cc``'s symbols."""
    symbols = {f: str(s) for f, s in cc.config_symbols.items()}
    fixed = {f: v for f, v in cc.config.items() if isinstance(v, int)}
    out = []
    for name, row in rows.items():
        values = dict(at_values)
        for k, v in row.items():
            if k in symbols:
                values[symbols[k]] = v
            elif k in symbols.values() or k in {str(s) for s in cc.symbols}:
                values[k] = v
            elif fixed.get(k, v) != v or k not in fixed:
                raise UsageError(f"row {name!r}: {k}={v}, but the formula has {k} "
                                 + (f"fixed at {fixed[k]}" if k in fixed else "at its default (add it to --config)"))
        missing = [str(s) for s in cc.symbols if str(s) not in values]
        if missing:
            raise UsageError(f"row {name!r} gives no value for {', '.join(missing)}")
        out.append((name, values))
    return out


def row_groups(config: dict, rows: dict) -> list[tuple[dict, dict]]:
    """Rows grouped by the formula they need: where a row has num_attention_heads = num_key_value_heads (a
    quotient of 1, which the general formula excludes), the two fields share one symbol."""
    from .space import HF_RELATIONS

    groups: dict[tuple, tuple[dict, dict]] = {}
    for name, row in rows.items():
        tied = dict(config)
        for num, den, _ in HF_RELATIONS:
            if isinstance(config.get(num), str) and isinstance(config.get(den), str) and row.get(num) == row.get(den):
                tied[den] = config[num]
        key = tuple(sorted(tied.items()))
        groups.setdefault(key, (tied, {}))[1][name] = row
    return list(groups.values())


def step_parts(cc, convention: str, per_token: bool = False) -> dict[str, dict]:
    """``cc.parts`` (total, and forward and backward for a training step), per token with ``per_token``."""
    return cc.per_token(convention) if per_token else cc.parts(convention)


def step_values(cc, convention: str, per_token: bool, values: dict) -> dict:
    """Exact values of each part at ``values`` (already checked): an int, or "p/q" per token."""
    import sympy

    from ..training import exact

    subs = {s: sympy.Integer(values[str(s)]) for s in cc.symbols}
    parts = {name: {m: exact(e.xreplace(subs)) for m, e in t.items()}
             for name, t in step_parts(cc, convention, per_token).items()}
    total = parts.pop("total")
    return {**{m: total[m] for m in METRICS}, **parts}


def evaluations(cc, convention: str, at: list[str], rows: dict | None = None, per_token: bool = False) -> list[dict]:
    """Exact numbers at the ``at`` points, or at each named row (``at`` then gives the input's symbols), under
    ``total``; a training step (``cc.backward``) or ``per_token`` also gives each part's values beside it."""
    from ..sweep import parse_assignments

    if rows is not None:
        inputs = sorted({str(s) for d in cc.input_shape if not isinstance(d, int) for s in d.free_symbols})
        at_points = parse_assignments(at, inputs) if inputs or at else [{}]
        points = [(n, v) for p in at_points for n, v in config_points(cc, rows, p)]
    elif at:
        points = [("", p) for p in parse_assignments(at, [str(s) for s in cc.symbols])]
    else:
        return []
    out = []
    for name, values in points:
        try:
            numbers = cc.evaluate(values, convention)
        except ValueError as e:
            raise UsageError(f"{name + ': ' if name else ''}{e}") from None
        total = {m: numbers[m] for m in METRICS}
        if cc.backward or per_token:
            parts = step_values(cc, convention, per_token, values)
            total = {m: parts.pop(m) for m in METRICS}
        else:
            parts = {}
        # one shape for every mode's evaluations (symcost model --at, --backward, --past): totals under "total"
        out.append({**({"name": name} if name else {}), "values": values, "total": total, **parts})
    return out


@dataclass
class ConfigReport:
    """``symcost model --config`` as data; ``as_dict`` is its ``--json``, key for key."""

    target: str
    input_shape: list
    config: dict
    convention: str
    formula: dict
    parts: dict                     # "forward", "backward" of a training step: formula strings
    flops_by_convention: dict
    conditions: list
    domain: list
    fit: dict
    uncovered: list                 # op names only: how many calls depends on the configuration
    notes: list
    per_token: dict | None = None
    evaluations: list = field(default_factory=list)
    seconds: float | None = None
    cc: object = field(default=None, repr=False)

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("target", "input_shape", "config", "convention", "formula")}
        past = getattr(self.cc, "past", None)
        if past is not None:   # a decode step: its cached tokens
            out["past"] = past if isinstance(past, int) else str(past)
        out.update(self.parts)
        out.update({k: getattr(self, k) for k in ("flops_by_convention", "conditions", "domain", "fit", "uncovered",
                                                  "notes")})
        if self.per_token is not None:
            out["per_token"] = self.per_token
        if self.evaluations:
            out["evaluations"] = self.evaluations
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


def _domain_texts(domain) -> list[str]:
    """Each tensor size's ``>= 1`` as a reader writes it (``L <= 1024``), those that always hold left out."""
    from ..export.formulas import condition_text

    return [t for t in dict.fromkeys(condition_text(d) for d in domain) if t is not None]


def config_report(cc, convention: str, at: list[str], rows: dict | None = None, started: float | None = None,
                  per_token: bool = False) -> ConfigReport:
    """The report of a derived ``ConfigCost`` under ``convention``, evaluated at ``at`` or the named ``rows``;
    ``per_token``: MACs, FLOPs, reads and writes divided by the B x L tokens of the input.  ``started`` (a
    ``time.perf_counter()``) times the whole call, derivation included."""
    from ..conventions import notes_for
    from ..training import PER_TOKEN_METRICS, exact, tokens

    evaluated = evaluations(cc, convention, at, rows, per_token)
    parts = step_parts(cc, convention, per_token)
    total = parts.pop("total")
    report = ConfigReport(
        cc.target, [d if isinstance(d, int) else str(d) for d in cc.input_shape], cc.config, convention,
        {m: str(total[m]) for m in METRICS}, {name: {m: str(t[m]) for m in METRICS} for name, t in parts.items()},
        {n: str(t["flops"]) for n, t in cc.totals.items()},
        cc.condition_texts() + [f"{s} >= 2" for s in dict.fromkeys(cc.config_symbols.values())],  # tied: once
        _domain_texts(cc.domain), {k: v for k, v in cc.fit.items() if k != "traced_at"},
        sorted(cc.uncovered), notes_for(cc.notes, convention, cc.totals), evaluations=evaluated, cc=cc)
    if per_token:
        report.per_token = {"divided_by": exact(tokens(cc.input_shape)), "metrics": list(PER_TOKEN_METRICS),
                            "why": "tokens in one step: batch x sequence length of the input; params and "
                                   "buffers are not divided"}
    if started is not None:
        report.seconds = round(time.perf_counter() - started, 3)
    return report


def config_table(target: str, rows: dict[str, dict], config: str | None, conv, at: list[str], derive):
    """One ``Table`` row per named configuration of ``target``; ``derive(config_dict)`` gives the ``ConfigCost`` of
    one group of rows (the caller's derivation: cache, progress)."""
    from ..export.tables import Table
    from ..sweep import parse_assignments
    from .space import parse_config

    spec = parse_config(config or fields_of(rows))
    found, notes, shape = {}, [], ()
    for tied, group in row_groups(spec, rows):
        cc = derive(tied)
        for e in evaluations(cc, conv.name, at, group):
            found[e["name"]] = {"name": e["name"], "target": target, **{m: e["total"][m] for m in METRICS}}
        same = [f"{f} = {g}" for f, g in tied.items() if spec[f] != g]
        notes.append(f"rows {', '.join(group)}: one formula in {', '.join(sorted(map(str, cc.symbols)))}"
                     + (f" ({'; '.join(same)})" if same else "") + f", params = {cc.total(conv.name)['params']}")
        shape = cc.input_shape
    inputs = sorted({str(s) for d in shape if not isinstance(d, int) for s in d.free_symbols})
    points = parse_assignments(at, inputs) if inputs else [{}]
    if len(points) != 1:
        raise UsageError("--at: a table takes one value per input symbol")
    return Table("models", conv, tuple(shape), points[0], [target], [found[n] for n in rows], notes=notes)
