r"""A catalog layer's own gradients: ``layer_backward(layer, *input_shapes)`` -> ``{part: Cost}``.

Each part is the gradient of one input or parameter, named as torch names them (``grad_input``, ``grad_other``,
``grad_weight``, ``grad_bias`` …), and costs the aten kernels torch's autograd runs for it -- the same kernels, with
the same costs, as the whole-model trace (``symcost.tracing.backward``) records: the fused backward kernels of
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

from ..cost import Cost, numel
from ..errors import LayerError
from ..registry import get_layer_class, register_backward
from . import gradients as g
from .base import is_number


def fused(layer) -> bool:
    """Whether the layer's parts come from one fused kernel (their reads overlap, some work is shared)."""
    return layer.family in ("conv", "norm") or layer.name == "prelu"


def _k(name: str, *shapes, **kwargs) -> Cost:
    """The catalog's cost of one op (``mul``, ``sum`` …) on ``shapes``: what the trace charges for that aten op."""
    return get_layer_class(name)(symbolic=False, **kwargs).cost(*shapes)


def _part(out_shape, *costs: Cost) -> Cost:
    """One gradient: the kernels that compute it (none: autograd passes the gradient on, at no cost)."""
    total = sum(costs, Cost())
    return replace(total, output_shape=tuple(out_shape))


def _sum_to(go, shape) -> list[Cost]:
    """The reduction autograd applies to a gradient of a broadcast input (``at::sum_to``): sum over the leading
    dims and the dims where the input has size 1, keepdim; none when the shapes agree."""
    lead = len(go) - len(shape)
    dims = [*range(lead), *[i for i in range(lead, len(go)) if shape[i - lead] == 1 and go[i] != 1]]
    return [_k("sum", go, dim=tuple(dims), keepdim=True)] if dims else []


def _no_gradient(why: str):
    def rule(layer, *shapes):
        raise LayerError(f"{layer.name}: no backward: {why}")
    return rule


def _not_derived(why: str):
    def rule(layer, *shapes):
        raise LayerError(f"{layer.name}: no layer-level backward formula yet: {why}")
    return rule


def _number(layer, arg: str):
    v = getattr(layer, arg)
    if isinstance(v, sympy.Basic) and v.free_symbols:
        raise LayerError(f"{layer.name}: the backward formula needs {arg} as a number, got the symbol {v}")
    return v


# ---- elementwise activations: one fused kernel, or autograd's tensor code ----------------------------------------

def _activation(kernel: str):
    def rule(layer, x):
        return {"grad_input": _part(x, g.ElementwiseBackward(activation=kernel).cost(x))}
    return rule


def _gelu(layer, x):
    kernel = "gelu_tanh_backward" if layer.approximate == "tanh" else "gelu_backward"
    return _activation(kernel)(layer, x)


def _unary(*ops):
    """Autograd's formula as a list of (catalog op, which operands: "x" the input, "g" the gradient, "" a scalar)."""
    def rule(layer, x):
        shapes = {"x": x, "g": x, "": ()}
        return {"grad_input": _part(x, *[_k(op, *[shapes[a] for a in args]) for op, args in ops])}
    return rule


def _abs(layer, x):       # grad * sgn(x)
    return {"grad_input": _part(x, g.Sign().cost(x), _k("mul", x, x))}


def _pow(layer, x):       # grad * (k * x^(k-1)); k = 0: zeros
    k = float(_number(layer, "exponent"))
    if k == 0:
        return {"grad_input": _part(x)}
    return {"grad_input": _part(x, _k("pow", x, exponent=k - 1), _k("mul", x, ()), _k("mul", x, x))}


def _mish(layer, x):      # torch's decomposition: t = tanh(softplus(x)); g (t + x sigmoid(x) (1 - t t)), as the
    # meta kernel the trace records runs it (1 - t t a subtraction of two tensors)
    return {"grad_input": _part(x, _k("softplus", x), _k("tanh", x), _k("sigmoid", x), _k("mul", x, x),
                                _k("mul", x, x), _k("sub", x, x), _k("mul", x, x), _k("add", x, x),
                                _k("mul", x, x))}


def _prelu(layer, x):
    w = (layer.num_parameters,) + (1,) * (len(x) - 2) if layer.num_parameters != 1 else (1,)

    def part(**flags):
        return g.PreluBackward(**{"grad_input": False, "grad_weight": False, **flags}).cost(x, x, w)
    return {"grad_input": _part(x, part(grad_input=True)),
            "grad_weight": _part((layer.num_parameters,), part(grad_weight=True), *_sum_to(x, w))}


