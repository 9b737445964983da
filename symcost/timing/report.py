"""A model's predicted time per layer next to its measured time: what ``symcost latency`` prints.

``latency_report`` predicts every traced call on a device, optionally times a real forward pass per call, and
aggregates: totals (sum of calls, the whole forward with host/device overlap, kernels), each family's share of
FLOPs, bytes and time, and Spearman's rank correlation of predicted against measured per-call time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import UsageError
from .devices import Device
from .model import LayerEstimate, forward_time, predict, total_time
from .stats import shares, spearman

#: page faults per forward above which the report suggests --keep-memory
MANY_FAULTS = 100


@dataclass
class LatencyReport:
    """Fields in the order ``symcost latency --json`` prints them; ``estimates`` and ``measured`` (per traced call,
    ``None`` where not measured) are kept for rendering and left out of ``as_dict``."""

    target: str
    input_shape: list
    dtype: str
    convention: str
    device: dict
    regime: dict
    method: str
    layers: list
    total: dict
    share_by_family: dict
    spearman: float | None
    n_compared: int
    notes: list
    estimates: list[LayerEstimate] = field(default_factory=list, repr=False)
    measured: list = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("target", "input_shape", "dtype", "convention", "device", "regime",
                                              "method", "layers", "total", "share_by_family", "spearman",
                                              "n_compared", "notes")}


def family_sums(estimates: Sequence[LayerEstimate], values: Sequence[float | None]) -> dict[str, float]:
    """Per family, the sum of ``values`` (one per estimate; ``None`` skipped)."""
    out: dict[str, float] = {}
    for e, v in zip(estimates, values):
        if v is not None:
            out[e.family] = out.get(e.family, 0) + v
    return out


def latency_report(target: str, model, mc, shape: Sequence[int], device: Device, dtype: str, convention, *,
                   measure: bool = True, repeats: int = 10, warmup: int = 2, stat: str = "median",
                   keep_memory: bool = False, progress=None) -> LatencyReport:
    """Predict each call of ``mc`` (the trace of ``model`` on ``shape``) on ``device`` and, with ``measure``, time
    it on this machine; ``keep_memory`` says whether freed memory is kept (it only changes the notes)."""
    from .measure import measure_layers, regime, regime_text

    try:
        est = predict(mc, device, dtype, convention)
    except ValueError as e:
        raise UsageError(str(e)) from None
    m = None
    if measure:
        try:
            m = measure_layers(model, mc, shape, dtype, repeats=repeats, warmup=warmup, progress=progress, stat=stat)
        except Exception as e:  # noqa: BLE001  the model's own complaint on a real input, in one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            shown = "x".join(map(str, shape))
            raise UsageError(f"the model does not run on {shown} in {dtype}: {msg}") from None
    measured = m.per_row if m else [None] * len(est)
    pairs = [(e.time_s, t) for e, t in zip(est, measured) if t is not None]
    rho = spearman([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) >= 2 else None
    share = {"flops": shares(family_sums(est, [e.flops for e in est])),
             "bytes": shares(family_sums(est, [e.bytes for e in est])),
             "predicted_time": shares(family_sums(est, [e.time_s for e in est]))}
    if m:
        share["measured_time"] = shares(family_sums(est, measured))
    reg = m.regime if m else regime()
    whole = forward_time(est)
    notes = list(m.notes) if m else []
    if mc.uncovered:
        notes.append("uncovered op(s), neither predicted nor measured: "
                     + ", ".join(f"{k} x{v}" for k, v in mc.uncovered.items()))
    if m and m.faults_per_forward and m.faults_per_forward >= MANY_FAULTS and not keep_memory:
        notes.append(f"{m.faults_per_forward:,.0f} page faults per forward pass: the allocator hands freed "
                     "activations back to the OS and each forward faults them in again, a cost the roofline "
                     "does not model; --keep-memory stops that")
    return LatencyReport(
        target=target, input_shape=list(shape), dtype=dtype, convention=convention.name, device=device.to_dict(),
        regime={**reg, "summary": regime_text(reg, dtype), "batch": shape[0], "keep_memory": keep_memory,
                "page_faults_per_forward": m.faults_per_forward if m else None},
        method=m.method if m else "prediction only (--no-measure)",
        layers=[{**e.as_dict(), "measured_s": t} for e, t in zip(est, measured)],
        total={"predicted_s": total_time(est), "predicted_forward_s": whole.seconds,
               "predicted_host_s": whole.host_s, "predicted_device_s": whole.device_s,
               "kernels": sum(len(e.kernels) for e in est), "measured_layers_s": m.layers_s if m else None,
               "measured_forward_s": m.forward_s if m else None},
        share_by_family=share, spearman=rho, n_compared=len(pairs), notes=notes, estimates=est, measured=measured)
