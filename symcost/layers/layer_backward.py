r"""A catalog layer's own gradients: ``layer_backward(layer, *input_shapes)`` -> ``{part: Cost}`` (what
``Layer.backward()`` answers), and the building blocks the gradient rules share.

Each layer's rule is its class's ``_backward`` (in its family module, beside its forward formula): a method, or one
of the rules built here (``activation_backward``, ``binary_backward``, ``unary_backward``, ``no_gradient`` …).

Each part is the gradient of one input or parameter, named as torch names them (``grad_input``, ``grad_other``,
``grad_weight``, ``grad_bias`` …), and costs the aten kernels torch's autograd runs for it -- the same kernels, with
the same costs, as the whole-model trace (``symcost.tracing.ops``) records: the fused backward kernels of
``symcost.layers.gradients`` and, for gradients autograd writes as ordinary tensor code (``grad * cos(x)``), the
catalog's own costs of those ops.  A gradient broadcasting reduced (an input smaller than the output) includes the
sum autograd does.  A fused kernel (convolution, norms, PReLU) computes several parts in one pass; each part here
is that kernel computing only it, so the parts' reads can add up to more than one run of the kernel reads.
Intermediate gradients two parts share (the attention scores' gradient) are a part of their own.

A layer without a gradient (integer or boolean outputs) or whose gradient work depends on tensor values refuses
with ``LayerError`` and the reason.  No torch import.
"""
from __future__ import annotations

from dataclasses import replace

import sympy

from ..cost import Cost
from ..errors import LayerError
from ..registry import get_layer_class, register_backward
from . import gradients as g


def fused(layer) -> bool:
    """Whether the layer's parts come from one fused kernel (their reads overlap, some work is shared)."""
    return layer.family in ("conv", "norm") or layer.name == "prelu"


def op_cost(name: str, *shapes, **kwargs) -> Cost:
    """The catalog's cost of one op (``mul``, ``sum`` …) on ``shapes``: what the trace charges for that aten op."""
    return get_layer_class(name)(symbolic=False, **kwargs).cost(*shapes)


def grad_part(out_shape, *costs: Cost) -> Cost:
    """One gradient: the kernels that compute it (none: autograd passes the gradient on, at no cost)."""
    total = sum(costs, Cost())
    return replace(total, output_shape=tuple(out_shape))


def sum_to(go, shape) -> list[Cost]:
    """The reduction autograd applies to a gradient of a broadcast input (``at::sum_to``): sum over the leading
    dims and the dims where the input has size 1, keepdim; none when the shapes agree."""
    lead = len(go) - len(shape)
    dims = [*range(lead), *[i for i in range(lead, len(go)) if shape[i - lead] == 1 and go[i] != 1]]
    return [op_cost("sum", go, dim=tuple(dims), keepdim=True)] if dims else []


def no_gradient(why: str):
    def rule(layer, *shapes):
        raise LayerError(f"{layer.name}: no backward: {why}")
    return rule


def not_derived(why: str):
    def rule(layer, *shapes):
        raise LayerError(f"{layer.name}: no layer-level backward formula yet: {why}")
    return rule


def number_arg(layer, arg: str):
    v = getattr(layer, arg)
    if isinstance(v, sympy.Basic) and v.free_symbols:
        raise LayerError(f"{layer.name}: the backward formula needs {arg} as a number, got the symbol {v}")
    return v


# ---- elementwise activations: one fused kernel, or autograd's tensor code ----------------------------------------

def activation_backward(kernel: str):
    def rule(layer, x):
        return {"grad_input": grad_part(x, g.ElementwiseBackward(activation=kernel).cost(x))}
    return rule


def unary_backward(*ops):
    """Autograd's formula as a list of (catalog op, which operands: "x" the input, "g" the gradient, "" a scalar)."""
    def rule(layer, x):
        shapes = {"x": x, "g": x, "": ()}
        return {"grad_input": grad_part(x, *[op_cost(op, *[shapes[a] for a in args]) for op, args in ops])}
    return rule


