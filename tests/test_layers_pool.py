"""Pooling layers against torch, and their counts derived by hand."""
import math

import pytest
import sympy
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from symcost import CONVENTIONS, layer
from symcost.cost import to_int
from symcost.empirical import measure
from symcost.layers.base import LayerError
from symcost.symbols import size


def against_torch(name, kwargs, shapes):
    """Shape, params, buffers and torch-convention FLOPs equal torch's exactly; returns the cost."""
    lay = layer(name, symbolic=False, **kwargs)
    cost = lay.cost(*shapes)
    real = measure(lay.torch_name, kwargs, shapes)
    assert tuple(to_int(d) for d in cost.output_shape) == real.output_shape, (name, kwargs, shapes)
    assert to_int(cost.params) == real.params
    assert to_int(cost.buffers) == real.buffers
    assert to_int(CONVENTIONS["torch"].count(cost)) == real.flops, real.flops_by_op
    return cost


def exact(name, shapes, **kwargs) -> int:
    return to_int(CONVENTIONS["exact"].count(layer(name, symbolic=False, **kwargs).cost(*shapes)))


@st.composite
def window_case(draw, kind):
    """A valid pooling configuration: padding at most half the kernel, the (dilated) kernel fits."""
    dims = draw(st.sampled_from([1, 2, 3]))
    ks = [draw(st.integers(1, 4)) for _ in range(dims)]
    pads = [draw(st.integers(0, k // 2)) for k in ks]
    dil = [draw(st.integers(1, 3)) for _ in range(dims)] if kind == "max" else [1] * dims
    # torch's avg_pool3d alone also wants the unpadded input to cover the kernel
    sizes = [max(1, d * (k - 1) + 1 - 2 * p, k if (kind, dims) == ("avg", 3) else 1)
             + draw(st.integers(0, 6 if dims < 3 else 3)) for k, p, d in zip(ks, pads, dil)]
    kwargs = {"kernel_size": tuple(ks), "padding": tuple(pads), "ceil_mode": draw(st.booleans())}
    stride = draw(st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=dims, max_size=dims)))
    if stride is not None:
        kwargs["stride"] = tuple(stride)
    if kind == "max":
        kwargs["dilation"] = tuple(dil)
        kwargs["return_indices"] = draw(st.booleans())
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        if dims > 1 and draw(st.booleans()):
            kwargs["divisor_override"] = draw(st.integers(1, 5))
    lead = draw(st.sampled_from([(3,), (2, 3)]))  # unbatched (C, ...) or batched (N, C, ...)
    return f"{kind}pool{dims}d", kwargs, [(*lead, *sizes)]


@settings(max_examples=25, deadline=None)
@given(window_case("max"))
def test_maxpool_matches_torch(case):
    name, kwargs, shapes = case
    against_torch(name, kwargs, shapes)


@settings(max_examples=25, deadline=None)
@given(window_case("avg"))
def test_avgpool_matches_torch(case):
    name, kwargs, shapes = case
    against_torch(name, kwargs, shapes)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["max", "avg"]), st.sampled_from([1, 2, 3]), st.integers(1, 4), st.integers(0, 3),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.booleans())
def test_pool_refuses_what_torch_refuses(kind, dims, k, p, s, d, i, ceil_mode):
    """symcost raises exactly when torch does (padding over half the kernel, kernel past the padded input,
    and avg_pool3d's input smaller than the kernel)."""
    kwargs = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil_mode}
    if kind == "max":
        kwargs["dilation"] = d
    shape = (1, 2, *[i + a for a in range(dims)])
    try:
        measure(f"torch.nn.{kind.capitalize()}Pool{dims}d", kwargs, [shape])
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    try:
        layer(f"{kind}pool{dims}d", symbolic=False, **kwargs).cost(shape)
        ours_ok = True
    except LayerError:
        ours_ok = False
    assert ours_ok == torch_ok, kwargs


def torch_window_total(i: int, o: int) -> int:
    """Sum of torch's adaptive window lengths along one axis, read off torch itself: row j of the identity
    is nonzero in output i exactly when j lies in window i."""
    eye = torch.eye(i).unsqueeze(1)  # batch i, channel 1, length i
    return int((F.adaptive_avg_pool1d(eye, o) != 0).sum())


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_adaptive_pool_matches_torch(data):
    kind = data.draw(st.sampled_from(["avg", "avg", "max"]))
    dims = data.draw(st.sampled_from([1, 2, 3]))
    sizes = [data.draw(st.integers(1, 9)) for _ in range(dims)]
    outs = [data.draw(st.one_of(st.integers(1, 8), st.none()) if dims > 1 else st.integers(1, 8)) for _ in range(dims)]
    n, c = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    kwargs = {"output_size": tuple(outs) if dims > 1 else outs[0]}
    cost = against_torch(f"adaptive_{kind}pool{dims}d", kwargs, [(n, c, *sizes)])
    # window elements summed over all outputs, from torch's own windows (separable: a product over axes)
    summed = n * c * math.prod(i if o is None else torch_window_total(i, o) for i, o in zip(sizes, outs))
    outputs = n * c * math.prod(i if o is None else o for i, o in zip(sizes, outs))
    expected = {"add": summed - outputs, "div": outputs} if kind == "avg" else {"cmp": summed - outputs}
    assert {k: to_int(v) for k, v in cost.ops.items()} == {k: v for k, v in expected.items() if v}


