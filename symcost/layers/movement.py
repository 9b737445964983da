"""Data movement without arithmetic: a copy (cat, pad, clone, gather, …: every input read once, the output
written) and patches as columns (im2col, ``nn.Unfold``) and summed back (col2im, ``nn.Fold``)."""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import N, SPATIAL, size
from .base import Arg, Layer, definitely, is_number
from .shapes import conv_output_size
from .layer_backward import no_gradient, patches_backward

C = size("C")
_X = (N, C, *SPATIAL[2])


@register
class Copy(Layer):
    r"""Data movement with no arithmetic (cat, pad, clone, roll, gather by index, contiguous):
    zero operations; reads the inputs, writes the output."""

    name = "copy"
    family = "memory"
    torch_name = "torch.clone"
    summary = "zero arithmetic: data movement (cat, pad, clone, roll, index, contiguous); reads and writes only"
    default_inputs = (_X,)

    @classmethod
    def user_input_count(cls) -> tuple[int, float]:
        return 1, 1  # the tracer passes the inputs then the output; a user gives the one tensor copied

    def _cost(self, *shapes) -> Cost:
        out = shapes[-1] if len(shapes) > 1 else shapes[0]
        return Cost(output_shape=out, reads=sum((numel(s) for s in shapes[:-1] or shapes), sympy.Integer(0)),
                    writes=numel(out))

    _backward = no_gradient("it stands for several data-movement ops (cat, pad, index …) whose "
                                "gradients differ; `symcost model --backward` costs each one")


def _patch_args() -> tuple:
    return (Arg("kernel_size", "tuple", help="patch size, e.g. 3 or 3,2"), Arg("dilation", "tuple", 1),
            Arg("padding", "offsets", 0), Arg("stride", "tuple", 1))


class _Patches(Layer):
    dims = 2

    def blocks(self, spatial) -> list:
        """Patch positions per axis; torch refuses a kernel that does not fit the padded input (none)."""
        out = [conv_output_size(i, k, s, p, d) for i, k, s, p, d in
               zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation)]
        if any(definitely(sympy.Lt(b, 1)) for b in out):
            self.fail(f"the kernel {tuple(self.kernel_size)} (dilation {tuple(self.dilation)}) does not fit the "
                      f"padded size {tuple(i + 2 * p for i, p in zip(spatial, self.padding))}: no patch position")
        return out


@register
class Unfold(_Patches):
    r"""``nn.Unfold`` / ``im2col``: the sliding $k_h \times k_w$ patches of $(N, C, H, W)$ as columns
    $(N, C k_h k_w, L)$, $L$ the number of patch positions (a convolution's output size).  No arithmetic: reads the
    input, writes the columns."""

    name = "unfold"
    family = "memory"
    torch_name = "torch.nn.Unfold"
    summary = "sliding patches as columns, im2col (no arithmetic; reads and writes only)"
    default_inputs = (_X,)
    args = _patch_args()

    def _cost(self, x) -> Cost:
        if len(x) not in (3, 4):
            self.fail(f"expected (N, C, H, W) or (C, H, W), got {tuple(x)}")
        out = (*x[:-3], x[-3] * numel(self.kernel_size), numel(self.blocks(x[-2:])))
        return Cost(output_shape=out, reads=numel(x), writes=numel(out))

    _backward = patches_backward("fold")


@register
class Fold(_Patches):
    r"""``nn.Fold`` / ``col2im``: sums the columns $(N, C k_h k_w, L)$ back into an image $(N, C, H, W)$, every
    column value accumulated once (1 add each, including values that fall into the padding: windows counted full,
    as pooling counts them).  Reads the columns, writes the image."""

    name = "fold"
    family = "memory"
    torch_name = "torch.nn.Fold"
    summary = "sum sliding patches back into an image, col2im (1 add per column value)"
    default_inputs = ((N, C, size("L")),)
    args = (Arg("output_size", "tuple", help="image size H,W"),) + _patch_args()

    def _cost(self, cols) -> Cost:
        if len(cols) not in (2, 3):
            self.fail(f"expected (N, C*k_h*k_w, L) or (C*k_h*k_w, L), got {tuple(cols)}")
        k = numel(self.kernel_size)
        if is_number(k) and is_number(cols[-2]) and cols[-2] % k:
            self.fail(f"the columns' {cols[-2]} rows are not a multiple of the kernel's {k} elements "
                      f"(kernel_size {tuple(self.kernel_size)}): torch refuses it")
        out = (*cols[:-2], cols[-2] / k, *self.output_size)
        blocks = numel(self.blocks(self.output_size))
        if is_number(blocks) and is_number(cols[-1]) and blocks != cols[-1]:
            self.fail(f"the columns hold {cols[-1]} patches but output_size {tuple(self.output_size)} has {blocks}")
        return Cost(output_shape=out, ops={"add": numel(cols)}, reads=numel(cols), writes=numel(out))

    _backward = patches_backward("unfold")
