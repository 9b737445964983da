r"""A memory-traffic (roofline) time model for each traced layer, and the measurements that check it.

symcost counts, per layer call, elements read and written (each input, weight, buffer and output tensor once: an
ideal cache) and FLOPs under a named convention.  This module turns them into time on a :class:`Device`:

.. math::
    \text{bytes} = (\text{reads} + \text{writes}) \cdot \text{itemsize(dtype)}, \qquad
    I = \frac{\text{FLOPs}}{\text{bytes}}, \qquad
    t = \max\!\Big(\frac{\text{FLOPs}}{P_{\text{peak}}}, \frac{\text{bytes}}{B}\Big) + t_0

with itemsize 4 for fp32 and tf32, 2 for fp16 and bf16, 1 for int8, 8 for fp64; $P_{\text{peak}}$ the device's
peak FLOP/s for the dtype and $B$ its memory bandwidth in bytes/s.  A layer whose intensity $I$ is below the ridge
$P_{\text{peak}} / B$ is *memory-bound*: its time is its bytes, not its FLOPs.  That is why an eval-mode BatchNorm,
one multiply and one add per element (intensity $2 \cdot 32768 / ((2 \cdot 32768 + 128) \cdot 4) \approx 0.25$
FLOP/B at fp32), costs time in proportion to the tensor it re-reads and re-writes, far above its FLOP share.

$t_0$ (``Device.overhead_s``) is a fixed cost per layer call, made explicit because at batch 1 on a CPU the
framework's own work (Python ``nn.Module.__call__``, operator dispatch, allocation: microseconds each) is larger
than the arithmetic and the traffic of small layers.  It is 0 in a pure roofline; presets state where theirs
comes from, and ``calibrate`` measures it as the time of a tiny module call on this machine.

The prediction is a model, not a simulator: caches larger than a layer's tensors make real traffic smaller than
the ideal count's (a tensor just written may be read back from cache), kernels below peak make compute slower,
and a framework that runs one layer as several kernels (BatchNorm as a multiply pass and then an add pass) moves
more bytes than the one-pass count.  ``measure_layers`` times every traced layer on a real forward pass so the
prediction can be compared with what happens; ``spearman`` says how well the *order* of layer times is predicted.

Nothing at module level imports torch: devices, bytes and predictions work from a ``ModelCost`` alone.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from .conventions import Convention, get_convention
from .cost import Cost, to_int

# ----------------------------------------------------------------------------------------------------- dtypes

#: bytes per element, by the dtype names the command line accepts
DTYPE_BYTES: dict[str, int] = {"fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1}
_ALIASES = {"float64": "fp64", "double": "fp64", "float32": "fp32", "float": "fp32", "float16": "fp16",
            "half": "fp16", "bfloat16": "bf16", "qint8": "int8", "uint8": "int8"}
#: the torch dtype that runs a model stored in each of our dtypes (tf32 is fp32 storage; int8 needs quantisation)
_TORCH_DTYPES = {"fp64": "float64", "fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def dtype_name(dtype: str) -> str:
    """The canonical name (``fp32``, ``fp16``, ``bf16``, ``int8`` …) of a dtype spelled either way."""
    key = str(dtype).strip().lower().removeprefix("torch.")
    key = _ALIASES.get(key, key)
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPE_BYTES)}")
    return key


def itemsize(dtype: str) -> int:
    """Bytes per element: fp32 4, fp16/bf16 2, int8 1."""
    return DTYPE_BYTES[dtype_name(dtype)]


# ----------------------------------------------------------------------------------------------------- devices

@dataclass(frozen=True)
class Device:
    """What the roofline needs to know about a machine.

    name:        what it is.
    peak_flops:  FLOP/s for a dtype without its own entry in ``peak_flops_by_dtype`` (a preset's fp32 figure).
    bandwidth:   memory bandwidth, bytes/s (bytes read plus bytes written per second).
    overhead_s:  fixed seconds added to every layer call (framework overhead; 0 for a pure roofline).
    source:      where each number comes from (a datasheet, arithmetic on a spec, or ``symcost calibrate``).
    peak_flops_by_dtype: FLOP/s per dtype where it differs (tensor cores: fp16, bf16, tf32, int8).
    details:     anything else a JSON file carries (the calibration's raw measurements, the regime); kept as is.
    """

    name: str
    peak_flops: float
    bandwidth: float
    overhead_s: float = 0.0
    source: str = ""
    peak_flops_by_dtype: Mapping[str, float] = field(default_factory=dict)
    details: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, v in (("peak_flops", self.peak_flops), ("bandwidth", self.bandwidth)):
            if not _finite(v) or v <= 0:
                raise ValueError(f"device {self.name!r}: {what} must be a positive number, got {v!r}")
        if not _finite(self.overhead_s) or self.overhead_s < 0:
            raise ValueError(f"device {self.name!r}: overhead_s must be a number >= 0, got {self.overhead_s!r}")
        clean = {}
        for k, v in dict(self.peak_flops_by_dtype).items():
            if not _finite(v) or v <= 0:
                raise ValueError(f"device {self.name!r}: peak_flops_by_dtype[{k!r}] must be positive, got {v!r}")
            clean[dtype_name(k)] = float(v)
        object.__setattr__(self, "peak_flops_by_dtype", clean)
        object.__setattr__(self, "peak_flops", float(self.peak_flops))
        object.__setattr__(self, "bandwidth", float(self.bandwidth))
        object.__setattr__(self, "overhead_s", float(self.overhead_s))

    def peak(self, dtype: str = "fp32") -> float:
        """Peak FLOP/s at ``dtype`` (``peak_flops`` where the device lists no figure of its own for it)."""
        return self.peak_flops_by_dtype.get(dtype_name(dtype), self.peak_flops)

    def ridge(self, dtype: str = "fp32") -> float:
        """The intensity (FLOP/byte) at which compute time equals memory time."""
        return self.peak(dtype) / self.bandwidth

    def to_dict(self) -> dict:
        return {"name": self.name, "peak_flops": self.peak_flops, "bandwidth": self.bandwidth,
                "overhead_s": self.overhead_s, "source": self.source,
                "peak_flops_by_dtype": dict(self.peak_flops_by_dtype), "details": dict(self.details),
                "units": {"peak_flops": "FLOP/s", "bandwidth": "bytes/s", "overhead_s": "seconds per layer call"}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Device":
        if not isinstance(d, Mapping):
            raise ValueError("a device description must be a JSON object")
        missing = [k for k in ("name", "peak_flops", "bandwidth") if k not in d]
        if missing:
            raise ValueError(f"device description lacks {', '.join(missing)}")
        known = {"name", "peak_flops", "bandwidth", "overhead_s", "source", "peak_flops_by_dtype", "details", "units"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"device description has unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        for k in ("peak_flops", "bandwidth", "overhead_s"):
            if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))):
                raise ValueError(f"device description: {k} must be a number, got {d[k]!r}")
        by_dtype = d.get("peak_flops_by_dtype") or {}
        if not isinstance(by_dtype, Mapping) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                    for v in by_dtype.values()):
            raise ValueError("device description: peak_flops_by_dtype must map dtype names to numbers")
        return cls(name=str(d["name"]), peak_flops=d["peak_flops"], bandwidth=d["bandwidth"],
                   overhead_s=d.get("overhead_s", 0.0), source=str(d.get("source", "")),
                   peak_flops_by_dtype=by_dtype, details=dict(d.get("details") or {}))

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Device":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read device file {str(p)!r}: {e.strerror or e}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"device file {str(p)!r} is not JSON: {e.msg} (line {e.lineno})") from None
        return cls.from_dict(data)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: named devices.  Each number's source is in ``source``; dense (not 2:4-sparse) tensor-core figures.
PRESETS: dict[str, Device] = {d.name: d for d in (
    Device(
        "laptop-cpu", peak_flops=384e9, bandwidth=51.2e9, overhead_s=10e-6,
        source="a nominal 4-core AVX2 laptop CPU, by arithmetic on its specification, not a measurement: "
               "4 cores x 3.0 GHz x 2 FMA units x 8 fp32 lanes x 2 FLOP per FMA = 384 GFLOP/s; dual-channel "
               "DDR4-3200 = 2 x 8 bytes x 3.2e9 transfers/s = 51.2 GB/s (JEDEC DDR4-3200); 10 us per layer call "
               "for PyTorch eager on a CPU (nn.Module call and operator dispatch, order of magnitude; "
               "`symcost calibrate` measures this machine's)"),
    Device(
        "a100-sxm4-80gb", peak_flops=19.5e12, bandwidth=2.039e12, overhead_s=5e-6,
        peak_flops_by_dtype={"fp32": 19.5e12, "tf32": 156e12, "fp16": 312e12, "bf16": 312e12, "int8": 624e12,
                             "fp64": 9.7e12},
        source="NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: FP32 19.5 TFLOPS, FP64 9.7 TFLOPS, tensor "
               "core TF32 156 / BF16 312 / FP16 312 TFLOPS, INT8 624 TOPS (dense; the datasheet's starred figures "
               "are twice these, with structured sparsity), HBM2e 2,039 GB/s; 5 us per layer call is an "
               "order-of-magnitude kernel launch plus eager dispatch cost, not a datasheet figure. fp32 matmuls "
               "run on tensor cores only with TF32 enabled: pass --dtype tf32 for that"),
    Device(
        "h100-sxm", peak_flops=66.9e12, bandwidth=3.35e12, overhead_s=5e-6,
        peak_flops_by_dtype={"fp32": 66.9e12, "tf32": 494.7e12, "fp16": 989.4e12, "bf16": 989.4e12,
                             "int8": 1978.9e12, "fp64": 33.5e12},
        source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM5: FP32 67 TFLOPS, FP64 34 TFLOPS, tensor core "
               "TF32 989 / BF16 1,979 / FP16 1,979 TFLOPS, INT8 3,958 TOPS with sparsity, half that dense "
               "(494.7 / 989.4 / 989.4 / 1,978.9), HBM3 3.35 TB/s; 5 us per layer call is an order-of-magnitude "
               "kernel launch plus eager dispatch cost, not a datasheet figure"),
)}
PRESET_ALIASES = {"a100": "a100-sxm4-80gb", "h100": "h100-sxm", "laptop": "laptop-cpu", "cpu": "laptop-cpu"}


def get_device(spec: str) -> Device:
    """A preset by name (or alias), or a device JSON file (as written by ``symcost calibrate``)."""
    key = spec.strip()
    name = PRESET_ALIASES.get(key.lower(), key.lower())
    if name in PRESETS:
        return PRESETS[name]
    if Path(key).is_file():
        return Device.load(key)
    if key.endswith(".json") or "/" in key:
        raise ValueError(f"device file {key!r} not found")
    raise ValueError(f"unknown device {spec!r}: give a preset ({', '.join([*PRESETS, *PRESET_ALIASES])}) "
                     "or a JSON file written by `symcost calibrate`")


# ----------------------------------------------------------------------------------------------- per layer

def layer_bytes(cost: Cost, dtype: str = "fp32") -> tuple[int, int]:
    """(bytes read, bytes written) of one call: elements x itemsize, each tensor once (symcost's reads/writes)."""
    size = itemsize(dtype)
    return to_int(cost.reads, "reads") * size, to_int(cost.writes, "writes") * size


def intensity(flops: float, nbytes: float) -> float:
    """Arithmetic intensity, FLOPs per byte moved (``inf`` for work on no bytes, 0 for neither)."""
    if nbytes <= 0:
        return math.inf if flops > 0 else 0.0
    return flops / nbytes


def roofline_time(flops: float, nbytes: float, device: Device, dtype: str = "fp32", overhead: bool = True) -> float:
    """max(FLOPs / peak, bytes / bandwidth), plus the device's per-layer overhead when ``overhead``."""
    t = max(flops / device.peak(dtype), nbytes / device.bandwidth)
    return t + (device.overhead_s if overhead else 0.0)


@dataclass(frozen=True)
class LayerEstimate:
    """One layer call on one device: its FLOPs, bytes and roofline time, split into its three terms."""

    name: str
    layer: str
    family: str
    flops: int
    bytes_read: int
    bytes_written: int
    compute_s: float     # FLOPs / peak
    memory_s: float      # bytes / bandwidth
    overhead_s: float    # the device's fixed per-layer cost

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        return intensity(self.flops, self.bytes)

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> str:
        """What sets the time: ``compute``, ``memory`` or ``overhead`` (the fixed cost is the largest term)."""
        roof = max(self.compute_s, self.memory_s)
        if self.overhead_s > roof:
            return "overhead"
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def as_dict(self) -> dict:
        i = self.intensity
        return {"name": self.name, "layer": self.layer, "family": self.family, "flops": self.flops,
                "bytes_read": self.bytes_read, "bytes_written": self.bytes_written, "bytes": self.bytes,
                "intensity": None if math.isinf(i) else i, "bound": self.bound, "compute_s": self.compute_s,
                "memory_s": self.memory_s, "overhead_s": self.overhead_s, "predicted_s": self.time_s}


def estimate(cost: Cost, device: Device, dtype: str = "fp32", convention: str | Convention = "flops", *,
             name: str = "", overhead: bool = True) -> LayerEstimate:
    """The roofline estimate of one layer call's ``Cost`` (concrete sizes only)."""
    conv = get_convention(convention) if isinstance(convention, str) else convention
    flops = to_int(conv.count(cost), "FLOPs")
    read, written = layer_bytes(cost, dtype)
    return LayerEstimate(name, cost.layer, cost.family, flops, read, written, flops / device.peak(dtype),
                         (read + written) / device.bandwidth, device.overhead_s if overhead else 0.0)


def predict(mc, device: Device, dtype: str = "fp32", convention: str | Convention = "flops",
            overhead: bool = True) -> list[LayerEstimate]:
    """One estimate per layer call of a traced ``ModelCost`` (rows that are not calls, such as unused
    parameters, are left out).  Layers run one after another, so the model's time is the sum."""
    out = []
    for r in mc.rows:
        if r.layer == "unused":
            continue
        try:
            out.append(estimate(r.cost, device, dtype, convention, name=r.name, overhead=overhead))
        except ValueError as e:
            raise ValueError(f"{r.name}: {e} (the roofline needs a concrete input shape)") from None
    return out


def total_time(estimates: Iterable[LayerEstimate]) -> float:
    return sum(e.time_s for e in estimates)


def shares(values: Mapping[str, float]) -> dict[str, float]:
    """Each value's fraction of their sum (0 for all when the sum is 0)."""
    total = sum(values.values())
    return {k: (v / total if total else 0.0) for k, v in values.items()}


# ------------------------------------------------------------------------------------------ rank correlation

def rankdata(xs: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    n = len(x)
    if n != len(y):
        raise ValueError(f"pearson: {n} and {len(y)} values")
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of the tie-averaged ranks), in [-1, 1].

    ``None`` when it is undefined: fewer than two pairs, or one side constant."""
    return pearson(rankdata(list(x)), rankdata(list(y)))


# --------------------------------------------------------------------------------------------------- progress

class Progress:
    """Progress lines on stderr, only once the work has taken more than ``after`` seconds.

    On a terminal one line is rewritten in place; otherwise a line is printed at most every few seconds."""

    def __init__(self, label: str, enabled: bool = True, after: float = 2.0, stream=None) -> None:
        self.label, self.enabled, self.after = label, enabled, after
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = -math.inf
        self.shown = False
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.start < self.after or now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        line = f"{self.label}: {text} ({now - self.start:.0f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.enabled and self.shown and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ----------------------------------------------------------------------------------------------- calibration

def regime() -> dict:
    """Where measurements run: the CPU, the thread count, torch's version."""
    import torch

    return {"device": "cpu", "cpu": cpu_name(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "logical_cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}


def threads_text(n) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def regime_text(r: Mapping, dtype: str = "fp32") -> str:
    return f"CPU ({r.get('cpu', '?')}), {threads_text(r.get('threads', '?'))}, {dtype}, torch {r.get('torch', '?')}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _median_time(fn: Callable[[], object], repeats: int, min_sample_s: float = 0.0) -> tuple[float, list[float]]:
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
    return statistics.median(samples), samples


def calibrate(quick: bool = False, repeats: int | None = None, progress: Progress | None = None) -> Device:
    """Measure this machine: attainable fp32 GEMM FLOP/s, memory bandwidth, per-layer-call overhead.

    * GEMM: ``torch.mm`` of two n x n fp32 matrices, 2 n^3 FLOPs, median of repeats (n = 2048; 256 with ``quick``).
    * bandwidth: ``dst.copy_(src)`` (2 x 4 bytes per element: one read, one write) and ``torch.add(a, b, out=c)``
      (3 x 4 bytes) on 2^25 fp32 elements (128 MiB per tensor, far beyond any cache; 2^18 with ``quick``, which
      fits in cache and so measures cache, not DRAM); the larger of the two rates.
    * overhead: one call of a tiny ``nn.ReLU`` module on a 1-element tensor (Python module call, dispatch, kernel
      launch, allocation), also a bare ``torch.relu`` on it for comparison; median per call.
    """
    from functools import partial

    import torch

    reps = repeats or (3 if quick else 7)
    p = progress or Progress("symcost calibrate", enabled=False)
    with torch.no_grad():
        n = 256 if quick else 2048
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        p.update(f"GEMM {n}x{n}")
        t_mm, _ = _median_time(partial(torch.mm, a, b), reps, 0.02 if quick else 0.2)
        gemm = 2 * n ** 3 / t_mm
        del a, b
        m = 1 << (18 if quick else 25)
        src = torch.randn(m, generator=g)
        dst = torch.empty_like(src)
        other = torch.randn(m, generator=g)
        p.update(f"copy of {m * 4 >> 20} MiB")
        t_copy, _ = _median_time(partial(dst.copy_, src), reps, 0.01 if quick else 0.1)
        p.update(f"add of {m * 4 >> 20} MiB")
        t_add, _ = _median_time(partial(torch.add, src, other, out=dst), reps, 0.01 if quick else 0.1)
        copy_bw, add_bw = 2 * 4 * m / t_copy, 3 * 4 * m / t_add
        del src, dst, other
        tiny = torch.ones(1)
        relu = torch.nn.ReLU()
        p.update("tiny ops")
        t_module, _ = _median_time(lambda: relu(tiny), reps, 0.005 if quick else 0.05)
        t_op, _ = _median_time(lambda: torch.relu(tiny), reps, 0.005 if quick else 0.05)
    r = regime()
    details = {
        "regime": r, "quick": quick, "repeats": reps,
        "gemm": {"n": n, "dtype": "fp32", "seconds": t_mm, "flops_per_s": gemm},
        "copy": {"elements": m, "bytes_moved": 8 * m, "seconds": t_copy, "bytes_per_s": copy_bw},
        "add": {"elements": m, "bytes_moved": 12 * m, "seconds": t_add, "bytes_per_s": add_bw},
        "tiny_module_call_s": t_module, "tiny_op_call_s": t_op,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    source = (f"symcost calibrate{' --quick' if quick else ''} on {r['cpu']}, {threads_text(r['threads'])}, torch "
              f"{r['torch']}: torch.mm {n}x{n} fp32 (median of {reps}); bandwidth max of copy and add of "
              f"{m * 4 >> 20} MiB fp32 tensors{' (fits in cache: not a DRAM figure)' if quick else ''}; "
              "overhead = one tiny nn.ReLU module call")
    return Device(f"this machine (CPU, {threads_text(r['threads'])})", peak_flops=gemm, bandwidth=max(copy_bw, add_bw),
                  overhead_s=t_module, source=source, peak_flops_by_dtype={"fp32": gemm}, details=details)


# ------------------------------------------------------------------------------------------------ measuring

def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing freed memory back to the operating system, for this process.

    By default glibc serves large blocks (above a threshold that starts at 128 KiB) with ``mmap`` and unmaps them
    when freed, and trims the heap top: a forward pass then allocates its activations as fresh pages, and every
    first touch is a page fault (the kernel zeroes each 4 KiB page).  On a virtual machine that costs
    milliseconds per forward at batch 32 and varies with the host's load: neither the roofline nor the model's
    arithmetic has anything to do with it.  ``mallopt`` raises the ``mmap`` threshold to its 32 MiB maximum and
    stops trimming (what the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables do at
    start-up, and what jemalloc or tcmalloc deployments get anyway).  Returns whether it took effect (False off
    glibc).  It cannot be undone within the process.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all(mallopt(k, v) == 1 for k, v in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30),
                                               (m_top_pad, 64 << 20)))


def page_faults() -> int | None:
    """Minor page faults of this process so far (``None`` where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


#: how the samples of one timing are summarised: the median (the typical time) or the minimum (the time least
#: disturbed by other work: on a shared machine, interference only ever adds time)
STATS: dict[str, Callable[[Sequence[float]], float]] = {"median": statistics.median, "min": min}


@dataclass
class Measurement:
    """Times of a real forward pass, per traced row (``None`` where a row could not be timed): the ``stat``
    (median or min) of ``repeats`` samples each."""

    per_row: list[float | None]
    forward_s: float            # the whole forward pass, no hooks
    repeats: int
    method: str
    regime: dict
    notes: list[str] = field(default_factory=list)
    samples: dict = field(default_factory=dict)   # row index -> every sample (seconds)
    stat: str = "median"
    faults_per_forward: float | None = None       # minor page faults per hookless forward pass (median)

    @property
    def layers_s(self) -> float:
        return sum(t for t in self.per_row if t is not None)


def torch_dtype(dtype: str):
    import torch

    name = dtype_name(dtype)
    if name not in _TORCH_DTYPES:
        raise ValueError(f"{name} cannot be measured by running the model in that dtype (it needs a quantised "
                         "model); predictions for it need no measurement")
    return getattr(torch, _TORCH_DTYPES[name])


def measure_forward(model, x, repeats: int = 10, warmup: int = 2, stat: str = "median") -> tuple[float, list[float]]:
    """Seconds of ``model(x)`` (eval, no grad): the ``stat`` of ``repeats`` samples after ``warmup``."""
    import torch

    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - t0)
    return STATS[stat](samples), samples


def measure_layers(model, mc, input_shape: Sequence[int], dtype: str = "fp32", repeats: int = 10,
                   warmup: int = 2, seed: int = 0, progress: Progress | None = None,
                   stat: str = "median") -> Measurement:
    """Time every row of ``mc`` (the trace of ``model``) on a real forward pass on this CPU.

    * module rows: ``time.perf_counter`` between a forward pre-hook and a forward hook on that very module
      (in place, with the caches as the forward leaves them); a module called k times has k rows, matched in
      call order.
    * functional rows (``x + identity`` in a forward): a ``TorchDispatchMode`` times each aten op that runs
      outside every hooked module, keyed like the trace's row names (innermost module, ``:``, op), in order.
    * the whole forward, without hooks or modes, for the total.

    The three kinds of pass alternate within each repeat, so slow drift on a shared machine hits them alike;
    every figure is the ``stat`` (median or min) of ``repeats`` samples.  ``model`` is put in eval mode and
    converted to ``dtype``.
    """
    import torch
    from torch.nn.modules import module as nn_module
    from torch.utils._python_dispatch import TorchDispatchMode

    p = progress or Progress("measuring", enabled=False)
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r}; choose one of: {', '.join(STATS)}")
    summarise = STATS[stat]
    tdt = torch_dtype(dtype)
    model.eval()
    model.to(tdt)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*[int(d) for d in input_shape], generator=g).to(tdt)
    names = {id(m): (n or "(model)") for n, m in model.named_modules()}
    by_name = {(n or "(model)"): m for n, m in model.named_modules()}

    rows = [r for r in mc.rows if r.layer != "unused"]
    module_rows: dict[str, list[int]] = {}
    func_rows: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        (func_rows if r.functional else module_rows).setdefault(r.name, []).append(i)
    notes = []
    missing = sorted(n for n in module_rows if n not in by_name)
    if missing:
        notes.append(f"{len(missing)} traced module(s) not found in the model: {', '.join(missing[:3])}")
    hooked = {n: by_name[n] for n in module_rows if n in by_name}
    hooked_ids = {id(m) for m in hooked.values()}

    # --- pass A: module rows, hooks on those modules only
    calls: dict[str, list[float]] = {}
    starts: list[float] = []

    def pre(mod, args):
        starts.append(time.perf_counter())

    def make_post(name):
        def post(mod, args, out):
            calls.setdefault(name, []).append(time.perf_counter() - starts.pop())
        return post

    # --- pass B: functional rows, a dispatch mode timing ops outside hooked modules
    class _OpTimer(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []
            self.inside = 0
            self.times: dict[str, list[float]] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if self.inside:
                return func(*args, **kwargs)
            t0 = time.perf_counter()
            out = func(*args, **kwargs)
            dt = time.perf_counter() - t0
            key = f"{self.stack[-1] if self.stack else '(model)'}:{str(func.overloadpacket).split('.', 1)[1]}"
            if key in func_rows:
                self.times.setdefault(key, []).append(dt)
            return out

    timer = _OpTimer()

    def g_pre(mod, args):
        if id(mod) in names:
            timer.stack.append(names[id(mod)])
            if id(mod) in hooked_ids:
                timer.inside += 1

    def g_post(mod, args, out):
        if id(mod) in names and timer.stack and timer.stack[-1] == names[id(mod)]:
            timer.stack.pop()
            if id(mod) in hooked_ids:
                timer.inside -= 1

    per_sample: dict[int, list[float]] = {i: [] for i in range(len(rows))}
    forward: list[float] = []
    faults: list[int] = []
    bad: set[str] = set()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        for rep in range(repeats):
            p.update(f"repeat {rep + 1} of {repeats}")
            f0 = page_faults()
            t0 = time.perf_counter()
            model(x)
            forward.append(time.perf_counter() - t0)
            if f0 is not None:
                faults.append(page_faults() - f0)

            handles = []
            for n, m in hooked.items():
                handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(make_post(n))]
            calls.clear()
            starts.clear()
            try:
                model(x)
            finally:
                for h in handles:
                    h.remove()
            for n, idx in module_rows.items():
                got = calls.get(n, [])
                if len(got) != len(idx):
                    bad.add(n)
                    continue
                for i, t in zip(idx, got):
                    per_sample[i].append(t)

            if func_rows:
                timer.times.clear()
                timer.stack.clear()
                timer.inside = 0
                h1 = nn_module.register_module_forward_pre_hook(g_pre)
                h2 = nn_module.register_module_forward_hook(g_post)
                try:
                    with timer:
                        model(x)
                finally:
                    h1.remove()
                    h2.remove()
                for n, idx in func_rows.items():
                    got = timer.times.get(n, [])
                    if len(got) != len(idx):
                        bad.add(n)
                        continue
                    for i, t in zip(idx, got):
                        per_sample[i].append(t)
    if bad:
        notes.append(f"{len(bad)} row name(s) ran a different number of times than traced, left unmeasured: "
                     + ", ".join(sorted(bad)[:3]))
    per_row = [summarise(per_sample[i]) if len(per_sample[i]) == repeats and rows[i].name not in bad
               else None for i in range(len(rows))]
    method = ("forward pre-hook to forward hook on each traced module (perf_counter); functional ops timed "
              "around each aten call by a TorchDispatchMode; whole forward timed without hooks; "
              f"{'medians' if stat == 'median' else 'minima'} of {repeats} interleaved repeats after {warmup} "
              "warm-up passes, torch.no_grad(), eval()")
    return Measurement(per_row, summarise(forward), repeats, method, regime(), notes,
                       {i: s for i, s in per_sample.items()}, stat,
                       statistics.median(faults) if faults else None)
