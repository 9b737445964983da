"""Benchmark: whole-model cost as whole processes, symcost vs FlopCounterMode and peer tools.

    python bench/models_vs_peers.py [--model resnet50] [--quick]

Every number is a whole process (interpreter start and imports included), measured in this run, median of
repeats.  The sweep is 121 resolutions R = 64..1024 step 8 (``--quick``: 64..1024 step 64).  Peers that are
not installed are skipped.  Results: see bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

PEER_SCRIPTS = {
    "FlopCounterMode": """
        import torch, torchvision
        from torch.utils.flop_counter import FlopCounterMode
        with torch.device("meta"):
            m = torchvision.models.get_model("{model}", weights=None).eval()
        for r in {sizes}:
            with torch.no_grad(), FlopCounterMode(display=False) as c:
                m(torch.empty(1, 3, r, r, device="meta"))
            print(r, c.get_total_flops())
    """,
    "fvcore": """
        import torch, torchvision
        from fvcore.nn import FlopCountAnalysis
        m = torchvision.models.get_model("{model}", weights=None).eval()
        for r in {sizes}:
            f = FlopCountAnalysis(m, torch.zeros(1, 3, r, r))
            f.unsupported_ops_warnings(False); f.uncalled_modules_warnings(False)
            print(r, f.total())
    """,
    "thop": """
        import torch, torchvision, thop
        m = torchvision.models.get_model("{model}", weights=None).eval()
        for r in {sizes}:
            with torch.no_grad():
                macs, params = thop.profile(m, inputs=(torch.zeros(1, 3, r, r),), verbose=False)
            print(r, macs)
    """,
    "ptflops": """
        import torch, torchvision
        from ptflops import get_model_complexity_info
        m = torchvision.models.get_model("{model}", weights=None).eval()
        for r in {sizes}:
            macs, params = get_model_complexity_info(m, (3, r, r), as_strings=False, print_per_layer_stat=False,
                                                     verbose=False)
            print(r, macs)
    """,
}


def run(cmd: list[str], env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - t


def script_time(name: str, model: str, sizes: list[int], repeats: int) -> float | None:
    if name != "FlopCounterMode":
        probe = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
        if probe.returncode:
            return None
    code = textwrap.dedent(PEER_SCRIPTS[name].format(model=model, sizes=sizes))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    try:
        return statistics.median(run([sys.executable, f.name]) for _ in range(repeats))
    except subprocess.CalledProcessError as e:
        print(f"  {name} failed: {e.stderr.decode()[-300:]}")
        return None
    finally:
        os.unlink(f.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--quick", action="store_true", help="16 sizes instead of 121, one repeat of slow peers")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers", default=",".join(PEER_SCRIPTS), help="comma-separated subset of: " + ", ".join(PEER_SCRIPTS))
    args = ap.parse_args()
    step = 64 if args.quick else 8
    sizes = list(range(64, 1025, step))
    symcost = [sys.executable, "-m", "symcost.cli", "model", f"torchvision:{args.model}"]
    sweep = [*symcost, "--input", "1x3xRxR", "--at", f"R=64:1024:{step}", "--json"]
    single = [*symcost, "--input", "1x3x224x224", "--json"]

    print(f"{args.model}: sweep of {len(sizes)} resolutions, whole processes, median of {args.repeats}")
    cold_runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as empty:  # cold: an empty cache, filled by the run
            cold_runs.append(run(sweep, env={"SYMCOST_CACHE_DIR": empty}))
    cold = statistics.median(cold_runs)
    with tempfile.TemporaryDirectory() as cache:
        run(sweep, env={"SYMCOST_CACHE_DIR": cache})  # fill the cache
        cached = statistics.median(run(sweep, env={"SYMCOST_CACHE_DIR": cache}) for _ in range(args.repeats))
    single_cold = statistics.median(run(single + ["--no-cache"]) for _ in range(args.repeats))
    print(f"  symcost sweep, cold (empty cache)  {cold:7.2f} s")
    print(f"  symcost sweep, cached              {cached:7.2f} s")
    print(f"  symcost one size 224, cold         {single_cold:7.2f} s")
    peers_one = {}
    for name in args.peers.split(","):
        if name not in PEER_SCRIPTS:
            raise SystemExit(f"unknown peer {name!r}; choose from {', '.join(PEER_SCRIPTS)}")
        t_sweep = script_time(name, args.model, sizes, 1 if name != "FlopCounterMode" else args.repeats)
        t_one = script_time(name, args.model, [224], args.repeats)
        if t_sweep is None:
            print(f"  {name:<16} not installed or failed: skipped")
            continue
        peers_one[name] = t_one
        print(f"  {name:<16} sweep {t_sweep:7.2f} s   -> symcost cold {t_sweep / cold:5.1f}x faster, "
              f"cached {t_sweep / cached:6.1f}x faster")
        print(f"  {name:<16} one size {t_one:7.2f} s -> symcost one size cold: {single_cold / t_one:4.2f}x its time")
    if peers_one:
        fastest = min(peers_one, key=peers_one.get)
        print(f"  one size: symcost cold / fastest peer ({fastest}) = {single_cold / peers_one[fastest]:.2f} "
              f"(target <= 1.2)")


if __name__ == "__main__":
    main()
