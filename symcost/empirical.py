"""The PyTorch side of every cross-check: build the real module, run it, measure.

This module never imports the layer formulas, so a check compares two
independent derivations: symcost's algebra and what torch actually does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

#: symcost-only arguments, not passed to the torch constructor (``mode``: batch norm's eval, train or folded; a
#: resize's mode is torch's own and is passed)
_NOT_TORCH = {"mode"}
_SYMCOST_MODES = {"eval", "train", "folded"}
#: forward-time arguments (torch takes them in forward, not in the constructor)
_FORWARD = {"need_weights", "is_causal"}


@dataclass
class Measured:
    output_shape: tuple[int, ...]
    params: int
    buffers: int
    flops: int  # FlopCounterMode's total
    flops_by_op: dict[str, int]


def resolve(torch_name: str):
    """``"torch.nn.Conv2d"`` -> the class; only names under ``torch`` are resolved."""
    import torch

    if not torch_name.startswith("torch."):
        raise ValueError(f"not a torch name: {torch_name}")
    obj: Any = torch
    for part in torch_name.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def make_inputs(shapes: Sequence[Sequence[int]], integer_high: int | None = None, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    if integer_high is not None:  # embedding indices
        return [torch.randint(0, integer_high, tuple(s), generator=gen) for s in shapes]
    return [torch.randn(tuple(s), generator=gen) for s in shapes]


def measure(torch_name: str, kwargs: dict, shapes: Sequence[Sequence[int]], *, train: bool = False,
            integer_high: int | None = None, forward_kwargs: dict | None = None) -> Measured:
    """Run ``torch_name(**kwargs)`` (a module class or a function) on random inputs of ``shapes``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    target = resolve(torch_name)
    ctor = {k: v for k, v in kwargs.items() if k not in _NOT_TORCH | _FORWARD}
    if kwargs.get("mode") not in (None, *_SYMCOST_MODES):
        ctor["mode"] = kwargs["mode"]
    fwd = dict(forward_kwargs or {})
    fwd.update({k: v for k, v in kwargs.items() if k in _FORWARD})
    inputs = make_inputs(shapes, integer_high)
    if isinstance(target, type) and issubclass(target, torch.nn.Module):
        module = target(**ctor)
        module.train(train)
        call = module
        params = sum(p.numel() for p in module.parameters())
        buffers = sum(b.numel() for b in module.buffers() if b.is_floating_point())
    else:
        call = lambda *xs, **kw: target(*xs, **ctor, **kw)  # noqa: E731
        params = buffers = 0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    counter = FlopCounterMode(display=False)
    # FlopCounterMode has no formula for the CPU flash-attention kernel (it would report 0);
    # the math kernel is the one meta tensors and the documented torch convention use
    with counter, sdpa_kernel(SDPBackend.MATH):
        out = call(*inputs, **fwd)
    if isinstance(out, tuple):  # MultiheadAttention returns (output, weights)
        out = out[0]
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return Measured(tuple(out.shape), int(params), int(buffers), int(counter.get_total_flops()), by_op)
