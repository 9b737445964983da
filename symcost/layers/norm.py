r"""Normalisation: batchnorm1d/2d/3d (eval, train, folded), layernorm, groupnorm.

Statistics over a group of $m$ elements (training BN, LayerNorm, GroupNorm):
mean $= (m-1)$ additions and 1 division; variance $= m$ subtractions, $m$ squares,
$(m-1)$ additions and 1 division; $\alpha = \gamma / \sqrt{\sigma^2+\epsilon}$ (or
$1/\sqrt{\cdot}$) is 1 addition, 1 square root and 1 division per statistic group.
The running-statistics update in training (O(C)) is not counted.
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..errors import LayerError
from ..registry import register
from ..symbols import SPATIAL, N, size
from . import gradients as g
from .base import Arg, Layer, definitely, is_number


def statistics_ops(groups, m) -> dict:
    """Mean and variance over ``groups`` groups of ``m`` elements, and 1/sqrt(var + eps)."""
    return {
        "add": groups * ((m - 1) + m + (m - 1) + 1),
        "mul": groups * m,
        "div": groups * 3,
        "fn": groups,
    }


def merge(*dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _flags(**parts):
    return {"grad_input": False, "grad_weight": False, "grad_bias": False, **parts}


class _BatchNormBase(Layer):
    r"""BatchNorm.  eval: $y = \alpha x + (\beta - \alpha\mu)$ with both per-channel constants
    precomputed (seed 000, NCNN): 1 multiplication and 1 addition per element.
    train: batch statistics per channel over $m = N \cdot \prod(\text{spatial})$ elements, then
    $(x-\mu)\alpha$ [$+\beta$]: 2 multiplications per element (square and scale), as seed 004 counts.
    folded: merged into the preceding conv/linear, zero cost (that layer gains a bias if it had none).
    With ``track_running_stats=False`` torch uses batch statistics in eval mode too, and so does the count."""

    family = "norm"
    args = (
        Arg("num_features", "size", symbol=size("C"), help="channels C"),
        Arg("mode", "choice", "eval", choices=("eval", "train", "folded"), help="eval, train or folded"),
        Arg("affine", "flag", True),
        Arg("track_running_stats", "flag", True),
        Arg("eps", "float", 1e-5),
        Arg("momentum", "float", 0.1),
    )

    def default_input_shapes(self):
        return ((N, self.num_features, *SPATIAL[self.dims]),)

    def _cost(self, shape) -> Cost:
        ranks = self.ranks
        if len(shape) not in ranks:
            self.fail(f"expected an input of rank {' or '.join(map(str, ranks))}, "
                      f"got rank {len(shape)}: {tuple(shape)}")
        c = self.num_features
        if definitely(sympy.Ne(shape[1], c)):
            self.fail(f"input has {shape[1]} channels but num_features={c}")
        n = numel(shape)
        if self.mode == "folded":
            return Cost(output_shape=shape)
        tracked = self.track_running_stats
        batch_statistics = self.mode == "train" or (is_number(tracked) and not tracked)
        if batch_statistics and definitely(sympy.Eq(n / c, 1)):
            self.fail(f"input {tuple(shape)} has one value per channel: torch needs more than one to compute batch "
                      "statistics (mode=train, or track_running_stats=false)")
        params = 2 * c * self.affine
        buffers = 2 * c * self.track_running_stats
        # without running statistics torch normalises with batch statistics even in eval mode
        if self.mode == "eval" and self.track_running_stats != 0:
            ops = {"mul": n, "add": n}
        else:
            ops = merge(statistics_ops(c, n / c), {"mul": n, "add": n * self.affine})
        return Cost(output_shape=shape, params=params, buffers=buffers, ops=ops,
                    reads=n + params + buffers, writes=n)

    def _backward(self, x):
        if self.mode == "folded":
            raise LayerError(f"{self.name}: no backward in mode folded (the norm is folded into the convolution before "
                             "it; train or eval)")
        train, affine = self.mode == "train", self.affine
        go = x

        def part(**flags):
            return g.BatchNormBackward(train=train, weight=g.flag(affine), **_flags(**flags)).cost(go, x)
        out = {"grad_input": part(grad_input=True)}
        if affine != 0:
            out.update(grad_weight=part(grad_weight=g.flag(affine)), grad_bias=part(grad_bias=g.flag(affine)))
        return out


@register
class BatchNorm1d(_BatchNormBase):
    name = "batchnorm1d"
    torch_name = "torch.nn.BatchNorm1d"
    summary = "batch normalisation on rank-2/3 inputs (mode eval, train or folded)"
    ranks = (2, 3)
    dims = 1


@register
class BatchNorm2d(_BatchNormBase):
    name = "batchnorm2d"
    torch_name = "torch.nn.BatchNorm2d"
    summary = "batch normalisation on rank-4 inputs (mode eval, train or folded)"
    ranks = (4,)
    dims = 2


@register
class BatchNorm3d(_BatchNormBase):
    name = "batchnorm3d"
    torch_name = "torch.nn.BatchNorm3d"
    summary = "batch normalisation on rank-5 inputs (mode eval, train or folded)"
    ranks = (5,)
    dims = 3


@register
class LayerNorm(Layer):
    r"""Statistics over the last $D = \prod(\text{normalized\_shape})$ elements of each row, then
    $(x-\mu)\cdot r$ and, with elementwise affine, $\cdot\gamma + \beta$ per element."""

    name = "layernorm"
    family = "norm"
    torch_name = "torch.nn.LayerNorm"
    summary = "layer normalisation over the trailing normalized_shape"
    args = (
        Arg("normalized_shape", "shape", symbol=(size("D_n"),), help="trailing dims normalised, e.g. 768"),
        Arg("elementwise_affine", "flag", True),
        Arg("bias", "flag", True),
        Arg("eps", "float", 1e-5),
    )

    def default_input_shapes(self):
        return ((N, size("L"), *self.normalized_shape),)

    def _cost(self, shape) -> Cost:
        k = len(self.normalized_shape)
        if len(shape) < k or any(definitely(sympy.Ne(a, e)) for a, e in zip(shape[-k:], self.normalized_shape)):
            self.fail(f"input {tuple(shape)} does not end in normalized_shape {tuple(self.normalized_shape)}")
        d = numel(self.normalized_shape)
        n = numel(shape)
        affine = self.elementwise_affine
        params = d * affine + d * affine * self.bias
        ops = merge(statistics_ops(n / d, d), {"mul": n + n * affine, "add": n * affine * self.bias})
        return Cost(output_shape=shape, params=params, ops=ops, reads=n + params, writes=n)

    def _backward(self, x):
        dims, affine = len(self.normalized_shape), self.elementwise_affine

        def part(**flags):
            return g.LayerNormBackward(normalized_dims=dims, weight=g.flag(affine), **_flags(**flags)).cost(x, x)
        out = {"grad_input": part(grad_input=True)}
        if affine != 0:
            out["grad_weight"] = part(grad_weight=g.flag(affine))
            if self.bias != 0:
                out["grad_bias"] = part(grad_bias=g.flag(self.bias))
        return out


@register
class GroupNorm(Layer):
    r"""Statistics per (sample, group) over $m = \frac{C}{G}\prod(\text{spatial})$ elements, then
    $(x-\mu)\cdot r$ and, with affine, $\cdot\gamma_c + \beta_c$ per element."""

    name = "groupnorm"
    family = "norm"
    torch_name = "torch.nn.GroupNorm"
    summary = "group normalisation (num_groups, num_channels)"
    args = (
        Arg("num_groups", "size", symbol=size("G"), help="groups G"),
        Arg("num_channels", "size", symbol=size("C"), help="channels C"),
        Arg("affine", "flag", True),
        Arg("eps", "float", 1e-5),
    )

    def check_args(self) -> None:
        c, gr = self.num_channels, self.num_groups
        if not (c.free_symbols or gr.free_symbols) and c % gr:
            self.fail(f"num_channels={c} is not divisible by num_groups={gr}")

    def default_input_shapes(self):
        return ((N, self.num_channels, *SPATIAL[2]),)

    def _cost(self, shape) -> Cost:
        if len(shape) < 2 or definitely(sympy.Ne(shape[1], self.num_channels)):
            self.fail(f"expected (N, {self.num_channels}, ...), got {tuple(shape)}")
        n = numel(shape)
        if definitely(sympy.Eq(n / self.num_groups, 1)):  # torch checks its statistics as batch norm's
            self.fail(f"input {tuple(shape)} has one value per group of {self.num_groups}: torch needs more than one")
        groups = shape[0] * self.num_groups
        params = 2 * self.num_channels * self.affine
        ops = merge(statistics_ops(groups, n / groups), {"mul": n + n * self.affine, "add": n * self.affine})
        return Cost(output_shape=shape, params=params, ops=ops, reads=n + params, writes=n)

    def _backward(self, x):
        affine = self.affine

        def part(**flags):
            return g.GroupNormBackward(groups=self.num_groups, weight=g.flag(affine), **_flags(**flags)).cost(x, x)
        out = {"grad_input": part(grad_input=True)}
        if affine != 0:
            out.update(grad_weight=part(grad_weight=g.flag(affine)), grad_bias=part(grad_bias=g.flag(affine)))
        return out
