"""`symcost mfu TARGET --input BxL --step-time S --device NAME [--backward]`: model FLOPs per token and per step,
achieved FLOP/s and MFU against the device's peak for a dtype, with the formula used."""
from __future__ import annotations

import json

from ..progress import add_quiet_option


def run_mfu(args) -> int:
    from ..mfu import device_peak, mfu
    from ..parse import UsageError, parse_shape_names
    from ..training import exact, tokens
    from ..derive import derive

    shape = parse_shape_names(args.input)
    if any(isinstance(d, str) for d in shape):
        raise UsageError(f"symcost mfu needs a concrete input (e.g. 8x2048), got {args.input!r}")
    peak, device, source = device_peak(args.device, args.dtype)   # before tracing: a bad device fails fast
    if args.num_devices < 1:
        raise UsageError(f"--num-devices must be a positive integer, got {args.num_devices}")
    peak *= args.num_devices
    mc = derive(args.target, args.input, use_cache=not args.no_cache, progress=not args.json,
                backward=args.backward)
    from ..conventions import CONVENTIONS

    if args.convention not in CONVENTIONS:
        raise UsageError(f"unknown convention {args.convention!r}; choose one of: {', '.join(CONVENTIONS)}")
    flops = int(mc.total(args.convention)["flops"])
    n = int(tokens(mc.input_shape, getattr(mc, "inputs", None)))
    m = mfu(flops, n, args.step_time, peak)
    what = "forward + backward (one training step, no optimizer)" if args.backward else "forward only"
    formula = (f"MFU = FLOPs_per_step / (step_time x peak) = {flops:,} / ({args.step_time} s x {peak:.4g} FLOP/s) "
               f"= {m.mfu:.4f}")
    result = {
        "target": args.target, "input_shape": [exact(d) for d in mc.input_shape], "pass": what,
        "convention": args.convention, "dtype": args.dtype,
        "device": {"name": device, "count": args.num_devices, "peak_flops": peak, "source": source},
        "tokens_per_step": n, "flops_per_step": flops, "flops_per_token": exact(mc.total(args.convention)["flops"] / n),
        "step_time_s": args.step_time, "achieved_flops_per_s": m.achieved_flops, "mfu": m.mfu, "formula": formula,
        "uncovered": dict(mc.uncovered), "notes": list(mc.notes),
    }
    if m.mfu > 1:
        result["notes"].insert(0, f"MFU above 1 ({m.mfu:.2f}): no device runs above its peak; the step time is too "
                                  f"short for {args.num_devices} device(s) (give --num-devices) or the peak is "
                                  "for another dtype")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.target} on {args.input}: {what}, FLOPs under '{args.convention}'")
    from ..render import count, pairs

    print(pairs([("FLOPs per step", f"{count(flops)}   ({count(n)} tokens)"),
                 ("FLOPs per token", f"{flops / n:,.1f}"),
                 ("achieved", f"{m.achieved_flops / 1e12:,.2f} TFLOP/s   (step time {args.step_time} s)"),
                 ("peak", f"{peak / 1e12:,.1f} TFLOP/s   ({args.num_devices} x {device}, {args.dtype})"),
                 ("MFU", f"{100 * m.mfu:.2f} %")]))
    print(f"formula: {formula}")
    for note in result["notes"]:
        print(f"note: {note}")
    if mc.uncovered:
        print("UNCOVERED (not costed, not counted): " + ", ".join(f"{k} x{v}" for k, v in mc.uncovered.items()))
    return 0


def configure_mfu(p) -> None:
    add_quiet_option(p)
    from ..targets import TARGET_SYNTAX

    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="BxL", help="token ids of one step, e.g. 8x2048")
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
    p.add_argument("--no-cache", action="store_true", help="derive afresh")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {"mfu": ("model FLOPs per token and per step, achieved FLOP/s and MFU from a measured step time",
                    configure_mfu, run_mfu)}
