r"""The time of each layer call, and of a whole forward pass.

Per layer call, from symcost's exact counts (FLOPs under a named convention; elements read and written, each
tensor once) and a :class:`~symcost.timing.devices.Device`:

.. math::
    t_{\text{device}} = \sum_{\text{kernels } j} \max\!\Big(t_k, \lambda_\kappa + \max\!\Big(\frac{F_j}{c_\kappa P_d},
        \frac{B_j}{m_\kappa W}\Big)\Big), \qquad
    t_{\text{host}} = h_\kappa + (n_{\text{kernels}} - 1)\, t_\ell

with $P_d$ the peak FLOP/s at the dtype the kernel runs in (TF32 for fp32 cuDNN convolutions where the device
says so), $W$ the bandwidth, $c_\kappa, m_\kappa$ the fractions of them the call's kind $\kappa$ attains, $t_k$
the least time of one of the kind's kernels, $\lambda_\kappa$ a start-up time its kernels add (0 but where
fitted: a small GEMM attains little of the peak, a large one nearly all of it), $h_\kappa$ the kind's host time
per call and $t_\ell$ the host time of each further kernel launch (a convolution's separate bias add).  Bytes are
elements times the dtype's size.  A call alone takes $t_{\text{host}} + t_{\text{device}}$ on a synchronous
device (a CPU).  On an asynchronous one (a GPU) its kernels are launched $t_r$ (the device's ``return_s``) before
its host work ends -- the module call still returns, its hooks run -- so a call alone takes
$t_{\text{host}} + \max(0, t_{\text{device}} - t_r)$: a near-empty kernel hides under the host time (at batch 1
the whole ResNet-50 forward on the H100 takes the sum of its calls' times alone), a long one does not (fitting
$\max(t_{\text{host}}, t_{\text{device}})$ made BatchNorm's batch-64 rate absorb its host time, and folding's
predicted saving three times the measured one).  A whole forward pass on an asynchronous device is a two-clock
simulation: the host issues call after call, each call's kernels start when issued and when the previous ones
are done; the pass ends when both clocks do.
With no kind rates, $c = m = 1$, $t_k = 0$ and one kernel a call, this is the plain roofline plus $t_0$ per call.

A call whose output is a new allocation larger than the device's ``first_touch_above`` (32 MiB: glibc maps such
a block afresh on every call) adds ``first_touch_s`` per byte written: the page faults of its first touch, which
on a CPU at batch 64 cost more than the kernel itself (``symcost calibrate`` measures them).  A kernel moving more
bytes than the device's ``cache_bytes`` runs at most at its measured bandwidth.

The prediction is a model, not a simulator: caches make real traffic smaller than the ideal count's, and a
backend that picks another algorithm by size (cuDNN, oneDNN) moves off the fitted rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from ..conventions import Convention, as_convention
from ..cost import Cost, to_int
from ..errors import LayerError
from .devices import Device
from .dtypes import dtype_name, itemsize
from .kinds import is_conv, kernels_of, kind_of

_MATMUL_KINDS = ("linear", "matmul", "gemv", "attention")


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
    """One layer call on one device: FLOPs, bytes, and its time split into terms.

    compute_s, memory_s: FLOPs / attained peak and bytes / attained bandwidth, summed over its kernels.
    overhead_s: host seconds of the call.  device_s: the kernels' time (``None``: max(compute_s, memory_s)).
    """

    name: str
    layer: str
    family: str
    flops: int
    bytes_read: int
    bytes_written: int
    compute_s: float
    memory_s: float
    overhead_s: float
    kind: str = ""
    kernels: tuple = ()          # (what, seconds) per kernel
    device_s: float | None = None
    asynchronous: bool = False
    hidden_s: float = 0.0        # host seconds after the launches, while the kernels run (asynchronous devices)
    first_touch_s: float = 0.0   # of device_s: page faults of a freshly mapped output

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        return intensity(self.flops, self.bytes)

    @property
    def host_s(self) -> float:
        return self.overhead_s

    @property
    def kernel_time_s(self) -> float:
        return max(self.compute_s, self.memory_s) if self.device_s is None else self.device_s

    @property
    def time_s(self) -> float:
        """The call alone: host + device time, less the device time that runs while the host returns from the
        call after launching its kernels (``hidden_s``, asynchronous devices only).  Its kernels cannot start
        before the host work that launches them; only in a whole forward does the host run ahead
        (``forward_time``)."""
        return self.overhead_s + max(0.0, self.kernel_time_s - self.hidden_s)

    @property
    def bound(self) -> str:
        """What sets the time: ``compute``, ``memory`` or ``overhead`` (host time is the largest term)."""
        if self.overhead_s > self.kernel_time_s:
            return "overhead"
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def as_dict(self) -> dict:
        i = self.intensity
        return {"name": self.name, "layer": self.layer, "family": self.family, "kind": self.kind,
                "kernels": len(self.kernels), "kernel_names": [k for k, _ in self.kernels],
                "flops": self.flops, "bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
                "bytes": self.bytes, "intensity": None if math.isinf(i) else i, "bound": self.bound,
                "compute_s": self.compute_s, "memory_s": self.memory_s, "overhead_s": self.overhead_s,
                "host_s": self.overhead_s, "device_s": self.kernel_time_s, "first_touch_s": self.first_touch_s,
                "predicted_s": self.time_s}


def _peak_dtype(kind: str, dtype: str, device: Device) -> str:
    # a depthwise convolution has no GEMM for tensor cores to run: PyTorch's own kernel, on the CUDA cores
    tf32 = (is_conv(kind) and kind != "conv_depthwise" and device.tf32_conv) or \
        (kind in _MATMUL_KINDS and device.tf32_matmul)
    return "tf32" if dtype == "fp32" and tf32 else dtype


@dataclass(frozen=True)
class KernelTerms:
    """One kernel of a call at full rate: seconds at 100 % of the peak it runs at and of the bandwidth."""

    kind: str
    what: str
    compute_s: float
    memory_s: float


def kernel_terms(cost: Cost, device: Device, dtype: str, convention: Convention,
                 args: dict | None = None) -> tuple[str, int, int, int, list[KernelTerms]]:
    """(kind, FLOPs, bytes read, bytes written, kernels at full rate) of one call: what ``estimate`` and the
    fits in ``symcost.timing.fit`` share."""
    size = itemsize(dtype)
    flops = to_int(convention.count(cost), "FLOPs")
    read, written = layer_bytes(cost, dtype)
    kind = kind_of(cost.layer, cost.family, args, cost.output_shape)
    bias_flops = bias_bytes = 0
    if cost.family == "conv" and cost.ops.get("bias"):
        bias = Cost(ops={"bias": cost.ops["bias"]}, family=cost.family, layer=cost.layer)
        bias_flops = to_int(convention.count(bias), "bias FLOPs")
        bias_bytes = int((args or {}).get("out_channels", 0)) * size
    kernels = kernels_of(kind, cost.layer, flops, read + written, bias_flops, bias_bytes, written, device.fuses,
                         dtype)
    terms = [KernelTerms(k.kind, k.what, k.flops / device.peak(_peak_dtype(k.kind, dtype, device)),
                         k.bytes / device.bandwidth) for k in kernels]
    return kind, flops, read, written, terms


def writes_fresh_output(row) -> bool:
    """Whether a traced call writes its output to a new allocation: not ``ReLU(inplace=True)``, not ``x.add_(y)``."""
    from ..model import RowKind

    if (row.args or {}).get("inplace"):
        return False
    if row.kind is RowKind.FUNCTIONAL:
        return not row.name.rsplit(":", 1)[-1].split(".")[0].endswith("_")
    return True


def estimate(cost: Cost, device: Device, dtype: str = "fp32", convention: str | Convention = "flops", *,
             name: str = "", overhead: bool = True, args: dict | None = None, fresh: bool = True) -> LayerEstimate:
    """The time estimate of one layer call's ``Cost`` (concrete sizes only); ``args`` are the layer's arguments
    (kernel size, groups: they decide the kind); ``fresh``: its output is a new allocation (not in place), which
    costs the device's ``first_touch_s`` per byte above ``first_touch_above``."""
    conv = as_convention(convention)
    dtype = dtype_name(dtype)
    kind, flops, read, written, terms = kernel_terms(cost, device, dtype, conv, args)
    compute = memory = dev = 0.0
    shown = []
    for k in terms:
        rate = device.rate(k.kind, dtype)
        c = k.compute_s / rate.compute
        m = k.memory_s / device.memory_fraction(k.kind, dtype, k.memory_s * device.bandwidth)
        compute, memory = compute + c, memory + m
        t = max(device.kernel_floor_s(k.kind, dtype), rate.latency_s + max(c, m))
        dev += t
        shown.append((k.what, t))
    touch = device.first_touch(written) if fresh and terms else 0.0
    host = hidden = 0.0
    if overhead:
        host = device.host_s(kind, dtype) + max(0, len(terms) - 1) * device.launch_s
        hidden = min(host, device.return_s) if device.asynchronous else 0.0
    return LayerEstimate(name, cost.layer, cost.family, flops, read, written, compute, memory, host, kind,
                         tuple(shown), dev + touch, device.asynchronous, hidden, touch)


