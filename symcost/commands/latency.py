"""`symcost calibrate`, `symcost latency`: time on real hardware, next to the formulas.

* ``calibrate``: this machine's roofs (GEMM FLOP/s, memory bandwidth) and, per kind of layer call, its host time
  and attained fractions, as a device JSON file for the time model (``symcost/timing``).
* ``latency``: per layer, the predicted time (kernels, host and device time) next to the measured time of a real
  forward pass, and how well the prediction orders the layers (Spearman's rank correlation).

torch is imported inside each command's ``run`` only.
"""
from __future__ import annotations

import argparse
import json
import math

from ..parse import UsageError, convention_arg, parse_shape
from ..progress import add_quiet_option, status
from ..render import count, pairs, seconds, si, table

# ------------------------------------------------------------------------------------------------ helpers

DEVICE_FILE = "symcost-device.json"


def device_arg(spec: str):
    from ..timing import get_device

    try:
        return get_device(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None


def dtype_arg(name: str) -> str:
    from ..timing import dtype_name

    try:
        return dtype_name(name)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value}")


def _threads(n: int | None) -> None:
    _positive("--threads", n)
    if n:
        import torch

        torch.set_num_threads(n)


def _describe_device(d) -> str:
    kinds = f", {len(d.kinds)} kinds fitted" if d.kinds else ""
    return (f"{d.name}: peak {si(d.peak_flops, 'FLOP/s')} (fp32), bandwidth {si(d.bandwidth, 'B/s')}, "
            f"host {seconds(d.overhead_s)} per call by default{kinds}, "
            f"{'asynchronous' if d.asynchronous else 'synchronous'}, ridge {d.ridge():.3g} FLOP/B")


# ------------------------------------------------------------------------------------------------ calibrate

def run_calibrate(args) -> int:
    from ..timing.calibrate import calibrate
    from ..timing.measure import regime_text
    from ..progress import Progress

    _positive("--repeats", args.repeats)
    _threads(args.threads)
    with Progress("symcost calibrate", enabled=not (args.json or args.quiet)) as progress:
        try:
            device = calibrate(quick=args.quick, repeats=args.repeats, progress=progress, device=args.backend,
                               dtypes=tuple(args.dtype or ()))
        except ValueError as e:
            raise UsageError(str(e)) from None
    out = args.out if args.out is not None or args.json else DEVICE_FILE   # --json alone: stdout only
    if out is not None:
        try:
            device.save(out)
        except OSError as e:
            raise UsageError(f"cannot write {out!r}: {e.strerror or e}") from None
    d = device.details
    if args.json:
        print(json.dumps({**device.to_dict(), **({"written_to": out} if out else {})}, indent=2))
        return 0
    print(f"regime: {regime_text(d['regime'])}{' (--quick: small sizes, cache not DRAM)' if args.quick else ''}")
    g, c, a = d["gemm"], d["copy"], d["add"]
    gemm = f"torch.mm {g['n']}x{g['n']} fp32: {seconds(g['seconds'])} -> {si(g['flops_per_s'], 'FLOP/s')}"
    bandwidth = (f"copy of {c['elements'] * 4 >> 20} MiB: {si(c['bytes_per_s'], 'B/s')}; "
                 f"add: {si(a['bytes_per_s'], 'B/s')} (bytes read + written per second)")
    memory = [("cache", f"last level {device.cache_bytes >> 20} MiB: beyond it a kind runs at most at the "
                        "bandwidth above")] if device.cache_bytes else []
    if device.first_touch_s:
        memory.append(("first touch", f"{seconds(device.first_touch_s * (1 << 20))} per MiB of a new output above "
                                      f"{device.first_touch_above >> 20} MiB (page faults)"))
    print(pairs([("GEMM", gemm), ("bandwidth", bandwidth), *memory,
                 ("overhead", f"tiny nn.ReLU module call {seconds(d['tiny_module_call_s'])}")]))
    calls = {}
    for call in d["calls"]:
        if call.get("dtype", "fp32") != "fp32":
            continue
        shape = "x".join(map(str, call["input_shape"]))
        calls.setdefault(call["kind"], []).append(f"{shape} {seconds(call['seconds'])}")
    rows = [[k, seconds(device.host_s(k)), f"{r.compute:.3g}", f"{r.memory:.3g}", "; ".join(calls.get(k, []))]
            for k, r in device.kinds.items()]
    print(table(["kind", "host per call", "compute fraction", "memory fraction", "measured calls"], rows, {1, 2, 3}))
    per_dtype = [(dt, f"GEMM {si(device.peak(dt), 'FLOP/s')}; fractions (compute / memory): "
                      + ", ".join(f"{k} {r.compute:.3g} / {r.memory:.3g}" for k, r in rates.items()))
                 for dt, rates in device.kinds_by_dtype.items()]
    print(pairs([*per_dtype, ("ridge", f"{device.ridge():.3g} FLOP/byte: layers below it are memory-bound here")]))
    print(f"wrote {args.out}")
    return 0


