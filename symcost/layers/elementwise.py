"""Elementwise ops -- arithmetic (add, sub, mul, div, pow), comparisons, unary math (exp, neg, abs, sin), bit and
logical ops, minimum/maximum, clamps with tensor bounds, ``addcmul``, running sums -- and the zero-cost layers
(flatten, dropout in eval, identity).

Counted per output element, the primitive operations of the formula written beside each class
(``symcost.conventions`` weighs them); reads are every input tensor once, writes every output.  A negation inside a
formula is free elsewhere in the catalog, and so is the stand-alone ``neg``: it only moves data.  Bit and logical
operations (and, or, xor, not, shifts) have no kind of their own: they count as ``cmp``, the kind of the other
integer-like selections (comparisons, max, masks).

add and mul take two inputs that broadcast as in torch; one shape given means
both inputs have it.  Each output element costs one addition (``torch.add``;
with ``alpha`` other than 1 also one multiplication, ``a + alpha*b``) or one
multiplication (``torch.mul``).  Reads are both inputs, writes the output.

flatten is a view, dropout in eval mode and identity return their input: no
arithmetic, no reads, no writes.
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..errors import LayerError
from ..registry import register
from ..symbols import SPATIAL, N, size
from . import gradients as g
from .base import Arg, Layer, is_number
from .layer_backward import (binary_backward, free_gradient, grad_part, no_gradient, not_derived, number_arg, op_cost,
                             sum_to, unary_backward)
from .shapes import broadcast_shapes

C = size("C")
_X = (N, C, *SPATIAL[2])


class Binary(Layer):
    family = "elementwise"
    op_kind = ""
    default_inputs = ((N, C, *SPATIAL[2]), (N, C, *SPATIAL[2]))

    def extra_ops(self, outputs) -> dict:
        return {}

    def _cost(self, a, b=None, *more) -> Cost:
        if more:
            self.fail(f"takes one or two inputs, got {2 + len(more)}")
        b = a if b is None else b
        try:
            out = broadcast_shapes(a, b, self.name)
        except ValueError as e:
            self.fail(str(e).split(": ", 1)[1])
        outputs = numel(out)
        ops = {self.op_kind: outputs}
        for k, v in self.extra_ops(outputs).items():
            ops[k] = ops.get(k, 0) + v
        return Cost(output_shape=out, ops=ops, reads=numel(a) + numel(b), writes=outputs)


@register
class Add(Binary):
    r"""$a + \alpha b$ with broadcasting: 1 add per output element, plus 1 mul per output when $\alpha \ne 1$."""

    name = "add"
    torch_name = "torch.add"
    summary = "elementwise a + alpha*b with broadcasting (1 add per output; 1 mul more if alpha != 1)"
    op_kind = "add"
    args = (Arg("alpha", "float", 1, help="multiplier of the second input"),)

    def extra_ops(self, outputs) -> dict:
        return {} if self.alpha == 1 else {"mul": outputs}

    _backward = binary_backward("add")


@register
class Mul(Binary):
    r"""$a \cdot b$ with broadcasting: 1 mul per output element."""

    name = "mul"
    torch_name = "torch.mul"
    summary = "elementwise a * b with broadcasting (1 mul per output)"
    op_kind = "mul"

    _backward = binary_backward("mul")


class _ZeroCost(Layer):
    default_inputs = ((N, C, *SPATIAL[2]),)

    def output_shape(self, shape):
        return shape

    def _cost(self, shape) -> Cost:
        return Cost(output_shape=self.output_shape(shape))

    _backward = free_gradient


@register
class Flatten(_ZeroCost):
    """Merges dims start_dim..end_dim into one.  Zero cost: a view (no arithmetic, no reads, no writes)."""

    name = "flatten"
    family = "reshape"
    torch_name = "torch.nn.Flatten"
    summary = "flatten start_dim..end_dim; zero cost: a view"
    args = (Arg("start_dim", "int", 1), Arg("end_dim", "int", -1))

    def output_shape(self, shape):
        rank = max(len(shape), 1)  # torch treats a 0-d input as 1-d here
        dims = []
        for what in ("start_dim", "end_dim"):
            d = self.values[what]
            if not is_number(d):
                self.fail(f"{what} must be an integer, not the symbol {d}")
            if not -rank <= d < rank:
                self.fail(f"{what}={d} is out of range for an input of rank {len(shape)}")
            dims.append(int(d) % rank)
        start, end = dims
        if start > end:
            self.fail(f"start_dim ({self.start_dim}) comes after end_dim ({self.end_dim}) for rank {len(shape)}")
        if not shape:
            return (sympy.Integer(1),)
        return (*shape[:start], numel(shape[start:end + 1]), *shape[end + 1:])


@register
class Dropout(_ZeroCost):
    """Dropout in eval mode (symcost's only mode): the identity.  Zero cost: no arithmetic, reads or writes.
    (In training it would draw a mask and scale by 1/(1-p); that is not modelled.)"""

    name = "dropout"
    family = "elementwise"
    torch_name = "torch.nn.Dropout"
    summary = "dropout in eval mode; zero cost: the identity"
    args = (Arg("p", "float", 0.5, help="drop probability (unused in eval)"), Arg("inplace", "flag", False))

    def check_args(self) -> None:
        if not 0 <= self.p <= 1:
            self.fail(f"p must be between 0 and 1, got {self.p}")


@register
class Identity(_ZeroCost):
    """Returns its input.  Zero cost: no arithmetic, reads or writes."""

    name = "identity"
    family = "reshape"
    torch_name = "torch.nn.Identity"
    summary = "the identity; zero cost: returns its input"


@register
class Sub(Binary):
    r"""$a - b$ with broadcasting: 1 add (subtraction) per output element."""

    name = "sub"
    torch_name = "torch.sub"
    summary = "elementwise a - b with broadcasting (1 add per output)"
    op_kind = "add"

    _backward = binary_backward("sub")


@register
class Div(Binary):
    r"""$a / b$ with broadcasting: 1 div per output element."""

    name = "div"
    torch_name = "torch.div"
    summary = "elementwise a / b with broadcasting (1 div per output)"
    op_kind = "div"

    _backward = binary_backward("div")


@register
class Compare(Binary):
    r"""$a \lessgtr b$, $a = b$, or a masked fill (a select): 1 cmp per output element."""

    name = "compare"
    torch_name = "torch.eq"
    summary = "elementwise comparison or masked select (eq, ne, lt, masked_fill …; 1 cmp per output)"
    op_kind = "cmp"

    _backward = no_gradient("its output is boolean, which has no gradient")


class Unary(Layer):
    family = "elementwise"
    default_inputs = (_X,)
    per_element: dict = {}

    def _cost(self, x) -> Cost:
        n = numel(x)
        return Cost(output_shape=x, ops={k: v * n for k, v in self.per_element.items()}, reads=n, writes=n)


@register
class Exp(Unary):
    r"""$e^x$ (also sqrt, rsqrt, log): 1 fn per element."""

    name = "exp"
    torch_name = "torch.exp"
    summary = "elementwise transcendental function: exp, log, sqrt, rsqrt (1 fn per element)"
    per_element = {"fn": 1}

    _backward = unary_backward(("mul", "gx"))               # grad * result


@register
class Pow(Layer):
    r"""$x^k$ elementwise: $k-1$ multiplications for an integer $k \ge 1$ (GPT-2's $x^3$), else 1 fn."""

    name = "pow"
    family = "elementwise"
    torch_name = "torch.pow"
    summary = "elementwise x**k (k-1 mul per element for an integer k >= 1, else 1 fn)"
    default_inputs = (_X,)
    args = (Arg("exponent", "float", help="the power k"),)

    def _cost(self, x) -> Cost:
        n, k = numel(x), self.exponent
        ops = {"mul": (int(k) - 1) * n} if float(k).is_integer() and k >= 1 else {"fn": n}
        return Cost(output_shape=x, ops=ops, reads=n, writes=n)

    def _backward(self, x):       # grad * (k * x^(k-1)); k = 0: zeros
        k = float(number_arg(self, "exponent"))
        if k == 0:
            return {"grad_input": grad_part(x)}
        return {"grad_input": grad_part(x, op_cost("pow", x, exponent=k - 1), op_cost("mul", x, ()),
                                        op_cost("mul", x, x))}


@register
class Neg(Unary):
    r"""$-x$: a sign flip, no arithmetic counted (as a negation inside any other formula); reads and writes."""

    name = "neg"
    torch_name = "torch.neg"
    summary = "elementwise -x (no arithmetic counted: a sign flip; reads and writes only)"

    _backward = unary_backward(("neg", "g"))


@register
class Abs(Unary):
    r"""$|x| = \max(x, -x)$: 1 cmp per element."""

    name = "abs"
    torch_name = "torch.abs"
    summary = "elementwise |x| (1 cmp per element)"
    per_element = {"cmp": 1}

    def _backward(self, x):       # grad * sgn(x)
        return {"grad_input": grad_part(x, g.Sign().cost(x), op_cost("mul", x, x))}


@register
class Sin(Unary):
    r"""$\sin x$ (also $\cos x$): 1 fn per element."""

    name = "sin"
    torch_name = "torch.sin"
    summary = "elementwise sin or cos (1 fn per element)"
    per_element = {"fn": 1}

    _backward = unary_backward(("sin", "x"), ("mul", "gx"))  # grad * cos(x)


@register
class LogicalNot(Unary):
    r"""Bitwise or logical not: 1 cmp per element (a bit operation, counted as comparisons and masks are)."""

    name = "logical_not"
    torch_name = "torch.logical_not"
    summary = "bitwise/logical not (1 cmp per element)"
    per_element = {"cmp": 1}

    _backward = no_gradient("its output is boolean or integer, which has no gradient")


@register
class Logical(Binary):
    r"""Bitwise or logical and, or, xor and shifts of two inputs (with broadcasting):
    1 cmp per output element (bit operations counted as the kind of comparisons and masks)."""

    name = "logical"
    torch_name = "torch.logical_and"
    summary = "bitwise/logical and, or, xor, shifts (1 cmp per output)"
    op_kind = "cmp"

    _backward = no_gradient("its output is boolean or integer, which has no gradient")


@register
class Minimum(Binary):
    r"""$\min(a, b)$ or $\max(a, b)$ elementwise with broadcasting: 1 cmp per output element."""

    name = "minimum"
    torch_name = "torch.minimum"
    summary = "elementwise min(a, b) or max(a, b) with broadcasting (1 cmp per output)"
    op_kind = "cmp"

    _backward = binary_backward("minimum")


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

    _backward = not_derived("torch's clamp backward with tensor bounds is a chain of "
                                "comparisons per bound; `symcost model --backward` costs each op")


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

    def _backward(self, a, b, c):
        go = self.cost(a, b, c).output_shape
        if self.divide:   # grad * (value / c); -grad * (value * b / (c * c)), value / c a tensor of c's shape
            bc = op_cost("mul", b, c).output_shape
            return {"grad_input": grad_part(a, *sum_to(go, a)),
                    "grad_tensor1": grad_part(b, op_cost("div", c, c), op_cost("mul", go, c), *sum_to(go, b)),
                    "grad_tensor2": grad_part(c, op_cost("mul", c, c), op_cost("mul", b, ()), op_cost("div", b, c),
                                              op_cost("neg", go), op_cost("mul", go, bc), *sum_to(go, c))}

        def scaled(other):   # grad * (other * value)
            return [op_cost("mul", other, ()), op_cost("mul", go, other)]
        return {"grad_input": grad_part(a, *sum_to(go, a)),
                "grad_tensor1": grad_part(b, *scaled(c), *sum_to(go, b)),
                "grad_tensor2": grad_part(c, *scaled(b), *sum_to(go, c))}


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

    def _backward(self, x):    # grad.flip(dim).cumsum(dim).flip(dim)
        if self.product:
            raise LayerError(f"{self.name}: no backward formula for cumprod: its gradient takes another path where the "
                             "input has zeros (which depends on the values)")
        return {"grad_input": grad_part(x, op_cost("copy", x, x), op_cost("cumsum", x, dim=int(self.dim)),
                                        op_cost("copy", x, x))}
