r"""Model FLOPs utilization: the FLOPs a step of the model does, per second of a measured step, over the device's
peak.

.. math::  \text{MFU} = \frac{F_{\text{step}} / t_{\text{step}}}{P_{\text{peak}}(\text{dtype})}

$F_{\text{step}}$ is symcost's exact total under a convention (``torch`` by default: 2 per MAC of every matmul and
convolution, forward and, with ``backward``, backward — what FlopCounterMode and the PaLM/nanoGPT "model FLOPs"
count; no recomputation, no optimizer), per token $F_{\text{step}}/(B L)$.

Which model is counted matters as much: every reference (PaLM, Megatron-LM, nanoGPT, torchtitan) counts the LM
head, which ``hf:MODEL_TYPE`` (``AutoModel``) does not have.  ``hf:llama`` is therefore counted as
``hf:llama:causal-lm`` (``counted_target``), and a note says which model was counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError, unknown_convention
from .parse import InputSpec


def device_peak(device: str, dtype: str) -> tuple[float, str, str]:
    """(peak FLOP/s, device name, its source) for a preset or a device file: the one place symcost reads peaks
    for MFU (``symcost.timing`` owns the device table).  MFU is defined against the datasheet peak (PaLM's
    definition), so a preset's datasheet roofline is used, not the attained rates a fitted preset carries."""
    from .timing import dtype_name, get_device
    from .timing import DATASHEET_PRESETS, PRESET_ALIASES

    try:
        name = PRESET_ALIASES.get(device.strip().lower(), device.strip().lower())
        d = DATASHEET_PRESETS.get(name) or get_device(device)
        return float(d.peak(dtype_name(dtype))), d.name, getattr(d, "source", "")
    except ValueError as e:
        raise UsageError(str(e)) from None


def counted_target(target: str, use_cache: bool = True) -> tuple[str, str | None]:
    """(the target MFU counts, a note saying which it is): an ``hf:`` target without a head gets the head the
    references count (``symcost.targets.practitioners_head``, cached beside the derivations so that a cached call
    imports no transformers); other targets are counted as given (no note for a file or vision model: it is what
    the user built)."""
    from . import cache
    from .targets import HF_HEADS, Target, hf_head, practitioners_head, source_hash

    spec = Target.of(target)
    if not spec.is_hf:
        return target, None
    model_type, head = hf_head(spec.name)
    if head is None:
        key = cache.cache_key(target, "practitioners-head", False, source_hash(target))
        head = cache.load(key, "head") if use_cache else None
        if head not in HF_HEADS:
            try:
                head = practitioners_head(model_type)
            except Exception:  # noqa: BLE001  (an unknown type: load_target names it below)
                return target, None
            if use_cache:
                cache.store(key, {"head": head})
        counted = f"hf:{model_type}:{head}"
        if head == "base":
            return counted, (f"counted {counted}: {model_type} has no LM head in transformers' auto classes, so the "
                             f"base model ({HF_HEADS['base']}) alone")
        return counted, (f"counted {counted}: the model with its {head} head ({HF_HEADS[head]}), as PaLM, "
                         f"Megatron-LM, nanoGPT and torchtitan count; give hf:{model_type}:base for the base model "
                         "without it")
    what = "the base model, no task head" if head == "base" else f"the model with its {head} head"
    return target, f"counted {target}: {what} ({HF_HEADS[head]})"


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
    counted: str = ""           # the target whose FLOPs were counted (hf:TYPE -> hf:TYPE:causal-lm)

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("target", "counted", "input_shape")}
        out["pass"] = self.pass_
        out.update({k: getattr(self, k) for k in ("convention", "dtype", "device", "tokens_per_step", "flops_per_step",
                                                  "flops_per_token", "step_time_s", "achieved_flops_per_s", "mfu",
                                                  "formula", "uncovered", "notes")})
        return out


def concrete_only(input_spec: InputSpec) -> None:
    """MFU is a number for one step: ``UsageError`` for an input with symbols in it."""
    if input_spec.symbols:
        raise UsageError(f"symcost mfu needs a concrete input (e.g. 8x2048), got {input_spec.text!r}")


def mfu_report(target: str, input_spec: InputSpec | str, step_time_s: float, device: str, dtype: str = "bf16",
               convention: str = "torch", *, backward: bool = False, num_devices: int = 1, use_cache: bool = True,
               progress: bool = True, input_dtype: str | None = None) -> MFUReport:
    """The step's exact FLOPs under ``convention`` on a concrete B x L input, FLOPs per token, achieved FLOP/s and
    MFU against ``num_devices`` x the datasheet peak of ``device`` at ``dtype``.  An ``hf:`` target without a
    head is counted with the LM head (``counted_target``); ``input_dtype``: the input's ("int64" for a file model
    that starts with an embedding).  ``input_spec``: ``"8x2048"`` (parsed here once) or the command line's
    ``InputSpec``; a symbolic one is refused before anything is imported or derived."""
    input_spec = InputSpec.of(input_spec)
    concrete_only(input_spec)
    from .conventions import CONVENTIONS
    from .derive import derive
    from .training import exact, tokens

    peak, name, source = device_peak(device, dtype)   # before tracing: a bad device fails fast
    if num_devices < 1:
        raise UsageError(f"--num-devices must be a positive integer, got {num_devices}")
    peak *= num_devices
    mfu(0, 1, step_time_s, peak)   # a bad step time, too
    counted, head_note = counted_target(target, use_cache)
    mc = derive(counted, input_spec, use_cache=use_cache, progress=progress, backward=backward,
                input_dtype=input_dtype)
    if convention not in CONVENTIONS:
        raise unknown_convention(convention, CONVENTIONS)
    flops = int(mc.total(convention)["flops"])
    n = int(tokens(mc.input_shape, getattr(mc, "inputs", None)))
    m = mfu(flops, n, step_time_s, peak)
    what = "forward + backward (one training step, no optimizer)" if backward else "forward only"
    formula = (f"MFU = FLOPs_per_step / (step_time x peak) = {flops:,} / ({step_time_s} s x {peak:.4g} FLOP/s) "
               f"= {m.mfu:.4f}")
    from .conventions import notes_for

    notes = ([head_note] if head_note else []) + notes_for(mc.notes, convention, CONVENTIONS)
    if m.mfu > 1:
        notes.insert(0, f"MFU above 1 ({m.mfu:.2f}): no device runs above its peak; the step time is too short for "
                        f"{num_devices} device(s) (give --num-devices) or the peak is for another dtype")
    return MFUReport(target, [exact(d) for d in mc.input_shape], what, convention, dtype,
                     {"name": name, "count": num_devices, "peak_flops": peak, "source": source}, n, flops,
                     exact(mc.total(convention)["flops"] / n), step_time_s, m.achieved_flops, m.mfu, formula,
                     dict(mc.uncovered), notes, counted)
