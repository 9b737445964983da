"""Every layer configuration torch refuses, symcost refuses too (``LayerError``; on the command line one line, exit 2);
every one torch runs, symcost counts, with torch's output shape.

The expected outcome always comes from torch itself: the real module or function is built and called on random
tensors (``torch_outcomes.torch_outcome``).  Each family's boundaries are tried on both sides, then random
configurations around them (hypothesis).  A few configurations torch runs that symcost refuses on purpose are listed
in ``SYMCOST_STRICTER`` with the reason, and checked to stay that way.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symcost
from symcost.cli import main
from symcost.errors import LayerError
from tests.torch_outcomes import REFUSED, symcost_outcome, torch_outcome

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")
INF = float("inf")


def case(name, shapes, **kwargs):
    return pytest.param(name, kwargs, shapes, id=f"{name}-{'-'.join('x'.join(map(str, s)) for s in shapes)}-"
                                                   + "-".join(f"{k}={v}" for k, v in kwargs.items()))


_CONV = dict(in_channels=1, out_channels=1, kernel_size=3)

#: (layer, arguments, input shapes): each boundary on both sides; torch decides which side is refused
BOUNDARIES = [
    # reflect padding must stay below the input size, circular may equal it, replicate may exceed it
    case("conv1d", [(1, 1, 4)], padding=3, padding_mode="reflect", **_CONV),
    case("conv1d", [(1, 1, 4)], padding=4, padding_mode="reflect", **_CONV),
    case("conv1d", [(1, 1, 4)], padding=4, padding_mode="circular", **_CONV),
    case("conv1d", [(1, 1, 4)], padding=5, padding_mode="circular", **_CONV),
    case("conv1d", [(1, 1, 4)], padding=9, padding_mode="replicate", **_CONV),
    case("conv2d", [(1, 1, 4, 3)], padding=(1, 2), padding_mode="reflect", **_CONV),
    case("conv2d", [(1, 1, 4, 3)], padding=(1, 3), padding_mode="reflect", **_CONV),
    case("conv2d", [(1, 4, 3)], padding=(3, 1), padding_mode="reflect", **_CONV),
    case("conv2d", [(1, 4, 3)], padding=(4, 1), padding_mode="reflect", **_CONV),
    case("conv3d", [(1, 1, 3, 3, 3)], padding=2, padding_mode="reflect", **_CONV),
    case("conv3d", [(1, 1, 3, 3, 3)], padding=3, padding_mode="reflect", **_CONV),
    case("conv3d", [(1, 1, 3, 3, 3)], padding=3, padding_mode="circular", **_CONV),
    case("conv3d", [(1, 1, 3, 3, 3)], padding=4, padding_mode="circular", **_CONV),
    # padding='same' pads d(k-1) in all, the odd one on the right
    case("conv1d", [(1, 1, 4)], in_channels=1, out_channels=1, kernel_size=7, padding="same", padding_mode="reflect"),
    case("conv1d", [(1, 1, 4)], in_channels=1, out_channels=1, kernel_size=8, padding="same", padding_mode="reflect"),
    case("conv1d", [(1, 1, 4)], in_channels=1, out_channels=1, kernel_size=9, padding="same", padding_mode="circular"),
    case("conv1d", [(1, 1, 4)], in_channels=1, out_channels=1, kernel_size=10, padding="same",
         padding_mode="circular"),
    case("conv1d", [(1, 1, 4)], in_channels=1, out_channels=1, kernel_size=3, dilation=3, padding="same",
         padding_mode="reflect"),
    case("conv1d", [(1, 1, 4)], in_channels=1, out_channels=1, kernel_size=3, dilation=4, padding="same",
         padding_mode="reflect"),
    # transposed convolutions pad with zeros only
    case("conv_transpose2d", [(1, 1, 4, 4)], padding_mode="zeros", **_CONV),
    case("conv_transpose2d", [(1, 1, 4, 4)], padding_mode="reflect", **_CONV),
    case("conv_transpose1d", [(1, 1, 4)], padding_mode="circular", **_CONV),
    case("conv_transpose3d", [(1, 1, 4, 4, 4)], padding_mode="replicate", **_CONV),
    # batch statistics need more than one value per channel
    case("batchnorm1d", [(1, 3)], num_features=3, mode="train"),
    case("batchnorm1d", [(2, 3)], num_features=3, mode="train"),
    case("batchnorm1d", [(1, 3, 1)], num_features=3, mode="train"),
    case("batchnorm1d", [(1, 3, 2)], num_features=3, mode="train"),
    case("batchnorm2d", [(1, 3, 1, 1)], num_features=3, mode="train"),
    case("batchnorm2d", [(1, 3, 1, 2)], num_features=3, mode="train"),
    case("batchnorm3d", [(1, 3, 1, 1, 1)], num_features=3, mode="train"),
    case("batchnorm3d", [(2, 3, 1, 1, 1)], num_features=3, mode="train"),
    case("batchnorm2d", [(1, 3, 1, 1)], num_features=3, track_running_stats=False),
    case("batchnorm2d", [(1, 3, 2, 1)], num_features=3, track_running_stats=False),
    case("batchnorm2d", [(1, 3, 1, 1)], num_features=3),   # running statistics: one value is enough
    # resizing: positive output sizes, one size per spatial dim, the mode's rank, align_corners only when it means
    # something, torch's floating-point product
    case("upsample", [(1, 3, 4, 4)], scale_factor=-2.0),
    case("upsample", [(1, 3, 4, 4)], scale_factor=0.0),
    case("upsample", [(1, 3, 4, 4)], scale_factor=0.2),
    case("upsample", [(1, 3, 4, 4)], scale_factor=0.25),
    case("upsample", [(1, 3, 4, 4)], scale_factor=NAN),
    case("upsample", [(1, 3, 4, 4)], scale_factor=INF),
    case("upsample", [(1, 3, 4, 4)], scale_factor=1e30),
    case("upsample", [(1, 1, 100)], scale_factor=0.29),     # 100 * 0.29 is 28.999999999999996 in double: 28
    case("upsample", [(1, 1, 10)], scale_factor=2.3),       # 10 * 2.3 rounds up to exactly 23.0
    case("upsample", [(1, 1, 4)], size=(4, 4)),
    case("upsample", [(1, 1, 4, 4)], size=(4, 4, 4)),
    case("upsample", [(1, 1, 4, 4)], size=(5, 6)),
    case("upsample", [(1, 1, 4)], scale_factor=2.0, mode="bilinear"),
    case("upsample", [(1, 1, 4, 4)], scale_factor=2.0, mode="bilinear"),
    case("upsample", [(1, 1, 4, 4)], scale_factor=2.0, mode="linear"),
    case("upsample", [(1, 1, 4)], scale_factor=2.0, mode="linear"),
    case("upsample", [(1, 1, 4, 4)], scale_factor=2.0, mode="trilinear"),
    case("upsample", [(1, 1, 4, 4, 4)], scale_factor=2.0, mode="trilinear"),
    case("upsample", [(1, 1, 4, 4, 4)], scale_factor=2.0, mode="bicubic"),
    case("upsample", [(1, 1, 4, 4)], scale_factor=2.0, mode="bicubic"),
    case("upsample", [(1, 1, 4, 4, 4, 4)], scale_factor=2.0, mode="nearest"),
    case("upsample", [(1, 1, 4, 4, 4)], scale_factor=2.0, mode="nearest-exact"),
    case("upsample", [(1, 1, 4, 4)], scale_factor=2.0, mode="nearest", align_corners=False),
    case("upsample", [(1, 1, 4, 4)], scale_factor=2.0, mode="bilinear", align_corners=True),
    # top-k: k up to the size of the dim
    case("topk", [(2, 3)], k=3), case("topk", [(2, 3)], k=4), case("topk", [(2, 3)], k=0),
    case("topk", [(2, 3)], k=2, dim=0), case("topk", [(2, 3)], k=3, dim=0),
    # patches: the kernel must fit the padded input; the columns must hold whole patches
    case("unfold", [(1, 1, 3, 3)], kernel_size=3), case("unfold", [(1, 1, 3, 3)], kernel_size=4),
    case("unfold", [(1, 1, 3, 3)], kernel_size=5, padding=1), case("unfold", [(1, 1, 3, 3)], kernel_size=6, padding=1),
    case("unfold", [(2, 3, 5)], kernel_size=(2, 3), dilation=2), case("unfold", [(2, 3, 5)], kernel_size=(2, 3),
                                                                          dilation=(2, 3)),
    case("fold", [(1, 4, 4)], output_size=(3, 3), kernel_size=2),
    case("fold", [(1, 5, 4)], output_size=(3, 3), kernel_size=2),
    case("fold", [(1, 4, 1)], output_size=(1, 1), kernel_size=2),
    case("fold", [(1, 4, 1)], output_size=(2, 2), kernel_size=2),
    # products: bmm does not broadcast; addmm's factors are matrices and its bias broadcasts to the product
    case("bmm", [(3, 4, 5), (3, 5, 2)]), case("bmm", [(3, 4, 5), (1, 5, 2)]),
    case("addmm", [(6,), (4, 5), (5, 6)]), case("addmm", [(7,), (4, 5), (5, 6)]),
    case("addmm", [(1,), (4, 5), (5, 6)]), case("addmm", [(4, 1), (4, 5), (5, 6)]),
    case("addmm", [(5, 6), (4, 5), (5, 6)]), case("addmm", [(2, 4, 6), (4, 5), (5, 6)]),
    case("addmm", [(6,), (2, 4, 5), (5, 6)]),
    case("baddbmm", [(2, 3, 4), (2, 3, 5), (2, 5, 4)]), case("baddbmm", [(3, 4), (2, 3, 5), (2, 5, 4)]),
    case("baddbmm", [(2, 3, 5), (2, 3, 5), (2, 5, 4)]), case("baddbmm", [(3, 3, 4), (2, 3, 5), (2, 5, 4)]),
    case("baddbmm", [(2, 3, 4), (2, 3, 5), (1, 5, 4)]),
    # boundaries symcost already kept: pooling padding, kernels past the input, dims, broadcasting, heads
    case("maxpool1d", [(1, 1, 8)], kernel_size=4, padding=2), case("maxpool1d", [(1, 1, 8)], kernel_size=4, padding=3),
    case("maxpool2d", [(1, 1, 8, 8)], kernel_size=3, dilation=2, padding=1),
    case("maxpool2d", [(1, 1, 8, 8)], kernel_size=3, dilation=2, padding=2),
    case("maxpool1d", [(1, 1, 4)], kernel_size=3, dilation=2),
    case("maxpool1d", [(1, 1, 5)], kernel_size=3, dilation=2),
    case("avgpool1d", [(1, 1, 4)], kernel_size=5), case("avgpool1d", [(1, 1, 4)], kernel_size=5, padding=1),
    case("avgpool3d", [(1, 1, 4, 4, 4)], kernel_size=5, padding=1),
    case("avgpool2d", [(1, 1, 4, 4)], kernel_size=5, padding=1),
    case("avgpool2d", [(1, 1, 4, 4)], kernel_size=2, divisor_override=0),
    case("avgpool2d", [(1, 1, 4, 4)], kernel_size=2, divisor_override=-3),
    case("adaptive_avgpool2d", [(1, 4)], output_size=2), case("adaptive_maxpool2d", [(1, 1, 4)], output_size=2),
    case("hardtanh", [(2, 3)], min_val=1.0, max_val=1.0), case("hardtanh", [(2, 3)], min_val=-INF, max_val=INF),
    case("dropout", [(2, 3)], p=1.0), case("dropout", [(2, 3)], p=1.5),
    case("embedding", [(2, 3)], num_embeddings=5, embedding_dim=2, padding_idx=-5),
    case("embedding", [(2, 3)], num_embeddings=5, embedding_dim=2, padding_idx=5),
    case("prelu", [(3,)], num_parameters=3), case("prelu", [(2, 3)], num_parameters=3),
    case("softmax", [(2, 3)], dim=2), case("softmax", [(2, 3)], dim=-2),
    case("multihead_attention", [(5, 2, 8)], embed_dim=8, num_heads=3),
    case("multihead_attention", [(5, 2, 8), (4, 3, 8)], embed_dim=8, num_heads=2),
    case("scaled_dot_product_attention", [(2, 5, 8), (2, 6, 4), (2, 6, 3)]),
    case("scaled_dot_product_attention", [(2, 1, 5, 8), (3, 6, 8), (3, 6, 3)]),
    case("scaled_dot_product_attention", [(2, 2, 2), (2, 3, 2), (2, 2, 2)]),   # keys 3 long, values 2
    case("flatten", [(2, 3, 4)], start_dim=2, end_dim=1), case("cumsum", [(2, 3)], dim=2),
    case("add", [(2, 3), (3, 2)]), case("clamp_tensor", [(2, 3), (4,)]),
    case("groupnorm", [(4,)], num_groups=2, num_channels=4), case("groupnorm", [(2, 4)], num_groups=2, num_channels=4),
    # group statistics need more than one value per group
    case("groupnorm", [(1, 3)], num_groups=3, num_channels=3),
    case("groupnorm", [(1, 6)], num_groups=3, num_channels=6),
    case("groupnorm", [(1, 3, 1)], num_groups=3, num_channels=3),
    case("groupnorm", [(1, 3, 2)], num_groups=3, num_channels=3),
    # a scalar reduces along dim 0 or -1, nothing else
    case("sum", [()], dim=(0,)), case("mean", [()], dim=(-1,)), case("amax", [()], dim=(1,)),
]


@pytest.mark.parametrize("name, kwargs, shapes", BOUNDARIES)
def test_symcost_refuses_exactly_what_torch_refuses(name, kwargs, shapes):
    assert symcost_outcome(name, kwargs, shapes) == torch_outcome(name, kwargs, shapes)


def test_each_new_boundary_is_tried_on_both_sides():
    # a list of refusals only (or of accepted ones only) could not tell a check that refuses everything
    sides: dict = {}
    for p in BOUNDARIES:
        name, kwargs, shapes = p.values
        sides.setdefault(name, set()).add(torch_outcome(name, kwargs, shapes) == REFUSED)
    for name in ("conv1d", "conv2d", "conv3d", "conv_transpose2d", "batchnorm1d", "batchnorm2d", "batchnorm3d",
                 "upsample", "topk", "unfold", "fold", "bmm", "addmm", "baddbmm", "groupnorm"):
        assert sides[name] == {True, False}, name


#: configurations torch runs that symcost refuses on purpose, each with its reason
SYMCOST_STRICTER = [
    # a nan argument makes every output nan: nothing meaningful to count
    case("batchnorm2d", [(2, 3, 1, 1)], num_features=3, eps=NAN),
    case("layernorm", [(2, 4)], normalized_shape=(4,), eps=NAN),
    case("leaky_relu", [(2, 3)], negative_slope=NAN),
    case("add", [(2, 3), (3,)], alpha=NAN),
    # an input whose channels contradict num_channels: torch (affine=False) ignores num_channels, symcost reads it
    case("groupnorm", [(2, 6, 3)], num_groups=2, num_channels=4, affine=False),
    # an empty output (size 0): symcost's sizes are positive, inputs and outputs alike
    case("conv_transpose1d", [(2, 1)], in_channels=2, out_channels=2, groups=2, kernel_size=2, padding=1),
    # torch's shortcut for an output of size 1 (a mean over the last dims) skips its own rank check
    case("adaptive_avgpool2d", [(4, 1)], output_size=1),
    # vectors in matmul (a dot product, a matrix-vector product) are not in the catalog's matmul
    case("matmul", [(8,), (8,)]),
]


@pytest.mark.parametrize("name, kwargs, shapes", SYMCOST_STRICTER)
def test_symcost_stricter_than_torch_only_where_listed(name, kwargs, shapes):
    assert torch_outcome(name, kwargs, shapes) != REFUSED
    assert symcost_outcome(name, kwargs, shapes) == REFUSED


# ---- random configurations around each family's boundaries ---------------------------------------------------------

RANDOM = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def agree(name, kwargs, shapes):
    ours, theirs = symcost_outcome(name, kwargs, shapes), torch_outcome(name, kwargs, shapes)
    if ours == REFUSED and theirs != REFUSED and 0 in theirs:
        return  # an empty output: symcost's sizes are positive (SYMCOST_STRICTER's transposed convolution)
    assert ours == theirs, (name, kwargs, shapes, "symcost", ours, "torch", theirs)


@st.composite
def convolutions(draw, transposed: bool):
    dims = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kwargs = dict(in_channels=cin, out_channels=cout, groups=groups,
                  kernel_size=tuple(draw(st.integers(1, 5)) for _ in range(dims)),
                  stride=draw(st.integers(1, 3)), dilation=draw(st.integers(1, 3)),
                  padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"] if not transposed
                                                    else ["zeros", "zeros", "zeros", "reflect"])))
    padding = draw(st.one_of(st.integers(0, 5), st.sampled_from(["same", "valid"]))) if not transposed else \
        draw(st.integers(0, 3))
    kwargs["padding"] = padding
    if transposed:
        kwargs["output_padding"] = draw(st.integers(0, 2))
    spatial = tuple(draw(st.integers(1, 7)) for _ in range(dims))
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    name = f"conv_transpose{dims}d" if transposed else f"conv{dims}d"
    return name, kwargs, [(*batch, cin, *spatial)]


@given(convolutions(transposed=False))
@RANDOM
def test_random_convolutions_agree_with_torch(config):
    agree(*config)


@given(convolutions(transposed=True))
@RANDOM
def test_random_transposed_convolutions_agree_with_torch(config):
    agree(*config)


@st.composite
def poolings(draw):
    dims = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["max", "avg"]))
    kwargs = dict(kernel_size=tuple(draw(st.integers(1, 4)) for _ in range(dims)),
                  stride=draw(st.one_of(st.none(), st.integers(1, 3))), padding=draw(st.integers(0, 2)),
                  ceil_mode=draw(st.booleans()))
    if kind == "max":
        kwargs["dilation"] = draw(st.integers(1, 2))
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
    shape = (*draw(st.sampled_from([(), (2,)])), 2, *(draw(st.integers(1, 7)) for _ in range(dims)))
    return f"{kind}pool{dims}d", kwargs, [shape]


@given(poolings())
@RANDOM
def test_random_poolings_agree_with_torch(config):
    agree(*config)


@st.composite
def batchnorms(draw):
    dims = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    rank = draw(st.sampled_from([2, 3])) if dims == 1 else dims + 2
    shape = (draw(st.integers(1, 2)), c + draw(st.sampled_from([0, 0, 0, 1])),
             *(draw(st.integers(1, 2)) for _ in range(rank - 2)))
    kwargs = dict(num_features=c, mode=draw(st.sampled_from(["eval", "train"])),
                  track_running_stats=draw(st.booleans()), affine=draw(st.booleans()))
    return f"batchnorm{dims}d", kwargs, [shape]


@given(batchnorms())
@RANDOM
def test_random_batchnorms_agree_with_torch(config):
    name, kwargs, shapes = config
    if shapes[0][1] != kwargs["num_features"] and not kwargs["affine"] and not kwargs["track_running_stats"]:
        return  # torch has no per-channel tensor to compare the channels with (SYMCOST_STRICTER's groupnorm case)
    agree(*config)


@st.composite
def resizes(draw):
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear"]))
    ranks = {"linear": [3], "bilinear": [4], "bicubic": [4], "trilinear": [5]}.get(mode, [3, 4, 5])
    rank = draw(st.sampled_from(ranks * 4 + [2, 3, 4, 5, 6]))   # mostly a rank the mode takes
    shape = (1, 2, *(draw(st.integers(1, 9)) for _ in range(rank - 2)))
    if draw(st.booleans()):
        spatial = max(rank - 2, 1)
        count = draw(st.sampled_from([spatial, spatial, spatial + 1, max(spatial - 1, 2)]))
        size = draw(st.integers(1, 6)) if count == 1 or draw(st.booleans()) and count == spatial and spatial == 1 \
            else tuple(draw(st.integers(1, 6)) for _ in range(count))
        kwargs = dict(size=size)
    else:
        kwargs = dict(scale_factor=draw(st.sampled_from([0.1, 0.25, 0.29, 0.5, 0.7, 1.0, 1.5, 2.0, 2.3, 3.0, -1.0,
                                                         0.0])))
    kwargs["mode"] = mode
    kwargs["align_corners"] = draw(st.sampled_from([None, None, None, True, False]))
    return "upsample", kwargs, [shape]


@given(resizes())
@RANDOM
def test_random_resizes_agree_with_torch(config):
    agree(*config)


@st.composite
def selections(draw):
    rank = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    return "topk", dict(k=draw(st.integers(0, 6)), dim=draw(st.integers(-rank - 1, rank))), [shape]


@given(selections())
@RANDOM
def test_random_topk_agree_with_torch(config):
    agree(*config)


@st.composite
def patches(draw):
    kwargs = dict(kernel_size=(draw(st.integers(1, 4)), draw(st.integers(1, 4))), dilation=draw(st.integers(1, 2)),
                  padding=draw(st.integers(0, 2)), stride=draw(st.integers(1, 3)))
    if draw(st.booleans()):
        return "unfold", kwargs, [(*draw(st.sampled_from([(), (2,)])), 2, draw(st.integers(1, 7)),
                                   draw(st.integers(1, 7)))]
    out = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    k = kwargs["kernel_size"][0] * kwargs["kernel_size"][1]
    blocks = 1
    for o, kk in zip(out, kwargs["kernel_size"]):
        blocks *= max((o + 2 * kwargs["padding"] - kwargs["dilation"] * (kk - 1) - 1) // kwargs["stride"] + 1, 0)
    cols = (draw(st.sampled_from([k, 2 * k, k + 1])), draw(st.sampled_from([max(blocks, 1), blocks + 1])))
    return "fold", dict(output_size=out, **kwargs), [(*draw(st.sampled_from([(), (2,)])), *cols)]


@given(patches())
@RANDOM
def test_random_patches_agree_with_torch(config):
    agree(*config)


@st.composite
def products(draw):
    b, m, k, p = (draw(st.integers(1, 3)) for _ in range(4))
    name = draw(st.sampled_from(["bmm", "addmm", "baddbmm", "matmul"]))
    other_b, other_k = draw(st.sampled_from([b, b, 1])), draw(st.sampled_from([k, k, k + 1]))
    if name == "addmm":
        bias = draw(st.sampled_from([(p,), (1,), (m, p), (m, 1), (1, p), (p + 1,), (m + 1, p), (2, m, p)]))
        return name, {}, [bias, (m, k), (other_k, p)]
    if name == "baddbmm":
        bias = draw(st.sampled_from([(b, m, p), (m, p), (1, 1, p), (b + 1, m, p), (b, m, p + 1)]))
        return name, {}, [bias, (b, m, k), (other_b, other_k, p)]
    return name, {}, [(b, m, k), (other_b, other_k, p)]


@given(products())
@RANDOM
def test_random_products_agree_with_torch(config):
    agree(*config)


@st.composite
def tensor_layers(draw):
    """Reductions, row-wise layers, norms, broadcasts, linear and adaptive pooling on inputs of rank 0 to 4."""
    x = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 4))))
    y = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 4))))
    dim = draw(st.integers(-5, 4))
    family = draw(st.sampled_from(["reduce", "row", "norm", "binary", "linear", "adaptive", "flatten"]))
    if family == "reduce":
        dims = tuple(draw(st.integers(-5, 4)) for _ in range(draw(st.integers(1, 2))))
        name = draw(st.sampled_from(["mean", "sum", "amax", "amin", "var", "std", "vector_norm"]))
        return name, dict(dim=dims, keepdim=draw(st.booleans())), [x]
    if family == "row":
        name = draw(st.sampled_from(["softmax", "log_softmax", "cumsum", "argmax"]))
        return name, dict(dim=dim), [x]
    if family == "norm":
        if draw(st.booleans()):
            return "layernorm", dict(normalized_shape=tuple(draw(st.integers(1, 4)) for _ in range(
                draw(st.integers(1, 2))))), [x]
        c = draw(st.sampled_from([2, 3, 4, 6]))
        shape = (draw(st.integers(1, 2)), draw(st.sampled_from([c, c, 4])), *x[:draw(st.integers(0, 2))])
        return "groupnorm", dict(num_groups=draw(st.integers(1, 3)), num_channels=c), [shape]
    if family == "binary":
        return draw(st.sampled_from(["add", "mul", "sub", "div", "compare", "minimum", "logical"])), {}, [x, y]
    if family == "linear":
        return "linear", dict(in_features=draw(st.integers(1, 4)), out_features=2), [x]
    if family == "flatten":
        return "flatten", dict(start_dim=dim, end_dim=draw(st.integers(-5, 4))), [x]
    dims = draw(st.integers(1, 3))
    return f"adaptive_{draw(st.sampled_from(['avg', 'max']))}pool{dims}d", dict(output_size=draw(st.integers(2, 5))), \
        [x]


@given(tensor_layers())
@RANDOM
def test_random_reductions_norms_and_broadcasts_agree_with_torch(config):
    agree(*config)


@st.composite
def attention_and_lookups(draw):
    """Attention (heads, widths, lengths, batches), embeddings (padding_idx), PReLU, Hardtanh, clamps."""
    x = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 4))))
    y = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 4))))
    family = draw(st.sampled_from(["mha", "sdpa", "embedding", "prelu", "hardtanh", "clamp", "addcmul"]))
    if family == "mha":
        e = draw(st.sampled_from([4, 6, 8]))
        q = draw(st.sampled_from([(5, e), (5, 2, e), (2, 5, e), (5, 2, e + 2)]))
        kv = draw(st.sampled_from([q, (4, *q[1:]), (3, 3, e), (4, e)]))
        return "multihead_attention", dict(embed_dim=e, num_heads=draw(st.integers(1, 4)),
                                           batch_first=draw(st.booleans())), [q, kv]
    if family == "sdpa":
        return "scaled_dot_product_attention", {}, [x, y, tuple(draw(st.integers(1, 3)) for _ in range(len(y)))]
    if family == "embedding":
        v = draw(st.integers(1, 5))
        return "embedding", dict(num_embeddings=v, embedding_dim=2,
                                 padding_idx=draw(st.one_of(st.none(), st.integers(-v - 1, v)))), [x]
    if family == "prelu":
        return "prelu", dict(num_parameters=draw(st.integers(1, 3))), [x]
    if family == "hardtanh":
        return "hardtanh", dict(min_val=draw(st.sampled_from([-1.0, 0.0, 1.0])),
                                max_val=draw(st.sampled_from([-1.0, 0.0, 1.0]))), [x]
    if family == "clamp":
        return "clamp_tensor", {}, [x, y]
    return "addcmul", {}, [x, y, tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 3))))]


@given(attention_and_lookups())
@RANDOM
def test_random_attention_lookups_and_activations_agree_with_torch(config):
    agree(*config)


# ---- symbolic sizes still pass: a check raises only when the condition is definitely false -------------------------

def test_symbolic_sizes_pass_every_new_check():
    L, N, H, k = (sympy.Symbol(s, positive=True, integer=True) for s in ("L", "N", "H", "k"))
    conv = symcost.layer("conv1d", symbolic=False, in_channels=1, out_channels=1, kernel_size=3, padding=2,
                         padding_mode="reflect")
    assert conv.cost((N, 1, L)).output_shape == (N, 1, L + 2)
    assert symcost.layer("batchnorm2d", symbolic=False, num_features=3, mode="train").cost((N, 3, 1, 1)).macs == 0
    assert symcost.layer("topk", symbolic=False, k=2).cost((N, L)).output_shape == (N, 2)
    assert symcost.layer("topk", k=k).cost((N, L)).output_shape == (N, k)
    up = symcost.layer("upsample", symbolic=False, scale_factor=1.5).cost((N, 3, H, L))
    assert up.output_shape == (N, 3, sympy.floor(3 * H / 2), sympy.floor(3 * L / 2))
    assert symcost.layer("unfold", symbolic=False, kernel_size=3).cost((N, 2, H, L)).output_shape[1] == 18
    assert symcost.layer("bmm").cost((N, H, L), (N, L, k)).output_shape == (N, H, k)
    assert symcost.layer("addmm").cost((k,), (H, L), (L, k)).output_shape == (H, k)
    # and a definite violation is still caught with symbols around it
    with pytest.raises(LayerError, match="smaller than the input size"):
        conv.cost((N, 1, 2))
    with pytest.raises(LayerError, match="one value per channel"):
        symcost.layer("batchnorm1d", symbolic=False, num_features=3, mode="train").cost((1, 3))


def test_a_scale_no_formula_reproduces_is_refused_symbolically_but_counted_at_sizes():
    H = sympy.Symbol("H", positive=True, integer=True)
    up = symcost.layer("upsample", symbolic=False, scale_factor=0.29)
    with pytest.raises(LayerError, match="double precision"):
        up.cost((1, 3, H, H))
    import torch
    import torch.nn.functional as F

    for h in (100, 17, 64, 33):   # torch's sizes, rounding included
        want = tuple(F.interpolate(torch.zeros(1, 3, h, h), scale_factor=0.29).shape)
        assert tuple(int(d) for d in up.cost((1, 3, h, h)).output_shape) == want


# ---- on the command line: one line, exit 2; `check` never an internal error ----------------------------------------

def cli(*argv):
    """The command as a user runs it, in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "symcost.cli", *argv], capture_output=True, text=True, env=env,
                          check=False, cwd=ROOT)


