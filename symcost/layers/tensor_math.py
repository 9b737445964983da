r"""More tensor operations that models call functionally: unary math (neg, abs, sin, cos), bit and logical ops,
clamps with tensor bounds, ``addcmul``, running sums, statistics (var, std), arg- and top-k selections, and
patches as columns (im2col) and summed back (col2im).

Counted as the other elementwise layers are: per output element, the primitive operations of the formula written
beside each class (``symcost.conventions`` weighs them); reads are every input tensor once, writes every output.
A negation inside a formula is free elsewhere in the catalog, and so is the stand-alone ``neg``: it only moves data.
Bit and logical operations (and, or, xor, not, shifts) have no kind of their own: they count as ``cmp``, the kind of
the other integer-like selections (comparisons, max, masks).
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import SPATIAL, N, size
from .base import Arg, Layer, definitely, is_number
from .elementwise import Binary
from .linear import broadcast_shapes
from .shapes import conv_output_size
from .tensor_ops import Reduce, Unary

C = size("C")
_X = (N, C, *SPATIAL[2])


@register
class Neg(Unary):
    r"""$-x$: a sign flip, no arithmetic counted (as a negation inside any other formula); reads and writes."""

    name = "neg"
    torch_name = "torch.neg"
    summary = "elementwise -x (no arithmetic counted: a sign flip; reads and writes only)"


@register
class Abs(Unary):
    r"""$|x| = \max(x, -x)$: 1 cmp per element."""

    name = "abs"
    torch_name = "torch.abs"
    summary = "elementwise |x| (1 cmp per element)"
    per_element = {"cmp": 1}


@register
class Sin(Unary):
    r"""$\sin x$ (also $\cos x$): 1 fn per element."""

    name = "sin"
    torch_name = "torch.sin"
    summary = "elementwise sin or cos (1 fn per element)"
    per_element = {"fn": 1}


@register
class LogicalNot(Unary):
    r"""Bitwise or logical not: 1 cmp per element (a bit operation, counted as comparisons and masks are)."""

    name = "logical_not"
    torch_name = "torch.logical_not"
    summary = "bitwise/logical not (1 cmp per element)"
    per_element = {"cmp": 1}


@register
class Logical(Binary):
    r"""Bitwise or logical and, or, xor and shifts of two inputs (with broadcasting):
    1 cmp per output element (bit operations counted as the kind of comparisons and masks)."""

    name = "logical"
    torch_name = "torch.logical_and"
    summary = "bitwise/logical and, or, xor, shifts (1 cmp per output)"
    op_kind = "cmp"


@register
class Minimum(Binary):
    r"""$\min(a, b)$ or $\max(a, b)$ elementwise with broadcasting: 1 cmp per output element."""

    name = "minimum"
    torch_name = "torch.minimum"
    summary = "elementwise min(a, b) or max(a, b) with broadcasting (1 cmp per output)"
    op_kind = "cmp"


@register
class ClampTensor(Layer):
    r"""$\min(\max(x, lo), hi)$ with tensor bounds that broadcast against $x$ (``torch.clamp(x, min=t, max=u)``):
    1 cmp per output element for each bound given.  Inputs: $x$, then the shapes of the bounds given."""

    name = "clamp_tensor"
    family = "elementwise"
    torch_name = "torch.clamp"
    summary = "clamp with tensor bounds (1 cmp per output per bound given)"
    default_inputs = (_X, _X, _X)

    def _cost(self, x, *bounds) -> Cost:
        if not 1 <= len(bounds) <= 2:
            self.fail(f"takes the input and one or two bound tensors, got {1 + len(bounds)} shapes")
        out = tuple(x)
        try:
            for b in bounds:
                out = broadcast_shapes(out, b, self.name)
        except ValueError as e:
            self.fail(str(e).split(": ", 1)[1])
        n = numel(out)
        return Cost(output_shape=out, ops={"cmp": len(bounds) * n},
                    reads=numel(x) + sum((numel(b) for b in bounds), sympy.Integer(0)), writes=n)


@register
class Addcmul(Layer):
    r"""$a + v \cdot b \cdot c$ (``torch.addcmul``; with ``divide``: $a + v \cdot b / c$, ``addcdiv``), all three
    broadcasting: per output element 1 mul (or div) for $b \cdot c$, 1 mul for $v \ne 1$, 1 add."""

    name = "addcmul"
    family = "elementwise"
    torch_name = "torch.addcmul"
    summary = "a + value*b*c (addcdiv: a + value*b/c) with broadcasting (1 mul|div, 1 add, 1 mul if value != 1)"
    default_inputs = (_X, _X, _X)
    args = (Arg("value", "float", 1.0, help="multiplier of b*c"), Arg("divide", "flag", None, help="true: addcdiv"))

    def _cost(self, a, b=None, c=None) -> Cost:
        b, c = a if b is None else b, a if c is None else c
        try:
            out = broadcast_shapes(broadcast_shapes(a, b, self.name), c, self.name)
        except ValueError as e:
            self.fail(str(e).split(": ", 1)[1])
        n = numel(out)
        ops = {"div" if self.divide else "mul": n, "add": n}  # (None: unset, as torch's)
        if self.value != 1:
            ops["mul"] = ops.get("mul", 0) + n
        return Cost(output_shape=out, ops=ops, reads=numel(a) + numel(b) + numel(c), writes=n)


@register
class Cumsum(Layer):
    r"""Running sum along ``dim`` (cumsum; cumprod with ``product``): a row of $m$ values takes $m-1$ additions
    (multiplications), i.e. $n - n/m$ for $n$ elements."""

    name = "cumsum"
    family = "reduction"
    torch_name = "torch.cumsum"
    summary = "running sum (or product) along dim (m-1 add per row of m)"
    default_inputs = (_X,)
    args = (Arg("dim", "int", -1, help="the dimension summed along"),
            Arg("product", "flag", None, help="true: cumprod"))

    def _cost(self, x) -> Cost:
        rank = max(len(x), 1)
        if not is_number(self.dim) or not -rank <= self.dim < rank:
            self.fail(f"dim={self.dim} is out of range for an input of rank {len(x)}")
        n = numel(x)
        m = x[int(self.dim)] if x else sympy.Integer(1)
        return Cost(output_shape=x, ops={"mul" if self.product else "add": n - n / m}, reads=n, writes=n)


@register
class Var(Reduce):
    r"""Variance over dims (``torch.var``, ``var_mean``): per output of $m$ values, the mean ($m-1$ add, 1 div),
    $m$ deviations (add), $m$ squares (mul), their sum ($m-1$ add) and 1 division by $m$ - correction."""

    name = "var"
    torch_name = "torch.var"
    summary = "variance over dims (per output of m: 3m-2 add, m mul, 2 div)"
    step, finish, per_element = {"add": 2}, {"div": 2}, {"add": 1, "mul": 1}
    args = Reduce.args + (Arg("with_mean", "flag", None, help="true: also write the mean (var_mean, std_mean)"),)

    def _cost(self, x) -> Cost:
        cost = super()._cost(x)
        return Cost(output_shape=cost.output_shape, ops=cost.ops, reads=cost.reads,
                    writes=cost.writes * (2 if self.with_mean else 1))


@register
class Std(Var):
    r"""Standard deviation over dims (``torch.std``, ``std_mean``): the variance's count and 1 sqrt per output."""

    name = "std"
    torch_name = "torch.std"
    summary = "standard deviation over dims (variance + 1 sqrt per output)"
    step, finish, per_element = {"add": 2}, {"div": 2, "fn": 1}, {"add": 1, "mul": 1}


