"""Which catalog layer a recorded call of a ``torch.nn`` module is: the exact module types the catalog names
(``Layer.torch_name``), each built from the module's own attributes.  (Aten ops are decoded by their handlers,
``tracing/ops``.)"""
from __future__ import annotations

from functools import lru_cache

import torch

from ..layers.base import Layer
from ..layers.resize import formula_scale
from ..registry import all_layers

#: modules whose cost depends on forward arguments symcost cannot see: traced through instead
_TRACE_THROUGH = {"multihead_attention"}

@lru_cache(maxsize=1)
def module_layers() -> dict[type, type]:
    """``torch.nn`` module class -> catalog layer class, from each layer's ``torch_name``."""
    from ..empirical import resolve

    out = {}
    for name, cls in all_layers().items():
        if name in _TRACE_THROUGH or not cls.torch_name.startswith("torch.nn.") or "functional" in cls.torch_name:
            continue
        target = resolve(cls.torch_name)
        if isinstance(target, type) and issubclass(target, torch.nn.Module):
            out[target] = cls
    return out


def _plain(v):
    if isinstance(v, torch.Tensor) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    return v


def layer_for_module(module: torch.nn.Module) -> Layer | None:
    """The catalog layer of an exact ``torch.nn`` type, built from the module's own attributes."""
    cls = module_layers().get(type(module))
    if cls is None:
        return None
    kwargs = {}
    for a in cls.args:
        if a.name == "mode" and "train" in a.choices:  # a norm's mode is the module's train/eval state
            kwargs["mode"] = "train" if module.training else "eval"
        elif hasattr(module, a.name):
            v = getattr(module, a.name)
            if a.kind == "flag" and not isinstance(v, bool) and not (v is None and a.default is None):
                v = v is not None  # bias: a tensor or None (an unset align_corners stays unset)
            kwargs[a.name] = _plain(v)
    if cls.name.startswith("dropout") and module.training:
        return None  # dropout in training is not the identity: trace through
    scale = kwargs.get("scale_factor")
    if isinstance(scale, tuple):  # one factor per axis: one number if they agree, else trace through
        if len(set(scale)) != 1:
            return None
        kwargs["scale_factor"] = scale[0]
    if kwargs.get("scale_factor") is not None and not formula_scale(kwargs["scale_factor"]):
        return None  # torch's rounding of size * scale has no formula: the resize op is traced with its sizes
    return cls(**kwargs)
