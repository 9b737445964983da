"""Seed 001: the Fritz AI per-layer table of a Keras Conv2D -> BN -> Flatten -> Dense model, reproduced."""
from __future__ import annotations

import symcost
from symcost import CONVENTIONS

from ._doc import Doc, equal, fixed, mnum, num, require

TITLE = "The Keras table: Conv2D → BatchNorm → Flatten → Dense on 32×32×3 (seed 001)"

#: the seed's table: MFLOPS and Keras "Param #" per layer
SEED_MFLOPS = {"conv2d_1": "0.92", "batch_normalization_1": "0.07", "flatten_1": "0.00", "dense_1": "2.82"}
SEED_PARAMS = {"conv2d_1": 896, "batch_normalization_1": 128, "flatten_1": 0, "dense_1": 1409067}
SEED_TOTALS = {"total": 1410091, "trainable": 1410027, "non-trainable": 64}


def mflops(n: int) -> str:
    """MFLOPS as the table prints them: n / 10**6, two decimals."""
    return fixed(n, 10**6, 2)


def layers() -> list[tuple[str, str, object, tuple]]:
    """(Keras name, Keras type, symcost layer, input shape in torch's NCHW)."""
    return [
        ("conv2d_1", "Conv2D", symcost.layer("conv2d", symbolic=False, in_channels=3, out_channels=32,
                                             kernel_size=3, padding="same"), (1, 3, 32, 32)),
        ("batch_normalization_1", "BatchNormalization",
         symcost.layer("batchnorm2d", symbolic=False, num_features=32, mode="eval"), (1, 32, 32, 32)),
        ("flatten_1", "Flatten", symcost.layer("flatten", symbolic=False), (1, 32, 32, 32)),
        ("dense_1", "Dense", symcost.layer("linear", symbolic=False, in_features=32768, out_features=43), (1, 32768)),
    ]


