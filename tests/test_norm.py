"""Norm layers against torch, and their counts derived by hand."""
import sympy
from helpers import assert_matches_torch, numbers
from hypothesis import given, settings
from hypothesis import strategies as st

from symcost import layer


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 7), st.integers(1, 7), st.booleans(), st.booleans(),
       st.sampled_from(["eval", "train"]))
def test_batchnorm2d_matches_torch(n, c, h, w, affine, track, mode):
    if (mode == "train" or not track) and n * h * w == 1:
        n = 2  # torch refuses batch statistics over one value (used in eval too without running stats)
    assert_matches_torch("batchnorm2d", [(n, c, h, w)], torch_kwargs=dict(num_features=c, affine=affine,
                         track_running_stats=track), train=mode == "train", num_features=c, affine=affine,
                         track_running_stats=track, mode=mode)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 4), st.integers(1, 6), st.lists(st.integers(1, 5), max_size=1))
def test_batchnorm1d_matches_torch(n, c, length):
    assert_matches_torch("batchnorm1d", [(n, c, *length)], torch_kwargs=dict(num_features=c), num_features=c)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 6), st.booleans(), st.booleans())
def test_layernorm_matches_torch(n, length, d, affine, bias):
    assert_matches_torch("layernorm", [(n, length, d)], normalized_shape=(d,), elementwise_affine=affine, bias=bias)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 5), st.booleans())
def test_groupnorm_matches_torch(n, groups, per_group, hw, affine):
    c = groups * per_group
    hw = hw if per_group * hw * hw > 1 else 2  # torch refuses statistics over one value
    assert_matches_torch("groupnorm", [(n, c, hw, hw)], num_groups=groups, num_channels=c, affine=affine)


def test_batchnorm_eval_exact_count():
    # eval: y = a*x + b' per element: 1 mul + 1 add ; 2*16*7*7 elements -> 2 * 1568 = 3136
    assert numbers("batchnorm2d", [(2, 16, 7, 7)], "exact", num_features=16)["flops"] == 2 * (2 * 16 * 7 * 7)


def test_batchnorm_train_exact_count():
    # per channel over m = 2*3*3 = 18 values: mean 17 adds + 1 div; variance 18 subs, 18 squares, 17 adds, 1 div;
    # eps add, sqrt, gamma/sigma div: 3; normalise 18 muls + 18 adds (beta)
    # per channel: adds 17+18+17+1+18 = 71, muls 36, divs 3, sqrt 1 -> 111 ; 4 channels -> 444
    assert numbers("batchnorm2d", [(2, 4, 3, 3)], "exact", num_features=4, mode="train")["flops"] == 444


def test_layernorm_formula():
    # each row of D: 3D-1 adds for mean/var + 1 eps add, D squares, 3 divs, 1 sqrt; then D (x-mu)*r, D*gamma, D+beta
    d, rows = sympy.symbols("D_n R", integer=True, positive=True)
    cost = layer("layernorm", normalized_shape=(d,)).cost((rows, d))
    exact_per_row = (3 * d - 2 + 1) + d + 3 + 1 + 3 * d
    from symcost import CONVENTIONS
    assert sympy.simplify(CONVENTIONS["exact"].count(cost) - rows * exact_per_row) == 0
