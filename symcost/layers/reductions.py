"""Reductions and selections that models call functionally: mean, sum, amax, vector norms, variance and standard
deviation, amin, arg-max/min and top-k.  Each reduces the dims given (``keepdim`` keeps them as size 1); counted per
element reduced, as the formula beside each class says."""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..registry import register
from ..symbols import N, SPATIAL, size
from .base import Arg, Layer, definitely, is_number
from .layer_backward import free_gradient, grad_part, no_gradient, op_cost

C = size("C")
_X = (N, C, *SPATIAL[2])


def _kept(layer, x):
    """The reduced output's shape with the reduced dims kept (size 1): what autograd restores the gradient to."""
    rank = len(x)
    dims = {int(d) % rank for d in layer.dim}
    return tuple(sympy.Integer(1) if i in dims else s for i, s in enumerate(x))


def _var_ops(layer, x, kept) -> list[Cost]:
    """(2 / (n - correction)) * grad * (x - x.mean(dims, keepdim))."""
    dims = tuple(int(d) for d in layer.dim)
    return [op_cost("mean", x, dim=dims, keepdim=True), op_cost("sub", x, kept), op_cost("mul", kept, ()),
            op_cost("mul", kept, x)]


class Reduce(Layer):
    r"""Reduction over ``dim``: a reduction of m values is m-1 operations per output (plus a finish)."""

    family = "reduction"
    default_inputs = (_X,)
    args = (Arg("dim", "dims", (-1, -2), help="dims reduced, e.g. 2,3 or -1"),
            Arg("keepdim", "flag", False))
    step: dict = {}      # per reduction step (m-1 per output)
    finish: dict = {}    # per output
    per_element: dict = {}

    def _cost(self, x) -> Cost:
        rank = max(len(x), 1)  # torch reduces a scalar along dim 0 (or -1), as a tensor of one element
        for d in self.dim:  # as torch refuses it; d % rank would wrap it onto another dimension
            if not -rank <= int(d) < rank:
                self.fail(f"dim {d} is out of range for an input of rank {len(x)} (dims {-rank} to {rank - 1})")
        dims = {int(d) % rank for d in self.dim}
        if len(dims) < len(self.dim):
            self.fail(f"dim {','.join(map(str, self.dim))} names one dimension twice (torch refuses it)")
        out = tuple(sympy.Integer(1) if i in dims else s for i, s in enumerate(x) if self.keepdim or i not in dims)
        n, outputs = numel(x), numel(out)
        ops = {}
        for k, v in self.step.items():
            ops[k] = ops.get(k, 0) + v * (n - outputs)
        for k, v in self.finish.items():
            ops[k] = ops.get(k, 0) + v * outputs
        for k, v in self.per_element.items():
            ops[k] = ops.get(k, 0) + v * n
        return Cost(output_shape=out, ops=ops, reads=n, writes=outputs)


@register
class Mean(Reduce):
    name = "mean"
    torch_name = "torch.mean"
    summary = "mean over dims (m-1 adds + 1 div per output)"
    step, finish = {"add": 1}, {"div": 1}

    def _backward(self, x):      # grad.expand(x) / count
        return {"grad_input": grad_part(x, op_cost("div", x, ()))}


@register
class Sum(Reduce):
    name = "sum"
    torch_name = "torch.sum"
    summary = "sum over dims (m-1 adds per output)"
    step = {"add": 1}

    _backward = free_gradient


@register
class Amax(Reduce):
    name = "amax"
    torch_name = "torch.amax"
    summary = "max over dims (m-1 cmp per output)"
    step = {"cmp": 1}

    def _backward(self, x):  # (grad / count) * mask, mask = (result == x), count = mask.sum(dims)
        kept = _kept(self, x)
        dims = tuple(int(d) for d in self.dim)
        return {"grad_input": grad_part(x, op_cost("compare", kept, x), op_cost("sum", x, dim=dims, keepdim=True),
                                        op_cost("div", kept, kept), op_cost("mul", kept, x))}


@register
class VectorNorm(Reduce):
    r"""2-norm over dims: $m$ squares, $m-1$ adds and 1 sqrt per output."""

    name = "vector_norm"
    torch_name = "torch.linalg.vector_norm"
    summary = "2-norm over dims (1 mul per element, m-1 adds + 1 sqrt per output)"
    step, finish, per_element = {"add": 1}, {"fn": 1}, {"mul": 1}

    def _backward(self, x):   # grad * (x / norm).masked_fill_(norm == 0, 0)
        kept = _kept(self, x)
        return {"grad_input": grad_part(x, op_cost("div", x, kept), op_cost("compare", kept, ()),
                                        op_cost("compare", x, kept), op_cost("mul", kept, x))}


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

    def _backward(self, x):
        # var_mean / std_mean (with_mean): the gradient from the first output, the variance (or std), is var's (or
        # std's); the mean's, when a loss uses it too, adds grad / count expanded and one add per element
        kept = _kept(self, x)
        ops = _var_ops(self, x, kept)
        if self.name == "std":   # grad / (2 std), 0 where std == 0, then var's
            ops += [op_cost("mul", kept, ()), op_cost("div", kept, kept), op_cost("compare", kept, ()),
                    op_cost("compare", kept, kept)]
        return {"grad_input": grad_part(x, *ops)}


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

    _backward = Amax._backward


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

    _backward = no_gradient("its output is indices (integers), which have no gradient")


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

    def _backward(self, x):      # zeros of x's shape, the k gradients scattered at their indices
        go = self.cost(x).output_shape
        return {"grad_input": grad_part(x, op_cost("copy", x, go, go, x))}
