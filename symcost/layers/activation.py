r"""Activations: elementwise (relu ... prelu) and row-wise (softmax, log_softmax).

Every elementwise activation costs a fixed number of primitive operations per
element, its class's ``per_element``, beside the formula it counts (the docstring).  The count is data
independent: a piecewise function (leaky_relu, elu, prelu, softplus) is counted
as if every element took its costlier branch, plus the comparison that picks the
branch.  A negation or a multiplication by an exact 1 inside a formula is free;
multiplications and divisions by other constants count.  Reads are the input
(and PReLU's weights), writes the output; ``inplace`` changes neither count.

FlopCounterMode counts none of these (its 'torch' convention weighs only MACs).
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import SPATIAL, L, N, size
from . import gradients as g
from .base import Arg, Layer, definitely, is_number
from .layer_backward import activation_backward, grad_part, op_cost, sum_to

C = size("C")
D = size("D")

INPLACE = Arg("inplace", "flag", False, help="in place (cost unchanged)")

# erf form: x*(1/sqrt 2), x*(...), *0.5 = 3 mul; tanh form: x^3 (2), *0.044715, *sqrt(2/pi), x*(...), *0.5
_GELU_OPS = {"none": {"fn": 1, "add": 1, "mul": 3}, "tanh": {"fn": 1, "add": 2, "mul": 6}}


class _Elementwise(Layer):
    """Base of the table-driven activations: ``per_element`` ops on every input element."""

    family = "activation"
    per_element: dict = {}
    default_inputs = ((N, C, *SPATIAL[2]),)

    def element_ops(self) -> dict:
        return self.per_element

    def weights(self, shape):
        """Trainable parameters (PReLU overrides)."""
        return sympy.Integer(0)

    def _cost(self, shape) -> Cost:
        n = numel(shape)
        params = self.weights(shape)
        return Cost(output_shape=shape, params=params, ops={k: v * n for k, v in self.element_ops().items()},
                    reads=n + params, writes=n)


class _Gelu(_Elementwise):
    """GELU's ops depend on its ``approximate`` argument."""

    def check_args(self) -> None:
        if self.approximate not in _GELU_OPS:
            self.fail(f"approximate must be 'none' or 'tanh', got {self.approximate!r}")

    def element_ops(self) -> dict:
        return _GELU_OPS[self.approximate]


class _Hardtanh(_Elementwise):
    """Hardtanh refuses an empty range, as torch does."""

    def check_args(self) -> None:
        if self.max_val <= self.min_val:
            self.fail(f"max_val ({self.max_val}) must be greater than min_val ({self.min_val}), as in torch")


@register
class ReLU(_Elementwise):
    r"""ReLU: $y = \max(0, x)$.  Counted per element: 1 cmp."""

    name = "relu"
    torch_name = "torch.nn.ReLU"
    summary = "elementwise relu (1 cmp per element)"
    per_element = {"cmp": 1}
    args = (INPLACE,)

    _backward = activation_backward("relu_backward")


@register
class ReLU6(_Elementwise):
    r"""ReLU6: $y = \min(\max(0, x), 6)$.  Counted per element: 2 cmp."""

    name = "relu6"
    torch_name = "torch.nn.ReLU6"
    summary = "elementwise relu6 (2 cmp per element)"
    per_element = {"cmp": 2}
    args = (INPLACE,)

    _backward = activation_backward("hardtanh_backward")


@register
class Hardtanh(_Hardtanh):
    r"""Hardtanh: $y = \min(\max(x, a), b)$.  Counted per element: 2 cmp."""

    name = "hardtanh"
    torch_name = "torch.nn.Hardtanh"
    summary = "elementwise hardtanh (2 cmp per element)"
    per_element = {"cmp": 2}
    args = (Arg("min_val", "float", -1.0), Arg("max_val", "float", 1.0), INPLACE)

    _backward = activation_backward("hardtanh_backward")


@register
class LeakyReLU(_Elementwise):
    r"""LeakyReLU: $y = x \text{ if } x > 0 \text{ else } a x$.  Counted per element: 1 cmp, 1 mul."""

    name = "leaky_relu"
    torch_name = "torch.nn.LeakyReLU"
    summary = "elementwise leaky_relu (1 cmp, 1 mul per element)"
    per_element = {"cmp": 1, "mul": 1}
    args = (Arg("negative_slope", "float", 0.01), INPLACE)

    _backward = activation_backward("leaky_relu_backward")


@register
class Sigmoid(_Elementwise):
    """Sigmoid: $y = 1 / (1 + e^{-x})$.  Counted per element: 1 fn (exp), 1 add, 1 div."""

    name = "sigmoid"
    torch_name = "torch.nn.Sigmoid"
    summary = "elementwise sigmoid (1 fn (exp), 1 add, 1 div per element)"
    per_element = {"fn": 1, "add": 1, "div": 1}
    args = ()

    _backward = activation_backward("sigmoid_backward")


