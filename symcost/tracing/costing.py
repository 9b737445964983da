"""Which catalog layer each recorded module call or aten op is, with its symbolic sizes.

The trace decides *what* is there; the catalog decides *what it costs*.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import sympy
import torch

from ..layers.base import Layer
from ..registry import all_layers, get_layer_class
from .record import OpEvent, TensorRef

#: modules whose cost depends on forward arguments symcost cannot see: traced through instead
_TRACE_THROUGH = {"multihead_attention"}

#: aten ops that cost nothing on purpose: views and metadata changes, tensor creation
ZERO_COST_OPS = frozenset({
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.permute", "aten.transpose", "aten.t", "aten.expand",
    "aten.select", "aten.slice", "aten.split", "aten.split_with_sizes", "aten.unbind", "aten.unsqueeze",
    "aten.squeeze", "aten.alias", "aten.as_strided", "aten.as_strided_", "aten.detach", "aten.lift_fresh",
    "aten.unflatten", "aten.flatten", "aten.empty", "aten.new_zeros", "aten.new_empty", "aten.zeros", "aten.zero_",
    "aten.scalar_tensor", "aten.fill_", "aten.full", "aten.arange", "aten.empty_like", "aten.zeros_like",
    "aten.ones", "aten.ones_like", "aten.new_ones", "aten.dropout", "aten.native_dropout", "aten.new_empty_strided",
})

_SIMPLE = {
    "aten.add": "add", "aten.add_": "add", "aten.sub": "sub", "aten.sub_": "sub", "aten.rsub": "sub",
    "aten.mul": "mul", "aten.mul_": "mul", "aten.div": "div", "aten.div_": "div",
    "aten.relu": "relu", "aten.relu_": "relu", "aten.clamp_min": "relu", "aten.clamp_min_": "relu",
    "aten.clamp": "hardtanh", "aten.clamp_": "hardtanh", "aten.hardtanh": "hardtanh", "aten.hardtanh_": "hardtanh",
    "aten.sigmoid": "sigmoid", "aten.sigmoid_": "sigmoid", "aten.tanh": "tanh", "aten.tanh_": "tanh",
    "aten.silu": "silu", "aten.silu_": "silu", "aten.hardswish": "hardswish", "aten.hardswish_": "hardswish",
    "aten.hardsigmoid": "hardsigmoid", "aten.hardsigmoid_": "hardsigmoid",
    "aten.exp": "exp", "aten.sqrt": "exp", "aten.rsqrt": "exp", "aten.log": "exp",
    "aten.eq": "compare", "aten.ne": "compare", "aten.lt": "compare", "aten.gt": "compare", "aten.le": "compare",
    "aten.ge": "compare", "aten.masked_fill": "compare", "aten.masked_fill_": "compare", "aten.where": "compare",
    "aten.mm": "matmul", "aten.bmm": "bmm", "aten.addmm": "addmm", "aten.baddbmm": "baddbmm",
    "aten.cat": "copy", "aten.constant_pad_nd": "copy", "aten.clone": "copy", "aten.copy_": "copy",
    "aten.roll": "copy", "aten.index": "copy", "aten._to_copy": "copy", "aten.stack": "copy",
    "aten.gather": "copy", "aten.index_select": "copy", "aten.tril": "copy", "aten.triu": "copy",
}


#: aten op -> handler(ev, sym, concrete) returning (layer, input shapes) or None, registered by other modules
#: (``backward.py``: the backward ops); looked up before the tables below
OP_HANDLERS: dict[str, Callable] = {}


_UPSAMPLE = {"aten.upsample_nearest1d": "nearest", "aten.upsample_nearest2d": "nearest",
             "aten.upsample_nearest3d": "nearest", "aten._upsample_nearest_exact2d": "nearest-exact",
             "aten.upsample_linear1d": "linear", "aten.upsample_bilinear2d": "bilinear",
             "aten.upsample_trilinear3d": "trilinear"}


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
        if a.name == "mode":
            kwargs["mode"] = "train" if module.training else "eval"
        elif hasattr(module, a.name):
            v = getattr(module, a.name)
            if a.kind == "flag" and not isinstance(v, bool):
                v = v is not None  # bias: a tensor or None
            kwargs[a.name] = _plain(v)
    if cls.name.startswith("dropout") and module.training:
        return None  # dropout in training is not the identity: trace through
    return cls(**kwargs)


def _shape_of(x, sym) -> tuple:
    return sym[x.index] if isinstance(x, TensorRef) else ()


def layer_for_op(ev: OpEvent, sym: list, concrete: list) -> tuple[Layer, tuple] | None:
    """The catalog layer and symbolic input shapes of one aten op, or None when not known."""
    op, args = ev.op, ev.args
    if op in OP_HANDLERS:
        return OP_HANDLERS[op](ev, sym, concrete)

    def S(x):
        return _shape_of(x, sym)

    if op in _SIMPLE:
        name = _SIMPLE[op]
        cls = get_layer_class(name)
        if name == "copy":
            ins = [t for t in (args[0] if isinstance(args[0], (list, tuple)) else [args[0]])
                   if isinstance(t, TensorRef) and 0 not in concrete[t.index]]  # empty tensors move nothing
            return cls(), (*[S(t) for t in ins], sym[ev.outputs[0]])
        if name in ("matmul", "bmm"):
            return cls(), (S(args[0]), S(args[1]))
        if name in ("addmm", "baddbmm"):
            return cls(), (S(args[0]), S(args[1]), S(args[2]))
        if name in ("add", "sub", "mul", "div", "compare"):
            b = args[1] if len(args) > 1 else ()
            return cls(symbolic=False) if name != "add" else cls(symbolic=False), (S(args[0]), S(b))
        kwargs = {}
        if name == "hardtanh":
            kwargs = {"min_val": args[1] if len(args) > 1 and args[1] is not None else float("-inf"),
                      "max_val": args[2] if len(args) > 2 and args[2] is not None else float("inf")}
        return cls(symbolic=False, **kwargs), (S(args[0]),)
    if op == "aten.pow" and isinstance(args[0], TensorRef) and not isinstance(args[1], TensorRef):
        return get_layer_class("pow")(symbolic=False, exponent=float(args[1])), (S(args[0]),)
    if op in _UPSAMPLE:
        x = args[0]
        return get_layer_class("upsample")(symbolic=False, size=tuple(concrete[ev.outputs[0]][2:]),
                                           mode=_UPSAMPLE[op]), (S(x), sym[ev.outputs[0]])
    if op == "aten.embedding":  # also reached by nn.Embedding subclasses with their own forward (Gemma, OPT)
        w, idx = args[:2]
        rows, dim = concrete[w.index]
        return get_layer_class("embedding")(symbolic=False, num_embeddings=rows, embedding_dim=dim), (S(idx),)
    if op == "aten.gelu":
        return get_layer_class("gelu")(symbolic=False, approximate=ev.kwargs.get("approximate", "none")), (S(args[0]),)
    if op in ("aten._softmax", "aten._safe_softmax", "aten.softmax", "aten._log_softmax"):
        name = "log_softmax" if "log" in op else "softmax"
        return get_layer_class(name)(symbolic=False, dim=int(args[1])), (S(args[0]),)
    if op == "aten.convolution":
        x, w, b, stride, padding, dilation, transposed, output_padding, groups = args[:9]
        ws = concrete[w.index]
        d = len(ws) - 2
        kw = dict(in_channels=concrete[x.index][1], kernel_size=tuple(ws[2:]), stride=tuple(stride),
                  padding=tuple(padding), dilation=tuple(dilation), groups=groups, bias=b is not None)
        if transposed:
            cls = get_layer_class(f"conv_transpose{d}d")
            kw.update(out_channels=ws[1] * groups, output_padding=tuple(output_padding))
        else:
            cls = get_layer_class(f"conv{d}d")
            kw.update(out_channels=ws[0])
        return cls(symbolic=False, **kw), (S(x),)
    if op in ("aten.native_batch_norm", "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit"):
        x = args[0]
        c = concrete[x.index][1]
        training = bool(args[5]) if op != "aten._native_batch_norm_legit_no_training" and len(args) > 5 else False
        rank = len(concrete[x.index])
        cls = get_layer_class({2: "batchnorm1d", 3: "batchnorm1d", 4: "batchnorm2d", 5: "batchnorm3d"}[rank])
        return cls(symbolic=False, num_features=c, affine=args[1] is not None,
                   track_running_stats=args[3] is not None, mode="train" if training else "eval"), (S(x),)
    if op == "aten.native_layer_norm":
        x, shape, w, b = args[:4]
        return get_layer_class("layernorm")(symbolic=False, normalized_shape=tuple(shape),
                                            elementwise_affine=w is not None, bias=b is not None), (S(x),)
    if op == "aten.native_group_norm":
        x, w, b, n, c, hw, groups = args[:7]
        return get_layer_class("groupnorm")(symbolic=False, num_groups=groups, num_channels=c,
                                            affine=w is not None), (S(x),)
    if op in ("aten.mean", "aten.sum", "aten.amax", "aten.linalg_vector_norm"):
        x = args[0]
        if op == "aten.linalg_vector_norm":
            dims, keep = (args[2] if len(args) > 2 else None), (args[3] if len(args) > 3 else False)
        else:
            dims, keep = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else False)
        dims = tuple(range(len(concrete[x.index]))) if not dims else tuple(dims) if isinstance(dims, (list, tuple)) \
            else (dims,)
        name = {"aten.mean": "mean", "aten.sum": "sum", "aten.amax": "amax"}.get(op, "vector_norm")
        return get_layer_class(name)(symbolic=False, dim=dims, keepdim=bool(keep)), (S(x),)
    if op in ("aten.max_pool2d_with_indices", "aten.max_pool1d_with_indices", "aten.max_pool3d_with_indices"):
        d = int(op.split("pool")[1][0])
        x = args[0]
        kernel = tuple(args[1])
        kw = dict(kernel_size=kernel, stride=tuple(args[2]) if len(args) > 2 and args[2] else kernel,
                  padding=tuple(args[3]) if len(args) > 3 else 0, dilation=tuple(args[4]) if len(args) > 4 else 1,
                  ceil_mode=bool(args[5]) if len(args) > 5 else False)
        return get_layer_class(f"maxpool{d}d")(symbolic=False, **kw), (S(x),)
    if op in ("aten.avg_pool2d", "aten.avg_pool1d", "aten.avg_pool3d"):
        d = int(op.split("pool")[1][0])
        x = args[0]
        kernel = tuple(args[1])
        kw = dict(kernel_size=kernel, stride=tuple(args[2]) if len(args) > 2 and args[2] else kernel,
                  padding=tuple(args[3]) if len(args) > 3 else 0, ceil_mode=bool(args[4]) if len(args) > 4 else False,
                  count_include_pad=bool(args[5]) if len(args) > 5 else True)
        return get_layer_class(f"avgpool{d}d")(symbolic=False, **kw), (S(x),)
    if op in ("aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d"):
        x = args[0]
        kind = "maxpool" if "max" in op else "avgpool"
        d = len(args[1])
        return get_layer_class(f"adaptive_{kind}{d}d")(symbolic=False, output_size=tuple(args[1])), (S(x),)
    return None


def concrete_shapes(shapes) -> tuple:
    return tuple(tuple(sympy.Integer(d) for d in s) for s in shapes)
