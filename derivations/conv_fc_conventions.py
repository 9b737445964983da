"""Seed 002: conv and fully connected FLOPs under every counting convention, and where each formula comes from."""
from __future__ import annotations

import sympy

import symcost
from symcost import CONVENTIONS
from symcost.conventions import CORE
from symcost.symbols import C_in, C_out, F_in, F_out, H, W, per_axis

from ._doc import Doc, equal, md_escape, mnum, num, require, same, tex

TITLE = "Convolution and fully connected FLOPs under each convention (seed 002)"
K_h, K_w = per_axis("K", 2)

#: the conventions this page covers: symcost's own and the seed's (fritz); peer tools' presets (symcost/peers.py)
#: are derived against the tools themselves in tests/test_peers.py
SEEDED = {name: CONVENTIONS[name] for name in (*CORE, "fritz")}
#: per output element, as a function of the dot-product length n: (without bias, with bias), worked out by hand
#: from the weights in symcost/conventions.py: w_mac*n + w_dot*1 + w_bias*[bias]
PER_OUTPUT = {
    "macs": (lambda n: n, lambda n: n),                   # 1 per MAC, nothing else
    "flops": (lambda n: 2 * n, lambda n: 2 * n + 1),      # 2 per MAC, +1 bias add
    "exact": (lambda n: 2 * n - 1, lambda n: 2 * n),      # n mults + (n - 1) adds, +1 bias add
    "mults": (lambda n: n, lambda n: n),                  # the n multiplications
    "torch": (lambda n: 2 * n, lambda n: 2 * n),          # FlopCounterMode: 2 per MAC, bias ignored
}
#: fritz weighs a convolution's MAC once and a dense layer's twice (seed 001)
FRITZ = {"conv": (lambda n: n, lambda n: n + 1), "linear": (lambda n: 2 * n, lambda n: 2 * n + 1)}


def expected_per_output(name: str, family: str, bias: bool, n):
    table = FRITZ[family] if name == "fritz" else PER_OUTPUT[name]
    return table[int(bias)](n)


def _conventions_covered() -> None:
    require(set(PER_OUTPUT) | {"fritz"} == set(SEEDED),
            f"conventions are now {sorted(SEEDED)}: add the new one's hand-derived row here")


def per_output_rows(costs: dict, outputs, kind: str, n) -> list:
    """One table row per convention: the cost per output element without and with bias, each checked against
    the hand-derived value."""
    rows = []
    for name, conv in SEEDED.items():
        cells = []
        for bias in (False, True):
            per = sympy.simplify(conv.count(costs[bias]) / outputs)
            label = "conv" if kind == "conv" else "FC"
            same(per, expected_per_output(name, kind, bias, n), f"{label} per output, {name}, bias={bias}")
            cells.append(f"${tex(per)}$")
        rows.append([f"`{name}`", *cells])
    return rows


