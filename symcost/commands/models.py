"""`symcost model TARGET --input SHAPE`: a whole model's per-layer costs and closed-form totals."""
from __future__ import annotations

import json
import sys
import time

import sympy

from ..parse import UsageError, convention_arg, parse_shape


def derive(target: str, input_spec: str, *, train: bool = False, use_cache: bool = True, progress: bool = True):
    """The ``ModelCost`` of ``target`` on ``input_spec`` (from the cache when it can: no torch import then)."""
    from .. import cache
    from ..targets import source_hash

    shape = parse_shape(input_spec)
    key = cache.cache_key(target, "x".join(map(str, shape)), train, source_hash(target))
    if use_cache:
        hit = cache.load(key)
        if hit is not None:
            return hit
    with _status(f"tracing {target} on {input_spec}", progress):
        mc = trace_target(target, shape, train=train)
    if use_cache:
        cache.store(key, mc)
    return mc


def trace_target(target: str, shape: tuple, train: bool = False):
    from ..targets import load_target
    from ..tracing import TraceError, trace

    model = load_target(target, device="meta")
    try:
        return trace(model, shape, target=target, train=train)
    except TraceError as e:
        raise UsageError(str(e)) from None


class _status:
    """A spinner on stderr while slow work runs (only on a terminal)."""

    def __init__(self, text: str, enabled: bool):
        self.text, self.enabled = text, enabled and sys.stderr.isatty()

    def __enter__(self):
        if self.enabled:
            from rich.console import Console

            self._s = Console(stderr=True).status(self.text)
            self._s.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._s.__exit__(*exc)


def _int_or_str(e):
    e = sympy.sympify(e)
    return int(e) if e.is_Integer else sympy.sstr(e)


def _fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _per_point(target: str, shape: tuple, points: list[dict], conv, train: bool, progress: bool) -> list[dict]:
    """A concrete trace per point, for models whose graph changes with the input size."""
    out = []
    from rich.progress import Progress

    with Progress(disable=not (progress and sys.stderr.isatty()), transient=True) as bar:
        task = bar.add_task("tracing each size", total=len(points))
        for values in points:
            concrete = tuple(int(d.xreplace({sympy.Symbol(k, integer=True, positive=True): v
                                             for k, v in values.items()})) if isinstance(d, sympy.Basic) else d
                             for d in shape)
            mc = trace_target(target, concrete, train)
            tot = mc.total(conv)
            out.append({"values": values, **{m: int(tot[m]) for m in ("params", "macs", "flops")}})
            bar.advance(task)
    return out


