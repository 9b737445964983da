"""Elementwise, reshape, embedding and attention layers against torch, and counts derived by hand."""
import pytest
import sympy
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from symcost import CONVENTIONS, layer
from symcost.cost import to_int
from symcost.empirical import measure
from symcost.layers.base import LayerError
from symcost.symbols import b, size


def against_torch(name, kwargs, shapes, **measure_kwargs):
    """Shape, params, buffers and torch-convention FLOPs equal torch's exactly; returns the cost."""
    lay = layer(name, symbolic=False, **kwargs)
    cost = lay.cost(*shapes)
    real = measure(lay.torch_name, kwargs, shapes, **measure_kwargs)
    assert tuple(to_int(d) for d in cost.output_shape) == real.output_shape, (name, kwargs, shapes)
    assert to_int(cost.params) == real.params, (name, kwargs)
    assert to_int(cost.buffers) == real.buffers
    assert to_int(CONVENTIONS["torch"].count(cost)) == real.flops, (kwargs, shapes, real.flops_by_op)
    return cost


def exact(name, shapes, **kwargs) -> int:
    return to_int(CONVENTIONS["exact"].count(layer(name, symbolic=False, **kwargs).cost(*shapes)))


def ints(cost, field):
    return to_int(getattr(cost, field))


# ---- add, mul ------------------------------------------------------------------------------------------------

@st.composite
def broadcast_pair(draw):
    out = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))

    def operand():
        keep = draw(st.integers(0, len(out)))  # drop leading dims, set some to 1
        return tuple(1 if draw(st.booleans()) else d for d in out[len(out) - keep:])

    a, b = operand(), operand()
    return (a or (1,)), (b or (1,))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["add", "mul"]), broadcast_pair(), st.sampled_from([1, 2.5]))
def test_add_mul_match_torch(name, shapes, alpha):
    kwargs = {"alpha": alpha} if name == "add" else {}
    cost = against_torch(name, kwargs, list(shapes))
    outputs = torch.broadcast_shapes(*shapes).numel()
    assert to_int(cost.op(name)) == outputs
    assert ints(cost, "reads") == torch.Size(shapes[0]).numel() + torch.Size(shapes[1]).numel()


def test_add_hand_count():
    # (2,3,4) + (4,) broadcasts to 24 outputs: 24 adds; alpha=2 adds a multiplication each: 48
    assert exact("add", [(2, 3, 4), (4,)]) == 24
    assert exact("add", [(2, 3, 4), (4,)], alpha=2.0) == 48
    # one shape means both inputs have it
    assert layer("mul").cost((5, 6)) == layer("mul").cost((5, 6), (5, 6))
    with pytest.raises(LayerError, match="broadcast"):
        layer("add").cost((2, 3), (4,))


# ---- zero-cost layers ----------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.data())
def test_flatten_matches_torch(shape, data):
    r = len(shape)
    start, end = data.draw(st.integers(-r, r - 1)), data.draw(st.integers(-r, r - 1))
    kwargs = {"start_dim": start, "end_dim": end}
    if start % r > end % r:  # torch refuses; so must symcost
        with pytest.raises(RuntimeError):
            measure("torch.nn.Flatten", kwargs, [shape])
        with pytest.raises(LayerError):
            layer("flatten", symbolic=False, **kwargs).cost(tuple(shape))
        return
    cost = against_torch("flatten", kwargs, [tuple(shape)])
    assert cost.ops == {} and cost.reads == 0 and cost.writes == 0


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["dropout", "identity"]), st.lists(st.integers(1, 4), min_size=1, max_size=4),
       st.floats(0, 1))
def test_dropout_identity_match_torch(name, shape, p):
    kwargs = {"p": p} if name == "dropout" else {}
    cost = against_torch(name, kwargs, [tuple(shape)])  # measure runs modules in eval mode
    assert cost.ops == {} and cost.reads == 0 and cost.writes == 0


def test_zero_cost_summaries_say_so():
    for name in ("flatten", "dropout", "identity"):
        assert "zero cost" in layer(name).summary


def test_flatten_symbolic():
    n, c, h, w = (size(s) for s in "NCHW")
    assert layer("flatten").cost().output_shape == (n, c * h * w)