def _softmax(layer, x):
    return {"grad_input": _part(x, g.SoftmaxBackward(dim=int(layer.dim), log=layer.name == "log_softmax").cost(x, x))}


def _free(layer, x):      # a view or the identity: autograd passes the gradient on
    return {"grad_input": _part(x)}


# ---- binary and ternary tensor ops: each input's gradient, reduced to its shape ------------------------------------

def _binary(grads):
    """``grads``: per input, the catalog ops on (output shape go, input shapes a, b)."""
    def rule(layer, a, b=None):
        b = a if b is None else b
        go = layer.cost(a, b).output_shape
        out = {}
        for name, shape, ops in zip(("grad_input", "grad_other"), (a, b), grads(layer, go, a, b)):
            out[name] = _part(shape, *ops, *_sum_to(go, shape))
        return out
    return rule


def _add_grads(layer, go, a, b):
    alpha = getattr(layer, "alpha", 1)
    return [], ([_k("mul", go, ())] if alpha != 1 else [])


_BINARY = {
    "add": _add_grads,
    "sub": lambda layer, go, a, b: ([], [_k("neg", go)]),
    "mul": lambda layer, go, a, b: ([_k("mul", go, b)], [_k("mul", go, a)]),
    # grad / b; -grad * ((a / b) / b)
    "div": lambda layer, go, a, b: ([_k("div", go, b)], [_k("div", a, b), _k("div", go, b), _k("neg", go),
                                                          _k("mul", go, go)]),
    # where(a == b, grad / 2, grad).masked_fill_(a > b, 0), and with a < b for the other
    "minimum": lambda layer, go, a, b: ([_k("compare", a, b), _k("div", go, ()), _k("compare", go, go),
                                         _k("compare", a, b), _k("compare", go, go)],) * 2,
}


def _addcmul(layer, a, b, c):
    go = layer.cost(a, b, c).output_shape
    if layer.divide:   # grad * (value / c); -grad * (value * b / (c * c)), value / c a tensor of c's shape
        bc = _k("mul", b, c).output_shape
        return {"grad_input": _part(a, *_sum_to(go, a)),
                "grad_tensor1": _part(b, _k("div", c, c), _k("mul", go, c), *_sum_to(go, b)),
                "grad_tensor2": _part(c, _k("mul", c, c), _k("mul", b, ()), _k("div", b, c), _k("neg", go),
                                      _k("mul", go, bc), *_sum_to(go, c))}

    def scaled(other):   # grad * (other * value)
        return [_k("mul", other, ()), _k("mul", go, other)]
    return {"grad_input": _part(a, *_sum_to(go, a)),
            "grad_tensor1": _part(b, *scaled(c), *_sum_to(go, b)),
            "grad_tensor2": _part(c, *scaled(b), *_sum_to(go, c))}


# ---- matrix products -------------------------------------------------------------------------------------------

def _mm_grads(kernel: str, a, b):
    """grad_a = g b^T, grad_b = a^T g, each one product of the forward's size."""
    go = (*a[:-1], b[-1])
    return _k(kernel, go, (b[-1], b[-2]) if kernel == "matmul" else (*b[:-2], b[-1], b[-2])), \
        _k(kernel, (*a[:-2], a[-1], a[-2]), go)


def _matmul(layer, a, b):
    if len(a) >= 2 and len(b) == 2:   # batch dims folded into rows: two mm
        rows = numel(a[:-1])
        gi, go_ = _mm_grads("matmul", (rows, a[-1]), b)
        return {"grad_input": _part(a, gi), "grad_other": _part(b, go_)}
    if len(a) == len(b) == 3 and a[0] == b[0]:
        gi, go_ = _mm_grads("bmm", a, b)
        return {"grad_input": _part(a, gi), "grad_other": _part(b, go_)}
    raise LayerError(f"{layer.name}: backward formula for matmul of a rank-2+ input by a matrix and of equal "
                     f"batches of rank 3 only (got ranks {len(a)} and {len(b)})")


def _bmm(layer, a, b):
    gi, go_ = _mm_grads("bmm", a, b)
    return {"grad_input": _part(a, gi), "grad_mat2": _part(b, go_)}


