"""Which catalog layer each recorded module call or aten op is, with its symbolic sizes.

The trace decides *what* is there; the catalog decides *what it costs*.  Each op is decoded here once, by its
handler (registered with ``handlers.handles``): the layer it returns gives both the op's cost and, for ops whose
output is not simply their inputs broadcast, its output shape (``propagate`` takes ``Cost.output_shape``).
"""
from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import NoSingleFormula
from ..layers.base import Layer, is_number
from ..layers.tensor_ops import formula_scale
from ..registry import all_layers, get_layer_class
from .handlers import call, handler_for, handles
from .record import OpEvent, TensorRef

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


def _shape_of(x, sym) -> tuple:
    return sym[x.index] if isinstance(x, TensorRef) else ()


def layer_for_op(ev: OpEvent, sym: list, concrete: list) -> tuple[Layer, tuple] | None:
    """The catalog layer and symbolic input shapes of one aten op (its handler's answer), or None when not known."""
    h = handler_for(ev.op)
    if h is None:
        return None
    return call(h, ev, lambda x: _shape_of(x, sym), concrete, sym)


# ---- the built-in handlers, one per op or group of ops: (event, symbolic shape of a tensor argument, concrete
#      shapes, symbolic shapes) -> (catalog layer, its input shapes); see ``handlers`` for the contract ----------

def _layer(name: str, **kwargs) -> Layer:
    return get_layer_class(name)(symbolic=False, **kwargs)


def _arg(ev: OpEvent, i: int, name: str, default=None):
    return ev.args[i] if len(ev.args) > i else ev.kwargs.get(name, default)


