"""How long a whole-model derivation takes (issues #10 and #11, "Speed"): Llama-7B in L, with --backward, and Llama
in 7 config fields plus L.

    python bench/derive_speed.py                      # all four, twice each; a Markdown table for bench/RESULTS.md
    python bench/derive_speed.py --only forward backward --repeats 3
    python bench/derive_speed.py --tree ../old-checkout      # the same measurements of another checkout (before/after)

Each measurement runs in a fresh process (no warm sympy cache or memo from an earlier one), with torch, sympy,
transformers and Llama's modelling code imported before the clocks start, and no derivation cache.  Process CPU
time (user + system) is the figure to compare on a loaded machine; wall time is mostly waiting for a CPU there.
Never run in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

#: what each measurement derives: the issue's targets
CASES = {
    "forward": "symcost model hf:llama --input 1xL",
    "backward": "symcost model hf:llama --input 1xL --backward",
    "config": "symcost model hf:llama --input 1xL --config (7 fields, bench/hyper_speed.py)",
    "cli": "whole process: python -m symcost.cli model hf:llama --input 1xL --no-cache (imports included)",
}
TARGETS = {"forward": "3 s", "backward": "6 s", "config": "15 s", "cli": "(none)"}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one(case: str) -> dict:
    """Measure one case in this process (imports first); returns wall and CPU seconds."""
    import sympy  # noqa: F401  (imports before the clocks)
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401

    import symcost.derive  # noqa: F401
    import symcost.hyper  # noqa: F401
    import symcost.tracing  # noqa: F401

    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), _cpu()
    if case == "config":
        from symcost.hyper import derive_config

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from hyper_speed import FIELDS

        cc = derive_config("hf:llama", "1xL", FIELDS)
        check = str(cc.total("flops")["flops"])
    else:
        from symcost.derive import derive

        mc = derive("hf:llama", "1xL", use_cache=False, progress=False, backward=case == "backward")
        check = str(mc.total("flops")["flops"]) if hasattr(mc, "total") else ""
    return {"wall": time.perf_counter() - wall, "cpu": _cpu() - cpu, "load": load, "check": check}


def _process(env: dict, tree: str) -> dict:
    """The whole CLI process, imports included: wall and CPU (user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    wall = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "symcost.cli", "model", "hf:llama", "--input", "1xL", "--no-cache",
                          "--json"], env=env, cwd=tree, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    flops = json.loads(out.stdout)["total"]
    return {"wall": time.perf_counter() - wall, "cpu": cpu, "load": load, "check": json.dumps(flops, sort_keys=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tree", default=None, help="the checkout whose symcost to measure (default: this one)")
    parser.add_argument("--one", choices=[c for c in CASES if c != "cli"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    tree = os.path.abspath(args.tree or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    env = dict(os.environ, PYTHONPATH=tree)
    rows = []
    for case in args.only:
        runs = []
        for _ in range(args.repeats):
            if case == "cli":
                runs.append(_process(env, tree))
                continue
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", case], env=env, cwd=tree,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        checks = {r["check"] for r in runs}
        assert len(checks) == 1, f"{case}: runs disagree"
        cpu = sorted(r["cpu"] for r in runs)
        wall = sorted(r["wall"] for r in runs)
        loads = [r["load"] for r in runs]
        rows.append(f"| {CASES[case]} | {TARGETS[case]} | {cpu[0]:.2f} s ({', '.join(f'{c:.2f}' for c in cpu)}) "
                    f"| {wall[0]:.2f} s ({', '.join(f'{w:.2f}' for w in wall)}) "
                    f"| {min(loads):.1f}–{max(loads):.1f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"tree: {tree}")
    print("| derivation | target | CPU, best (all runs) | wall, best (all runs) | load average |")
    print("|:--|--:|--:|--:|--:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
