"""Benchmark: CLI start time and vectorised evaluation of a layer formula.

Run on demand: `python bench/cli_and_layers.py`.  Prints wall times and ratios measured in this run.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    py = sys.executable
    bare = wall([py, "-c", "pass"])
    formula = wall([py, "-m", "symcost.cli", "formula", "conv2d", "--bias"])
    evaluate = wall([py, "-m", "symcost.cli", "eval", "conv2d", "--input", "1x1x130x40", "in_channels=1",
                     "out_channels=32", "kernel_size=4,10", "stride=2,8", "bias=false"])
    torch_import = wall([py, "-c", "import torch"], repeats=3)
    print(f"python start                      {bare:6.3f} s")
    print(f"symcost formula conv2d --bias     {formula:6.3f} s   (target < 1 s; {formula / torch_import:.2f}x an `import torch`)")
    print(f"symcost eval conv2d ...           {evaluate:6.3f} s")
    print(f"python -c 'import torch'          {torch_import:6.3f} s")

    import numpy as np
    import sympy

    import symcost

    cost = symcost.layer("conv2d", bias=True).cost()
    flops = symcost.CONVENTIONS["flops"].count(cost)
    symbols = sorted(flops.free_symbols, key=str)
    rng = np.random.default_rng(0)
    n = 100_000
    cols = {s: rng.integers(1, 5, n) for s in symbols}
    # sizes that make sense: H, W large, kernel <= padded input
    for name in ("H", "W"):
        cols[sympy.Symbol(name, integer=True, positive=True)] = rng.integers(32, 512, n)
    args = [cols[s] for s in symbols]
    t = time.perf_counter()
    fn = sympy.lambdify(symbols, flops, modules="numpy")
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    out = fn(*args)
    vector_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(200):
        flops.xreplace({s: sympy.Integer(int(a[i])) for s, a in zip(symbols, args)})
    subs_s = (time.perf_counter() - t) / 200 * n
    print(f"conv2d FLOPs at {n:,} size combinations: lambdify {compile_s * 1e3:.1f} ms + NumPy {vector_s * 1e3:.1f} ms "
          f"(sympy substitution one by one: ~{subs_s:.0f} s, {subs_s / vector_s:,.0f}x slower); checksum {int(out.sum())}")


if __name__ == "__main__":
    main()
