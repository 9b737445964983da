"""`symcost model TARGET --input SHAPE`: a whole model's per-layer costs and closed-form totals.

A cached sweep (`--at`) imports neither torch nor sympy: it reads the derivation's ``Summary`` (plain data) and
evaluates its expression trees with NumPy.
"""
from __future__ import annotations

import json
import sys
import time

from ..derive import cached_summary, derive, trace_target  # noqa: F401  (commands import them from here too)
from ..parse import UsageError, parse_shape_names, shape_key
from ..progress import add_quiet_option, steps

METRICS = ("params", "macs", "flops")


def _shown(e):
    if isinstance(e, int):
        return e
    import sympy

    return int(e) if e.is_Integer else sympy.sstr(e)


def _fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _per_point(target: str, input_spec: str, points: list[dict], convention: str, train: bool,
               progress: bool, input_dtype: str | None = None) -> list[dict]:
    """A concrete trace per point, for models whose graph changes with the input size."""
    out = []
    with steps("tracing each size", len(points), progress) as advance:
        for values in points:
            concrete = _at_point(input_spec, values)
            tot = trace_target(target, concrete, train, input_dtype).total(convention)
            out.append({"values": values, **{m: int(tot[m]) for m in METRICS}})
            advance()
    return out


def _at_point(input_spec: str, values: dict) -> tuple | dict:
    """The input spec (one shape or named shapes) with its symbols replaced by ``values`` (name -> int)."""
    from ..parse import parse_input_spec

    def at(shape):
        return tuple(values[str(d)] if str(d) in values else int(d) for d in shape)

    spec = parse_input_spec(input_spec)
    return {n: at(s) for n, s in spec.items()} if isinstance(spec, dict) else at(spec)


