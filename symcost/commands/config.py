"""`symcost model TARGET --input SHAPE --config FIELD=SYMBOL,…`: totals in the model's own hyperparameters.

The derivation is ``symcost.hyper.derive_config``; this module parses ``--at`` and ``--config-values`` and prints.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..parse import UsageError

METRICS = ("params", "buffers", "macs", "flops", "reads", "writes")


def read_config_values(path: str) -> dict[str, dict]:
    """``{"7B": {"hidden_size": 4096, …}, …}`` (or a list of objects with a "name") -> {row name: {field: int}}."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"--config-values {path!r}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--config-values {path!r}: not JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise UsageError(f"--config-values {path!r}: expected objects of field: integer")
        data = {str(r.get("name", i)): {k: v for k, v in r.items() if k != "name"} for i, r in enumerate(data)}
    if not isinstance(data, dict) or not data or not all(isinstance(r, dict) for r in data.values()):
        raise UsageError(f"--config-values {path!r}: expected {{\"row name\": {{\"field\": integer, …}}, …}}")
    for name, row in data.items():
        for k, v in row.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UsageError(f"--config-values {path!r}: row {name!r}: {k} must be a positive integer, got {v!r}")
    return data


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


def derive_for_args(target: str, args, config: str | dict | None = None):
    """The ``ConfigCost`` named by ``config``, ``--config`` or the fields of ``--config-values``."""
    from ..hyper import derive_config
    from ..progress import status as _status

    config = config or args.config or ",".join(sorted({k for row in read_config_values(args.config_values).values()
                                                      for k in row}))
    with _status(f"deriving {target} in {config}", not getattr(args, "json", False)):
        return derive_config(target, args.input, config, train=args.train,
                             input_dtype=getattr(args, "input_dtype", None), use_cache=not args.no_cache,
                             backward=getattr(args, "backward", False))


def row_groups(config: dict, rows: dict) -> list[tuple[dict, dict]]:
    """Rows grouped by the formula they need: where a row has num_attention_heads = num_key_value_heads (a
    quotient of 1, which the general formula excludes), the two fields share one symbol."""
    from ..hyper.space import HF_RELATIONS

    groups: dict[tuple, tuple[dict, dict]] = {}
    for name, row in rows.items():
        tied = dict(config)
        for num, den, _ in HF_RELATIONS:
            if isinstance(config.get(num), str) and isinstance(config.get(den), str) and row.get(num) == row.get(den):
                tied[den] = config[num]
        key = tuple(sorted(tied.items()))
        groups.setdefault(key, (tied, {}))[1][name] = row
    return list(groups.values())


def evaluations(cc, args, rows: dict | None = None) -> list[dict]:
    """Exact numbers at ``--at`` points, or at each ``--config-values`` row (``--at`` giving the input's symbols)."""
    from ..sweep import parse_assignments

    if rows is None and args.config_values:
        rows = read_config_values(args.config_values)
    if rows is not None:
        inputs = sorted({str(s) for d in cc.input_shape if not isinstance(d, int) for s in d.free_symbols})
        at_points = parse_assignments(args.at, inputs) if inputs or args.at else [{}]
        points = [(n, v) for p in at_points for n, v in config_points(cc, rows, p)]
    elif args.at:
        points = [("", p) for p in parse_assignments(args.at, [str(s) for s in cc.symbols])]
    else:
        return []
    out = []
    for name, values in points:
        try:
            numbers = cc.evaluate(values, args.convention)
        except ValueError as e:
            raise UsageError(f"{name + ': ' if name else ''}{e}") from None
        out.append({**({"name": name} if name else {}), "values": values, **{m: numbers[m] for m in METRICS}})
        if cc.backward or getattr(args, "per_token", False):
            out[-1].update(_step_values(cc, args, values))
    return out


def _step_parts(cc, args) -> dict[str, dict]:
    """``cc.parts`` (total, and forward and backward for a training step), per token with ``--per-token``."""
    return cc.per_token(args.convention) if getattr(args, "per_token", False) else cc.parts(args.convention)


