r"""Pooling: maxpool1d/2d/3d, avgpool1d/2d/3d, adaptive_avgpool1d/2d/3d, adaptive_maxpool1d/2d/3d.

Counted per output element, for a window of $K = \prod k$ elements:

* max pooling: $K - 1$ comparisons;
* average pooling: $K - 1$ additions and 1 division.

Edge windows are counted as full windows: a window that overlaps the padding
(or, with ``ceil_mode``, runs past the input) is counted as $K$ elements
although torch skips (max) or adds zeros for (avg) the missing ones.  The
count is therefore data independent and the same for ``count_include_pad``
and ``divisor_override``, which change only the divisor.

Adaptive pooling uses torch's windows, along each axis
$[\lfloor iI/O \rfloor, \lceil (i+1)I/O \rceil)$ for $i < O$.  Their lengths sum
to $T = I + O - \gcd(I, O)$ (``adaptive_window_total``; $T = I$ when $O$ divides
$I$), and the windows are separable, so the window elements summed over all
outputs are $\prod_a T_a$ per channel: adaptive avg is $\prod T - \prod O$
additions and $\prod O$ divisions, adaptive max $\prod T - \prod O$ comparisons.

Refused as torch refuses them: padding over half the kernel (``p > k // 2``),
and an output size below 1 (the dilated kernel past the padded input; with
``ceil_mode`` it may overhang by less than a stride).  avg_pool3d alone also
refuses an unpadded input smaller than the kernel.

Reads are the input, writes the output (twice with ``return_indices``, which
also writes an index tensor of the same size).  FlopCounterMode counts none of
this ('torch' convention: 0).
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..exact import gcd
from ..registry import register
from ..symbols import SPATIAL, N, per_axis, size
from . import gradients as g
from .base import Arg, Layer, definitely, is_number
from .layer_backward import grad_part
from .shapes import adaptive_window_total, pool_output_size

C = size("C")


def window_total(size_, out):
    """Sum of the adaptive window lengths along one axis (exact for every I and O)."""
    if is_number(out):
        return adaptive_window_total(size_, out)
    return size_ + out - gcd(size_, out)


class _PoolBase(Layer):
    family = "pool"

    def default_input_shapes(self):
        return ((N, C, *SPATIAL[self.dims]),)

    def _split(self, shape):
        if len(shape) not in (self.dims + 1, self.dims + 2):
            self.fail(f"expected an input of rank {self.dims + 2} (N, C, spatial) or {self.dims + 1} without "
                      f"batch, got rank {len(shape)}: {tuple(shape)}")
        return tuple(shape[:-self.dims]), tuple(shape[-self.dims:])

    def _flag(self, name: str) -> bool:
        v = self.values[name]
        if not is_number(v):
            self.fail(f"{name} must be true or false for a formula, got the symbol {v}")
        return bool(v)


def _window_args(dims: int, dilation: bool) -> list[Arg]:
    args = [
        Arg("kernel_size", "tuple", symbol=per_axis("K", dims), help="window size, e.g. 2 or 3,2"),
        Arg("stride", "tuple", None, per_axis("s", dims), help="default (None): kernel_size"),
        Arg("padding", "offsets", 0, per_axis("p", dims, nonnegative=True)),
    ]
    if dilation:
        args.append(Arg("dilation", "tuple", 1, per_axis("d", dims)))
    return args


class _WindowPool(_PoolBase):
    """Fixed-window pooling; subclasses give the ops per output element."""

    has_dilation = False
    #: torch's avg_pool3d (only) checks the unpadded input against the kernel
    unpadded_must_cover_kernel = False

    def check_args(self) -> None:
        for k, p in zip(self.kernel_size, self.padding):
            if is_number(k) and is_number(p) and p > k // 2:
                self.fail(f"padding ({p}) must be at most half of kernel_size ({k}), as torch requires")

    def _strides(self):
        return self.stride if self.stride is not None else self.kernel_size

    def _dilations(self):
        return self.dilation if self.has_dilation else (1,) * self.dims

    def _cost(self, shape) -> Cost:
        lead, spatial = self._split(shape)
        ceil_mode = self._flag("ceil_mode")
        out = []
        for i, k, s, p, d in zip(spatial, self.kernel_size, self._strides(), self.padding, self._dilations()):
            span = d * (k - 1) + 1
            if self.unpadded_must_cover_kernel and definitely(sympy.Lt(i, k)):
                self.fail(f"input size {i} is smaller than kernel_size {k}: torch's avg_pool3d refuses this "
                          "even when padding would make room")
            o = pool_output_size(i, k, s, p, d, ceil_mode)
            if definitely(sympy.Lt(o, 1)):  # (with ceil_mode a kernel may overhang the padded input by < stride)
                self.fail(f"the {'dilated ' if self.has_dilation else ''}kernel ({span}) is larger than the padded "
                          f"input ({i + 2 * p}): output size would be {o}")
            out.append(o)
        out_shape = (*lead, *out)
        outputs = numel(out_shape)
        window = numel(self.kernel_size)
        return Cost(output_shape=out_shape, ops=self.ops(outputs, window), reads=numel(shape),
                    writes=outputs * self.index_factor())

    def index_factor(self):
        return 1

    def ops(self, outputs, window) -> dict:
        raise NotImplementedError


class _MaxPool(_WindowPool):
    has_dilation = True

    def ops(self, outputs, window) -> dict:
        return {"cmp": outputs * (window - 1)}

    def index_factor(self):
        return 1 + self.return_indices

    def _backward(self, x):
        return {"grad_input": grad_part(x, g.MaxPoolBackward().cost(self.cost(x).output_shape, x))}


class _AvgPool(_WindowPool):
    def check_args(self) -> None:
        super().check_args()
        d = self.values.get("divisor_override")
        if d is not None and is_number(d) and d == 0:
            self.fail("divisor_override must not be zero")

    def ops(self, outputs, window) -> dict:
        return {"add": outputs * (window - 1), "div": outputs}

    def _backward(self, x):
        k = sympy.Mul(*self.kernel_size)
        return {"grad_input": grad_part(x, g.AvgPoolBackward(window=k).cost(self.cost(x).output_shape, x))}


@register
class MaxPool1d(_MaxPool):
    r"""1-D max pooling: $K - 1$ comparisons per output, $K = \prod k$ (edge windows counted as full windows)."""

    name = "maxpool1d"
    torch_name = "torch.nn.MaxPool1d"
    summary = "1-D max pooling (K-1 cmp per output; edge windows counted full)"
    dims = 1
    args = (*_window_args(1, dilation=True), Arg("return_indices", "flag", False), Arg("ceil_mode", "flag", False))


@register
class MaxPool2d(_MaxPool):
    r"""2-D max pooling: $K - 1$ comparisons per output, $K = \prod k$ (edge windows counted as full windows)."""

    name = "maxpool2d"
    torch_name = "torch.nn.MaxPool2d"
    summary = "2-D max pooling (K-1 cmp per output; edge windows counted full)"
    dims = 2
    args = (*_window_args(2, dilation=True), Arg("return_indices", "flag", False), Arg("ceil_mode", "flag", False))


@register
class MaxPool3d(_MaxPool):
    r"""3-D max pooling: $K - 1$ comparisons per output, $K = \prod k$ (edge windows counted as full windows)."""

    name = "maxpool3d"
    torch_name = "torch.nn.MaxPool3d"
    summary = "3-D max pooling (K-1 cmp per output; edge windows counted full)"
    dims = 3
    args = (*_window_args(3, dilation=True), Arg("return_indices", "flag", False), Arg("ceil_mode", "flag", False))


def _avg_doc(dims: int) -> str:
    return (rf"{dims}-D average pooling: $K - 1$ additions and 1 division per output, $K = \prod k$ (edge "
            "windows counted as full windows, whatever count_include_pad or divisor_override say).")


@register
class AvgPool1d(_AvgPool):
    __doc__ = _avg_doc(1)
    name = "avgpool1d"
    torch_name = "torch.nn.AvgPool1d"
    summary = "1-D average pooling (K-1 add + 1 div per output; edge windows counted full)"
    dims = 1
    # no divisor_override: torch.nn.AvgPool1d has none
    args = (*_window_args(1, dilation=False), Arg("ceil_mode", "flag", False), Arg("count_include_pad", "flag", True))


@register
class AvgPool2d(_AvgPool):
    __doc__ = _avg_doc(2)
    name = "avgpool2d"
    torch_name = "torch.nn.AvgPool2d"
    summary = "2-D average pooling (K-1 add + 1 div per output; edge windows counted full)"
    dims = 2
    args = (*_window_args(2, dilation=False), Arg("ceil_mode", "flag", False), Arg("count_include_pad", "flag", True),
            Arg("divisor_override", "int", None, help="divisor instead of the window size (nonzero)"))


@register
class AvgPool3d(_AvgPool):
    __doc__ = _avg_doc(3)
    name = "avgpool3d"
    torch_name = "torch.nn.AvgPool3d"
    summary = "3-D average pooling (K-1 add + 1 div per output; edge windows counted full)"
    dims = 3
    args = (*_window_args(3, dilation=False), Arg("ceil_mode", "flag", False), Arg("count_include_pad", "flag", True),
            Arg("divisor_override", "int", None, help="divisor instead of the window size (nonzero)"))
    unpadded_must_cover_kernel = True


class _AdaptivePool(_PoolBase):
    def _normalize(self, a: Arg, v):
        if a.name == "output_size":  # torch allows None per axis: keep that axis's input size
            vals = v if isinstance(v, (tuple, list)) else (v,) * self.dims
            if len(vals) != self.dims:
                self.fail(f"output_size needs {self.dims} value(s), got {len(vals)}")
            return tuple(None if x is None else self._int(a, x) for x in vals)
        return super()._normalize(a, v)

    def _cost(self, shape) -> Cost:
        lead, spatial = self._split(shape)
        outs = tuple(i if o is None else o for i, o in zip(spatial, self.output_size))
        totals = [i if o is None else window_total(i, o) for i, o in zip(spatial, self.output_size)]
        channels = numel(lead)
        outputs = channels * numel(outs)
        summed = channels * sympy.Mul(*totals)  # window elements over all outputs
        return Cost(output_shape=(*lead, *outs), ops=self.ops(outputs, summed), reads=numel(shape),
                    writes=outputs * self.index_factor())

    def index_factor(self):
        return 1


class _AdaptiveAvg(_AdaptivePool):
    def ops(self, outputs, summed) -> dict:
        return {"add": summed - outputs, "div": outputs}

    def _backward(self, x):
        fwd = self.cost(x)
        window_sum = fwd.ops.get("add", 0) + numel(fwd.output_shape)   # (window - 1) adds per output, + 1 each
        axes = 3 if self.name.endswith("3d") else 2                   # 1-D runs the 2-D kernel (g / kh / kw)
        return {"grad_input": grad_part(x, g.AdaptiveAvgPoolBackward(axes=axes, window_sum=window_sum)
                                        .cost(fwd.output_shape, x))}


class _AdaptiveMax(_AdaptivePool):
    def ops(self, outputs, summed) -> dict:
        return {"cmp": summed - outputs}

    def index_factor(self):
        return 1 + self.return_indices

    _backward = _MaxPool._backward


def _output_size(dims: int) -> Arg:
    return Arg("output_size", "tuple", symbol=per_axis("O", dims), help="output size per axis (None: keep)")


def _adaptive_doc(dims: int, kind: str) -> str:
    counted = ("comparisons" if kind == "max" else "additions and one division per output")
    return (f"{dims}-D adaptive {'max' if kind == 'max' else 'average'} pooling: per channel, sum of window sizes "
            f"minus outputs {counted} (torch's windows [floor(iI/O), ceil((i+1)I/O)) per axis).")


@register
class AdaptiveAvgPool1d(_AdaptiveAvg):
    __doc__ = _adaptive_doc(1, "avg")
    name = "adaptive_avgpool1d"
    torch_name = "torch.nn.AdaptiveAvgPool1d"
    summary = "1-D adaptive average pooling (window-1 add + 1 div per output, exact windows)"
    dims = 1
    args = (_output_size(1),)


@register
class AdaptiveAvgPool2d(_AdaptiveAvg):
    __doc__ = _adaptive_doc(2, "avg")
    name = "adaptive_avgpool2d"
    torch_name = "torch.nn.AdaptiveAvgPool2d"
    summary = "2-D adaptive average pooling (window-1 add + 1 div per output, exact windows)"
    dims = 2
    args = (_output_size(2),)


@register
class AdaptiveAvgPool3d(_AdaptiveAvg):
    __doc__ = _adaptive_doc(3, "avg")
    name = "adaptive_avgpool3d"
    torch_name = "torch.nn.AdaptiveAvgPool3d"
    summary = "3-D adaptive average pooling (window-1 add + 1 div per output, exact windows)"
    dims = 3
    args = (_output_size(3),)


@register
class AdaptiveMaxPool1d(_AdaptiveMax):
    __doc__ = _adaptive_doc(1, "max")
    name = "adaptive_maxpool1d"
    torch_name = "torch.nn.AdaptiveMaxPool1d"
    summary = "1-D adaptive max pooling (window-1 cmp per output, exact windows)"
    dims = 1
    args = (_output_size(1), Arg("return_indices", "flag", False))


@register
class AdaptiveMaxPool2d(_AdaptiveMax):
    __doc__ = _adaptive_doc(2, "max")
    name = "adaptive_maxpool2d"
    torch_name = "torch.nn.AdaptiveMaxPool2d"
    summary = "2-D adaptive max pooling (window-1 cmp per output, exact windows)"
    dims = 2
    args = (_output_size(2), Arg("return_indices", "flag", False))


@register
class AdaptiveMaxPool3d(_AdaptiveMax):
    __doc__ = _adaptive_doc(3, "max")
    name = "adaptive_maxpool3d"
    torch_name = "torch.nn.AdaptiveMaxPool3d"
    summary = "3-D adaptive max pooling (window-1 cmp per output, exact windows)"
    dims = 3
    args = (_output_size(3), Arg("return_indices", "flag", False))