def run_model(args) -> int:
    from ..errors import NoSingleFormula
    from ..sweep import check_divisible, parse_assignments, parse_trace_sizes

    if (args.config or args.config_values) and (args.past or args.generate or args.trace_sizes):
        raise UsageError("--config derives the forward pass (or a training step, --backward) at symcost's own trace "
                         "sizes: it does not combine with --past, --generate or --trace-sizes yet")
    if "=" in args.input and (args.past or args.generate or args.config or args.config_values):
        raise UsageError("named inputs (NAME=SHAPE,...) are for the forward pass and --backward/--per-token; "
                         "--past, --generate and --config take one shape")
    if args.config or args.config_values:  # formulas in the model's own hyperparameters
        from .config import run_config

        return run_config(args)
    if args.past or args.generate:  # decoding with a KV cache
        from .steps import run_decode

        return run_decode(args)
    if args.backward or args.per_token:  # a training step, split into forward and backward
        from .steps import run_step

        return run_step(args)
    started = time.perf_counter()
    names = sorted({d for d in parse_shape_names(args.input) if isinstance(d, str)})
    points = parse_assignments(args.at, names) if args.at else None
    if args.at and not names:
        raise UsageError("--at needs symbols in --input (e.g. --input 1x3xRxR --at R=224,225)")
    if args.assume_divisible is not None:
        if not names:
            raise UsageError("--assume-divisible needs symbols in --input (e.g. --input 1x3xHxW)")
        check_divisible(args.assume_divisible, points)
    need_rows = not names or args.layers or (args.json and not args.at)
    sizes = parse_trace_sizes(args.trace_sizes, names) if args.trace_sizes else None
    mc = summary = None
    if points and not need_rows and not args.assume_divisible and not args.no_cache:
        summary = cached_summary(args.target, args.input, args.train, args.input_dtype, sizes)
    if summary is None:
        try:
            mc = derive(args.target, args.input, train=args.train, use_cache=not args.no_cache,
                        progress=not args.json, input_dtype=args.input_dtype, trace_sizes=sizes)
        except NoSingleFormula as e:
            if not points:
                raise
            return _run_per_point(args, points, f"no single formula: {e}; each size was traced on its own")
        summary = mc.summary(_divisible_totals(mc, args.assume_divisible) if args.assume_divisible is not None
                             else None)
    if points and summary.fixed_at:
        return _run_per_point(args, points, f"{summary.notes[-1]}; each size was traced on its own")
    if args.convention not in summary.totals:
        from ..parse import did_you_mean

        raise UsageError(f"unknown convention {args.convention!r}{did_you_mean(args.convention, summary.totals)}; "
                         f"choose one of: {', '.join(summary.totals)}")
    total = summary.total(args.convention)
    result = {
        "target": args.target,
        "input_shape": summary.input_shape,
        "convention": args.convention,
        "convention_summary": summary.conventions[args.convention],
        "total": total,
        "units": {"macs": "multiply-accumulates", "flops": f"operations under '{args.convention}'",
                  "reads": "elements", "writes": "elements"},
        "uncovered": summary.uncovered,
        "zero_cost_ops": summary.zero_cost_ops,
        "notes": summary.notes,
        "buffers_by_kind": summary.buffer_kinds,
    }
    if names:
        result["formula"] = {m: str(total[m]) for m in METRICS}
        if args.assume_divisible is not None:
            result["assumed_divisible_by"] = args.assume_divisible
            result["notes"] = [f"assumes {', '.join(names)} multiples of {args.assume_divisible} "
                               "(--assume-divisible): the formulas hold only at such sizes", *result["notes"]]
    if points:
        try:
            result["evaluations"] = summary.evaluate(points, args.convention)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if need_rows:
        from ..conventions import get_convention

        conv = get_convention(args.convention)
        result["layers"] = [_row_json(r, conv) for r in mc.rows]
    result["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_text(result, _readable(result, summary, None if args.assume_divisible else mc))
    if args.strict and summary.uncovered:
        print(f"symcost model: --strict: {sum(summary.uncovered.values())} op call(s) symcost cannot cost: "
              + ", ".join(f"{k} x{v}" for k, v in summary.uncovered.items()), file=sys.stderr)
        return 1
    return 0


def _divisible_totals(mc, k: int) -> dict:
    from ..conventions import CONVENTIONS
    from ..sweep import assume_divisible

    return {n: {m: assume_divisible(e, mc.symbols, k) for m, e in mc.total(c).items()}
            for n, c in CONVENTIONS.items()}


def _run_per_point(args, points: list[dict], note: str) -> int:
    from ..parse import convention_arg

    convention_arg(args.convention)
    evaluations = _per_point(args.target, args.input, points, args.convention, args.train, not args.json,
                             args.input_dtype)
    result = {"target": args.target, "input_shape": shape_key(args.input).split("x") if "=" not in args.input
              else shape_key(args.input), "convention": args.convention,
              "evaluations": evaluations, "notes": [note]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_evaluations_text(evaluations, args.convention))
        print(f"note: {note}")
    return 0


def _row_json(r, conv) -> dict:
    c = r.cost
    return {"name": r.name, "layer": r.layer, "family": c.family, "args": r.args,
            "input_shapes": [[_shown(d) for d in s] for s in r.input_shapes],
            "output_shape": [_shown(d) for d in c.output_shape],
            "params": _shown(c.params), "macs": _shown(c.macs),
            "flops": _shown(conv.count_row(r))}


def _evaluations_text(evaluations, convention: str) -> str:
    lines = [f"{'values':<20} {'params':>14} {'MACs':>18} {'FLOPs[' + convention + ']':>20}"]
    for e in evaluations:
        vals = " ".join(f"{k}={v}" for k, v in e["values"].items())
        lines.append(f"{vals:<20} {e['params']:>14,} {e['macs']:>18,} {e['flops']:>20,}")
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """A plain aligned table (no terminal-width truncation, so names stay whole when piped)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _text(e) -> str:
    from ..export.formulas import text

    return f"{int(e):,}" if e.is_Integer else text(e)


def _readable(result: dict, summary, mc) -> dict | None:
    """The text output's formulas, as ``table --symbolic`` writes them: nested floors named once (``H_1 = …``,
    shared by the totals and every layer row), like terms collected.  None for a concrete input."""
    if not summary.symbols or "formula" not in result:
        return None
    from ..export.formulas import from_tree, readable

    conv = result["convention"]
    if mc is not None:
        total = mc.total(conv)
        exprs, sizes = [total[m] for m in METRICS], list(mc.domain)
    else:  # a cached summary (or --assume-divisible): the totals' trees
        exprs = [from_tree(summary.trees[conv][m]) for m in METRICS]
        sizes = [from_tree(tree) for tree, _ in summary.domain]
    rows = []
    if "layers" in result and mc is not None:
        from ..conventions import get_convention
        from ..export.tables import row_flops

        c = get_convention(conv)
        for r in mc.rows:
            rows.append([*r.cost.output_shape, r.cost.params, r.cost.macs, row_flops(c, r)])
    shown, where = readable(exprs + [e for row in rows for e in row], sizes)
    out = {"total": {m: _text(e) for m, e in zip(METRICS, shown[:3])}, "where": where, "layers": []}
    i = 3
    for row in rows:
        n = len(row) - 3
        shape, values = shown[i:i + n], shown[i + n:i + len(row)]
        out["layers"].append(["x".join(map(_text, shape)), *(_text(v) for v in values)])
        i += len(row)
    return out


def _print_text(result: dict, readable: dict | None = None) -> None:
    """``readable``: formulas with floors named (see ``_readable``), in place of the raw strings."""
    name = result["convention"]
    if "layers" in result:
        print(f"{result['target']} on {'x'.join(map(str, result['input_shape']))}")
        rows = [[r["name"], r["layer"], "x".join(map(str, r["output_shape"])), _fmt(r["params"]), _fmt(r["macs"]),
                 _fmt(r["flops"])] for r in result["layers"]]
        if readable and readable["layers"]:
            rows = [[r[0], r[1], *shown] for r, shown in zip(rows, readable["layers"])]
        print(text_table(["layer", "type", "output", "params", "MACs", f"FLOPs[{name}]"], rows, {3, 4, 5}))
    t = {**result["total"], **(readable["total"] if readable else {})}
    kinds = "; ".join(f"{k} {_fmt(v)}" for k, v in result.get("buffers_by_kind", {}).items())
    print(f"total params  {_fmt(t['params'])}" + (f"   (+ {_fmt(t['buffers'])} in buffers: {kinds})" if kinds else ""))
    print(f"total MACs    {_fmt(t['macs'])}")
    print(f"total FLOPs   {_fmt(t['flops'])}   [{name}: {result['convention_summary']}]")
    if readable and readable["where"]:
        from ..export.formulas import text

        print("where")
        for k, v in readable["where"].items():
            print(f"  {k} = {text(v)}")
    if "evaluations" in result:
        print(_evaluations_text(result["evaluations"], name))
    if result["uncovered"]:
        print("UNCOVERED (not costed, not counted): "
              + ", ".join(f"{k} x{v}" for k, v in result["uncovered"].items()))
    for note in result["notes"]:
        print(f"note: {note}")


def configure_model(p) -> None:
    add_quiet_option(p)
    from ..targets import TARGET_SYNTAX

    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="SHAPE",
                   help="input shape, e.g. 1x3x224x224, or 1x3xHxW (letters are symbols; the same letter is the "
                        "same symbol)")
    p.add_argument("--convention", default="flops", metavar="NAME",
                   help="FLOP counting convention (default flops; see `symcost conventions`)")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUES",
                   help="evaluate the formulas at R=224,225 or a range R=64:1024:8 (inclusive); repeat for more "
                        "symbols (their product is taken)")
    p.add_argument("--assume-divisible", type=int, metavar="K",
                   help="assume every symbolic size is a multiple of K: floors vanish, a clean polynomial")
    p.add_argument("--trace-sizes", metavar="NAME=A:B,…",
                   help="the two sizes a symbolic input is recorded at, e.g. H=241:209,W=225:193 (default: odd sizes "
                        "around the model's own size, which no stride divides); the formula is always verified at a "
                        "third size of other residues")
    p.add_argument("--layers", action="store_true",
                   help="per-layer rows for a symbolic input also in text output and with --at "
                        "(--json without --at has them)")
    p.add_argument("--input-dtype", choices=("float32", "float16", "bfloat16", "int64", "int32"),
                   help="the input tensor's dtype (default: int64 token ids for hf: targets, float32 otherwise)")
    p.add_argument("--train", action="store_true", help="cost the training-mode forward (BatchNorm batch statistics)")
    p.add_argument("--backward", action="store_true",
                   help="one training step: forward and backward (no optimizer); totals split into both passes")
    p.add_argument("--per-token", action="store_true",
                   help="MACs, FLOPs, reads and writes divided by the tokens of a B x L input (B*L), exactly")
    p.add_argument("--past", metavar="T",
                   help="one decode step of a Hugging Face decoder with T cached tokens (a symbol or a number)")
    p.add_argument("--generate", metavar="N",
                   help="prefill the input's L tokens, then N decode steps, summed in closed form")
    p.add_argument("--no-cache", action="store_true", help="derive afresh, neither reading nor writing the cache")
    p.add_argument("--strict", action="store_true", help="exit 1 if any op cannot be costed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--config", metavar="FIELD=SYMBOL,…",
                   help="formulas in the model's own hyperparameters too: hf: config fields or a factory's integer "
                        "arguments, e.g. hidden_size=d,num_hidden_layers=n (a number fixes a field; others keep "
                        "their defaults)")
    p.add_argument("--config-values", metavar="FILE.json",
                   help='evaluate at named configurations: {"7B": {"hidden_size": 4096, ...}, ...} (without '
                        "--config, its fields become the symbols)")


COMMANDS = {"model": ("a whole model's per-layer costs and closed-form totals (torchvision:NAME or file.py:fn)",
                      configure_model, run_model)}
