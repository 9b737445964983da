"""Seed 003: folding BatchNorm into the convolution before it, derived with sympy and checked with PyTorch."""
from __future__ import annotations

import math

import sympy

from ._doc import Doc, require, same, tex

TITLE = "Folding BatchNorm into the preceding (transposed) convolution (seed 003)"

#: largest |folded - unfolded| allowed, by dtype; the measured values are printed by `python -m derivations`
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
#: a check with teeth: a wrong fold must miss by at least this much
WRONG_BY = 1e-2


# ---------------------------------------------------------------------------------------------------------
# the PyTorch side
# ---------------------------------------------------------------------------------------------------------
def _bn(channels: int, gen, dtype):
    """An eval-mode BatchNorm2d with random affine parameters and running statistics."""
    import torch

    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=gen))
        bn.bias.copy_(torch.randn(channels, generator=gen))
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    return bn.to(dtype).eval()


def bn_scale_shift(bn):
    """a = gamma / sqrt(var + eps) and the shift's ingredients, per output channel."""
    import torch

    return bn.weight / torch.sqrt(bn.running_var + bn.eps), bn.running_mean, bn.bias


def fold_conv(conv, bn, *, drop_mean_term: bool = False):
    """Conv2d followed by eval BatchNorm2d -> one Conv2d: W' = W * a on axis 0, b' = (b - mu) * a + beta."""
    import torch

    a, mu, beta = bn_scale_shift(bn)
    b = conv.bias if conv.bias is not None else torch.zeros_like(mu)
    fused = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            conv.dilation, conv.groups, bias=True).to(conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * a.reshape(-1, 1, 1, 1))           # weight (C_out, C_in/g, kh, kw)
        fused.bias.copy_(b * a + beta if drop_mean_term else (b - mu) * a + beta)
    return fused.eval()


def fold_conv_transpose(deconv, bn, *, axis0: bool = False):
    """ConvTranspose2d followed by eval BatchNorm2d -> one ConvTranspose2d.

    The weight is (C_in, C_out/g, kh, kw): output channel o = G*(C_out/g) + j of group G is weight[i, j] for the
    input channels i of group G, so a is viewed as (g, 1, C_out/g, 1, 1) against the weight viewed as
    (g, C_in/g, C_out/g, kh, kw); with g = 1 that is axis 1.  ``axis0=True`` applies the Conv2d recipe instead
    (wrong; kept to show that the check catches it)."""
    import torch

    a, mu, beta = bn_scale_shift(bn)
    b = deconv.bias if deconv.bias is not None else torch.zeros_like(mu)
    w = deconv.weight
    g = deconv.groups
    c_in, c_out_g = w.shape[0], w.shape[1]
    if axis0:
        scaled = w * a.reshape(-1, 1, 1, 1)
    else:
        scaled = (w.reshape(g, c_in // g, c_out_g, *w.shape[2:]) * a.reshape(g, 1, c_out_g, 1, 1)).reshape(w.shape)
    fused = torch.nn.ConvTranspose2d(deconv.in_channels, deconv.out_channels, deconv.kernel_size, deconv.stride,
                                     deconv.padding, deconv.output_padding, g, bias=True,
                                     dilation=deconv.dilation).to(w.dtype)
    with torch.no_grad():
        fused.weight.copy_(scaled)
        fused.bias.copy_((b - mu) * a + beta)
    return fused.eval()


def fold_into_next_conv(bn, conv):
    """Eval BatchNorm2d *followed by* a Conv2d (groups 1) -> one Conv2d, folding on the conv's input side:
    conv(a x + c) = (W a) * x + (b + sum W c), with c = beta - mu a.  Exact only without zero padding."""
    import torch

    a, mu, beta = bn_scale_shift(bn)
    c = beta - mu * a
    b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels, dtype=conv.weight.dtype)
    fused = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            bias=True).to(conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * a.reshape(1, -1, 1, 1))
        fused.bias.copy_(b + (conv.weight * c.reshape(1, -1, 1, 1)).sum(dim=(1, 2, 3)))
    return fused.eval()


#: (name, constructor kwargs, transposed?)
CASES = (
    ("Conv2d(4, 6, 3, padding=1)", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1), False),
    ("Conv2d(4, 6, 3, padding=1, bias=False)", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1,
                                                    bias=False), False),
    ("Conv2d(4, 6, 3, stride=2, groups=2)", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2,
                                                 groups=2), False),
    ("ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)",
     dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1), True),
    ("ConvTranspose2d(4, 6, 3, stride=2, groups=2, bias=False)",
     dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, groups=2, bias=False), True),
)


