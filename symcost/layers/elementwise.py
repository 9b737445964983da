"""Elementwise binary ops (add, mul) and the zero-cost layers (flatten, dropout in eval, identity).

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
from ..registry import register
from ..symbols import SPATIAL, N, size
from .base import Arg, Layer, is_number
from .linear import broadcast_shapes

C = size("C")


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


@register
class Mul(Binary):
    r"""$a \cdot b$ with broadcasting: 1 mul per output element."""

    name = "mul"
    torch_name = "torch.mul"
    summary = "elementwise a * b with broadcasting (1 mul per output)"
    op_kind = "mul"


class _ZeroCost(Layer):
    default_inputs = ((N, C, *SPATIAL[2]),)

    def output_shape(self, shape):
        return shape

    def _cost(self, shape) -> Cost:
        return Cost(output_shape=self.output_shape(shape))


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
