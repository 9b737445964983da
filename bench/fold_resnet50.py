"""Seed 003: does folding BatchNorm speed up ResNet-50 inference on this CPU, and does the roofline predict by how much?

    .venv/bin/python bench/fold_resnet50.py                      # batches 1 and 8, 1 thread, calibrates first
    .venv/bin/python bench/fold_resnet50.py --threads 1,2 --repeats 15 --device symcost-device.json

For each batch size and thread count: torchvision's resnet50 (weights=None, BatchNorm statistics randomised so
the fold is not trivial), eval(), torch.no_grad(); ``symcost.fold.fold_batchnorm`` folds all 53 BatchNorms into
their convolutions on a copy (the script checks the outputs agree).  Both models run in the same process,
interleaved and alternating which goes first, after warm-up passes.  Reported:

* original and folded forward time, median and minimum of the repeats (on a shared machine interference only
  adds time, so the minimum is the least disturbed figure);
* the measured saving, 1 - folded / original, from the medians, from the minima, and the median of the per-pair
  ratios (each pair run back to back, which cancels slow drift);
* the roofline's predicted saving on this machine (``symcost calibrate``; or ``--device``): the traced per-layer
  times summed, before and after folding, with and without the per-layer overhead term;
* next to the seed's figures: 176.17 -> 161.69 ms on an i7 CPU and 11.03 -> 7.3 ms on a 1080 Ti GPU, printed as
  "10 %" and "51 %".  By its own numbers the GPU's 51 % is a speed-up, 11.03 / 7.3 - 1 = 51.1 % (a saving of
  1 - 7.3 / 11.03 = 33.8 %); the CPU's is a speed-up of 176.17 / 161.69 - 1 = 9.0 % (a saving of 8.2 %), which
  the seed rounds to 10 %.  Both are reported here as saving and as speed-up, so they compare like with like.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = {"cpu_before_ms": 176.17, "cpu_after_ms": 161.69, "gpu_before_ms": 11.03, "gpu_after_ms": 7.3}


def build(seed: int = 0):
    import torch
    import torchvision

    from symcost.fold import fold_batchnorm, randomize_batchnorm

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    randomize_batchnorm(model, seed)
    model.eval()
    result = fold_batchnorm(model, (1, 3, 224, 224))
    diff, scale = result.compare((1, 3, 224, 224))
    if result.n_folded != 53 or diff > 1e-4 * max(1.0, scale):
        raise SystemExit(f"fold failed: {result.n_folded} folded, max diff {diff:.3g} (max |output| {scale:.3g})")
    return model, result.model.eval()


def time_pair(a, b, x, repeats: int, warmup: int) -> tuple[list[float], list[float], list[int]]:
    """Interleaved timings of a(x) and b(x), alternating which runs first; and page faults per forward."""
    import torch

    from symcost.roofline import page_faults

    ta, tb, faults = [], [], []
    with torch.no_grad():
        for _ in range(warmup):
            a(x), b(x)
        for i in range(repeats):
            order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
            for model, store in order:
                f0 = page_faults() or 0
                t0 = time.perf_counter()
                model(x)
                store.append(time.perf_counter() - t0)
                faults.append((page_faults() or 0) - f0)
    return ta, tb, faults


def predicted(original, folded, batch: int, device) -> dict:
    from symcost.roofline import predict, total_time
    from symcost.tracing import trace

    shape = (batch, 3, 224, 224)
    before, after = trace(original, shape), trace(folded, shape)
    out = {}
    for key, overhead in (("with_overhead", True), ("pure", False)):
        tb = total_time(predict(before, device, "fp32", "flops", overhead))
        ta = total_time(predict(after, device, "fp32", "flops", overhead))
        out[key] = {"before_s": tb, "after_s": ta, "saving": 1 - ta / tb}
    bn = [e for e in predict(before, device, "fp32", "flops") if e.layer.startswith("batchnorm")]
    out["bn_layers"] = len(bn)
    out["bn_predicted_s"] = sum(e.time_s for e in bn)
    out["bn_bytes"] = sum(e.bytes for e in bn)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts (default 1)")
    p.add_argument("--repeats", type=int, default=10, help="timed pairs per configuration (default 10)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", help="a device JSON from `symcost calibrate` (default: calibrate now, per thread count)")
    p.add_argument("--keep-memory", action="store_true", help="stop glibc returning freed memory to the OS first "
                   "(symcost.roofline.keep_freed_memory): no page faults per forward")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import torch

    from symcost.roofline import Device, calibrate, keep_freed_memory, regime, regime_text

    kept = keep_freed_memory() if args.keep_memory else False
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    original, folded = build()
    results = []
    for th in threads:
        torch.set_num_threads(th)
        device = Device.load(args.device) if args.device else calibrate()
        print(f"[{th} thread(s)] device: {device.peak_flops / 1e9:.1f} GFLOP/s, {device.bandwidth / 1e9:.1f} GB/s, "
              f"{device.overhead_s * 1e6:.1f} us/call", file=sys.stderr)
        for n in batches:
            x = torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(n))
            t0 = time.perf_counter()
            ta, tb, faults = time_pair(original, folded, x, args.repeats, args.warmup)
            pairs = [b / a for a, b in zip(ta, tb)]
            pred = predicted(original, folded, n, device)
            row = {
                "batch": n, "threads": th, "regime": regime_text(regime()), "repeats": args.repeats,
                "original_median_ms": 1e3 * statistics.median(ta), "folded_median_ms": 1e3 * statistics.median(tb),
                "original_min_ms": 1e3 * min(ta), "folded_min_ms": 1e3 * min(tb),
                "saving_medians": 1 - statistics.median(tb) / statistics.median(ta),
                "saving_minima": 1 - min(tb) / min(ta),
                "saving_paired_median": 1 - statistics.median(pairs),
                "paired_quartiles": [1 - q for q in statistics.quantiles(pairs, n=4)[::-1]] if len(pairs) > 1 else None,
                "predicted": pred, "keep_memory": kept, "page_faults_per_forward": statistics.median(faults),
                "device": {"peak_flops": device.peak_flops, "bandwidth": device.bandwidth,
                           "overhead_s": device.overhead_s, "source": device.source},
                "seconds": time.perf_counter() - t0,
            }
            results.append(row)
            print(f"  batch {n}: original {row['original_median_ms']:.1f} ms, folded {row['folded_median_ms']:.1f} ms "
                  f"(paired saving {100 * row['saving_paired_median']:.1f} %, predicted "
                  f"{100 * pred['with_overhead']['saving']:.1f} %) in {row['seconds']:.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(markdown(results))
    return 0


def markdown(results: list[dict]) -> str:
    seed_cpu = 1 - SEED["cpu_after_ms"] / SEED["cpu_before_ms"]
    seed_speedup = SEED["cpu_before_ms"] / SEED["cpu_after_ms"] - 1
    lines = ["| batch | threads | original ms (median / min) | folded ms (median / min) | measured saving: paired "
             "median [quartiles] | of medians | of minima | speed-up (paired) | predicted saving (with host / "
             "device only) | seed 003 CPU saving / speed-up |",
             "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        q = r["paired_quartiles"]
        quart = f" [{100 * q[0]:.1f}, {100 * q[2]:.1f}]" if q else ""
        p = r["predicted"]
        lines.append(
            f"| {r['batch']} | {r['threads']} | {r['original_median_ms']:.1f} / {r['original_min_ms']:.1f} | "
            f"{r['folded_median_ms']:.1f} / {r['folded_min_ms']:.1f} | {100 * r['saving_paired_median']:.1f} %{quart} "
            f"| {100 * r['saving_medians']:.1f} % | {100 * r['saving_minima']:.1f} % | "
            f"{100 * (1 / (1 - r['saving_paired_median']) - 1):.1f} % | "
            f"{100 * p['with_overhead']['saving']:.1f} % / {100 * p['pure']['saving']:.1f} % | "
            f"{100 * seed_cpu:.1f} % / {100 * seed_speedup:.1f} % |")
    if results:
        r = results[0]
        lines.append("")
        lines.append(f"Regime: {r['regime']}; {r['repeats']} interleaved pairs per row, torch.no_grad(), eval(); "
                     f"{'freed memory kept (mallopt)' if r['keep_memory'] else 'default allocator'}, page faults "
                     "per forward (median): " + ", ".join(f"batch {x['batch']}/{x['threads']}t "
                                                           f"{x['page_faults_per_forward']:,.0f}" for x in results)
                     + ". "
                     f"Roofline on this machine: {r['device']['peak_flops'] / 1e9:.1f} GFLOP/s, "
                     f"{r['device']['bandwidth'] / 1e9:.1f} GB/s, t0 = {r['device']['overhead_s'] * 1e6:.1f} us "
                     f"({r['predicted']['bn_layers']} BatchNorm layers, {r['predicted']['bn_bytes'] / 1e6:.1f} MB "
                     f"moved at batch {r['batch']}).")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
