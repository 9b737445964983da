"""`symcost model TARGET --input SHAPE --config FIELD=SYMBOL,…`: totals in the model's own hyperparameters.

The derivation is ``symcost.hyper.derive_config``, the report ``symcost.hyper.report``; this module calls them and
prints.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..parse import UsageError
from .out_file import refuse_folder


def derive_for_args(target: str, args, config: str | dict | None = None):
    """The ``ConfigCost`` named by ``config``, ``--config`` or the fields of ``--config-values`` (`table`, `plot`)."""
    from ..request import ModelRequest, config_cost

    request = ModelRequest.of(target, args.input, train=getattr(args, "train", False),
                              input_dtype=getattr(args, "input_dtype", None), backward=getattr(args, "backward", False),
                              past=getattr(args, "past", None), config=config or getattr(args, "config", None),
                              config_values=getattr(args, "config_values", None), use_cache=not args.no_cache)
    return config_cost(request, progress=not getattr(args, "json", False))


def config_table(args):
    """`symcost table TARGET --config-values FILE`: one row per named configuration, all from one formula."""
    from ..hyper import report
    from ..parse import convention_arg

    conv = convention_arg(args.convention)
    if len(args.targets) != 1:
        raise UsageError("--config-values tabulates one target's configurations; give one target")
    if not args.config_values:
        raise UsageError("--config in a table needs --config-values FILE.json (the rows)")
    target = args.targets[0]
    rows = report.read_config_values(args.config_values)
    if args.caption is None:
        args.caption = f"Cost of {target} configurations, each row from a formula in its config fields"
    return report.config_table(target, rows, args.config, conv, args.at,
                               lambda tied: derive_for_args(target, args, tied))


def render_config(report, request, args) -> int:
    """Totals in the model's config fields (a ``hyper.report.ConfigReport``), as text or JSON."""
    cc, per_token = report.cc, request.per_token
    result = report.as_dict()
    named = _named_floors(cc, request.convention.name, per_token)
    if args.json:
        if named:   # the text output's names beside the raw formulas: "formula_named" in the sizes "where" defines
            shown, where = named
            result = with_names(result, {"where": where, **{("formula" if part == "total" else part) + "_named": t
                                                              for part, t in shown.items()}})
        print(json.dumps(result, indent=2))
    else:
        _print_text(result, named)
    if getattr(args, "strict", False) and cc.uncovered:
        print(f"symcost model: --strict: ops symcost cannot cost: {', '.join(sorted(cc.uncovered))}", file=sys.stderr)
        return 1
    return 0


def with_names(result: dict, named: dict) -> dict:
    """``result`` with the named formulas (``where``, ``formula_named``, ...) right after its raw ``formula``."""
    out = {}
    for k, v in result.items():
        out[k] = v
        if k == "formula":
            out.update(named)
    return out if "formula" in result else {**result, **named}


def _named_floors(cc, convention: str, per_token: bool) -> tuple[dict, dict] | None:
    """The formulas of the text output with nested floors named once (``R_1 = …``), as `symcost model` prints
    them: ({part: {metric: text}}, {name: definition}); None where no formula has a floor."""
    import sympy

    from ..export.formulas import readable, text
    from ..hyper.report import step_parts

    parts = step_parts(cc, convention, per_token)
    keys = [(part, m) for part, t in parts.items() for m in ("params", "macs", "flops") if m in t]
    exprs = [parts[part][m] for part, m in keys]
    if not any(isinstance(e, sympy.Basic) and e.has(sympy.floor, sympy.ceiling) for e in exprs):
        return None
    shown, where = readable(exprs, list(cc.domain), {str(s) for s in cc.symbols})
    out: dict = {}
    for (part, m), e in zip(keys, shown):
        out.setdefault(part, {})[m] = text(e)
    return out, {str(k): text(v) for k, v in where.items()}


