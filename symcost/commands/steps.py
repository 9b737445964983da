"""`symcost model … --backward / --per-token`: a training step split into forward and backward, per token.

Called from ``models.run_model``; renders what ``symcost.training`` computes.  Evaluations (``--at``) are exact
sympy arithmetic: a per-token value need not be an integer, and is printed as "p/q" then.
"""
from __future__ import annotations

import json
import time

from ..parse import UsageError, parse_shape_names
from ..render import count, pairs, table


def _parts(mc, convention: str, per_token_by, divisible: int | None) -> dict[str, dict]:
    from ..sweep import assume_divisible
    from ..training import per_token, split

    out = {}
    for name, part in split(mc).items():
        total = part.total(convention)
        if divisible:
            total = {m: assume_divisible(e, mc.symbols, divisible) for m, e in total.items()}
        out[name] = per_token(total, per_token_by) if per_token_by is not None else total
    return out


def run_step(args) -> int:
    from ..conventions import CONVENTIONS, get_convention
    from ..derive import derive
    from ..model_report import row_json
    from ..sweep import parse_assignments
    from ..training import exact, tokens
    from .models import _print_text

    started = time.perf_counter()
    if args.convention not in CONVENTIONS:
        raise UsageError(f"unknown convention {args.convention!r}; choose one of: {', '.join(CONVENTIONS)}")
    if args.assume_divisible is not None and args.assume_divisible < 1:
        raise UsageError(f"--assume-divisible needs a positive integer, got {args.assume_divisible}")
    names = sorted({d for d in parse_shape_names(args.input) if isinstance(d, str)})
    if args.at and not names:
        raise UsageError("--at needs symbols in --input (e.g. --input 1xL --at L=128,512)")
    points = parse_assignments(args.at, names) if args.at else None
    mc = derive(args.target, args.input, train=args.train, use_cache=not args.no_cache, progress=not args.json,
                input_dtype=args.input_dtype, backward=args.backward)
    n_tokens = tokens(mc.input_shape, getattr(mc, "inputs", None)) if args.per_token else None
    parts = _parts(mc, args.convention, n_tokens, args.assume_divisible)
    result = {
        "target": args.target,
        "input_shape": [exact(d) for d in mc.input_shape],
        "convention": args.convention,
        "convention_summary": get_convention(args.convention).summary,
        **{name: {m: exact(v) for m, v in t.items()} for name, t in parts.items()},
        "units": {"macs": "multiply-accumulates", "flops": f"operations under '{args.convention}'",
                  "reads": "elements", "writes": "elements"},
    }
    if n_tokens is not None:
        result["per_token"] = {"divided_by": exact(n_tokens), "metrics": ["macs", "flops", "reads", "writes"],
                               "why": "tokens in one step: batch x sequence length of the input; params and "
                                      "buffers are not divided"}
    if names:
        result["formula"] = {m: str(parts["total"][m]) for m in ("params", "macs", "flops")}
    if points:
        result["evaluations"] = [_evaluate(mc, parts, p) for p in points]
    if not names or args.layers or (args.json and not args.at):
        conv = get_convention(args.convention)
        result["layers"] = [{**row_json(r, conv), "backward": r.backward} for r in mc.rows]
    result.update(uncovered=dict(mc.uncovered), zero_cost_ops=dict(mc.zero_cost_ops), notes=list(mc.notes))
    if n_tokens is not None:
        result["notes"].append(f"per token: MACs, FLOPs, reads and writes divided by {exact(n_tokens)} tokens "
                               "(batch x sequence length)")
    result["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    evaluations = result.pop("evaluations", ())  # printed below, split per pass
    _print_text(result)
    if "backward" in result:
        print(pairs([(f"{name} FLOPs", f"{count(result[name]['flops'])}   MACs {count(result[name]['macs'])}")
                     for name in ("forward", "backward")]))
    for e in evaluations:
        vals = " ".join(f"{k}={v}" for k, v in e["values"].items())
        split = "".join(f"   {n}: {count(e[n]['flops'])}" for n in ("forward", "backward") if n in e)
        print(f"{vals}: FLOPs[{args.convention}] {count(e['total']['flops'])}{split}")
    return 0


def _evaluate(mc, parts: dict, point: dict) -> dict:
    import sympy

    from ..training import exact

    try:
        mc.check_domain(point)
    except ValueError as e:
        raise UsageError(str(e)) from None
    subs = {s: sympy.Integer(point[str(s)]) for s in mc.symbols}
    return {"values": point, **{name: {m: exact(v.xreplace(subs)) for m, v in t.items()} for name, t in parts.items()}}


def run_decode(args) -> int:
    """`--past T` (one decode step with T cached tokens) or `--generate n` (prefill + n steps, summed)."""
    import sympy

    from ..conventions import CONVENTIONS, get_convention
    from ..decode import tidy
    from ..parse import parse_shape
    from ..sweep import parse_assignments
    from ..training import exact

    started = time.perf_counter()
    if args.convention not in CONVENTIONS:
        raise UsageError(f"unknown convention {args.convention!r}; choose one of: {', '.join(CONVENTIONS)}")
    if args.past and args.generate:
        raise UsageError("give --past T (one decode step) or --generate n (prefill + n steps), not both")
    if args.backward or args.per_token or args.train or args.assume_divisible:
        raise UsageError("--past and --generate cost inference: not with --backward, --per-token, --train or "
                         "--assume-divisible")
    shape = parse_shape(args.input)
    if len(shape) != 2:
        raise UsageError(f"--past and --generate need token ids of shape B x L, got {args.input!r}")
    if not args.target.strip().startswith("hf:"):
        raise UsageError("--past and --generate need a Hugging Face decoder (hf:MODEL_TYPE)")
    from ..derive import derive_decode

    result = {"target": args.target, "input_shape": [exact(sympy.sympify(d)) for d in shape],
              "convention": args.convention, "convention_summary": get_convention(args.convention).summary}
    if args.past:
        got = derive_decode(args.target, args.input, past=args.past, use_cache=not args.no_cache,
                            progress=not args.json)
        mc = got["step"]
        parts = {"total": {m: tidy(e) for m, e in mc.total(args.convention).items()}}
        result["past"] = args.past
        notes = [f"one decode step: {exact(sympy.sympify(shape[1]))} new token(s) per sequence with {args.past} "
                 "cached tokens per layer (a DynamicCache); reads include the cache"]
        derivations, symbols = (mc,), mc.symbols
    else:
        g = derive_decode(args.target, args.input, generate=args.generate, convention=args.convention,
                          use_cache=not args.no_cache, progress=not args.json)
        parts = {k: g[k] for k in ("total", "prefill", "decode")}
        result["generate"] = args.generate
        result["step_formula"] = {m: str(g["step"][m]) for m in ("macs", "flops", "reads", "writes")}
        notes = [f"prefill of {exact(sympy.sympify(shape[1]))} tokens, then {args.generate} decode steps of one "
                 f"token at T = {exact(sympy.sympify(shape[1]))} … (prefill + steps - 1) cached tokens; decode is "
                 f"the step formula in {g['step_symbol']} summed in closed form"]
        derivations = g["derivations"]
        symbols = sorted(set().union(*[e.free_symbols for e in parts["total"].values()]), key=str)
    moe_notes = got["notes"] if args.past else g["notes"]
    for name, t in parts.items():
        result[name] = {m: exact(v) for m, v in t.items()}
    names = [str(s) for s in symbols]
    if names:
        result["formula"] = {m: str(parts["total"][m]) for m in ("macs", "flops", "reads", "writes")}
    if args.at:
        points = parse_assignments(args.at, names)
        result["evaluations"] = []
        for p in points:
            subs = {s: sympy.Integer(p[str(s)]) for s in symbols}
            result["evaluations"].append({"values": p, **{n: {m: exact(v.xreplace(subs)) for m, v in t.items()}
                                                          for n, t in parts.items()}})
    uncovered: dict = {}
    for d in derivations:
        for k, v in d.uncovered.items():
            uncovered[k] = uncovered.get(k, 0) + v
    result.update(uncovered=uncovered, notes=moe_notes + notes + [n for d in derivations for n in d.notes])
    result["seconds"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(table(None, [(name, f"MACs {count(result[name]['macs'])}",
                        f"FLOPs[{args.convention}] {count(result[name]['flops'])}",
                        f"reads {count(result[name]['reads'])}") for name in parts]))
    for e in result.get("evaluations", ()):
        vals = " ".join(f"{k}={v}" for k, v in e["values"].items())
        print(f"{vals}: FLOPs[{args.convention}] {count(e['total']['flops'])}   reads {count(e['total']['reads'])}")
    if uncovered:
        print("UNCOVERED (not costed, not counted): " + ", ".join(f"{k} x{v}" for k, v in uncovered.items()))
    for n in result["notes"]:
        print(f"note: {n}")
    return 0
