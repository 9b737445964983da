"""Normalization: batch, layer and group norm -- forward handlers (several outputs: the saved statistics, each
broadcast from the inputs) and the backward kernels with their gradients' shapes."""
from __future__ import annotations

from ...layers.gradients import BatchNormBackward, GroupNormBackward, LayerNormBackward
from ..handlers import handles, shapes
from ..op_args import catalog_layer, grads_like, output_mask


@handles("aten.native_batch_norm", "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit",
         output="inputs")
def _batch_norm(ev, S, concrete, sym):
    x, args = ev.args[0], ev.args
    training = bool(args[5]) if ev.op != "aten._native_batch_norm_legit_no_training" and len(args) > 5 else False
    rank = len(concrete[x.index])
    name = {2: "batchnorm1d", 3: "batchnorm1d", 4: "batchnorm2d", 5: "batchnorm3d"}[rank]
    return catalog_layer(name, num_features=concrete[x.index][1], affine=args[1] is not None,
                  track_running_stats=args[3] is not None, mode="train" if training else "eval"), (S(x),)


@handles("aten.native_layer_norm", output="inputs")
def _layer_norm(ev, S, concrete, sym):
    x, shape, w, b = ev.args[:4]
    return catalog_layer("layernorm", normalized_shape=tuple(shape), elementwise_affine=w is not None,
                  bias=b is not None), (S(x),)


@handles("aten.native_group_norm", output="inputs")
def _group_norm(ev, S, concrete, sym):
    x, w, _b, _n, c, _hw, groups = ev.args[:7]
    return catalog_layer("groupnorm", num_groups=groups, num_channels=c, affine=w is not None), (S(x),)


@handles("aten.native_layer_norm_backward", output="inputs")
def _layer_norm_backward(ev, S, concrete, sym):
    go, x, shape, _mean, _rstd, w = ev.args[:6]
    gi, gw, gb = output_mask(ev, 7, 3)
    return LayerNormBackward(normalized_dims=len(shape), weight=w is not None, grad_input=gi,
                             grad_weight=gw and w is not None, grad_bias=gb), (sym[go.index], sym[x.index])


@handles("aten.native_group_norm_backward", output="inputs")
def _group_norm_backward(ev, S, concrete, sym):
    go, x, _mean, _rstd, w = ev.args[:5]
    groups = int(ev.args[8])
    gi, gw, gb = output_mask(ev, 9, 3)
    return GroupNormBackward(groups=groups, weight=w is not None, grad_input=gi, grad_weight=gw and w is not None,
                             grad_bias=gb), (sym[go.index], sym[x.index])


@handles("aten.native_batch_norm_backward", output="inputs")
def _batch_norm_backward(ev, S, concrete, sym):
    go, x, w = ev.args[:3]
    train = bool(ev.args[7])
    gi, gw, gb = output_mask(ev, 9, 3)
    return BatchNormBackward(train=train, weight=w is not None, grad_input=gi, grad_weight=gw and w is not None,
                             grad_bias=gb and w is not None), (sym[go.index], sym[x.index])


@shapes("aten.native_layer_norm_backward")
def _layer_norm_shapes(ev, p, concrete, sym):
    x, w, b = ev.args[1], ev.args[5], ev.args[6]
    return grads_like(p, x, w, b)


@shapes("aten.native_batch_norm_backward")
def _batch_norm_shapes(ev, p, concrete, sym):
    x, w = ev.args[1], ev.args[2]
    return grads_like(p, x, w, w)


@shapes("aten.native_group_norm_backward")
def _group_norm_shapes(ev, p, concrete, sym):
    x = ev.args[1]
    c = (p.s(x)[1],)
    return grads_like(p, x, c, c)
