"""Sliding windows: convolution, pooling (max, average, adaptive), im2col and col2im -- the forward handlers (the
output shape is the layer's, col2im's a rule), the backward kernels and their gradients' shapes."""
from __future__ import annotations

from math import prod
import math

import sympy

from ...layers.gradients import AdaptiveAvgPoolBackward, AvgPoolBackward, ConvolutionBackward, MaxPoolBackward
from ...registry import get_layer_class
from ..handlers import handles, shapes
from ..op_args import arg, axis_list, catalog_layer, grads_like, output_mask, per_axis
from ..propagate import size_from


@handles("aten.convolution")
def _convolution(ev, S, concrete, sym):
    x, w, b, stride, padding, dilation, transposed, output_padding, groups = ev.args[:9]
    ws = concrete[w.index]
    d = len(ws) - 2
    kw = dict(in_channels=concrete[x.index][1], kernel_size=tuple(ws[2:]), stride=tuple(stride),
              padding=tuple(padding), dilation=tuple(dilation), groups=groups, bias=b is not None)
    if transposed:
        return catalog_layer(f"conv_transpose{d}d", out_channels=ws[1] * groups, output_padding=tuple(output_padding),
                      **kw), (S(x),)
    return catalog_layer(f"conv{d}d", out_channels=ws[0], **kw), (S(x),)


@handles("aten.max_pool2d_with_indices", "aten.max_pool1d_with_indices", "aten.max_pool3d_with_indices")
def _max_pool_with_indices(ev, S, concrete, sym):
    args, d = ev.args, int(ev.op.split("pool")[1][0])
    kernel = tuple(args[1])
    return catalog_layer(f"maxpool{d}d", kernel_size=kernel, stride=tuple(args[2]) if len(args) > 2 and args[2] else kernel,
                  padding=tuple(args[3]) if len(args) > 3 else 0, dilation=tuple(args[4]) if len(args) > 4 else 1,
                  ceil_mode=bool(args[5]) if len(args) > 5 else False), (S(args[0]),)


@handles("aten.max_pool2d", "aten.max_pool1d", "aten.max_pool3d")
def _max_pool(ev, S, concrete, sym):
    d = int(ev.op.split("pool")[1][0])
    kernel = per_axis(ev.args[1], d)
    return catalog_layer(f"maxpool{d}d", kernel_size=kernel, stride=per_axis(arg(ev, 2, "stride"), d) or kernel,
                  padding=per_axis(arg(ev, 3, "padding", 0), d), dilation=per_axis(arg(ev, 4, "dilation", 1), d),
                  ceil_mode=bool(arg(ev, 5, "ceil_mode", False))), (S(ev.args[0]),)


@handles("aten.avg_pool2d", "aten.avg_pool1d", "aten.avg_pool3d")
def _avg_pool(ev, S, concrete, sym):
    args, d = ev.args, int(ev.op.split("pool")[1][0])
    kernel = tuple(args[1])
    return catalog_layer(f"avgpool{d}d", kernel_size=kernel, stride=tuple(args[2]) if len(args) > 2 and args[2] else kernel,
                  padding=tuple(args[3]) if len(args) > 3 else 0, ceil_mode=bool(args[4]) if len(args) > 4 else False,
                  count_include_pad=bool(args[5]) if len(args) > 5 else True), (S(args[0]),)


@handles("aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d",
         "aten.adaptive_avg_pool1d", "aten.adaptive_max_pool1d", "aten.adaptive_max_pool3d")
def _adaptive_pool(ev, S, concrete, sym):
    size = tuple(ev.args[1])
    kind = "maxpool" if "max" in ev.op else "avgpool"
    return catalog_layer(f"adaptive_{kind}{len(size)}d", output_size=size), (S(ev.args[0]),)


@handles("aten.im2col")
def _im2col(ev, S, concrete, sym):
    x, kernel, dilation, padding, stride = ev.args[:5]
    return catalog_layer("unfold", kernel_size=tuple(kernel), dilation=tuple(dilation), padding=tuple(padding),
                  stride=tuple(stride)), (S(x),)


@handles("aten.col2im", output="inputs")
def _col2im(ev, S, concrete, sym):
    x, _, kernel, dilation, padding, stride = ev.args[:6]
    size = tuple(sym[ev.outputs[0]][-2:])
    return catalog_layer("fold", output_size=size, kernel_size=tuple(kernel), dilation=tuple(dilation),
                  padding=tuple(padding), stride=tuple(stride)), (S(x),)


@shapes("aten.col2im")
def _col2im_shape(ev, p, concrete, sym):
    xs, kernel = p.s(ev.args[0]), axis_list(ev.args[2], 2)
    n = ev.outputs[0]
    rank = len(p.a.shapes[n])
    size = [size_from(p, xs, pair, (n, rank - 2 + j)) for j, pair in enumerate(zip(ev.args[1], p.evb.args[1]))]
    return [(*xs[:-2], xs[-2] / prod(kernel), *size)] if all(d is not None for d in size) else None


@handles("aten.convolution_backward", output="inputs")
def _conv(ev, S, concrete, sym):
    go, x, w = ev.args[:3]
    transposed, groups = bool(ev.args[7]), int(ev.args[9])
    gi, gw, gb = output_mask(ev, 10, 3)
    return ConvolutionBackward(transposed=transposed, groups=groups, grad_input=gi, grad_weight=gw,
                               grad_bias=gb), (sym[go.index], sym[x.index], sym[w.index])


@handles("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward", output="inputs")
def _max_pool_backward(ev, S, concrete, sym):
    go, x = ev.args[:2]
    return MaxPoolBackward(), (sym[go.index], sym[x.index])


@handles("aten.avg_pool2d_backward", "aten.avg_pool3d_backward", output="inputs")
def _avg_pool_backward(ev, S, concrete, sym):
    go, x, kernel = ev.args[:3]
    return AvgPoolBackward(window=int(math.prod(kernel))), (sym[go.index], sym[x.index])


@handles("aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward", output="inputs")
def _adaptive_avg_pool(ev, S, concrete, sym):
    go, x = ev.args[:2]
    d = 3 if "3d" in ev.op else 2   # 1-D pooling runs the 2-D kernel on a height of 1
    pool = get_layer_class(f"adaptive_avgpool{d}d")(output_size=tuple(concrete[go.index][-d:]))
    forward = pool.cost(sym[x.index])
    window_sum = forward.ops.get("add", 0) + sympy.Mul(*forward.output_shape)   # (window - 1) adds per output + 1
    return AdaptiveAvgPoolBackward(axes=d, window_sum=window_sum), (sym[go.index], sym[x.index])


@handles("aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward", output="inputs")
def _adaptive_max_pool(ev, S, concrete, sym):
    go, x = ev.args[:2]
    return MaxPoolBackward(), (sym[go.index], sym[x.index])


@shapes("aten.convolution_backward")
def _conv_shapes(ev, p, concrete, sym):
    go, x, w = ev.args[:3]
    return grads_like(p, x, w, (p.s(go)[1],))


@shapes("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward", "aten.avg_pool2d_backward",
        "aten.avg_pool3d_backward", "aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward",
        "aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward")
def _pool_shapes(ev, p, concrete, sym):
    return grads_like(p, ev.args[1])
