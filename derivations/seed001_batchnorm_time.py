"""Seed 001, the question itself: why a CNN with BatchNorm evaluates slower although BN adds few FLOPs.

The answer is memory traffic.  An eval-mode BatchNorm does one multiply and one add per element, but it reads its
whole input tensor and writes a whole output tensor: its arithmetic intensity is about 0.25 FLOP/byte at fp32, far
below the ridge of any CPU or GPU, so its time follows its bytes, and its share of the bytes is many times its share
of the FLOPs.  This page derives both shares from symcost's traced formulas, predicts the times with the roofline of
``symcost/roofline.py`` on the preset devices, and records one measurement (``python -m
derivations.seed001_batchnorm_time`` measures again and prints; the page never re-measures, so it stays
reproducible).
"""
from __future__ import annotations

import sympy

from ._doc import Doc, equal, fixed, mnum, num, require, same

TITLE = "Why BatchNorm slows the seed-001 CNN down: bytes, not FLOPs (seed 001)"

#: batch sizes on the page: one image, and Keras' default ``predict``/``evaluate`` batch of 32
BATCHES = (1, 32)
N = sympy.Symbol("N", integer=True, positive=True)

#: one measurement on the machine the pages were generated on (``python -m derivations.seed001_batchnorm_time``
#: prints a fresh one; bench/RESULTS.md records the same run).  Times in microseconds, medians.
RECORDED = {
    "regime": "CPU (AMD EPYC, 2 logical CPUs shared with other jobs), 1 thread, fp32, torch 2.14.1, "
              "torch.no_grad(), eval(), freed memory kept (0 page faults per forward)",
    "repeats": 60,
    "device": {"peak_flops": 53.86e9, "bandwidth": 19.49e9, "overhead_s": 3.78e-6},   # bench/device_cpu_1thread.json
    "min": {1: {"forward_with_us": 181.2, "forward_without_us": 159.0,
                "layers_us": {"0": 45.7, "1": 7.1, "2": 19.6, "3": 3.8, "4": 96.3}},
            32: {"forward_with_us": 3468.7, "forward_without_us": 3261.4,
                 "layers_us": {"0": 928.8, "1": 127.1, "2": 215.5, "3": 14.4, "4": 2128.5}}},
    "median": {1: {"forward_with_us": 197.6, "forward_without_us": 172.6,
                   "layers_us": {"0": 48.1, "1": 8.2, "2": 21.1, "3": 4.2, "4": 100.9}},
               32: {"forward_with_us": 6948.1, "forward_without_us": 4082.3,
                    "layers_us": {"0": 1065.9, "1": 164.8, "2": 238.3, "3": 19.1, "4": 2300.9}}},
    "ratio_paired": {1: 1.136, 32: 1.095},
}


# ---------------------------------------------------------------------------------------------- the models

def build(with_bn: bool = True, seed: int = 0):
    """The seed's Keras model in PyTorch: Conv2d(3, 32, 3, padding=1) + ReLU -> [BN] -> Flatten -> Linear(32768, 43).

    Both variants get the same conv and linear weights (same seed); BN gets random running statistics."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    conv, linear = nn.Conv2d(3, 32, 3, padding=1), nn.Linear(32 * 32 * 32, 43)
    layers = [conv, nn.ReLU()]
    if with_bn:
        bn = nn.BatchNorm2d(32)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
        layers.append(bn)
    layers += [nn.Flatten(), linear]
    return nn.Sequential(*layers).eval()


_TRACES: dict = {}


def traced(with_bn: bool, batch=N):
    """symcost's trace of the model (cached: the page uses each several times)."""
    from symcost.tracing import trace

    key = (with_bn, batch)
    if key not in _TRACES:
        _TRACES[key] = trace(build(with_bn), (batch, 3, 32, 32))
    return _TRACES[key]


# ---------------------------------------------------------------------------------------------- measuring

