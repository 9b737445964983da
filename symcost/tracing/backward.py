r"""The backward pass of one training step: costs and shape rules of the aten backward ops.

``trace(..., backward=True)`` records the forward pass and then ``out.backward(ones_like(out))`` (the gradient of the
model's first output, as any loss would seed it; the loss itself is not costed) under the same recorder.  The
gradients of matmuls are ``mm``/``bmm`` and elementwise gradients are ``mul``/``add``/``sum``: the forward catalog
costs those.  The fused backward kernels are costed here, from shapes only, each counting the algorithm written in
its docstring; their output shapes are those of the tensors they are gradients of.

MACs are the multiply-accumulates done.  FlopCounterMode (the ``torch`` convention) counts 2 per MAC of
``convolution_backward`` and of the gradient matmuls, and nothing else -- except that it counts a *grouped*
convolution's weight gradient with all ``C_in`` input channels instead of ``C_in/g`` (``conv_backward_flop``), ``g``
times the work done; symcost counts the work and ``grouped_grad_weight_overcount`` states the difference.

Handlers register into the forward tables (``costing.OP_HANDLERS``, ``propagate.RULES``) by op name.
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from ..layers.base import Arg, Layer
from ..registry import get_layer_class
from .costing import OP_HANDLERS
from .propagate import rule
from .record import TensorRef

_FLAG = dict(kind="flag", default=True)


def _prod(xs) -> sympy.Expr:
    return sympy.Mul(*[sympy.sympify(x) for x in xs]) if xs else sympy.Integer(1)


class _Grad(Layer):
    """A backward aten op: inputs are symbolic shapes, the counts are those of the algorithm in the docstring."""

    torch_name = ""


class ConvolutionBackward(_Grad):
    r"""``aten.convolution_backward(grad_out, x, w, …, output_mask)``: the gradients of a (transposed) convolution.

    With $M$ the forward MACs ($\text{numel}(\text{grad\_out}) \cdot C_{in}/g \cdot \prod K$, or
    $\text{numel}(x) \cdot C_{out}/g \cdot \prod K$ when transposed):
    grad input (a transposed convolution of grad_out with $w$) $M$ MACs, one dot product per input element;
    grad weight (a convolution of $x$ with grad_out) $M$ MACs, one dot product per weight element;
    grad bias $\text{numel}(\text{grad\_out}) - C_{out}$ additions (a sum over $N \cdot H_{out} \cdots$ per channel).
    """

    name = "convolution_backward"
    family = "conv"
    summary = "gradients of a convolution: grad input and grad weight M MACs each, grad bias a sum per channel"
    args = (Arg("transposed", "flag", False), Arg("groups", "size", 1), Arg("grad_input", **_FLAG),
            Arg("grad_weight", **_FLAG), Arg("grad_bias", **_FLAG))

    def _cost(self, go, x, w) -> Cost:
        macs = (numel(x) if self.transposed else numel(go)) * _prod(w[1:])
        gi, gw, gb = self.grad_input, self.grad_weight, self.grad_bias
        c_out = go[1]
        return Cost(output_shape=x if gi else w,
                    ops={"mac": (gi + gw) * macs, "dot": gi * numel(x) + gw * numel(w),
                         "add": gb * (numel(go) - c_out)},
                    reads=numel(go) + gi * numel(w) + gw * numel(x),
                    writes=gi * numel(x) + gw * numel(w) + gb * c_out)

    def torch_overcount(self, go, x, w) -> sympy.Expr:
        """FlopCounterMode's grad-weight count minus the MACs done, in MACs: (g - 1) times the grad-weight MACs."""
        macs = (numel(x) if self.transposed else numel(go)) * _prod(w[1:])
        return self.grad_weight * (self.groups - 1) * macs


