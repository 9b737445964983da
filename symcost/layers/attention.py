r"""Attention: scaled_dot_product_attention and multihead_attention.

The attention core on $B$ independent (batch x head) slices, query length $L$,
key/value length $S$, query/key width $E$, value width $E_v$, is counted as
$\operatorname{softmax}(Q K^T \cdot \text{scale}) V$:

* scores $Q K^T$: $B L S$ dot products of length $E$ ($B L S E$ MACs);
* scale: 1 mul per score ($B L S$), whatever ``scale`` is;
* softmax over each of the $B L$ rows of $S$: $S-1$ cmp, $2S-1$ add, $S$ fn, $S$ div
  (as ``softmax``);
* $A V$: $B L E_v$ dot products of length $S$ ($B L S E_v$ MACs).

Scaling every score is the textbook definition; torch's kernels scale $Q$ (or
$Q$ and $K$ by the square root) instead, which is fewer multiplications when
$E < S$.  Only MACs count under the 'torch' convention, so this does not
affect the comparison with FlopCounterMode.
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..errors import LayerError
from ..registry import register
from ..symbols import E, L, N, S, b, h, size
from . import gradients as g
from .activation import softmax_row_ops
from .base import Arg, Layer, definitely, is_number
from .layer_backward import grad_part, op_cost, sum_to
from .linear import broadcast_shapes

E_v = size("E_v")


def attention_core_ops(slices, q_len, kv_len, qk_width, v_width) -> dict:
    """MACs, dots, scale and softmax of softmax(Q K^T * scale) V on ``slices`` independent slices."""
    scores = slices * q_len * kv_len
    rows = slices * q_len
    soft = {k: rows * v for k, v in softmax_row_ops(kv_len).items()}
    return {
        "mac": scores * qk_width + scores * v_width,
        "dot": scores + rows * v_width,
        "mul": scores,
        **soft,
    }


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


@register
class ScaledDotProductAttention(Layer):
    r"""``F.scaled_dot_product_attention(q, k, v)`` on $q\ (\ast, L, E)$, $k\ (\ast, S, E)$, $v\ (\ast, S, E_v)$
    (batch dims $\ast$ broadcast): the attention core of the module docstring with $B = \prod(\ast)$.

    Inputs: three shapes q, k, v; two shapes q and k = v; one shape: q, k and v all of that shape
    (three tensors, each read once).

    ``is_causal``: counted as torch's math path computes it, the full $L \times S$ score matrix, then the
    $-\infty$ mask added (1 add per score), then a softmax over full rows.  A kernel that skips the masked
    half does about half the score and $AV$ work; that saving is not modelled.

    FlopCounterMode: it counts SDPA only through registered kernels: the math path (bmm) and the CUDA
    flash / efficient / cuDNN kernels, all as $2 B L S (E + E_v)$ (causal or not).  On CPU, when the flash
    kernel ``_scaled_dot_product_flash_attention_for_cpu`` is chosen (e.g. $E = E_v$), it counts 0; pick
    the math backend (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``) to compare."""

    name = "scaled_dot_product_attention"
    family = "attention"
    torch_name = "torch.nn.functional.scaled_dot_product_attention"
    summary = "softmax(q k^T * scale) v on (*, L, E), (*, S, E), (*, S, Ev) inputs (is_causal adds a mask)"
    args = (
        Arg("is_causal", "flag", False, help="causal mask (counted as one add per score)"),
        Arg("scale", "float", None, help="score scale (default 1/sqrt(E); cost unchanged)"),
    )
    default_inputs = ((N, h, L, E), (N, h, S, E), (N, h, S, E_v))

    def _cost(self, *shapes) -> Cost:
        if len(shapes) == 1:
            shapes = shapes * 3
        elif len(shapes) == 2:
            shapes = (shapes[0], shapes[1], shapes[1])
        elif len(shapes) != 3:
            self.fail(f"takes q, k, v (or q and k = v, or one shape for all), got {len(shapes)} inputs")
        q, k, v = shapes
        if min(len(q), len(k), len(v)) < 2:
            self.fail(f"q, k and v need rank >= 2, got {tuple(q)}, {tuple(k)}, {tuple(v)}")
        if definitely(sympy.Ne(q[-1], k[-1])):
            self.fail(f"q and k widths differ: {tuple(q)} vs {tuple(k)}")
        if definitely(sympy.Ne(k[-2], v[-2])):
            self.fail(f"k and v lengths differ: {tuple(k)} vs {tuple(v)}")
        try:
            batch = broadcast_shapes(broadcast_shapes(q[:-2], k[:-2], self.name), v[:-2], self.name)
        except ValueError as e:
            self.fail(str(e).split(": ", 1)[1])
        q_len, width = q[-2:]
        kv_len, v_width = v[-2:]
        slices = numel(batch)
        ops = attention_core_ops(slices, q_len, kv_len, width, v_width)
        ops = _merge(ops, {"add": self.is_causal * slices * q_len * kv_len})
        out = (*batch, q_len, v_width)
        return Cost(output_shape=out, ops=ops, reads=numel(q) + numel(k) + numel(v), writes=numel(out))

    def _backward(self, q, k, v=None):
        r"""The math kernel: $S = (q s^{1/2})(k^T s^{1/2})$, $P = \mathrm{softmax}(S)$, $O = P v$ with the batch dims
        folded into one.  grad value $P^T dO$; grad scores $dO\,v^T$ and the softmax backward (shared by query and key);
        grad query $dS\,k'$ then times $s^{1/2}$; grad key $q'^T dS$ then times $s^{1/2}$."""
        v = k if v is None else v   # two inputs: value a tensor of the key's shape (as `symcost check` runs it)
        batch = numel(q[:-2])
        L, E, S, Ev = q[-2], q[-1], k[-2], v[-1]
        scores = (batch, L, S)
        return {"grad_query": grad_part(q, op_cost("bmm", scores, (batch, S, E)), op_cost("mul", q, ())),
                "grad_key": grad_part(k, op_cost("bmm", (batch, E, L), scores), op_cost("mul", (batch, E, S), ())),
                "grad_value": grad_part(v, op_cost("bmm", (batch, S, L), (batch, L, Ev))),
                "grad_scores": grad_part(scores, op_cost("bmm", (batch, L, Ev), (batch, Ev, S)),
                                         g.SoftmaxBackward(dim=-1).cost(scores, scores))}


@register
class MultiheadAttention(Layer):
    r"""``torch.nn.MultiheadAttention``: projections, $h$ heads of the attention core, output projection.

    With query $(L, N, E)$ (``batch_first``: $(N, L, E)$; unbatched $(L, E)$), key $(S, N, k_{dim})$, value
    $(S, N, v_{dim})$, head width $E/h$, and $S' = S + $ add_bias_kv $+$ add_zero_attn keys:

    * projections: $N L E \cdot E$ (q) $+ N S E\, k_{dim}$ (k) $+ N S E\, v_{dim}$ (v) MACs, one dot per
      projected element, a bias add each with ``bias``;
    * the attention core (module docstring) on $N h$ slices of width $E/h$: $2 N L S' E$ MACs;
    * output projection: $N L E \cdot E$ MACs, $N L E$ dots, bias adds with ``bias``;
    * ``need_weights`` (default True, a forward argument): torch averages the attention weights over the
      heads, $(h-1)$ adds and 1 div per weight element ($N L S'$).  Appending bias_k/bias_v and the zero
      row is a copy, not counted.

    Params equal torch's numel: $E(E + k_{dim} + v_{dim}) + E^2 + 4 E b + 2 E\,$add_bias_kv.
    Inputs: one shape means self-attention (query = key = value, one tensor read once); three shapes are
    query, key, value (two: query and key = value).

    FlopCounterMode counts the projections (mm / addmm) and the score and $AV$ products (bmm) only in the
    slow path, which ``symcost.empirical.measure`` takes because grad is enabled (and with need_weights=False
    only when SDPA runs its math backend, see ``scaled_dot_product_attention``).  Under ``torch.no_grad()``
    in eval mode torch takes the fused fast path (``_native_multi_head_attention``), for which
    FlopCounterMode has no formula: it reports 0."""

    name = "multihead_attention"
    family = "attention"
    torch_name = "torch.nn.MultiheadAttention"
    summary = "multi-head attention (in/out projections, h heads); need_weights averages weights over heads"
    args = (
        Arg("embed_dim", "size", symbol=E, help="model width E"),
        Arg("num_heads", "size", symbol=h, help="heads h (must divide E)"),
        Arg("dropout", "float", 0.0, help="attention dropout (eval: no cost)"),
        Arg("bias", "flag", True, b),
        Arg("add_bias_kv", "flag", False),
        Arg("add_zero_attn", "flag", False),
        Arg("kdim", "size", None, help="key width (default embed_dim)"),
        Arg("vdim", "size", None, help="value width (default embed_dim)"),
        Arg("batch_first", "flag", False),
        Arg("need_weights", "flag", True, help="forward argument: also return head-averaged weights"),
    )

    def check_args(self) -> None:
        e, heads = self.embed_dim, self.num_heads
        if is_number(e) and is_number(heads) and e % heads:
            self.fail(f"embed_dim={e} is not divisible by num_heads={heads}")
        if not is_number(self.batch_first):
            self.fail("batch_first must be true or false")

    @property
    def _kdim(self):
        return self.kdim if self.kdim is not None else self.embed_dim

    @property
    def _vdim(self):
        return self.vdim if self.vdim is not None else self.embed_dim

    def default_input_shapes(self):
        e = self.embed_dim
        return ((N, L, e),) if self.batch_first else ((L, N, e),)

    def _layout(self, shape, what: str, width):
        """(batch dims, sequence length) of one input, checking its rank and width."""
        if len(shape) not in (2, 3):
            self.fail(f"{what} must have rank 3 (batched) or 2 (unbatched), got {tuple(shape)}")
        if definitely(sympy.Ne(shape[-1], width)):
            self.fail(f"{what}'s last dim must be {width}, got {tuple(shape)}")
        if len(shape) == 2:
            return (), shape[0]
        return ((shape[0],), shape[1]) if self.batch_first else ((shape[1],), shape[0])

    def _cost(self, *shapes) -> Cost:
        e, heads, bias = self.embed_dim, self.num_heads, self.bias
        kd, vd = self._kdim, self._vdim
        if len(shapes) == 1:
            query = key = value = shapes[0]
        elif len(shapes) == 2:
            query, key, value = shapes[0], shapes[1], shapes[1]
        elif len(shapes) == 3:
            query, key, value = shapes
        else:
            self.fail(f"takes query, key, value (or one shape for self-attention), got {len(shapes)} inputs")
        if len({len(query), len(key), len(value)}) != 1:
            self.fail(f"query, key and value must have the same rank, got {tuple(query)}, {tuple(key)}, {tuple(value)}")
        qb, q_len = self._layout(query, "query", e)
        kb, kv_len = self._layout(key, "key", kd)
        vb, v_len = self._layout(value, "value", vd)
        if definitely(sympy.Ne(kv_len, v_len)):
            self.fail(f"key and value lengths differ: {tuple(key)} vs {tuple(value)}")
        if any(definitely(sympy.Ne(x, y)) for x, y in zip(qb, kb)) or any(
                definitely(sympy.Ne(x, y)) for x, y in zip(qb, vb)):
            self.fail(f"query, key and value batch sizes differ: {tuple(query)}, {tuple(key)}, {tuple(value)}")
        nb = numel(qb)
        keys = kv_len + self.add_bias_kv + self.add_zero_attn
        params = e * (e + kd + vd) + 3 * e * bias + e * e + e * bias + 2 * e * self.add_bias_kv
        q_out, kv_out = nb * q_len * e, nb * kv_len * e
        projections = {
            "mac": q_out * e + kv_out * kd + kv_out * vd + q_out * e,
            "dot": q_out + 2 * kv_out + q_out,
            "bias": bias * (q_out + 2 * kv_out + q_out),
        }
        core = attention_core_ops(nb * heads, q_len, keys, e / heads, e / heads)
        weights = nb * q_len * keys
        averaging = {"add": self.need_weights * weights * (heads - 1), "div": self.need_weights * weights}
        ops = _merge(_merge(projections, core), averaging)
        inputs = numel(query) if len(shapes) == 1 else numel(query) + numel(key) + (
            0 if len(shapes) == 2 else numel(value))
        return Cost(output_shape=tuple(query), params=params, ops=ops, reads=inputs + params,
                    writes=q_out + self.need_weights * weights)

    def _backward(self, q, k=None, v=None):
        r"""``nn.MultiheadAttention`` (the projections as ``linear``, then ``bmm``/``softmax``/``bmm``, with the math
        kernel of ``scaled_dot_product_attention`` when ``need_weights`` is false; ``batch_first`` or not, the same
        kernels), the gradient flowing from its first output.
        Besides the inputs' and parameters' gradients, the intermediate ones several parts need are parts of their own:
        ``grad_attn_output`` (the out-projection's input), ``grad_scores`` (the softmax's input) and ``grad_q_proj``,
        ``grad_k_proj``, ``grad_v_proj`` (each projection's output, made contiguous again: one copy each).  With
        trainable projections: frozen ones change torch's forward (``matmul`` keeps the batch instead of folding it
        into rows), which costs the same MACs and reads the weight once per batch row."""
        for arg, ok in (("need_weights", is_number(self.need_weights)), ("add_bias_kv", self.add_bias_kv == 0),
                        ("add_zero_attn", self.add_zero_attn == 0),
                        ("kdim", self.kdim in (None, self.embed_dim)), ("vdim", self.vdim in (None, self.embed_dim))):
            if not ok:
                raise LayerError(f"{self.name}: backward formula without added or separate key/value projections "
                                 f"only, need_weights true or false ({arg} differs)")
        if len(q) != 3:
            raise LayerError(f"{self.name}: backward formula for batched inputs (N, L, E) only")
        k = q if k is None else k   # key and value: tensors of their own (of the query's shape when not given)
        v = k if v is None else v
        (n, L, E), S = (q, k[1]) if self.batch_first else ((q[1], q[0], q[2]), k[0])
        heads = self.num_heads
        hd, B = E / heads, n * heads
        bias = g.flag(self.bias)

        def projection(length):
            """Its grad input, grad weight (a third of in_proj_weight's) and grad bias from the output's gradient."""
            rows = length * n
            return (op_cost("matmul", (rows, E), (E, E)), op_cost("matmul", (E, rows), (rows, E)),
                    [op_cost("sum", (length, n, E), dim=(0, 1), keepdim=True)] if bias else [])

        out_rows = L * n
        parts = {"grad_out_proj_weight": grad_part((E, E), op_cost("matmul", (E, out_rows), (out_rows, E))),
                 "grad_attn_output": grad_part((out_rows, E), op_cost("matmul", (out_rows, E), (E, E)))}
        if bias:
            parts["grad_out_proj_bias"] = grad_part((E,), *sum_to((out_rows, E), (E,)))
        parts["grad_scores"] = grad_part((B, L, S), op_cost("bmm", (B, L, hd), (B, hd, S)),
                                         g.SoftmaxBackward(dim=-1).cost((B, L, S), (B, L, S)))
        parts["grad_q_proj"] = grad_part((L, n, E), op_cost("bmm", (B, L, S), (B, S, hd)),
                                         op_cost("mul", (B, L, hd), ()), op_cost("copy", (L, B, hd), (L, B, hd)))
        # need_weights=false runs scaled_dot_product_attention's math kernel, which scales the keys too
        k_scale = [] if self.need_weights else [op_cost("mul", (B, hd, S), ())]
        parts["grad_k_proj"] = grad_part((S, n, E), op_cost("bmm", (B, hd, L), (B, L, S)), *k_scale,
                                         op_cost("copy", (S, n, E), (S, n, E)))
        parts["grad_v_proj"] = grad_part((S, n, E), op_cost("bmm", (B, S, L), (B, L, hd)),
                                         op_cost("copy", (S, B, hd), (S, B, hd)))
        weights, biases = [], []
        for name, x, length in (("grad_query", q, L), ("grad_key", k, S), ("grad_value", v, S)):
            gi, gw, gb = projection(length)
            parts[name] = grad_part(x, gi)
            weights.append(gw)
            biases += gb
        parts["grad_in_proj_weight"] = grad_part((3 * E, E), *weights,
                                                 op_cost("copy", (E, E), (E, E), (E, E), (3 * E, E)))
        if bias:
            parts["grad_in_proj_bias"] = grad_part((3 * E,), *biases, op_cost("copy", (E,), (E,), (E,), (3 * E,)))
        return parts
