"""The per-kind time model (symcost/timing): kinds and kernel counts, the arithmetic of one call and of a whole
forward, the H100 fit (a fit check: the preset is scored on the very data it was fitted to), the folding
prediction, and the CPU calibration path.  No timing assertions: measured times come from fixed files
(tests/fixtures/h100, copied from the shared H100 calibration) or are only checked to exist."""
import csv
import json
import math
from dataclasses import replace

import pytest

import symcost
from symcost.cli import main
from symcost.timing import PRESETS, Device, KindRate, estimate, forward_time, get_device, kind_of, predict, spearman
from symcost.timing.fit import H100_DATA, h100_device, h100_samples
from symcost.timing.model import LayerEstimate


def conv(bias=True, k=3, groups=1, c=3, o=32, pad=1):
    return symcost.layer("conv2d", symbolic=False, in_channels=c, out_channels=o, kernel_size=k, padding=pad,
                         groups=groups, bias=bias)


def call(layer, shape, device, dtype="fp32"):
    return estimate(layer.cost(shape), device, dtype, args=layer.args if hasattr(layer, "args") else None)


def conv_args(bias=True, k=3, groups=1, c=3, o=32, pad=1):
    return dict(in_channels=c, out_channels=o, kernel_size=[k, k], padding=[pad, pad], groups=groups, bias=bias)


# ------------------------------------------------------------------------------------------- kinds, kernels

def test_kinds():
    assert kind_of("conv2d", "conv", conv_args(k=3)) == "conv_kxk"
    assert kind_of("conv2d", "conv", conv_args(k=1)) == "conv_1x1"
    assert kind_of("conv2d", "conv", conv_args(k=3, groups=32, c=32)) == "conv_depthwise"        # one channel a group
    assert kind_of("conv2d", "conv", conv_args(k=3, groups=32, c=32, o=64)) == "conv_depthwise"  # multiplier 2
    assert kind_of("conv2d", "conv", conv_args(k=3, groups=8, c=32)) == "conv_grouped"           # 4 channels a group
    # squeeze-excitation: a 1x1 convolution on the pooled 1x1 map; on a 7x7 map it is an ordinary 1x1 one
    assert kind_of("conv2d", "conv", conv_args(k=1, c=96, o=4), (8, 4, 1, 1)) == "conv_pooled"
    assert kind_of("conv2d", "conv", conv_args(k=1, c=96, o=4), (8, 4, 7, 7)) == "conv_1x1"
    assert kind_of("silu", "activation") == kind_of("sigmoid", "activation") == "transcendental"
    assert kind_of("hardswish", "activation") == kind_of("mul", "elementwise") == "elementwise"
    assert kind_of("conv2d", "conv", {"kernel_size": [1, 7], "groups": 1}) == "conv_kxk"
    assert kind_of("batchnorm2d", "norm") == "norm" and kind_of("relu", "activation") == "elementwise"
    assert kind_of("softmax", "activation") == "softmax" and kind_of("flatten", "reshape") == "view"
    assert kind_of("linear", "linear") == "linear" and kind_of("maxpool2d", "pool") == "pool"


def test_every_catalog_family_has_a_kind():
    from symcost.registry import all_layers
    from symcost.timing import KINDS

    layers = all_layers()
    assert len(layers) > 50
    for name, cls in layers.items():
        assert kind_of(name, cls.family) in KINDS, name


def test_an_unknown_family_is_refused_not_timed_as_elementwise():
    from symcost.cost import Cost
    from symcost.errors import LayerError

    with pytest.raises(LayerError, match="family 'warp', which has no time-model kind"):
        kind_of("warp_sum", "warp")
    cost = Cost(ops={"add": 8}, reads=16, writes=8, family="warp", layer="warp_sum")
    with pytest.raises(LayerError, match="warp_sum"):
        estimate(cost, get_device("h100"), "fp32")
    from symcost.model import ModelCost, Row

    mc = ModelCost("toy", (1, 8), [Row("block.warp", "warp_sum", {}, ((1, 8),), cost)])
    with pytest.raises(LayerError, match="^block.warp: layer 'warp_sum' is of family 'warp'"):
        predict(mc, get_device("h100"), "fp32")


