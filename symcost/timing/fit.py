r"""Fitting kind rates to measured layer times, and the H100 fit behind the ``h100-sxm`` preset.

For one kind $\kappa$ the model of a call alone is $t = h + \sum_j \max(t_k, \lambda + \max(C_j / c, M_j / m))$
(less ``return_s`` of it on an asynchronous device, ``symcost.timing.model``), with $C_j, M_j$ the kernel's
seconds at full peak and bandwidth and $\lambda$ a start-up time, fitted only for GEMM kinds.  ``fit_rates``
picks $(h, c, m)$ on a log grid minimising the absolute log error (robust to an odd backend choice) over the kind's
samples, with a slight pull of $c$ and $m$ towards 1 so that a fraction the data do not constrain (the compute
fraction of a memory-bound kind) stays at the roofline instead of an arbitrary grid end.  With ``fit_host=False``
the host time is the base device's (for data where no call is host-bound, e.g. batch 64 on a GPU).

``h100_device`` fits the ResNet-50 and MobileNetV2 measurements of ``tests/fixtures/h100`` (a copy of the shared
H100 calibration), or one model's: it is how the ``h100-sxm`` preset's numbers were made, and
``bench/latency_h100_fit.py`` reruns it, fitted on one model and scored on the other, and leaving regimes out.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..conventions import Convention, as_convention
from ..cost import Cost
from .devices import Device, KindRate
from .model import kernel_terms

#: the shared H100 calibration, copied into the repository so tests and benches can read it
H100_DATA = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "h100"

#: torch.profiler, folded ResNet-50 at batch 64 (fold_probe.txt): the 53 separate bias-add kernels' total seconds
#: (fp32 NCHW; fp16 channels_last)
H100_BIAS_KERNELS = {"fp32": (53, 2.461e-3), "fp16": (53, 1.965e-3)}


#: host seconds of a call that launches no kernel (nn.Identity, Flatten, an eval dropout): an nn.Identity call takes
#: 0.56 us on this project's CPU (AMD EPYC, torch 2.14, timeit); the H100 data hold no such call
VIEW_HOST_S = 1e-6

#: kinds whose compute fraction is fitted; the others are memory-bound by construction (compute fraction 1)
COMPUTE_KINDS = ("conv_kxk", "conv_1x1", "conv_grouped", "conv_depthwise", "conv_pooled", "linear", "matmul", "gemv",
                 "attention")


#: GEMM kinds fitted as a start-up time on top of the measured GEMM peak (``fit_rates``' ``latency_kinds``):
#: ResNet-50 has one Linear, 64 x 2048 x 1000, which attains 11 % of the fp32 peak; VGG's 64 x 25088 x 4096 would
#: not stay at 11 %
GEMM_KINDS = ("linear", "matmul", "attention")

#: kinds the fitted models do not have take the rates of a kind they have (each stated in the preset's source): a
#: grouped convolution with several channels per group is a GEMM per group (<- k x k), a 1x1 convolution on a 1x1
#: map is cuDNN's 1x1 convolution at a size its kernel floor and host time decide (<- 1x1), an exp/tanh/erf
#: activation streams like ReLU on a GPU (the H100 evaluates an exp per element far faster than HBM delivers one),
#: a copy streams like an elementwise kernel; a fit without MobileNetV2 times depthwise convolutions as k x k ones
BORROWED = {"conv_grouped": "conv_kxk", "conv_pooled": "conv_1x1", "conv_depthwise": "conv_kxk", "matmul": "linear",
            "attention": "linear", "softmax": "reduction", "reduction": "pool", "memory": "elementwise",
            "transcendental": "elementwise"}

#: the models of the H100 calibration: file stem -> (symcost target, BatchNorms it has)
H100_MODELS = {"resnet50": ("torchvision:resnet50", 53), "mobilenet_v2": ("torchvision:mobilenet_v2", 52)}


@dataclass(frozen=True)
class Sample:
    """One measured call: its cost and arguments, dtype, seconds, and the regime it was measured in."""

    name: str
    cost: Cost
    args: dict
    dtype: str
    seconds: float
    regime: str = ""
    model: str = ""


def _grid(lo: float, hi: float, n: int):
    import numpy as np

    return np.geomspace(lo, hi, n)


def fit_rates(samples: list[Sample], base: Device, convention: str | Convention = "flops", *,
              fit_host: bool = True, fit_kernel: bool = False, max_fraction: float = 2.0,
              latency_kinds: tuple[str, ...] = ()) -> dict[str, KindRate]:
    """Per kind among ``samples``, the :class:`KindRate` that best explains their times on ``base`` (whose roofs,
    ``launch_s``, rates of other kinds and synchrony are kept).  ``fit_host``: fit the host time per call (else
    the base's); ``fit_kernel``: fit the kind's least kernel time (else the base's); not both at once.
    ``max_fraction``: the largest fraction of a roof a kind may attain (above 1 where caches beat the measured
    DRAM bandwidth: a CPU's layer-sized tensors stay in cache).  ``latency_kinds``: kinds fitted as a start-up
    time added to the full roofline (``latency_s``, fractions 1) instead of as two fractions: for GEMMs seen at
    one size only, where two fractions would be unconstrained and a small GEMM's fraction would hold for a large
    one."""
    import numpy as np

    if fit_host and fit_kernel:
        raise ValueError("fit the host time or the kernel floor, not both: at once they trade off")
    conv = as_convention(convention)
    by_kind: dict[str, list] = {}
    touches: dict[str, list] = {}   # page-fault seconds of each sample's output (a module call's is a new one)
    for s in samples:
        kind, _, _, written, terms = kernel_terms(s.cost, base, s.dtype, conv, s.args)
        by_kind.setdefault(kind, []).append((s, terms))
        touches.setdefault(kind, []).append(base.first_touch(written))
    out = {}
    for kind, rows in by_kind.items():
        dtype = rows[0][0].dtype
        # a memory-bound kind's FLOPs are proportional to its bytes: a compute fraction would only mimic memory
        steps = 1 + round(math.log(max_fraction / 0.005) / math.log(400) * 48)   # a ~13 % step whatever the top
        latency = kind in latency_kinds
        cs = _grid(0.005, max_fraction, steps) if kind in COMPUTE_KINDS and not latency else np.array([1.0])
        ms = np.array([1.0]) if latency else _grid(0.005, max_fraction, steps)
        floor = base.kernel_floor_s(kind, dtype)
        # the first axis is the kernel floor, or with ``latency`` the start-up time
        ks = np.concatenate([[0.0], _grid(1e-7, 1e-3, 81)]) if latency else \
            np.concatenate([[0.0], _grid(1e-6, 2e-4, 24)]) if fit_kernel else np.array([floor])
        hs = _grid(1e-7, 1e-2, 81) if fit_host else np.array([base.host_s(kind, dtype)])
        if fit_host:  # a 15 % grid step is too coarse for host times: refine around the best measured scale
            mid = sorted(s.seconds for s, _ in rows)[len(rows) // 2]
            hs = np.concatenate([hs, _grid(mid / 3, mid * 1.5, 61)])
        meas = np.log([s.seconds for s, _ in rows])
        own_c = np.array([sum(t.compute_s for t in terms if t.kind == kind) for _, terms in rows])
        own_m = np.array([sum(t.memory_s for t in terms if t.kind == kind) for _, terms in rows])
        own_n = np.array([sum(t.kind == kind for t in terms) for _, terms in rows])
        other = np.array([sum(max(base.kernel_floor_s(t.kind, s.dtype),
                                  base.rate(t.kind, s.dtype).latency_s
                                  + max(t.compute_s / base.rate(t.kind, s.dtype).compute,
                                        t.memory_s / base.memory_fraction(t.kind, s.dtype,
                                                                          t.memory_s * base.bandwidth)))
                              for t in terms if t.kind != kind) for s, terms in rows]) + np.array(touches[kind])
        extra = np.array([max(0, len(terms) - 1) * base.launch_s for _, terms in rows])
        # device seconds on the grid (k, c, m, sample); host seconds (h, sample)
        # a kernel takes at least its floor (own kernels of a call share the call's FLOPs and bytes evenly)
        n = np.maximum(own_n, 1)
        # beyond the cache a kernel runs at most at the measured bandwidth (Device.memory_fraction)
        beyond = (own_m / n * base.bandwidth > base.cache_bytes) if base.cache_bytes else np.zeros(len(rows), bool)
        ms_each = np.where(beyond[None, :], np.minimum(ms[:, None], 1.0), ms[:, None])      # (m, sample)
        roof = np.maximum(own_c / n / cs[None, :, None, None], own_m / n / ms_each[None, None, :, :])
        dev = other + n * (np.maximum(floor, ks[:, None, None, None] + roof) if latency else
                           np.maximum(ks[:, None, None, None], roof))
        host = (hs[:, None] + extra)[:, None, None, None, :]
        # a call timed alone: host work, then its kernels, less what runs while the host returns (symcost.timing.model)
        hidden = np.minimum(host, base.return_s) if base.asynchronous else 0.0
        pred = host + np.maximum(dev[None] - hidden, 0.0)
        loss = np.abs(np.log(pred) - meas).sum(axis=-1)   # absolute: one odd kernel choice (484 us) must not pull
        loss = loss + 1e-4 * (np.log(cs)[None, None, :, None] ** 2 + np.log(ms)[None, None, None, :] ** 2)
        i, k, j, m = np.unravel_index(int(np.argmin(loss)), loss.shape)
        out[kind] = KindRate(float(hs[i]) if fit_host else base.rate(kind, dtype).host_s, float(cs[j]),
                             float(ms[m]), float(ks[k]) if fit_kernel else base.rate(kind, dtype).kernel_s,
                             float(ks[k]) if latency else 0.0)
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


def traced_samples(rows: list[dict], target: str = "torchvision:resnet50", model_name: str | None = None
                   ) -> list[Sample]:
    """Samples from measured rows: ``target`` traced (on the meta device) at each batch the rows hold, each
    measured module matched to the first traced call of that name; ``model_name`` (default: the target's name
    after its source, ``resnet50``) labels them."""
    model_name = target.rsplit(":", 1)[-1] if model_name is None else model_name
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
                              regime_key(r["dtype"], b), model_name))
    return out


def h100_samples(data: str | Path = H100_DATA, models: tuple[str, ...] = tuple(H100_MODELS)) -> list[Sample]:
    """The measured layer calls of ``models`` (``H100_MODELS``), each traced at its measured shapes."""
    return [s for m in models for s in traced_samples(read_layer_csv(Path(data) / f"{m}_layers.csv"),
                                                      H100_MODELS[m][0], m)]


def h100_base(data: str | Path = H100_DATA) -> Device:
    """The H100's roofs as measured (calib.json: attained 8192^3 GEMM per dtype, copy bandwidth) and the
    structure of eager PyTorch on it, before any kind is fitted."""
    import json

    c = json.loads((Path(data) / "calib.json").read_text())
    return Device(
        "h100-sxm", peak_flops=c["gemm_fp32_tflops"] * 1e12, bandwidth=c["copy_GBps_read_plus_write"] * 1e9,
        overhead_s=10e-6, launch_s=8e-6, kernel_s=5e-6, asynchronous=True, return_s=5e-6, fuses=("depthwise_bias",),
        tf32_conv=bool(c["cudnn_tf32"]), tf32_matmul=bool(c["matmul_tf32"]),
        peak_flops_by_dtype={"fp32": c["gemm_fp32_tflops"] * 1e12, "tf32": c["gemm_tf32_tflops"] * 1e12,
                             "fp16": c["gemm_fp16_tflops"] * 1e12, "bf16": c["gemm_bf16_tflops"] * 1e12})


def e2e_seconds(data: str | Path = H100_DATA, model: str = "resnet50") -> dict[tuple[str, str], float]:
    """Whole-forward seconds of ``<model>_e2e.csv`` (NCHW), keyed by (regime, ``unfolded`` or ``folded``)."""
    with open(Path(data) / f"{model}_e2e.csv", newline="", encoding="utf-8") as f:
        return {(regime_key(r["dtype"], int(r["batch"])), r["variant"]): float(r["ms"]) * 1e-3
                for r in csv.DictReader(f) if r["format"] == "contiguous"}


def whole_model_seconds(data: str | Path = H100_DATA, model: str = "resnet50") -> dict[str, float]:
    """The layer file's own whole-model rows (``<whole model>``: the forward timed by the same harness, in the
    same session as the layers), keyed by regime."""
    return {regime_key(r["dtype"], int(r["batch"])): float(r["us"]) * 1e-6
            for r in read_layer_csv(Path(data) / f"{model}_layers.csv") if r["module"] == "<whole model>"}


def fp16_norm_host_extra(data: str | Path = H100_DATA, models: tuple[str, ...] = ("resnet50",)) -> float:
    """Host seconds an fp16 BatchNorm call costs beyond an fp32 one, pooled over ``models``.

    At batch 1 a forward is host-bound, so what folding saves is the BatchNorms' host time (less the bias adds
    it adds, the same in both dtypes): ResNet-50's fp16 saves 3.08 ms where fp32 saves 1.51 ms
    (``resnet50_e2e.csv``), while the folded forwards differ by 6 % -- the extra is BatchNorm's alone (in half
    precision eager PyTorch does not take the cuDNN path: its parameters are not fp32).  The e2e file's clock runs
    1.43x the layer file's at fp32 batch 1 (5.66 against 3.96 ms for the same forward; MobileNetV2 1.49x), so each
    model's difference is scaled into its layer file's units, the units of the fitted host times; the pooled figure
    is the scaled extras' sum over the BatchNorms' count."""
    extra = norms = 0.0
    for m in models:
        e2e, whole = e2e_seconds(data, m), whole_model_seconds(data, m)
        saved = {dt: e2e[(f"{dt} b1", "unfolded")] - e2e[(f"{dt} b1", "folded")] for dt in ("fp32", "fp16")}
        extra += (saved["fp16"] - saved["fp32"]) * whole["fp32 b1"] / e2e[("fp32 b1", "unfolded")]
        norms += H100_MODELS[m][1]
    return max(0.0, extra / norms)


def bias_add_rate(base: Device, samples: list[Sample], dtype: str) -> KindRate:
    """The bias-add kernel's fraction of bandwidth, from the profiler's total for the 53 bias adds of a folded
    ResNet-50 at batch 64: each reads and writes a convolution's output and reads its bias."""
    n, seconds = H100_BIAS_KERNELS[dtype]
    size = 4 if dtype == "fp32" else 2
    convs = [s for s in samples if s.regime == "fp32 b64" and s.cost.family == "conv" and s.model == "resnet50"]
    nbytes = sum((2 * math.prod(int(d) for d in s.cost.output_shape) + int(s.args["out_channels"])) * size
                 for s in convs)
    if len(convs) != n:
        raise ValueError(f"expected {n} convolutions, matched {len(convs)}")
    return KindRate(None, 1.0, nbytes / base.bandwidth / (seconds - n * base.kernel_s))