def _addmm(layer, bias, a, b):
    gi, go_ = _mm_grads("matmul" if len(a) == 2 else "bmm", a, b)
    go = (*a[:-1], b[-1])
    names = ("grad_mat1", "grad_mat2") if len(a) == 2 else ("grad_batch1", "grad_batch2")
    return {"grad_input": _part(bias, *_sum_to(go, bias)), names[0]: _part(a, gi), names[1]: _part(b, go_)}


def _linear(layer, x):
    f_in, f_out = layer.in_features, layer.out_features

    def part(**flags):
        return g.LinearBackward(in_features=f_in, out_features=f_out,
                                **{"bias": False, "grad_input": False, "grad_weight": False, **flags}).cost(x)
    out = {"grad_input": part(grad_input=True), "grad_weight": part(grad_weight=True)}
    if layer.bias != 0:
        out["grad_bias"] = part(bias=g._flag(layer.bias))
    return out


def _conv(layer, x):
    transposed = layer.name.startswith("conv_transpose")
    go = layer.cost(x).output_shape
    per_group = (layer.out_channels if transposed else layer.in_channels) / layer.groups
    w = (layer.in_channels if transposed else layer.out_channels, per_group, *layer.kernel_size)

    def part(**flags):
        return g.ConvolutionBackward(transposed=transposed, groups=layer.groups,
                                     **{"grad_input": False, "grad_weight": False, "grad_bias": False,
                                        **flags}).cost(go, x, w)
    out = {"grad_input": part(grad_input=True), "grad_weight": part(grad_weight=True)}
    if layer.bias != 0:
        out["grad_bias"] = part(grad_bias=g._flag(layer.bias))
    return out


# ---- attention -------------------------------------------------------------------------------------------------

def _sdpa(layer, q, k, v=None):
    r"""The math kernel: $S = (q s^{1/2})(k^T s^{1/2})$, $P = \mathrm{softmax}(S)$, $O = P v$ with the batch dims
    folded into one.  grad value $P^T dO$; grad scores $dO\,v^T$ and the softmax backward (shared by query and key);
    grad query $dS\,k'$ then times $s^{1/2}$; grad key $q'^T dS$ then times $s^{1/2}$."""
    v = k if v is None else v   # two inputs: value a tensor of the key's shape (as `symcost check` runs it)
    batch = numel(q[:-2])
    L, E, S, Ev = q[-2], q[-1], k[-2], v[-1]
    scores = (batch, L, S)
    return {"grad_query": _part(q, _k("bmm", scores, (batch, S, E)), _k("mul", q, ())),
            "grad_key": _part(k, _k("bmm", (batch, E, L), scores), _k("mul", (batch, E, S), ())),
            "grad_value": _part(v, _k("bmm", (batch, S, L), (batch, L, Ev))),
            "grad_scores": _part(scores, _k("bmm", (batch, L, Ev), (batch, Ev, S)),
                                 g.SoftmaxBackward(dim=-1).cost(scores, scores))}