def _print_text(result: dict, named: tuple[dict, dict] | None = None) -> None:
    name = result["convention"]
    config = ", ".join(f"{k}={v}" for k, v in result["config"].items())
    past = f" with {result['past']} cached tokens" if "past" in result else ""
    print(f"{result['target']} on {'x'.join(map(str, result['input_shape']))}{past}, config {config}")
    from ..render import count, pairs

    per = " per token" if "per_token" in result else ""
    shown, where = named if named else ({"total": result["formula"], **{p: result[p] for p in ("forward", "backward")
                                                                       if p in result}}, {})
    lines = [(label, shown["total"][m]) for m, label in (("params", "params"), ("macs", "MACs" + per),
                                                        ("flops", f"FLOPs[{name}]" + per))]
    lines += [(f"{part} FLOPs{per}", shown[part]["flops"]) for part in ("forward", "backward") if part in result]
    lines.append(("valid where", "; ".join(result["conditions"] + result["domain"])))
    print(pairs(lines))
    if where:
        print("where")
        for k, v in where.items():
            print(f"  {k} = {v}")
    for e in result.get("evaluations", []):
        where = ", ".join(f"{k}={v}" for k, v in e["values"].items())
        split = "".join(f"   {p}: {count(e[p]['flops'])}" for p in ("forward", "backward") if p in e)
        t = e["total"]
        print(f"{e.get('name') or where}: params {count(t['params'])}  MACs {count(t['macs'])}  "
              f"FLOPs[{name}] {count(t['flops'])}{split}")
    if "per_token" in result:
        print(f"note: per token: MACs, FLOPs, reads and writes divided by {result['per_token']['divided_by']} tokens "
              "(batch x sequence length)")
    if result["uncovered"]:
        print("UNCOVERED (not costed, not counted): " + ", ".join(result["uncovered"]))
    for note in result["notes"]:
        print(f"note: {note}")


def _field_default(target: str, field: str | None) -> int | None:
    """A config field's default (a Hugging Face default config's attribute, a factory's keyword default), for the
    plot's marker; None where there is none."""
    import inspect

    from ..targets import Target

    spec = Target.of(target)
    kind, name = spec.source, spec.name
    try:
        if spec.is_hf:
            from transformers import AutoConfig

            value = getattr(AutoConfig.for_model(name), field, None)
        else:
            from ..targets import load_attribute

            value = inspect.signature(load_attribute(Path(kind), name)).parameters[field].default
    except Exception:  # noqa: BLE001  (no default to mark: the plot is drawn without a marker)
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def config_plot(args) -> int:
    """`symcost plot TARGET --input 1x1024 --config n_embd=d --range d=256:4096:128`: cost against a config field."""
    from .. import plot
    from ..export.tables import display_name
    from ..parse import convention_arg
    from ..sweep import parse_range

    conv = convention_arg(args.convention)
    args.metric = args.metric or "macs"
    if args.metric not in plot.METRICS:
        raise UsageError(f"unknown metric {args.metric!r}; choose one of: {', '.join(plot.METRICS)}")
    if args.breakdown:
        raise UsageError("--breakdown is for input sizes; with --config each curve is one model's total")
    out = refuse_folder(args.out, "plot.png")
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
    refused = {label: _confirm_beyond(cc, symbol, xs) for label, cc in models}
    title = args.title or f"{plot.metric_label(args.metric, conv.name)[0]} vs {symbol} (input {args.input})"
    field = next((f for f, s in models[0][1].config_symbols.items() if str(s) == symbol), None)
    defaults = {label: _field_default(t, field) for (label, _), t in zip(models, args.targets)}
    try:
        plot.plot_models(models, symbol, xs, args.metric, conv.name, out, logx=args.logx, logy=args.logy,
                         shape_text=args.input, title=title, defaults=defaults,
                         marker_label=f"the default {field}")
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    import numpy as np

    for label, cc in models:  # plot's own note speaks of tensor sizes; here it is mostly a condition
        if refused[label]:
            why = refused[label][0][1]
            print(f"symcost plot: note: {label}: {len(refused[label])} of {len(xs)} values refused ({symbol}="
                  f"{', '.join(str(v) for v, _ in refused[label][:6])}{', …' if len(refused[label]) > 6 else ''}): "
                  f"{why}")
        skipped = [int(x) for x, ok in zip(xs, cc.valid(np.array(xs))) if not ok and
                   x not in {v for v, _ in refused[label]}]
        if skipped:
            print(f"symcost plot: note: {label}: {len(skipped)} of {len(xs)} values skipped ({symbol}="
                  f"{', '.join(map(str, skipped[:6]))}{', …' if len(skipped) > 6 else ''}): the formula holds where "
                  + "; ".join(cc.condition_texts() + [f"{symbol} >= 2"]))
    print(f"wrote {out}")
    return 0


def _confirm_beyond(cc, symbol: str, xs) -> list[tuple[int, str]]:
    """Each value past the configurations ``cc`` was fitted at is checked by a trace there (``ConfigCost.evaluate``),
    with progress; the values refused, each with the reason."""
    import numpy as np

    from ..progress import steps

    inside = cc.lambdified(metrics=())(np.array(xs))
    beyond = [int(x) for x, ok, s in zip(xs, inside["valid"], inside["sampled"]) if ok and not s]
    refused = []
    with steps(f"checking {len(beyond)} values past the configurations traced, a trace each", len(beyond),
               bool(beyond)) as advance:
        for x in beyond:
            try:
                cc.evaluate({symbol: x})
            except ValueError as e:
                refused.append((x, str(e)))
            advance()
    return refused
