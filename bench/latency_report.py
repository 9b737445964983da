"""How well does the per-kind time model order and size per-layer times on this CPU?  A Markdown table.

    .venv/bin/python bench/latency_report.py                     # calibrates first; 1 thread
    .venv/bin/python bench/latency_report.py --device symcost-device.json --repeats 20

Per model: the traced layers' predicted times on this machine (``symcost calibrate``: per-kind host time and
attained fractions, ``symcost.timing``), each layer's measured time (forward hooks / dispatch-mode timing,
``symcost.timing.measure.measure_layers``; the same as ``symcost latency``), Spearman's rank correlation between
the two and that of the naive roofline (the same device's roofs, no kinds, no per-call cost), the totals, and the
BatchNorm layers' share of FLOPs, of bytes, of predicted time and of measured time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: (label, builder, input shape)
CASES = [
    ("seed 001 CNN", "seed001", (1, 3, 32, 32)),
    ("seed 001 CNN", "seed001", (32, 3, 32, 32)),
    ("resnet18", "torchvision:resnet18", (1, 3, 224, 224)),
    ("resnet50", "torchvision:resnet50", (1, 3, 224, 224)),
    ("mobilenet_v2", "torchvision:mobilenet_v2", (1, 3, 224, 224)),
    # not among the CPU targets: kinds ResNet-50 lacks (SiLU, squeeze-excitation, 5x5 depthwise), big Linears
    ("efficientnet_b0", "torchvision:efficientnet_b0", (1, 3, 224, 224)),
    ("vgg16_bn", "torchvision:vgg16_bn", (1, 3, 224, 224)),
]


def load(spec: str):
    if spec == "seed001":
        from derivations.seed001_batchnorm_time import build

        return build(True)
    from symcost.targets import load_target

    return load_target(spec).eval()


def run_case(spec: str, shape: tuple, device, repeats: int, stat: str) -> dict:
    from symcost.timing import Device, predict, spearman, total_time
    from symcost.timing.measure import measure_layers
    from symcost.tracing import trace

    model = load(spec)
    mc = trace(model, shape)
    est = predict(mc, device, "fp32", "flops")
    naive = predict(mc, Device("naive", device.peak_flops, device.bandwidth), "fp32", "flops", overhead=False)
    m = measure_layers(model, mc, shape, "fp32", repeats=repeats, stat=stat)
    pairs = [(e.time_s, t) for e, t in zip(est, m.per_row) if t is not None]
    plain = [(e.time_s, t) for e, t in zip(naive, m.per_row) if t is not None]
    bn = [i for i, e in enumerate(est) if e.family == "norm"]

    def share(values):
        total = sum(values)
        return sum(values[i] for i in bn) / total if total else 0.0

    measured = [t or 0.0 for t in m.per_row]
    return {"layers": len(est), "compared": len(pairs),
            "spearman": spearman([a for a, _ in pairs], [b for _, b in pairs]),
            "naive": spearman([a for a, _ in plain], [b for _, b in plain]),
            "predicted_s": total_time(est), "measured_layers_s": m.layers_s, "measured_forward_s": m.forward_s,
            "bn_flops": share([e.flops for e in est]), "bn_bytes": share([e.bytes for e in est]),
            "bn_predicted": share([e.time_s for e in est]), "bn_measured": share(measured),
            "regime": m.regime}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", help="device JSON from `symcost calibrate` (default: calibrate now)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--stat", choices=("median", "min"), default="median")
    p.add_argument("--keep-memory", action="store_true", help="stop glibc returning freed memory to the OS first")
    args = p.parse_args(argv)

    import torch

    from symcost.timing import Device
    from symcost.timing.calibrate import calibrate
    from symcost.timing.measure import keep_freed_memory, regime_text

    kept = keep_freed_memory() if args.keep_memory else False
    torch.set_num_threads(args.threads)
    device = Device.load(args.device) if args.device else calibrate()
    print(f"device: {device.peak_flops / 1e9:.1f} GFLOP/s, {device.bandwidth / 1e9:.1f} GB/s, "
          f"{device.overhead_s * 1e6:.1f} us per call", file=sys.stderr)
    rows = []
    regime = None
    for label, spec, shape in CASES:
        r = run_case(spec, shape, device, args.repeats, args.stat)
        regime = r["regime"]
        print(f"  {label} {shape}: spearman {r['spearman']:.3f}", file=sys.stderr)
        rows.append(f"| {label} | {shape[0]} | {r['layers']} | {r['spearman']:.3f} | {r['naive']:.3f} | "
                    f"{r['predicted_s'] * 1e3:.2f} | "
                    f"{r['measured_layers_s'] * 1e3:.2f} | {r['measured_forward_s'] * 1e3:.2f} | "
                    f"{100 * r['bn_flops']:.2f} | {100 * r['bn_bytes']:.1f} | {100 * r['bn_predicted']:.1f} | "
                    f"{100 * r['bn_measured']:.1f} |")
    print("| model | batch | layers | Spearman | naive Spearman | predicted ms | measured ms (layers) | "
          "measured ms (forward) | BN % FLOPs | BN % bytes | BN % predicted | BN % measured |")
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    print("\n".join(rows))
    print()
    print(f"Regime: {regime_text(regime)}; {'minima' if args.stat == 'min' else 'medians'} of {args.repeats} repeats; "
          f"{'freed memory kept (mallopt)' if kept else 'default allocator'}; roofs on this machine: "
          f"{device.peak_flops / 1e9:.1f} GFLOP/s, {device.bandwidth / 1e9:.1f} GB/s; per-kind host times "
          + ", ".join(f"{k} {device.host_s(k) * 1e6:.1f} us" for k in device.kinds) + "; FLOPs under `flops`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