class LayerNormBackward(_Grad):
    r"""``aten.native_layer_norm_backward``, as PyTorch's CPU kernel computes it, per row of $D$ normalized elements
    ($n$ elements, $R = n/D$ rows): $\hat g = \gamma \cdot dy$ ($n$ mul with a weight);
    $d_s = \sum \hat g x$, $d_b = \sum \hat g$ ($n$ mul, $2(D-1)$ add per row);
    $b = (d_b \mu - d_s)\sigma^{-3}/D$, $c = -b\mu - d_b\sigma^{-1}/D$ (6 mul, 2 add, 2 div per row);
    $dx = \sigma^{-1}\hat g + b x + c$ (2 mul, 2 add per element).
    grad weight $\sum_{rows} dy (x - \mu)\sigma^{-1}$: $n$ add, $2n$ mul, $(R-1)D$ add; grad bias
    $\sum_{rows} dy$: $(R-1)D$ add.
    """

    name = "layer_norm_backward"
    family = "norm"
    summary = "gradients of layer norm (input, weight, bias)"
    args = (Arg("normalized_dims", "size", 1), Arg("weight", "flag", True), Arg("grad_input", **_FLAG),
            Arg("grad_weight", **_FLAG), Arg("grad_bias", **_FLAG))

    def _cost(self, go, x) -> Cost:
        n = numel(x)
        d = _prod(x[len(x) - int(self.normalized_dims):])
        rows = n / d
        gi, gw, gb = self.grad_input, self.grad_weight, self.grad_bias
        ops = {"mul": gi * (self.weight * n + n + 6 * rows + 2 * n) + gw * 2 * n,
               "add": gi * (2 * rows * (d - 1) + 2 * rows + 2 * n) + gw * (n + (rows - 1) * d) + gb * (rows - 1) * d,
               "div": gi * 2 * rows}
        return Cost(output_shape=x if gi else (d,), ops=ops,
                    reads=numel(go) + n + 2 * rows + self.weight * d,
                    writes=gi * n + (gw + gb) * d)


class SoftmaxBackward(_Grad):
    r"""``aten._softmax_backward_data(g, y, dim)``: $y \odot (g - \sum_{dim} g \odot y)$: $2n$ mul, $2n - R$ add
    ($R = n/D$ rows of $D$).  ``log_softmax``: $g - e^{y} \sum_{dim} g$: $n$ fn, $n$ mul, $2n - R$ add."""

    name = "softmax_backward"
    family = "activation"
    summary = "gradient of softmax or log_softmax along one dim"
    args = (Arg("dim", "int", -1), Arg("log", "flag", False))

    def _cost(self, go, y) -> Cost:
        n = numel(y)
        rows = n / y[int(self.dim) % len(y)]
        ops = {"mul": (2 - self.log) * n, "add": 2 * n - rows, "fn": self.log * n}
        return Cost(output_shape=y, ops=ops, reads=2 * n, writes=n)


#: activation gradients, per element: aten op -> (name, ops, algorithm counted)
_ACTIVATIONS = {
    "aten.threshold_backward": ("relu_backward", {"cmp": 1}, "g if x > threshold else 0: 1 cmp"),
    "aten.hardtanh_backward": ("hardtanh_backward", {"cmp": 2}, "g if a < x < b else 0: 2 cmp"),
    "aten.tanh_backward": ("tanh_backward", {"mul": 2, "add": 1}, "g (1 - y^2): 2 mul, 1 add"),
    "aten.sigmoid_backward": ("sigmoid_backward", {"mul": 2, "add": 1}, "g y (1 - y): 2 mul, 1 add"),
    "aten.native_dropout_backward": ("dropout_backward", {"mul": 2}, "g * mask * scale: 2 mul"),
    "aten.silu_backward": ("silu_backward", {"fn": 1, "add": 3, "div": 1, "mul": 3},
                           "s = 1/(1 + e^-x) (1 fn, 1 add, 1 div), g s (1 + x (1 - s)) (3 mul, 2 add)"),
}

_GELU = ("gelu_backward", {"fn": 2, "add": 2, "mul": 7},
         "g (Phi(x) + x phi(x)): Phi = (1 + erf(x/sqrt 2))/2 (1 fn, 1 add, 2 mul), phi = exp(-x^2/2)/sqrt(2 pi) "
         "(1 fn, 3 mul), x phi, the sum, times g (2 mul, 1 add)")