def test_a_device_without_the_new_kinds_falls_back():
    """A device file written before depthwise and pooled convolutions were kinds of their own: its grouped rate
    (symcost calibrate measured it on a depthwise call) times depthwise convolutions, its 1x1 rate pooled ones."""
    old = Device("old", peak_flops=1e12, bandwidth=1e11, kinds={"conv_grouped": KindRate(host_s=7.0, memory=0.25),
                                                               "conv_1x1": KindRate(host_s=3.0, compute=0.5),
                                                               "conv_kxk": KindRate(host_s=5.0, memory=0.5)})
    assert old.rate("conv_depthwise") == old.rate("conv_grouped") and old.host_s("conv_depthwise") == 7.0
    assert old.rate("conv_pooled", "fp16") == old.rate("conv_1x1") and old.host_s("conv_pooled") == 3.0
    older = replace(old, kinds={"conv_kxk": KindRate(host_s=5.0, memory=0.5)})
    assert older.host_s("conv_depthwise") == older.host_s("conv_grouped") == 5.0       # grouped <- k x k
    h100 = get_device("h100")
    assert h100.rate("conv_depthwise", "fp32") != h100.rate("conv_grouped", "fp32")      # measured, not borrowed


def test_squeeze_excitation_and_silu_kinds_in_efficientnet_b0():
    """EfficientNet-B0 (torchvision): 16 MBConv blocks, each a depthwise convolution and a squeeze-excitation
    (global pool, two 1x1 convolutions on the 1x1 map, SiLU between them, a sigmoid, a broadcast multiply); 15 of
    them expand first (expand ratio 6, the first block's is 1).  SiLU: stem 1 + 15 expansions + 16 depthwise + 16
    SE = 48, plus the head's 1 = 49; the SE's 16 sigmoids make 65 transcendental calls.  On the H100 the kinds
    neither calibration model has borrow a measured kind's rates, per dtype."""
    from collections import Counter

    from symcost.targets import load_target
    from symcost.tracing import trace

    mc = trace(load_target("torchvision:efficientnet_b0", device="meta"), (2, 3, 64, 64))
    d = get_device("h100")
    est = predict(mc, d, "fp16")
    kinds = Counter((e.layer, e.kind) for e in est)
    assert kinds[("conv2d", "conv_pooled")] == 32 and kinds[("conv2d", "conv_depthwise")] == 16
    assert kinds[("silu", "transcendental")] == 49 and kinds[("sigmoid", "transcendental")] == 16
    assert kinds[("mul", "elementwise")] == 16 and kinds[("adaptive_avgpool2d", "reduction")] == 17
    for dt in ("fp32", "fp16"):
        assert d.rate("conv_pooled", dt) == d.rate("conv_1x1", dt) and d.host_s("conv_pooled") == d.host_s("conv_1x1")
        assert d.rate("transcendental", dt) == d.rate("elementwise", dt)


@pytest.mark.parametrize("dtype, kernels", [
    ("fp32", ("conv2d",)),                          # PyTorch's own depthwise kernel adds the bias
    ("fp16", ("convolution", "bias add")),          # cuDNN, then a separate bias add
])
def test_depthwise_bias_on_the_h100(dtype, kernels):
    dw = conv(c=32, o=32, groups=32)
    e = estimate(dw.cost((2, 32, 16, 16)), get_device("h100"), dtype, args=conv_args(c=32, o=32, groups=32))
    assert e.kind == "conv_depthwise" and tuple(k for k, _ in e.kernels) == kernels
    args = dict(in_channels=32, out_channels=32, kernel_size=3, groups=32, bias=True)
    up = symcost.layer("conv_transpose2d", symbolic=False, **args)          # cuDNN at every dtype
    e = estimate(up.cost((2, 32, 16, 16)), get_device("h100"), dtype, args=args)
    assert e.kind == "conv_depthwise" and tuple(k for k, _ in e.kernels) == ("convolution", "bias add")


def test_depthwise_runs_at_the_strict_fp32_peak():
    d = Device("toy", peak_flops=1e12, bandwidth=1e15, peak_flops_by_dtype={"tf32": 8e12}, tf32_conv=True)
    dw = conv(bias=False, c=32, o=32, groups=32)
    e = estimate(dw.cost((1, 32, 8, 8)), d, "fp32", args=conv_args(bias=False, c=32, o=32, groups=32))
    # 32 x 8 x 8 = 2048 outputs x 9 MACs x 2 FLOPs = 36864, on the CUDA cores (no GEMM for tensor cores)
    assert e.compute_s == pytest.approx(36864 / 1e12)


