"""`symcost model TARGET --input SHAPE`: a whole model's per-layer costs and closed-form totals.

A cached sweep (`--at`) imports neither torch nor sympy: it reads the derivation's ``Summary`` (plain data) and
evaluates its expression trees with NumPy.
"""
from __future__ import annotations

import json
import sys

from . import NO_CACHE_HELP
from ..model_report import METRICS
from ..progress import add_quiet_option
from .model_text import evaluations_text, print_result


def request_of(args):
    """The command line's arguments as one typed ``ModelRequest`` (parsed and checked here, once)."""
    from ..request import ModelRequest
    from ..sweep import check_assignments

    check_assignments(args.at)  # every mode: bounded before anything is derived
    return ModelRequest.of(args.target, args.input, convention=args.convention, at=args.at, train=args.train,
                           backward=args.backward, per_token=args.per_token, input_dtype=args.input_dtype,
                           trace_sizes=args.trace_sizes, assume_divisible=args.assume_divisible, past=args.past,
                           generate=args.generate, config=args.config, config_values=args.config_values,
                           layers=args.layers, use_cache=not args.no_cache)


def run_model(args) -> int:
    from ..request import Mode, report

    request = request_of(args)
    result = report(request, rows=args.json and not args.at, progress=not args.json)
    if request.mode is Mode.FORWARD:
        return _render_forward(result, args)
    if request.mode is Mode.STEP:
        from .steps import render_step

        return render_step(result, args)
    if request.mode is Mode.CONFIG:
        from .config import render_config

        return render_config(result, request, args)
    from .steps import render_decode

    return render_decode(result, args)


def _render_forward(report, args) -> int:
    result = report.as_dict()
    if args.json:
        named = None if report.per_size else _readable(result, report.summary, None if args.assume_divisible
                                                       else report.mc, rows_too=False)
        if named and named["where"]:   # the text output's names beside the raw formulas, as --config --json
            from ..export.formulas import text
            from .config import with_names

            result = with_names(result, {"where": {str(k): text(v) for k, v in named["where"].items()},
                                         "formula_named": {m: text(e) for m, e in named["exprs"].items()}})
        print(json.dumps(result, indent=2))
    elif report.per_size:
        print(evaluations_text(report.evaluations, args.convention))
        print(f"note: {report.notes[0]}")
    else:
        mc = None if args.assume_divisible else report.mc
        print_result(result, _readable(result, report.summary, mc))
    if args.strict and report.uncovered:
        print(f"symcost model: --strict: {sum(report.uncovered.values())} op call(s) symcost cannot cost: "
              + ", ".join(f"{k} x{v}" for k, v in report.uncovered.items()), file=sys.stderr)
        return 1
    return 0


def _text(e) -> str:
    from ..export.formulas import text

    return f"{int(e):,}" if e.is_Integer else text(e)


def _readable(result: dict, summary, mc, rows_too: bool = True) -> dict | None:
    """The text output's formulas, as ``table --symbolic`` writes them: nested floors named once (``H_1 = …``,
    shared by the totals and every layer row), like terms collected.  None for a concrete input.  ``rows_too``:
    the layer rows too (False: the totals only, for ``--json``)."""
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
    if rows_too and "layers" in result and mc is not None:
        from ..conventions import get_convention

        c = get_convention(conv)
        for r in mc.rows:
            rows.append([*r.cost.output_shape, r.cost.params, r.cost.macs, c.count_row(r)])
    shown, where = readable(exprs + [e for row in rows for e in row], sizes)
    out = {"total": {m: _text(e) for m, e in zip(METRICS, shown[:3])}, "where": where, "layers": [],
           "exprs": dict(zip(METRICS, shown[:3]))}
    i = 3
    for row in rows:
        n = len(row) - 3
        shape, values = shown[i:i + n], shown[i + n:i + len(row)]
        out["layers"].append(["x".join(map(_text, shape)), *(_text(v) for v in values)])
        i += len(row)
    return out


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
                        "symbols (their product is taken) or more points (a symbol given again: --at P=5,N=8 "
                        "--at P=17,N=20)")
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
                   help="one decode step of a decoder taking a transformers KV cache (hf: or a file target) with T "
                        "cached tokens (a symbol or a number); with --config, in the config fields too")
    p.add_argument("--generate", metavar="N",
                   help="prefill the input's L tokens, then N decode steps, summed in closed form")
    p.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)
    p.add_argument("--strict", action="store_true", help="exit 1 if any op cannot be costed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--config", metavar="FIELD=SYMBOL,…",
                   help="formulas in the model's own hyperparameters too: hf: config fields or a factory's integer "
                        "arguments, e.g. hidden_size=d,num_hidden_layers=n (a number fixes a field; others keep "
                        "their defaults)")
    p.add_argument("--config-values", metavar="FILE.json",
                   help='evaluate at named configurations: {"7B": {"hidden_size": 4096, ...}, ...} (without '
                        "--config, its fields become the symbols)")


COMMANDS = {"model": ("a whole model's per-layer costs and closed-form totals (torchvision:NAME, timm:NAME, "
                      "hf:MODEL_TYPE or file.py:fn)",
                      configure_model, run_model)}
