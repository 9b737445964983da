"""Reductions: sum, mean, amax, norms, variance, arg-max, top-k (the output shape is the layer's)."""
from __future__ import annotations

from ..handlers import handles
from ..op_args import all_dims, arg, catalog_layer
from ..record import TensorRef


_REDUCTIONS = {"aten.mean": "mean", "aten.sum": "sum", "aten.amax": "amax", "aten.linalg_vector_norm": "vector_norm"}


@handles(*_REDUCTIONS)
def _reduction(ev, S, concrete, sym):
    x, args = ev.args[0], ev.args
    if ev.op == "aten.linalg_vector_norm":
        dims, keep = (args[2] if len(args) > 2 else None), (args[3] if len(args) > 3 else False)
    else:
        dims, keep = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else False)
    dims = tuple(range(len(concrete[x.index]))) if not dims else tuple(dims) if isinstance(dims, (list, tuple)) \
        else (dims,)
    return catalog_layer(_REDUCTIONS[ev.op], dim=dims, keepdim=bool(keep)), (S(x),)


@handles("aten.var", "aten.std", "aten.var_mean", "aten.std_mean", "aten.amin")
def _statistics(ev, S, concrete, sym):
    x = ev.args[0]
    dims = all_dims(arg(ev, 1, "dim"), len(concrete[x.index]))
    keep = bool(arg(ev, 2 if ev.op == "aten.amin" else 3, "keepdim", False))
    if ev.op == "aten.amin":
        return catalog_layer("amin", dim=dims, keepdim=keep), (S(x),)
    name = "std" if "std" in ev.op else "var"
    return catalog_layer(name, dim=dims, keepdim=keep, with_mean=ev.op.endswith("_mean")), (S(x),)


@handles("aten.argmax", "aten.argmin", "aten.max", "aten.min")
def _argmax(ev, S, concrete, sym):
    x = ev.args[0]
    rank = len(concrete[x.index])
    dim = arg(ev, 1, "dim")
    if isinstance(dim, TensorRef):  # torch.max(a, b): elementwise
        return catalog_layer("minimum"), (S(x), S(dim))
    keep = bool(arg(ev, 2, "keepdim", False))
    if ev.op in ("aten.max", "aten.min") and dim is None:  # the max of everything: a reduction, no index
        return catalog_layer("amin", dim=all_dims(None, rank), keepdim=False), (S(x),)
    return catalog_layer("argmax", dim=dim, keepdim=keep, with_values=ev.op in ("aten.max", "aten.min")), (S(x),)


@handles("aten.topk")
def _topk(ev, S, concrete, sym):
    return catalog_layer("topk", k=int(ev.args[1]), dim=int(arg(ev, 2, "dim", -1))), (S(ev.args[0]),)
