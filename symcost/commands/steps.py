"""`symcost model … --backward / --per-token`: a training step split into forward and backward, per token.

Called from ``models.run_model``; renders what ``symcost.model_report.step_report`` computes.  Evaluations
(``--at``) are exact sympy arithmetic: a per-token value need not be an integer, and is printed as "p/q" then.
"""
from __future__ import annotations

import json

from ..parse import InputSpec, UsageError
from ..render import count, pairs, table


def run_step(args) -> int:
    from ..model_report import step_report
    from ..sweep import parse_assignments
    from .model_text import print_result

    spec = InputSpec.of(args.input)   # parsed once, here
    names = spec.symbols
    if args.at and not names:
        raise UsageError("--at needs symbols in --input (e.g. --input 1xL --at L=128,512)")
    points = parse_assignments(args.at, names) if args.at else None
    report = step_report(args.target, spec, args.convention, points=points, backward=args.backward,
                         per_token=args.per_token, assume_divisible=args.assume_divisible,
                         layers=bool(not names or args.layers or (args.json and not args.at)), train=args.train,
                         input_dtype=args.input_dtype, use_cache=not args.no_cache, progress=not args.json)
    result = report.as_dict()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    evaluations = result.pop("evaluations", ())  # printed below, split per pass
    print_result(result)
    if "backward" in result:
        print(pairs([(f"{name} FLOPs", f"{count(result[name]['flops'])}   MACs {count(result[name]['macs'])}")
                     for name in ("forward", "backward")]))
    for e in evaluations:
        vals = " ".join(f"{k}={v}" for k, v in e["values"].items())
        split = "".join(f"   {n}: {count(e[n]['flops'])}" for n in ("forward", "backward") if n in e)
        print(f"{vals}: FLOPs[{args.convention}] {count(e['total']['flops'])}{split}")
    return 0


def run_decode(args) -> int:
    """`--past T` (one decode step with T cached tokens) or `--generate n` (prefill + n steps, summed)."""
    from ..model_report import decode_report

    if args.past and args.generate:
        raise UsageError("give --past T (one decode step) or --generate n (prefill + n steps), not both")
    if args.backward or args.per_token or args.train or args.assume_divisible:
        raise UsageError("--past and --generate cost inference: not with --backward, --per-token, --train or "
                         "--assume-divisible")
    report = decode_report(args.target, InputSpec.of(args.input), args.convention, past=args.past, generate=args.generate,
                           at=args.at, use_cache=not args.no_cache, progress=not args.json,
                           config=getattr(args, "config", None))
    result = report.as_dict()
    parts, uncovered = report.parts, report.uncovered
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    first = result[next(iter(parts))]
    if "params" in first:  # the same weights in every part: one line, as `symcost model` prints them
        print(f"params  {count(first['params'])}")
    print(table(None, [(name, f"MACs {count(result[name]['macs'])}",
                        f"FLOPs[{args.convention}] {count(result[name]['flops'])}",
                        f"reads {count(result[name]['reads'])}", f"writes {count(result[name]['writes'])}")
                       for name in parts]))
    for e in result.get("evaluations", ()):
        vals = " ".join(f"{k}={v}" for k, v in e["values"].items())
        print(f"{vals}: FLOPs[{args.convention}] {count(e['total']['flops'])}   reads {count(e['total']['reads'])}")
    if uncovered:
        print("UNCOVERED (not costed, not counted): " + ", ".join(f"{k} x{v}" for k, v in uncovered.items()))
    for n in result["notes"]:
        print(f"note: {n}")
    return 0
