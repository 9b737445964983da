"""Linear (any leading dims), matmul and bmm."""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import F_in, F_out, K, M, N, P, b
from .base import Arg, Layer, definitely


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


def broadcast_shapes(a, b, who: str):
    """numpy/torch broadcasting of two shapes; sizes must match or be 1."""
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + tuple(a)), reversed((1,) * (len(a) - len(b)) + tuple(b))):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif definitely(sympy.Ne(x, y)):
            raise ValueError(f"{who}: shapes {tuple(a)} and {tuple(b)} do not broadcast ({x} vs {y})")
        else:
            out.append(x)
    return tuple(reversed(out))


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
