"""Resizing: nearest, linear, cubic and antialiased interpolation -- the forward handlers, the output size rule
(floor(x * scale), or the sizes the model asked for explained), the backward kernels."""
from __future__ import annotations

import sympy

from ...errors import NoSingleFormula
from ...layers.base import is_number
from ...layers.gradients import BicubicResizeBackward, LinearResizeBackward, UpsampleNearestBackward
from ...layers.resize import formula_scale
from ..handlers import handles, shapes
from ..op_args import catalog_layer
from ..propagate import size_from


_UPSAMPLE = {"aten.upsample_nearest1d": "nearest", "aten.upsample_nearest2d": "nearest",
             "aten.upsample_nearest3d": "nearest", "aten._upsample_nearest_exact1d": "nearest-exact",
             "aten._upsample_nearest_exact2d": "nearest-exact", "aten._upsample_nearest_exact3d": "nearest-exact",
             "aten.upsample_linear1d": "linear", "aten.upsample_bilinear2d": "bilinear",
             "aten.upsample_trilinear3d": "trilinear"}


@handles(*_UPSAMPLE, output="inputs")
def _upsample(ev, S, concrete, sym):
    return catalog_layer("upsample", size=tuple(concrete[ev.outputs[0]][2:]), mode=_UPSAMPLE[ev.op]), \
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
    return catalog_layer("upsample", size=tuple(concrete[ev.outputs[0]][2:]), mode=mode, antialias=antialias), (S(x), out)


_UPSAMPLE_OPS = ("aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
                 "aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d",
                 "aten.upsample_linear1d", "aten.upsample_bilinear2d", "aten.upsample_trilinear3d",
                 "aten.upsample_bicubic2d", "aten._upsample_bilinear2d_aa", "aten._upsample_bicubic2d_aa")


@shapes(*_UPSAMPLE_OPS)
def _upsample_shape(ev, p, concrete, sym):
    """Resizing to ``output_size``: ``floor(x * scale)`` when torch was given the scale, else the recorded sizes
    explained by the input's (``_size_from``)."""
    xs = p.s(ev.args[0])
    d = len(xs) - 2
    n = ev.outputs[0]
    scales = [v for v in ev.args[2:] if isinstance(v, float)][-d:] if "nearest" in ev.op else \
        [v for v in ev.args[3:] if isinstance(v, float)][-d:]
    out = []
    for i, x in enumerate(xs[2:]):
        pair = (p.a.shapes[n][2 + i], p.b.shapes[n][2 + i])
        # torch's double product rounds below floor(x * s) at some sizes for some factors (0.7 at 90): no formula
        e = sympy.floor(x * sympy.Rational(str(scales[i]))) if len(scales) == d and formula_scale(scales[i]) else None
        out.append(e if e is not None and p.value(e) == pair else size_from(p, (x,), pair, (n, 2 + i)))
    return [(*xs[:2], *out)] if all(e is not None for e in out) else None


@handles("aten.upsample_nearest1d_backward", "aten.upsample_nearest2d_backward",
         "aten.upsample_nearest3d_backward", "aten._upsample_nearest_exact1d_backward",
         "aten._upsample_nearest_exact2d_backward", "aten._upsample_nearest_exact3d_backward", output="inputs")
def _upsample_nearest(ev, S, concrete, sym):
    return UpsampleNearestBackward(), (sym[ev.args[0].index], sym[ev.outputs[0]])


@handles("aten.upsample_linear1d_backward", "aten.upsample_bilinear2d_backward", "aten.upsample_trilinear3d_backward", output="inputs")
def _upsample_linear(ev, S, concrete, sym):
    x = sym[ev.outputs[0]]
    return LinearResizeBackward(axes=len(x) - 2), (sym[ev.args[0].index], x)


@handles("aten.upsample_bicubic2d_backward", output="inputs")
def _upsample_bicubic(ev, S, concrete, sym):
    return BicubicResizeBackward(), (sym[ev.args[0].index], sym[ev.outputs[0]])
