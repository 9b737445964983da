r"""Fitting kind rates to measured layer times, and the H100 fit behind the ``h100-sxm`` preset.

For one kind $\kappa$ the model of a call alone is $t = h + \sum_j \max(t_k, C_j / c, M_j / m)$, with
$C_j, M_j$ the kernel's seconds at full peak and bandwidth.  ``fit_rates`` picks $(h, c, m)$ on a log grid
minimising the absolute log error (robust to an odd backend choice) over the kind's
samples, with a slight pull of $c$ and $m$ towards 1 so that a fraction the data do not constrain (the compute
fraction of a memory-bound kind) stays at the roofline instead of an arbitrary grid end.  With ``fit_host=False``
the host time is the base device's (for data where no call is host-bound, e.g. batch 64 on a GPU).

``h100_device`` fits the ResNet-50 measurements of ``tests/fixtures/h100`` (a copy of the shared H100
calibration): it is how the ``h100-sxm`` preset's numbers were made, and ``bench/latency_h100_fit.py`` reruns it
and the leave-one-regime-out checks.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..conventions import Convention, get_convention
from ..cost import Cost
from .devices import Device, KindRate
from .model import kernel_terms

#: the shared H100 calibration, copied into the repository so tests and benches can read it
H100_DATA = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "h100"

#: torch.profiler, folded ResNet-50 at batch 64 (fold_probe.txt): the 53 separate bias-add kernels' total seconds
#: (fp32 NCHW; fp16 channels_last)
H100_BIAS_KERNELS = {"fp32": (53, 2.461e-3), "fp16": (53, 1.965e-3)}


#: kinds whose compute fraction is fitted; the others are memory-bound by construction (compute fraction 1)
COMPUTE_KINDS = ("conv_kxk", "conv_1x1", "conv_grouped", "linear", "matmul", "attention")


#: kinds ResNet-50 does not have take the rates of a kind it has (a guess, stated in the preset's source)
BORROWED = {"conv_grouped": "conv_kxk", "matmul": "linear", "attention": "linear", "softmax": "pool",
            "reduction": "pool", "memory": "elementwise"}


@dataclass(frozen=True)
class Sample:
    """One measured call: its cost and arguments, dtype, seconds, and the regime it was measured in."""

    name: str
    cost: Cost
    args: dict
    dtype: str
    seconds: float
    regime: str = ""


def _grid(lo: float, hi: float, n: int):
    import numpy as np

    return np.geomspace(lo, hi, n)


def fit_rates(samples: list[Sample], base: Device, convention: str | Convention = "flops", *,
              fit_host: bool = True, fit_kernel: bool = False) -> dict[str, KindRate]:
    """Per kind among ``samples``, the :class:`KindRate` that best explains their times on ``base`` (whose roofs,
    ``launch_s``, rates of other kinds and synchrony are kept).  ``fit_host``: fit the host time per call (else
    the base's); ``fit_kernel``: fit the kind's least kernel time (else the base's); not both at once."""
    import numpy as np

    if fit_host and fit_kernel:
        raise ValueError("fit the host time or the kernel floor, not both: at once they trade off")
    conv = get_convention(convention) if isinstance(convention, str) else convention
    by_kind: dict[str, list] = {}
    for s in samples:
        kind, _, _, _, terms = kernel_terms(s.cost, base, s.dtype, conv, s.args)
        by_kind.setdefault(kind, []).append((s, terms))
    out = {}
    for kind, rows in by_kind.items():
        dtype = rows[0][0].dtype
        # a memory-bound kind's FLOPs are proportional to its bytes: a compute fraction would only mimic memory
        cs = _grid(0.005, 2.0, 49) if kind in COMPUTE_KINDS else np.array([1.0])
        ms = _grid(0.005, 2.0, 49)
        ks = np.concatenate([[0.0], _grid(1e-6, 2e-4, 24)]) if fit_kernel else \
            np.array([base.kernel_floor_s(kind, dtype)])
        hs = _grid(1e-7, 1e-2, 81) if fit_host else np.array([base.host_s(kind, dtype)])
        if fit_host:  # a 15 % grid step is too coarse for host times: refine around the best measured scale
            mid = sorted(s.seconds for s, _ in rows)[len(rows) // 2]
            hs = np.concatenate([hs, _grid(mid / 3, mid * 1.5, 61)])
        meas = np.log([s.seconds for s, _ in rows])
        own_c = np.array([sum(t.compute_s for t in terms if t.kind == kind) for _, terms in rows])
        own_m = np.array([sum(t.memory_s for t in terms if t.kind == kind) for _, terms in rows])
        own_n = np.array([sum(t.kind == kind for t in terms) for _, terms in rows])
        other = np.array([sum(max(base.kernel_floor_s(t.kind, s.dtype),
                                  t.compute_s / base.rate(t.kind, s.dtype).compute,
                                  t.memory_s / base.rate(t.kind, s.dtype).memory)
                              for t in terms if t.kind != kind) for s, terms in rows])
        extra = np.array([max(0, len(terms) - 1) * base.launch_s for _, terms in rows])
        # device seconds on the grid (k, c, m, sample); host seconds (h, sample)
        # a kernel takes at least its floor (own kernels of a call share the call's FLOPs and bytes evenly)
        n = np.maximum(own_n, 1)
        roof = np.maximum(own_c / n / cs[None, :, None, None], own_m / n / ms[None, None, :, None])
        dev = other + n * np.maximum(ks[:, None, None, None], roof)
        host = (hs[:, None] + extra)[:, None, None, None, :]
        pred = host + dev[None]   # a call timed alone: host work, then its kernels (see symcost.timing.model)
        loss = np.abs(np.log(pred) - meas).sum(axis=-1)   # absolute: one odd kernel choice (484 us) must not pull
        loss = loss + 1e-4 * (np.log(cs)[None, None, :, None] ** 2 + np.log(ms)[None, None, None, :] ** 2)
        i, k, j, m = np.unravel_index(int(np.argmin(loss)), loss.shape)
        out[kind] = KindRate(float(hs[i]) if fit_host else base.rate(kind, dtype).host_s, float(cs[j]),
                             float(ms[m]), float(ks[k]) if fit_kernel else base.rate(kind, dtype).kernel_s)
    return out


# ----------------------------------------------------------------------------------------------- H100 data

def read_layer_csv(path: str | Path) -> list[dict]:
    """The rows of a per-layer timing CSV (model, dtype, batch, module, type, input_shape, output_shape, us)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _short(dtype: str) -> str:
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype)


def regime_key(dtype: str, batch: int) -> str:
    return f"{_short(dtype)} b{batch}"


def traced_samples(rows: list[dict], target: str = "torchvision:resnet50") -> list[Sample]:
    """Samples from measured rows: ``target`` traced (on the meta device) at each batch the rows hold, each
    measured module matched to the first traced call of that name."""
    from ..targets import load_target
    from ..tracing import trace

    model = load_target(target, device="meta")
    out = []
    batches = sorted({int(r["batch"]) for r in rows})
    for b in batches:
        mine = [r for r in rows if int(r["batch"]) == b]
        shape = tuple(int(v) for v in mine[0]["input_shape"].split("x"))
        first = {}
        for row in trace(model, shape).rows:
            first.setdefault(row.name, row)
        for r in mine:
            t = first.get(r["module"])
            if t is None or not t.is_call:
                continue
            out.append(Sample(r["module"], t.cost, t.args, _short(r["dtype"]), float(r["us"]) * 1e-6,
                              regime_key(r["dtype"], b)))
    return out


def h100_samples(data: str | Path = H100_DATA) -> list[Sample]:
    return traced_samples(read_layer_csv(Path(data) / "resnet50_layers.csv"))


def h100_base(data: str | Path = H100_DATA) -> Device:
    """The H100's roofs as measured (calib.json: attained 8192^3 GEMM per dtype, copy bandwidth) and the
    structure of eager PyTorch on it, before any kind is fitted."""
    import json

    c = json.loads((Path(data) / "calib.json").read_text())
    return Device(
        "h100-sxm", peak_flops=c["gemm_fp32_tflops"] * 1e12, bandwidth=c["copy_GBps_read_plus_write"] * 1e9,
        overhead_s=10e-6, launch_s=8e-6, kernel_s=5e-6, asynchronous=True, fuses=(),
        tf32_conv=bool(c["cudnn_tf32"]), tf32_matmul=bool(c["matmul_tf32"]),
        peak_flops_by_dtype={"fp32": c["gemm_fp32_tflops"] * 1e12, "tf32": c["gemm_tf32_tflops"] * 1e12,
                             "fp16": c["gemm_fp16_tflops"] * 1e12, "bf16": c["gemm_bf16_tflops"] * 1e12})


def bias_add_rate(base: Device, samples: list[Sample], dtype: str) -> KindRate:
    """The bias-add kernel's fraction of bandwidth, from the profiler's total for the 53 bias adds of a folded
    ResNet-50 at batch 64: each reads and writes a convolution's output and reads its bias."""
    n, seconds = H100_BIAS_KERNELS[dtype]
    size = 4 if dtype == "fp32" else 2
    convs = [s for s in samples if s.regime == "fp32 b64" and s.cost.family == "conv"]
    nbytes = sum((2 * math.prod(int(d) for d in s.cost.output_shape) + int(s.args["out_channels"])) * size
                 for s in convs)
    if len(convs) != n:
        raise ValueError(f"expected {n} convolutions, matched {len(convs)}")
    return KindRate(None, 1.0, nbytes / base.bandwidth / (seconds - n * base.kernel_s))


def h100_device(samples: list[Sample] | None = None, regimes: tuple[str, ...] | None = None,
                data: str | Path = H100_DATA, names: Callable[[str], bool] | None = None) -> Device:
    """Fit the H100 samples of ``regimes`` (default all; ``names``: only modules it accepts) in two stages.

    1. Host time per kind: from the batch-1 regimes, where every call is host-bound (without one, every kind
       keeps the base's 10 us prior).
    2. Per kind and dtype, the compute and memory fractions: from the batch-64 regimes, host times fixed; pooled
       over dtypes as the fallback for a dtype without data.  The least kernel time stays the 5 us prior: fitted
       per kind at batch 64 it comes out at 16-50 us (BatchNorm's NCHW kernel is slow on many small planes), which
       then wrongly dominates every batch-1 call.

    The separate bias-add kernel's bandwidth fraction comes from the profiler totals (``H100_BIAS_KERNELS``)."""
    base = h100_base(data)
    samples = samples if samples is not None else h100_samples(data)
    allowed = [s for s in samples if (regimes is None or s.regime in regimes) and (names is None or names(s.name))]
    host_bound = [s for s in allowed if s.regime.endswith(" b1")]
    device_bound = [s for s in allowed if not s.regime.endswith(" b1")]
    hosts = {k: KindRate(r.host_s) for k, r in fit_rates(host_bound, base).items()} if host_bound else {}
    staged = replace(base, kinds=hosts)
    pooled = {**hosts, **fit_rates(device_bound, staged, fit_host=False)}
    by_dtype = {dt: fit_rates([s for s in device_bound if s.dtype == dt], staged, fit_host=False)
                for dt in sorted({s.dtype for s in device_bound})}
    by_dtype = {dt: {k: KindRate(None, r.compute, r.memory) for k, r in t.items()} for dt, t in by_dtype.items()}
    for dt in ("fp32", "fp16"):
        by_dtype.setdefault(dt, {})["bias_add"] = bias_add_rate(base, samples, dt)
    pooled["bias_add"] = by_dtype["fp32"]["bias_add"]
    for kind, like in BORROWED.items():
        if kind not in pooled and like in pooled:
            pooled[kind] = pooled[like]
    pooled.setdefault("view", KindRate(host_s=5e-6))
    return replace(base, kinds=pooled, kinds_by_dtype=by_dtype)