def _mha(layer, q, k=None, v=None):
    r"""``nn.MultiheadAttention`` (the projections as ``linear``, then ``bmm``/``softmax``/``bmm``, with the math
    kernel of ``scaled_dot_product_attention`` when ``need_weights`` is false; ``batch_first`` or not, the same
    kernels), the gradient flowing from its first output.
    Besides the inputs' and parameters' gradients, the intermediate ones several parts need are parts of their own:
    ``grad_attn_output`` (the out-projection's input), ``grad_scores`` (the softmax's input) and ``grad_q_proj``,
    ``grad_k_proj``, ``grad_v_proj`` (each projection's output, made contiguous again: one copy each).  With trainable
    projections: frozen ones change torch's forward (``matmul`` keeps the batch instead of folding it into rows),
    which costs the same MACs and reads the weight once per batch row."""
    for arg, ok in (("need_weights", is_number(layer.need_weights)), ("add_bias_kv", layer.add_bias_kv == 0), ("add_zero_attn", layer.add_zero_attn == 0),
                    ("kdim", layer.kdim in (None, layer.embed_dim)), ("vdim", layer.vdim in (None, layer.embed_dim))):
        if not ok:
            raise LayerError(f"{layer.name}: backward formula without added or separate key/value projections "
                             f"only, need_weights true or false ({arg} differs)")
    if len(q) != 3:
        raise LayerError(f"{layer.name}: backward formula for batched inputs (N, L, E) only")
    k = q if k is None else k   # key and value: tensors of their own (of the query's shape when not given)
    v = k if v is None else v
    (n, L, E), S = (q, k[1]) if layer.batch_first else ((q[1], q[0], q[2]), k[0])
    heads = layer.num_heads
    hd, B = E / heads, n * heads
    bias = g._flag(layer.bias)

    def projection(length):
        """Its grad input, grad weight (a third of in_proj_weight's) and grad bias from the output's gradient."""
        rows = length * n
        return (_k("matmul", (rows, E), (E, E)), _k("matmul", (E, rows), (rows, E)),
                [_k("sum", (length, n, E), dim=(0, 1), keepdim=True)] if bias else [])

    out_rows = L * n
    parts = {"grad_out_proj_weight": _part((E, E), _k("matmul", (E, out_rows), (out_rows, E))),
             "grad_attn_output": _part((out_rows, E), _k("matmul", (out_rows, E), (E, E)))}
    if bias:
        parts["grad_out_proj_bias"] = _part((E,), *_sum_to((out_rows, E), (E,)))
    parts["grad_scores"] = _part((B, L, S), _k("bmm", (B, L, hd), (B, hd, S)),
                                 g.SoftmaxBackward(dim=-1).cost((B, L, S), (B, L, S)))
    parts["grad_q_proj"] = _part((L, n, E), _k("bmm", (B, L, S), (B, S, hd)), _k("mul", (B, L, hd), ()),
                                 _k("copy", (L, B, hd), (L, B, hd)))
    # need_weights=false runs scaled_dot_product_attention's math kernel, which scales the keys too
    k_scale = [] if layer.need_weights else [_k("mul", (B, hd, S), ())]
    parts["grad_k_proj"] = _part((S, n, E), _k("bmm", (B, hd, L), (B, L, S)), *k_scale,
                                 _k("copy", (S, n, E), (S, n, E)))
    parts["grad_v_proj"] = _part((S, n, E), _k("bmm", (B, S, L), (B, L, hd)), _k("copy", (S, B, hd), (S, B, hd)))
    weights, biases = [], []
    for name, x, length in (("grad_query", q, L), ("grad_key", k, S), ("grad_value", v, S)):
        gi, gw, gb = projection(length)
        parts[name] = _part(x, gi)
        weights.append(gw)
        biases += gb
    parts["grad_in_proj_weight"] = _part((3 * E, E), *weights, _k("copy", (E, E), (E, E), (E, E), (3 * E, E)))
    if bias:
        parts["grad_in_proj_bias"] = _part((3 * E,), *biases, _k("copy", (E,), (E,), (E,), (3 * E,)))
    return parts


# ---- reductions ------------------------------------------------------------------------------------------------

def _kept(layer, x):
    """The reduced output's shape with the reduced dims kept (size 1): what autograd restores the gradient to."""
    rank = len(x)
    dims = {int(d) % rank for d in layer.dim}
    return tuple(sympy.Integer(1) if i in dims else s for i, s in enumerate(x))


def _mean(layer, x):      # grad.expand(x) / count
    return {"grad_input": _part(x, _k("div", x, ()))}


def _extremum(layer, x):  # (grad / count) * mask, mask = (result == x), count = mask.sum(dims)
    kept = _kept(layer, x)
    dims = tuple(int(d) for d in layer.dim)
    return {"grad_input": _part(x, _k("compare", kept, x), _k("sum", x, dim=dims, keepdim=True),
                                _k("div", kept, kept), _k("mul", kept, x))}


def _var_ops(layer, x, kept) -> list[Cost]:
    """(2 / (n - correction)) * grad * (x - x.mean(dims, keepdim))."""
    dims = tuple(int(d) for d in layer.dim)
    return [_k("mean", x, dim=dims, keepdim=True), _k("sub", x, kept), _k("mul", kept, ()), _k("mul", kept, x)]


def _var(layer, x):
    # var_mean / std_mean (with_mean): the gradient from the first output, the variance (or std), is var's (or
    # std's); the mean's, when a loss uses it too, adds grad / count expanded and one add per element
    kept = _kept(layer, x)
    ops = _var_ops(layer, x, kept)
    if layer.name == "std":   # grad / (2 std), 0 where std == 0, then var's
        ops += [_k("mul", kept, ()), _k("div", kept, kept), _k("compare", kept, ()), _k("compare", kept, kept)]
    return {"grad_input": _part(x, *ops)}


def _vector_norm(layer, x):   # grad * (x / norm).masked_fill_(norm == 0, 0)
    kept = _kept(layer, x)
    return {"grad_input": _part(x, _k("div", x, kept), _k("compare", kept, ()), _k("compare", x, kept),
                                _k("mul", kept, x))}