def test_maxpool2d_hand_count():
    # k=3, stride 1, padding 1 keeps 5x5: 2*3*5*5 = 150 outputs x (3*3-1) cmp = 1200 (edge windows counted full)
    assert exact("maxpool2d", [(2, 3, 5, 5)], kernel_size=3, stride=1, padding=1) == 1200


def test_avgpool2d_hand_count():
    # k=2 (stride 2) on 6x6: 3x3 outputs per channel, 1*4*9 = 36 outputs x (2*2-1 add + 1 div) = 144
    assert exact("avgpool2d", [(1, 4, 6, 6)], kernel_size=2) == 144


def test_maxpool1d_ceil_mode_hand_count():
    # L=5, k=2, s=2: floor mode 2 outputs, ceil mode 3 (window 3 starts at 4, inside the input) -> 3 x 1 cmp
    assert exact("maxpool1d", [(1, 1, 5)], kernel_size=2) == 2
    assert exact("maxpool1d", [(1, 1, 5)], kernel_size=2, ceil_mode=True) == 3
    # L=4, k=2, s=2, padding 1: ceil((4+2-2)/2)+1 = 3 windows starting at -1, 1, 3 (3 < 4+1): all kept
    assert exact("maxpool1d", [(1, 1, 4)], kernel_size=2, padding=1, ceil_mode=True) == 3


def test_adaptive_avgpool_hand_count():
    # I=7, O=3: windows [0,3), [2,5), [4,7): lengths 3+3+3 = 9; per channel 9-3 = 6 adds and 3 divs
    # 2*4 = 8 channels -> 8 * (6 + 3) = 72
    assert exact("adaptive_avgpool1d", [(2, 4, 7)], output_size=3) == 72
    # I=5, O=3: [0,2), [1,4), [3,5): 2+3+2 = 7 (= 5 + 3 - gcd(5, 3)); 6 ops per channel
    assert exact("adaptive_avgpool1d", [(1, 1, 5)], output_size=3) == 7 - 3 + 3


def test_maxpool2d_symbolic_identity():
    n, c, h, w = (size(s) for s in "NCHW")
    cost = layer("maxpool2d", symbolic=False, kernel_size=2).cost((n, c, h, w))
    expected = n * c * sympy.floor(h / 2) * sympy.floor(w / 2) * (2 * 2 - 1)
    assert sympy.simplify(cost.op("cmp") - expected) == 0
    assert cost.output_shape == (n, c, sympy.floor(h / 2), sympy.floor(w / 2))


def test_adaptive_symbolic_identity():
    # O divides I (I = O*m): every window has m elements, T = I; adds = N*C*(H*W - O_h*O_w)
    n, c, m = size("N"), size("C"), size("m")
    cost = layer("adaptive_avgpool2d", output_size=(4, 2)).cost((n, c, 4 * m, 2 * m))
    assert sympy.simplify(cost.op("add") - n * c * (8 * m * m - 8)) == 0
    # symbolic O: T = I + O - gcd(I, O), checked against torch's windows
    sym = layer("adaptive_avgpool1d").cost()  # output_size -> O
    (o,) = [s for s in sym.free_symbols if s.name == "O"]
    (i,) = [s for s in sym.free_symbols if s.name == "L"]
    for iv, ov in [(7, 3), (5, 3), (3, 5), (12, 8), (9, 9), (1, 4)]:
        adds = sym.op("add").subs({o: ov, i: iv, size("N"): 1, size("C"): 1})
        assert adds == torch_window_total(iv, ov) - ov


def test_pool_errors():
    with pytest.raises(LayerError, match="half"):
        layer("maxpool2d", kernel_size=2, padding=2)
    with pytest.raises(LayerError, match="larger than the padded input"):
        layer("avgpool2d", symbolic=False, kernel_size=5).cost((1, 1, 3, 3))
    with pytest.raises(LayerError, match="larger than the padded input"):
        layer("maxpool1d", symbolic=False, kernel_size=3, dilation=3).cost((1, 1, 6))
    with pytest.raises(LayerError, match="positive"):
        layer("adaptive_avgpool2d", output_size=0)