def run_model(args) -> int:
    from ..sweep import assume_divisible, parse_assignments

    conv = convention_arg(args.convention)
    shape = parse_shape(args.input)
    started = time.perf_counter()
    fallback_note = None
    try:
        mc = derive(args.target, args.input, train=args.train, use_cache=not args.no_cache, progress=not args.json)
    except UsageError as e:
        symbolic = any(isinstance(d, sympy.Basic) and d.free_symbols for d in shape)
        if not (symbolic and args.at and ("different operations" in str(e) or "cannot run on input" in str(e)
                                          or "no symbolic formula" in str(e))):
            raise
        mc, fallback_note = None, f"no single formula: {e}; each size was traced on its own"
    if mc is None:
        names = sorted({str(s) for d in shape if isinstance(d, sympy.Basic) for s in d.free_symbols})
        points = parse_assignments(args.at, [sympy.Symbol(n) for n in names])
        evaluations = _per_point(args.target, shape, points, conv, args.train, not args.json)
        result = {"target": args.target, "input_shape": [str(d) for d in shape], "convention": conv.name,
                  "evaluations": evaluations, "notes": [fallback_note]}
        print(json.dumps(result, indent=2) if args.json else _evaluations_text(evaluations, conv))
        return 0
    total = mc.total(conv)
    symbols = mc.symbols
    if args.assume_divisible:
        total = {k: assume_divisible(v, symbols, args.assume_divisible) for k, v in total.items()}
    result = {
        "target": args.target,
        "input_shape": [_int_or_str(d) for d in mc.input_shape],
        "convention": conv.name,
        "convention_summary": conv.summary,
        "total": {k: _int_or_str(total[k]) for k in ("params", "buffers", "macs", "flops", "reads", "writes")},
        "units": {"macs": "multiply-accumulates", "flops": f"operations under '{conv.name}'",
                  "reads": "elements", "writes": "elements"},
        "uncovered": mc.uncovered,
        "zero_cost_ops": mc.zero_cost_ops,
        "notes": mc.notes,
    }
    if symbols:
        result["formula"] = {k: sympy.sstr(total[k]) for k in ("params", "macs", "flops")}
        if args.assume_divisible:
            result["assumed_divisible_by"] = args.assume_divisible
    if args.at:
        if not symbols:
            raise UsageError("--at needs symbols in --input (e.g. --input 1x3xRxR --at R=224,225)")
        points = parse_assignments(args.at, symbols)
        result["evaluations"] = _evaluate(mc, points, conv, symbols)
    if not symbols or args.layers:
        result["layers"] = [_row_json(r, conv) for r in mc.rows]
    result["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_text(mc, result, conv, bool(symbols))
    if args.strict and mc.uncovered:
        print(f"symcost model: --strict: {sum(mc.uncovered.values())} op call(s) symcost cannot cost: "
              + ", ".join(f"{k} x{v}" for k, v in mc.uncovered.items()), file=sys.stderr)
        return 1
    return 0


def _evaluate(mc, points: list[dict], conv, symbols) -> list[dict]:
    import numpy as np

    fn = mc.lambdified(conv)
    cols = [np.array([p[str(s)] for p in points], dtype=np.int64) for s in symbols]
    bad = np.flatnonzero(~mc.valid(*cols))
    if bad.size:
        try:
            mc.check_domain(points[int(bad[0])])
        except ValueError as e:
            raise UsageError(f"{e}" + (f" ({bad.size} of {len(points)} requested points are outside)"
                                       if len(points) > 1 else "")) from None
    values = fn(*cols)
    return [{"values": p, **{m: int(values[m][i]) for m in ("params", "macs", "flops")}}
            for i, p in enumerate(points)]


def _row_json(r, conv) -> dict:
    c = r.cost
    return {"name": r.name, "layer": r.layer, "family": c.family, "args": r.args,
            "input_shapes": [[_int_or_str(d) for d in s] for s in r.input_shapes],
            "output_shape": [_int_or_str(d) for d in c.output_shape],
            "params": _int_or_str(c.params), "macs": _int_or_str(c.macs),
            "flops": _int_or_str(conv.count(c) if conv.sees_functional or not r.functional else 0)}


def _evaluations_text(evaluations, conv) -> str:
    lines = [f"{'values':<20} {'params':>14} {'MACs':>18} {'FLOPs[' + conv.name + ']':>20}"]
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


def _print_text(mc, result, conv, symbolic: bool) -> None:
    if "layers" in result:
        print(f"{result['target']} on {'x'.join(map(str, result['input_shape']))}")
        rows = [[r["name"], r["layer"], "x".join(map(str, r["output_shape"])), _fmt(r["params"]), _fmt(r["macs"]),
                 _fmt(r["flops"])] for r in result["layers"]]
        print(text_table(["layer", "type", "output", "params", "MACs", f"FLOPs[{conv.name}]"], rows, {3, 4, 5}))
    t = result["total"]
    print(f"total params  {_fmt(t['params'])}   (+ {_fmt(t['buffers'])} buffers: running statistics)")
    print(f"total MACs    {_fmt(t['macs'])}")
    print(f"total FLOPs   {_fmt(t['flops'])}   [{conv.name}: {conv.summary}]")
    if "evaluations" in result:
        print(_evaluations_text(result["evaluations"], conv))
    if mc.uncovered:
        print("UNCOVERED (not costed, not counted): " + ", ".join(f"{k} x{v}" for k, v in mc.uncovered.items()))
    for note in mc.notes:
        print(f"note: {note}")


def configure_model(p) -> None:
    from ..targets import TARGET_SYNTAX

    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="SHAPE",
                   help="input shape, e.g. 1x3x224x224, or 1x3xHxW (letters are symbols; the same letter is the same symbol)")
    p.add_argument("--convention", default="flops", metavar="NAME", help="FLOP counting convention (symcost conventions)")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUES",
                   help="evaluate the formulas at R=224,225 or a range R=64:1024:8 (inclusive); repeat for more symbols")
    p.add_argument("--assume-divisible", type=int, metavar="K",
                   help="assume every symbolic size is a multiple of K: floors vanish, a clean polynomial")
    p.add_argument("--layers", action="store_true", help="per-layer rows also for a symbolic input")
    p.add_argument("--train", action="store_true", help="cost the training-mode forward (BatchNorm batch statistics)")
    p.add_argument("--no-cache", action="store_true", help="derive afresh, neither reading nor writing the cache")
    p.add_argument("--strict", action="store_true", help="exit 1 if any op cannot be costed")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {"model": ("a whole model's per-layer costs and closed-form totals (torchvision:NAME or file.py:fn)",
                      configure_model, run_model)}