def _dims(dim, rank: int) -> tuple:
    """An aten ``dim`` argument (None, [] or omitted: every dim) as a tuple."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return tuple(range(rank))
    return tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)


def _axis(v, dims: int) -> tuple:
    """A per-axis argument (an int, one value for every axis, or one per axis); () for None or []."""
    v = [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(v * dims if len(v) == 1 else v)


def _table(**groups: tuple) -> dict:
    """{layer: (op, ...)} -> {op: layer}."""
    return {op: layer for layer, ops in groups.items() for op in ops}


_ELEMENTWISE = _table(
    add=("aten.add", "aten.add_"), sub=("aten.sub", "aten.sub_", "aten.rsub"), mul=("aten.mul", "aten.mul_"),
    div=("aten.div", "aten.div_"),
    compare=("aten.eq", "aten.ne", "aten.lt", "aten.gt", "aten.le", "aten.ge", "aten.masked_fill",
             "aten.masked_fill_", "aten.where"))


@handles(*_ELEMENTWISE, output="inputs")
def _elementwise(ev, S, concrete, sym):
    b = ev.args[1] if len(ev.args) > 1 else ()
    return _layer(_ELEMENTWISE[ev.op]), (S(ev.args[0]), S(b))


_ACTIVATIONS = _table(
    relu=("aten.relu", "aten.relu_"), hardtanh=("aten.hardtanh", "aten.hardtanh_"),
    sigmoid=("aten.sigmoid", "aten.sigmoid_"), tanh=("aten.tanh", "aten.tanh_"), silu=("aten.silu", "aten.silu_"),
    hardswish=("aten.hardswish", "aten.hardswish_"), hardsigmoid=("aten.hardsigmoid", "aten.hardsigmoid_"),
    exp=("aten.exp", "aten.sqrt", "aten.rsqrt", "aten.log"))


@handles(*_ACTIVATIONS, output="inputs")
def _activation(ev, S, concrete, sym):
    name, args = _ACTIVATIONS[ev.op], ev.args
    kwargs = {}
    if name == "hardtanh":
        kwargs = {"min_val": args[1] if len(args) > 1 and args[1] is not None else float("-inf"),
                  "max_val": args[2] if len(args) > 2 and args[2] is not None else float("inf")}
    return _layer(name, **kwargs), (S(args[0]),)


@handles("aten.gelu", output="inputs")
def _gelu(ev, S, concrete, sym):
    return _layer("gelu", approximate=ev.kwargs.get("approximate", "none")), (S(ev.args[0]),)


@handles("aten._softmax", "aten._safe_softmax", "aten.softmax", "aten._log_softmax", output="inputs")
def _softmax(ev, S, concrete, sym):
    return _layer("log_softmax" if "log" in ev.op else "softmax", dim=int(ev.args[1])), (S(ev.args[0]),)


@handles("aten.pow", output="inputs")
def _pow(ev, S, concrete, sym):
    x, e = ev.args[:2]
    if isinstance(x, TensorRef) and not isinstance(e, TensorRef):
        return _layer("pow", exponent=float(e)), (S(x),)
    return _layer("exp"), (sym[ev.outputs[0]],)  # a tensor exponent (or base): 1 fn per output element


@handles("aten.erf", "aten.erf_", output="inputs")
def _erf(ev, S, concrete, sym):
    """erf (the exact GELU written out, as Hugging Face's ``gelu_python``): 1 fn per element, as exp."""
    return _layer("exp"), (S(ev.args[0]),)


_TRANSCENDENTAL = ("aten.log1p", "aten.log1p_", "aten.expm1", "aten.expm1_", "aten.exp2", "aten.exp2_", "aten.log2",
                   "aten.log2_", "aten.log10", "aten.log10_")


@handles(*_TRANSCENDENTAL, output="inputs")
def _transcendental(ev, S, concrete, sym):
    """log(1 + x), exp(x) - 1, 2^x, log2, log10: one library call per element each, as exp and log: 1 fn."""
    return _layer("exp"), (S(ev.args[0]),)


_UNARY = _table(neg=("aten.neg", "aten.neg_"), abs=("aten.abs", "aten.abs_"),
                sin=("aten.sin", "aten.sin_", "aten.cos", "aten.cos_"),
                logical_not=("aten.bitwise_not", "aten.logical_not"))
_BINARY = _table(minimum=("aten.minimum", "aten.maximum", "aten.fmin", "aten.fmax"),
                 logical=tuple(f"aten.{o}" for o in ("bitwise_and", "bitwise_or", "bitwise_xor", "logical_and",
                                                    "logical_or", "logical_xor", "__and__", "__or__", "__xor__",
                                                    "__lshift__", "__rshift__", "bitwise_left_shift",
                                                    "bitwise_right_shift")))


@handles(*_UNARY, output="inputs")
def _unary(ev, S, concrete, sym):
    return _layer(_UNARY[ev.op]), (S(ev.args[0]),)


@handles(*_BINARY, output="inputs")
def _binary(ev, S, concrete, sym):
    return _layer(_BINARY[ev.op]), (S(ev.args[0]), S(ev.args[1]))


@handles("aten.clamp", "aten.clamp_", "aten.clamp_min", "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_",
         output="inputs")
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


@handles("aten.softplus", output="inputs")
def _softplus(ev, S, concrete, sym):
    return _layer("softplus", beta=float(_arg(ev, 1, "beta", 1.0)), threshold=float(_arg(ev, 2, "threshold", 20.0))), \
        (S(ev.args[0]),)


@handles("aten.addcmul", "aten.addcmul_", "aten.addcdiv", "aten.addcdiv_", output="inputs")
def _addcmul(ev, S, concrete, sym):
    a, b, c = ev.args[:3]
    return _layer("addcmul", value=float(_arg(ev, 3, "value", 1.0)), divide="div" in ev.op), (S(a), S(b), S(c))


@handles("aten.cumsum", "aten.cumsum_", "aten.cumprod", "aten.cumprod_", output="inputs")
def _cumsum(ev, S, concrete, sym):
    return _layer("cumsum", dim=int(_arg(ev, 1, "dim")), product="prod" in ev.op), (S(ev.args[0]),)


# ---- normalization: several outputs (the saved statistics) of other shapes: each broadcast from the inputs ------

@handles("aten.native_batch_norm", "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit",
         output="inputs")
def _batch_norm(ev, S, concrete, sym):
    x, args = ev.args[0], ev.args
    training = bool(args[5]) if ev.op != "aten._native_batch_norm_legit_no_training" and len(args) > 5 else False
    rank = len(concrete[x.index])
    name = {2: "batchnorm1d", 3: "batchnorm1d", 4: "batchnorm2d", 5: "batchnorm3d"}[rank]
    return _layer(name, num_features=concrete[x.index][1], affine=args[1] is not None,
                  track_running_stats=args[3] is not None, mode="train" if training else "eval"), (S(x),)


@handles("aten.native_layer_norm", output="inputs")
def _layer_norm(ev, S, concrete, sym):
    x, shape, w, b = ev.args[:4]
    return _layer("layernorm", normalized_shape=tuple(shape), elementwise_affine=w is not None,
                  bias=b is not None), (S(x),)


@handles("aten.native_group_norm", output="inputs")
def _group_norm(ev, S, concrete, sym):
    x, w, _b, _n, c, _hw, groups = ev.args[:7]
    return _layer("groupnorm", num_groups=groups, num_channels=c, affine=w is not None), (S(x),)


# ---- ops whose output shape is their layer's: convolution, pooling, reductions, matmuls, lookups ----------------

@handles("aten.convolution")
def _convolution(ev, S, concrete, sym):
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = ev.args[:9]
    ws = concrete[w.index]
    d = len(ws) - 2
    kw = dict(in_channels=concrete[x.index][1], kernel_size=tuple(ws[2:]), stride=tuple(stride),
              padding=tuple(padding), dilation=tuple(dilation), groups=groups, bias=b is not None)
    if transposed:
        return _layer(f"conv_transpose{d}d", out_channels=ws[1] * groups, output_padding=tuple(output_padding),
                      **kw), (S(x),)
    return _layer(f"conv{d}d", out_channels=ws[0], **kw), (S(x),)


@handles("aten.mm", "aten.bmm")
def _matmul(ev, S, concrete, sym):
    return _layer("matmul" if ev.op == "aten.mm" else "bmm"), (S(ev.args[0]), S(ev.args[1]))


@handles("aten.addmm", "aten.baddbmm")
def _addmm(ev, S, concrete, sym):
    return _layer(ev.op.split(".")[1]), (S(ev.args[0]), S(ev.args[1]), S(ev.args[2]))


@handles("aten.max_pool2d_with_indices", "aten.max_pool1d_with_indices", "aten.max_pool3d_with_indices")
def _max_pool_with_indices(ev, S, concrete, sym):
    args, d = ev.args, int(ev.op.split("pool")[1][0])
    kernel = tuple(args[1])
    return _layer(f"maxpool{d}d", kernel_size=kernel, stride=tuple(args[2]) if len(args) > 2 and args[2] else kernel,
                  padding=tuple(args[3]) if len(args) > 3 else 0, dilation=tuple(args[4]) if len(args) > 4 else 1,
                  ceil_mode=bool(args[5]) if len(args) > 5 else False), (S(args[0]),)


@handles("aten.max_pool2d", "aten.max_pool1d", "aten.max_pool3d")
def _max_pool(ev, S, concrete, sym):
    d = int(ev.op.split("pool")[1][0])
    kernel = _axis(ev.args[1], d)
    return _layer(f"maxpool{d}d", kernel_size=kernel, stride=_axis(_arg(ev, 2, "stride"), d) or kernel,
                  padding=_axis(_arg(ev, 3, "padding", 0), d), dilation=_axis(_arg(ev, 4, "dilation", 1), d),
                  ceil_mode=bool(_arg(ev, 5, "ceil_mode", False))), (S(ev.args[0]),)


@handles("aten.avg_pool2d", "aten.avg_pool1d", "aten.avg_pool3d")
def _avg_pool(ev, S, concrete, sym):
    args, d = ev.args, int(ev.op.split("pool")[1][0])
    kernel = tuple(args[1])
    return _layer(f"avgpool{d}d", kernel_size=kernel, stride=tuple(args[2]) if len(args) > 2 and args[2] else kernel,
                  padding=tuple(args[3]) if len(args) > 3 else 0, ceil_mode=bool(args[4]) if len(args) > 4 else False,
                  count_include_pad=bool(args[5]) if len(args) > 5 else True), (S(args[0]),)


@handles("aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d",
         "aten.adaptive_avg_pool1d", "aten.adaptive_max_pool1d", "aten.adaptive_max_pool3d")
def _adaptive_pool(ev, S, concrete, sym):
    size = tuple(ev.args[1])
    kind = "maxpool" if "max" in ev.op else "avgpool"
    return _layer(f"adaptive_{kind}{len(size)}d", output_size=size), (S(ev.args[0]),)


_REDUCTIONS = {"aten.mean": "mean", "aten.sum": "sum", "aten.amax": "amax", "aten.linalg_vector_norm": "vector_norm"}


@handles(*_REDUCTIONS)
def _reduction(ev, S, concrete, sym):
    x, args = ev.args[0], ev.args
    if ev.op == "aten.linalg_vector_norm":
        dims, keep = (args[2] if len(args) > 2 else None), (args[3] if len(args) > 3 else False)
    else:
        dims, keep = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else False)
    dims = tuple(range(len(concrete[x.index]))) if not dims else tuple(dims) if isinstance(dims, (list, tuple)) \
        else (dims,)
    return _layer(_REDUCTIONS[ev.op], dim=dims, keepdim=bool(keep)), (S(x),)


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


