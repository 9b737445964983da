"""`symcost fold`: inference-time BatchNorm folding of a real model, checked numerically against the original, with
the traced cost (params, MACs, FLOPs, reads/writes) before and after, and its predicted time on a device.

torch is imported inside ``run`` only.
"""
from __future__ import annotations

import argparse
import json

from ..parse import convention_arg, parse_shape
from ..progress import add_quiet_option, status
from ..render import count, seconds, table
from .latency import device_arg, dtype_arg

def run_fold(args) -> int:
    from ..fold import COST_KEYS, fold_target

    shape = parse_shape(args.input, allow_symbols=False)
    device = device_arg(args.device) if args.device is not None else None
    dtype = dtype_arg(args.dtype)
    convention_arg(args.convention)
    with status(f"folding {args.target}'s BatchNorms and checking the output") as spinner:
        report = fold_target(args.target, shape, args.seed, args.convention, device, dtype, on_step=spinner.update)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    result, diff, scale, cost = report.result, report.max_abs_diff, report.max_abs_output, report.cost
    print(f"{args.target}  input {'x'.join(map(str, shape))}  (pairs found with {result.method})")
    print(result.message)
    for bn, reason in result.skipped:
        print(f"  skipped {bn}: {reason}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"max |folded - original| = {diff:.3g}  (max |output| = {scale:.3g})")
    if cost.error:
        print(f"cost: {cost.error}")
    else:
        names = {"params": "params", "buffers": "buffers", "macs": "MACs", "flops": f"FLOPs[{cost.convention}]",
                 "reads": "reads (elements)", "writes": "writes (elements)"}
        rows = [[names[k], count(cost.before[k]), count(cost.after[k]), count(cost.saved[k])] for k in COST_KEYS]
        if cost.predicted:
            p = cost.predicted
            rows.append([f"kernels ({p['device']})", str(p["kernels_before"]), str(p["kernels_after"]),
                         str(p["kernels_before"] - p["kernels_after"])])
            rows.append([f"predicted forward ({p['device']}, {p['dtype']})", seconds(p["before_s"]),
                         seconds(p["after_s"]), f"{100 * p['saving']:.1f} %"])
        print(table(["traced cost", "before", "after", "saved"], rows, {1, 2, 3}))
    return 0


def configure_fold(p: argparse.ArgumentParser) -> None:
    add_quiet_option(p)
    p.add_argument("target", help="torchvision:NAME (weights=None, BN statistics randomised) or "
                                  "path/to/file.py:callable (a module, or a callable returning one)")
    p.add_argument("--input", required=True, metavar="SHAPE", help="input shape like 1x3x64x64, for the "
                   "data-flow check and the numerical comparison")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input and BN statistics (default 0)")
    p.add_argument("--convention", default="flops", metavar="NAME",
                   help="FLOP convention of the before/after cost (default flops)")
    p.add_argument("--device", metavar="PRESET|FILE",
                   help="also the predicted forward time before and after on this device (a preset or a calibrate "
                        "JSON), and the saving")
    p.add_argument("--dtype", default="fp32", help="dtype of the predicted time (default fp32)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {
    "fold": ("fold each eval-mode BatchNorm into the conv/linear before it, on a copy; report pairs, skips with "
             "reasons, max |difference| on a random input, and the traced cost before and after",
             configure_fold, run_fold),
}