@pytest.mark.parametrize("device, bias, kernels", [
    ("h100", True, ("convolution", "bias add")),      # eager CUDA: the bias is a separate elementwise kernel
    ("h100", False, ("conv2d",)),
    ("laptop-cpu", True, ("conv2d",)),                # oneDNN adds the bias inside the convolution
])
def test_conv_kernel_counts(device, bias, kernels):
    cost = conv(bias=bias).cost((1, 3, 32, 32))
    e = estimate(cost, get_device(device), "fp32", args=conv_args(bias=bias))
    assert tuple(k for k, _ in e.kernels) == kernels


@pytest.mark.parametrize("layer, args, shape, n", [
    ("batchnorm2d", dict(num_features=8, mode="eval"), (2, 8, 5, 5), 1),
    ("relu", {}, (2, 8, 5, 5), 1),
    ("linear", dict(in_features=16, out_features=4, bias=True), (3, 16), 1),   # bias in the GEMM epilogue
    ("groupnorm", dict(num_groups=2, num_channels=8), (2, 8, 5, 5), 2),       # statistics, then apply
    ("maxpool2d", dict(kernel_size=2), (2, 8, 6, 6), 1),
    ("flatten", {}, (2, 8, 5, 5), 0),                                          # a view: no kernel
])
def test_kernel_counts_per_kind(layer, args, shape, n):
    cost = symcost.layer(layer, symbolic=False, **args).cost(shape)
    assert len(estimate(cost, get_device("h100"), "fp32", args=args).kernels) == n


def test_bias_kernel_bytes_and_flops_by_hand():
    # Conv2d(3, 32, 3, padding=1) with bias on 1x3x32x32: 32*32*32 = 32768 outputs
    d = Device("toy", peak_flops=1e12, bandwidth=1e11, fuses=())
    e = estimate(conv().cost((1, 3, 32, 32)), d, "fp32", args=conv_args())
    # convolution: 2 * 27 FLOPs per output = 1769472 over 1e12 FLOP/s; bytes: input 3072 + weight 864 + output
    # 32768 elements = 36704 * 4 = 146816 over 1e11 B/s.  bias add: 32768 FLOPs; reads the output and the bias,
    # writes the output: (2 * 32768 + 32) * 4 = 262272 bytes
    (w1, t1), (w2, t2) = e.kernels
    assert t1 == pytest.approx(max(1769472 / 1e12, 146816 / 1e11))
    assert t2 == pytest.approx(max(32768 / 1e12, 262272 / 1e11))
    assert e.flops == 1769472 + 32768 and e.bytes == 146816 + 128    # the call's own counts are unchanged


# ------------------------------------------------------------------------------------------- the arithmetic

def test_one_call_is_host_plus_sum_of_kernels():
    d = Device("toy", peak_flops=100.0, bandwidth=10.0, overhead_s=1.0, launch_s=0.5, kernel_s=3.0, fuses=(),
               kinds={"norm": KindRate(host_s=2.0, memory=0.5)})
    cost = symcost.layer("batchnorm2d", symbolic=False, num_features=2, mode="eval").cost((1, 2, 2, 2))
    e = estimate(cost, d, "fp32")
    # BN on 8 elements: reads 8 + 4*2, writes 8 -> 24 elements * 4 = 96 bytes at 0.5 * 10 B/s = 19.2 s;
    # 16 FLOPs / 100 = 0.16 s; the kernel floor 3 s is below; host 2 s of its kind
    assert e.kernel_time_s == pytest.approx(96 / 5) and e.overhead_s == 2.0 and e.time_s == pytest.approx(21.2)
    relu = symcost.layer("relu", symbolic=False).cost((1, 1))
    r = estimate(relu, d, "fp32")        # no rate of its own: host overhead_s, kernel at least kernel_s
    assert (r.overhead_s, r.kernel_time_s) == (1.0, 3.0)