def _step_values(cc, args, values: dict) -> dict:
    """Exact values of each part at ``values`` (already checked): an int, or "p/q" per token."""
    import sympy

    from ..training import exact

    subs = {s: sympy.Integer(values[str(s)]) for s in cc.symbols}
    parts = {name: {m: exact(e.xreplace(subs)) for m, e in t.items()} for name, t in _step_parts(cc, args).items()}
    total = parts.pop("total")
    return {**{m: total[m] for m in METRICS}, **parts}


def config_table(args):
    """`symcost table TARGET --config-values FILE`: one row per named configuration, all from one formula."""
    from ..export.tables import Table
    from ..hyper import parse_config
    from ..parse import convention_arg
    from ..sweep import parse_assignments

    conv = convention_arg(args.convention)
    if len(args.targets) != 1:
        raise UsageError("--config-values tabulates one target's configurations; give one target")
    if not args.config_values:
        raise UsageError("--config in a table needs --config-values FILE.json (the rows)")
    target = args.targets[0]
    rows = read_config_values(args.config_values)
    if args.caption is None:
        args.caption = f"Cost of {target} configurations, each row from a formula in its config fields"
    config = parse_config(args.config or ",".join(sorted({k for row in rows.values() for k in row})))
    found, notes, shape = {}, [], ()
    for tied, group in row_groups(config, rows):
        cc = derive_for_args(target, args, tied)
        for e in evaluations(cc, args, group):
            found[e["name"]] = {"name": e["name"], "target": target, **{m: e[m] for m in METRICS}}
        same = [f"{f} = {g}" for f, g in tied.items() if config[f] != g]
        notes.append(f"rows {', '.join(group)}: one formula in {', '.join(sorted(map(str, cc.symbols)))}"
                     + (f" ({'; '.join(same)})" if same else "") + f", params = {cc.total(conv.name)['params']}")
        shape = cc.input_shape
    inputs = sorted({str(s) for d in shape if not isinstance(d, int) for s in d.free_symbols})
    points = parse_assignments(args.at, inputs) if inputs else [{}]
    if len(points) != 1:
        raise UsageError("--at: a table takes one value per input symbol")
    return Table("models", conv, tuple(shape), points[0], [target], [found[n] for n in rows], notes=notes)