@handles("aten.embedding")  # also reached by nn.Embedding subclasses with their own forward (Gemma, OPT)
def _embedding(ev, S, concrete, sym):
    weight, indices = ev.args[:2]
    v, e = concrete[weight.index]
    return _layer("embedding", num_embeddings=v, embedding_dim=e), (S(indices),)


@handles("aten.im2col")
def _im2col(ev, S, concrete, sym):
    x, kernel, dilation, padding, stride = ev.args[:5]
    return _layer("unfold", kernel_size=tuple(kernel), dilation=tuple(dilation), padding=tuple(padding),
                  stride=tuple(stride)), (S(x),)


# ---- data movement: the layer takes the output's shape, which a propagation rule (or broadcasting) gives --------

_COPY_OPS = ("aten.cat", "aten.constant_pad_nd", "aten.clone", "aten.copy_", "aten.roll", "aten.index",
             "aten._to_copy", "aten.stack", "aten.gather", "aten.index_select", "aten.tril", "aten.triu")


@handles(*_COPY_OPS, output="inputs")
def _copy(ev, S, concrete, sym):
    first = ev.args[0]
    ins = [t for t in (first if isinstance(first, (list, tuple)) else [first])
           if isinstance(t, TensorRef) and 0 not in concrete[t.index]]  # empty tensors move nothing
    return _layer("copy"), (*[S(t) for t in ins], sym[ev.outputs[0]])


