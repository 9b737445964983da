"""Seed 000: BatchNorm at inference costs H*W*C multiplications and H*W*C additions; zero once folded."""
from __future__ import annotations

import sympy

import symcost
from symcost import CONVENTIONS
from symcost.conventions import CORE
from symcost.formula import name_output_sizes
from symcost.symbols import C_in, C_out, H, N, W, per_axis, size

from ._doc import Doc, require, same, tex

TITLE = "BatchNorm at inference: H·W·C multiplications and H·W·C additions (seed 000)"
C = size("C")
K_h, K_w = per_axis("K", 2)


#: the conventions this page covers: symcost's own and the seed's (fritz); peer tools' presets (symcost/peers.py)
#: are derived against the tools themselves in tests/test_peers.py
SEEDED = {name: CONVENTIONS[name] for name in (*CORE, "fritz")}


def derive() -> str:
    doc = Doc(TITLE, "Source: `shared/seeds/000_cd4833ec405c30f5.txt` (a Zhihu answer on the FLOPs of batch "
                     "normalization). Every formula below is derived with sympy and every count is taken from "
                     "symcost's layer formulas; the script raises if any step does not hold.")

    # ---- 1. the algebra ----------------------------------------------------------------
    x, mu, gamma, beta = sympy.symbols("x mu gamma beta", real=True)
    var, eps = sympy.symbols("sigma^2 epsilon", positive=True)
    alpha = gamma / sympy.sqrt(var + eps)
    y = gamma * (x - mu) / sympy.sqrt(var + eps) + beta
    expanded = sympy.expand(y)
    slope, intercept = expanded.coeff(x, 1), expanded.coeff(x, 0)
    same(slope, alpha, "coefficient of x")
    same(intercept, beta - alpha * mu, "constant term")
    same(sympy.collect(expanded, x), alpha * x + (beta - alpha * mu), "y = alpha*x + (beta - alpha*mu)")
    same(y, slope * x + intercept, "expansion")
    require(not (slope.free_symbols | intercept.free_symbols) & {x}, "slope and intercept must not depend on x")

    doc.h2("1. The normalisation is an affine map per channel")
    doc.p("For one channel $k$ of the input (batch size $B = 1$, as in the seed), with moving mean $\\mu$, moving "
          "variance $\\sigma^2$, scale $\\gamma$ and shift $\\beta$ (all per channel, the index $k$ dropped):")
    doc.math(f"y = {tex(y)}")
    doc.p("`sympy.expand` distributes the division over the difference:")
    doc.math(f"y = {tex(expanded)}")
    doc.p("The coefficient of $x$ and the constant term (`expand(y).coeff(x, 1)` and `.coeff(x, 0)`) are")
    doc.math(f"\\alpha &= {tex(slope)}", f"\\beta - \\alpha\\mu &= {tex(intercept)}")
    doc.p("so, checked by `sympy.simplify(y - (alpha*x + (beta - alpha*mu))) == 0`:")
    doc.math("y = \\alpha\\, x + (\\beta - \\alpha\\mu)")
    doc.p("Neither $\\alpha$ nor $\\beta - \\alpha\\mu$ depends on $x$: both are computed once per channel when the "
          "model is loaded (NCNN does this), so they cost nothing per inference.")

    # ---- 2. the count, from symcost's layer -------------------------------------------
    bn = symcost.layer("batchnorm2d", mode="eval").cost()          # input (N, C, H, W)
    require(bn.output_shape == (N, C, H, W), f"unexpected default input {bn.output_shape}")
    require(set(bn.ops) == {"mul", "add"}, f"BN eval should count only mul and add, got {sorted(bn.ops)}")
    one = {N: 1}
    same(bn.op("mul").subs(one), H * W * C, "BN eval multiplications")
    same(bn.op("add").subs(one), H * W * C, "BN eval additions")

    doc.h2("2. What that costs per inference")
    doc.p("Each element needs one multiplication ($\\alpha x$) and one addition ($+ (\\beta - \\alpha\\mu)$). A "
          "channel has $H \\times W$ elements and there are $C$ channels. symcost's "
          "`layer(\"batchnorm2d\", mode=\"eval\").cost()` on an $(N, C, H, W)$ input reports exactly these primitive "
          "counts; with $N = 1$:")
    doc.math(f"\\text{{mul}} &= {tex(bn.op('mul').subs(one))}", f"\\text{{add}} &= {tex(bn.op('add').subs(one))}")
    doc.p("The seed's $H \\times W \\times C$ multiplications and $H \\times W \\times C$ additions. What that is in "
          "\"FLOPs\" depends on the convention (`symcost conventions`):")
    expected = {"macs": 0, "flops": 2 * H * W * C, "exact": 2 * H * W * C, "mults": H * W * C, "torch": 0,
                "fritz": 2 * H * W * C}
    require(set(expected) == set(SEEDED), f"conventions changed: {sorted(SEEDED)}; update this table")
    rows = []
    notes = {"macs": "no multiply-accumulate in BN", "flops": "one per mul and per add",
             "exact": "one per mul and per add",
             "mults": "multiplications only", "torch": "FlopCounterMode counts no BN FLOPs",
             "fritz": "a multiply and an add per element (seed 001's 0.07)"}
    for name, conv in SEEDED.items():
        value = same(conv.count(bn).subs(one), expected[name], f"BN eval under {name}")
        rows.append([f"`{name}`", f"${tex(sympy.expand(value))}$", notes[name]])
    doc.table(["convention", "BN at inference", "why"], rows)

    # ---- 3. compared with the convolution before it -----------------------------------------
    results = {}
    for bias in (True, False):
        lay = symcost.layer("conv2d", bias=bias, groups=1)
        named, where = name_output_sizes(lay.default_input_shapes(), lay.cost())
        results[bias] = named.subs(one)
    H_out, W_out = (sympy.Symbol(f"{s}_out", integer=True, positive=True) for s in ("H", "W"))
    require(set(where) == {H_out, W_out}, f"output sizes named {sorted(map(str, where))}")
    mults = {k: CONVENTIONS["mults"].count(v) for k, v in results.items()}
    adds = {k: CONVENTIONS["exact"].count(v) - mults[k] for k, v in results.items()}
    conv_mul = H_out * W_out * C_out * K_h * K_w * C_in
    same(mults[True], conv_mul, "conv multiplications with bias")
    same(mults[False], conv_mul, "conv multiplications without bias")
    same(adds[True], conv_mul, "conv additions with bias")
    same(adds[False], H_out * W_out * C_out * (K_h * K_w * C_in - 1), "conv additions without bias")

    doc.h2("3. Compared with the convolution")
    doc.p("The seed compares this with a convolution. symcost counts a convolution as one multiply-accumulate per "
          "kernel tap (`mac`), one dot product per output (`dot`, a length-$n$ sum has $n - 1$ additions) and one "
          "bias add per output (`bias`), so with a bias the $n - 1$ additions of the sum become $n$. "
          "Multiplications are the `mults` count; additions are the `exact` count minus the multiplications. "
          "With $N = 1$, $g = 1$ and the output sizes named $H_{out}$, $W_{out}$:")
    doc.table(["", "multiplications", "additions"], [
        ["with bias", f"${tex(mults[True])}$", f"${tex(adds[True])}$"],
        ["without bias", f"${tex(mults[False])}$", f"${tex(sympy.factor(adds[False]))}$"],
    ])
    doc.p("as the seed says. For a BN right after that convolution ($H = H_{out}$, $W = W_{out}$, $C = C_{out}$) "
          "the ratio of multiplications is")
    ratio = sympy.simplify(bn.op("mul").subs(one).subs({H: H_out, W: W_out, C: C_out}) / mults[False])
    same(ratio, 1 / (K_h * K_w * C_in), "BN / conv multiplications")
    doc.math(f"\\frac{{\\text{{mul}}_{{BN}}}}{{\\text{{mul}}_{{conv}}}} = {tex(ratio)}")
    doc.p(f"e.g. $1/{3 * 3 * 64}$ after a $3 \\times 3$ convolution with 64 input channels: \"relatively small\".")
    require(ratio.subs({K_h: 3, K_w: 3, C_in: 64}) == sympy.Rational(1, 576), "3x3x64 ratio")

    # ---- 4. folded ----------------------------------------------------------------------------
    folded = symcost.layer("batchnorm2d", mode="folded").cost()
    require(folded.ops == {} and folded.params == 0 and folded.buffers == 0, f"folded BN is not free: {folded}")
    for name, conv in SEEDED.items():
        require(conv.count(folded) == 0, f"folded BN under {name} is {conv.count(folded)}")
    # folding a bias-free conv + BN leaves a conv with bias: what is saved, exactly
    bn_after = symcost.layer("batchnorm2d", mode="eval").cost(results[False].output_shape)
    saved = {name: sympy.simplify(CONVENTIONS[name].count(results[False]) + CONVENTIONS[name].count(bn_after)
                                  - CONVENTIONS[name].count(results[True])) for name in ("exact", "mults")}
    outputs = H_out * W_out * C_out
    same(saved["exact"], outputs, "exact saving from folding")
    same(saved["mults"], outputs, "multiplications saved by folding")
    with_bias = sympy.simplify(CONVENTIONS["exact"].count(bn_after))
    same(with_bias, 2 * outputs, "exact saving when the conv already has a bias")

    doc.h2("4. Folded: zero")
    doc.p("With Conv → BN (→ ReLU), $\\alpha$ and $\\beta - \\alpha\\mu$ can be folded into the convolution's "
          "weights and bias ($W' = \\alpha W$, $b' = (b - \\mu)\\alpha + \\beta$, derived in "
          "[bn_folding.md](bn_folding.md)), and "
          "the BN layer disappears: `layer(\"batchnorm2d\", mode=\"folded\").cost()` has no operations, no "
          "parameters and no buffers, 0 under every convention.")
    doc.p("The additions do not vanish entirely: a convolution without bias gains one (its new bias $b'$). Under "
          "`exact`, conv without bias + BN at inference − conv with bias is")
    doc.math(f"\\Delta_{{\\text{{exact}}}} = {tex(saved['exact'])}")
    doc.p("operations saved, all of them multiplications (the `mults` difference is the same "
          f"${tex(saved['mults'])}$): folding removes BN's multiplication per element and moves its addition into "
          "the convolution's bias. A convolution that already has a bias absorbs the addition into it and saves "
          f"both, ${tex(with_bias)}$.")
    return str(doc)