def configure_calibrate(p: argparse.ArgumentParser) -> None:
    add_quiet_option(p)
    p.add_argument("--out", metavar="FILE", help=f"device JSON to write (default {DEVICE_FILE}, none with --json "
                   "alone: it prints to stdout); use it with --device FILE")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds; they fit in cache, so the "
                   "bandwidth is cache bandwidth): for tests and smoke runs")
    p.add_argument("--backend", choices=("cpu", "cuda"), default="cpu", help="what to calibrate: this CPU "
                   "(default) or the CUDA GPU")
    p.add_argument("--dtype", action="append", metavar="DTYPE", help="also measure this dtype (bf16, fp16 …; "
                   "repeatable): its GEMM peak and per-kind fractions; fp32 is always measured")
    p.add_argument("--repeats", type=int, metavar="N", help="timings per measurement, median taken (default 7; 3 "
                   "with --quick)")
    p.add_argument("--threads", type=int, metavar="N", help="torch.set_num_threads(N) first (default: torch's)")
    p.add_argument("--json", action="store_true", help="print the device JSON")


# -------------------------------------------------------------------------------------------------- latency

def run_latency(args) -> int:
    from ..timing.calibrate import calibrate
    from ..timing.measure import keep_freed_memory
    from ..progress import Progress
    from ..timing.report import latency_report
    from ..targets import load_target
    from ..tracing import TraceError, trace

    shape = parse_shape(args.input, allow_symbols=False)
    dtype = dtype_arg(args.dtype)
    conv = convention_arg(args.convention)
    _positive("--repeats", args.repeats)
    if args.warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.device is not None and args.calibrate:
        raise UsageError("give either --device or --calibrate, not both")
    if args.quick and args.device is not None:
        raise UsageError("--quick applies to calibration, not to --device")
    measure = not args.no_measure
    if measure and dtype in ("int8", "tf32"):
        raise UsageError(f"--dtype {dtype} can be predicted but not measured by this command (int8 needs a "
                         "quantised model, tf32 a GPU): add --no-measure")
    device = device_arg(args.device) if args.device is not None else None
    _threads(args.threads)
    kept = keep_freed_memory() if args.keep_memory else False
    if args.keep_memory and not kept:
        raise UsageError("--keep-memory needs glibc's mallopt, which this platform does not have")
    with status(f"tracing {args.target} on {args.input}"):
        model = load_target(args.target)
        model.eval()
        try:
            mc = trace(model, shape, target=args.target)
        except TraceError as e:
            raise UsageError(str(e)) from None
    progress = Progress("symcost latency", enabled=not (args.json or args.quiet))
    try:
        if device is None:
            progress.update("calibrating this machine")
            device = calibrate(quick=args.quick, progress=progress)
        report = latency_report(args.target, model, mc, shape, device, dtype, conv, measure=measure,
                                repeats=args.repeats, warmup=args.warmup, stat=args.stat, keep_memory=kept,
                                progress=progress)
    finally:
        progress.done()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=_json_default))
        return 0
    _print_latency(report)
    return 0


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(type(o).__name__)