def derive() -> str:
    doc = Doc(TITLE, "Source: `shared/seeds/001_e9bfe6598303e1df.txt`, a question on why a Keras CNN evaluates "
                     "about twice as slowly with BatchNormalization, answered with a per-layer table from the "
                     "Fritz AI benchmark library. This page rebuilds that table from symcost's layer formulas; the "
                     "script raises if any number differs from the seed or from the arithmetic done by hand.")
    doc.code('''
model = Sequential()
model.add(Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3), padding="same"))
model.add(BatchNormalization())
model.add(Flatten())
model.add(Dense(43, activation='softmax'))
''', "python")
    doc.p("Keras is NHWC, symcost (like torch) NCHW; transposing the layout changes no count. BatchNormalization is "
          "evaluated in inference mode (`mode=\"eval\"`: one multiply and one add per element, see "
          "[bn_inference.md](bn_inference.md)).")

    costs = {}
    for key, _, lay, shape in layers():
        costs[key] = lay.cost(shape)
    equal(tuple(costs["conv2d_1"].output_shape), (1, 32, 32, 32), "conv output")
    equal(tuple(costs["flatten_1"].output_shape), (1, 32768), "flatten output")       # 32*32*32
    equal(tuple(costs["dense_1"].output_shape), (1, 43), "dense output")

    # ---- 1. parameters -------------------------------------------------------------------
    keras_params = {k: equal(c.params + c.buffers, SEED_PARAMS[k], f"{k} Keras params") for k, c in costs.items()}
    equal(costs["conv2d_1"].params, 3 * 3 * 3 * 32 + 32, "conv params")                  # 896
    equal(costs["batch_normalization_1"].params, 2 * 32, "BN trainable")                   # gamma, beta: 64
    equal(costs["batch_normalization_1"].buffers, 2 * 32, "BN running stats")              # mean, variance: 64
    equal(costs["dense_1"].params, 32768 * 43 + 43, "dense params")                       # 1409067
    trainable = sum(int(c.params) for c in costs.values())
    frozen = sum(int(c.buffers) for c in costs.values())
    equal(trainable + frozen, SEED_TOTALS["total"], "total params")
    equal(trainable, SEED_TOTALS["trainable"], "trainable params")
    equal(frozen, SEED_TOTALS["non-trainable"], "non-trainable params")
    doc.h2("1. Parameters")
    doc.table(["layer", "Keras Param #", "symcost params + buffers", "by hand"], [
        ["conv2d_1", num(SEED_PARAMS["conv2d_1"]), f"{costs['conv2d_1'].params} + 0",
         "$3 \\cdot 3 \\cdot 3 \\cdot 32 + 32$"],
        ["batch_normalization_1", num(SEED_PARAMS["batch_normalization_1"]),
         f"{costs['batch_normalization_1'].params} + {costs['batch_normalization_1'].buffers}",
         "$\\gamma, \\beta$: $2 \\cdot 32$; moving mean and variance: $2 \\cdot 32$"],
        ["flatten_1", num(SEED_PARAMS["flatten_1"]), "0 + 0", "a reshape"],
        ["dense_1", num(SEED_PARAMS["dense_1"]), f"{num(costs['dense_1'].params)} + 0",
         "$32768 \\cdot 43 + 43$"],
    ], "lrrl")
    bn = costs["batch_normalization_1"]
    doc.p(f"Keras' \"Param #\" counts BatchNormalization's moving statistics too ({bn.params} trainable + "
          f"{bn.buffers} non-trainable = {keras_params['batch_normalization_1']});"
          " symcost keeps them apart as `params` and `buffers`. Summed: "
          f"{num(trainable)} trainable + {num(frozen)} non-trainable = {num(trainable + frozen)}, the seed's \"Total "
          f"params: {num(SEED_TOTALS['total'])} / Trainable params: {num(SEED_TOTALS['trainable'])} / Non-trainable "
          f"params: {SEED_TOTALS['non-trainable']}\".")

    # ---- 2. the MFLOPS column under `fritz` ------------------------------------------------------
    fritz = CONVENTIONS["fritz"]
    counted = {k: int(fritz.count(c)) for k, c in costs.items()}
    conv_macs = 32 * 32 * 32 * (3 * 3 * 3)                                             # 884736
    equal(costs["conv2d_1"].macs, conv_macs, "conv MACs")
    equal(costs["dense_1"].macs, 43 * 32768, "dense MACs")                            # 1409024
    hand = {
        "conv2d_1": 32 * 32 * 32 * (3 * 3 * 3 + 1),            # 917504: one per MAC + one bias add, per output
        "batch_normalization_1": 2 * 32 * 32 * 32,             # 65536: a multiply and an add per element
        "flatten_1": 0,                                        # a view
        "dense_1": 43 * (2 * 32768 + 1),                       # 2818091: two per MAC + one bias add, per output
    }
    for k in costs:
        equal(counted[k], hand[k], f"{k} under fritz")
        equal(mflops(counted[k]), SEED_MFLOPS[k], f"{k} MFLOPS")
    doc.h2("2. The MFLOPS column: the `fritz` convention")
    doc.p("symcost's `fritz` convention weighs each primitive once, except that a convolution's multiply-"
          "accumulate counts **once** and a dense layer's **twice** (`symcost/conventions.py`, "
          "`family_weights={\"conv\": {\"mac\": 1}}`). Layer by layer, MFLOPS = count / $10^6$, to two decimals:")
    exprs = {
        "conv2d_1": "32 \\cdot 32 \\cdot 32 \\cdot (3 \\cdot 3 \\cdot 3 + 1)",
        "batch_normalization_1": "2 \\cdot 32 \\cdot 32 \\cdot 32",
        "flatten_1": "",
        "dense_1": "43 \\cdot (2 \\cdot 32768 + 1)",
    }
    why = {
        "conv2d_1": "one per MAC, plus the bias add, for each of the 32·32·32 outputs",
        "batch_normalization_1": "$\\alpha x + (\\beta - \\alpha\\mu)$: one multiply and one add per element",
        "flatten_1": "a reshape, no arithmetic",
        "dense_1": "two per MAC (multiply and add), plus the bias add, for each of the 43 outputs",
    }
    rows = []
    for key, typ, _, _ in layers():
        shape = ", ".join(["None", *map(str, _nhwc(costs[key].output_shape))])
        count = f"${exprs[key]} = {mnum(counted[key])}$" if exprs[key] else f"${mnum(counted[key])}$"
        rows.append([f"{key} ({typ})", f"[{shape}]", count,
                     mflops(counted[key]), SEED_MFLOPS[key], why[key]])
    doc.table(["layer", "output", "`fritz` count", "MFLOPS", "seed", "counted as"], rows, "llrrrl")

    # ---- 3. why fritz: no uniform convention gives the column --------------------------------------
    doc.h2("3. Why a convention of its own")
    doc.p("The same table under symcost's uniform conventions (MFLOPS, the exact count in parentheses):")
    names = ["macs", "flops", "exact", "fritz"]
    expected = {   # by hand, per layer: (conv, BN, flatten, dense)
        "macs": (conv_macs, 0, 0, 43 * 32768),                                        # 884736, 1409024
        "flops": (2 * conv_macs + 32768, 2 * 32768, 0, 2 * 43 * 32768 + 43),           # 1802240, 2818091
        "exact": (2 * conv_macs, 2 * 32768, 0, 2 * 43 * 32768),                        # n-1 adds + bias = 2n
        "fritz": tuple(hand[k] for k in costs),
    }
    table = {}
    for name in names:
        values = [int(CONVENTIONS[name].count(c)) for c in costs.values()]
        for got, want, k in zip(values, expected[name], costs):
            equal(got, want, f"{k} under {name}")
        table[name] = values
    rows = []
    for i, key in enumerate(costs):
        rows.append([key] + [f"{mflops(table[n][i])} ({num(table[n][i])})" for n in names] + [SEED_MFLOPS[key]])
    totals = {n: sum(table[n]) for n in names}
    rows.append(["total"] + [f"{mflops(totals[n])} ({num(totals[n])})" for n in names] + [""])
    doc.table(["layer"] + [f"`{n}`" for n in names] + ["seed"], rows, "lrrrrr")
    conv_ok = [n for n in names if mflops(table[n][0]) == SEED_MFLOPS["conv2d_1"]]
    dense_ok = [n for n in names if mflops(table[n][3]) == SEED_MFLOPS["dense_1"]]
    require(conv_ok == ["fritz"], f"conventions matching the conv column: {conv_ok}")
    require(dense_ok == ["flops", "exact", "fritz"], f"conventions matching the dense column: {dense_ok}")
    conv_no_bias = equal(mflops(conv_macs), "0.88", "conv MACs alone")
    dense_once = equal(mflops(43 * 32768 + 43), "1.41", "dense MAC once + bias")
    doc.p(f"Only `fritz` matches the conv row: counting each MAC once gives {conv_no_bias}, twice gives "
          f"{mflops(table['exact'][0])} or more; {SEED_MFLOPS['conv2d_1']} needs one per MAC plus one more per output "
          f"element. The dense row needs each MAC twice ({dense_once} with one per MAC). So the tool counts "
          "convolutions and dense layers differently, and no single per-operation weight reproduces its column.")
    relu = symcost.layer("relu", symbolic=False).cost((1, 32, 32, 32))
    softmax = symcost.layer("softmax", symbolic=False, dim=-1).cost((1, 43))
    softmax_count = equal(fritz.count(softmax), 5 * 43 - 2, "softmax under fritz")    # 5D - 2 per row of D
    for extra in (-43, softmax_count, softmax_count - 43):                            # without bias, + softmax
        equal(mflops(hand["dense_1"] + extra), mflops(hand["dense_1"]), f"dense {extra:+d}")
    relu_count = equal(fritz.count(relu), 32 * 32 * 32, "ReLU under fritz")
    equal(mflops(counted["conv2d_1"] + relu_count), "0.95", "conv + its ReLU")
    equal(conv_macs + relu_count, hand["conv2d_1"], "MACs + ReLU = MACs + bias")
    doc.p("What the table cannot tell apart:")
    doc.bullets([
        f"The conv's extra {num(32 * 32 * 32)} (one per output element) is read here as the bias add; one "
        "comparison per element for the fused `activation=\"relu\"` would give exactly the same number. It is not "
        f"both: bias and ReLU together would be {mflops(counted['conv2d_1'] + relu_count)}. `fritz` counts the "
        "layer without its fused activation.",
        f"The dense bias adds ({43}) and the fused softmax ({softmax_count} under `fritz`) are far below the "
        f"table's 0.01 MFLOPS resolution: {mflops(hand['dense_1'])} with or without either.",
        f"BN's {SEED_MFLOPS['batch_normalization_1']} does pin one multiply *and* one add per element: "
        f"multiplications alone would be {mflops(32 * 32 * 32)}.",
    ])
    require(mflops(hand["dense_1"] - 43) == mflops(hand["dense_1"]), "dense bias visible at 2 decimals")
    require(mflops(32 * 32 * 32) != SEED_MFLOPS["batch_normalization_1"], "BN multiplications alone match")

    # ---- 4. the question itself -------------------------------------------------------------------
    asked = 32 * 32 * 32 * 3 * 3
    equal(asked * 3, conv_macs, "the question's estimate misses C_in")
    share = fixed(100 * counted["batch_normalization_1"], totals["fritz"], 1)
    doc.h2("4. The question it answered")
    doc.p(f"The asker estimated the convolution at $32 \\cdot 32 \\cdot 32 \\cdot 3 \\cdot 3 = {mnum(asked)}$ "
          f"multiplications; that leaves out the 3 input channels: $32 \\cdot 32 \\cdot 32 \\cdot 3 \\cdot 3 \\cdot 3 "
          f"= {mnum(conv_macs)}$ MACs. Their other estimate holds: BN at inference is one multiplication per element "
          f"({num(32 * 32 * 32)}), plus one addition. Under `fritz` BN is {share} % of the model's "
          f"{mflops(totals['fritz'])} MFLOPS, so the doubled evaluation time the question reports is not explained by "
          "arithmetic; the asker's own conclusion was an inefficiency in Keras' BatchNormalization at test time.")
    return str(doc)


def _nhwc(shape):
    """torch's (N, C, H, W) as Keras prints it, (H, W, C); other ranks unchanged, batch dropped."""
    dims = [int(d) for d in shape[1:]]
    return dims[1:] + dims[:1] if len(dims) == 3 else dims