def _cumsum(layer, x):    # grad.flip(dim).cumsum(dim).flip(dim)
    if layer.product:
        raise LayerError(f"{layer.name}: no backward formula for cumprod: its gradient takes another path where the "
                         "input has zeros (which depends on the values)")
    return {"grad_input": _part(x, _k("copy", x, x), _k("cumsum", x, dim=int(layer.dim)), _k("copy", x, x))}


def _topk(layer, x):      # zeros of x's shape, the k gradients scattered at their indices
    go = layer.cost(x).output_shape
    return {"grad_input": _part(x, _k("copy", x, go, go, x))}


# ---- pooling, resizing, patches ----------------------------------------------------------------------------------

def _max_pool(layer, x):
    return {"grad_input": _part(x, g.MaxPoolBackward().cost(layer.cost(x).output_shape, x))}


def _avg_pool(layer, x):
    k = sympy.Mul(*layer.kernel_size)
    return {"grad_input": _part(x, g.AvgPoolBackward(window=k).cost(layer.cost(x).output_shape, x))}


def _adaptive_avg_pool(layer, x):
    fwd = layer.cost(x)
    window_sum = fwd.ops.get("add", 0) + numel(fwd.output_shape)   # (window - 1) adds per output, + 1 each
    axes = 3 if layer.name.endswith("3d") else 2                   # 1-D runs the 2-D kernel (g / kh / kw)
    return {"grad_input": _part(x, g.AdaptiveAvgPoolBackward(axes=axes, window_sum=window_sum)
                                .cost(fwd.output_shape, x))}


def _upsample(layer, x):
    go = layer.cost(x).output_shape
    if layer.mode in ("nearest", "nearest-exact"):
        return {"grad_input": _part(x, g.UpsampleNearestBackward().cost(go, x))}
    if layer.mode in ("linear", "bilinear", "trilinear") and not layer.antialias:
        return {"grad_input": _part(x, g.LinearResizeBackward(axes=len(x) - 2).cost(go, x))}
    if layer.mode == "bicubic" and not layer.antialias:
        return {"grad_input": _part(x, g.BicubicResizeBackward().cost(go, x))}
    raise LayerError(f"{layer.name}: no backward formula with antialias yet (its taps have no closed form)")


def _patches(other: str):
    """unfold's gradient is a fold (col2im) of the gradient, fold's an unfold (im2col)."""
    def rule(layer, x):
        go = layer.cost(x).output_shape
        kw = {a: getattr(layer, a) for a in ("kernel_size", "dilation", "padding", "stride")}
        if other == "fold":
            kw["output_size"] = tuple(x[-2:])
        return {"grad_input": _part(x, _k(other, go, **kw))}
    return rule


# ---- normalization, embedding ----------------------------------------------------------------------------------

def _flags(**parts):
    return {"grad_input": False, "grad_weight": False, "grad_bias": False, **parts}


def _batch_norm(layer, x):
    if layer.mode == "folded":
        raise LayerError(f"{layer.name}: no backward in mode folded (the norm is folded into the convolution before "
                         "it; train or eval)")
    train, affine = layer.mode == "train", layer.affine
    go = x

    def part(**flags):
        return g.BatchNormBackward(train=train, weight=g._flag(affine), **_flags(**flags)).cost(go, x)
    out = {"grad_input": part(grad_input=True)}
    if affine != 0:
        out.update(grad_weight=part(grad_weight=g._flag(affine)), grad_bias=part(grad_bias=g._flag(affine)))
    return out


def _layer_norm(layer, x):
    dims, affine = len(layer.normalized_shape), layer.elementwise_affine

    def part(**flags):
        return g.LayerNormBackward(normalized_dims=dims, weight=g._flag(affine), **_flags(**flags)).cost(x, x)
    out = {"grad_input": part(grad_input=True)}
    if affine != 0:
        out["grad_weight"] = part(grad_weight=g._flag(affine))
        if layer.bias != 0:
            out["grad_bias"] = part(grad_bias=g._flag(layer.bias))
    return out


def _group_norm(layer, x):
    affine = layer.affine

    def part(**flags):
        return g.GroupNormBackward(groups=layer.num_groups, weight=g._flag(affine), **_flags(**flags)).cost(x, x)
    out = {"grad_input": part(grad_input=True)}
    if affine != 0:
        out.update(grad_weight=part(grad_weight=g._flag(affine)), grad_bias=part(grad_bias=g._flag(affine)))
    return out


