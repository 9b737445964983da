"""Matrix products and lookups: mm, bmm, addmm, baddbmm (their gradients are products too), the embedding lookup and
its backward."""
from __future__ import annotations

import sympy

from ...layers.gradients import EmbeddingBackward
from ..handlers import handles, shapes
from ..op_args import catalog_layer


@handles("aten.mm", "aten.bmm")
def _matmul(ev, S, concrete, sym):
    return catalog_layer("matmul" if ev.op == "aten.mm" else "bmm"), (S(ev.args[0]), S(ev.args[1]))


@handles("aten.addmm", "aten.baddbmm")
def _addmm(ev, S, concrete, sym):
    return catalog_layer(ev.op.split(".")[1]), (S(ev.args[0]), S(ev.args[1]), S(ev.args[2]))


@handles("aten.embedding")  # also reached by nn.Embedding subclasses with their own forward (Gemma, OPT)
def _embedding(ev, S, concrete, sym):
    weight, indices = ev.args[:2]
    v, e = concrete[weight.index]
    return catalog_layer("embedding", num_embeddings=v, embedding_dim=e), (S(indices),)


@handles("aten.embedding_dense_backward", output="inputs")
def _embedding_backward(ev, S, concrete, sym):
    go, ids, num_weights, padding_idx, scale = (*ev.args[:5], *([None] * (5 - len(ev.args))))
    if (padding_idx is not None and padding_idx >= 0) or scale:
        # the rows added are those of tokens other than padding_idx (scaled by their count with scale_grad_by_freq):
        # a count of token values, not of shapes; reported as uncovered
        return None
    return EmbeddingBackward(num_weights=int(num_weights)), (sym[go.index], sym[ids.index])


@shapes("aten.embedding_dense_backward")
def _embedding_shapes(ev, p, concrete, sym):
    return [(sympy.Integer(int(ev.args[2])), p.s(ev.args[0])[-1])]
