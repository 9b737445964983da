"""`symcost compare TARGET --input SHAPE`: what fvcore, thop, ptflops and torchprofile report for a model, and why.

The model is traced once (eval mode, a concrete input); every tool's number is then derived by symcost from that
trace under the tool's convention (``symcost/peers.py``), next to symcost's own ``macs``, ``flops`` and ``torch``.
A per-family table shows where the numbers part, and each tool's quirks that apply to this model say why.
``--run-peers`` also runs the installed tools on a real random input and shows their own numbers alongside.
"""
from __future__ import annotations

import argparse
import json

from ..parse import UsageError, parse_shape
from ..progress import add_quiet_option, status

#: symcost's own conventions shown beside the peers
OWN = ("macs", "flops", "torch")
#: the order families are listed in (any other family follows, in trace order)
FAMILY_ORDER = ("conv", "linear", "matmul", "attention", "norm", "activation", "pool", "reduction", "elementwise",
                "embedding", "memory", "reshape")


def compare_target(target: str, shape: tuple, run_peers: bool = False, seed: int = 0) -> dict:
    """Everything ``compare`` prints, as one JSON-ready dict (see ``run_compare``)."""
    import torch

    from ..cost import to_int
    from ..layers.base import LayerError
    from ..peers import PEERS
    from ..targets import load_target
    from ..tracing import TraceError, trace

    model = load_target(target)
    model.eval()
    try:
        mc = trace(model, shape, target=target)
    except (TraceError, LayerError) as e:
        raise UsageError(str(e)) from None

    names = [*OWN, *PEERS]
    totals = {n: to_int(mc.total(n)["flops"], f"{n} total") for n in names}
    by = {n: {f: to_int(v, f"{n} {f}") for f, v in mc.by_family(n).items()} for n in names}
    seen = [r.cost.family for r in mc.rows if r.is_call]
    families = [f for f in FAMILY_ORDER if f in seen] + [f for f in dict.fromkeys(seen) if f not in FAMILY_ORDER]
    table = {}
    for f in families:
        rows = [r for r in mc.rows if r.cost.family == f]
        table[f] = {"calls": len(rows), "functional_calls": sum(r.functional for r in rows),
                    **{n: by[n].get(f, 0) for n in names}}

    x = None
    if run_peers:
        torch.manual_seed(seed)
        x = torch.randn(*shape)
    peers = {}
    for name, peer in PEERS.items():
        gap = {f: table[f][name] - table[f]["macs"] for f in families if table[f][name] != table[f]["macs"]}
        entry = {
            "number": totals[name], "unit": peer.unit, "reports": peer.reports,
            "convention": peer.convention.summary, "source": peer.convention.source,
            "installed": peer.installed, "version": peer.version, "gap_to_macs": gap,
            "quirks": [q.as_dict() for q in peer.applicable_quirks(mc)],
            "tool": None, "match": None, "status": "not run (add --run-peers)",
        }
        if run_peers:
            if not entry["installed"]:
                entry["status"] = f"not installed (pip install {peer.package})"
            else:
                try:
                    entry["tool"] = peer.run(model, x)
                except Exception as e:  # the tool's own failure, in one line
                    msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    entry["status"] = f"failed: {type(e).__name__}: {msg}"
                else:
                    entry["match"] = entry["tool"] == entry["number"]
                    entry["status"] = "ran"
        peers[name] = entry
    notes = list(mc.notes)
    if mc.uncovered:
        notes.append("aten ops symcost could not cost (every convention misses them): "
                     + ", ".join(f"{op} x{n}" for op, n in sorted(mc.uncovered.items())))
    return {"target": target, "input_shape": list(shape), "mode": "eval", "conventions": names, "totals": totals,
            "families": table, "peers": peers, "notes": notes}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:,}"


def _grid(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """Columns padded to width, each left- ("l") or right-aligned ("r") as ``align`` says."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        out.append("  ".join(cells).rstrip())
    return out


def render(result: dict) -> str:
    shape = "x".join(map(str, result["input_shape"]))
    lines = [f"{result['target']}  input {shape}  (eval mode, traced once: every number is derived by symcost from "
             "that trace under the tool's convention)", ""]
    ran = any(p["status"] != "not run (add --run-peers)" for p in result["peers"].values())
    header = ["tool", "symcost says", "unit"] + (["tool's own", ""] if ran else []) + ["what the tool reports"]
    rows = []
    for name, p in result["peers"].items():
        row = [name, _fmt(p["number"]), p["unit"]]
        if ran:
            own = _fmt(p["tool"]) if p["status"] == "ran" else p["status"]
            row += [own, "" if p["match"] is None else ("=" if p["match"] else "DIFFERS")]
        rows.append(row + [p["reports"]])
    lines += _grid(header, rows, "lrl" + ("rl" if ran else "") + "l")
    lines.append("")

    names = result["conventions"]
    header = ["family", "calls"] + names
    rows = []
    for fam, v in result["families"].items():
        calls = str(v["calls"]) + (f" ({v['functional_calls']} fn)" if v["functional_calls"] else "")
        rows.append([fam, calls] + [_fmt(v[n]) for n in names])
    rows.append(["total", ""] + [_fmt(result["totals"][n]) for n in names])
    lines.append("per family (fn: calls outside any nn.Module, which module-hook tools such as thop never see):")
    lines += ["  " + ln for ln in _grid(header, rows, "lr" + "r" * len(names))]
    lines.append("")

    lines.append("gap to macs, by family:")
    for name, p in result["peers"].items():
        gap = ", ".join(f"{f} {d:+,}" for f, d in p["gap_to_macs"].items()) or "none"
        lines.append(f"  {name:<13} {p['number'] - result['totals']['macs']:+,}: {gap}")
    lines.append("")

    lines.append("quirks that apply to this model (* the symcost preset does not copy it, so it differs there):")
    for name, p in result["peers"].items():
        version = f" {p['version']}" if p["version"] else " (not installed)"
        lines.append(f"  {name}{version}")
        for q in p["quirks"]:
            lines.append(f"    {'*' if not q['reproduced'] else '-'} {q['text']}")
            lines.append(f"      evidence: {q['evidence']}")
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def run_compare(args) -> int:
    shape = parse_shape(args.input, allow_symbols=False)
    with status(f"tracing {args.target} and deriving each tool's count" + (", running them" if args.run_peers else "")):
        result = compare_target(args.target, shape, run_peers=args.run_peers, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
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
