"""Embedding lookup: a table of V rows of E values, indexed by integer inputs."""
from __future__ import annotations

from ..cost import Cost, numel
from ..errors import LayerError
from ..registry import register
from ..symbols import E, L, N, V
from . import gradients as g
from .base import Arg, Layer, is_number
from .layer_backward import grad_part


@register
class Embedding(Layer):
    r"""A lookup, no arithmetic: 0 operations of every kind.  Params $= V E$ (num_embeddings x embedding_dim).
    Reads: the $n$ indices and the $n$ looked-up rows ($n E$ values); writes: the $n E$ outputs.
    The input is integer indices of any shape; the output is that shape with $E$ appended.
    ``padding_idx`` only affects training (that row's gradient is zero): no cost effect."""

    name = "embedding"
    family = "embedding"
    torch_name = "torch.nn.Embedding"
    summary = "table lookup of integer indices (no arithmetic; params num_embeddings*embedding_dim)"
    args = (
        Arg("num_embeddings", "size", symbol=V, help="rows V (vocabulary size)"),
        Arg("embedding_dim", "size", symbol=E, help="values per row E"),
        Arg("padding_idx", "int", None, help="row whose gradient is zero (no cost effect)"),
    )
    default_inputs = ((N, L),)

    def check_args(self) -> None:
        p, v = self.padding_idx, self.num_embeddings
        if p is not None and is_number(p) and is_number(v) and not -v <= p < v:
            self.fail(f"padding_idx={p} must be within num_embeddings ({v}), as torch requires")

    def _cost(self, shape) -> Cost:
        n = numel(shape)
        d = self.embedding_dim
        return Cost(output_shape=(*shape, d), params=self.num_embeddings * d, ops={},
                    reads=n + n * d, writes=n * d)

    def _backward(self, ids):
        if self.padding_idx is not None:
            raise LayerError(f"{self.name}: no backward formula with padding_idx: the gradient adds the rows of the "
                             "tokens other than padding_idx, a count of token values, not of shapes")
        go = self.cost(ids).output_shape
        return {"grad_weight": grad_part((self.num_embeddings, self.embedding_dim),
                                         g.EmbeddingBackward(num_weights=self.num_embeddings).cost(go, ids))}