def measure() -> dict:
    """Max |folded(x) - bn(conv(x))| for every case and dtype, plus the deliberately wrong folds."""
    import torch

    out: dict = {}
    for dtype_name in TOLERANCE:
        dtype = getattr(torch, dtype_name)
        gen = torch.Generator().manual_seed(3)
        for name, kwargs, transposed in CASES:
            torch.manual_seed(3)  # the modules' own initialisation
            layer = (torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d)(**kwargs).to(dtype).eval()
            bn = _bn(kwargs["out_channels"], gen, dtype)
            x = torch.randn(2, kwargs["in_channels"], 9, 9, generator=gen).to(dtype)
            with torch.no_grad():
                ref = bn(layer(x))
                fused = (fold_conv_transpose if transposed else fold_conv)(layer, bn)
                out[(name, dtype_name)] = (fused(x) - ref).abs().max().item()
                if dtype_name == "float64" and not transposed and layer.bias is None:
                    wrong = fold_conv(layer, bn, drop_mean_term=True)
                    out[("no-bias fold with b' = beta", dtype_name)] = (wrong(x) - ref).abs().max().item()
                    out[("BN skipped", dtype_name)] = (layer(x) - ref).abs().max().item()
    # the Conv2d recipe (axis 0) on a transposed conv: with C_in = C_out it runs, and is wrong
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    deconv = torch.nn.ConvTranspose2d(6, 6, 3, stride=2).double().eval()
    bn = _bn(6, gen, torch.float64)
    x = torch.randn(2, 6, 9, 9, generator=gen).double()
    with torch.no_grad():
        ref = bn(deconv(x))
        out[("ConvTranspose2d(6, 6, 3, stride=2), scaled on axis 0", "float64")] = (
            fold_conv_transpose(deconv, bn, axis0=True)(x) - ref).abs().max().item()
        out[("ConvTranspose2d(6, 6, 3, stride=2), scaled on axis 1", "float64")] = (
            fold_conv_transpose(deconv, bn)(x) - ref).abs().max().item()
    # BN *before* a conv: folds into the conv's input side without padding, not with zero padding
    for padding in (0, 1):
        torch.manual_seed(3)
        conv = torch.nn.Conv2d(6, 4, 3, padding=padding).double().eval()
        with torch.no_grad():
            ref = conv(bn(x))
            diff = (fold_into_next_conv(bn, conv)(x) - ref).abs()
            out[(f"BN -> Conv2d(6, 4, 3, padding={padding})", "float64")] = diff.max().item()
            out[(f"BN -> Conv2d(6, 4, 3, padding={padding}), interior", "float64")] = (
                diff[..., 1:-1, 1:-1].max().item())
    return out


# ---------------------------------------------------------------------------------------------------------
# the derivation
# ---------------------------------------------------------------------------------------------------------
def _scatter_1d(W, x, bias, stride: int):
    """A 1-D transposed convolution written out: y[o][t*stride + k] += W[i][o][k] * x[i][t], then + bias[o]."""
    c_in, c_out, k = len(W), len(W[0]), len(W[0][0])
    length = (len(x[0]) - 1) * stride + k
    y = [[sympy.Integer(0)] * length for _ in range(c_out)]
    for i in range(c_in):
        for o in range(c_out):
            for t in range(len(x[0])):
                for j in range(k):
                    y[o][t * stride + j] += W[i][o][j] * x[i][t]
    return [[v + bias[o] for v in row] for o, row in enumerate(y)]