def test_tf32_convolutions_strict_fp32_matmuls():
    d = Device("toy", peak_flops=1e12, bandwidth=1e15, peak_flops_by_dtype={"tf32": 8e12}, tf32_conv=True)
    c = estimate(conv(bias=False).cost((1, 3, 32, 32)), d, "fp32", args=conv_args(bias=False))
    # 54 FLOPs per output x 32768 outputs = 1769472, at the TF32 peak
    assert c.compute_s == pytest.approx(1769472 / 8e12)
    lin = symcost.layer("linear", symbolic=False, in_features=64, out_features=64, bias=False).cost((8, 64))
    # 8 x 64 x 64 MACs = 32768, 2 FLOPs each = 65536 (plus no bias), at the strict fp32 peak
    assert estimate(lin, d, "fp32").compute_s == pytest.approx(65536 / 1e12)


def test_forward_overlaps_host_and_device_when_asynchronous():
    def est(host, dev, asynchronous):
        return LayerEstimate("x", "", "", 0, 0, 0, 0.0, 0.0, host, device_s=dev, asynchronous=asynchronous)

    calls = [(5.0, 1.0), (5.0, 1.0), (1.0, 20.0), (1.0, 1.0)]
    # host clock 5, 10, 11, 12; device: ends 6, 11, max(11, 11) + 20 = 31, max(31, 12) + 1 = 32
    f = forward_time([est(h, d, True) for h, d in calls])
    assert (f.seconds, f.host_s, f.device_s) == (32.0, 12.0, 23.0)
    assert forward_time([est(h, d, False) for h, d in calls]).seconds == 12.0 + 23.0     # a CPU adds them


def test_device_json_roundtrip_with_kinds(tmp_path):
    d = PRESETS["h100-sxm"]
    d.save(tmp_path / "h.json")
    assert Device.load(tmp_path / "h.json") == d == Device.from_dict(json.loads(json.dumps(d.to_dict())))
    with pytest.raises(ValueError, match="unknown kind"):
        Device.from_dict({**d.to_dict(), "kinds": {"warp": {"memory": 1.0}}})
    with pytest.raises(ValueError, match="memory must be a positive fraction"):
        Device.from_dict({**d.to_dict(), "kinds": {"norm": {"memory": 0}}})


# ------------------------------------------------------------------------------------------- the H100 fit

@pytest.fixture(scope="module")
def h100():
    return h100_samples()


def _rho(samples, device, overhead=True):
    pred = [estimate(s.cost, device, s.dtype, args=s.args, overhead=overhead).time_s for s in samples]
    return spearman(pred, [s.seconds for s in samples])


@pytest.mark.parametrize("model, n", [("resnet50", 126), ("mobilenet_v2", 141)])
@pytest.mark.parametrize("regime", ["fp32 b1", "fp32 b64", "fp16 b64"])
def test_h100_preset_ranks_the_calibration_layers_better_than_the_naive_roofline(h100, regime, model, n):
    """A FIT CHECK, not a prediction: the preset was fitted to these very layers.  It says the model's form can
    express what was measured (per-kind host times, per-kind fractions), which one peak and one bandwidth cannot;
    bench/RESULTS.md reports the held-out numbers (fitted on one model, scored on the other)."""
    rows = [s for s in h100 if s.regime == regime and s.model == model]
    with open(H100_DATA / f"{model}_layers.csv", newline="") as f:     # every leaf module, not the model row
        expected = sum(1 for r in csv.DictReader(f) if f"{r['dtype'].replace('float', 'fp')} b{r['batch']}" == regime
                       and r["module"] != "<whole model>")
    assert len(rows) == expected == n
    fitted, naive = _rho(rows, PRESETS["h100-sxm"]), _rho(rows, PRESETS["h100-sxm-datasheet"], overhead=False)
    print(f"\n{model} {regime}: Spearman fitted {fitted:.3f}, naive roofline {naive:.3f}")
    assert fitted > naive + 0.05


def test_h100_preset_is_what_the_fit_gives(h100):
    fit, preset = h100_device(h100), PRESETS["h100-sxm"]
    assert set(fit.kinds) == set(preset.kinds)
    for dt in ("fp32", "fp16"):
        for k in fit.kinds_by_dtype[dt]:
            a, b = fit.rate(k, dt), preset.rate(k, dt)
            assert (a.compute, a.memory) == pytest.approx((b.compute, b.memory), rel=5e-3), (dt, k)
            assert fit.host_s(k, dt) == pytest.approx(preset.host_s(k, dt), rel=5e-3), (dt, k)
            assert fit.kernel_floor_s(k, dt) == pytest.approx(preset.kernel_floor_s(k, dt), rel=5e-3), (dt, k)
    assert fit.fuses == preset.fuses