def measure(repeats: int = 30, batches=BATCHES, threads: int | None = 1, keep_memory: bool = True) -> dict:
    """Time both models on this CPU: whole forward with and without BN (interleaved), and every layer of the BN
    model (``symcost.roofline.measure_layers``).  Seconds, as the median and as the minimum of ``repeats``
    samples (interference from other work on a shared machine only adds time, so the minimum is the least
    disturbed figure).

    ``keep_memory``: first stop glibc from returning freed memory to the OS (``symcost.roofline.keep_freed_memory``,
    process-wide, irreversible); otherwise every batch-32 forward page-faults its activations in afresh, which
    costs milliseconds on a virtual machine and dwarfs what is being compared.  Page faults per forward are
    recorded either way."""
    import statistics
    import time

    import torch

    from symcost.roofline import keep_freed_memory, measure_layers, page_faults, regime

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        kept = keep_freed_memory() if keep_memory else False
        out: dict = {"regime": regime(), "repeats": repeats, "keep_memory": kept}
        with_bn, without = build(True), build(False)
        for n in batches:
            x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                for _ in range(3):
                    with_bn(x), without(x)
                a, b = [], []
                fa, fb = [], []
                for _ in range(repeats):
                    for model, store, faults in ((with_bn, a, fa), (without, b, fb)):
                        f0 = page_faults() or 0
                        t0 = time.perf_counter()
                        model(x)
                        store.append(time.perf_counter() - t0)
                        faults.append((page_faults() or 0) - f0)
            mc = traced(True, n)
            m = measure_layers(with_bn, mc, (n, 3, 32, 32), repeats=repeats)
            names = [r.name for r in mc.rows if r.layer != "unused"]
            out[n] = {"faults_with": statistics.median(fa), "faults_without": statistics.median(fb),
                      "ratio_paired": statistics.median(x / y for x, y in zip(a, b))}
            for stat, fn in (("median", statistics.median), ("min", min)):
                per = {name: fn(m.samples[i]) for i, name in enumerate(names)}
                out[n][stat] = {"forward_with_s": fn(a), "forward_without_s": fn(b), "bn_s": per["2"],
                                "layers_s": sum(per.values()), "per_layer_s": per}
        return out
    finally:
        torch.set_num_threads(old)


