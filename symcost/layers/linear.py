"""Linear (any leading dims), matmul and bmm."""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..errors import LayerError
from ..registry import register
from ..symbols import F_in, F_out, K, M, N, P, b
from . import gradients as g
from .base import Arg, Layer, definitely
from .layer_backward import grad_part, mm_grads, sum_to
from .shapes import broadcast_shapes


@register
class Linear(Layer):
    r"""$y = x W^T + b$ on inputs $(\ast, F_{in})$: MACs $= \prod(\ast) F_{in} F_{out}$."""

    name = "linear"
    family = "linear"
    torch_name = "torch.nn.Linear"
    summary = "fully connected layer on (*, in_features) inputs"
    args = (
        Arg("in_features", "size", symbol=F_in, help="input features"),
        Arg("out_features", "size", symbol=F_out, help="output features"),
        Arg("bias", "flag", True, b),
    )

    def default_input_shapes(self):
        return ((N, self.in_features),)

    def _cost(self, shape) -> Cost:
        if not shape or definitely(sympy.Ne(shape[-1], self.in_features)):
            self.fail(f"input's last dim must be in_features={self.in_features}, got shape {tuple(shape)}")
        rows = numel(shape[:-1])
        params = self.out_features * self.in_features + self.bias * self.out_features
        outputs = rows * self.out_features
        return Cost(
            output_shape=(*shape[:-1], self.out_features),
            params=params,
            ops={"mac": outputs * self.in_features, "dot": outputs, "bias": self.bias * outputs},
            reads=numel(shape) + params,
            writes=outputs,
        )

    def _backward(self, x):
        f_in, f_out = self.in_features, self.out_features

        def part(**flags):
            return g.LinearBackward(in_features=f_in, out_features=f_out,
                                    **{"bias": False, "grad_input": False, "grad_weight": False, **flags}).cost(x)
        out = {"grad_input": part(grad_input=True), "grad_weight": part(grad_weight=True)}
        if self.bias != 0:
            out["grad_bias"] = part(bias=g.flag(self.bias))
        return out


class MatmulBase(Layer):
    family = "matmul"

    def _cost(self, a, c=None) -> Cost:
        if c is None:
            self.fail("needs two inputs, e.g. --input 8x64x32,8x32x16")
        if len(a) < 2 or len(c) < 2:
            self.fail(f"inputs must have rank >= 2, got {tuple(a)} and {tuple(c)}")
        self.check_ranks(a, c)
        m, k = a[-2:]
        k2, p = c[-2:]
        if definitely(sympy.Ne(k, k2)):
            self.fail(f"inner dimensions differ: {tuple(a)} @ {tuple(c)}")
        try:
            batch = broadcast_shapes(a[:-2], c[:-2], self.name)
        except ValueError as e:
            self.fail(str(e).split(": ", 1)[1])
        outputs = numel(batch) * m * p
        return Cost(
            output_shape=(*batch, m, p),
            ops={"mac": outputs * k, "dot": outputs},
            reads=numel(a) + numel(c),
            writes=outputs,
        )

    def check_ranks(self, a, c) -> None:
        pass


@register
class Matmul(MatmulBase):
    r"""$(\ast, M, K) @ (\ast, K, P)$ with broadcast batch dims: MACs $= \prod(\ast) M K P$."""

    name = "matmul"
    torch_name = "torch.matmul"
    summary = "batched matrix product with broadcasting (inputs of rank >= 2)"
    default_inputs = ((N, M, K), (N, K, P))

    def _backward(self, a, b):
        if len(a) >= 2 and len(b) == 2:   # batch dims folded into rows: two mm
            rows = numel(a[:-1])
            gi, go_ = mm_grads("matmul", (rows, a[-1]), b)
            return {"grad_input": grad_part(a, gi), "grad_other": grad_part(b, go_)}
        if len(a) == len(b) == 3 and a[0] == b[0]:
            gi, go_ = mm_grads("bmm", a, b)
            return {"grad_input": grad_part(a, gi), "grad_other": grad_part(b, go_)}
        raise LayerError(f"{self.name}: backward formula for matmul of a rank-2+ input by a matrix and of equal "
                         f"batches of rank 3 only (got ranks {len(a)} and {len(b)})")


@register
class Bmm(MatmulBase):
    r"""$(B, M, K) @ (B, K, P)$: MACs $= B M K P$."""

    name = "bmm"
    torch_name = "torch.bmm"
    summary = "batch matrix product of two rank-3 inputs"
    default_inputs = ((N, M, K), (N, K, P))

    def check_ranks(self, a, c) -> None:
        if len(a) != 3 or len(c) != 3:
            self.fail(f"needs two rank-3 inputs, got {tuple(a)} and {tuple(c)}")
        if definitely(sympy.Ne(a[0], c[0])):  # torch.bmm does not broadcast the batch
            self.fail(f"batch sizes differ: {tuple(a)} and {tuple(c)} (bmm does not broadcast; matmul does)")

    def _backward(self, a, b):
        gi, go_ = mm_grads("bmm", a, b)
        return {"grad_input": grad_part(a, gi), "grad_mat2": grad_part(b, go_)}


@register
class Addmm(MatmulBase):
    r"""$\beta\,\mathrm{bias} + A B$ (what ``nn.Linear`` becomes): MACs $M K P$, one bias add per output."""

    name = "addmm"
    torch_name = "torch.addmm"
    summary = "bias + A @ B, the aten form of a linear layer (1 bias add per output)"
    default_inputs = ((P,), (M, K), (K, P))
    #: the rank of both factors (torch.addmm: matrices; baddbmm: batches of them)
    factor_rank = 2

    def check_ranks(self, a, c) -> None:
        if len(a) != self.factor_rank or len(c) != self.factor_rank:
            self.fail(f"needs two rank-{self.factor_rank} factors, got {tuple(a)} and {tuple(c)}")
        if self.factor_rank == 3 and definitely(sympy.Ne(a[0], c[0])):
            self.fail(f"batch sizes differ: {tuple(a)} and {tuple(c)} (baddbmm does not broadcast them)")

    def _cost(self, bias, a, c) -> Cost:
        cost = super()._cost(a, c)
        try:  # the added input broadcasts to the product's shape, never beyond it
            grown = broadcast_shapes(bias, cost.output_shape, self.name)
        except ValueError:
            grown = None
        if grown is None or len(grown) != len(cost.output_shape) or any(
                definitely(sympy.Ne(x, y)) for x, y in zip(grown, cost.output_shape)):
            self.fail(f"the added input {tuple(bias)} does not broadcast to the product's shape "
                      f"{tuple(cost.output_shape)}")
        outputs = numel(cost.output_shape)
        return Cost(output_shape=cost.output_shape, ops={**cost.ops, "bias": outputs},
                    reads=cost.reads + numel(bias), writes=cost.writes)

    def _backward(self, bias, a, b):
        gi, go_ = mm_grads("matmul" if len(a) == 2 else "bmm", a, b)
        go = (*a[:-1], b[-1])
        names = ("grad_mat1", "grad_mat2") if len(a) == 2 else ("grad_batch1", "grad_batch2")
        return {"grad_input": grad_part(bias, *sum_to(go, bias)), names[0]: grad_part(a, gi),
                names[1]: grad_part(b, go_)}


@register
class Baddbmm(Addmm):
    r"""$\beta\,X + A B$ batched (attention with a bias or mask): MACs $B M K P$, one add per output."""

    name = "baddbmm"
    torch_name = "torch.baddbmm"
    summary = "X + A @ B batched (1 add per output)"
    default_inputs = ((N, M, P), (N, M, K), (N, K, P))
    factor_rank = 3
