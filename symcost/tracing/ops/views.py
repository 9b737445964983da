"""Views and new tensors: regrouped dims, permutations, transposes, selections, windows (``Tensor.unfold``), ``arange``
-- shape rules only; they cost nothing (``handlers.ZERO_COST_OPS``)."""
from __future__ import annotations

from math import prod

import sympy

from ...cost import as_expr
from ..handlers import shapes
from ..propagate import pointwise, size_from


@shapes("aten.unfold")
def _unfold_view(ev, p, concrete, sym):
    """``Tensor.unfold(dim, size, step)``: a view of the windows along dim, the window appended as a new dim."""
    xs = list(p.s(ev.args[0]))
    d, size, step = ev.args[1] % len(xs), ev.args[2], ev.args[3]
    xs[d] = sympy.floor((xs[d] - size) / as_expr(step)) + 1
    return [(*xs, sympy.Integer(size))]


@shapes("aten.arange")
def _arange(ev, p, concrete, sym):
    """``torch.arange(n)`` with n computed from the input (position ids, a grid of patches): n explained as a size."""
    n = ev.outputs[0]
    size = size_from(p, (), (p.a.shapes[n][0], p.b.shapes[n][0]), (n, 0)) if len(p.a.shapes[n]) == 1 else None
    return [(size,)] if size is not None else None


@shapes("aten.permute")
def _permute(ev, p, concrete, sym):
    xs = p.s(ev.args[0])
    return [tuple(xs[d % len(xs)] for d in ev.args[1])]


@shapes("aten.transpose", "aten.transpose_")
def _transpose(ev, p, concrete, sym):
    xs = list(p.s(ev.args[0]))
    i, j = ev.args[1] % len(xs), ev.args[2] % len(xs)
    xs[i], xs[j] = xs[j], xs[i]
    return [tuple(xs)]


@shapes("aten.t")
def _t(ev, p, concrete, sym):
    return [tuple(reversed(p.s(ev.args[0])))]


@shapes("aten.select")
def _select(ev, p, concrete, sym):
    xs = p.s(ev.args[0])
    d = ev.args[1] % len(xs)
    return [xs[:d] + xs[d + 1:]]


@shapes("aten.view", "aten._unsafe_view", "aten.reshape", "aten.unsqueeze", "aten.squeeze", "aten.flatten",
        "aten.unflatten", "aten.expand", "aten.alias", "aten.clone", "aten.contiguous", "aten.as_strided_",
        "aten.detach", "aten.lift_fresh")
def _regroup(ev, p, concrete, sym):
    """Views: split the dims into groups of equal size products (in both recordings) and map each group."""
    src = ev.args[0]
    xs, xa, xb = p.s(src), p.concrete(src), p.b.shapes[src.index]
    n = ev.outputs[0]
    ya, yb = p.a.shapes[n], p.b.shapes[n]
    if prod(xa) != prod(ya) or prod(xb) != prod(yb):
        return pointwise(p, ev)  # expand: broadcasting
    ins = [(s, a, b) for s, a, b in zip(xs, xa, xb) if (a, b) != (1, 1)]
    outs = [i for i, (a, b) in enumerate(zip(ya, yb)) if (a, b) != (1, 1)]
    result: list = [sympy.Integer(1) if (a, b) == (1, 1) else None for a, b in zip(ya, yb)]
    i = j = 0
    while i < len(ins) and j < len(outs):
        gi, gj = [ins[i]], [outs[j]]
        i, j = i + 1, j + 1
        pa_in, pb_in = gi[0][1], gi[0][2]
        pa_out, pb_out = ya[gj[0]], yb[gj[0]]
        while (pa_in, pb_in) != (pa_out, pb_out):
            if pa_in < pa_out or (pa_in == pa_out and pb_in < pb_out):
                if i >= len(ins):
                    return None
                gi.append(ins[i])
                pa_in, pb_in, i = pa_in * ins[i][1], pb_in * ins[i][2], i + 1
            else:
                if j >= len(outs):
                    return None
                gj.append(outs[j])
                pa_out, pb_out, j = pa_out * ya[outs[j]], pb_out * yb[outs[j]], j + 1
        total = sympy.Mul(*[g[0] for g in gi])
        if len(gj) == 1:  # one output dim: the product, even where it happens to agree at both trace sizes
            result[gj[0]] = total
            continue
        varying = [k for k in gj if ya[k] != yb[k]]
        for k in gj:
            if ya[k] == yb[k]:
                result[k] = sympy.Integer(ya[k])
        if len(varying) == 1:
            const = prod(ya[k] for k in gj if k not in varying)
            result[varying[0]] = total / const
        elif varying:
            return None
    return [tuple(result)] if all(r is not None for r in result) else None