def derive(measured: dict | None = None) -> str:
    doc = Doc(TITLE, "Source: `shared/seeds/003_c5b2889f8659c704.txt` (a GiantPandaCV post on folding BN). The "
                     "formulas are derived with sympy and then checked against a real PyTorch fold; the script "
                     "raises if any step does not hold.")

    # ---- 1. scalar form, as the seed writes it ----------------------------------------------------
    Wx, X, B, mu, gamma, beta = sympy.symbols("W X B mu gamma beta", real=True)
    var, eps = sympy.symbols("sigma^2 epsilon", positive=True)
    a_sym = sympy.Symbol("a", positive=True)
    a = gamma / sympy.sqrt(var + eps)
    Y = gamma * ((Wx * X + B) - mu) / sympy.sqrt(var + eps) + beta
    expanded = sympy.expand(Y)
    w_merged, b_merged = expanded.coeff(X, 1), expanded.coeff(X, 0)
    same(w_merged, Wx * a, "W_merged = W * a")
    same(b_merged, (B - mu) * a + beta, "B_merged = (B - mu) * a + beta")
    same(Y, w_merged * X + b_merged, "Y = W' X + B'")
    b_in_a = sympy.collect(sympy.expand(b_merged.subs(gamma, a_sym * sympy.sqrt(var + eps))), a_sym)
    same(b_in_a, (B - mu) * a_sym + beta, "B_merged in terms of a")
    doc.h2("1. The algebra")
    doc.p("A convolution output channel is $Z = W * X + B$; BatchNorm at inference maps it to")
    doc.math(f"Y = {tex(Y)}")
    doc.p("Expanded (`sympy.expand`), $Y$ is linear in $X$:")
    doc.math(f"Y = {tex(expanded)}")
    doc.p("Its coefficient of $X$ and its constant term are the merged weight and bias; with "
          f"$a = {tex(a)}$ (the seed's $a$; it writes $\\delta^2$ once for $\\sigma^2$):")
    doc.math(f"W_{{merged}} &= {tex(w_merged)} = {tex(w_merged.subs(gamma, a_sym * sympy.sqrt(var + eps)))}",
             f"B_{{merged}} &= {tex(b_merged)} = {tex(b_in_a)}")
    doc.p("i.e. $W_{merged} = W a$ and $B_{merged} = (B - \\mu) a + \\beta$, the seed's result; sympy confirms "
          "$Y - (W_{merged} X + B_{merged}) = 0$.")

    # ---- 2. a whole dot product: every weight of output channel o scales by a_o --------------------
    n = 4
    ws, xs = sympy.symbols(f"W_1:{n + 1}", real=True), sympy.symbols(f"x_1:{n + 1}", real=True)
    z = sum(w * x for w, x in zip(ws, xs)) + B
    y = sympy.expand(gamma * (z - mu) / sympy.sqrt(var + eps) + beta)
    for w, x in zip(ws, xs):
        same(y.coeff(x, 1), w * a, f"coefficient of {x}")
    same(y.subs({x: 0 for x in xs}), (B - mu) * a + beta, "constant term")
    doc.p(f"$W * X$ is a sum of products, one per kernel tap and input channel. With {n} of them, "
          f"$Z = {tex(z)}$, the coefficient of every $x_i$ in the expanded $Y$ is $W_i a$ and the constant "
          "term is again $(B - \\mu) a + \\beta$ (checked term by term): each BN channel $o$ scales the whole "
          "filter of output channel $o$ by its own $a_o$. In a Conv2d weight $(C_{out}, C_{in}/g, k_h, k_w)$ that "
          "filter is `weight[o]`, so `W * a.reshape(-1, 1, 1, 1)`, exactly the seed's "
          "`w * (gamma / var_sqrt).reshape([conv.out_channels, 1, 1, 1])`, also for grouped convolutions.")

    # ---- 3. without bias -----------------------------------------------------------------------------
    no_bias = b_merged.subs(B, 0)
    same(no_bias, beta - mu * a, "B_merged without a conv bias")
    require(no_bias != beta, "the mean term vanished")
    doc.h2("2. A convolution without bias still gets one")
    doc.p("The seed notes that a conv followed by BN usually has no bias, \"so the formula loses its second "
          "term\". Only $B$ goes; with $B = 0$:")
    doc.math(f"B_{{merged}} = {tex(no_bias)}")
    doc.p("The $-\\mu a$ part stays, so the folded convolution needs a bias even when the original had none (the "
          "seed's own code does this: `b = mean.new_zeros(...)`, then `(b - mean) / var_sqrt * gamma + beta`). "
          "Dropping it, $B_{merged} = \\beta$, fails the PyTorch check below by a wide margin.")
    s = sympy.sqrt(var + eps)
    odd = sympy.solve(sympy.Eq(a * (Wx * X + B - mu + beta * s), Y), gamma)
    require(odd == [1], f"the seed's layer 2..7 branch holds for gamma in {odd}")
    doc.p("(The seed's code also has a branch for its layers 2 to 7, `b = b - mean + beta * var_sqrt` with the "
          "weights left unscaled. That is $(W X + B - \\mu + \\beta\\sqrt{\\sigma^2+\\epsilon})$ still to be "
          "multiplied by $a$, and sympy finds it equal to $Y$ only for $\\gamma = 1$: a model-specific shortcut, "
          "not the general fold.)")

    # ---- 4. transposed convolution, symbolically ------------------------------------------------------
    c_in, c_out, k, stride, length = 2, 2, 2, 2, 2
    Wt = [[[sympy.Symbol(f"W_{{{i}{o}{j}}}", real=True) for j in range(k)] for o in range(c_out)] for i in range(c_in)]
    xt = [[sympy.Symbol(f"x_{{{i}{t}}}", real=True) for t in range(length)] for i in range(c_in)]
    bt = [sympy.Symbol(f"b_{o}", real=True) for o in range(c_out)]
    gam = [sympy.Symbol(f"gamma_{o}", positive=True) for o in range(c_out)]
    bet = [sympy.Symbol(f"beta_{o}", real=True) for o in range(c_out)]
    mus = [sympy.Symbol(f"mu_{o}", real=True) for o in range(c_out)]
    vs = [sympy.Symbol(f"sigma^2_{o}", positive=True) for o in range(c_out)]
    at = [gam[o] / sympy.sqrt(vs[o] + eps) for o in range(c_out)]
    plain = _scatter_1d(Wt, xt, bt, stride)
    bn_out = [[gam[o] * (v - mus[o]) / sympy.sqrt(vs[o] + eps) + bet[o] for v in row] for o, row in enumerate(plain)]
    W_axis1 = [[[Wt[i][o][j] * at[o] for j in range(k)] for o in range(c_out)] for i in range(c_in)]
    W_axis0 = [[[Wt[i][o][j] * at[i] for j in range(k)] for o in range(c_out)] for i in range(c_in)]
    b_fold = [(bt[o] - mus[o]) * at[o] + bet[o] for o in range(c_out)]
    good, bad = _scatter_1d(W_axis1, xt, b_fold, stride), _scatter_1d(W_axis0, xt, b_fold, stride)
    for o in range(c_out):
        for t in range(len(plain[0])):
            same(good[o][t], bn_out[o][t], f"transposed fold on axis 1, output ({o}, {t})")
    require(any(sympy.simplify(bad[o][t] - bn_out[o][t]) != 0 for o in range(c_out) for t in range(len(plain[0]))),
            "scaling axis 0 of a transposed conv weight is right after all")
    doc.h2("3. After a transposed convolution (the seed's open question)")
    doc.p("The seed asks how to fold a BN that follows a transposed convolution (反卷积). The algebra is the same: "
          "the layer is linear in its input with one bias per output channel, so every weight that feeds output "
          "channel $o$ is scaled by $a_o$ and $B_{merged} = (B - \\mu) a + \\beta$. What changes is where output "
          "channel $o$ sits in the weight: `ConvTranspose2d` stores it as $(C_{in}, C_{out}/g, k_h, k_w)$, so "
          "output channel $o$ is **axis 1**:")
    doc.math("y_o[t\\,s + j] \\mathrel{+}= W[i, o, j]\\, x_i[t] \\quad\\Longrightarrow\\quad "
             "W'[i, o, j] = W[i, o, j]\\, a_o")
    doc.p(f"Checked with sympy on a 1-D transposed convolution written out as a scatter ({c_in} input and {c_out} "
          f"output channels, kernel {k}, stride {stride}, input length {length}): scaling axis 1 reproduces "
          "BN(transposed conv) at every output position; scaling axis 0, the Conv2d recipe, does not.")
    doc.p("With groups $g > 1$, output channel $o = G \\cdot C_{out}/g + j$ of group $G$ is `weight[i, j]` for the "
          "input channels $i$ of group $G$: view the weight as $(g, C_{in}/g, C_{out}/g, k_h, k_w)$ and multiply by "
          "$a$ viewed as $(g, 1, C_{out}/g, 1, 1)$ (`fold_conv_transpose` in this file). With $g = 1$ that is "
          "`W * a.reshape(1, -1, 1, 1)`.")

    # ---- 5. PyTorch ---------------------------------------------------------------------------------------
    measured = measure() if measured is None else measured
    rows = []
    for name, kwargs, transposed in CASES:
        cells = []
        for dtype_name, tol in TOLERANCE.items():
            diff = measured[(name, dtype_name)]
            require(diff <= tol, f"{name} ({dtype_name}): folded differs by {diff:.3e} > {tol:g}")
            cells.append(f"$\\le {_power(tol)}$")
        along = "axis 0" if not transposed else ("axis 1" if kwargs.get("groups", 1) == 1 else "axis 1, per group")
        rows.append([f"`{name}`", along, *cells])
    wrong = {
        "no-bias fold with b' = beta": "bias-free Conv2d folded with $B_{merged} = \\beta$ (the $-\\mu a$ dropped)",
        "BN skipped": "the bias-free Conv2d alone, BN left out",
        "ConvTranspose2d(6, 6, 3, stride=2), scaled on axis 0":
            "`ConvTranspose2d(6, 6, 3, stride=2)` with the Conv2d recipe (axis 0)",
    }
    for key in wrong:
        diff = measured[(key, "float64")]
        require(diff >= WRONG_BY, f"{key}: differs by only {diff:.3e}; the check has no teeth")
    diff = measured[("ConvTranspose2d(6, 6, 3, stride=2), scaled on axis 1", "float64")]
    require(diff <= TOLERANCE["float64"], f"ConvTranspose2d(6, 6) axis 1: {diff:.3e}")
    doc.h2("4. Checked against PyTorch")
    doc.p("For each layer below: random weights, a BatchNorm2d with random $\\gamma$, $\\beta$, running mean and "
          "running variance in eval mode, a random input of shape $(2, C_{in}, 9, 9)$; the folded layer's output is "
          "compared with `bn(layer(x))`. Largest absolute difference:")
    doc.table(["layer", "scaled along", "max abs diff, float64", "max abs diff, float32"], rows)
    doc.p("These differences are rounding error. Their last digits change with the CPU and the thread count, so "
          "this page records the tolerance each one passed; `python -m derivations` prints the measured values. "
          f"Each wrong fold, by contrast, misses by more than ${_power(WRONG_BY)}$:")
    doc.bullets(f"{text}: max abs diff $> {_power(WRONG_BY)}$" for text in wrong.values())

    # ---- 6. BN before a conv ------------------------------------------------------------------------------
    unpadded = measured[("BN -> Conv2d(6, 4, 3, padding=0)", "float64")]
    padded = measured[("BN -> Conv2d(6, 4, 3, padding=1)", "float64")]
    require(unpadded <= TOLERANCE["float64"], f"BN -> unpadded conv input-side fold: {unpadded:.3e}")
    require(padded >= WRONG_BY, f"BN -> padded conv input-side fold is right after all: {padded:.3e}")
    interior = measured[("BN -> Conv2d(6, 4, 3, padding=1), interior", "float64")]
    require(interior <= TOLERANCE["float64"], f"BN -> padded conv: interior differs by {interior:.3e}")
    doc.h2("5. Only conv → BN folds this way")
    doc.p("The seed remarks that only a BN *after* a convolution can be folded, so a pre-activation ResNet "
          "(BN → ReLU → conv) cannot fold: the ReLU between them is not linear. A BN directly *before* a conv, "
          "$\\mathrm{conv}(a x + c)$ with $c = \\beta - \\mu a$, could fold into the conv's input side, "
          "$W' = W a$ along the input-channel axis and $b' = b + \\sum W c$, but only without padding: zero padding "
          "feeds the conv zeros, not $c$, at the border. Checked the same way "
          f"(`fold_into_next_conv`): `Conv2d(6, 4, 3)` with padding 0 matches within "
          f"${_power(TOLERANCE['float64'])}$; with padding 1 the interior still matches within "
          f"${_power(TOLERANCE['float64'])}$ but the border outputs miss by more than ${_power(WRONG_BY)}$.")
    return str(doc)


def _power(x: float) -> str:
    exponent = round(math.log10(x))
    require(10.0 ** exponent == x, f"{x} is not a power of ten")
    return f"10^{{{exponent}}}"


def report(measured: dict) -> str:
    """The measured differences, for the build's console output (not part of the Markdown)."""
    return "\n".join(f"  {name} [{dtype}]: max abs diff {d:.3e}" for (name, dtype), d in measured.items())
