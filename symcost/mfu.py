r"""Model FLOPs utilization: the FLOPs a step of the model does, per second of a measured step, over the device's
peak.

.. math::  \text{MFU} = \frac{F_{\text{step}} / t_{\text{step}}}{P_{\text{peak}}(\text{dtype})}

$F_{\text{step}}$ is symcost's exact total under a convention (``torch`` by default: 2 per MAC of every matmul and
convolution, forward and, with ``backward``, backward — what FlopCounterMode and the PaLM/nanoGPT "model FLOPs"
count; no recomputation, no optimizer), per token $F_{\text{step}}/(B L)$.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError


def device_peak(device: str, dtype: str) -> tuple[float, str, str]:
    """(peak FLOP/s, device name, its source) for a preset or a device file: the one place symcost reads peaks
    for MFU (``symcost.timing`` owns the device table).  MFU is defined against the datasheet peak (PaLM's
    definition), so a preset's datasheet roofline is used, not the attained rates a fitted preset carries."""
    from .roofline import dtype_name, get_device
    from .timing import DATASHEET_PRESETS, PRESET_ALIASES

    try:
        name = PRESET_ALIASES.get(device.strip().lower(), device.strip().lower())
        d = DATASHEET_PRESETS.get(name) or get_device(device)
        return float(d.peak(dtype_name(dtype))), d.name, getattr(d, "source", "")
    except ValueError as e:
        raise UsageError(str(e)) from None


@dataclass(frozen=True)
class MFU:
    flops_per_step: int
    tokens: int
    step_time_s: float
    peak_flops: float

    @property
    def flops_per_token(self) -> float:
        return self.flops_per_step / self.tokens

    @property
    def achieved_flops(self) -> float:
        """FLOP/s achieved: the step's FLOPs over its measured time."""
        return self.flops_per_step / self.step_time_s

    @property
    def mfu(self) -> float:
        return self.achieved_flops / self.peak_flops


def mfu(flops_per_step: int, tokens: int, step_time_s: float, peak_flops: float) -> MFU:
    import math

    if not (step_time_s > 0 and math.isfinite(step_time_s)):
        raise UsageError(f"--step-time must be a positive, finite number of seconds, got {step_time_s}")
    if not (peak_flops > 0 and math.isfinite(peak_flops)):
        raise UsageError(f"the device's peak must be a positive, finite FLOP/s, got {peak_flops}")
    return MFU(int(flops_per_step), int(tokens), float(step_time_s), float(peak_flops))


@dataclass
class MFUReport:
    """What ``symcost mfu`` prints, as data (``as_dict``: its ``--json``, key for key)."""

    target: str
    input_shape: list
    pass_: str
    convention: str
    dtype: str
    device: dict
    tokens_per_step: int
    flops_per_step: int
    flops_per_token: object     # exact: an int or "p/q"
    step_time_s: float
    achieved_flops_per_s: float
    mfu: float
    formula: str
    uncovered: dict
    notes: list

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("target", "input_shape")}
        out["pass"] = self.pass_
        out.update({k: getattr(self, k) for k in ("convention", "dtype", "device", "tokens_per_step", "flops_per_step",
                                                  "flops_per_token", "step_time_s", "achieved_flops_per_s", "mfu",
                                                  "formula", "uncovered", "notes")})
        return out


def mfu_report(target: str, input_spec: str, step_time_s: float, device: str, dtype: str = "bf16",
               convention: str = "torch", *, backward: bool = False, num_devices: int = 1, use_cache: bool = True,
               progress: bool = True) -> MFUReport:
    """The step's exact FLOPs under ``convention`` on a concrete B x L input, FLOPs per token, achieved FLOP/s and
    MFU against ``num_devices`` x the datasheet peak of ``device`` at ``dtype``."""
    from .conventions import CONVENTIONS
    from .derive import derive
    from .parse import parse_shape_names
    from .training import exact, tokens

    shape = parse_shape_names(input_spec)
    if any(isinstance(d, str) for d in shape):
        raise UsageError(f"symcost mfu needs a concrete input (e.g. 8x2048), got {input_spec!r}")
    peak, name, source = device_peak(device, dtype)   # before tracing: a bad device fails fast
    if num_devices < 1:
        raise UsageError(f"--num-devices must be a positive integer, got {num_devices}")
    peak *= num_devices
    mfu(0, 1, step_time_s, peak)   # a bad step time, too
    mc = derive(target, input_spec, use_cache=use_cache, progress=progress, backward=backward)
    if convention not in CONVENTIONS:
        raise UsageError(f"unknown convention {convention!r}; choose one of: {', '.join(CONVENTIONS)}")
    flops = int(mc.total(convention)["flops"])
    n = int(tokens(mc.input_shape, getattr(mc, "inputs", None)))
    m = mfu(flops, n, step_time_s, peak)
    what = "forward + backward (one training step, no optimizer)" if backward else "forward only"
    formula = (f"MFU = FLOPs_per_step / (step_time x peak) = {flops:,} / ({step_time_s} s x {peak:.4g} FLOP/s) "
               f"= {m.mfu:.4f}")
    notes = list(mc.notes)
    if m.mfu > 1:
        notes.insert(0, f"MFU above 1 ({m.mfu:.2f}): no device runs above its peak; the step time is too short for "
                        f"{num_devices} device(s) (give --num-devices) or the peak is for another dtype")
    return MFUReport(target, [exact(d) for d in mc.input_shape], what, convention, dtype,
                     {"name": name, "count": num_devices, "peak_flops": peak, "source": source}, n, flops,
                     exact(mc.total(convention)["flops"] / n), step_time_s, m.achieved_flops, m.mfu, formula,
                     dict(mc.uncovered), notes)
