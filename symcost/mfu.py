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
    from .timing import DATASHEET_PRESETS, PRESET_ALIASES
    from .roofline import dtype_name, get_device

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
    if not step_time_s > 0:
        raise UsageError(f"--step-time must be a positive number of seconds, got {step_time_s}")
    return MFU(int(flops_per_step), int(tokens), float(step_time_s), float(peak_flops))