def h100_device(samples: list[Sample] | None = None, regimes: tuple[str, ...] | None = None,
                data: str | Path = H100_DATA, names: Callable[[str], bool] | None = None,
                models: tuple[str, ...] = tuple(H100_MODELS)) -> Device:
    """Fit the H100 samples of ``models`` and ``regimes`` (default all; ``names``: only modules it accepts) in two
    stages.  ``samples`` must hold ResNet-50's whatever ``models`` says: the bias-add kernel's rate is computed
    from its shapes (the profiler measured its folded forward).

    1. Host time per kind: from the batch-1 regimes, where every call is host-bound (without one, every kind
       keeps the base's 10 us prior).
    2. Per kind and dtype, the compute and memory fractions: from the batch-64 regimes, host times fixed; pooled
       over dtypes as the fallback for a dtype without data.  The least kernel time stays the 5 us prior: fitted
       per kind at batch 64 it comes out at 16-50 us (BatchNorm's NCHW kernel is slow on many small planes), which
       then wrongly dominates every batch-1 call -- but for fp16 BatchNorm, which has no batch-1 layer times and
       whose kernels are PyTorch's own (its parameters are not fp32, which cuDNN's half-precision BatchNorm needs).

    The separate bias-add kernel's bandwidth fraction comes from the profiler totals (``H100_BIAS_KERNELS``); fp16
    BatchNorm's host time from the batch-1 whole forwards (``fp16_norm_host_extra``), fixed before its batch-64
    fractions are fitted (else the fractions absorb it, and folding's predicted fp16 saving triples).  A view call
    (``nn.Identity``, ``Flatten``, an eval dropout: no kernel) costs ``VIEW_HOST_S``, not what the layer files'
    harness measured for MobileNetV2's eval Dropout (11.7 us at batch 1: the harness's own floor, event records
    and the timed call, which a forward does not pay; fitted, each ``nn.Identity`` a fold leaves would cost it)."""
    base = h100_base(data)
    samples = samples if samples is not None else h100_samples(data)
    allowed = [s for s in samples if (regimes is None or s.regime in regimes) and (names is None or names(s.name))
               and s.model in models]
    host_bound = [s for s in allowed if s.regime.endswith(" b1")]
    device_bound = [s for s in allowed if not s.regime.endswith(" b1")]
    hosts = {k: KindRate(r.host_s) for k, r in fit_rates(host_bound, base).items()} if host_bound else {}
    fp16_hosts = ({"norm": KindRate(hosts["norm"].host_s + fp16_norm_host_extra(data, models))}
                  if "norm" in hosts else {})
    staged = replace(base, kinds=hosts, kinds_by_dtype={"fp16": fp16_hosts})
    pooled = {**hosts, **fit_rates(device_bound, staged, fit_host=False, latency_kinds=GEMM_KINDS)}
    by_dtype = {dt: fit_rates([s for s in device_bound if s.dtype == dt], staged, fit_host=False,
                              latency_kinds=GEMM_KINDS) for dt in sorted({s.dtype for s in device_bound})}
    by_dtype = {dt: {k: KindRate(staged.kinds_by_dtype.get(dt, {}).get(k, KindRate()).host_s, r.compute, r.memory,
                                 latency_s=r.latency_s)
                     for k, r in t.items()} for dt, t in by_dtype.items()}
    fp16_norms = [s for s in device_bound if s.dtype == "fp16" and s.cost.family == "norm"]
    if fp16_norms and "norm" in fp16_hosts:
        # half-precision BatchNorm leaves cuDNN for PyTorch's own kernels, which take 50-97 us at batch 64 even on
        # a 1.6-million-element map (fp32: 27 us, host-bound): a least kernel time of its own, fitted with its
        # fraction at batch 64 (no per-layer fp16 batch-1 file exists for it to dominate wrongly)
        r = fit_rates(fp16_norms, staged, fit_host=False, fit_kernel=True)["norm"]
        by_dtype["fp16"]["norm"] = replace(by_dtype["fp16"]["norm"], memory=r.memory, kernel_s=r.kernel_s)
    for dt in ("fp32", "fp16"):
        by_dtype.setdefault(dt, {})["bias_add"] = bias_add_rate(base, samples, dt)
    pooled["bias_add"] = by_dtype["fp32"]["bias_add"]
    for kind, like in BORROWED.items():
        for table in (pooled, *by_dtype.values()):
            if kind not in table and like in table:
                table[kind] = table[like]
    for kind in GEMM_KINDS:   # a GEMM's call costs the host what a matrix-vector product's does (one fc each)
        if kind in pooled and pooled[kind].host_s is None and "gemv" in pooled:
            pooled[kind] = replace(pooled[kind], host_s=pooled["gemv"].host_s)
    pooled["view"] = KindRate(host_s=VIEW_HOST_S)
    for table in by_dtype.values():
        table.pop("view", None)
    return replace(base, kinds=pooled, kinds_by_dtype=by_dtype)
