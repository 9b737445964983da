"""Seed 004: Conv2d(1, 32, [4, 10], stride [2, 8]) + BatchNorm2d(32) (training) + Hardtanh on [1, 1, 130, 40]."""
from __future__ import annotations

import sympy

import symcost
from symcost import CONVENTIONS
from symcost.layers.shapes import conv_output_size

from ._doc import Doc, equal, mnum, num, require, tex

TITLE = "A worked example: Conv2d + BatchNorm2d + Hardtanh, multiplications and parameters (seed 004)"

INPUT = (1, 1, 130, 40)
CONV = dict(in_channels=1, out_channels=32, kernel_size=(4, 10), stride=(2, 8), padding=0, bias=False)
BN = dict(num_features=32, mode="train", eps=1e-4)
ACT = dict(min_val=0.0, max_val=4 * 127 / 128, inplace=True)
SEED_CONV = 312320      # the seed's conv line
SEED_TOTAL = 344064     # the seed's total


def derive() -> str:
    doc = Doc(TITLE, "Source: `shared/seeds/004_f60989e63b022916.txt`, a worked example that counts FLOPs as "
                     "multiplications only: symcost's `mults` convention. Every number below is computed from "
                     "symcost's layer formulas and checked against the arithmetic done by hand; the script raises "
                     "if any of them differs.")
    doc.code('''
cnn0 = nn.Sequential()
cnn0.add_module("CNN-0", nn.Conv2d(1, 32, kernel_size=[4, 10], stride=[2, 8], padding=[0, 0], bias=False))
cnn0.add_module("BN-0", nn.BatchNorm2d(32, eps=1e-04))
cnn0.add_module("ReLU4-0", nn.Hardtanh(min_val=0.0, max_val=4*127/128, inplace=True))
# input [1, 1, 130, 40] = [batch, channel, height, width]
''', "python")
    mults = CONVENTIONS["mults"]

    # ---- 1. output shape ------------------------------------------------------------------
    I, k, s, p, d = sympy.symbols("I k s p d", integer=True, positive=True)
    rule = conv_output_size(I, k, s, p, d)
    height = rule.subs({I: 130, k: 4, s: 2, p: 0, d: 1})
    width = rule.subs({I: 40, k: 10, s: 8, p: 0, d: 1})
    equal(height, 64, "output height")                           # (130 - 4)/2 + 1 = 63 + 1
    equal(width, 4, "output width")                              # floor(30/8) + 1 = 3 + 1
    seed_width = sympy.Rational(40 - 10, 8) + 1                  # the seed's ((in - k)/s) + 1 before 取整
    equal(seed_width, sympy.Rational(19, 4), "unfloored width")  # 4.75
    equal(sympy.floor(seed_width), 4, "floored width")
    conv = symcost.layer("conv2d", symbolic=False, **CONV).cost(INPUT)
    equal(tuple(conv.output_shape), (1, 32, 64, 4), "conv output shape")

    doc.h2(f"1. Output shape: 32 × {height} × {width}")
    doc.p("PyTorch's output size along one axis (input $I$, kernel $k$, stride $s$, padding $p$, dilation $d$), "
          "as `symcost.layers.shapes.conv_output_size` writes it:")
    doc.math(f"O = {tex(rule)}")
    doc.math(f"H_{{out}} &= \\left\\lfloor \\frac{{130 - 3 - 1}}{{2}} \\right\\rfloor + 1 = {tex(height)}",
             f"W_{{out}} &= \\left\\lfloor \\frac{{40 - 9 - 1}}{{8}} \\right\\rfloor + 1 = "
             f"\\lfloor {tex(sympy.Rational(30, 8))} \\rfloor + 1 = {tex(width)}")
    doc.p("The seed writes the same rule as $((I - k)/s) + 1$ \"取整\" (rounded down): the height is exact, "
          f"$(130 - 4)/2 + 1 = {height}$, but the width is $(40 - 10)/8 + 1 = {tex(seed_width)} = 4.75$, which is "
          f"**floored** to ${tex(sympy.floor(seed_width))}$: the last $40 - ((4 - 1) \\cdot 8 + 10) = "
          f"{40 - ((4 - 1) * 8 + 10)}$ columns of the input are never read. With 32 output channels the output is "
          f"$32 \\times {height} \\times {width}$, as symcost's `conv2d` gives: "
          f"`{tuple(int(x) for x in conv.output_shape)}`.")
    require(40 - ((4 - 1) * 8 + 10) == 6, "unread columns")

    # ---- 2. parameters ------------------------------------------------------------------------
    bn = symcost.layer("batchnorm2d", symbolic=False, **BN).cost(tuple(conv.output_shape))
    act = symcost.layer("hardtanh", symbolic=False, **ACT).cost(tuple(bn.output_shape))
    equal(conv.params, 32 * 1 * 4 * 10, "conv params")          # 1280: no bias
    equal(bn.params, 2 * 32, "BN params")                       # 64: gamma and beta per channel
    equal(bn.buffers, 2 * 32, "BN running statistics")          # 64: running mean and variance
    equal(act.params, 0, "Hardtanh params")
    total_params = equal(conv.params + bn.params + act.params, 1344, "total params")
    doc.h2(f"2. Parameters: {conv.params} + {bn.params} = {total_params}")
    doc.table(["layer", "parameters", "by hand"], [
        ["Conv2d", num(conv.params), "$32 \\cdot 1 \\cdot 4 \\cdot 10$ (no bias)"],
        ["BatchNorm2d", num(bn.params), "$32 \\cdot 2$ ($\\gamma$, $\\beta$ per channel)"],
        ["Hardtanh", num(act.params), "none"],
        ["total", num(total_params), f"${mnum(conv.params)} + {mnum(bn.params)}$"],
    ], "lrl")
    doc.p(f"BatchNorm also keeps $2 \\cdot 32 = {bn.buffers}$ running statistics (mean and variance); they are "
          "buffers, not parameters (`module.parameters()` does not list them; Keras calls them \"non-trainable "
          "params\"), so the seed rightly leaves them out.")

    # ---- 3. conv multiplications, and the seed's slip -----------------------------------------------
    outputs = 32 * 64 * 4                                        # 8192 output elements
    per_output = 1 * 4 * 10                                      # C_in * K_h * K_w = 40 multiplications each
    conv_mults = equal(mults.count(conv), outputs * per_output, "conv multiplications")   # 327680
    equal(conv_mults, 327680, "conv multiplications")
    equal(conv.macs, conv_mults, "MACs = multiplications")
    require(SEED_CONV != conv_mults, "the seed's conv line is not a slip after all")
    factors = sympy.factorint(SEED_CONV)
    require(factors == {2: 10, 5: 1, 61: 1}, f"312320 = {factors}")
    require(all(f % 61 for f in (32, 64, 4, 4, 10)), "a factor of the seed's product is a multiple of 61")
    as_rows = sympy.Rational(SEED_CONV, 32 * 4 * 40)             # what the height would have to be
    as_per_output = sympy.Rational(SEED_CONV, 32 * 64 * 4)       # what the per-output count would have to be
    equal(as_rows, 61, "312320 / (32*4*40)")
    equal(as_per_output, sympy.Rational(305, 8), "312320 / (32*64*4)")
    require(not as_per_output.is_integer, "312320 is a whole number of multiplications per output")
    gap = conv_mults - SEED_CONV
    equal(gap, 3 * 32 * 4 * 40, "327680 - 312320")               # 15360: three rows of outputs

    doc.h2(f"3. Conv multiplications: {conv_mults}, not {SEED_CONV}")
    doc.p(f"Each of the $32 \\cdot 64 \\cdot 4 = {mnum(outputs)}$ output elements is a dot product over "
          f"$C_{{in}} K_h K_w = 1 \\cdot 4 \\cdot 10 = {per_output}$ inputs, one multiplication each. symcost's "
          "`conv2d` under the `mults` convention:")
    doc.math(f"32 \\cdot 64 \\cdot 4 \\cdot 4 \\cdot 10 = {mnum(outputs)} \\cdot {per_output} = {mnum(conv_mults)}")
    doc.p(f"**The seed's line \"FLOPs=32✖64✖4✖4✖10=312320\" is an arithmetic slip**: its own product is "
          f"{num(conv_mults)}. What product does give {num(SEED_CONV)}?")
    factored = " \\cdot ".join(f"{q}^{{{e}}}" if e > 1 else str(q) for q, e in sorted(factors.items()))
    doc.bullets([
        f"${mnum(SEED_CONV)} = {factored}$ (`sympy.factorint`): it has the prime factor 61, which none of "
        "32, 64, 4, 4, 10 has.",
        f"$\\frac{{{mnum(SEED_CONV)}}}{{32 \\cdot 4 \\cdot 40}} = {tex(as_rows)}$: it is $32 \\cdot 61 \\cdot 4 "
        f"\\cdot 40$, the product with 61 output rows in place of 64 ({num(gap)} = 3 rows × 32 · 4 · 40 fewer).",
        f"$\\frac{{{mnum(SEED_CONV)}}}{{32 \\cdot 64 \\cdot 4}} = {tex(as_per_output)}$, not a whole number: no "
        "per-output count turns the true 32 × 64 × 4 outputs into it.",
    ])
    doc.p(f"The seed's own total settles it (section 6): it only adds up with {conv_mults}.")

    # ---- 4. BN in training ------------------------------------------------------------------------
    n = 32 * 64 * 4                                              # elements
    m = 64 * 4                                                   # elements per channel
    equal(bn.op("mul"), 32 * m + n, "BN training multiplications")   # squares + scales
    bn_mults = equal(mults.count(bn), 32 * 64 * 4 * 2, "BN mults")   # 16384
    equal(bn_mults, 16384, "BN mults")
    doc.h2(f"4. BatchNorm2d in training: {bn_mults} multiplications")
    doc.p("In training BN normalises each channel with the statistics of the current batch. Per channel of "
          f"$m = 64 \\cdot 4 = {m}$ elements the variance needs $m$ squares, and the normalised value is multiplied "
          "by the scale, $m$ more; the mean needs none (additions and a division). symcost's `batchnorm2d` with "
          "`mode=\"train\"` counts these primitive operations:")
    doc.table(["primitive", "count", "what"], [
        ["`mul`", num(bn.op("mul")), f"$32 \\cdot {m}$ squares $+$ ${mnum(n)}$ scales"],
        ["`add`", num(bn.op("add")), "sums for mean and variance, $x - \\mu$, $+\\epsilon$, $+\\beta$"],
        ["`div`", num(bn.op("div")), "3 per channel (mean, variance, scale)"],
        ["`fn`", num(bn.op("fn")), "a square root per channel"],
    ], "lrl")
    require(set(bn.ops) == {"mul", "add", "div", "fn"}, f"BN train ops {sorted(bn.ops)}")
    doc.p("`mults` keeps only the multiplications:")
    doc.math(f"32 \\cdot 64 \\cdot 4 \\cdot 2 = {mnum(bn_mults)}")
    doc.p("the seed's number. (`eps=1e-04` changes no count.)")

    # ---- 5. Hardtanh ---------------------------------------------------------------------------------
    act_mults = equal(mults.count(act), 0, "Hardtanh mults")
    equal(act.op("cmp"), 2 * n, "Hardtanh comparisons")
    doc.h2("5. Hardtanh: no multiplications")
    doc.p(f"$\\min(\\max(x, 0), 4 \\cdot 127/128)$ is two comparisons per element ({num(act.op('cmp'))} in all, "
          "symcost's `cmp`), no multiplication and no parameter: 0 under `mults`.")

    # ---- 6. total -------------------------------------------------------------------------------------
    total = equal(conv_mults + bn_mults + act_mults, SEED_TOTAL, "total multiplications")
    with_slip = SEED_CONV + bn_mults
    require(with_slip != SEED_TOTAL, "the slip would add up")
    equal(with_slip, 328704, "312320 + 16384")
    doc.h2(f"6. Total: {total} multiplications, {total_params} parameters")
    doc.table(["layer", "output", "parameters", "multiplications (`mults`)"], [
        ["Conv2d", "32 × 64 × 4", num(conv.params), num(conv_mults)],
        ["BatchNorm2d (train)", "32 × 64 × 4", num(bn.params), num(bn_mults)],
        ["Hardtanh", "32 × 64 × 4", num(act.params), num(act_mults)],
        ["total", "", num(total_params), num(total)],
    ], "llrr")
    doc.math(f"{mnum(conv_mults)} + {mnum(bn_mults)} + {act_mults} = {mnum(total)}")
    doc.p(f"This is the seed's total, {num(SEED_TOTAL)}, so the seed added the correct conv count; with its "
          f"printed {num(SEED_CONV)} the sum would be {num(with_slip)}.")
    return str(doc)
