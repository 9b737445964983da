r"""The backward pass of one training step: costs and shape rules of the aten backward ops.

``trace(..., backward=True)`` records the forward pass and then ``out.backward(ones_like(out))`` (the gradient of the
model's first output, as any loss would seed it; the loss itself is not costed) under the same recorder.  The
gradients of matmuls are ``mm``/``bmm`` and elementwise gradients are ``mul``/``add``/``sum``: the forward catalog
costs those.  The fused backward kernels are costed here, from shapes only, each counting the algorithm written in
its docstring; their output shapes are those of the tensors they are gradients of.

MACs are the multiply-accumulates done.  FlopCounterMode (the ``torch`` convention) counts 2 per MAC of
``convolution_backward`` and of the gradient matmuls, and nothing else -- except that it counts a *grouped*
convolution's weight gradient with all ``C_in`` input channels instead of ``C_in/g`` (``conv_backward_flop``), ``g``
times the work done; symcost counts the work and ``grouped_grad_weight_overcount`` states the difference.

Handlers register into the one op-handler registry (``handlers.handles``); the gradients' shapes are rules of
``propagate`` (a gradient has the shape of the tensor it is the gradient of).
"""
from __future__ import annotations

import math

import sympy

from ..layers.gradients import (ACTIVATION_BACKWARDS, GELU_BACKWARD, GELU_TANH_BACKWARD, AdaptiveAvgPoolBackward,
                                AvgPoolBackward, BatchNormBackward, BicubicResizeBackward, ConvolutionBackward,
                                ElementwiseBackward, EmbeddingBackward, GroupNormBackward, IndexPutAccumulate,
                                LayerNormBackward, LinearResizeBackward, MaxPoolBackward, PadBackward, PreluBackward,
                                Sign, SoftmaxBackward, UpsampleNearestBackward)
from ..registry import get_layer_class
from .handlers import handles
from .propagate import rule
from .record import TensorRef

# ---- from a recorded op to (layer, symbolic input shapes) ------------------------------------------------------

def _handler(*ops: str):
    """``handlers.handles`` for handlers written as ``fn(ev, sym, concrete)``: one registry, duplicates refused."""
    def deco(fn):
        def handler(ev, _shape, concrete, sym):
            return fn(ev, sym, concrete)
        handler.__qualname__ = fn.__qualname__  # duplicates are reported by the name written here
        handles(*ops, output="inputs")(handler)
        return fn
    return deco


def _mask(ev, i: int, n: int) -> list[bool]:
    m = ev.args[i] if len(ev.args) > i else ev.kwargs.get("output_mask", [True] * n)
    return [bool(v) for v in m]


@_handler("aten.convolution_backward")
def _conv(ev, sym, concrete):
    go, x, w = ev.args[:3]
    transposed, groups = bool(ev.args[7]), int(ev.args[9])
    gi, gw, gb = _mask(ev, 10, 3)
    return ConvolutionBackward(transposed=transposed, groups=groups, grad_input=gi, grad_weight=gw,
                               grad_bias=gb), (sym[go.index], sym[x.index], sym[w.index])


@_handler("aten.native_layer_norm_backward")
def _layer_norm(ev, sym, concrete):
    go, x, shape, _mean, _rstd, w = ev.args[:6]
    gi, gw, gb = _mask(ev, 7, 3)
    return LayerNormBackward(normalized_dims=len(shape), weight=w is not None, grad_input=gi,
                             grad_weight=gw and w is not None, grad_bias=gb), (sym[go.index], sym[x.index])


@_handler("aten._softmax_backward_data", "aten._log_softmax_backward_data")
def _softmax(ev, sym, concrete):
    go, y, dim = ev.args[:3]
    return SoftmaxBackward(dim=int(dim), log="log" in ev.op), (sym[go.index], sym[y.index])


@_handler(*ACTIVATION_BACKWARDS)
def _activation(ev, sym, concrete):
    return ElementwiseBackward(activation=ACTIVATION_BACKWARDS[ev.op][0]), (sym[ev.args[0].index],)


@_handler("aten.gelu_backward")
def _gelu(ev, sym, concrete):
    tanh = ev.kwargs.get("approximate", ev.args[2] if len(ev.args) > 2 else "none") == "tanh"
    return ElementwiseBackward(activation=(GELU_TANH_BACKWARD if tanh else GELU_BACKWARD)[0]), (sym[ev.args[0].index],)