@pytest.fixture(scope="module")
def resnet50_traces():
    """ResNet-50 and its BN-folded copy, traced on the meta device at batch 1 and 64."""
    import torch
    from torchvision.models import resnet50

    from symcost.fold import fold_batchnorm
    from symcost.tracing import trace

    torch.manual_seed(0)
    model = resnet50(weights=None).eval()
    folded = fold_batchnorm(model, (1, 3, 64, 64)).model.to("meta")
    model = model.to("meta")
    return {b: (trace(model, (b, 3, 224, 224)), trace(folded, (b, 3, 224, 224))) for b in (1, 64)}


# measured whole forwards, resnet50_e2e.csv (NCHW, ms): unfolded, folded
@pytest.mark.parametrize("dtype, batch, unfolded, folded", [
    ("fp32", 64, 11.3452, 11.0323),    # saving 0.3129 / 11.3452 = 2.76 %
    ("fp32", 1, 5.6618, 4.1517),       # saving 1.5101 / 5.6618 = 26.7 %
    ("fp16", 64, 7.7553, 7.2997),      # saving 0.4556 / 7.7553 = 5.87 %
])
def test_fold_prediction_resnet50_within_10_points(resnet50_traces, dtype, batch, unfolded, folded):
    """Issue 12's target: folding's predicted saving within 10 points of the measured one.  Not in the fit: the
    fractions come from per-layer times, the bias-add rate from profiler totals; fp16 BatchNorm's host time does
    use the batch-1 e2e times (``fp16_norm_host_extra``), so the fp32 batch-1 row is the cleanest check."""
    before, after = resnet50_traces[batch]
    d = PRESETS["h100-sxm"]
    eb, ea = predict(before, d, dtype), predict(after, d, dtype)
    # folding removes 53 BatchNorm kernels and gives each of the 53 convolutions a bias-add kernel
    assert sum(len(e.kernels) for e in eb) == sum(len(e.kernels) for e in ea)
    assert sum(e.kind == "norm" for e in eb) == 53 and sum(e.kind == "norm" for e in ea) == 0
    saving = 1 - forward_time(ea).seconds / forward_time(eb).seconds
    measured = 1 - folded / unfolded
    print(f"\nfold saving, resnet50 b{batch} {dtype} on h100-sxm: predicted {100 * saving:.1f} %, measured "
          f"{100 * measured:.1f} %")
    assert abs(saving - measured) < 0.10


def test_batch1_forward_is_the_host_time_of_its_calls(resnet50_traces):
    """The layer file's own whole-model row at fp32 batch 1 is 3955.73 us; the fit never sees it.  Host-bound,
    the forward is the sum of the calls' host times (each call's near-empty kernel runs while the host returns)."""
    est = predict(resnet50_traces[1][0], PRESETS["h100-sxm"], "fp32")
    f = forward_time(est)
    assert f.seconds == pytest.approx(f.host_s, rel=1e-3)
    assert f.seconds == pytest.approx(3955.73e-6, rel=0.10)


def test_fp16_batchnorm_host_time_from_the_e2e_file():
    from symcost.timing.fit import fp16_norm_host_extra

    # ResNet-50: fp16 folding saves 7.4757 - 4.3999 = 3.0758 ms, fp32 5.6618 - 4.1517 = 1.5101 ms: 1.5657 ms more
    # over 53 BatchNorms, times 3.95573 / 5.6618 (layer file's clock / e2e's) = 20.64 us each
    r50 = 1.5657e-3 * 3.95573 / 5.6618
    assert fp16_norm_host_extra() == pytest.approx(r50 / 53, rel=1e-4)
    # MobileNetV2: (5.1687 - 3.0902) - (4.2869 - 2.8456) = 0.6372 ms over 52, times 2.88181 / 4.2869 = 8.24 us each
    mnv2 = 0.6372e-3 * 2.88181 / 4.2869
    assert fp16_norm_host_extra(models=("mobilenet_v2",)) == pytest.approx(mnv2 / 52, rel=1e-4)
    pooled = (r50 + mnv2) / 105                                                  # 14.50 us
    assert fp16_norm_host_extra(models=("resnet50", "mobilenet_v2")) == pytest.approx(pooled, rel=1e-4)
    d = PRESETS["h100-sxm"]
    assert d.host_s("norm", "fp16") == pytest.approx(d.host_s("norm", "fp32") + pooled, rel=5e-3)