def report(m: dict) -> str:
    from symcost.roofline import regime_text

    lines = [f"seed 001 model, measured on {regime_text(m['regime'])}, {m['repeats']} interleaved repeats, "
             f"{'freed memory kept (mallopt)' if m['keep_memory'] else 'default allocator'}"]
    for n in BATCHES:
        if n not in m:
            continue
        lines.append(f"  batch {n:>2}: page faults per forward (median): with BN {m[n]['faults_with']:,.0f}, "
                     f"without {m[n]['faults_without']:,.0f}; with/without, median of the pairs' ratios: "
                     f"{m[n]['ratio_paired']:.3f}")
        for stat in ("median", "min"):
            r = m[n][stat]
            lines.append(f"  batch {n:>2} {stat:>6}: forward with BN {r['forward_with_s'] * 1e6:9.1f} us, without "
                         f"{r['forward_without_s'] * 1e6:9.1f} us (x{r['forward_with_s'] / r['forward_without_s']:.3f}"
                         f"); BN layer {r['bn_s'] * 1e6:8.1f} us = {100 * r['bn_s'] / r['layers_s']:.1f} % of the "
                         f"layers' {r['layers_s'] * 1e6:.1f} us")
            lines.append("               per layer: " + ", ".join(f"{k} {v * 1e6:.1f} us"
                                                            for k, v in r["per_layer_s"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the page

def _pct(num_: int | sympy.Expr, den: int | sympy.Expr, places: int = 1) -> str:
    """100 * num/den as a rounded decimal string, computed exactly."""
    q = sympy.Rational(sympy.Integer(num_), sympy.Integer(den))
    return fixed(int(q.p * 10 ** 6), int(q.q * 10 ** 4), places)


def derive() -> str:
    from symcost import CONVENTIONS
    from symcost.roofline import PRESETS, Device, itemsize, predict

    flops_c = CONVENTIONS["flops"]
    doc = Doc(TITLE, "Source: `shared/seeds/001_e9bfe6598303e1df.txt`: a Keras CNN, Conv2D(32, 3×3, same, ReLU) → "
                     "BatchNormalization → Flatten → Dense(43) on 32×32×3 images, evaluates its test set in about "
                     "4.6 s with BN and 2.3 s without, although BN \"only adds one multiplication per input\". "
                     "The [Keras table page](seed001_keras_table.md) reproduces the FLOP column the asker found "
                     "(BN 0.07 of 3.81 MFLOPS). This page answers the question: BN's cost is the tensor it reads and "
                     "writes, not its arithmetic.")
    doc.code('''
nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),   # Conv2D(32, (3, 3), activation="relu", padding="same")
              nn.BatchNorm2d(32),                           # BatchNormalization(), eval mode
              nn.Flatten(), nn.Linear(32 * 32 * 32, 43))    # Flatten(), Dense(43) (softmax left out)
''', "python")

    # ---- 1. the traced formulas -----------------------------------------------------------------------
    mc, mc0 = traced(True), traced(False)
    rows = {r.name: r for r in mc.rows}
    equal(list(rows), ["0", "1", "2", "3", "4"], "traced layers")
    hand = {  # per layer: (FLOPs under 'flops', reads, writes), elements, batch N
        "0": (N * 32 * 32 * 32 * (2 * 3 * 3 * 3 + 1),          # 2 per MAC (27 per output) + 1 bias add
              N * 3 * 32 * 32 + 32 * 3 * 3 * 3 + 32,           # input + weight 864 + bias 32
              N * 32 * 32 * 32),
        "1": (N * 32768, N * 32768, N * 32768),                 # one comparison per element
        "2": (N * 2 * 32768, N * 32768 + 4 * 32, N * 32768),    # a*x + b: mul + add; mean, var, gamma, beta
        "3": (0, 0, 0),                                         # a view
        "4": (N * 43 * (2 * 32768 + 1), N * 32768 + 32768 * 43 + 43, N * 43),  # 2 per MAC + bias; weight + bias
    }
    what = {"0": "Conv2d(3, 32, 3, padding=1)", "1": "ReLU", "2": "BatchNorm2d(32), eval", "3": "Flatten",
            "4": "Linear(32768, 43)"}
    table = []
    for k, r in rows.items():
        f, rd, wr = hand[k]
        same(flops_c.count(r.cost), f, f"layer {k} FLOPs")
        same(r.cost.reads, rd, f"layer {k} reads")
        same(r.cost.writes, wr, f"layer {k} writes")
        table.append([f"`{k}` {what[k]}", f"${sympy.latex(sympy.expand(f))}$", f"${sympy.latex(sympy.expand(rd))}$",
                      f"${sympy.latex(sympy.expand(wr))}$"])
    doc.h2("1. What each layer computes and moves")
    doc.p("symcost traces the PyTorch model with a symbolic batch $N$. FLOPs under the `flops` convention (a MAC is "
          "two, every bias add and elementwise operation one); reads and writes in elements, each tensor counted "
          "once per call (an ideal cache). Each entry is checked against the hand count in the script.")
    doc.table(["layer", "FLOPs[flops]", "reads", "writes"], table, "lrrr")
    tot = mc.total(flops_c)
    tot0 = mc0.total(flops_c)
    moved, moved0 = sympy.expand(tot["reads"] + tot["writes"]), sympy.expand(tot0["reads"] + tot0["writes"])
    same(moved, 199723 * N + 1410091, "elements moved with BN")      # 35840+32768+65536+65536+32768+43 per image
    same(moved0, 134187 * N + 1409963, "elements moved without BN")  # minus BN: 65536 N + 128
    same(tot["flops"], 4718635 * N, "FLOPs with BN")                 # 1802240 + 32768 + 65536 + 2818091
    same(tot0["flops"], 4653099 * N, "FLOPs without BN")
    bn = rows["2"].cost
    bn_bytes1 = equal(int((bn.reads + bn.writes).subs(N, 1)) * itemsize("fp32"), (32768 + 128 + 32768) * 4,
                      "BN bytes at N = 1, fp32")                      # 262656
    bn_bytes16 = equal(int((bn.reads + bn.writes).subs(N, 1)) * itemsize("fp16"), 131328, "BN bytes, fp16")
    doc.p(f"BatchNorm reads its input ($32 \\cdot 32 \\cdot 32 = 32{{,}}768$ elements per image) and its four "
          f"per-channel vectors ($4 \\cdot 32$: running mean and variance, $\\gamma$, $\\beta$; folded into one "
          f"scale and one shift per channel before the pass), and writes as many elements as it reads: at $N = 1$, "
          f"$(32{{,}}768 + 128 + 32{{,}}768) \\cdot 4 = {mnum(bn_bytes1)}$ bytes in fp32, {num(bn_bytes16)} in "
          "fp16, for $2 \\cdot 32{,}768$ FLOPs.")
    doc.math(f"\\text{{elements moved}} = {sympy.latex(moved)} \\;\\text{{with BN}}, \\quad "
             f"{sympy.latex(moved0)} \\;\\text{{without}}")
    equal(1410091, 896 + 128 + 1409067, "the constant term is every parameter and buffer, read once")

    # ---- 2. shares ------------------------------------------------------------------------------------
    bn_flops = flops_c.count(bn)
    bn_moved = sympy.expand(bn.reads + bn.writes)
    flop_share = sympy.simplify(bn_flops / tot["flops"])
    same(flop_share, sympy.Rational(65536, 4718635), "BN FLOP share")
    doc.h2("2. BN's share of the FLOPs and of the bytes")
    doc.p(f"BN's share of the FLOPs does not depend on the batch: $65{{,}}536 N / 4{{,}}718{{,}}635 N$ = "
          f"{_pct(65536, 4718635, 2)} %. Its share of the bytes does: the dense layer's 1.4 million weights are read "
          "once per batch, while BN's traffic grows with every image.")
    share_rows = []
    shares = {}
    for n in (*BATCHES, 128):
        b_share = bn_moved.subs(N, n) / moved.subs(N, n)
        shares[n] = b_share
        share_rows.append([str(n), _pct(65536, 4718635, 2), _pct(bn_moved.subs(N, n), moved.subs(N, n), 2),
                           fixed(int(sympy.floor(100 * b_share / flop_share)), 100, 0) + "×"])
    limit = sympy.limit(bn_moved / moved, N, sympy.oo)
    same(limit, sympy.Rational(65536, 199723), "bytes share as N grows")
    share_rows.append(["$N \\to \\infty$", _pct(65536, 4718635, 2), _pct(65536, 199723, 2),
                       fixed(int(sympy.floor(100 * limit / flop_share)), 100, 0) + "×"])
    doc.table(["batch N", "BN % of FLOPs", "BN % of bytes", "bytes share / FLOP share"], share_rows, "rrrr")
    require(shares[1] > 2.9 * flop_share, "BN's byte share at N = 1 is not ~3x its FLOP share")
    require(shares[32] > 19 * flop_share, "BN's byte share at N = 32 is not ~19x its FLOP share")
    equal(_pct(65664, 1609814, 2), "4.08", "BN bytes share at N = 1")      # (32768*2 + 128) / (199723 + 1410091)
    equal(_pct(2097280, 7801227, 1), "26.9", "BN bytes share at N = 32")   # (65536*32 + 128) / (199723*32 + 1410091)

    # ---- 3. intensity and the roofline -----------------------------------------------------------------
    doc.h2("3. Arithmetic intensity and the roofline")
    doc.p("Intensity is FLOPs per byte moved. A layer below a device's ridge (peak FLOP/s ÷ bandwidth) is memory-"
          "bound: the roofline time is $\\max(\\text{FLOPs}/P, \\text{bytes}/B)$, plus a fixed per-layer overhead "
          "$t_0$ (`symcost/roofline.py`). BN's intensity is about $2/8 = 0.25$ FLOP/B in fp32 (2 FLOPs per element "
          "against 4 bytes read and 4 written), the ReLU's $1/8$: both far below every ridge.")
    int_rows = []
    for n in BATCHES:
        cells = [str(n)]
        for k in ("0", "1", "2", "4"):
            c = rows[k].cost.subs({N: n})
            f, b = int(flops_c.count(c)), int(c.reads + c.writes) * 4
            cells.append(fixed(f * 1000 // b, 1000, 3) if b else "—")
        int_rows.append(cells)
    bn1 = rows["2"].cost.subs({N: 1})
    equal(fixed(65536 * 1000 // 262656, 1000, 3), "0.249", "BN intensity at N = 1")  # 65536 / 262656
    require(int(flops_c.count(bn1)) * 1000 // (int(bn1.reads + bn1.writes) * 4) == 249, "BN intensity")
    doc.table(["batch N", "conv FLOP/B", "ReLU FLOP/B", "BN FLOP/B", "linear FLOP/B"], int_rows, "rrrrr")
    ridge_rows = [[f"`{d.name}`", f"{d.peak('fp32') / 1e9:,.1f}", f"{d.bandwidth / 1e9:,.1f}",
                   f"{d.ridge('fp32'):.2f}", f"{d.overhead_s * 1e6:.0f}"] for d in PRESETS.values()]
    doc.table(["device (preset)", "fp32 peak GFLOP/s", "bandwidth GB/s", "ridge FLOP/B", "$t_0$ µs"], ridge_rows,
              "lrrrr")
    for d in PRESETS.values():
        require(d.ridge("fp32") > 10 * 0.25, f"{d.name}: BN would not be memory-bound")

    doc.p("Predicted time per forward pass, fp32, with and without BN (layers run one after another, so times "
          "add). `ratio` includes the per-layer overhead $t_0$ (five layer calls with BN, four without); `ratio, "
          "t_0 = 0` is the pure roofline, bytes and FLOPs only:")
    pred_rows = []
    predicted = {}
    for d in PRESETS.values():
        for n in BATCHES:
            p = _prediction(d, n)
            predicted[(d.name, n)] = p
            require(p["with"] > p["without"], f"{d.name}, N = {n}: predicted time with BN is not larger")
            require(p["pure_with"] > p["pure_without"], f"{d.name}, N = {n}: pure roofline with BN is not larger")
            require(p["bn"].bound in ("memory", "overhead"), f"{d.name}, N = {n}: BN predicted {p['bn'].bound}-bound")
            require(p["bn"].memory_s > p["bn"].compute_s, f"{d.name}, N = {n}: BN's bytes take less than its FLOPs")
            require(p["bn_share"] > float(flop_share), f"{d.name}, N = {n}: BN's time share below its FLOP share")
            pred_rows.append([f"`{d.name}`", str(n), _us(p["with"]), _us(p["without"]),
                              f"{p['with'] / p['without']:.3f}", f"{p['pure_with'] / p['pure_without']:.3f}",
                              f"{100 * p['bn_share']:.1f}", p["bn"].bound])
    doc.table(["device", "N", "with BN", "without", "ratio", "ratio, $t_0 = 0$", "BN % of time", "BN bound"],
              pred_rows, "lrrrrrrl")
    weights_mb = fixed(32768 * 43 * 4, 10 ** 6, 1)
    equal(weights_mb, "5.6", "dense weights, MB")                                     # 1409024 * 4 bytes
    doc.p("On every device the prediction orders the two models the way the seed observed (with BN slower), and "
          f"gives BN a share of the time far above its {_pct(65536, 4718635, 2)} % of the FLOPs: BN's bytes take "
          "longer than its FLOPs everywhere, so it costs what the ReLU before it costs, the same tensor read and "
          f"written once more. At batch 1 the dense layer's {weights_mb} MB of weights dominate the bytes and BN's "
          "share is small; at Keras' batch of 32 BN moves about a quarter of all bytes. On the GPUs these layers are "
          "so small that the assumed launch overhead $t_0$ decides, not the roofline.")

    # ---- 4. fused or not --------------------------------------------------------------------------------
    doc.h2("4. One pass or two")
    doc.p("The count above is one pass over the tensor: read $x$, write $\\alpha x + \\beta'$, which is what "
          "PyTorch's eval-mode `batch_norm` kernel does. A framework that runs BN as separate elementwise kernels "
          "moves the tensor once per kernel. For $y = x \\cdot \\alpha$ followed by $y + \\beta'$ that is twice "
          "the traffic, $4 \\cdot 32{,}768 N$ elements plus the vectors, and a second call. Under that reading:")
    two_rows = []
    for d in PRESETS.values():
        for n in BATCHES:
            p = predicted[(d.name, n)]
            extra = (2 * 32768 * n) * 4 / d.bandwidth + d.overhead_s   # a second read and write, a second call
            two_rows.append([f"`{d.name}`", str(n), f"{p['with'] / p['without']:.3f}",
                             f"{(p['with'] + extra) / p['without']:.3f}"])
    doc.table(["device", "N", "ratio, one pass", "ratio, two passes"], two_rows, "lrrr")
    doc.p("Neither reaches the seed's factor 2 for this model (the question reports 25 % to 50 % for its deeper "
          "variants). What Keras/TensorFlow of the time actually ran for BatchNormalization at test time is not "
          "something a traffic count can see; the asker's own conclusion was an inefficient routine.")

    # ---- 5. measured ------------------------------------------------------------------------------------
    doc.h2("5. Measured on this machine (recorded once)")
    rec = RECORDED
    here = Device("this machine", **rec["device"])
    doc.p(f"One run of `python -m derivations.seed001_batchnorm_time` ({rec['repeats']} interleaved repeats) on "
          f"{rec['regime']}. Calibrated by `symcost calibrate --threads 1`: {here.peak_flops / 1e9:.1f} GFLOP/s "
          f"(GEMM), {here.bandwidth / 1e9:.1f} GB/s, $t_0$ = {here.overhead_s * 1e6:.1f} µs (a tiny module call). "
          "Other jobs share the two CPUs, and interference only ever adds time, so the minimum over the repeats is "
          "the least disturbed figure; the median is shown too. The numbers are recorded in the script, not "
          "re-measured when the page is regenerated; bench/RESULTS.md has the run.")
    meas_rows = []
    for n in BATCHES:
        p = _prediction(here, n)
        meas_rows.append([str(n), "roofline", _pct(65536, 4718635, 2), _pct(bn_moved.subs(N, n), moved.subs(N, n), 1),
                          f"{100 * p['bn_share']:.1f}", f"{p['with'] * 1e6:,.0f}", f"{p['without'] * 1e6:,.0f}",
                          f"{p['with'] / p['without']:.3f}"])
        for stat in ("min", "median"):
            r = rec[stat][n]
            layers = r["layers_us"]
            require(r["forward_with_us"] > 0 and r["forward_without_us"] > 0 and set(layers) == set(rows),
                    f"recorded {stat} for N = {n} missing")
            meas_rows.append(["", f"measured, {stat}", "", "", f"{100 * layers['2'] / sum(layers.values()):.1f}",
                              f"{r['forward_with_us']:,.0f}", f"{r['forward_without_us']:,.0f}",
                              f"{r['forward_with_us'] / r['forward_without_us']:.3f}"])
    doc.table(["N", "", "BN % FLOPs", "BN % bytes", "BN % time", "with BN µs", "without µs", "ratio"],
              meas_rows, "rlrrrrrr")
    for n in BATCHES:
        require(rec["ratio_paired"][n] > 0, f"recorded paired ratio for N = {n} missing")
    doc.p("\"BN % time\" is BN's share of the sum of the layer times (each layer timed between forward hooks); the "
          "ratios compare whole forward passes. The median over the repeats of each back-to-back pair's ratio "
          "(with BN ÷ without), which cancels slow drift in the machine's load: "
          + ", ".join(f"{rec['ratio_paired'][n]:.3f} at $N = {n}$" for n in BATCHES) + ".")
    for stat in ("min", "median"):
        for n in BATCHES:
            layers = rec[stat][n]["layers_us"]
            require(layers["2"] / sum(layers.values()) > 4 * float(flop_share),
                    f"recorded BN time share ({stat}, N = {n}) is not far above its FLOP share")
    doc.p("Per layer, the roofline on this machine against the measured minimum:")
    layer_rows = []
    for n in BATCHES:
        est = {e.name: e for e in predict(traced(True, n), here, "fp32", flops_c)}
        for k in rows:
            got = rec["min"][n]["layers_us"][k]
            e = est[k]
            layer_rows.append([str(n), f"`{k}` {what[k]}", e.bound, f"{e.time_s * 1e6:,.1f}", f"{got:,.1f}",
                               f"{e.bytes / (got * 1e-6) / 1e9:.1f}" if e.bytes else "—"])
    doc.table(["N", "layer", "roofline bound", "predicted µs", "measured µs", "bytes ÷ measured time, GB/s"],
              layer_rows, "rllrrr")
    bn32, lin1 = rec["min"][32]["layers_us"]["2"], rec["min"][1]["layers_us"]["4"]
    bn32_rate = int(bn.reads.subs(N, 32) + bn.writes.subs(N, 32)) * 4 / (bn32 * 1e-6)
    lin1_rate = (32768 + 1409067 + 43) * 4 / (lin1 * 1e-6)
    require(bn32_rate > here.bandwidth and lin1_rate > here.bandwidth,
            "the measured rates no longer exceed the calibrated DRAM bandwidth: rewrite the paragraph")
    l32 = rec["min"][32]["layers_us"]
    share32, pred32 = l32["2"] / sum(l32.values()), _prediction(here, 32)["bn_share"]
    times_flop = int(share32 / float(flop_share))
    require(share32 < pred32 and times_flop >= 4, "BN's recorded N = 32 share vs the roofline's: rewrite the paragraph")
    bn1 = rec["min"][1]["layers_us"]["2"]
    bn1_pred = next(e for e in predict(traced(True, 1), here, "fp32", flops_c) if e.name == "2").time_s * 1e6
    require(bn1 > bn1_pred, "BN at N = 1 no longer measures above its prediction: rewrite the paragraph")
    doc.p(f"Where the prediction misses, it misses for reasons the model names. At $N = 32$ BN streams its "
          f"{num(int(bn.reads.subs(N, 32) + bn.writes.subs(N, 32)) * 4)} bytes at {bn32_rate / 1e9:.1f} GB/s, above the "
          f"{here.bandwidth / 1e9:.1f} GB/s measured for 128 MiB copies: its input, written by the ReLU just before, "
          "is still in the cache, so the ideal-cache count overstates the DRAM traffic of a layer whose tensors fit "
          f"in cache, and BN's measured share ({100 * share32:.1f} %) falls below the roofline's {100 * pred32:.1f} % — "
          f"still more than {times_flop} times its FLOP share. At $N = 1$ the dense layer reads its {weights_mb} MB "
          f"of weights at {lin1_rate / 1e9:.1f} GB/s: "
          "from cache again, as every timed pass reuses them, so the roofline overstates the whole model's time "
          f"and understates BN's share; BN itself takes {bn1:.1f} µs against a predicted {bn1_pred:.1f} µs, its "
          "Python `forward` costing more than the tiny module call $t_0$ stands for.")

    # ---- 6. answer --------------------------------------------------------------------------------------
    ridges = {d.name: d.ridge("fp32") for d in PRESETS.values()}
    doc.h2("6. The answer")
    doc.bullets([
        f"Counting multiplications measures the wrong resource. BN is {_pct(65536, 4718635, 2)} % of this model's "
        "FLOPs at any batch, but it reads and writes a full activation tensor: "
        f"{_pct(bn_moved.subs(N, 1), moved.subs(N, 1), 2)} % of the bytes at batch 1, "
        f"{_pct(bn_moved.subs(N, 32), moved.subs(N, 32), 1)} % at batch 32.",
        "Its intensity, 0.25 FLOP/B in fp32, is below the ridge of every device here ("
        + ", ".join(f"`{k}` {v:.1f}" for k, v in ridges.items()) + " FLOP/B): its time is bytes ÷ bandwidth, "
        "as for the ReLU, never FLOPs ÷ peak.",
        "So a memory-traffic model predicts BN's share of the time near its share of the bytes (plus a fixed "
        "per-call cost at small sizes), and the measurement agrees in direction: BN's measured share is far above "
        "its FLOP share. A framework running BN as more than one pass adds to that.",
        "Folding BN into the convolution (seed 003, [bn_folding.md](bn_folding.md)) removes the pass entirely; "
        "`symcost fold --json` reports the saved reads and writes.",
    ])
    return str(doc)


def _prediction(device, n: int) -> dict:
    """Roofline totals for both models at batch ``n`` on ``device`` (fp32, FLOPs under `flops`)."""
    from symcost.roofline import predict, total_time

    with_est = predict(traced(True, n), device, "fp32", "flops")
    without_est = predict(traced(False, n), device, "fp32", "flops")
    pure_with = predict(traced(True, n), device, "fp32", "flops", overhead=False)
    pure_without = predict(traced(False, n), device, "fp32", "flops", overhead=False)
    bn = next(e for e in with_est if e.name == "2")
    t1 = total_time(with_est)
    return {"with": t1, "without": total_time(without_est), "pure_with": total_time(pure_with),
            "pure_without": total_time(pure_without), "bn": bn, "bn_share": bn.time_s / t1}


def _us(s: float) -> str:
    return f"{s * 1e6:,.1f} µs"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="measure the seed-001 model with and without BN on this CPU")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc malloc as it is (freed memory goes back to the OS: page faults every pass)")
    a = parser.parse_args()
    print(report(measure(a.repeats, threads=a.threads, keep_memory=not a.default_allocator)))
