"""A model derivation's result as text: the per-layer table, the totals, the evaluations, the notes (`symcost
model` and its training-step and decode modes print it alike)."""
from __future__ import annotations

from ..render import count, pairs, table


def evaluations_text(evaluations, convention: str) -> str:
    rows = [[" ".join(f"{k}={v}" for k, v in e["values"].items()), count(e["total"]["params"]),
             count(e["total"]["macs"]), count(e["total"]["flops"])] for e in evaluations]
    return table(["values", "params", "MACs", f"FLOPs[{convention}]"], rows, {1, 2, 3})


def print_result(result: dict, readable: dict | None = None) -> None:
    """``readable``: formulas with floors named (see ``commands.models``), in place of the raw strings."""
    name = result["convention"]
    if "layers" in result:
        print(f"{result['target']} on {'x'.join(map(str, result['input_shape']))}")
        rows = [[r["name"], r["layer"], "x".join(map(str, r["output_shape"])), count(r["params"]),
                 count(r["macs"]), count(r["flops"])] for r in result["layers"]]
        if readable and readable["layers"]:
            rows = [[r[0], r[1], *shown] for r, shown in zip(rows, readable["layers"])]
        print(table(["layer", "type", "output", "params", "MACs", f"FLOPs[{name}]"], rows, {3, 4, 5}))
    t = {**result["total"], **(readable["total"] if readable else {})}
    kinds = "; ".join(f"{k} {count(v)}" for k, v in result.get("buffers_by_kind", {}).items())
    print(pairs([("total params", count(t["params"]) + (f"   (+ {count(t['buffers'])} in buffers: {kinds})"
                                                        if kinds else "")),
                 ("total MACs", count(t["macs"])),
                 ("total FLOPs", f"{count(t['flops'])}   [{name}: {result['convention_summary']}]")]))
    if readable and readable["where"]:
        from ..export.formulas import text

        print("where")
        for k, v in readable["where"].items():
            print(f"  {k} = {text(v)}")
    if "evaluations" in result:
        print(evaluations_text(result["evaluations"], name))
    if result["uncovered"]:
        print("UNCOVERED (not costed, not counted): "
              + ", ".join(f"{k} x{v}" for k, v in result["uncovered"].items()))
    for note in result["notes"]:
        print(f"note: {note}")
