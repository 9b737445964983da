r"""Backward formulas: the gradients of layers and of the fused aten backward kernels, from shapes only.

Each class counts the algorithm written in its docstring.  MACs are the multiply-accumulates done.  The trace uses
them for the backward pass of a training step (``symcost.tracing.ops``); the layers' ``_backward`` compose a catalog
layer's own gradients from them (``symcost formula linear --backward``).  Not registered in the catalog: they are not
``torch.nn`` layers.  No torch import.
"""
from __future__ import annotations

import sympy

from ..cost import Cost, numel
from .base import Arg, Layer


def _prod(xs) -> sympy.Expr:
    return sympy.Mul(*[sympy.sympify(x) for x in xs]) if xs else sympy.Integer(1)


_FLAG = dict(kind="flag", default=True)


def _reads_grad(gi, gw, gb):
    """The output gradient is read once by any part computed; by the bias part alone only with a bias (``b`` may be
    a symbol: the part then reads it b times)."""
    return 1 if (gi != 0 or gw != 0) else gb


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
        return Cost(output_shape=x if gi else (w if gw else (c_out,)),
                    ops={"mac": (gi + gw) * macs, "dot": gi * numel(x) + gw * numel(w),
                         "add": gb * (numel(go) - c_out)},
                    reads=numel(go) * _reads_grad(gi, gw, gb) + gi * numel(w) + gw * numel(x),
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
ACTIVATION_BACKWARDS = {
    "aten.threshold_backward": ("relu_backward", {"cmp": 1}, "g if x > threshold else 0: 1 cmp"),
    "aten.hardtanh_backward": ("hardtanh_backward", {"cmp": 2}, "g if a < x < b else 0: 2 cmp"),
    "aten.tanh_backward": ("tanh_backward", {"mul": 2, "add": 1}, "g (1 - y^2): 2 mul, 1 add"),
    "aten.sigmoid_backward": ("sigmoid_backward", {"mul": 2, "add": 1}, "g y (1 - y): 2 mul, 1 add"),
    "aten.native_dropout_backward": ("dropout_backward", {"mul": 2}, "g * mask * scale: 2 mul"),
    "aten.silu_backward": ("silu_backward", {"fn": 1, "add": 3, "div": 1, "mul": 3},
                           "s = 1/(1 + e^-x) (1 fn, 1 add, 1 div), g s (1 + x (1 - s)) (3 mul, 2 add)"),
}

# the CPU kernels (aten/src/ATen/native/cpu/Activation.cpp) compute both sides of a branch for every element and
# blend them (vectorized), so each count is per element whatever the sign of x
ACTIVATION_BACKWARDS.update({
    "aten.elu_backward": ("elu_backward", {"cmp": 1, "fn": 1, "mul": 5},
                          "x > 0 ? g s : g s_in a e^(x s_in): 1 cmp, 1 fn, 5 mul (x s_in, g s_in, * a, * e, g s)"),
    "aten.leaky_relu_backward": ("leaky_relu_backward", {"cmp": 1, "mul": 1}, "x > 0 ? g : g slope: 1 cmp, 1 mul"),
    "aten.hardsigmoid_backward": ("hardsigmoid_backward", {"cmp": 2, "mul": 1},
                                  "-3 < x < 3 ? g / 6 : 0: 2 cmp, 1 mul (by 1/6)"),
    "aten.hardswish_backward": ("hardswish_backward", {"cmp": 2, "div": 1, "add": 1, "mul": 1},
                                "x < -3 ? 0 : x <= 3 ? g (x/3 + 1/2) : g: 2 cmp, 1 div, 1 add, 1 mul"),
    "aten.softplus_backward": ("softplus_backward", {"mul": 2, "fn": 1, "add": 1, "div": 1, "cmp": 1},
                               "z = e^(beta x); beta x > threshold ? g : g z / (z + 1): 2 mul, 1 fn, 1 add, 1 div, 1 cmp"),
})

GELU_BACKWARD = ("gelu_backward", {"fn": 2, "add": 2, "mul": 7},
         "g (Phi(x) + x phi(x)): Phi = (1 + erf(x/sqrt 2))/2 (1 fn, 1 add, 2 mul), phi = exp(-x^2/2)/sqrt(2 pi) "
         "(1 fn, 3 mul), x phi, the sum, times g (2 mul, 1 add)")
GELU_TANH_BACKWARD = ("gelu_tanh_backward", {"fn": 1, "add": 5, "mul": 12},
              ("t = tanh(b (x + k x^3)) (x^2, x^3, k x^3, b (...): 4 mul, 1 add, 1 fn); left = x/2, d_left = "
               "(1 + t)/2 (2 mul, 1 add); d_right = left (1 - t^2) b (1 + 3k x^2) (5 mul, 2 add); g (d_left + "
               "d_right) (1 mul, 1 add)"))


class ElementwiseBackward(_Grad):
    """An activation's gradient: a fixed number of operations per element (``counted``)."""

    name = "activation_backward"
    family = "activation"
    summary = "gradient of an elementwise activation"
    args = (Arg("activation", "choice", "relu_backward",
                choices=tuple(v[0] for v in ACTIVATION_BACKWARDS.values()) + (GELU_BACKWARD[0], GELU_TANH_BACKWARD[0])),)

    def _cost(self, go) -> Cost:
        table = {v[0]: v[1] for v in (*ACTIVATION_BACKWARDS.values(), GELU_BACKWARD, GELU_TANH_BACKWARD)}
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


class IndexPutAccumulate(_Grad):
    r"""``aten.index_put(x, indices, values, accumulate=True)``: the gradient of a gather (``w[ids]``): every row of
    ``values`` is added at its index, wherever that is: $\text{numel}(\text{values})$ add."""

    name = "index_add_backward"
    family = "memory"
    summary = "scatter-add of gathered rows' gradients (the backward of indexing with ids)"

    def _cost(self, x, values) -> Cost:
        return Cost(output_shape=x, ops={"add": numel(values)}, reads=numel(x) + numel(values), writes=numel(x))


class PadBackward(_Grad):
    r"""``aten.reflection_pad2d_backward(g, x, padding)`` (reflection and replication, 1-3 d): the input's gradient,
    zeroed, gets every element of the padded output's gradient $g$ added at the position it was copied from (the
    border positions of $x$ collect several): $\text{numel}(g)$ add, reading $g$ and the accumulating gradient."""

    name = "pad_backward"
    family = "memory"
    summary = "scatter-add of a reflection/replication pad's output gradient onto its input"

    def _cost(self, x, g) -> Cost:
        return Cost(output_shape=x, ops={"add": numel(g)}, reads=numel(x) + numel(g), writes=numel(x))


class Sign(_Grad):
    r"""``aten.sgn`` of a real tensor, the gradient factor of ``abs``: $(0 < x) - (x < 0)$: 2 cmp, 1 add per
    element."""

    name = "sign"
    family = "elementwise"
    summary = "sign of each element (the gradient factor of abs)"

    def _cost(self, x) -> Cost:
        n = numel(x)
        return Cost(output_shape=x, ops={"cmp": 2 * n, "add": n}, reads=n, writes=n)


class PreluBackward(_Grad):
    r"""``aten._prelu_kernel_backward(g, x, w)``: per element of $x$, $x > 0$ (1 cmp, shared); grad input
    $x > 0 ? g : w g$ (1 mul); the grad weight's terms $x > 0 ? 0 : x g$ (1 mul), written at $x$'s shape (autograd
    then sums them to the weight's shape)."""

    name = "prelu_backward"
    family = "activation"
    summary = "gradients of PReLU (input, and the weight's per-element terms)"
    args = (Arg("grad_input", **_FLAG), Arg("grad_weight", **_FLAG))

    def _cost(self, go, x, w) -> Cost:
        n, gi, gw = numel(x), self.grad_input, self.grad_weight
        return Cost(output_shape=x, ops={"cmp": n, "mul": (gi + gw) * n},
                    reads=numel(go) + n + numel(w), writes=(gi + gw) * n)


class AvgPoolBackward(_Grad):
    r"""``aten.avg_pool{2,3}d_backward``: each output gradient divided by its window's divisor (1 div), then added
    to each input of its window in a zeroed gradient ($K$ add, $K$ the window size; edge windows counted full, as
    the forward counts them)."""

    name = "avgpool_backward"
    family = "pool"
    summary = "gradient of average pooling (a divide per output, an add per window element)"
    args = (Arg("window", "size"),)

    def _cost(self, go, x) -> Cost:
        m = numel(go)
        return Cost(output_shape=x, ops={"div": m, "add": self.window * m}, reads=m, writes=numel(x))


class AdaptiveAvgPoolBackward(_Grad):
    r"""``aten._adaptive_avg_pool{2,3}d_backward``: per output, its gradient divided by each window extent
    (``g / kh / kw``: ``axes`` div, 2 for 1-D and 2-D, 3 for 3-D), then added to each input of its window in a zeroed
    gradient (``window_sum`` add: the windows' sizes summed over the outputs, exact)."""

    name = "adaptive_avgpool_backward"
    family = "pool"
    summary = "gradient of adaptive average pooling (divides per output, an add per window element)"
    args = (Arg("axes", "size"), Arg("window_sum", "size"))

    def _cost(self, go, x) -> Cost:
        m = numel(go)
        return Cost(output_shape=x, ops={"div": self.axes * m, "add": self.window_sum}, reads=m, writes=numel(x))


class UpsampleNearestBackward(_Grad):
    r"""``aten.upsample_nearest*_backward``: each output gradient added to its source element of a zeroed input
    gradient: $\text{numel}(\text{grad\_out})$ add."""

    name = "upsample_nearest_backward"
    family = "resize"
    summary = "gradient of nearest resizing (a scatter-add to the source elements)"

    def _cost(self, go, x) -> Cost:
        return Cost(output_shape=x, ops={"add": numel(go)}, reads=numel(go), writes=numel(x))


class LinearResizeBackward(_Grad):
    r"""``aten.upsample_{linear1d,bilinear2d,trilinear3d}_backward`` (cpu_upsample_linear_backward): each output
    gradient is added to the $2^d$ input elements it interpolated, weighted by the product of its $d$ lambdas:
    per output $2^d$ ($d$ mul, 1 add) into a zeroed gradient (the source indices and lambdas are index arithmetic,
    not counted, as in the forward)."""

    name = "upsample_linear_backward"
    family = "resize"
    summary = "gradient of (bi/tri)linear resizing (a weighted scatter-add to the 2^d source elements)"
    args = (Arg("axes", "size"),)

    def _cost(self, go, x) -> Cost:
        m, corners = numel(go), 2 ** self.axes
        return Cost(output_shape=x, ops={"mul": corners * self.axes * m, "add": corners * m}, reads=m,
                    writes=numel(x))


class BicubicResizeBackward(_Grad):
    r"""``aten.upsample_bicubic2d_backward``: each output gradient is added to the 4 x 4 input elements it
    interpolated, each times its row and column coefficients: per output 16 (2 mul, 1 add) into a zeroed gradient
    (the coefficients and indices, per output position, are not counted, as in the forward)."""

    name = "upsample_bicubic_backward"
    family = "resize"
    summary = "gradient of bicubic resizing (a weighted scatter-add to the 16 source elements)"

    def _cost(self, go, x) -> Cost:
        m = numel(go)
        return Cost(output_shape=x, ops={"mul": 32 * m, "add": 16 * m}, reads=m, writes=numel(x))


class GroupNormBackward(_Grad):
    r"""``aten.native_group_norm_backward`` as PyTorch's CPU kernel computes it (group_norm_kernel.cpp); $n$ elements,
    $N$ samples, $C$ channels of $m = n/(NC)$, $G$ groups of $D = C/G$ channels.  Always: per (sample, channel)
    $d_s = \sum dy\,x$, $d_b = \sum dy$ ($n$ mul, $2(n - NC)$ add).  Grad input, per (sample, group):
    $\sum_c d_s\gamma$, $\sum_c d_b\gamma$ ($2D$ mul with a weight, $2(D-1)$ add), $c_2 = (d_b\mu - d_s)\sigma^{-3}/(Dm)$
    (5 mul, 1 add), $c_3 = -c_2\mu - d_b\sigma^{-1}/(Dm)$ (3 mul, 1 add); per (sample, channel) $c_1 = \sigma^{-1}\gamma$
    (1 mul with a weight); per element $c_1 dy + c_2 x + c_3$ (2 mul, 2 add).  Grad weight: per (sample, channel)
    $(d_s - d_b\mu)\sigma^{-1}$ (2 mul, 1 add), summed over samples ($(N-1)C$ add).  Grad bias $\sum_N d_b$
    ($(N-1)C$ add)."""

    name = "group_norm_backward"
    family = "norm"
    summary = "gradients of group norm (input, weight, bias)"
    args = (Arg("groups", "size"), Arg("weight", "flag", True), Arg("grad_input", **_FLAG),
            Arg("grad_weight", **_FLAG), Arg("grad_bias", **_FLAG))

    def _cost(self, go, x) -> Cost:
        n, nb, c = numel(x), x[0], x[1]
        g, w = self.groups, self.weight
        d, ng, nc = c / g, nb * g, nb * c
        gi, gw, gb = self.grad_input, self.grad_weight, self.grad_bias
        ops = {"mul": n + gi * (ng * (2 * d * w + 8) + nc * w + 2 * n) + gw * 2 * nc,
               "add": 2 * (n - nc) + gi * (ng * 2 * d + 2 * n) + gw * (nc + (nb - 1) * c) + gb * (nb - 1) * c}
        return Cost(output_shape=x if gi else (c,), ops=ops,
                    reads=numel(go) + n + 2 * ng + w * c, writes=gi * n + (gw + gb) * c)


class LinearBackward(_Grad):
    r"""The gradients of ``y = x W^T + b`` on inputs $(\ast, F_{in})$, $R = \prod(\ast)$ rows: grad input
    $dY\,W$: $R F_{out} F_{in}$ MACs, one dot product per input element; grad weight $dY^T X$: $F_{out} F_{in} R$
    MACs, one dot product per weight element; grad bias $\sum_{rows} dY$: $(R - 1) F_{out}$ add."""

    name = "linear_backward"
    family = "linear"
    summary = "gradients of a linear layer (input, weight, bias)"
    args = (Arg("in_features", "size"), Arg("out_features", "size"), Arg("bias", "flag", True),
            Arg("grad_input", **_FLAG), Arg("grad_weight", **_FLAG))

    def _cost(self, x) -> Cost:
        rows, f_in, f_out = numel(x[:-1]), self.in_features, self.out_features
        gi, gw, gb = self.grad_input, self.grad_weight, self.bias
        return Cost(output_shape=x if gi else ((f_out, f_in) if gw else (f_out,)),
                    ops={"mac": (gi + gw) * rows * f_in * f_out, "dot": gi * rows * f_in + gw * f_in * f_out,
                         "add": gb * (rows - 1) * f_out},
                    reads=rows * f_out * _reads_grad(gi, gw, gb) + gi * f_in * f_out + gw * rows * f_in,
                    writes=gi * rows * f_in + gw * f_in * f_out + gb * f_out)


def flag(v):
    """A layer's flag value (0/1 or a symbol such as b) as a constructor argument."""
    return bool(v) if isinstance(v, (bool, int)) or getattr(v, "is_Integer", False) else v