@_handler("aten.embedding_dense_backward")
def _embedding(ev, sym, concrete):
    go, ids, num_weights, padding_idx, scale = (*ev.args[:5], *([None] * (5 - len(ev.args))))
    if (padding_idx is not None and padding_idx >= 0) or scale:
        # the rows added are those of tokens other than padding_idx (scaled by their count with scale_grad_by_freq):
        # a count of token values, not of shapes; reported as uncovered
        return None
    return EmbeddingBackward(num_weights=int(num_weights)), (sym[go.index], sym[ids.index])


@_handler("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward")
def _max_pool(ev, sym, concrete):
    go, x = ev.args[:2]
    return MaxPoolBackward(), (sym[go.index], sym[x.index])


@_handler("aten.sgn", "aten.sign")
def _sign(ev, sym, concrete):
    return Sign(), (sym[ev.args[0].index],)


@_handler("aten._prelu_kernel_backward")
def _prelu(ev, sym, concrete):
    go, x, w = ev.args[:3]
    return PreluBackward(), (sym[go.index], sym[x.index], sym[w.index])


@_handler("aten.avg_pool2d_backward", "aten.avg_pool3d_backward")
def _avg_pool(ev, sym, concrete):
    go, x, kernel = ev.args[:3]
    return AvgPoolBackward(window=int(math.prod(kernel))), (sym[go.index], sym[x.index])


@_handler("aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward")
def _adaptive_avg_pool(ev, sym, concrete):
    go, x = ev.args[:2]
    d = 3 if "3d" in ev.op else 2   # 1-D pooling runs the 2-D kernel on a height of 1
    pool = get_layer_class(f"adaptive_avgpool{d}d")(output_size=tuple(concrete[go.index][-d:]))
    forward = pool.cost(sym[x.index])
    window_sum = forward.ops.get("add", 0) + sympy.Mul(*forward.output_shape)   # (window - 1) adds per output + 1
    return AdaptiveAvgPoolBackward(axes=d, window_sum=window_sum), (sym[go.index], sym[x.index])


@_handler("aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward")
def _adaptive_max_pool(ev, sym, concrete):
    go, x = ev.args[:2]
    return MaxPoolBackward(), (sym[go.index], sym[x.index])


@_handler("aten.upsample_nearest1d_backward", "aten.upsample_nearest2d_backward",
          "aten.upsample_nearest3d_backward", "aten._upsample_nearest_exact1d_backward",
          "aten._upsample_nearest_exact2d_backward", "aten._upsample_nearest_exact3d_backward")
def _upsample_nearest(ev, sym, concrete):
    return UpsampleNearestBackward(), (sym[ev.args[0].index], sym[ev.outputs[0]])


@_handler("aten.upsample_linear1d_backward", "aten.upsample_bilinear2d_backward", "aten.upsample_trilinear3d_backward")
def _upsample_linear(ev, sym, concrete):
    x = sym[ev.outputs[0]]
    return LinearResizeBackward(axes=len(x) - 2), (sym[ev.args[0].index], x)


@_handler("aten.upsample_bicubic2d_backward")
def _upsample_bicubic(ev, sym, concrete):
    return BicubicResizeBackward(), (sym[ev.args[0].index], sym[ev.outputs[0]])


@_handler("aten.native_group_norm_backward")
def _group_norm(ev, sym, concrete):
    go, x, _mean, _rstd, w = ev.args[:5]
    groups = int(ev.args[8])
    gi, gw, gb = _mask(ev, 9, 3)
    return GroupNormBackward(groups=groups, weight=w is not None, grad_input=gi, grad_weight=gw and w is not None,
                             grad_bias=gb), (sym[go.index], sym[x.index])


@_handler("aten.native_batch_norm_backward")
def _batch_norm(ev, sym, concrete):
    go, x, w = ev.args[:3]
    train = bool(ev.args[7])
    gi, gw, gb = _mask(ev, 9, 3)
    return BatchNormBackward(train=train, weight=w is not None, grad_input=gi, grad_weight=gw and w is not None,
                             grad_bias=gb and w is not None), (sym[go.index], sym[x.index])


@_handler("aten.slice_backward", "aten.select_backward")
def _scatter_copy(ev, sym, concrete):
    # the gradient written into a zeroed tensor of the input's size: data movement only (an empty gradient, of
    # the unrotated part of a head that rotary embeddings cover whole, is read from nowhere)
    go = ev.args[0].index
    return get_layer_class("copy")(), (*([sym[go]] if 0 not in concrete[go] else []), sym[ev.outputs[0]])


