"""Every worked number from the seed documents (../shared/seeds), reproduced with its convention."""
import sympy
from helpers import numbers

from symcost import CONVENTIONS, layer
from symcost.symbols import C_in, C_out, F_in, F_out, H, N, W, per_axis

KH, KW = per_axis("K", 2)


def test_seed_004_conv_bn_hardtanh():
    conv = dict(in_channels=1, out_channels=32, kernel_size=(4, 10), stride=(2, 8), padding=0, bias=False)
    c = numbers("conv2d", [(1, 1, 130, 40)], "mults", **conv)
    # ((130-4)/2)+1 = 64, ((40-10)/8)+1 = 4.75 -> 4 (the floor): output 32x64x4
    assert c["shape"] == (1, 32, 64, 4)
    assert c["params"] == 32 * 4 * 10 == 1280
    # the seed writes 312320 here, an arithmetic slip: 32*64*4 outputs x 4*10 = 327680
    assert c["flops"] == 32 * 64 * 4 * 4 * 10 == 327680
    bn = numbers("batchnorm2d", [(1, 32, 64, 4)], "mults", num_features=32, mode="train")
    assert bn["params"] == 32 * 2 == 64
    # a square for the variance and a scale, per element: 32*64*4*2
    assert bn["flops"] == 32 * 64 * 4 * 2 == 16384
    act = numbers("hardtanh", [(1, 32, 64, 4)], "mults", min_val=0.0, max_val=4 * 127 / 128)
    assert act["flops"] == 0 and act["params"] == 0
    # the seed's own total only adds up with the corrected conv line: 327680 + 16384 = 344064
    assert c["flops"] + bn["flops"] + act["flops"] == 344064
    assert c["params"] + bn["params"] == 1344


def test_seed_000_bn_inference_is_hwc_mults_and_adds():
    cost = layer("batchnorm2d", mode="eval").cost()
    c = sympy.Symbol("C", integer=True, positive=True)
    assert sympy.simplify(cost.op("mul") - N * H * W * c) == 0
    assert sympy.simplify(cost.op("add") - N * H * W * c) == 0
    # folded into the conv before it: nothing left
    folded = layer("batchnorm2d", mode="folded").cost()
    assert CONVENTIONS["exact"].count(folded) == 0 and folded.params == 0


def test_seed_000_conv_mults_and_adds_with_and_without_bias():
    exact = CONVENTIONS["exact"]
    mults = CONVENTIONS["mults"]
    outputs = None
    for bias in (True, False):
        cost = layer("conv2d", bias=bias, groups=1).cost()
        outputs = cost.output_shape[2] * cost.output_shape[3] * C_out * N
        mul = outputs * KH * KW * C_in
        add = outputs * KH * KW * C_in if bias else outputs * (KH * KW * C_in - 1)
        assert sympy.simplify(mults.count(cost) - mul) == 0
        assert sympy.simplify(exact.count(cost) - (mul + add)) == 0
    assert outputs is not None


def test_seed_002_conv_and_fc_formulas():
    exact = CONVENTIONS["exact"]
    # conv, output the same size as input (stride 1, 'same'): (2*Kh*Kw*Cin - 1)*Cout*H*W without bias
    no_bias = layer("conv2d", bias=False, groups=1, padding="same", stride=1, dilation=1).cost((1, C_in, H, W))
    assert sympy.simplify(exact.count(no_bias) - (2 * KH * KW * C_in - 1) * C_out * H * W) == 0
    with_bias = layer("conv2d", bias=True, groups=1, padding="same", stride=1, dilation=1).cost((1, C_in, H, W))
    assert sympy.simplify(exact.count(with_bias) - 2 * KH * KW * C_in * C_out * H * W) == 0
    assert sympy.simplify(with_bias.params - (C_out * KH * KW * C_in + C_out)) == 0
    # fully connected: (2*Nin - 1)*Nout without bias, 2*Nin*Nout with
    fc = layer("linear", bias=False).cost((1, F_in))
    assert sympy.simplify(exact.count(fc) - (2 * F_in - 1) * F_out) == 0
    fcb = layer("linear", bias=True).cost((1, F_in))
    assert sympy.simplify(exact.count(fcb) - 2 * F_in * F_out) == 0
    assert sympy.simplify(fcb.params - (F_out * F_in + F_out)) == 0
    # the seed's numbers: conv [b,28,28,3] * [16,5,5,3] with bias, 'same': 2*5*5*3*16*28*28 = 1881600
    n = numbers("conv2d", [(1, 3, 28, 28)], "exact", in_channels=3, out_channels=16, kernel_size=5, padding="same")
    assert n["flops"] == 2 * 5 * 5 * 3 * 16 * 28 * 28 == 1881600
    assert n["params"] == 16 * 5 * 5 * 3 + 16 == 1216
    # FC 128 -> 64: params 64*128 + 64 = 8256, exact with bias 2*128*64 = 16384
    assert numbers("linear", [(1, 128)], "exact", in_features=128, out_features=64)["flops"] == 16384


def test_seed_001_keras_table():
    # Conv2D(32, 3x3, same) on 32x32x3 -> BN -> Flatten -> Dense(43); Keras is NHWC, torch NCHW: same counts.
    conv = numbers("conv2d", [(1, 3, 32, 32)], "flops", in_channels=3, out_channels=32, kernel_size=3, padding=1)
    assert conv["params"] == 3 * 3 * 3 * 32 + 32 == 896
    bn = numbers("batchnorm2d", [(1, 32, 32, 32)], "flops", num_features=32)
    # Keras' 128 = 64 trainable (gamma, beta) + 64 non-trainable running statistics
    assert bn["params"] == 64 and bn["buffers"] == 64 and bn["params"] + bn["buffers"] == 128
    dense = numbers("linear", [(1, 32 * 32 * 32)], "flops", in_features=32768, out_features=43)
    assert dense["params"] == 32768 * 43 + 43 == 1409067
    # Its MFLOPS column (10**6) is reproduced by the 'fritz' convention: conv one per MAC + bias add,
    # dense two per MAC + bias add, BN one multiply + one add per element, flatten nothing.
    # conv: 32*32*32 outputs x (27 + 1) = 917504 -> 0.92 ; BN: 2*32768 = 65536 -> 0.07 ;
    # dense: 43 x (2*32768 + 1) = 2818091 -> 2.82
    fritz = {k: numbers(*a, "fritz", **kw)["flops"] for k, a, kw in (
        ("conv", ("conv2d", [(1, 3, 32, 32)]), dict(in_channels=3, out_channels=32, kernel_size=3, padding=1)),
        ("bn", ("batchnorm2d", [(1, 32, 32, 32)]), dict(num_features=32)),
        ("dense", ("linear", [(1, 32768)]), dict(in_features=32768, out_features=43)),
    )}
    assert fritz == {"conv": 917504, "bn": 65536, "dense": 2818091}
    assert [round(fritz[k] / 1e6, 2) for k in ("conv", "bn", "dense")] == [0.92, 0.07, 2.82]
