"""Reading a recorded op's arguments, for the op handlers and shape rules of ``tracing/ops``: the catalog layer by
name, an argument by position or keyword, aten's ``dim`` and per-axis conventions, a backward kernel's output mask,
the shapes of the gradients it returns."""
from __future__ import annotations

from ..layers.base import Layer
from ..registry import get_layer_class
from .handlers import call, handler_for
from .record import OpEvent, TensorRef


def layer_for_op(ev: OpEvent, sym: list, concrete: list) -> tuple[Layer, tuple] | None:
    """``(layer, symbolic input shapes)`` of one recorded op (its handler's answer), or None when not known."""
    h = handler_for(ev.op)
    if h is None:
        return None
    return call(h, ev, lambda x: sym[x.index] if isinstance(x, TensorRef) else (), concrete, sym)


def catalog_layer(name: str, **kwargs) -> Layer:
    """The catalog layer ``name`` with concrete arguments (an op's are numbers: ``symbolic=False``)."""
    return get_layer_class(name)(symbolic=False, **kwargs)


def arg(ev: OpEvent, i: int, name: str, default=None):
    """Argument ``i`` of the op, else its keyword ``name``, else ``default``."""
    return ev.args[i] if len(ev.args) > i else ev.kwargs.get(name, default)


def all_dims(dim, rank: int) -> tuple:
    """An aten ``dim`` argument (None, [] or omitted: every dim) as a tuple."""
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        return tuple(range(rank))
    return tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)


def per_axis(v, dims: int) -> tuple:
    """A per-axis argument (an int, one value for every axis, or one per axis); () for None or []."""
    v = [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(v * dims if len(v) == 1 else v)


def axis_list(v, dims: int) -> list:
    """A per-axis argument that is given (an int or one per axis) as a list of ``dims`` values."""
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * dims if len(v) == 1 else v


def op_table(**groups: tuple) -> dict:
    """{layer: (op, ...)} -> {op: layer}."""
    return {op: layer for layer, ops in groups.items() for op in ops}


def tensor_args(ev: OpEvent) -> list[TensorRef]:
    """The op's tensor arguments, those inside a list (``cat``) included, in order."""
    out = []
    for a in ev.args:
        if isinstance(a, TensorRef):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, TensorRef))
    return out


def output_mask(ev: OpEvent, i: int, n: int) -> list[bool]:
    """Which of a backward kernel's ``n`` gradients it computes (its ``output_mask``, argument ``i``)."""
    m = ev.args[i] if len(ev.args) > i else ev.kwargs.get("output_mask", [True] * n)
    return [bool(v) for v in m]


def grads_like(shapes, *which) -> list:
    """A backward kernel's output shapes: each the shape of the tensor it is the gradient of (a ``TensorRef``), a
    literal shape (a tuple), or None (not computed)."""
    out = []
    for w in which:
        if isinstance(w, TensorRef):
            out.append(shapes(w))
        elif isinstance(w, tuple):
            out.append(w)
        else:
            out.append(None)
    return out