def derive() -> str:
    _conventions_covered()
    doc = Doc(TITLE, "Source: `shared/seeds/002_a91e65a0fc79e199.txt` (a blog note on parameters and FLOPs). "
                     "It ends by saying that numbers differ between authors \"because of whether biases are counted "
                     "and whether a MAC is two operations\". This page makes each of those choices a named "
                     "convention and derives every formula from symcost's layer formulas; the script raises if any "
                     "step does not hold.")

    # ---- 1. conv parameters -------------------------------------------------------------
    same_conv = dict(groups=1, padding="same", stride=1, dilation=1)
    convs = {bias: symcost.layer("conv2d", bias=bias, **same_conv).cost((1, C_in, H, W)) for bias in (False, True)}
    same(convs[True].params, C_out * K_h * K_w * C_in + C_out, "conv params with bias")
    same(convs[False].params, C_out * K_h * K_w * C_in, "conv params without bias")
    doc.h2("1. Convolution parameters")
    doc.p("One output channel has a $K_h \\times K_w$ kernel for each of the $C_{in}$ input channels, and there are "
          "$C_{out}$ output channels, plus one bias each. symcost's `conv2d` (groups $g = 1$):")
    doc.math(f"\\text{{params}} = {tex(convs[True].params)}")
    doc.p("the seed's $C_{out} \\times K_H \\times K_W \\times C_{in} + C_{out}$ (without bias the $C_{out}$ "
          "term goes).")

    # ---- 2. one output is a dot product -----------------------------------------------------
    n = K_h * K_w * C_in
    outputs = C_out * H * W
    for bias, cost in convs.items():
        require(tuple(cost.output_shape) == (1, C_out, H, W), f"'same' output {cost.output_shape}")
        same(cost.macs, outputs * n, "conv MACs")
        same(cost.op("dot"), outputs, "conv dot products")
        same(cost.op("bias"), outputs if bias else 0, "conv bias adds")
    doc.h2("2. One output element is a dot product of length $n = K_h K_w C_{in}$")
    doc.p("With 'same' padding and stride 1 the output is $C_{out} \\times H \\times W$ (the seed's "
          "$I_H \\times I_W$). Each output element is the dot product of a $K_h \\times K_w \\times C_{in}$ kernel "
          "with the input window under it: $n$ multiplications and, since adding $n$ numbers takes $n - 1$ "
          "additions, $n - 1$ additions (the seed's equation 1); a bias adds one more (its equation 2). "
          "symcost records exactly these as primitive counts for the whole layer:")
    doc.math(f"\\text{{mac}} &= {tex(convs[True].macs)}",
             f"\\text{{dot}} &= {tex(convs[True].op('dot'))}",
             f"\\text{{bias}} &= {tex(convs[True].op('bias'))} \\quad (0 \\text{{ without bias}})")
    doc.p("A convention is one weight per primitive (`symcost/conventions.py`); for these three:")
    rows = []
    for name, conv in SEEDED.items():
        wc, wl = conv.weights_for("conv"), conv.weights_for("linear")
        mac = str(wc["mac"]) if wc["mac"] == wl["mac"] else f"{wc['mac']} (conv), {wl['mac']} (linear)"
        require(wc["dot"] == wl["dot"] and wc["bias"] == wl["bias"], f"{name}: conv and linear differ beyond mac")
        rows.append([f"`{name}`", mac, str(wc["dot"]), str(wc["bias"]), md_escape(conv.source)])
    doc.table(["convention", "mac", "dot", "bias", "source"], rows)

    # ---- 3. per output under each convention --------------------------------------------------
    rows = per_output_rows(convs, outputs, "conv", n)
    doc.h2("3. Per output element, under each convention")
    doc.p("The layer's count divided by the $C_{out} H W$ outputs, simplified by sympy and checked against "
          "$w_{mac} n + w_{dot} + w_{bias}[\\text{bias}]$ worked out by hand:")
    doc.table(["convention", "without bias", "with bias"], rows)
    doc.p("So the three formulas one meets are three conventions, not three disagreements:")
    doc.bullets([
        "$2 K_h K_w C_{in} - 1$: every multiplication and every addition once, no bias (`exact`); the seed's "
        "equations 1, 3 and 4.",
        "$2 K_h K_w C_{in}$: either the same with a bias (`exact`, the seed's equation 2: the bias add replaces the "
        "missing $n$-th addition), or \"a MAC is two FLOPs\" without bias (`flops`), or PyTorch's "
        "`FlopCounterMode`, which ignores the bias either way (`torch`).",
        "$K_h K_w C_{in}$: multiply-accumulates (`macs`, what torchvision and the ResNet/MobileNet papers call "
        "FLOPs), which is also the number of multiplications (`mults`).",
    ])
    whole = {bias: CONVENTIONS["exact"].count(convs[bias]) for bias in (False, True)}
    same(whole[False], (2 * n - 1) * C_out * H * W, "whole conv, exact, no bias")
    same(whole[True], 2 * n * C_out * H * W, "whole conv, exact, bias")
    doc.p("For the whole layer multiply by the $C_{out} \\times H \\times W$ outputs; under `exact`:")
    doc.math(f"\\text{{without bias}} &= {tex(sympy.factor(whole[False]))}",
             f"\\text{{with bias}} &= {tex(sympy.factor(whole[True]))}")
    doc.p("the seed's equation 4, $(K_H K_W C_{in} + K_H K_W C_{in} - 1) \\times C_{out} \\times I_H \\times I_W$, "
          "is the first line.")

    # ---- 4. fully connected ---------------------------------------------------------------
    fcs = {bias: symcost.layer("linear", bias=bias).cost((1, F_in)) for bias in (False, True)}
    same(fcs[True].params, F_out * F_in + F_out, "FC params")
    rows = per_output_rows(fcs, F_out, "linear", F_in)
    same(CONVENTIONS["exact"].count(fcs[False]), (2 * F_in - 1) * F_out, "FC exact no bias")
    same(CONVENTIONS["exact"].count(fcs[True]), 2 * F_in * F_out, "FC exact bias")
    doc.h2("4. Fully connected: the same with $n = N_{in}$")
    doc.p("symcost's `linear` names the sizes $F_{in}$ and $F_{out}$ (the seed's $N_{in}$, $N_{out}$). Each of the "
          "$F_{out}$ outputs is a dot product of length $F_{in}$:")
    doc.math(f"\\text{{params}} = {tex(fcs[True].params)}")
    doc.p("Per output:")
    doc.table(["convention", "without bias", "with bias"], rows)
    doc.p("Under `exact` the layer is $(2 F_{in} - 1) F_{out}$ without bias and $2 F_{in} F_{out}$ with, the seed's "
          "$(N_{in} + N_{in} - 1) \\times N_{out}$ and $(N_{in} + N_{in}) \\times N_{out}$. (`fritz` counts a dense "
          "layer's MAC twice, unlike its convolutions; see [seed001_keras_table.md](seed001_keras_table.md).)")

    # ---- 5. the seed's numbers ---------------------------------------------------------------
    doc.h2("5. The seed's example in numbers")
    conv_out, conv_n = 16 * 28 * 28, 5 * 5 * 3            # 12544 outputs, dot products of length 75
    fc_out, fc_n = 64, 128
    hand = {   # the seed's numbers, worked out by hand per convention: (without bias, with bias)
        "conv": {"macs": (conv_out * conv_n,) * 2,                                   # 940800
                 "flops": (2 * conv_n * conv_out, (2 * conv_n + 1) * conv_out),       # 1881600, 1894144
                 "exact": ((2 * conv_n - 1) * conv_out, 2 * conv_n * conv_out),       # 1869056, 1881600
                 "mults": (conv_out * conv_n,) * 2,
                 "torch": (2 * conv_n * conv_out,) * 2,
                 "fritz": (conv_n * conv_out, (conv_n + 1) * conv_out)},              # 940800, 953344
        "linear": {"macs": (fc_out * fc_n,) * 2,                                     # 8192
                   "flops": (2 * fc_n * fc_out, (2 * fc_n + 1) * fc_out),             # 16384, 16448
                   "exact": ((2 * fc_n - 1) * fc_out, 2 * fc_n * fc_out),             # 16320, 16384
                   "mults": (fc_out * fc_n,) * 2,
                   "torch": (2 * fc_n * fc_out,) * 2,
                   "fritz": (2 * fc_n * fc_out, (2 * fc_n + 1) * fc_out)},
    }
    conv_num = {bias: symcost.layer("conv2d", symbolic=False, in_channels=3, out_channels=16, kernel_size=5,
                                    padding="same", bias=bias).cost((1, 3, 28, 28)) for bias in (False, True)}
    fc_num = {bias: symcost.layer("linear", symbolic=False, in_features=128, out_features=64, bias=bias)
              .cost((1, 128)) for bias in (False, True)}
    equal(conv_out, 12544, "conv outputs")                                          # 16*28*28
    equal(conv_n, 75, "conv dot-product length")                                      # 5*5*3
    equal(tuple(conv_num[True].output_shape), (1, 16, 28, 28), "conv output shape")
    equal(conv_num[True].params, 16 * 5 * 5 * 3 + 16, "conv params")                  # 1216
    equal(fc_num[True].params, 64 * 128 + 64, "FC params")                             # 8256
    for bias in (False, True):
        equal(conv_num[bias].macs, conv_out * conv_n, "conv MACs")
        equal(fc_num[bias].macs, fc_out * fc_n, "FC MACs")
    doc.p("Input $[b, 28, 28, 3]$ (NHWC; symcost takes torch's NCHW, the counts are the same), kernel "
          f"$[16, 5, 5, 3]$, 'same' padding, so $16 \\times 28 \\times 28 = {mnum(conv_out)}$ outputs, each a dot "
          f"product of length $5 \\times 5 \\times 3 = {conv_n}$; FC $128 \\to 64$: {fc_out} outputs of length "
          f"{fc_n}. Parameters: conv $16 \\cdot 5 \\cdot 5 \\cdot 3 + 16 = {mnum(conv_num[True].params)}$, FC "
          f"$64 \\cdot 128 + 64 = {mnum(fc_num[True].params)}$.")
    rows = []
    conv_values = []
    for name, conv in SEEDED.items():
        cells = []
        for family, costs in (("conv", conv_num), ("linear", fc_num)):
            for bias in (False, True):
                value = equal(conv.count(costs[bias]), hand[family][name][int(bias)], f"{family} {name} bias={bias}")
                cells.append(num(value))
                if family == "conv":
                    conv_values.append(value)
        rows.append([f"`{name}`", *cells])
    doc.table(["convention", "conv, no bias", "conv, bias", "FC, no bias", "FC, bias"], rows, "lrrrr")
    doc.p(f"The seed's own formulas give the `exact` row: conv $(2 \\cdot {conv_n} - 1) \\cdot {mnum(conv_out)} = "
          f"{mnum(hand['conv']['exact'][0])}$ without bias and $2 \\cdot {conv_n} \\cdot {mnum(conv_out)} = "
          f"{mnum(hand['conv']['exact'][1])}$ with; FC $(2 \\cdot {fc_n} - 1) \\cdot {fc_out} = "
          f"{mnum(hand['linear']['exact'][0])}$ and $2 \\cdot {fc_n} \\cdot {fc_out} = "
          f"{mnum(hand['linear']['exact'][1])}$. The same convolution is anything from {num(min(conv_values))} to "
          f"{num(max(conv_values))} \"FLOPs\" depending on the convention, which is why every number symcost prints "
          "names its convention.")
    return str(doc)