# ---- embedding -----------------------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 30), st.integers(1, 8), st.lists(st.integers(1, 4), max_size=3), st.data())
def test_embedding_matches_torch(v, d, shape, data):
    kwargs = {"num_embeddings": v, "embedding_dim": d}
    if data.draw(st.booleans()):
        kwargs["padding_idx"] = data.draw(st.integers(-v, v - 1))
    cost = against_torch("embedding", kwargs, [tuple(shape)], integer_high=v)
    n = torch.Size(shape).numel()
    assert cost.ops == {}
    assert (ints(cost, "reads"), ints(cost, "writes")) == (n + n * d, n * d)


def test_embedding_hand_count():
    # 1000 x 64 table; (8, 16) = 128 indices: reads 128 + 128*64 = 8320, writes 128*64 = 8192, no arithmetic
    cost = layer("embedding", symbolic=False, num_embeddings=1000, embedding_dim=64).cost((8, 16))
    assert (ints(cost, "params"), ints(cost, "reads"), ints(cost, "writes")) == (64000, 8320, 8192)
    assert CONVENTIONS["exact"].count(cost) == 0
    with pytest.raises(LayerError, match="padding_idx"):
        layer("embedding", num_embeddings=10, embedding_dim=3, padding_idx=10)
    v, e, n, length = size("V"), size("E"), size("N"), size("L")
    sym = layer("embedding").cost()
    assert sympy.simplify(sym.reads - (n * length + n * length * e)) == 0 and sym.params == v * e


# ---- scaled_dot_product_attention ----------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 6), st.integers(1, 6), st.integers(1, 5),
       st.integers(1, 5), st.booleans(), st.integers(1, 3))
def test_sdpa_matches_torch(batch, q_len, kv_len, e, ev, causal, n_inputs):
    if n_inputs == 1:  # one shape: q, k, v all of it
        kv_len, ev = q_len, e
    elif n_inputs == 2:  # q, and k = v
        ev = e
    q, k, v = (*batch, q_len, e), (*batch, kv_len, e), (*batch, kv_len, ev)
    shapes, torch_shapes = [q, k, v][:n_inputs], [q, k, v]
    # FlopCounterMode counts SDPA only through registered kernels; on CPU that is the math path (bmm)
    with sdpa_kernel(SDPBackend.MATH):
        real = measure("torch.nn.functional.scaled_dot_product_attention", {"is_causal": causal}, torch_shapes)
    cost = layer("scaled_dot_product_attention", symbolic=False, is_causal=causal).cost(*shapes)
    assert tuple(to_int(d) for d in cost.output_shape) == real.output_shape
    assert to_int(CONVENTIONS["torch"].count(cost)) == real.flops, real.flops_by_op


def test_flop_counter_misses_cpu_flash_sdpa():
    """The torch behaviour the SDPA docstring warns about: with E = Ev, CPU picks its flash kernel, which
    FlopCounterMode has no formula for (0); the math backend counts 2*B*L*S*(E+Ev)."""
    q = k = v = torch.randn(2, 3, 5, 4)
    counter = FlopCounterMode(display=False)
    with counter:
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 0
    with sdpa_kernel(SDPBackend.MATH), counter:
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 2 * 6 * 5 * 5 * (4 + 4)


def test_sdpa_hand_count():
    # q (1, 2, 3), k = v (1, 4, 3): L=2, S=4, E=Ev=3, 8 scores
    # QK^T: 8 dots of length 3 -> 8*(3 mul + 2 add) = 40; scale: 8 mul
    # softmax, 2 rows of 4: 2 * (3 cmp + 4 sub + 4 exp + 3 add + 4 div) = 36
    # AV: 2*3 = 6 dots of length 4 -> 6*(4 + 3) = 42; total 40 + 8 + 36 + 42 = 126
    assert exact("scaled_dot_product_attention", [(1, 2, 3), (1, 4, 3)]) == 126
    # is_causal adds the -inf mask to each of the 8 scores
    assert exact("scaled_dot_product_attention", [(1, 2, 3), (1, 4, 3)], is_causal=True) == 134


def test_sdpa_symbolic_identity():
    n, h, q_len, kv_len, e, ev = (size(s) for s in ("N", "h", "L", "S", "E", "E_v"))
    cost = layer("scaled_dot_product_attention").cost()
    assert sympy.simplify(cost.macs - n * h * q_len * kv_len * (e + ev)) == 0
    assert cost.output_shape == (n, h, q_len, ev)


# ---- multihead_attention -------------------------------------------------------------------------------------