@_handler("aten.index_put")
def _index_put(ev, sym, concrete):
    x, _indices, values = ev.args[:3]
    accumulate = ev.args[3] if len(ev.args) > 3 else ev.kwargs.get("accumulate", False)
    if not accumulate:
        return get_layer_class("copy")(), (sym[values.index], sym[ev.outputs[0]])
    return IndexPutAccumulate(), (sym[x.index], sym[values.index])


@_handler("aten.scatter_add")
def _scatter_add(ev, sym, concrete):
    x, _dim, _index, src = ev.args[:4]
    return IndexPutAccumulate(), (sym[x.index], sym[src.index])   # the gradient of a gather: add every row


#: the backward of each reflection and replication pad (the forward is a copy, ``costing``)
PAD_BACKWARDS = tuple(f"aten.{kind}_pad{d}d_backward" for kind in ("reflection", "replication") for d in (1, 2, 3))


@_handler(*PAD_BACKWARDS)
def _pad(ev, sym, concrete):
    go, x = ev.args[:2]
    return PadBackward(), (sym[x.index], sym[go.index])


# ---- shapes: a gradient has the shape of the tensor it is the gradient of ---------------------------------------

def _like(p, ev, *which) -> list:
    out = []
    for w in which:
        if isinstance(w, TensorRef):
            out.append(p.s(w))
        elif isinstance(w, tuple):  # a literal shape
            out.append(w)
        else:
            out.append(None)
    return out


@rule("aten.convolution_backward")
def _conv_shapes(p, ev, _evb):
    go, x, w = ev.args[:3]
    return _like(p, ev, x, w, (p.s(go)[1],))


@rule("aten.native_layer_norm_backward")
def _layer_norm_shapes(p, ev, _evb):
    x, w, b = ev.args[1], ev.args[5], ev.args[6]
    return _like(p, ev, x, w, b)


@rule("aten.native_batch_norm_backward")
def _batch_norm_shapes(p, ev, _evb):
    x, w = ev.args[1], ev.args[2]
    return _like(p, ev, x, w, w)


@rule("aten._softmax_backward_data", "aten._log_softmax_backward_data", *ACTIVATION_BACKWARDS, "aten.gelu_backward",
      "aten.sgn", "aten.sign")
def _grad_shaped(p, ev, _evb):
    return _like(p, ev, ev.args[0])


@rule("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward", "aten.avg_pool2d_backward",
      *PAD_BACKWARDS,
      "aten.avg_pool3d_backward", "aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward",
      "aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward")
def _pool_shapes(p, ev, _evb):
    return _like(p, ev, ev.args[1])


@rule("aten._prelu_kernel_backward")
def _prelu_shapes(p, ev, _evb):
    return _like(p, ev, ev.args[1], ev.args[1])


@rule("aten.native_group_norm_backward")
def _group_norm_shapes(p, ev, _evb):
    x = ev.args[1]
    c = (p.s(x)[1],)
    return _like(p, ev, x, c, c)


@rule("aten.embedding_dense_backward")
def _embedding_shapes(p, ev, _evb):
    return [(sympy.Integer(int(ev.args[2])), p.s(ev.args[0])[-1])]


def notes(mc) -> list[str]:
    """What a user must know about a traced training step."""
    out = ["backward: one training step's backward pass (no optimizer), from the gradient of the model's first "
           "output seeded with ones of its shape (the loss itself is not costed); torch skips gradients nothing "
           "needs (the input's, frozen parameters'), and so does this count"]
    extra = grouped_grad_weight_overcount(mc)
    if extra != 0:
        out.append(f"FlopCounterMode counts {sympy.sstr(2 * extra)} FLOPs more than the 'torch' total here: it "
                   "counts a grouped convolution's weight gradient as if groups were 1 (all C_in input channels "
                   "per output channel); symcost counts the multiply-accumulates done")
    return out


def grouped_grad_weight_overcount(mc) -> sympy.Expr:
    """How many MACs more than symcost FlopCounterMode counts for the backward of ``mc`` (0 without grouped
    convolutions): it counts a grouped convolution's weight gradient as if ``groups`` were 1."""
    extra = sympy.Integer(0)
    for r in mc.rows:
        if r.layer == ConvolutionBackward.name and r.args.get("groups", 1) != 1:
            extra += ConvolutionBackward(**{k: v for k, v in r.args.items()}).torch_overcount(*r.input_shapes)
    return extra