class ElementwiseBackward(_Grad):
    """An activation's gradient: a fixed number of operations per element (``counted``)."""

    name = "activation_backward"
    family = "activation"
    summary = "gradient of an elementwise activation"
    args = (Arg("activation", "choice", "relu_backward",
                choices=tuple(v[0] for v in _ACTIVATIONS.values()) + (_GELU[0],)),)

    def _cost(self, go) -> Cost:
        table = {v[0]: v[1] for v in (*_ACTIVATIONS.values(), _GELU)}
        n = numel(go)
        return Cost(output_shape=go, ops={k: v * n for k, v in table[self.activation].items()},
                    reads=2 * n, writes=n)


class EmbeddingBackward(_Grad):
    r"""``aten.embedding_dense_backward`` without ``padding_idx``: each gradient row is added into its token's row of
    a zero-initialized $V \times D$ gradient: $\text{numel}(\text{grad\_out})$ add."""

    name = "embedding_backward"
    family = "embedding"
    summary = "gradient of an embedding table (a scatter-add of the gradient rows)"
    args = (Arg("num_weights", "size"),)

    def _cost(self, go, ids) -> Cost:
        return Cost(output_shape=(self.num_weights, go[-1]), ops={"add": numel(go)},
                    reads=numel(go) + numel(ids), writes=self.num_weights * go[-1])


class MaxPoolBackward(_Grad):
    r"""``aten.max_pool*_with_indices_backward``: each output gradient is added at its argmax in a zeroed
    gradient of the input's shape: $\text{numel}(\text{grad\_out})$ add."""

    name = "maxpool_backward"
    family = "pool"
    summary = "gradient of max pooling (a scatter-add through the saved indices)"

    def _cost(self, go, x) -> Cost:
        return Cost(output_shape=x, ops={"add": numel(go)}, reads=2 * numel(go), writes=numel(x))


class BatchNormBackward(_Grad):
    r"""``aten.native_batch_norm_backward`` as PyTorch's CPU kernel computes it; $n$ elements, $C$ channels of
    $m = n/C$.  Eval (running statistics): $\sigma^{-1} = (v + \epsilon)^{-1/2}$ (C add, C fn), $dx = g \cdot
    (\gamma\sigma^{-1})$ (C + n mul).  Train: $dx = (g - \bar g - (x - \mu) k)\gamma\sigma^{-1}$, $k = \sum (x-\mu) g
    \cdot \sigma^{-2} / m$: per channel 3 mul, 2 div, per element 2 mul, 3 add (the two sums shared with the
    parameter gradients).  Sums $\sum (x - \mu) g$ (n add, n mul, n - C add) and $\sum g$ (n - C add); grad
    weight $\sigma^{-1}\sum(x-\mu)g$ (C mul), grad bias $\sum g$."""

    name = "batch_norm_backward"
    family = "norm"
    summary = "gradients of batch norm (input, weight, bias), eval or train statistics"
    args = (Arg("train", "flag", False), Arg("weight", "flag", True), Arg("grad_input", **_FLAG),
            Arg("grad_weight", **_FLAG), Arg("grad_bias", **_FLAG))

    def _cost(self, go, x) -> Cost:
        n, c = numel(x), x[1]
        gi, gw, gb, tr = self.grad_input, self.grad_weight, self.grad_bias, self.train
        dot = sympy.Max(gw, tr * gi)       # sum (x - mu) g is needed by grad weight, and by grad input in train
        total = sympy.Max(gb, tr * gi)     # sum g likewise
        ops = {"add": dot * (n + n - c) + total * (n - c) + (1 - tr) * gi * c + tr * gi * 3 * n,
               "mul": dot * n + gw * c + gi * ((1 - tr) * (c + n) + tr * (3 * c + 2 * n)),
               "div": tr * gi * 2 * c, "fn": (1 - tr) * gi * c}
        return Cost(output_shape=x if gi else (c,), ops=ops,
                    reads=numel(go) + n + 2 * c + self.weight * c, writes=gi * n + (gw + gb) * c)


