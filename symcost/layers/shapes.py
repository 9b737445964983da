"""Output-size rules shared by the layer formulas (and by model tracing).

Each is the formula PyTorch documents, floors and ceils included, valid for
numbers and symbols alike.
"""
from __future__ import annotations

import sympy

from ..cost import as_expr
from .base import definitely


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    r"""$\left\lfloor \frac{I + 2p - d(k-1) - 1}{s} \right\rfloor + 1$"""
    return sympy.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / as_expr(stride)) + 1


def conv_transpose_output_size(size, kernel, stride=1, padding=0, dilation=1, output_padding=0):
    r"""$(I-1)s - 2p + d(k-1) + p_{out} + 1$"""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def pool_output_size(size, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    r"""Like a convolution; with ``ceil_mode`` the last window must start inside the input or left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return sympy.floor(span / as_expr(stride)) + 1
    out = sympy.ceiling(span / as_expr(stride)) + 1
    # ceil(X/s)*s <= X + s - 1, so the last window can start in the right padding only if s >= d(k-1) + 2 - p
    margin = as_expr(stride - dilation * (kernel - 1) - 2 + padding)
    if margin.is_negative:
        return out
    # torch drops a last window that would start in the right padding
    drop = sympy.Ge((out - 1) * stride, size + padding)
    if drop is sympy.true:
        return out - 1
    if drop is sympy.false:
        return out
    return sympy.Piecewise((out - 1, drop), (out, True))


def adaptive_window_total(size, out):
    r"""Sum of the adaptive pooling window lengths along one axis:
    $\sum_{i=0}^{O-1} \left(\lceil (i+1) I / O \rceil - \lfloor i I / O \rfloor\right)$; equals I when O divides I."""
    out = int(out)
    return sympy.Add(*[sympy.ceiling(sympy.Rational(i + 1, out) * size) - sympy.floor(sympy.Rational(i, out) * size)
                       for i in range(out)])


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
