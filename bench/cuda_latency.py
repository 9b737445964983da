"""The time model against a real GPU: per-layer and whole-model times at batch 1 and 64, folded and unfolded.

    .venv/bin/python bench/cuda_latency.py --device h100-sxm                  # on a machine with a CUDA GPU
    .venv/bin/python bench/cuda_latency.py --device gpu.json --dtype fp16     # after `symcost calibrate --backend cuda`
    .venv/bin/python bench/cuda_latency.py --backend cpu --batches 1 --models resnet18 --repeats 3   # a smoke run

Per model, batch and dtype: every traced module call's measured time (CUDA events recorded by a forward pre-hook
and a forward hook on that module, the device synchronised once per pass; the median over the repeats), the time
model's prediction for it (``symcost.timing.predict`` on the device given), Spearman's rank correlation between the
two and that of the naive roofline (the device's roofs, no kinds, no per-call cost); the whole forward measured
(CUDA events around ``model(x)``, median) against ``forward_time`` (host and device clocks overlapped); and
folding's saving (``symcost.fold.fold_batchnorm``), measured against predicted.  Prints a Markdown table and the
regime; nothing here runs in the tests (CI has no GPU).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16_bn")


class Clock:
    """Elapsed seconds between two marks: CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, cuda: bool):
        import torch

        self.cuda, self.torch = cuda, torch

    def mark(self):
        if self.cuda:
            e = self.torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        import time

        return time.perf_counter()

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a


def _start(marks: dict, name: str, clock: Clock):
    def hook(_module, _inputs):  # returns None: a pre-hook's return value would replace the inputs
        if name not in marks:
            marks[name] = [clock.mark()]
    return hook


def _stop(marks: dict, name: str, clock: Clock):
    def hook(_module, _inputs, _output):  # the module's first call in the pass only
        if len(marks[name]) == 1:
            marks[name].append(clock.mark())
    return hook


def per_module_times(model, x, names: list[str], clock: Clock, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each named module's call (its first call in a pass), over ``repeats`` passes."""
    import torch

    modules = dict(model.named_modules())
    marks: dict[str, list] = {}
    handles = []
    for name in names:
        m = modules.get(name)
        if m is None:
            continue
        handles.append(m.register_forward_pre_hook(_start(marks, name, clock)))
        handles.append(m.register_forward_hook(_stop(marks, name, clock)))
    samples: dict[str, list[float]] = {n: [] for n in names}
    try:
        with torch.inference_mode():
            for k in range(warmup + repeats):
                marks.clear()
                model(x)
                clock.sync()
                if k >= warmup:
                    for n, pair in marks.items():
                        if len(pair) == 2:
                            samples[n].append(clock.seconds(*pair))
    finally:
        for h in handles:
            h.remove()
    return {n: statistics.median(v) for n, v in samples.items() if v}


def forward_seconds(model, x, clock: Clock, repeats: int, warmup: int) -> float:
    import torch

    out = []
    with torch.inference_mode():
        for k in range(warmup + repeats):
            clock.sync()
            a = clock.mark()
            model(x)
            b = clock.mark()
            clock.sync()
            if k >= warmup:
                out.append(clock.seconds(a, b))
    return statistics.median(out)


def run_case(name: str, batch: int, dtype: str, device, backend: str, repeats: int, warmup: int) -> dict:
    import torch

    from symcost.fold import fold_batchnorm
    from symcost.model import RowKind
    from symcost.targets import load_target
    from symcost.timing import Device, forward_time, predict, spearman, torch_dtype, total_time
    from symcost.tracing import trace

    shape = (batch, 3, 224, 224)
    model = load_target(f"torchvision:{name}").eval()
    folded = fold_batchnorm(model, shape).model.eval()
    mc, mc_folded = trace(model, shape), trace(folded, shape)
    dev = torch.device("cuda" if backend == "cuda" else "cpu")
    tdt = torch_dtype(dtype)
    model, folded = model.to(dev, tdt), folded.to(dev, tdt)
    x = torch.randn(*shape, device=dev, dtype=tdt)
    clock = Clock(backend == "cuda")
    est = predict(mc, device, dtype, "flops")
    naive = predict(mc, Device("naive", device.peak_flops, device.bandwidth), dtype, "flops", overhead=False)
    rows = [(r.name, e, n) for r, e, n in zip(mc.rows, est, naive) if r.kind == RowKind.MODULE]
    measured = per_module_times(model, x, [r for r, _, _ in rows], clock, repeats, warmup)
    pairs = [(e.time_s, nv.time_s, measured[r]) for r, e, nv in rows if r in measured]
    before = forward_seconds(model, x, clock, repeats, warmup)
    after = forward_seconds(folded, x, clock, repeats, warmup)
    pred_before = forward_time(est).seconds
    pred_after = forward_time(predict(mc_folded, device, dtype, "flops")).seconds
    return {"compared": len(pairs), "spearman": spearman([p for p, _, _ in pairs], [m for _, _, m in pairs]),
            "naive": spearman([n for _, n, _ in pairs], [m for _, _, m in pairs]),
            "sum_ratio": total_time(e for r, e, _nv in rows if r in measured) / sum(m for _, _, m in pairs),
            "forward": (pred_before, before), "saving": (1 - pred_after / pred_before, 1 - after / before)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="h100-sxm", help="preset name or device JSON (`symcost calibrate`)")
    p.add_argument("--backend", choices=("cuda", "cpu"), default="cuda", help="where to measure (cpu: a smoke run)")
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME", help="torchvision classifiers")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--dtype", nargs="+", default=["fp32", "fp16"], dest="dtypes")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)

    import torch

    from symcost.timing import get_device

    if args.backend == "cuda" and not torch.cuda.is_available():
        print("cuda_latency: no CUDA device here (use --backend cpu for a smoke run)", file=sys.stderr)
        return 2
    if args.backend == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)  # two threads on shared CPUs wait for each other (bench/RESULTS.md)
    device = get_device(args.device)
    print("| model | batch | dtype | layers | Spearman | naive Spearman | sum pred / meas | forward ms pred / meas | "
          "fold saving % pred / meas |")
    print("|:--|--:|:--|--:|--:|--:|--:|--:|--:|")
    for name in args.models:
        for batch in args.batches:
            for dtype in args.dtypes:
                r = run_case(name, batch, dtype, device, args.backend, args.repeats, args.warmup)
                (fp, fm), (sp, sm) = r["forward"], r["saving"]
                print(f"| {name} | {batch} | {dtype} | {r['compared']} | {r['spearman']:.3f} | {r['naive']:.3f} | "
                      f"{r['sum_ratio']:.2f} | {fp * 1e3:.2f} / {fm * 1e3:.2f} | {100 * sp:.1f} / {100 * sm:.1f} |",
                      flush=True)
    gpu = torch.cuda.get_device_name() if args.backend == "cuda" else "CPU"
    print(f"\nRegime: {gpu}, torch {torch.__version__}, eager, inference_mode, "
          f"{'cudnn.benchmark, ' if args.backend == 'cuda' else '1 thread, '}NCHW, medians of {args.repeats} passes after "
          f"{args.warmup} warm-up; per-layer times by events at each module's pre-hook and hook; predictions from "
          f"`{args.device}` under `flops`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