@pytest.fixture(scope="module")
def mobilenet_traces():
    """MobileNetV2 and its BN-folded copy, traced on the meta device at batch 1 and 64."""
    import torch
    from torchvision.models import mobilenet_v2

    from symcost.fold import fold_batchnorm
    from symcost.tracing import trace

    torch.manual_seed(0)
    model = mobilenet_v2(weights=None).eval()
    folded = fold_batchnorm(model, (1, 3, 64, 64)).model.to("meta")
    model = model.to("meta")
    return {b: (trace(model, (b, 3, 224, 224)), trace(folded, (b, 3, 224, 224))) for b in (1, 64)}


# measured whole forwards, mobilenet_v2_e2e.csv (NCHW, ms): unfolded, folded
@pytest.mark.parametrize("dtype, batch, unfolded, folded", [
    ("fp32", 1, 4.2869, 2.8456),       # saving 1.4413 / 4.2869 = 33.6 %
    ("fp32", 64, 5.5666, 4.7025),      # saving 0.8641 / 5.5666 = 15.5 %
    ("fp16", 1, 5.1687, 3.0902),       # saving 2.0785 / 5.1687 = 40.2 %
    pytest.param("fp16", 64, 5.3812, 3.5509, marks=pytest.mark.xfail(
        strict=True, reason="a known miss: 20 % predicted against 34.0 % measured (bench/RESULTS.md)")),
])
def test_fold_prediction_mobilenet_v2_within_10_points(mobilenet_traces, dtype, batch, unfolded, folded):
    """Folding where BatchNorm follows depthwise convolutions: the fractions come from per-layer times, so only
    fp16 BatchNorm's host time (fitted on the batch-1 folds of both models) has seen these totals."""
    before, after = mobilenet_traces[batch]
    d = PRESETS["h100-sxm"]
    eb, ea = predict(before, d, dtype), predict(after, d, dtype)
    # 52 BatchNorm kernels go; each of the 35 dense convolutions (the stem, 34 1x1) gets a bias-add kernel, and in
    # fp16 (cuDNN) each of the 17 depthwise ones too; in fp32 PyTorch's depthwise kernel adds its own bias
    added = 35 if dtype == "fp32" else 52
    assert sum(len(e.kernels) for e in ea) == sum(len(e.kernels) for e in eb) - 52 + added
    saving = 1 - forward_time(ea).seconds / forward_time(eb).seconds
    measured = 1 - folded / unfolded
    print(f"\nfold saving, mobilenet_v2 b{batch} {dtype} on h100-sxm: predicted {100 * saving:.1f} %, measured "
          f"{100 * measured:.1f} %")
    assert abs(saving - measured) < 0.10


def test_mobilenet_v2_batch1_totals_within_25_percent(h100, mobilenet_traces):
    """Batch 1 is host-bound: the sum of MobileNetV2's 141 measured layers at fp32 (mobilenet_v2_layers.csv:
    3594.17 us in all) and its fp16 whole forward (mobilenet_v2_e2e.csv: 5.1687 ms; no per-layer fp16 batch-1
    file exists), predicted within 25 %.  The e2e file's clock ran 1.49x the layer file's (4.2869 against 2.88181
    ms for the same fp32 forward), so the fp16 forward is checked against both clocks."""
    rows = [s for s in h100 if s.model == "mobilenet_v2" and s.regime == "fp32 b1"]
    assert sum(s.seconds for s in rows) == pytest.approx(3594.17e-6, rel=1e-6)
    d = PRESETS["h100-sxm"]
    layers = sum(estimate(s.cost, d, s.dtype, args=s.args).time_s for s in rows) / 3594.17e-6
    fp16 = forward_time(predict(mobilenet_traces[1][0], d, "fp16")).seconds
    e2e, layer_clock = fp16 / 5.1687e-3, fp16 / (5.1687e-3 * 2.88181 / 4.2869)
    print(f"\nmobilenet_v2 batch 1: fp32 layers predicted / measured {layers:.2f}; fp16 forward {e2e:.2f} of the e2e "
          f"file's, {layer_clock:.2f} of it on the layer file's clock")
    assert 0.75 < layers < 1.25 and 0.75 < e2e < 1.25 and 0.75 < layer_clock < 1.25


