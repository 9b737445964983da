"""Convolutions, linear and matmul against real torch modules, and their formulas as formulas."""
import sympy
import torch
from helpers import assert_matches_torch, numbers
from hypothesis import given, settings
from hypothesis import strategies as st

from symcost import layer
from symcost.symbols import C_in, C_out, N, b, g, per_axis

torch.set_num_threads(1)


@st.composite
def conv_case(draw, transposed: bool):
    dims = draw(st.integers(1, 3 if not transposed else 2))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    s = tuple(draw(st.integers(1, 3)) for _ in range(dims))
    d = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    p = tuple(draw(st.integers(0, 2)) for _ in range(dims))
    low = 1 if transposed else None
    sizes = []
    for i in range(dims):
        need = max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) if not transposed else low
        sizes.append(draw(st.integers(need, need + (9 if dims < 3 else 4))))
    kw = dict(in_channels=cin, out_channels=cout, kernel_size=k, stride=s, padding=p, dilation=d, groups=groups,
              bias=draw(st.booleans()))
    if transposed:
        kw["output_padding"] = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
        # keep the output positive: (I-1)s - 2p + d(k-1) + q + 1 >= 1
        sizes = [max(sz, 1 + (2 * pi) // si + 1) for sz, pi, si in zip(sizes, p, s)]
    shape = (draw(st.integers(1, 2)), cin, *sizes)
    return dims, kw, shape


@settings(max_examples=40, deadline=None)
@given(conv_case(transposed=False))
def test_conv_matches_torch(case):
    dims, kw, shape = case
    assert_matches_torch(f"conv{dims}d", [shape], **kw)


@settings(max_examples=30, deadline=None)
@given(conv_case(transposed=True))
def test_conv_transpose_matches_torch(case):
    dims, kw, shape = case
    assert_matches_torch(f"conv_transpose{dims}d", [shape], **kw)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from(["same", "valid"]), st.integers(1, 5), st.integers(1, 3))
def test_conv_string_padding(h, w, padding, k, dil):
    h, w = h + dil * (k - 1), w + dil * (k - 1)  # 'valid' needs the kernel to fit
    assert_matches_torch("conv2d", [(1, 2, h, w)], in_channels=2, out_channels=3, kernel_size=k, padding=padding,
                         dilation=dil)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=0, max_size=2), st.integers(1, 20), st.integers(1, 20), st.booleans())
def test_linear_matches_torch(lead, fin, fout, bias):
    assert_matches_torch("linear", [(*lead, fin)], in_features=fin, out_features=fout, bias=bias)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.booleans())
def test_matmul_and_bmm_match_torch(batch, m, k, p, broadcast):
    a, c = (batch, m, k), ((1, k, p) if broadcast else (batch, k, p))
    assert_matches_torch("matmul", [a, c])
    assert_matches_torch("bmm", [(batch, m, k), (batch, k, p)])


def test_conv_macs_formula_is_the_textbook_one():
    cost = layer("conv2d").cost()
    kh, kw = per_axis("K", 2)
    ho, wo = cost.output_shape[2], cost.output_shape[3]
    assert sympy.simplify(cost.macs - C_out * C_in / g * kh * kw * ho * wo * N) == 0
    assert sympy.simplify(cost.params - (C_out * C_in / g * kh * kw + b * C_out)) == 0


def test_conv_output_size_has_floors_that_matter():
    # (225 + 2*3 - 1*(7-1) - 1)/2 = 112.0 -> 113 ; (224 + 6 - 6 - 1)/2 = 111.5 -> floor 111 -> 112
    kw = dict(in_channels=3, out_channels=64, kernel_size=7, stride=2, padding=3, bias=False)
    assert numbers("conv2d", [(1, 3, 225, 225)], **kw)["shape"] == (1, 64, 113, 113)
    assert numbers("conv2d", [(1, 3, 224, 224)], **kw)["shape"] == (1, 64, 112, 112)
    # ResNet stem MACs at 224: 112*112 outputs * 64 channels * 3*7*7 = 118013952
    assert numbers("conv2d", [(1, 3, 224, 224)], **kw)["macs"] == 112 * 112 * 64 * 3 * 7 * 7 == 118013952


def test_depthwise_conv_counts_one_input_channel_per_output():
    # depthwise 3x3 on 32 channels at 10x10, padding 1: 32*10*10 outputs x 9 MACs = 28800
    n = numbers("conv2d", [(1, 32, 10, 10)], "macs", in_channels=32, out_channels=32, kernel_size=3, padding=1,
                groups=32, bias=False)
    assert n["macs"] == 32 * 10 * 10 * 9 == 28800
    assert n["params"] == 32 * 9


def test_linear_any_leading_dims():
    # (2, 5, 7) @ 7->3: 2*5*3 outputs x 7 MACs = 210 ; exact with bias: 2*7 per output = 420
    assert numbers("linear", [(2, 5, 7)], "macs", in_features=7, out_features=3)["macs"] == 210
    assert numbers("linear", [(2, 5, 7)], "exact", in_features=7, out_features=3)["flops"] == 2 * 5 * 3 * (2 * 7)


def test_transposed_conv_scatters_inputs():
    # ConvTranspose2d(4, 6, 3, stride=2) on 1x4x5x5: 4*5*5 inputs x 6*3*3 = 5400 MACs, output (5-1)*2+3 = 11
    n = numbers("conv_transpose2d", [(1, 4, 5, 5)], "macs", in_channels=4, out_channels=6, kernel_size=3, stride=2)
    assert n["shape"] == (1, 6, 11, 11)
    assert n["macs"] == 4 * 5 * 5 * 6 * 3 * 3 == 5400
