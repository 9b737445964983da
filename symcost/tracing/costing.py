"""Which catalog layer each recorded module call or aten op is, with its symbolic sizes.

The trace decides *what* is there; the catalog decides *what it costs*.
"""
from __future__ import annotations

from functools import lru_cache

import sympy
import torch

from ..errors import NoSingleFormula
from ..layers.base import Layer, is_number
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
    "aten.full_like", "aten.new_full", "aten.unfold", "aten.empty_strided", "aten.unsafe_split",
    "aten.unsafe_split_with_sizes", "aten.chunk", "aten.unsafe_chunk",
})

_SIMPLE = {
    "aten.add": "add", "aten.add_": "add", "aten.sub": "sub", "aten.sub_": "sub", "aten.rsub": "sub",
    "aten.mul": "mul", "aten.mul_": "mul", "aten.div": "div", "aten.div_": "div",
    "aten.relu": "relu", "aten.relu_": "relu",
    "aten.hardtanh": "hardtanh", "aten.hardtanh_": "hardtanh",
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
        if a.name == "mode" and "train" in a.choices:  # a norm's mode is the module's train/eval state
            kwargs["mode"] = "train" if module.training else "eval"
        elif hasattr(module, a.name):
            v = getattr(module, a.name)
            if a.kind == "flag" and not isinstance(v, bool):
                v = v is not None  # bias: a tensor or None
            kwargs[a.name] = _plain(v)
    if cls.name.startswith("dropout") and module.training:
        return None  # dropout in training is not the identity: trace through
    scale = kwargs.get("scale_factor")
    if isinstance(scale, tuple):  # one factor per axis: one number if they agree, else trace through
        if len(set(scale)) != 1:
            return None
        kwargs["scale_factor"] = scale[0]
    return cls(**kwargs)


def _shape_of(x, sym) -> tuple:
    return sym[x.index] if isinstance(x, TensorRef) else ()


def layer_for_op(ev: OpEvent, sym: list, concrete: list) -> tuple[Layer, tuple] | None:
    """The catalog layer and symbolic input shapes of one aten op, or None when not known."""
    op, args = ev.op, ev.args

    def S(x):
        return _shape_of(x, sym)

    if op in OP_HANDLERS:
        return OP_HANDLERS[op](ev, S, concrete, sym)
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
    if op == "aten.pow":  # a tensor exponent (or base): 1 fn per output element
        return get_layer_class("exp")(symbolic=False), (sym[ev.outputs[0]],)
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


# ---- ops handled one function each: (event, symbolic shape of a tensor argument, concrete shapes, symbolic shapes)
#      -> (catalog layer, its input shapes) ------------------------------------------------------------------------
OP_HANDLERS: dict = {}


def handles(*ops: str):
    """Register the cost handler of one or more aten ops; a second registration of an op is an error."""
    def deco(fn):
        for o in ops:
            if o in OP_HANDLERS or o in _SIMPLE:
                raise ValueError(f"cost handler for {o} registered twice")
            OP_HANDLERS[o] = fn
        return fn
    return deco


def _layer(name: str, **kwargs) -> Layer:
    return get_layer_class(name)(symbolic=False, **kwargs)


def _arg(ev: OpEvent, i: int, name: str, default=None):
    return ev.args[i] if len(ev.args) > i else ev.kwargs.get(name, default)


def _dims(dim, rank: int) -> tuple:
    """An aten ``dim`` argument (None, [] or omitted: every dim) as a tuple."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return tuple(range(rank))
    return tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)


_UNARY = {"aten.neg": "neg", "aten.neg_": "neg", "aten.abs": "abs", "aten.abs_": "abs", "aten.sin": "sin",
          "aten.sin_": "sin", "aten.cos": "sin", "aten.cos_": "sin", "aten.bitwise_not": "logical_not",
          "aten.logical_not": "logical_not"}
_BINARY = {"aten.minimum": "minimum", "aten.maximum": "minimum", "aten.fmin": "minimum", "aten.fmax": "minimum",
           **{f"aten.{o}": "logical" for o in ("bitwise_and", "bitwise_or", "bitwise_xor", "logical_and",
                                                "logical_or", "logical_xor", "__and__", "__or__", "__xor__",
                                                "__lshift__", "__rshift__", "bitwise_left_shift",
                                                "bitwise_right_shift")}}


@handles(*_UNARY)
def _unary(ev, S, concrete, sym):
    return _layer(_UNARY[ev.op]), (S(ev.args[0]),)


@handles(*_BINARY)
def _binary(ev, S, concrete, sym):
    return _layer(_BINARY[ev.op]), (S(ev.args[0]), S(ev.args[1]))


@handles("aten.clamp", "aten.clamp_", "aten.clamp_min", "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_")
def _clamp(ev, S, concrete, sym):
    x = ev.args[0]
    if ev.op.startswith("aten.clamp_m"):
        bounds = [ev.args[1]]
    else:
        bounds = [_arg(ev, 1, "min"), _arg(ev, 2, "max")]
    given = [b for b in bounds if b is not None]
    if any(isinstance(b, TensorRef) for b in given):  # scalar bounds among them read one value each
        return _layer("clamp_tensor"), (S(x), *[S(b) for b in given])
    if len(given) == 2:
        return _layer("hardtanh", min_val=float(given[0]), max_val=float(given[1])), (S(x),)
    return _layer("relu"), (S(x),)  # one bound: max(x, a) or min(x, b), 1 cmp per element as ReLU's


@handles("aten.softplus")
def _softplus(ev, S, concrete, sym):
    return _layer("softplus", beta=float(_arg(ev, 1, "beta", 1.0)), threshold=float(_arg(ev, 2, "threshold", 20.0))), \
        (S(ev.args[0]),)


@handles("aten.addcmul", "aten.addcmul_", "aten.addcdiv", "aten.addcdiv_")
def _addcmul(ev, S, concrete, sym):
    a, b, c = ev.args[:3]
    return _layer("addcmul", value=float(_arg(ev, 3, "value", 1.0)), divide="div" in ev.op), (S(a), S(b), S(c))


@handles("aten.cumsum", "aten.cumsum_", "aten.cumprod", "aten.cumprod_")
def _cumsum(ev, S, concrete, sym):
    return _layer("cumsum", dim=int(_arg(ev, 1, "dim")), product="prod" in ev.op), (S(ev.args[0]),)


@handles("aten.var", "aten.std", "aten.var_mean", "aten.std_mean", "aten.amin")
def _statistics(ev, S, concrete, sym):
    x = ev.args[0]
    dims = _dims(_arg(ev, 1, "dim"), len(concrete[x.index]))
    keep = bool(_arg(ev, 2 if ev.op == "aten.amin" else 3, "keepdim", False))
    if ev.op == "aten.amin":
        return _layer("amin", dim=dims, keepdim=keep), (S(x),)
    name = "std" if "std" in ev.op else "var"
    return _layer(name, dim=dims, keepdim=keep, with_mean=ev.op.endswith("_mean")), (S(x),)


@handles("aten.argmax", "aten.argmin", "aten.max", "aten.min")
def _argmax(ev, S, concrete, sym):
    x = ev.args[0]
    rank = len(concrete[x.index])
    dim = _arg(ev, 1, "dim")
    if isinstance(dim, TensorRef):  # torch.max(a, b): elementwise
        return _layer("minimum"), (S(x), S(dim))
    keep = bool(_arg(ev, 2, "keepdim", False))
    if ev.op in ("aten.max", "aten.min") and dim is None:  # the max of everything: a reduction, no index
        return _layer("amin", dim=_dims(None, rank), keepdim=False), (S(x),)
    return _layer("argmax", dim=dim, keepdim=keep, with_values=ev.op in ("aten.max", "aten.min")), (S(x),)


@handles("aten.topk")
def _topk(ev, S, concrete, sym):
    return _layer("topk", k=int(ev.args[1]), dim=int(_arg(ev, 2, "dim", -1))), (S(ev.args[0]),)


@handles("aten.scatter", "aten.scatter_", "aten.repeat", "aten.flip", "aten.reflection_pad1d", "aten.reflection_pad2d",
         "aten.reflection_pad3d", "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d")
def _movement(ev, S, concrete, sym):
    """Data movement without arithmetic: every tensor argument read once, the output written."""
    ins = [t for t in ev.args if isinstance(t, TensorRef) and 0 not in concrete[t.index]]
    return _layer("copy"), (*[S(t) for t in ins], sym[ev.outputs[0]])


@handles("aten.im2col")
def _im2col(ev, S, concrete, sym):
    x, kernel, dilation, padding, stride = ev.args[:5]
    return _layer("unfold", kernel_size=tuple(kernel), dilation=tuple(dilation), padding=tuple(padding),
                  stride=tuple(stride)), (S(x),)


@handles("aten.col2im")
def _col2im(ev, S, concrete, sym):
    x, _, kernel, dilation, padding, stride = ev.args[:6]
    size = tuple(sym[ev.outputs[0]][-2:])
    return _layer("fold", output_size=size, kernel_size=tuple(kernel), dilation=tuple(dilation),
                  padding=tuple(padding), stride=tuple(stride)), (S(x),)


@handles("aten.upsample_bicubic2d", "aten._upsample_bilinear2d_aa", "aten._upsample_bicubic2d_aa")
def _resize(ev, S, concrete, sym):
    x, out = ev.args[0], sym[ev.outputs[0]]
    antialias = ev.op.endswith("_aa")
    if antialias and not all(is_number(d) for d in (*S(x), *out)):
        raise NoSingleFormula(f"{ev.module or '(model)'}: {ev.op}: an antialiased resize from {S(x)} to {out} sums "
                              "taps over windows that have no closed form in the input size; trace at a concrete "
                              "size (--at) instead")
    mode = "bicubic" if "bicubic" in ev.op else "bilinear"
    return _layer("upsample", size=tuple(concrete[ev.outputs[0]][2:]), mode=mode, antialias=antialias), (S(x), out)


@handles("aten.max_pool2d", "aten.max_pool1d", "aten.max_pool3d")
def _max_pool(ev, S, concrete, sym):
    d = int(ev.op.split("pool")[1][0])
    kernel = _axis(ev.args[1], d)
    return _layer(f"maxpool{d}d", kernel_size=kernel, stride=_axis(_arg(ev, 2, "stride"), d) or kernel,
                  padding=_axis(_arg(ev, 3, "padding", 0), d), dilation=_axis(_arg(ev, 4, "dilation", 1), d),
                  ceil_mode=bool(_arg(ev, 5, "ceil_mode", False))), (S(ev.args[0]),)


@handles("aten.adaptive_avg_pool1d", "aten.adaptive_max_pool1d", "aten.adaptive_max_pool3d")
def _adaptive_pool(ev, S, concrete, sym):
    size = tuple(ev.args[1])
    kind = "maxpool" if "max" in ev.op else "avgpool"
    return _layer(f"adaptive_{kind}{len(size)}d", output_size=size), (S(ev.args[0]),)


@handles("aten.embedding")
def _embedding(ev, S, concrete, sym):
    weight, indices = ev.args[:2]
    v, e = concrete[weight.index]
    return _layer("embedding", num_embeddings=v, embedding_dim=e), (S(indices),)


def _axis(v, dims: int) -> tuple:
    """A per-axis argument (an int, one value for every axis, or one per axis); () for None or []."""
    v = [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(v * dims if len(v) == 1 else v)


def concrete_shapes(shapes) -> tuple:
    return tuple(tuple(sympy.Integer(d) for d in s) for s in shapes)