def free_gradient(layer, x):      # a view or the identity: autograd passes the gradient on
    return {"grad_input": grad_part(x)}


# ---- binary and ternary tensor ops: each input's gradient, reduced to its shape ------------------------------------

def binary_backward(op: str):
    """The gradients of binary ``op`` (``_BINARY``: per input, the catalog ops on output shape go, input shapes a, b),
    each reduced to its input's shape."""
    def rule(layer, a, b=None):
        grads = _BINARY[op]
        b = a if b is None else b
        go = layer.cost(a, b).output_shape
        out = {}
        for name, shape, ops in zip(("grad_input", "grad_other"), (a, b), grads(layer, go, a, b)):
            out[name] = grad_part(shape, *ops, *sum_to(go, shape))
        return out
    return rule


def _add_grads(layer, go, a, b):
    alpha = getattr(layer, "alpha", 1)
    return [], ([op_cost("mul", go, ())] if alpha != 1 else [])


_BINARY = {
    "add": _add_grads,
    "sub": lambda layer, go, a, b: ([], [op_cost("neg", go)]),
    "mul": lambda layer, go, a, b: ([op_cost("mul", go, b)], [op_cost("mul", go, a)]),
    # grad / b; -grad * ((a / b) / b)
    "div": lambda layer, go, a, b: ([op_cost("div", go, b)], [op_cost("div", a, b), op_cost("div", go, b),
                                                              op_cost("neg", go), op_cost("mul", go, go)]),
    # where(a == b, grad / 2, grad).masked_fill_(a > b, 0), and with a < b for the other
    "minimum": lambda layer, go, a, b: ([op_cost("compare", a, b), op_cost("div", go, ()), op_cost("compare", go, go),
                                         op_cost("compare", a, b), op_cost("compare", go, go)],) * 2,
}


# ---- matrix products -------------------------------------------------------------------------------------------

def mm_grads(kernel: str, a, b):
    """grad_a = g b^T, grad_b = a^T g, each one product of the forward's size."""
    go = (*a[:-1], b[-1])
    return op_cost(kernel, go, (b[-1], b[-2]) if kernel == "matmul" else (*b[:-2], b[-1], b[-2])),\
        op_cost(kernel, (*a[:-2], a[-1], a[-2]), go)


# ---- attention -------------------------------------------------------------------------------------------------


# ---- reductions ------------------------------------------------------------------------------------------------


# ---- pooling, resizing, patches ----------------------------------------------------------------------------------


def patches_backward(other: str):
    """unfold's gradient is a fold (col2im) of the gradient, fold's an unfold (im2col)."""
    def rule(layer, x):
        go = layer.cost(x).output_shape
        kw = {a: getattr(layer, a) for a in ("kernel_size", "dilation", "padding", "stride")}
        if other == "fold":
            kw["output_size"] = tuple(x[-2:])
        return {"grad_input": grad_part(x, op_cost(other, go, **kw))}
    return rule


# ---- normalization, embedding ----------------------------------------------------------------------------------


@register_backward
def layer_backward(layer, *shapes) -> dict[str, Cost]:
    """``layer``'s gradients on inputs of ``shapes`` (default: its symbolic inputs), one ``Cost`` per part, each
    with the layer's family and name (so every convention counts it).  ``LayerError`` when there is none."""
    shapes = shapes or layer.default_input_shapes()
    shapes = tuple(tuple(sympy.Integer(d) if isinstance(d, int) else d for d in s) for s in shapes)
    layer.cost(*shapes)   # the forward's own checks first
    cls = type(layer)
    # the class's own gradients; a class of the user's inherits none (its forward may differ from its base's)
    rule = getattr(cls, "_backward", None) if cls.__module__.startswith("symcost.") else vars(cls).get("_backward")
    if rule is None:
        raise LayerError(f"{layer.name}: no layer-level backward formula yet"
                         + ("" if cls.__module__.startswith("symcost.") else " (define _backward on its class)"))
    parts = rule(layer, *shapes)
    return {name: replace(c, family=layer.family, layer=layer.name) for name, c in parts.items()}