def run_config(args) -> int:
    for flag in ("assume_divisible", "layers"):
        if getattr(args, flag, None):
            raise UsageError(f"--{flag.replace('_', '-')} is not available with --config (totals only)")
    if getattr(args, "per_token", False):  # refused before the derivation, not after it
        from ..parse import parse_shape
        from ..training import tokens

        tokens(parse_shape(args.input))
    started = time.perf_counter()
    cc = derive_for_args(args.target, args)
    evaluated = evaluations(cc, args)
    parts = _step_parts(cc, args)
    total = parts.pop("total")
    result = {
        "target": cc.target,
        "input_shape": [d if isinstance(d, int) else str(d) for d in cc.input_shape],
        "config": cc.config,
        "convention": args.convention,
        "formula": {m: str(total[m]) for m in METRICS},
        **{name: {m: str(t[m]) for m in METRICS} for name, t in parts.items()},
        "flops_by_convention": {n: str(t["flops"]) for n, t in cc.totals.items()},
        "conditions": cc.condition_texts() + [f"{s} >= 2" for s in cc.config_symbols.values()],
        "domain": [f"{d} >= 1" for d in cc.domain],
        "fit": {k: v for k, v in cc.fit.items() if k != "traced_at"},
        "uncovered": sorted(cc.uncovered),   # op names only: how many calls depends on the configuration
        "notes": cc.notes,
    }
    if getattr(args, "per_token", False):
        from ..training import exact, tokens

        result["per_token"] = {"divided_by": exact(tokens(cc.input_shape)),
                               "metrics": ["macs", "flops", "reads", "writes"],
                               "why": "tokens in one step: batch x sequence length of the input; params and "
                                      "buffers are not divided"}
    if evaluated:
        result["evaluations"] = evaluated
    result["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_text(result)
    if getattr(args, "strict", False) and cc.uncovered:
        print(f"symcost model: --strict: ops symcost cannot cost: {', '.join(sorted(cc.uncovered))}", file=sys.stderr)
        return 1
    return 0


def _print_text(result: dict) -> None:
    name = result["convention"]
    config = ", ".join(f"{k}={v}" for k, v in result["config"].items())
    print(f"{result['target']} on {'x'.join(map(str, result['input_shape']))}, config {config}")
    from ..render import count, pairs

    per = " per token" if "per_token" in result else ""
    lines = [(label, result["formula"][m]) for m, label in (("params", "params"), ("macs", "MACs" + per),
                                                             ("flops", f"FLOPs[{name}]" + per))]
    lines += [(f"{part} FLOPs{per}", result[part]["flops"]) for part in ("forward", "backward") if part in result]
    lines.append(("valid where", "; ".join(result["conditions"] + result["domain"])))
    print(pairs(lines))
    for e in result.get("evaluations", []):
        where = ", ".join(f"{k}={v}" for k, v in e["values"].items())
        split = "".join(f"   {p}: {count(e[p]['flops'])}" for p in ("forward", "backward") if p in e)
        print(f"{e.get('name') or where}: params {count(e['params'])}  MACs {count(e['macs'])}  "
              f"FLOPs[{name}] {count(e['flops'])}{split}")
    if "per_token" in result:
        print(f"note: per token: MACs, FLOPs, reads and writes divided by {result['per_token']['divided_by']} tokens "
              "(batch x sequence length)")
    if result["uncovered"]:
        print("UNCOVERED (not costed, not counted): " + ", ".join(result["uncovered"]))
    for note in result["notes"]:
        print(f"note: {note}")


def config_plot(args) -> int:
    """`symcost plot TARGET --input 1x1024 --config n_embd=d --range d=256:4096:128`: cost against a config field."""
    from .. import plot
    from ..export.tables import display_name
    from ..parse import convention_arg
    from .papers import parse_range

    conv = convention_arg(args.convention)
    if args.metric not in plot.METRICS:
        raise UsageError(f"unknown metric {args.metric!r}; choose one of: {', '.join(plot.METRICS)}")
    if args.breakdown:
        raise UsageError("--breakdown is for input sizes; with --config each curve is one model's total")
    out = Path(args.out)
    if out.suffix.lower() not in plot.SUFFIXES or not out.parent.is_dir():
        raise UsageError(f"--out {args.out!r}: a .png, .pdf or .svg file in an existing folder")
    models = []
    for target in args.targets:
        cc = derive_for_args(target, args)
        names = [str(s) for s in cc.symbols]
        if len(names) != 1:
            raise UsageError(f"a plot needs exactly one symbol; {target} has {', '.join(names)} (give --input "
                             "concrete sizes and one --config field)")
        models.append((display_name(target), cc))
    symbol, xs = parse_range(args.range, names)
    title = args.title or f"{plot.metric_label(args.metric, conv.name)[0]} vs {symbol} (input {args.input})"
    try:
        plot.plot_models(models, symbol, xs, args.metric, conv.name, out, logx=args.logx, logy=args.logy,
                         shape_text=args.input, title=title)
    except ValueError as e:
        raise UsageError(str(e)) from None
    import numpy as np

    for label, cc in models:  # plot's own note speaks of tensor sizes; here it is mostly a condition
        skipped = [int(x) for x, ok in zip(xs, cc.valid(np.array(xs))) if not ok]
        if skipped:
            print(f"symcost plot: note: {label}: {len(skipped)} of {len(xs)} values skipped ({symbol}="
                  f"{', '.join(map(str, skipped[:6]))}{', …' if len(skipped) > 6 else ''}): the formula holds where "
                  + "; ".join(cc.condition_texts() + [f"{symbol} >= 2"]))
    print(f"wrote {out}")
    return 0