@st.composite
def mha_case(draw):
    heads, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    e = heads * head_dim
    kwargs = {"embed_dim": e, "num_heads": heads, "bias": draw(st.booleans()),
              "add_bias_kv": draw(st.booleans()), "add_zero_attn": draw(st.booleans()),
              "batch_first": draw(st.booleans()), "need_weights": draw(st.booleans())}
    kd = draw(st.one_of(st.none(), st.integers(1, 5)))
    vd = draw(st.one_of(st.none(), st.integers(1, 5)))
    if kd is not None:
        kwargs["kdim"] = kd
    if vd is not None:
        kwargs["vdim"] = vd
    q_len, kv_len, n = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    batched = draw(st.booleans())

    def seq(length, width):
        if not batched:
            return (length, width)
        return (n, length, width) if kwargs["batch_first"] else (length, n, width)

    shapes = [seq(q_len, e), seq(kv_len, kd or e), seq(kv_len, vd or e)]
    return kwargs, shapes


@settings(max_examples=25, deadline=None)
@given(mha_case())
def test_mha_matches_torch(case):
    kwargs, shapes = case
    # measure runs with grad enabled: torch's slow path, whose projections (mm/addmm) and products (bmm)
    # FlopCounterMode counts; need_weights=False goes through SDPA, counted on its math backend
    with sdpa_kernel(SDPBackend.MATH):
        against_torch("multihead_attention", kwargs, shapes)


def test_mha_self_attention_one_shape():
    lay = layer("multihead_attention", symbolic=False, embed_dim=8, num_heads=2)
    one, three = lay.cost((5, 3, 8)), lay.cost((5, 3, 8), (5, 3, 8), (5, 3, 8))
    assert one.ops == three.ops and one.output_shape == three.output_shape
    assert one.reads == three.reads - 2 * 5 * 3 * 8  # one tensor, read once


def test_mha_fast_path_counts_zero():
    """The documented torch behaviour: under no_grad in eval mode the fused fast path counts 0."""
    m = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        m(x, x, x)
    assert counter.get_total_flops() == 0
    with counter:
        m(x, x, x)
    assert counter.get_total_flops() == 2 * to_int(
        layer("multihead_attention", symbolic=False, embed_dim=8, num_heads=2, batch_first=True).cost(
            (3, 5, 8)).macs)


def test_mha_hand_count():
    # E=4, h=2 (head width 2), bias, self-attention on (L=3, N=1, E=4), need_weights (default):
    # q, k, v projections: 3 * 12 outputs, each a length-4 dot (4 mul + 3 add) + bias = 8 -> 288
    # scores: 2 heads * 3 * 3 = 18 dots of length 2 (3 ops) = 54; scale 18 mul
    # softmax: 6 rows of 3: 6 * (2 cmp + 3 sub + 3 exp + 2 add + 3 div) = 78
    # AV: 2 heads * 3 * 2 = 12 dots of length 3 (5 ops) = 60
    # out projection: 12 outputs * 8 = 96; head average of 1*3*3 = 9 weights: (2-1) add + 1 div -> 18
    # total 288 + 54 + 18 + 78 + 60 + 96 + 18 = 612
    lay = layer("multihead_attention", symbolic=False, embed_dim=4, num_heads=2)
    assert to_int(CONVENTIONS["exact"].count(lay.cost((3, 1, 4)))) == 612
    # params: in_proj 3*4*4 + 12 bias, out_proj 16 + 4 = 80
    assert to_int(lay.cost((3, 1, 4)).params) == 80 == sum(
        p.numel() for p in torch.nn.MultiheadAttention(4, 2).parameters())
    without = layer("multihead_attention", symbolic=False, embed_dim=4, num_heads=2, need_weights=False)
    assert to_int(CONVENTIONS["exact"].count(without.cost((3, 1, 4)))) == 612 - 18


def test_mha_symbolic_identity():
    e, n, q_len, heads = size("E"), size("N"), size("L"), size("h")
    cost = layer("multihead_attention").cost()  # self-attention on (L, N, E)
    assert sympy.simplify(cost.params - (4 * e ** 2 + 4 * e * b)) == 0
    # 4 projections of N*L*E outputs x E, plus QK^T and AV: N*h*L*L*(E/h) each
    assert sympy.simplify(cost.macs - (4 * n * q_len * e ** 2 + 2 * n * q_len ** 2 * e)) == 0
    assert heads in cost.free_symbols
    with pytest.raises(LayerError, match="divisible"):
        layer("multihead_attention", embed_dim=6, num_heads=4)