# ---- from a recorded op to (layer, symbolic input shapes) ------------------------------------------------------

def _handler(*ops: str):
    def deco(fn):
        for op in ops:
            if op in OP_HANDLERS:
                raise ValueError(f"cost handler for {op} registered twice")
            OP_HANDLERS[op] = fn
        return fn
    return deco


def _mask(ev, i: int, n: int) -> list[bool]:
    m = ev.args[i] if len(ev.args) > i else ev.kwargs.get("output_mask", [True] * n)
    return [bool(v) for v in m]


@_handler("aten.convolution_backward")
def _conv(ev, sym, concrete):
    go, x, w = ev.args[:3]
    transposed, groups = bool(ev.args[7]), int(ev.args[9])
    gi, gw, gb = _mask(ev, 10, 3)
    return ConvolutionBackward(transposed=transposed, groups=groups, grad_input=gi, grad_weight=gw,
                               grad_bias=gb), (sym[go.index], sym[x.index], sym[w.index])


@_handler("aten.native_layer_norm_backward")
def _layer_norm(ev, sym, concrete):
    go, x, shape, _mean, _rstd, w = ev.args[:6]
    gi, gw, gb = _mask(ev, 7, 3)
    return LayerNormBackward(normalized_dims=len(shape), weight=w is not None, grad_input=gi,
                             grad_weight=gw and w is not None, grad_bias=gb), (sym[go.index], sym[x.index])


@_handler("aten._softmax_backward_data", "aten._log_softmax_backward_data")
def _softmax(ev, sym, concrete):
    go, y, dim = ev.args[:3]
    return SoftmaxBackward(dim=int(dim), log="log" in ev.op), (sym[go.index], sym[y.index])


@_handler(*_ACTIVATIONS)
def _activation(ev, sym, concrete):
    return ElementwiseBackward(activation=_ACTIVATIONS[ev.op][0]), (sym[ev.args[0].index],)


@_handler("aten.gelu_backward")
def _gelu(ev, sym, concrete):
    if ev.kwargs.get("approximate", ev.args[2] if len(ev.args) > 2 else "none") != "none":
        return None  # the tanh form's gradient: not costed, reported as uncovered
    return ElementwiseBackward(activation=_GELU[0]), (sym[ev.args[0].index],)


@_handler("aten.embedding_dense_backward")
def _embedding(ev, sym, concrete):
    go, ids, num_weights, padding_idx, scale = (*ev.args[:5], *([None] * (5 - len(ev.args))))
    if (padding_idx is not None and padding_idx >= 0) or scale:
        return None  # which rows are skipped or scaled depends on the token ids: reported as uncovered
    return EmbeddingBackward(num_weights=int(num_weights)), (sym[go.index], sym[ids.index])


@_handler("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward")
def _max_pool(ev, sym, concrete):
    go, x = ev.args[:2]
    return MaxPoolBackward(), (sym[go.index], sym[x.index])


@_handler("aten.native_batch_norm_backward")
def _batch_norm(ev, sym, concrete):
    go, x, w = ev.args[:3]
    train = bool(ev.args[7])
    gi, gw, gb = _mask(ev, 9, 3)
    return BatchNormBackward(train=train, weight=w is not None, grad_input=gi, grad_weight=gw and w is not None,
                             grad_bias=gb and w is not None), (sym[go.index], sym[x.index])


@_handler("aten.slice_backward", "aten.select_backward")
def _scatter_copy(ev, sym, concrete):
    # the gradient written into a zeroed tensor of the input's size: data movement only
    return get_layer_class("copy")(), (sym[ev.args[0].index], sym[ev.outputs[0]])