def _print_latency(report) -> None:
    result, est, measured = report.as_dict(), report.estimates, report.measured
    d = result["device"]
    print(f"{result['target']} on {'x'.join(map(str, result['input_shape']))}, {result['dtype']}, "
          f"FLOPs under '{result['convention']}'")
    from ..timing import Device

    reg = result["regime"]
    faults = reg.get("page_faults_per_forward")
    measured_on = (f"{reg['summary']}, batch {reg['batch']}"
                   + (f", {faults:,.0f} page faults per forward" if faults is not None else "")
                   + (", freed memory kept (--keep-memory)" if reg.get("keep_memory") else ""))
    was_measured = any(t is not None for t in measured)
    print(pairs([("predicted on", _describe_device(Device.from_dict(d))),
                 ("measured on", measured_on if was_measured else "not measured (--no-measure)")]))
    rows = []
    for e, t in zip(est, measured):
        i = e.intensity
        rows.append([e.name, e.kind, str(len(e.kernels)), count(e.flops), count(e.bytes),
                     "inf" if math.isinf(i) else f"{i:.3g}", e.bound, seconds(e.time_s)]
                    + ([seconds(t), f"{e.time_s / t:.2f}" if t else "-"] if was_measured else []))
    print(table(["layer", "kind", "kernels", "FLOPs", "bytes", "FLOP/B", "bound", "predicted"]
                + (["measured", "pred/meas"] if was_measured else []), rows, {2, 3, 4, 5, 7, 8, 9}))
    touched = [e for e in est if e.first_touch_s]
    if touched:
        total_s = sum(e.time_s for e in est)
        print(f"note: {len(touched)} call(s) write a new output above the device's first_touch_above: their page "
              f"faults ({seconds(sum(e.first_touch_s for e in touched))}) are "
              f"{100 * sum(e.first_touch_s for e in touched) / total_s:.0f} % of the predicted sum of layers")
    t = result["total"]
    print(f"total         predicted {seconds(t['predicted_s'])} (sum of layers, each alone), "
          f"{seconds(t['predicted_forward_s'])} (whole forward: host {seconds(t['predicted_host_s'])}, device "
          f"{seconds(t['predicted_device_s'])}, {t['kernels']} kernels)"
          + (f"; measured {seconds(t['measured_layers_s'])} (sum of layers), "
             f"{seconds(t['measured_forward_s'])} (whole forward, no hooks)" if t["measured_forward_s"] else ""))
    s = result["share_by_family"]
    fams = sorted(s["predicted_time"], key=lambda f: -s["predicted_time"][f])
    cols = ["flops", "bytes", "predicted_time"] + (["measured_time"] if "measured_time" in s else [])
    print(table(["family"] + [c.replace("_", " ") + " %" for c in cols],
                [[f] + [f"{100 * s[c].get(f, 0):.1f}" for c in cols] for f in fams], set(range(1, len(cols) + 1))))
    if result["spearman"] is not None:
        print(f"Spearman rank correlation, predicted vs measured per-layer time: {result['spearman']:.3f} "
              f"({result['n_compared']} layers)")
    for note in result["notes"]:
        print(f"note: {note}")


def configure_latency(p: argparse.ArgumentParser) -> None:
    add_quiet_option(p)
    from ..targets import TARGET_SYNTAX

    p.add_argument("target", help=TARGET_SYNTAX)
    p.add_argument("--input", required=True, metavar="SHAPE", help="a concrete input shape, e.g. 1x3x224x224")
    p.add_argument("--device", metavar="PRESET|FILE", help="predict for a preset (laptop-cpu, a100-sxm4-80gb, "
                   "h100-sxm, h100-sxm-datasheet) or a JSON file from `symcost calibrate`; default: calibrate this "
                   "machine first")
    p.add_argument("--calibrate", action="store_true", help="calibrate this machine first (the default without "
                   "--device)")
    p.add_argument("--quick", action="store_true", help="with calibration: small sizes (fast, cache not DRAM)")
    p.add_argument("--dtype", default="fp32", help="fp32 (default), fp16, bf16 (measured by running the model in "
                   "it); int8, tf32 prediction only")
    p.add_argument("--convention", default="flops", metavar="NAME", help="FLOP convention (default flops)")
    p.add_argument("--repeats", type=int, default=10, metavar="N", help="timed passes, medians taken (default 10)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed passes first (default 2)")
    p.add_argument("--threads", type=int, metavar="N", help="torch.set_num_threads(N) first (default: torch's)")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="summary of the repeats: median (default) or min (least disturbed on a shared machine)")
    p.add_argument("--keep-memory", action="store_true", help="stop glibc malloc from returning freed memory to the "
                   "OS first, so forwards do not page-fault their activations in again (see symcost/timing/measure.py)")
    p.add_argument("--no-measure", action="store_true", help="predict only")
    p.add_argument("--json", action="store_true", help="print one JSON object")


COMMANDS = {
    "calibrate": ("measure this machine's GEMM FLOP/s, memory bandwidth, first-touch cost of new memory and, per "
                  "kind of layer call, its host time and attained fractions (about 15 s); write a device JSON for "
                  "the time model", configure_calibrate, run_calibrate),
    "latency": ("per layer, predicted (kernels, host and device time) vs measured forward time on this machine, "
                "and their rank "
                "correlation", configure_latency, run_latency),
}
