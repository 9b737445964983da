"""How long `--config` takes: deriving Llama in 7 config symbols plus L, and sweeping the formula over 10^6 configs.

    python bench/hyper_speed.py            # both; prints a Markdown table for bench/RESULTS.md
    python bench/hyper_speed.py --sweep    # only the NumPy sweep (derives at a concrete L: seconds, not minutes)

Wall time depends on the machine's load (record it); process CPU time much less.  Imports (torch, transformers,
sympy) are done before any clock starts.  Never run in tests.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

#: Llama's six architecture fields, and a seventh that changes no cost (a constant window: probes only)
FIELDS = ("hidden_size=d,num_hidden_layers=n,intermediate_size=f,num_attention_heads=h,num_key_value_heads=k,"
          "vocab_size=V,max_position_embeddings=P")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def derive(shape: str):
    from symcost.hyper import derive_config

    wall, cpu = time.perf_counter(), _cpu()
    cc = derive_config("hf:llama", shape, FIELDS)
    return cc, time.perf_counter() - wall, _cpu() - cpu


def sweep(cc, count: int = 10**6, repeats: int = 3) -> tuple[float, float]:
    """Best wall time of ``repeats`` evaluations of params, MACs and FLOPs at ``count`` random valid configurations
    (and L where symbolic); 1000 of them checked against exact sympy evaluation."""
    import numpy as np

    rng = np.random.default_rng(0)
    k = rng.integers(2, 17, count)
    h = k * rng.integers(2, 9, count)
    values = {"k": k, "h": h, "d": 2 * h * rng.integers(2, 129, count), "n": rng.integers(2, 129, count),
              "f": rng.integers(2, 65_536, count), "V": rng.integers(2, 262_144, count),
              "P": rng.integers(2, 9000, count),
              "L": rng.integers(1, 8193, count)}
    arrays = [values[str(s)] for s in cc.symbols]
    run = cc.lambdified("torch")
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = run(*arrays)
        best = min(best, time.perf_counter() - t)
    assert out["valid"].all()
    for i in rng.integers(0, count, 1000):
        exact = cc.evaluate({str(s): int(a[i]) for s, a in zip(cc.symbols, arrays)}, "torch")
        assert all(int(out[m][i]) == exact[m] for m in ("params", "macs", "flops")), i
    return best, os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", action="store_true", help="only the sweep (formula derived at L = 2048)")
    args = parser.parse_args()
    import sympy  # noqa: F401  (imports before the clocks)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    rows = []
    shapes = ["1x2048"] if args.sweep else ["1xL", "1x2048"]
    ccs = {}
    for shape in shapes:
        load = os.getloadavg()[0]
        cc, wall, cpu = derive(shape)
        ccs[shape] = cc
        cheap = f" + {cc.fit['concrete_traces']} at L = 225" if "concrete_traces" in cc.fit else ""
        rows.append(f"| derive hf:llama in d, n, f, h, k, V, P on {shape} | {wall:.1f} s | {cpu:.1f} s | "
                    f"{cc.fit['traces']} traces{cheap} | {load:.1f} |")
    cc = ccs[shapes[0]]
    best, load = sweep(cc)
    rows.append(f"| params, MACs, FLOPs at 10^6 configurations ({', '.join(map(str, cc.symbols))}), "
                f"`lambdified` | {best:.2f} s | | best of 3 | {load:.1f} |")
    print("| what | wall | CPU | | load average |\n|:--|--:|--:|:--|--:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