def run(capsys, *argv) -> tuple[int, str, str]:
    """The CLI's own entry point in process (a subprocess per case would import torch dozens of times)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


#: the issue's examples (and their like): torch refuses each
CLI_REFUSALS = [
    ("topk", "k=5", "2x3"),
    ("upsample", "scale_factor=-2", "1x3x4x4"),
    ("conv1d", "in_channels=1 out_channels=1 kernel_size=3 padding=4 padding_mode=reflect", "1x1x4"),
    ("conv2d", "in_channels=1 out_channels=1 kernel_size=3 padding=5 padding_mode=circular", "1x1x4x4"),
    ("batchnorm1d", "num_features=3 mode=train", "1x3"),
    ("conv_transpose2d", "in_channels=3 out_channels=3 kernel_size=3 padding_mode=reflect", "1x3x4x4"),
    ("batchnorm2d", "num_features=3 eps=nan", "2x3x4x4"),
    ("fold", "output_size=3,3 kernel_size=2", "1x5x4"),
    ("bmm", "", "3x4x5,1x5x2"),
]


@pytest.mark.parametrize("command", ["eval", "check"])
@pytest.mark.parametrize("layer, settings, shape", CLI_REFUSALS)
def test_the_command_line_refuses_in_one_line(command, layer, settings, shape, capsys):
    code, out, err = run(capsys, command, layer, *settings.split(), "--input", shape)
    assert code == 2, (code, out, err)
    assert out == "" and err.count("\n") == 1 and "internal error" not in err, err
    assert err.startswith(f"symcost {command}: error: {layer}: "), err


def test_a_user_sees_one_line_and_exit_2():
    r = cli("check", "batchnorm1d", "num_features=3", "mode=train", "--input", "1x3")
    assert (r.returncode, r.stdout, r.stderr.count("\n")) == (2, "", 1), r.stderr
    assert "one value per channel" in r.stderr


@pytest.mark.parametrize("argv", [["conv_transpose2d", "padding_mode=reflect"], ["upsample", "scale_factor=0"],
                                  ["upsample", "scale_factor=2", "align_corners=true"],
                                  ["topk", "k=5", "--input", "NxCx3"]])
def test_formula_refuses_a_configuration_torch_refuses_whatever_the_sizes(argv, capsys):
    code, out, err = run(capsys, "formula", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and "internal error" not in err, (argv, err)


def test_check_reports_a_torch_refusal_symcost_missed_as_a_difference(monkeypatch, capsys):
    # take one of symcost's checks away: torch's refusal then reaches `check`, which must name it in one line, exit 1
    from symcost.layers import reductions

    monkeypatch.setattr(reductions.sympy, "Gt", lambda a, b: sympy.false)
    assert main(["check", "topk", "k=5", "--input", "2x3"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "MISMATCH" in out and "torch refuses it" in out and "out of range" in out, out
    assert main(["check", "topk", "k=5", "--input", "2x3", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and "out of range" in result["torch_refused"]


def test_check_refuses_sizes_torch_cannot_hold_or_this_machine_cannot_allocate(monkeypatch, capsys):
    from symcost import check

    code, out, err = run(capsys, "check", "relu", "--input", "1x3x" + "1" + "0" * 30)   # 10^30: past int64
    assert code == 2 and err.count("\n") == 1 and "past torch's largest" in err, err
    assert run(capsys, "eval", "relu", "--input", "1x3x" + "1" + "0" * 30)[0] == 0   # the count needs no torch
    monkeypatch.setattr(check, "available_memory", lambda: 8 * 2 ** 30)
    code = main(["check", "conv2d", "in_channels=3", "out_channels=4", "kernel_size=3", "--input",
                 "1x3x100000x100000"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "available" in err and "symcost eval" in err, err


def test_check_still_runs_what_fits(monkeypatch, capsys):
    from symcost import check

    monkeypatch.setattr(check, "available_memory", lambda: 8 * 2 ** 30)
    assert main(["check", "relu", "--input", "2x3x4x4"]) == 0
    assert "all equal" in capsys.readouterr().out


def test_an_internal_error_is_still_one_line(monkeypatch, capsys):
    # a bug (not bad input) keeps exit 3, but a C++ stack appended to its message stays out of the one line
    from symcost import check

    def broken(layer, shapes):
        raise TypeError("unpack failed\nException raised from THPUtils_unpackLong\nframe #0: c10::Error::Error")

    monkeypatch.setattr(check, "check_layer", broken)
    code, out, err = run(capsys, "check", "relu", "--input", "2x3")
    assert code == 3 and err.count("\n") == 1 and "unpack failed" in err and "frame" not in err, err