@register
class Tanh(_Elementwise):
    r"""Tanh: $y = \tanh x$.  Counted per element: 1 fn."""

    name = "tanh"
    torch_name = "torch.nn.Tanh"
    summary = "elementwise tanh (1 fn per element)"
    per_element = {"fn": 1}
    args = ()

    _backward = activation_backward("tanh_backward")


@register
class GELU(_Gelu):
    __doc__ = (r"GELU: $y = \frac{x}{2}(1 + \operatorname{erf}(x/\sqrt{2}))"
               r"\text{, or with approximate='tanh' } \frac{x}{2}(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))$.  "
               "Counted per element: 1 fn (erf), 1 add, 3 mul; approximate='tanh': 1 fn (tanh), 2 add, 6 mul.")
    name = "gelu"
    torch_name = "torch.nn.GELU"
    summary = "elementwise gelu (1 fn (erf), 1 add, 3 mul; approximate='tanh': 1 fn (tanh), 2 add, 6 mul per element)"
    args = (Arg("approximate", "choice", "none", choices=("none", "tanh")),)

    def _backward(self, x):
        kernel = "gelu_tanh_backward" if self.approximate == "tanh" else "gelu_backward"
        return activation_backward(kernel)(self, x)


@register
class SiLU(_Elementwise):
    """SiLU: $y = x / (1 + e^{-x})$.  Counted per element: 1 fn (exp), 1 add, 1 div."""

    name = "silu"
    torch_name = "torch.nn.SiLU"
    summary = "elementwise silu (1 fn (exp), 1 add, 1 div per element)"
    per_element = {"fn": 1, "add": 1, "div": 1}
    args = (INPLACE,)

    _backward = activation_backward("silu_backward")


@register
class Hardswish(_Elementwise):
    r"""Hardswish: $y = x \cdot \operatorname{ReLU6}(x + 3) / 6$.  Counted per element: 1 add, 2 cmp, 1 mul, 1 div."""

    name = "hardswish"
    torch_name = "torch.nn.Hardswish"
    summary = "elementwise hardswish (1 add, 2 cmp, 1 mul, 1 div per element)"
    per_element = {"add": 1, "cmp": 2, "mul": 1, "div": 1}
    args = (INPLACE,)

    _backward = activation_backward("hardswish_backward")


@register
class Hardsigmoid(_Elementwise):
    r"""Hardsigmoid: $y = \operatorname{ReLU6}(x + 3) / 6$.  Counted per element: 1 add, 2 cmp, 1 div."""

    name = "hardsigmoid"
    torch_name = "torch.nn.Hardsigmoid"
    summary = "elementwise hardsigmoid (1 add, 2 cmp, 1 div per element)"
    per_element = {"add": 1, "cmp": 2, "div": 1}
    args = (INPLACE,)

    _backward = activation_backward("hardsigmoid_backward")


@register
class ELU(_Elementwise):
    __doc__ = (r"ELU: $y = x \text{ if } x > 0 \text{ else } \alpha(e^x - 1)$.  "
               "Counted per element: 1 cmp, 1 fn (exp), 1 add, 1 mul.")
    name = "elu"
    torch_name = "torch.nn.ELU"
    summary = "elementwise elu (1 cmp, 1 fn (exp), 1 add, 1 mul per element)"
    per_element = {"cmp": 1, "fn": 1, "add": 1, "mul": 1}
    args = (Arg("alpha", "float", 1.0), INPLACE)

    _backward = activation_backward("elu_backward")


@register
class Softplus(_Elementwise):
    __doc__ = (r"Softplus: $y = \frac{1}{\beta}\log(1 + e^{\beta x}) \text{, or } x \text{ when } "
               r"\beta x > \text{threshold}$.  "
               "Counted per element: 1 mul (beta x), 1 cmp (threshold), 2 fn (exp, log), 1 add, 1 div (by beta).")
    name = "softplus"
    torch_name = "torch.nn.Softplus"
    summary = ("elementwise softplus (1 mul (beta x), 1 cmp (threshold), 2 fn (exp, log), 1 add, 1 div (by beta) "
               "per element)")
    per_element = {"mul": 1, "cmp": 1, "fn": 2, "add": 1, "div": 1}
    args = (Arg("beta", "float", 1.0), Arg("threshold", "float", 20.0))

    _backward = activation_backward("softplus_backward")


@register
class Mish(_Elementwise):
    r"""Mish: $y = x \tanh(\log(1 + e^x))$.  Counted per element: 3 fn (exp, log, tanh), 1 add, 1 mul."""

    name = "mish"
    torch_name = "torch.nn.Mish"
    summary = "elementwise mish (3 fn (exp, log, tanh), 1 add, 1 mul per element)"
    per_element = {"fn": 3, "add": 1, "mul": 1}
    args = (INPLACE,)

    def _backward(self, x):      # torch's decomposition: t = tanh(softplus(x)); g (t + x sigmoid(x) (1 - t t)), as the
        # meta kernel the trace records runs it (1 - t t a subtraction of two tensors)
        return {"grad_input": grad_part(x, op_cost("softplus", x), op_cost("tanh", x), op_cost("sigmoid", x),
                                        op_cost("mul", x, x), op_cost("mul", x, x), op_cost("sub", x, x),
                                        op_cost("mul", x, x), op_cost("add", x, x), op_cost("mul", x, x))}