def test_return_s_hides_a_short_kernel_under_the_host_time():
    d = Device("toy", peak_flops=1e12, bandwidth=1e9, overhead_s=10.0, kernel_s=2.0, asynchronous=True,
               return_s=3.0, fuses=())
    relu = symcost.layer("relu", symbolic=False).cost((1, 4))
    e = estimate(relu, d, "fp32")
    # host 10, kernel floor 2 <= return_s 3: the call alone takes its host time
    assert (e.overhead_s, e.kernel_time_s, e.time_s) == (10.0, 2.0, 10.0)
    long = replace(d, kernel_s=7.0)
    assert estimate(relu, long, "fp32").time_s == 10.0 + 7.0 - 3.0
    # a synchronous device adds them whatever return_s says
    assert estimate(relu, replace(long, asynchronous=False), "fp32").time_s == 17.0
    # forward: kernels issued return_s before each call's host time ends
    # host clock 10, 20; device: max(0, 10 - 3) + 7 = 14, max(14, 20 - 3) + 7 = 24; ends at max(20, 24)
    assert forward_time([estimate(relu, long, "fp32")] * 2).seconds == 24.0


def test_gemm_latency_and_gemv_kind():
    d = Device("toy", peak_flops=1e12, bandwidth=1e12, fuses=(),
               kinds={"linear": KindRate(latency_s=1e-5), "gemv": KindRate(memory=0.5)})
    lin = symcost.layer("linear", symbolic=False, in_features=1000, out_features=1000, bias=False)
    big = estimate(lin.cost((500, 1000)), d, "fp32")
    # 500 x 1000 x 1000 MACs x 2 = 1e9 FLOPs at 1e12/s = 1 ms, plus the 10 us start-up
    assert big.kind == "linear" and big.kernel_time_s == pytest.approx(1e-3 + 1e-5)
    one = estimate(lin.cost((1, 1000)), d, "fp32")
    # one row: a matrix-vector product; (1000 + 1e6 + 1000) elements x 4 bytes at half of 1e12 B/s
    assert one.kind == "gemv" and one.kernel_time_s == pytest.approx(1002000 * 4 / 0.5e12)
    assert estimate(lin.cost((2, 1, 1000)), d, "fp32").kind == "linear"          # two rows
    mm = symcost.layer("matmul", symbolic=False).cost((4, 1, 64), (4, 64, 32))
    assert estimate(mm, d, "fp32").kind == "gemv"                                # M = 1 per matrix


# ------------------------------------------------------------------------------------------- commands

