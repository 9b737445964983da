"""Activations against torch, and their per-element counts derived by hand."""
import pytest
import sympy
import torch
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
    assert to_int(cost.params) == real.params, (name, kwargs)
    assert to_int(cost.buffers) == real.buffers
    assert to_int(CONVENTIONS["torch"].count(cost)) == real.flops, real.flops_by_op
    return cost


def exact(name, shapes, **kwargs) -> int:
    return to_int(CONVENTIONS["exact"].count(layer(name, symbolic=False, **kwargs).cost(*shapes)))


INPLACE = ("relu", "relu6", "hardtanh", "leaky_relu", "silu", "hardswish", "hardsigmoid", "elu", "mish")
FLOATS = st.floats(-3, 3, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def activation_case(draw):
    name = draw(st.sampled_from(["relu", "relu6", "hardtanh", "leaky_relu", "sigmoid", "tanh", "gelu", "silu",
                                 "hardswish", "hardsigmoid", "elu", "softplus", "mish", "prelu"]))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    kwargs = {}
    if name in INPLACE:
        kwargs["inplace"] = draw(st.booleans())
    if name == "hardtanh":
        lo = draw(FLOATS)
        kwargs.update(min_val=lo, max_val=lo + draw(st.floats(0.5, 3)))
    elif name == "leaky_relu":
        kwargs["negative_slope"] = draw(FLOATS)
    elif name == "gelu":
        kwargs["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    elif name == "elu":
        kwargs["alpha"] = draw(FLOATS)
    elif name == "softplus":
        kwargs.update(beta=draw(st.sampled_from([0.5, 1.0, 2.0])), threshold=draw(st.sampled_from([10.0, 20.0])))
    elif name == "prelu" and draw(st.booleans()) and len(shape) >= 2:
        kwargs["num_parameters"] = shape[1]  # one slope per channel (dim 1)
    return name, kwargs, [shape]


@settings(max_examples=25, deadline=None)
@given(activation_case())
def test_elementwise_activation_matches_torch(case):
    name, kwargs, shapes = case
    against_torch(name, kwargs, shapes)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["softmax", "log_softmax"]), st.lists(st.integers(1, 5), min_size=1, max_size=4), st.data())
def test_softmax_matches_torch(name, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    against_torch(name, {"dim": dim}, [tuple(shape)])


def test_hand_counts():
    # 2*3*4*5 = 120 elements throughout
    assert exact("relu", [(2, 3, 4, 5)]) == 120                     # 1 cmp each
    assert exact("relu6", [(2, 3, 4, 5)]) == 240                    # max then min: 2 cmp
    assert exact("sigmoid", [(2, 3, 4, 5)]) == 360                  # exp, 1 + e, 1 / (.): 3
    assert exact("leaky_relu", [(2, 3, 4, 5)]) == 240               # x > 0, a*x: 2
    assert exact("gelu", [(2, 3, 4, 5)]) == 600                     # x/sqrt2, erf, 1+, x*, /2: 5
    # tanh form: x*x*x (2 mul), 0.044715*, x + (add), sqrt(2/pi)*, tanh, 1 +, x*, 0.5*: 6 mul, 2 add, 1 fn = 9
    assert exact("gelu", [(2, 3, 4, 5)], approximate="tanh") == 1080
    assert exact("hardswish", [(2, 3, 4, 5)]) == 600                # x+3, max, min, x*, /6: 5
    assert exact("mish", [(2, 3, 4, 5)]) == 600                     # exp, 1+, log, tanh, x*: 5
    assert exact("softplus", [(2, 3, 4, 5)]) == 720                 # beta*x, > threshold, exp, 1+, log, /beta: 6


def test_prelu_params_and_count():
    # 3 slopes (one per channel); per element x > 0 and a_c * x: 2 ops, 2*3*4 = 24 elements -> 48
    cost = layer("prelu", symbolic=False, num_parameters=3).cost((2, 3, 4))
    assert to_int(cost.params) == 3 == sum(p.numel() for p in torch.nn.PReLU(3).parameters())
    assert to_int(CONVENTIONS["exact"].count(cost)) == 48
    with pytest.raises(LayerError, match="channel"):
        layer("prelu", symbolic=False, num_parameters=3).cost((2, 4, 4))


def test_softmax_hand_count():
    # rows of D=10, 2*3 = 6 rows: max 9 cmp, 10 subtractions, 10 exp, 9 adds, 10 divs = 48 per row -> 288
    assert exact("softmax", [(2, 3, 10)]) == 288
    # dim=1: rows of 3, 2*10 = 20 rows x (2 + 3 + 3 + 2 + 3 = 13) = 260
    assert exact("softmax", [(2, 3, 10)], dim=1) == 260
    # log_softmax per row of 10: 9 cmp + 10 sub + 10 exp + 9 add + 1 log + 10 sub = 49; 6 rows -> 294
    assert exact("log_softmax", [(2, 3, 10)]) == 294


def test_softmax_symbolic_identity():
    n, length, d = size("N"), size("L"), size("D")
    cost = layer("softmax").cost()  # default input (N, L, D), dim=-1
    assert cost.output_shape == (n, length, d)
    # per row: (D-1) + D + D + (D-1) + D = 5D - 2
    assert sympy.simplify(CONVENTIONS["exact"].count(cost) - n * length * (5 * d - 2)) == 0
    relu = layer("relu").cost()
    assert sympy.simplify(relu.op("cmp") - sympy.Mul(*relu.output_shape)) == 0


def test_inplace_does_not_change_cost():
    assert layer("relu", inplace=True).cost() == layer("relu", inplace=False).cost()


def test_activation_errors():
    with pytest.raises(LayerError, match="greater"):
        layer("hardtanh", min_val=1.0, max_val=1.0)
    with pytest.raises(AssertionError):  # torch refuses the same
        torch.nn.Hardtanh(1.0, 1.0)
    with pytest.raises(LayerError):
        layer("gelu", approximate="fast")
    with pytest.raises(LayerError, match="out of range"):
        layer("softmax", symbolic=False, dim=3).cost((2, 3, 4))