class IndexPutAccumulate(_Grad):
    r"""``aten.index_put(x, indices, values, accumulate=True)``: the gradient of a gather (``w[ids]``): every row of
    ``values`` is added at its index, wherever that is: $\text{numel}(\text{values})$ add."""

    name = "index_add_backward"
    family = "memory"
    summary = "scatter-add of gathered rows' gradients (the backward of indexing with ids)"

    def _cost(self, x, values) -> Cost:
        return Cost(output_shape=x, ops={"add": numel(values)}, reads=numel(x) + numel(values), writes=numel(x))


@_handler("aten.index_put")
def _index_put(ev, sym, concrete):
    x, _indices, values = ev.args[:3]
    accumulate = ev.args[3] if len(ev.args) > 3 else ev.kwargs.get("accumulate", False)
    if not accumulate:
        return get_layer_class("copy")(), (sym[values.index], sym[ev.outputs[0]])
    return IndexPutAccumulate(), (sym[x.index], sym[values.index])


@_handler("aten.scatter")
def _scatter(ev, sym, concrete):
    src = ev.args[3] if len(ev.args) > 3 else ev.kwargs.get("src")
    if not isinstance(src, TensorRef) or ev.kwargs.get("reduce"):
        return None
    return get_layer_class("copy")(), (sym[src.index], sym[ev.outputs[0]])


# ---- shapes: a gradient has the shape of the tensor it is the gradient of ---------------------------------------

def _like(p, ev, *which) -> list:
    out = []
    for w in which:
        if isinstance(w, TensorRef):
            out.append(p.s(w))
        elif isinstance(w, tuple):  # a literal shape
            out.append(w)
        else:
            out.append(None)
    return out


@rule("aten.convolution_backward")
def _conv_shapes(p, ev, _evb):
    go, x, w = ev.args[:3]
    return _like(p, ev, x, w, (p.s(go)[1],))


@rule("aten.native_layer_norm_backward")
def _layer_norm_shapes(p, ev, _evb):
    x, w, b = ev.args[1], ev.args[5], ev.args[6]
    return _like(p, ev, x, w, b)


@rule("aten.native_batch_norm_backward")
def _batch_norm_shapes(p, ev, _evb):
    x, w = ev.args[1], ev.args[2]
    return _like(p, ev, x, w, w)


@rule("aten._softmax_backward_data", "aten._log_softmax_backward_data", *_ACTIVATIONS, "aten.gelu_backward")
def _grad_shaped(p, ev, _evb):
    return _like(p, ev, ev.args[0])


@rule("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward")
def _pool_shapes(p, ev, _evb):
    return _like(p, ev, ev.args[1])


@rule("aten.embedding_dense_backward")
def _embedding_shapes(p, ev, _evb):
    return [(sympy.Integer(int(ev.args[2])), p.s(ev.args[0])[-1])]


def notes(mc) -> list[str]:
    """What a user must know about a traced training step."""
    out = ["backward: one training step's backward pass (no optimizer), from the gradient of the model's first "
           "output seeded with ones of its shape (the loss itself is not costed); torch skips gradients nothing "
           "needs (the input's, frozen parameters'), and so does this count"]
    extra = grouped_grad_weight_overcount(mc)
    if extra != 0:
        out.append(f"FlopCounterMode counts {sympy.sstr(2 * extra)} FLOPs more than the 'torch' total here: it "
                   "counts a grouped convolution's weight gradient as if groups were 1 (all C_in input channels "
                   "per output channel); symcost counts the multiply-accumulates done")
    return out


def grouped_grad_weight_overcount(mc) -> sympy.Expr:
    """How many MACs more than symcost FlopCounterMode counts for the backward of ``mc`` (0 without grouped
    convolutions): it counts a grouped convolution's weight gradient as if ``groups`` were 1."""
    extra = sympy.Integer(0)
    for r in mc.rows:
        if r.layer == ConvolutionBackward.name and r.args.get("groups", 1) != 1:
            extra += ConvolutionBackward(**{k: v for k, v in r.args.items()}).torch_overcount(*r.input_shapes)
    return extra
