"""`symcost mfu TARGET --input BxL --step-time S --device NAME [--backward]`: model FLOPs per token and per step,
achieved FLOP/s and MFU against the device's peak for a dtype, with the formula used."""
from __future__ import annotations

import json

from . import NO_CACHE_HELP
from ..progress import add_quiet_option


def run_mfu(args) -> int:
    from ..mfu import mfu_report
    from ..parse import InputSpec

    # parsed here, at the edge; mfu_report refuses a symbolic input before it imports anything heavy
    report = mfu_report(args.target, InputSpec.of(args.input), args.step_time, args.device, args.dtype, args.convention,
                        backward=args.backward, num_devices=args.num_devices, use_cache=not args.no_cache,
                        progress=not args.json, input_dtype=args.input_dtype)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    from ..render import count, pairs

    flops, n, device, peak = report.flops_per_step, report.tokens_per_step, report.device["name"], \
        report.device["peak_flops"]
    counted = f" (counted as {report.counted})" if report.counted != args.target else ""
    print(f"{args.target}{counted} on {args.input}: {report.pass_}, FLOPs under '{args.convention}'")
    print(pairs([("FLOPs per step", f"{count(flops)}   ({count(n)} tokens)"),
                 ("FLOPs per token", count(report.flops_per_token)),   # exact: an int, or "p/q"
                 ("achieved", f"{report.achieved_flops_per_s / 1e12:,.2f} TFLOP/s   (step time {args.step_time} s)"),
                 ("peak", f"{peak / 1e12:,.1f} TFLOP/s   ({args.num_devices} x {device}, {args.dtype})"),
                 ("MFU", f"{100 * report.mfu:.2f} %")]))
    print(f"formula: {report.formula}")
    for note in report.notes:
        print(f"note: {note}")
    if report.uncovered:
        print("UNCOVERED (not costed, not counted): " + ", ".join(f"{k} x{v}" for k, v in report.uncovered.items()))
    return 0


def configure_mfu(p) -> None:
    add_quiet_option(p)
    from ..targets import TARGET_SYNTAX

    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="BxL", help="token ids of one step, e.g. 8x2048")
    p.add_argument("--input-dtype", choices=("float32", "float16", "bfloat16", "int64", "int32"),
                   help="the input tensor's dtype (default: int64 token ids for hf: targets, float32 otherwise; "
                        "a file model that starts with an embedding takes int64)")
    p.add_argument("--step-time", type=float, required=True, metavar="SECONDS", help="measured time of one step")
    p.add_argument("--device", required=True, metavar="NAME",
                   help="a device preset (h100-sxm, a100-sxm4-80gb, …) or a JSON file from `symcost calibrate`")
    p.add_argument("--num-devices", type=int, default=1, metavar="N",
                   help="devices the step runs on (data parallel): the peak is N times one device's")
    p.add_argument("--dtype", default="bf16", help="the dtype whose peak counts (default bf16)")
    p.add_argument("--backward", action="store_true", help="a training step: forward + backward")
    p.add_argument("--convention", default="torch", metavar="NAME",
                   help="what counts as a FLOP (default torch: 2 per MAC of matmuls and convolutions, "
                        "the usual 'model FLOPs')")
    p.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {"mfu": ("model FLOPs per token and per step, achieved FLOP/s and MFU from a measured step time",
                    configure_mfu, run_mfu)}
