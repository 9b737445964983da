"""What proving a formula's domain costs: a whole symbolic derivation (recordings, propagation, verification and the
symbolic-size run that reads the guards) against the symbolic run alone and against ``torch.export`` with dynamic
sizes on the same models, in the same process, after imports.

    python bench/proof_speed.py                       # resnet50, mobilenet_v2, gpt2 (L); a Markdown table
    python bench/proof_speed.py --models resnet50 --repeats 3
    python bench/proof_speed.py --timm 12             # also a fixed sample of timm's zoo (tests/test_timm_zoo.py)

Each figure is process CPU time (user + system) of one call, best of ``--repeats``, so a loaded machine still gives
comparable numbers; wall time is printed beside it.  No derivation cache.  Never run in tests.
"""
from __future__ import annotations

import argparse
import resource
import time

MODELS = {
    "resnet50": ("torchvision:resnet50", "1x3xHxW"),
    "mobilenet_v2": ("torchvision:mobilenet_v2", "1x3xHxW"),
    "gpt2": ("hf:gpt2", "1xL"),
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn, repeats: int) -> tuple[float, float]:
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        c, w = _cpu(), time.perf_counter()
        fn()
        best = min(best, (_cpu() - c, time.perf_counter() - w))
    return best


def measure(name: str, repeats: int) -> dict:
    import sympy
    import torch

    import symcost
    from symcost.parse import parse_input_spec
    from symcost.symbols import user_symbol
    from symcost.targets import load_target
    from symcost.tracing.guards import prove

    target, spec = MODELS[name]
    shape = parse_input_spec(spec)
    hints = {"H": 225, "W": 161, "L": 225}
    dtype = "int64" if target.startswith("hf:") else "float32"
    model = load_target(target, device="meta").eval()
    sym = tuple(user_symbol(d) if isinstance(d, str) else sympy.sympify(d) for d in shape)
    free = [d for d in sym if d.is_Symbol]
    out = {"model": name}
    out["derive"] = _timed(lambda: symcost.model(target, spec, use_cache=False), repeats)
    proof = prove(model, sym, {d: hints[str(d)] for d in free}, dtype)
    out["symbolic run"] = _timed(lambda: prove(model, sym, {d: hints[str(d)] for d in free}, dtype), repeats)
    out["guards"] = "proven" if proof.proven else f"sampled ({proof.reason})"

    def export():
        dims = {i: torch.export.Dim.AUTO for i, d in enumerate(sym) if d.is_Symbol}
        x = torch.zeros(*[hints[str(d)] if d.is_Symbol else int(d) for d in sym],
                        dtype=getattr(torch, dtype), device="meta")
        with torch.no_grad():
            torch.export.export(model, (x,), dynamic_shapes=(dims,), strict=False)

    try:
        out["torch.export"] = _timed(export, repeats)
    except Exception as e:  # noqa: BLE001  (a model export refuses: say so in the table)
        out["torch.export"] = f"refused: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return out


def timm_sample(count: int) -> list[tuple[str, str, float]]:
    """(model, input, CPU seconds) of a model's first whole derivation in the process, proof included, for
    ``count`` models spread evenly over the zoo test's list: at 1x3xHxW where the model takes any size, else at its
    own size (a fixed-size ViT; then the refused symbolic attempt is not counted)."""
    import sys
    from pathlib import Path

    import symcost
    from symcost.errors import SymcostError
    from symcost.targets import default_input_size

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_timm_zoo import MODELS as ZOO

    names = list(ZOO.values())
    picked = names[::max(1, len(names) // count)][:count]
    out = []
    for name in picked:
        target = f"timm:{name}"
        spec = "1x3xHxW"
        started = _cpu()
        try:  # the first derivation of the model in this process: cold but for the imports
            symcost.model(target, spec, use_cache=False)
        except SymcostError:
            spec = "x".join(map(str, (1, *default_input_size(target)[-3:])))
            started = _cpu()
            symcost.model(target, spec, use_cache=False)
        out.append((name, spec, _cpu() - started))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--timm", type=int, default=0, metavar="N", help="also N models of timm's zoo, and their median")
    args = p.parse_args()
    import symcost  # noqa: F401  (imports before the clocks)
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    print("| model | symcost derivation, proof included | symbolic run alone | torch.export, dynamic sizes | domain |")
    print("|---|---|---|---|---|")
    for name in args.models:
        row = measure(name, args.repeats)
        cells = [v if isinstance(v, str) else f"{v[0]:.2f} s CPU ({v[1]:.2f} s wall)"
                 for v in (row["derive"], row["symbolic run"], row["torch.export"])]
        print(f"| {name} | " + " | ".join(cells) + f" | {row['guards']} |")
    if args.timm:
        import statistics

        rows = timm_sample(args.timm)
        print("\n| timm model | input | symcost derivation, proof included |\n|---|---|---|")
        for name, spec, cpu in rows:
            print(f"| {name} | {spec} | {cpu:.2f} s CPU |")
        print(f"\nmedian of {len(rows)}: {statistics.median(c for _, _, c in rows):.2f} s CPU")


if __name__ == "__main__":
    main()
