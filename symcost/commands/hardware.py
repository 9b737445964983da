"""`symcost fold`: inference-time transforms of a real model, checked numerically against the original."""
from __future__ import annotations

import argparse
import json

from ..parse import UsageError, parse_shape


def run_fold(args) -> int:
    from ..fold import FoldError, fold_batchnorm, randomize_batchnorm
    from ..targets import load_target

    shape = parse_shape(args.input, allow_symbols=False)
    model = load_target(args.target)
    if args.target.strip().startswith("torchvision:"):
        # weights=None leaves mean 0, var 1, gamma 1, beta 0: random statistics make the check meaningful
        randomize_batchnorm(model, seed=args.seed)
    model.eval()  # folding is an inference transform; a BN in training mode would be skipped
    try:
        result = fold_batchnorm(model, shape)
        diff, scale = result.compare(shape, seed=args.seed)
    except FoldError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps({"target": args.target, "input_shape": list(shape), **result.as_dict(),
                          "max_abs_diff": diff, "max_abs_output": scale}, indent=2))
        return 0
    print(f"{args.target}  input {'x'.join(map(str, shape))}  (pairs found with {result.method})")
    print(result.message)
    for bn, reason in result.skipped:
        print(f"  skipped {bn}: {reason}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"max |folded - original| = {diff:.3g}  (max |output| = {scale:.3g})")
    return 0


def configure_fold(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="torchvision:NAME (weights=None, BN statistics randomised) or "
                                  "path/to/file.py:callable (a module, or a callable returning one)")
    p.add_argument("--input", required=True, metavar="SHAPE", help="input shape like 1x3x64x64, for the "
                   "data-flow check and the numerical comparison")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input and BN statistics (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {
    "fold": ("fold each eval-mode BatchNorm into the conv/linear before it, on a copy; report pairs, skips with "
             "reasons, and max |difference| on a random input", configure_fold, run_fold),
}
