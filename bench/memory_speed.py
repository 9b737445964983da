"""How long a training step's memory in Llama's hyperparameters takes to derive, beside its FLOPs.

    python bench/memory_speed.py            # both, each cold in its own process; a Markdown table for RESULTS.md

`symcost.memory("hf:llama", "BxL", backward=True, optimizer="adamw", config=FIELDS)` against
`symcost.hyper.derive_config("hf:llama", "BxL", FIELDS, backward=True)`: the same six fields (Llama-7B's
architecture as symbols), the same input, one training step each.  Each runs in a fresh Python process with no
derivation cache; imports (torch, transformers, sympy, symcost) are done before its clocks start.  Wall time depends
on the machine's load (recorded); process CPU time (user + system) is the figure that transfers.  Never run in tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

FIELDS = "hidden_size=d,num_hidden_layers=n,intermediate_size=f,num_attention_heads=h,num_key_value_heads=k," \
         "vocab_size=V"

_CHILD = r"""
import json, resource, sys, time
import sympy, torch, transformers  # noqa: F401  (imports before the clocks)
import symcost.footprint, symcost.hyper

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

what, fields = sys.argv[1], sys.argv[2]
wall, start = time.perf_counter(), cpu()
if what == "memory":
    mem = symcost.footprint.memory("hf:llama", "BxL", backward=True, optimizer="adamw", config=fields)
    info = {"derivations": mem.fitting["derivations"], "peak_sums": len(mem.peaks)}
else:
    cc = symcost.hyper.derive_config("hf:llama", "BxL", fields, backward=True)
    info = {"traces": cc.fit["traces"], "concrete": cc.fit.get("concrete_traces", 0)}
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": cpu() - start, **info}))
"""


def cold(what: str) -> dict:
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-c", _CHILD, what, FIELDS], capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def main() -> None:
    rows = []
    for what in ("flops", "memory"):
        r = cold(what)
        detail = (f"{r['traces']} symbolic traces + {r['concrete']} concrete" if what == "flops" else
                  f"{r['derivations']} symbolic derivations; peak: Max of {r['peak_sums']} sums")
        rows.append(f"| {what} of one training step, hf:llama on BxL in d, n, f, h, k, V | {r['wall']:.1f} s | "
                    f"{r['cpu']:.1f} s | {detail} | {r['load']:.1f} |")
        print(rows[-1], file=sys.stderr)
    print("| what | wall | CPU | work | load average |\n|:--|--:|--:|:--|--:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