@register
class Amin(Reduce):
    r"""Minimum over dims: $m-1$ cmp per output."""

    name = "amin"
    torch_name = "torch.amin"
    summary = "min over dims (m-1 cmp per output)"
    step = {"cmp": 1}


@register
class Argmax(Layer):
    r"""Index of the max (or min) along ``dim`` (``argmax``, ``argmin``; ``max``/``min`` with a dim also write the
    values: ``with_values=true``); no dim: over everything.  $m-1$ cmp per output for $m$ values compared."""

    name = "argmax"
    family = "reduction"
    torch_name = "torch.argmax"
    summary = "index of the max or min along dim (m-1 cmp per output)"
    default_inputs = (_X,)
    args = (Arg("dim", "int", None, help="the dimension searched (none: all)"), Arg("keepdim", "flag", False),
            Arg("with_values", "flag", None, help="true: also write the values (max/min with a dim)"))

    def _cost(self, x) -> Cost:
        rank = max(len(x), 1)
        if self.dim is not None and (not is_number(self.dim) or not -rank <= self.dim < rank):
            self.fail(f"dim={self.dim} is out of range for an input of rank {len(x)}")
        dims = set(range(len(x))) if self.dim is None else {int(self.dim) % rank}
        out = tuple(sympy.Integer(1) if i in dims else s for i, s in enumerate(x) if self.keepdim or i not in dims)
        n, outputs = numel(x), numel(out)
        return Cost(output_shape=out, ops={"cmp": n - outputs}, reads=n,
                    writes=outputs * (2 if self.with_values else 1))


@register
class Topk(Layer):
    r"""The $k$ largest (or smallest) values along ``dim`` and their indices, counted as $k$ passes of a selection:
    in a row of $m$ values, $\sum_{j<k} (m-1-j) = k(m-1) - k(k-1)/2$ cmp.  Writes $2k$ per row (values, indices)."""

    name = "topk"
    family = "reduction"
    torch_name = "torch.topk"
    summary = "k largest along dim (k(m-1) - k(k-1)/2 cmp per row of m)"
    default_inputs = (_X,)
    args = (Arg("k", "count", help="values selected"), Arg("dim", "int", -1))

    def _cost(self, x) -> Cost:
        rank = max(len(x), 1)
        if not is_number(self.dim) or not -rank <= self.dim < rank:
            self.fail(f"dim={self.dim} is out of range for an input of rank {len(x)}")
        d = int(self.dim) % rank
        m, k = (x[d] if x else sympy.Integer(1)), self.k
        if definitely(sympy.Gt(k, m)):
            self.fail(f"k={k} is more than the {m} values along dim {self.dim} of {tuple(x)} (torch refuses it)")
        rows = numel(x) / m
        out = tuple(k if i == d else s for i, s in enumerate(x))
        return Cost(output_shape=out, ops={"cmp": rows * (k * (m - 1) - k * (k - 1) / 2)}, reads=numel(x),
                    writes=2 * numel(out))


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
