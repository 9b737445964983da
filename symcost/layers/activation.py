r"""Activations: elementwise (relu ... prelu) and row-wise (softmax, log_softmax).

Every elementwise activation costs a fixed number of primitive operations per
element, listed in ``_TABLE`` with the formula it counts.  The count is data
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
from .base import Arg, Layer, definitely, is_number

C = size("C")
D = size("D")

INPLACE = Arg("inplace", "flag", False, help="in place (cost unchanged)")

#: name, torch class, per-element ops, extra constructor args, formula counted, what is counted
_TABLE: tuple = (
    ("relu", "ReLU", {"cmp": 1}, (INPLACE,), r"\max(0, x)", "1 cmp"),
    ("relu6", "ReLU6", {"cmp": 2}, (INPLACE,), r"\min(\max(0, x), 6)", "2 cmp"),
    ("hardtanh", "Hardtanh", {"cmp": 2},
     (Arg("min_val", "float", -1.0), Arg("max_val", "float", 1.0), INPLACE),
     r"\min(\max(x, a), b)", "2 cmp"),
    ("leaky_relu", "LeakyReLU", {"cmp": 1, "mul": 1}, (Arg("negative_slope", "float", 0.01), INPLACE),
     r"x \text{ if } x > 0 \text{ else } a x", "1 cmp, 1 mul"),
    ("sigmoid", "Sigmoid", {"fn": 1, "add": 1, "div": 1}, (), r"1 / (1 + e^{-x})",
     "1 fn (exp), 1 add, 1 div"),
    ("tanh", "Tanh", {"fn": 1}, (), r"\tanh x", "1 fn"),
    ("gelu", "GELU", None, (Arg("approximate", "choice", "none", choices=("none", "tanh")),),
     r"\frac{x}{2}(1 + \operatorname{erf}(x/\sqrt{2}))"
     r"\text{, or with approximate='tanh' } \frac{x}{2}(1 + \tanh(\sqrt{2/\pi}(x + 0.044715 x^3)))",
     # erf form: x*(1/sqrt 2), x*(...), *0.5 = 3 mul; tanh form: x^3 (2), *0.044715, *sqrt(2/pi), x*(...), *0.5
     "1 fn (erf), 1 add, 3 mul; approximate='tanh': 1 fn (tanh), 2 add, 6 mul"),
    ("silu", "SiLU", {"fn": 1, "add": 1, "div": 1}, (INPLACE,), r"x / (1 + e^{-x})",
     "1 fn (exp), 1 add, 1 div"),
    ("hardswish", "Hardswish", {"add": 1, "cmp": 2, "mul": 1, "div": 1}, (INPLACE,),
     r"x \cdot \operatorname{ReLU6}(x + 3) / 6", "1 add, 2 cmp, 1 mul, 1 div"),
    ("hardsigmoid", "Hardsigmoid", {"add": 1, "cmp": 2, "div": 1}, (INPLACE,),
     r"\operatorname{ReLU6}(x + 3) / 6", "1 add, 2 cmp, 1 div"),
    ("elu", "ELU", {"cmp": 1, "fn": 1, "add": 1, "mul": 1}, (Arg("alpha", "float", 1.0), INPLACE),
     r"x \text{ if } x > 0 \text{ else } \alpha(e^x - 1)", "1 cmp, 1 fn (exp), 1 add, 1 mul"),
    ("softplus", "Softplus", {"mul": 1, "cmp": 1, "fn": 2, "add": 1, "div": 1},
     (Arg("beta", "float", 1.0), Arg("threshold", "float", 20.0)),
     r"\frac{1}{\beta}\log(1 + e^{\beta x}) \text{, or } x \text{ when } \beta x > \text{threshold}",
     "1 mul (beta x), 1 cmp (threshold), 2 fn (exp, log), 1 add, 1 div (by beta)"),
    ("mish", "Mish", {"fn": 3, "add": 1, "mul": 1}, (INPLACE,), r"x \tanh(\log(1 + e^x))",
     "3 fn (exp, log, tanh), 1 add, 1 mul"),
)

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
    def check_args(self) -> None:
        if self.approximate not in _GELU_OPS:
            self.fail(f"approximate must be 'none' or 'tanh', got {self.approximate!r}")

    def element_ops(self) -> dict:
        return _GELU_OPS[self.approximate]


class _Hardtanh(_Elementwise):
    def check_args(self) -> None:
        if self.max_val <= self.min_val:
            self.fail(f"max_val ({self.max_val}) must be greater than min_val ({self.min_val}), as in torch")


_BASES = {"gelu": _Gelu, "hardtanh": _Hardtanh}


def _make(name, torch_cls, ops, args, formula, counted):
    doc = (f"{torch_cls}: $y = {formula}$.  Counted per element: {counted}.")
    cls = type(torch_cls, (_BASES.get(name, _Elementwise),), {
        "name": name, "torch_name": f"torch.nn.{torch_cls}", "per_element": ops or {},
        "summary": f"elementwise {name} ({counted} per element)", "args": args,
        "__doc__": doc, "__module__": __name__,
    })
    return register(cls)


(ReLU, ReLU6, Hardtanh, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Hardswish, Hardsigmoid, ELU, Softplus,
 Mish) = (_make(*row) for row in _TABLE)


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
