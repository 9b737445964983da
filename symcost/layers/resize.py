"""Resizing: ``F.interpolate`` / ``nn.Upsample`` in every mode (nearest, nearest-exact, linear, bilinear, bicubic,
trilinear, antialiased), and when a scale factor has a closed-form output size (``formula_scale``)."""
from __future__ import annotations

import math

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import N, SPATIAL, size
from .base import Arg, Layer, definitely, is_number
from ..errors import LayerError
from . import gradients as g
from .layer_backward import grad_part

C = size("C")
_X = (N, C, *SPATIAL[2])


#: input ranks each resize mode takes (N, C and 1 to 3 spatial dims), as F.interpolate dispatches
_MODE_RANKS = {"nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "linear": (3,), "bilinear": (4,), "bicubic": (4,),
               "trilinear": (5,)}
_MAX_SIZE = 2 ** 63 - 1

#: per output element, the interpolations of one resize: linear ``a + t(b - a)`` is 1 mul and 2 add, one per axis
#: step (1, 3, 7 of them in 1-D, 2-D, 3-D); bicubic is 4 cubic interpolations along W then 1 along H, each a
#: 4-tap weighted sum (4 mul, 3 add)
_RESIZE_OPS = {"nearest": {}, "nearest-exact": {}, "linear": {"mul": 1, "add": 2}, "bilinear": {"mul": 3, "add": 6},
               "trilinear": {"mul": 7, "add": 14}, "bicubic": {"mul": 20, "add": 15}}


def formula_scale(scale: float) -> bool:
    r"""Whether ``floor(I * r)``, ``r`` the factor as written (``0.7`` is 7/10), is torch's output size
    ``int(I * scale)`` (a double product) for every size I.

    Where I r is not an integer it lies at least 1/q from one (q the denominator of r, at most 10**4 here), far more
    than the product's rounding error at any size a tensor takes.  Where I r is an integer n, torch's product rounds
    to n or above only if the double is not below r: 0.1 (stored as 0.1000000000000000055) and 1.5 pass; 0.7 (stored
    as 0.6999999999999999556: 90 * 0.7 is 62.99999999999999) and 1/3 do not."""
    r = sympy.Rational(str(scale))
    return r.q <= 10 ** 4 and sympy.Rational(scale) >= r


def antialias_taps(in_size: int, out_size: int, interp_size: int) -> int:
    """Taps summed over the outputs of one axis of torch's antialiased resize (``_upsample_*_aa``): the filter's
    support widens with the downscale factor; windows as torch computes them (clipped to the input)."""
    scale = in_size / out_size
    support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
    total = 0
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        total += min(int(center + support + 0.5), in_size) - lo
    return total


