"""``symcost calibrate``: this machine's roofs and, per kind of call, its host time and attained fractions.

1. Roofs: ``torch.mm`` of two n x n matrices (2 n^3 FLOPs) and the larger of ``copy_`` (2 x 4 bytes per
   element) and ``add`` (3 x 4) on 2^25 fp32 elements (128 MiB a tensor, far beyond any cache; 2^18 with
   ``quick``, which fits in cache and so measures cache, not DRAM).
2. Per kind (``symcost.timing.kinds``), a real module called on a small input and on larger ones (``CASES``),
   each timed as the median of ``repeats`` samples: the small call is mostly host time, the others mostly
   kernel time, compute-heavy and memory-heavy.  Their costs
   come from symcost's own catalog, so the fit (``symcost.timing.fit.fit_rates``) sees exactly the FLOPs and
   bytes the prediction will use.

On a CPU host and kernel time add (``asynchronous=False``) and oneDNN convolutions add their bias inside the
kernel (``fuses=("conv_bias",)``); on CUDA (``device="cuda"``) each call is synchronised, the device is
asynchronous and only a depthwise convolution's bias is fused (PyTorch's own depthwise kernel), as in eager PyTorch.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace
from functools import partial
from typing import Callable

from .devices import Device, KindRate
from .fit import Sample, fit_rates
from .measure import last_level_cache_bytes, regime, threads_text
from ..progress import Progress

#: kind -> (catalog layer, its arguments from a channel count, (channels, spatial size) of the calls measured,
#: the same with ``quick``).  The first call is small (mostly host time); the others span what real layers are:
#: many channels on a small map (compute-heavy) and few channels on a large map (memory-heavy, and the sizes at
#: which a CPU's caches hold a layer's tensors), so that a kind's compute and memory fractions are both pinned.
CASES: dict[str, tuple] = {
    "conv_kxk": ("conv2d", lambda c: dict(in_channels=c, out_channels=c, kernel_size=3, padding=1, bias=False),
                 [(8, 8), (256, 14), (64, 56), (16, 112)], [(8, 8), (32, 16)]),
    "conv_1x1": ("conv2d", lambda c: dict(in_channels=c, out_channels=2 * c, kernel_size=1, bias=False),
                 [(8, 8), (256, 14), (128, 28), (16, 112)], [(8, 8), (64, 16)]),
    "conv_depthwise": ("conv2d", lambda c: dict(in_channels=c, out_channels=c, kernel_size=3, padding=1, groups=c,
                                                bias=False), [(8, 8), (512, 14), (128, 56), (32, 112)],
                       [(8, 8), (64, 16)]),
    "norm": ("batchnorm2d", lambda c: dict(num_features=c, mode="eval"), [(8, 8), (256, 14), (64, 56), (64, 112)],
             [(8, 8), (32, 32)]),
    "elementwise": ("relu", lambda c: {}, [(8, 8), (256, 14), (64, 56), (64, 112)], [(8, 8), (32, 32)]),
    "transcendental": ("silu", lambda c: {}, [(8, 8), (256, 14), (64, 56), (64, 112)], [(8, 8), (32, 32)]),
    "reduction": ("adaptive_avgpool2d", lambda c: dict(output_size=1), [(8, 8), (1280, 7), (64, 112)],
                  [(8, 8), (32, 32)]),
    "pool": ("maxpool2d", lambda c: dict(kernel_size=3, stride=2, padding=1), [(8, 8), (256, 14), (64, 112)],
             [(8, 8), (32, 32)]),
    "linear": ("linear", lambda c: dict(in_features=c, out_features=c, bias=True),
               [(64, 4), (256, 64), (1024, 64), (1024, 512)], [(64, 4), (256, 32)]),
    "gemv": ("linear", lambda c: dict(in_features=c, out_features=c, bias=True),
             [(64, 1), (512, 1), (2048, 1)], [(64, 1), (256, 1)]),
}


def _module(layer: str, args: dict):
    import torch.nn as nn

    a = {k: v for k, v in args.items() if k != "mode"}
    build = {"conv2d": lambda: nn.Conv2d(**a), "batchnorm2d": lambda: nn.BatchNorm2d(**a), "relu": nn.ReLU,
             "silu": nn.SiLU, "maxpool2d": lambda: nn.MaxPool2d(**a), "linear": lambda: nn.Linear(**a),
             "adaptive_avgpool2d": lambda: nn.AdaptiveAvgPool2d(**a)}[layer]
    return build().eval()


def _shape(layer: str, c: int, size: int) -> tuple[int, ...]:
    return (size, c) if layer == "linear" else (1, c, size, size)


def median_time(fn: Callable[[], object], repeats: int, min_sample_s: float = 0.0) -> float:
    """Median seconds per call of ``fn``: ``repeats`` samples, each of enough back-to-back calls to last about
    ``min_sample_s`` (timer resolution and one-off stalls matter less); two warm-up calls first."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-9)
    inner = max(1, min(100_000, math.ceil(min_sample_s / once)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def calibrate(quick: bool = False, repeats: int | None = None, progress: Progress | None = None,
              device: str = "cpu", dtypes: tuple[str, ...] = ("fp32",)) -> Device:
    """Measure this machine (``device`` ``cpu`` or ``cuda``) and fit a :class:`Device` with per-kind rates.

    fp32 is always measured (it gives the host times); each other dtype in ``dtypes`` adds its GEMM peak and, per
    kind, its own compute and memory fractions (``kinds_by_dtype``)."""
    import torch

    from .dtypes import dtype_name, torch_dtype

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA device here: calibrate the CPU (--backend cpu)")
    extra = [d for d in dict.fromkeys(dtype_name(d) for d in dtypes) if d != "fp32"]
    for d in extra:
        torch_dtype(d)  # int8 and other unrunnable dtypes refuse here, before any measurement
    dev = torch.device(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed(fn, seconds):
        return median_time(lambda: (fn(), sync()), reps, seconds)

    reps = repeats or (3 if quick else 7)
    p = progress or Progress("symcost calibrate", enabled=False)
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        n = 256 if quick else 2048
        t_mm, peaks = _gemm_peaks(n, extra, device, dev, g, timed, p, 0.02 if quick else 0.2)
        gemm = peaks["fp32"]
        m = 1 << (18 if quick else 25)
        src = torch.randn(m, generator=g).to(dev)
        dst = torch.empty_like(src)
        other = torch.randn(m, generator=g).to(dev)
        p.update(f"copy of {m * 4 >> 20} MiB")
        t_copy = timed(partial(dst.copy_, src), 0.01 if quick else 0.1)
        p.update(f"add of {m * 4 >> 20} MiB")
        t_add = timed(partial(torch.add, src, other, out=dst), 0.01 if quick else 0.1)
        copy_bw, add_bw = 2 * 4 * m / t_copy, 3 * 4 * m / t_add
        # the first touch of a freshly mapped output: a new 64 MiB tensor filled, against filling an existing one
        # (a CPU's; CUDA's caching allocator reuses its blocks, and --quick sizes stay below the mmap threshold)
        touch = _first_touch(dst, timed, p) if device == "cpu" and not quick else None
        first_touch = touch["seconds_per_byte"] if touch else 0.0
        del src, dst, other
        tiny = torch.ones(1, device=dev)
        relu = torch.nn.ReLU()
        t_module = timed(lambda: relu(tiny), 0.005 if quick else 0.05)
        identity = torch.nn.Identity()
        t_view = timed(lambda: identity(tiny), 0.005 if quick else 0.05)   # a call that launches no kernel
        samples, calls = _layer_samples(("fp32", *extra), quick, dev, g, timed, p)
    r = regime()
    on_gpu = device == "cuda"
    base = Device(f"this machine ({torch.cuda.get_device_name() if on_gpu else 'CPU'}, "
                  f"{threads_text(r['threads'])})", peak_flops=gemm, bandwidth=max(copy_bw, add_bw),
                  overhead_s=t_module, peak_flops_by_dtype=peaks, asynchronous=on_gpu,
                  fuses=("depthwise_bias",) if on_gpu else ("conv_bias",),
                  tf32_conv=on_gpu and torch.backends.cudnn.allow_tf32,
                  tf32_matmul=on_gpu and torch.backends.cuda.matmul.allow_tf32,
                  cache_bytes=0 if on_gpu else last_level_cache_bytes(), first_touch_s=first_touch)
    # a CPU's caches hold layer-sized tensors: a kind may beat the DRAM bandwidth measured above
    top = 2.0 if on_gpu else 8.0
    kinds = {**fit_rates([s for s in samples if s.dtype == "fp32"], base, max_fraction=top),
             "view": KindRate(host_s=t_view)}
    # host time is the host's: per further dtype only the two fractions are fitted
    by_dtype = {dt: {k: replace(r, host_s=None) for k, r in
                     fit_rates([s for s in samples if s.dtype == dt], replace(base, kinds=kinds),
                               fit_host=False, max_fraction=top).items()} for dt in extra}
    details = {
        "regime": {**r, "device": device}, "quick": quick, "repeats": reps,
        "gemm": {"n": n, "dtype": "fp32", "seconds": t_mm, "flops_per_s": gemm, "flops_per_s_by_dtype": peaks},
        "copy": {"elements": m, "bytes_moved": 8 * m, "seconds": t_copy, "bytes_per_s": copy_bw},
        "add": {"elements": m, "bytes_moved": 12 * m, "seconds": t_add, "bytes_per_s": add_bw},
        "tiny_module_call_s": t_module, "identity_call_s": t_view, "calls": calls,
        "first_touch": touch,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    source = _source(quick, r, device, n, reps, m, extra)
    return replace(base, source=source, kinds=kinds, kinds_by_dtype=by_dtype, details=details)


def _first_touch(dst, timed, p) -> dict:
    """A new 64 MiB tensor filled against filling an existing one: the cost of freshly mapped memory, per byte."""
    import torch

    n_touch = 1 << 24
    p.update(f"first touch of {n_touch * 4 >> 20} MiB")
    t_fill = timed(partial(dst[:n_touch].fill_, 1.0), 0.1)
    t_fresh = timed(lambda: torch.empty(n_touch).fill_(1.0), 0.1)
    return {"elements": n_touch, "fill_existing_s": t_fill, "fill_new_s": t_fresh,
            "seconds_per_byte": max(0.0, t_fresh - t_fill) / (4 * n_touch)}


def _gemm_peaks(n: int, extra: list, device: str, dev, g, timed, p, seconds: float) -> tuple[float, dict]:
    """An n x n torch.mm: its fp32 time, and the FLOP/s in fp32, in each dtype of ``extra`` and (CUDA) in TF32."""
    import torch

    from .dtypes import torch_dtype

    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    p.update(f"GEMM {n}x{n}")
    t_mm = timed(partial(torch.mm, a, b), seconds)
    peaks = {"fp32": 2 * n ** 3 / t_mm}
    for d in extra:
        p.update(f"GEMM {n}x{n} {d}")
        a2, b2 = a.to(torch_dtype(d)), b.to(torch_dtype(d))
        peaks[d] = 2 * n ** 3 / timed(partial(torch.mm, a2, b2), seconds)
    if device == "cuda":  # cuDNN convolutions may run fp32 at TF32: measure that peak too
        peaks["tf32"] = _tf32_peak(a, b, timed, seconds)
    return t_mm, peaks


def _tf32_peak(a, b, timed, seconds: float) -> float:
    """The fp32 GEMM FLOP/s with TF32 tensor cores allowed (restored after)."""
    import torch

    strict = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return 2 * a.shape[0] ** 3 / timed(partial(torch.mm, a, b), seconds)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = strict


def _layer_samples(dtypes: tuple, quick: bool, dev, g, timed, p) -> tuple[list, list]:
    """Each case of ``CASES`` timed in each dtype: (``Sample`` list to fit the kinds on, the calls as JSON)."""
    import torch

    from .. import layer as catalog_layer
    from .dtypes import torch_dtype

    samples, calls = [], []
    for dt in dtypes:
        for kind, (layer, make_args, sizes, quick_sizes) in CASES.items():
            for c, size in quick_sizes if quick else sizes:
                args = make_args(c)
                shape = _shape(layer, c, size)
                p.update(f"{kind} on {'x'.join(map(str, shape))} {dt}")
                mod = _module(layer, args).to(dev, torch_dtype(dt))
                x = torch.randn(*shape, generator=g).to(dev, torch_dtype(dt))
                t = timed(partial(mod, x), 0.005 if quick else 0.05)
                cost = catalog_layer(layer, symbolic=False, **args).cost(shape)
                samples.append(Sample(f"{kind} {'x'.join(map(str, shape))}", cost, args, dt, t, "calibrate"))
                calls.append({"kind": kind, "layer": layer, "args": args, "input_shape": list(shape),
                              "dtype": dt, "seconds": t})
    return samples, calls


def _source(quick: bool, r: dict, device: str, n: int, reps: int, m: int, extra: list) -> str:
    """Where each number of the calibrated device comes from, in words."""
    on_gpu = device == "cuda"
    return (f"symcost calibrate{' --quick' if quick else ''} on {r['cpu']}{' / ' + device if on_gpu else ''}, "
            f"{threads_text(r['threads'])}, torch {r['torch']}: torch.mm {n}x{n} fp32 (median of {reps}); "
            f"bandwidth max of copy and add of {m * 4 >> 20} MiB fp32 tensors"
            f"{' (fits in cache: not a DRAM figure)' if quick else ''}; first_touch_s = a new 64 MiB "
            f"tensor filled less an existing one filled, per byte (0 with --quick and on CUDA); cache_bytes = "
            f"the CPU's last-level cache (sysfs); overhead_s = one tiny nn.ReLU call; view calls "
            f"one nn.Identity call; per "
            f"kind host time and attained fractions fitted to a small call and larger ones of each of "
            f"{', '.join(CASES)} (symcost.timing.calibrate.CASES), in {', '.join(('fp32', *extra))}")