@handles("aten.scatter", "aten.scatter_", "aten.repeat", "aten.flip", "aten.reflection_pad1d", "aten.reflection_pad2d",
         "aten.reflection_pad3d", "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d",
         output="inputs")
def _movement(ev, S, concrete, sym):
    """Data movement without arithmetic: every tensor argument read once, the output written."""
    ins = [t for t in ev.args if isinstance(t, TensorRef) and 0 not in concrete[t.index]]
    return _layer("copy"), (*[S(t) for t in ins], sym[ev.outputs[0]])


@handles("aten.col2im", output="inputs")
def _col2im(ev, S, concrete, sym):
    x, _, kernel, dilation, padding, stride = ev.args[:6]
    size = tuple(sym[ev.outputs[0]][-2:])
    return _layer("fold", output_size=size, kernel_size=tuple(kernel), dilation=tuple(dilation),
                  padding=tuple(padding), stride=tuple(stride)), (S(x),)


_UPSAMPLE = {"aten.upsample_nearest1d": "nearest", "aten.upsample_nearest2d": "nearest",
             "aten.upsample_nearest3d": "nearest", "aten._upsample_nearest_exact1d": "nearest-exact",
             "aten._upsample_nearest_exact2d": "nearest-exact", "aten._upsample_nearest_exact3d": "nearest-exact",
             "aten.upsample_linear1d": "linear", "aten.upsample_bilinear2d": "bilinear",
             "aten.upsample_trilinear3d": "trilinear"}


@handles(*_UPSAMPLE, output="inputs")
def _upsample(ev, S, concrete, sym):
    return _layer("upsample", size=tuple(concrete[ev.outputs[0]][2:]), mode=_UPSAMPLE[ev.op]), \
        (S(ev.args[0]), sym[ev.outputs[0]])


@handles("aten.upsample_bicubic2d", "aten._upsample_bilinear2d_aa", "aten._upsample_bicubic2d_aa", output="inputs")
def _resize(ev, S, concrete, sym):
    x, out = ev.args[0], sym[ev.outputs[0]]
    antialias = ev.op.endswith("_aa")
    if antialias and not all(is_number(d) for d in (*S(x), *out)):
        raise NoSingleFormula(f"{ev.module or '(model)'}: {ev.op}: an antialiased resize from {S(x)} to {out} sums "
                              "taps over windows that have no closed form in the input size; trace at a concrete "
                              "size (--at) instead")
    mode = "bicubic" if "bicubic" in ev.op else "bilinear"
    return _layer("upsample", size=tuple(concrete[ev.outputs[0]][2:]), mode=mode, antialias=antialias), (S(x), out)