@register
class PReLU(_Elementwise):
    r"""PReLU: $y = x$ if $x > 0$ else $a_c x$, one learnt slope per channel (dim 1) or one shared.
    Counted per element: 1 cmp, 1 mul.  Params: num_parameters."""

    name = "prelu"
    torch_name = "torch.nn.PReLU"
    summary = "elementwise PReLU with learnt slopes (1 cmp, 1 mul per element)"
    per_element = {"cmp": 1, "mul": 1}
    args = (
        Arg("num_parameters", "size", 1, help="1 (shared slope) or the channel count"),
        Arg("init", "float", 0.25),
    )

    def default_input_shapes(self):
        ch = self.num_parameters if not (is_number(self.num_parameters) and self.num_parameters == 1) else C
        return ((N, ch, *SPATIAL[2]),)

    def weights(self, shape):
        a = self.num_parameters
        if not (is_number(a) and a == 1):
            channels = shape[1] if len(shape) >= 2 else 1  # torch: no channel dim below rank 2
            if definitely(sympy.Ne(channels, a)):
                self.fail(f"num_parameters={a} but the input {tuple(shape)} has {channels} channel(s) (dim 1)")
        return a

    def _backward(self, x):
        w = (self.num_parameters,) + (1,) * (len(x) - 2) if self.num_parameters != 1 else (1,)

        def part(**flags):
            return g.PreluBackward(**{"grad_input": False, "grad_weight": False, **flags}).cost(x, x, w)
        return {"grad_input": grad_part(x, part(grad_input=True)),
                "grad_weight": grad_part((self.num_parameters,), part(grad_weight=True), *sum_to(x, w))}


def softmax_row_ops(d) -> dict:
    """A stable softmax over one row of ``d``: max (d-1 cmp), subtract it (d add), exp (d fn), sum (d-1 add),
    divide (d div)."""
    return {"cmp": d - 1, "add": d + (d - 1), "fn": d, "div": d}


class _RowSoftmax(Layer):
    """Base of softmax and log_softmax: ``row_ops(D)`` on every row of length D along ``dim``."""

    family = "activation"
    args = (Arg("dim", "int", -1, help="the dimension normalised (torch's implicit None is not supported)"),)
    default_inputs = ((N, L, D),)

    def row_ops(self, d) -> dict:
        raise NotImplementedError

    def _cost(self, shape) -> Cost:
        rank = max(len(shape), 1)
        dim = self.dim
        if not is_number(dim):
            self.fail(f"dim must be an integer, not the symbol {dim}")
        if not -rank <= dim < rank:
            self.fail(f"dim={dim} is out of range for an input of rank {len(shape)}")
        d = shape[dim] if shape else sympy.Integer(1)
        n = numel(shape)
        rows = n / d
        return Cost(output_shape=shape, ops={k: rows * v for k, v in self.row_ops(d).items()}, reads=n, writes=n)

    def _backward(self, x):
        softmax = g.SoftmaxBackward(dim=int(self.dim), log=self.name == "log_softmax")
        return {"grad_input": grad_part(x, softmax.cost(x, x))}


@register
class Softmax(_RowSoftmax):
    r"""Softmax along ``dim``, computed stably as $e^{x - \max x} / \sum e^{x - \max x}$.
    Per row of $D$: $D-1$ cmp (max), $D$ add (subtract the max), $D$ fn (exp), $D-1$ add (sum),
    $D$ div; i.e. $5D - 2$ operations."""

    name = "softmax"
    torch_name = "torch.nn.Softmax"
    summary = "softmax along dim (per row of D: D-1 cmp, 2D-1 add, D exp, D div)"

    def row_ops(self, d) -> dict:
        return softmax_row_ops(d)


@register
class LogSoftmax(_RowSoftmax):
    r"""Log-softmax along ``dim``: $x - \max x - \log\sum e^{x - \max x}$.
    Per row of $D$: $D-1$ cmp (max), $D$ add (subtract the max), $D$ fn (exp), $D-1$ add (sum),
    1 fn (log), $D$ add (subtract the log); i.e. $5D$ operations."""

    name = "log_softmax"
    torch_name = "torch.nn.LogSoftmax"
    summary = "log-softmax along dim (per row of D: D-1 cmp, 3D-1 add, D+1 fn)"

    def row_ops(self, d) -> dict:
        return {"cmp": d - 1, "add": d + (d - 1) + d, "fn": d + 1}
