"""`symcost compare TARGET --input SHAPE`: what fvcore, thop, ptflops and torchprofile report for a model, and why.

Parses, calls ``symcost.compare.compare_target`` (one trace, every tool's number derived from it) and renders the
``Comparison``: the tools' numbers, a per-family table that shows where they part, each tool's quirks that say why.
``--run-peers`` also runs the installed tools on a real random input and shows their own numbers alongside.
"""
from __future__ import annotations

import argparse
import json

from ..compare import Comparison, compare_target
from ..parse import parse_shape
from ..progress import add_quiet_option, status
from ..render import count, pairs, table


def _grid(header: list[str], rows: list[list[str]], align: str, indent: int = 0) -> list[str]:
    """Columns each left- ("l") or right-aligned ("r") as ``align`` says."""
    return table(header, rows, {i for i, a in enumerate(align) if a == "r"}, indent=indent).splitlines()


def render(result: Comparison) -> str:
    shape = "x".join(map(str, result.input_shape))
    lines = [f"{result.target}  input {shape}  (eval mode, traced once: every number is derived by symcost from "
             "that trace under the tool's convention)", ""]
    ran = result.ran
    header = ["tool", "symcost says", "unit"] + (["tool's own", ""] if ran else []) + ["what the tool reports"]
    rows = []
    for name, p in result.peers.items():
        row = [name, count(p.number), p.unit]
        if ran:
            own = count(p.tool) if p.status == "ran" else p.status
            row += [own, "" if p.match is None else ("=" if p.match else "DIFFERS")]
        rows.append(row + [p.reports])
    lines += _grid(header, rows, "lrl" + ("rl" if ran else "") + "l")
    lines.append("")

    names = result.conventions
    header = ["family", "calls"] + names
    rows = []
    for fam, v in result.families.items():
        calls = str(v["calls"]) + (f" ({v['functional_calls']} fn)" if v["functional_calls"] else "")
        rows.append([fam, calls] + [count(v[n]) for n in names])
    rows.append(["total", ""] + [count(result.totals[n]) for n in names])
    lines.append("per family (fn: calls outside any nn.Module, which module-hook tools such as thop never see):")
    lines += _grid(header, rows, "lr" + "r" * len(names), indent=2)
    lines.append("")

    lines.append("gap to macs, by family:")
    gaps = []
    for name, p in result.peers.items():
        gap = ", ".join(f"{f} {d:+,}" for f, d in p.gap_to_macs.items()) or "none"
        gaps.append((name, f"{p.number - result.totals['macs']:+,}: {gap}"))
    lines += pairs(gaps, indent=2).splitlines()
    lines.append("")

    lines.append("quirks that apply to this model (* the symcost preset does not copy it, so it differs there):")
    for name, p in result.peers.items():
        version = f" {p.version}" if p.version else " (not installed)"
        lines.append(f"  {name}{version}")
        for q in p.quirks:
            lines.append(f"    {'*' if not q['reproduced'] else '-'} {q['text']}")
            lines.append(f"      evidence: {q['evidence']}")
    for note in result.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def run_compare(args) -> int:
    shape = parse_shape(args.input, allow_symbols=False)
    with status(f"tracing {args.target} and deriving each tool's count" + (", running them" if args.run_peers else "")):
        result = compare_target(args.target, shape, run_peers=args.run_peers, seed=args.seed)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render(result))
    return 0


def configure_compare(p: argparse.ArgumentParser) -> None:
    add_quiet_option(p)
    p.add_argument("target", help="torchvision:NAME (weights=None) or path/to/file.py:callable (a module, or a "
                                  "callable returning one)")
    p.add_argument("--input", required=True, metavar="SHAPE", help="concrete input shape, e.g. 1x3x224x224")
    p.add_argument("--run-peers", action="store_true", help="also run the installed tools (fvcore, thop, ptflops, "
                   "torchprofile) on a random input and show their own numbers; a missing tool is skipped and named")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input for --run-peers (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {
    "compare": ("what fvcore, thop, ptflops and torchprofile report for a model, derived from one trace, with a "
                "per-family table and each tool's quirks that explain the gaps", configure_compare, run_compare),
}