def test_calibrate_quick_fits_every_kind(tmp_path, capsys):
    from symcost.timing.calibrate import CASES

    out = tmp_path / "cpu.json"
    assert main(["calibrate", "--quick", "--threads", "1", "--repeats", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "host per call" in text and "conv_1x1" in text
    d = Device.load(out)
    assert set(d.kinds) == set(CASES) | {"view"} and not d.asynchronous and d.fuses == ("conv_bias",)
    assert all(r.host_s is not None and r.host_s >= 0 for r in d.kinds.values())
    assert len(d.details["calls"]) == 2 * len(CASES)           # a small and a large call per kind


def test_latency_prediction_json_has_kernels_and_forward(capsys):
    assert main(["latency", "torchvision:resnet18", "--input", "1x3x64x64", "--device", "h100", "--no-measure",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in data["layers"]}
    assert rows["conv1"]["kind"] == "conv_kxk" and rows["conv1"]["kernels"] == 1      # no bias in resnet18
    assert rows["layer1.0: add"]["kind"] == "elementwise"                              # the functional add
    assert rows["fc"]["kernels"] == 1
    t = data["total"]
    assert t["kernels"] == sum(r["kernels"] for r in data["layers"])
    # batch 1 on a GPU is host-bound: the forward takes the host's time, not the sum of host + device
    assert t["predicted_host_s"] <= t["predicted_forward_s"] < t["predicted_s"]
    assert math.isclose(t["predicted_host_s"], sum(r["host_s"] for r in data["layers"]))


def test_fold_seed_reproduces_the_output(capsys):
    diffs = []
    for _ in range(2):
        assert main(["fold", "torchvision:resnet18", "--input", "1x3x32x32", "--seed", "3", "--json"]) == 0
        diffs.append(json.loads(capsys.readouterr().out)["max_abs_diff"])
    assert diffs[0] == diffs[1]


def test_measurement_warns_when_layers_and_forward_disagree(monkeypatch):
    from symcost.timing import measure

    monkeypatch.setattr(measure, "load_average", lambda: 0.1)
    m = measure.Measurement(per_row=[0.010, 0.004], forward_s=0.010, repeats=3, method="", regime={})
    # layers 14 ms against a 10 ms forward: 40 % apart, over the 25 % allowed
    (note,) = measure.trust_notes(m)
    assert "40 % apart" in note
    m.per_row = [0.006, 0.005]                     # 11 ms against 10 ms: 10 %, no note
    assert measure.trust_notes(m) == []
    monkeypatch.setattr(measure, "load_average", lambda: 3.5)
    assert "loaded" in measure.trust_notes(m)[0]


def test_calibrate_another_dtype_fits_its_own_fractions(tmp_path, capsys):
    from symcost.timing.calibrate import CASES

    out = tmp_path / "bf16.json"
    assert main(["calibrate", "--quick", "--threads", "1", "--repeats", "1", "--dtype", "bf16", "--out",
                 str(out)]) == 0
    assert "bf16" in capsys.readouterr().out
    d = Device.load(out)
    assert set(d.kinds_by_dtype) == {"bf16"} and set(d.kinds_by_dtype["bf16"]) == set(CASES)
    assert "bf16" in d.peak_flops_by_dtype and d.details["gemm"]["flops_per_s_by_dtype"]["bf16"] > 0
    assert all(r.host_s is None for r in d.kinds_by_dtype["bf16"].values())  # host time: the fp32 calls'
    assert main(["calibrate", "--quick", "--dtype", "int8", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "int8 cannot be measured" in err and err.count("\n") == 1


def test_cache_caps_a_memory_fraction_and_fresh_outputs_pay_their_first_touch():
    d = Device("toy", peak_flops=1e15, bandwidth=1e9, cache_bytes=10_000, first_touch_s=1e-9, first_touch_above=1000,
               kinds={"elementwise": KindRate(memory=2.0)})
    relu = symcost.layer("relu", symbolic=False)
    small, big = relu.cost((1, 100)), relu.cost((1, 10_000))
    # 100 elements read + 100 written, 4 bytes each = 800 bytes, in cache: at twice the bandwidth; no first touch
    e = estimate(small, d, "fp32")
    assert e.memory_s == pytest.approx(800 / 2e9) and e.first_touch_s == 0.0
    # 80,000 bytes > the cache: at the bandwidth itself; its 40,000-byte output is fresh: 40,000 x 1 ns
    e = estimate(big, d, "fp32")
    assert e.memory_s == pytest.approx(80_000 / 1e9) and e.first_touch_s == pytest.approx(40_000e-9)
    assert e.kernel_time_s == pytest.approx(80_000 / 1e9 + 40_000e-9)
    assert estimate(big, d, "fp32", fresh=False).first_touch_s == 0.0       # in place: no new memory


def test_in_place_calls_write_no_fresh_output():
    from symcost.timing.model import writes_fresh_output
    from symcost.tracing import trace
    from torchvision.models import resnet18

    rows = {r.name: r for r in trace(resnet18().to("meta"), (1, 3, 32, 32)).rows if r.is_call}
    assert not writes_fresh_output(rows["relu"])               # nn.ReLU(inplace=True)
    assert not writes_fresh_output(rows["layer1.0:add_"])      # out += identity
    assert writes_fresh_output(rows["conv1"]) and writes_fresh_output(rows["bn1"])


def test_last_level_cache_from_sysfs(tmp_path):
    from symcost.timing.measure import last_level_cache_bytes

    for index, size in (("index0", "48K"), ("index1", "32K"), ("index2", "1024K"), ("index3", "32768K")):
        (tmp_path / index).mkdir()
        (tmp_path / index / "size").write_text(size + "\n")
    assert last_level_cache_bytes(tmp_path) == 32768 * 1024          # the largest: L3, 32 MiB
    (tmp_path / "index4").mkdir()
    (tmp_path / "index4" / "size").write_text("1M\n")                 # another unit, smaller
    assert last_level_cache_bytes(tmp_path) == 32 << 20
    assert last_level_cache_bytes(tmp_path / "missing") == 0          # not Linux, or no sysfs: unknown
