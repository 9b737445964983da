"""`symcost model … --backward / --per-token`: a training step split into forward and backward, per token.

Called from ``models.run_model``; renders what ``symcost.request.report`` computes (``model_report.step_report``,
``decode_report``).  Evaluations
(``--at``) are exact sympy arithmetic: a per-token value need not be an integer, and is printed as "p/q" then.
"""
from __future__ import annotations

import json

from ..render import count, pairs, table


def render_step(report, args) -> int:
    """A training step's (or a per-token forward's) ``StepReport``, as text or JSON."""
    from .model_text import print_result

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


def render_decode(report, args) -> int:
    """`--past T` (one decode step with T cached tokens) or `--generate n` (prefill + n steps, summed): a
    ``DecodeReport``, as text or JSON."""
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