def predict(mc, device: Device, dtype: str = "fp32", convention: str | Convention = "flops",
            overhead: bool = True) -> list[LayerEstimate]:
    """One estimate per layer call of a traced ``ModelCost`` (rows that are not calls, such as unused
    parameters, are left out), in call order."""
    out = []
    for r in mc.rows:
        if not r.is_call:
            continue
        try:
            out.append(estimate(r.cost, device, dtype, convention, name=r.label, overhead=overhead, args=r.args,
                                fresh=writes_fresh_output(r)))
        except LayerError as e:     # a layer family without a time-model kind
            raise LayerError(f"{r.label}: {e}") from None
        except ValueError as e:
            raise ValueError(f"{r.label}: {e} (the time model needs a concrete input shape)") from None
    return out


def total_time(estimates: Iterable[LayerEstimate]) -> float:
    """The sum of the calls' times, each call alone (what per-layer timing adds up to)."""
    return sum(e.time_s for e in estimates)


@dataclass
class ForwardTime:
    """A whole forward pass: its time, and the host and device clocks it ends with."""

    seconds: float
    host_s: float
    device_s: float
    asynchronous: bool
    notes: list[str] = field(default_factory=list)


def forward_time(estimates: Iterable[LayerEstimate]) -> ForwardTime:
    """The whole forward pass: calls in order; on an asynchronous device the host issues each call's kernels after
    its host time and they run once issued and once the device is free (host and device overlap); otherwise the
    calls' times add."""
    est = list(estimates)
    host = sum(e.overhead_s for e in est)
    if not any(e.asynchronous for e in est):
        return ForwardTime(total_time(est), host, sum(e.kernel_time_s for e in est), False)
    h = g = 0.0
    for e in est:
        h += e.overhead_s
        g = max(g, h - e.hidden_s) + e.kernel_time_s
    return ForwardTime(max(h, g), h, sum(e.kernel_time_s for e in est), True)