@register
class Upsample(Layer):
    r"""Resizing (``nn.Upsample`` / ``F.interpolate``).  nearest: a gather, no arithmetic; (bi/tri)linear: one
    linear interpolation $a + t(b - a)$ (1 mul, 2 add) per axis step: 1, 3 or 7 of them per output element for
    1-D, 2-D, 3-D; bicubic: 4 cubic interpolations along W and 1 along H, each a 4-tap weighted sum (4 mul, 3 add):
    20 mul and 15 add per output element.  The per-row and per-column weights and indices are not counted.

    ``antialias`` (bilinear, bicubic; torch's separable two-pass filter): along each axis whose size changes, every
    output is a weighted sum of $t$ taps ($t$ mul, $t-1$ add) over torch's windows, which widen with the downscale
    factor; W first (on every input row), then H.  The tap counts have no closed form: concrete sizes only.

    The output size is torch's: ``size``, or each size times ``scale_factor`` in double precision, truncated (0.29 on
    100 is 28, not 29).  A symbolic size needs a factor whose double is not below the number written (2, 1.5, 0.1,
    1.1; not 0.29, 0.7 or 1/3), for which ``floor(I * s)`` is that size (``formula_scale``).  torch's other
    refusals (an output size below 1, a mode that does not take the input's rank, ``align_corners`` with a nearest
    mode) are refused here too."""

    name = "upsample"
    family = "resize"
    torch_name = "torch.nn.Upsample"
    summary = "nearest, (bi/tri)linear or bicubic resizing (linear: 1 mul + 2 add per interpolation; nearest: none)"
    default_inputs = (_X,)
    tracer_inputs = 1  # out: the traced output shape (size after rounding), never given on the command line
    args = (
        Arg("size", "shape", None, help="output spatial size, e.g. 64,64"),
        Arg("scale_factor", "float", None, help="multiplier of the spatial size"),
        Arg("mode", "choice", "nearest", choices=tuple(_RESIZE_OPS)),
        Arg("align_corners", "flag", None),
        Arg("antialias", "flag", None, help="true: bilinear/bicubic antialiasing (concrete sizes only)"),
    )

    def check_args(self) -> None:
        if (self.size is None) == (self.scale_factor is None):
            self.fail("give exactly one of size and scale_factor")
        if self.antialias and self.mode not in ("bilinear", "bicubic"):
            self.fail(f"antialias needs mode 'bilinear' or 'bicubic', got {self.mode!r}")
        if self.align_corners is not None and self.mode.startswith("nearest"):
            self.fail(f"align_corners is for the interpolating modes (linear, bilinear, bicubic, trilinear), not "
                      f"{self.mode!r}: torch refuses it even set to false")
        s = self.scale_factor
        if s is not None and not (math.isfinite(s) and s > 0):
            self.fail(f"scale_factor must be a positive number, got {s}")

    def _output_sizes(self, spatial_sizes) -> tuple:
        """The output's spatial sizes, as torch computes them."""
        if self.size is not None:
            if len(self.size) not in (1, len(spatial_sizes)):
                self.fail(f"size {tuple(self.size)} has {len(self.size)} values for an input with "
                          f"{len(spatial_sizes)} spatial dims (give one, or one per dim)")
            return tuple(self.size) * (len(spatial_sizes) // len(self.size))
        s = self.scale_factor
        # torch multiplies in double precision and truncates: int(100 * 0.29) is 28, not 29
        if all(is_number(d) for d in spatial_sizes):
            return tuple(sympy.Integer(math.floor(float(d) * s)) for d in spatial_sizes)
        if not formula_scale(s):
            self.fail(f"scale_factor={s}: torch multiplies each size by it in double precision, which rounds some "
                      f"products below the exact one ({s} is stored as {sympy.Rational(s).evalf(20)}); no formula "
                      "in a symbolic size gives those sizes: give concrete sizes or size=")
        return tuple(sympy.floor(d * sympy.Rational(str(s))) for d in spatial_sizes)

    def _cost(self, x, out=None) -> Cost:
        ranks = _MODE_RANKS[self.mode]
        if len(x) not in ranks:
            self.fail(f"mode {self.mode!r} takes an input of rank {' or '.join(map(str, ranks))} (N, C, spatial...), "
                      f"got {tuple(x)}")
        if out is None:
            out = (*x[:2], *self._output_sizes(x[2:]))
            for d in out[2:]:
                if definitely(sympy.Lt(d, 1)) or definitely(sympy.Gt(d, _MAX_SIZE)):
                    self.fail(f"output size would be {tuple(out)}: torch needs every size from 1 to {_MAX_SIZE}")
        n = numel(out)
        if self.antialias:
            return Cost(output_shape=out, ops=self._antialias_ops(x, out), reads=numel(x), writes=n)
        return Cost(output_shape=out, ops={k: v * n for k, v in _RESIZE_OPS[self.mode].items()}, reads=numel(x),
                    writes=n)

    def _antialias_ops(self, x, out) -> dict:
        if len(x) != 4 or not all(is_number(d) for d in (*x, *out)):
            self.fail(f"antialiased resizing is costed for concrete (N, C, H, W) sizes only, got {tuple(x)} -> "
                      f"{tuple(out)}")
        taps = 2 if self.mode == "bilinear" else 4
        (h, w), (oh, ow), planes = (int(d) for d in x[2:]), (int(d) for d in out[2:]), int(x[0]) * int(x[1])
        mul = add = 0
        if ow != w:  # horizontal pass on every input row
            t = antialias_taps(w, ow, taps)
            mul, add = mul + planes * h * t, add + planes * h * (t - ow)
        if oh != h:  # vertical pass on every output column
            t = antialias_taps(h, oh, taps)
            mul, add = mul + planes * ow * t, add + planes * ow * (t - oh)
        return {"mul": mul, "add": add}

    def _backward(self, x):
        go = self.cost(x).output_shape
        if self.mode in ("nearest", "nearest-exact"):
            return {"grad_input": grad_part(x, g.UpsampleNearestBackward().cost(go, x))}
        if self.mode in ("linear", "bilinear", "trilinear") and not self.antialias:
            return {"grad_input": grad_part(x, g.LinearResizeBackward(axes=len(x) - 2).cost(go, x))}
        if self.mode == "bicubic" and not self.antialias:
            return {"grad_input": grad_part(x, g.BicubicResizeBackward().cost(go, x))}
        raise LayerError(f"{self.name}: no backward formula with antialias yet (its taps have no closed form)")