def _embedding(layer, ids):
    if layer.padding_idx is not None:
        raise LayerError(f"{layer.name}: no backward formula with padding_idx: the gradient adds the rows of the "
                         "tokens other than padding_idx, a count of token values, not of shapes")
    go = layer.cost(ids).output_shape
    return {"grad_weight": _part((layer.num_embeddings, layer.embedding_dim),
                                 g.EmbeddingBackward(num_weights=layer.num_embeddings).cost(go, ids))}


_RULES = {
    **{n: _activation(k) for n, k in (("relu", "relu_backward"), ("relu6", "hardtanh_backward"),
                                      ("hardtanh", "hardtanh_backward"), ("sigmoid", "sigmoid_backward"),
                                      ("tanh", "tanh_backward"), ("silu", "silu_backward"),
                                      ("elu", "elu_backward"), ("leaky_relu", "leaky_relu_backward"),
                                      ("hardsigmoid", "hardsigmoid_backward"),
                                      ("hardswish", "hardswish_backward"), ("softplus", "softplus_backward"))},
    "gelu": _gelu, "mish": _mish, "prelu": _prelu, "softmax": _softmax, "log_softmax": _softmax,
    "abs": _abs, "pow": _pow,
    "exp": _unary(("mul", "gx")),               # grad * result
    "sin": _unary(("sin", "x"), ("mul", "gx")),  # grad * cos(x)
    "neg": _unary(("neg", "g")),
    "flatten": _free, "identity": _free, "dropout": _free,
    **{n: _binary(fn) for n, fn in _BINARY.items()},
    "addcmul": _addcmul, "matmul": _matmul, "bmm": _bmm, "addmm": _addmm, "baddbmm": _addmm, "linear": _linear,
    **{f"conv{d}d": _conv for d in (1, 2, 3)}, **{f"conv_transpose{d}d": _conv for d in (1, 2, 3)},
    "scaled_dot_product_attention": _sdpa, "multihead_attention": _mha,
    "mean": _mean, "sum": _free, "amax": _extremum, "amin": _extremum, "var": _var, "std": _var,
    "vector_norm": _vector_norm, "cumsum": _cumsum, "topk": _topk,
    **{f"maxpool{d}d": _max_pool for d in (1, 2, 3)}, **{f"adaptive_maxpool{d}d": _max_pool for d in (1, 2, 3)},
    **{f"avgpool{d}d": _avg_pool for d in (1, 2, 3)}, **{f"adaptive_avgpool{d}d": _adaptive_avg_pool for d in (1, 2, 3)},
    "upsample": _upsample, "unfold": _patches("fold"), "fold": _patches("unfold"),
    **{f"batchnorm{d}d": _batch_norm for d in (1, 2, 3)}, "layernorm": _layer_norm, "groupnorm": _group_norm,
    "embedding": _embedding,
    "argmax": _no_gradient("its output is indices (integers), which have no gradient"),
    "compare": _no_gradient("its output is boolean, which has no gradient"),
    "logical": _no_gradient("its output is boolean or integer, which has no gradient"),
    "logical_not": _no_gradient("its output is boolean or integer, which has no gradient"),
    "clamp_tensor": _not_derived("torch's clamp backward with tensor bounds is a chain "
                                 "of comparisons per bound; `symcost model --backward` costs each op"),
    "copy": _no_gradient("it stands for several data-movement ops (cat, pad, index …) whose gradients differ; "
                         "`symcost model --backward` costs each one"),
}


@register_backward
def layer_backward(layer, *shapes) -> dict[str, Cost]:
    """``layer``'s gradients on inputs of ``shapes`` (default: its symbolic inputs), one ``Cost`` per part, each
    with the layer's family and name (so every convention counts it).  ``LayerError`` when there is none."""
    shapes = shapes or layer.default_input_shapes()
    shapes = tuple(tuple(sympy.Integer(d) if isinstance(d, int) else d for d in s) for s in shapes)
    layer.cost(*shapes)   # the forward's own checks first
    own = getattr(type(layer), "_backward", None)   # a class's own gradients (a layer a user adds)
    rule = own or _RULES.get(layer.name)
    if rule is None:
        raise LayerError(f"{layer.name}: no layer-level backward formula yet")
    parts = rule(layer, *shapes)
    return {name: replace(c, family=layer.family, layer=layer.name) for name, c in parts.items()}
