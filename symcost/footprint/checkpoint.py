"""Activation checkpointing: which modules are recomputed in the backward, and wrapping them as torch does.

``full``: every block — a module whose class name ends in Block, Layer or Bottleneck (GPT2Block, LlamaDecoderLayer,
BertLayer, torchvision's BasicBlock and Bottleneck), the outermost such, held in a ModuleList or Sequential; its
forward runs under ``torch.utils.checkpoint.checkpoint(use_reentrant=False)``, so autograd keeps the block's inputs
and recomputes the rest in the backward.  ``selective``: the attention modules only (class name ending in
Attention), the rest of each block saved as usual.
"""
from __future__ import annotations

import re

import torch

from ..errors import UsageError

MODES = ("full", "selective")
_NAMES = {"full": re.compile(r"(Block|Layer|Bottleneck)$"), "selective": re.compile(r"Attention$")}


def checkpointed(model: torch.nn.Module, mode: str) -> list[str]:
    """Wrap the forward of each module ``mode`` names (in place) and return their names; refuse where there is none."""
    if mode not in MODES:
        raise UsageError(f"checkpoint {mode!r}: expected one of {', '.join(MODES)}")
    pattern = _NAMES[mode]
    containers = (torch.nn.ModuleList, torch.nn.Sequential)
    chosen: list[tuple[str, torch.nn.Module]] = []
    for name, parent in model.named_modules():
        if any(name == c or name.startswith(c + ".") for c, _ in chosen):
            continue  # inside a module checkpointed already: torch would recompute it there anyway
        for child_name, child in parent.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if pattern.search(type(child).__name__) and (mode == "selective" or isinstance(parent, containers)):
                if not any(full == c or full.startswith(c + ".") for c, _ in chosen):
                    chosen.append((full, child))
    if not chosen:
        what = "blocks (a class named *Block, *Layer or *Bottleneck in a ModuleList or Sequential)" \
            if mode == "full" else "attention modules (a class named *Attention)"
        raise UsageError(f"--checkpoint {mode}: the model has no {what} to recompute")
    for _, module in chosen:
        module.forward = _recomputed(module.forward)
    for m in model.modules():  # a cache filled in the forward would be filled again by the recomputation
        config = getattr(m, "config", None)
        if getattr(config, "use_cache", False):
            config.use_cache = False
    return [n for n, _ in chosen]


def _recomputed(forward):
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=False,
                                                 **kwargs)
    return run
