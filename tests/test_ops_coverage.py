"""Ops that used to stop a formula or stay uncovered: each in a tiny module, derived once in H and W (or L), then
checked exactly at sizes of every residue against torch itself.

Each module ends in ``y.reshape(1, -1) @ y.reshape(-1, 1)``: FlopCounterMode counts that product as
2 * numel(y), so the torch convention equals FlopCounterMode only if the op's symbolic output shape is right.  The op's
own row is checked against the primitive count derived by hand beside each case, and its output shape against the
one torch computes.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from symcost.errors import NoSingleFormula
from symcost.tracing import trace

#: (H, W): odd, even, multiples of 32, non-square
SIZES = [(17, 23), (32, 64), (30, 45), (64, 96), (41, 40)]


class Probe(nn.Module):
    """``fn(x)``, then the product that makes FlopCounterMode see its output size."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        y = self.fn(x)
        y = y[0] if isinstance(y, tuple) else y
        y = y.float().reshape(1, -1)
        return y @ y.transpose(0, 1)


def torch_flops(model, shape) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(*shape, device="meta"))
    return counter.get_total_flops()


def torch_shape(fn, shape) -> tuple:
    y = fn(torch.zeros(*shape, device="meta"))
    return tuple((y[0] if isinstance(y, tuple) else y).shape)


def derive(fn, c: int = 3):
    model = Probe(fn)
    mc = trace(model, (1, c, "H", "W"))
    assert mc.uncovered == {}, mc.uncovered
    return model, mc


def op_row(mc, layer: str):
    rows = [r for r in mc.rows if r.layer == layer]
    assert rows, [r.layer for r in mc.rows]
    return rows[0]


# name, function, catalog layer of its row, expected primitive counts at (h, w) for input (1, 3, h, w), derived:
CASES = [
    ("neg", lambda x: -x, "neg", lambda h, w: {}),                                   # a sign flip: free
    ("abs", lambda x: x.abs(), "abs", lambda h, w: {"cmp": 3 * h * w}),             # max(x, -x): 1 cmp each
    ("sin", lambda x: x.sin(), "sin", lambda h, w: {"fn": 3 * h * w}),
    ("cos", lambda x: x.cos(), "sin", lambda h, w: {"fn": 3 * h * w}),
    ("softplus", lambda x: F.softplus(x), "softplus",                               # mul, cmp, 2 fn, add, div
     lambda h, w: {"mul": 3 * h * w, "cmp": 3 * h * w, "fn": 6 * h * w, "add": 3 * h * w, "div": 3 * h * w}),
    ("minimum", lambda x: torch.minimum(x, x[:, :1]), "minimum", lambda h, w: {"cmp": 3 * h * w}),
    ("maximum", lambda x: torch.maximum(x, x[:, :1]), "minimum", lambda h, w: {"cmp": 3 * h * w}),
    ("clamp_tensor", lambda x: torch.clamp(x, min=x[:, :1], max=x[:, 1:2]), "clamp_tensor",
     lambda h, w: {"cmp": 2 * 3 * h * w}),                                          # two bounds: 2 cmp each
    ("clamp_min_tensor", lambda x: torch.clamp(x, min=x[:, :1]), "clamp_tensor", lambda h, w: {"cmp": 3 * h * w}),
    ("addcmul", lambda x: torch.addcmul(x, x, x[:, :1], value=0.5), "addcmul",       # b*c, *value, + a
     lambda h, w: {"mul": 2 * 3 * h * w, "add": 3 * h * w}),
    ("addcdiv", lambda x: torch.addcdiv(x, x, x + 1), "addcmul", lambda h, w: {"div": 3 * h * w, "add": 3 * h * w}),
    ("cumsum", lambda x: x.cumsum(3), "cumsum", lambda h, w: {"add": 3 * h * (w - 1)}),  # w-1 adds per row
    ("var", lambda x: x.var(dim=1, keepdim=True), "var",                            # m=3 per output, h*w outputs
     lambda h, w: {"add": h * w * (3 * 3 - 2), "mul": h * w * 3, "div": 2 * h * w}),
    ("std", lambda x: x.std(dim=(2, 3)), "std",                                     # m=h*w per output, 3 outputs
     lambda h, w: {"add": 3 * (3 * h * w - 2), "mul": 3 * h * w, "div": 2 * 3, "fn": 3}),
    ("var_mean", lambda x: torch.var_mean(x, dim=1), "var",
     lambda h, w: {"add": h * w * 7, "mul": h * w * 3, "div": 2 * h * w}),
    ("amin", lambda x: x.amin(1), "amin", lambda h, w: {"cmp": 2 * h * w}),         # 3 values: 2 cmp per output
    ("argmax", lambda x: x.argmax(1, keepdim=True), "argmax", lambda h, w: {"cmp": 2 * h * w}),
    ("max_dim", lambda x: x.max(dim=3), "argmax", lambda h, w: {"cmp": 3 * h * (w - 1)}),
    ("topk", lambda x: x.topk(2, dim=3), "topk",                                    # k(m-1) - k(k-1)/2 per row
     lambda h, w: {"cmp": 3 * h * (2 * (w - 1) - 1)}),
    ("bitwise", lambda x: (x.to(torch.int64) & 3) ^ (x.to(torch.int64) >> 1), "logical",
     lambda h, w: {"cmp": 3 * h * w}),                                              # first of three bit ops
    ("bitwise_not", lambda x: ~(x > 0), "logical_not", lambda h, w: {"cmp": 3 * h * w}),
    ("scatter", lambda x: torch.zeros_like(x).scatter(1, x.argmax(1, keepdim=True), 1.0), "copy",
     lambda h, w: {}),
    ("repeat", lambda x: x.repeat(1, 2, 1, 3), "copy", lambda h, w: {}),
    ("flip", lambda x: x.flip(2, 3), "copy", lambda h, w: {}),
    ("reflection_pad2d", lambda x: F.pad(x, (1, 2, 3, 4), mode="reflect"), "copy", lambda h, w: {}),
    ("replication_pad2d", lambda x: F.pad(x, (2, 1, 0, 3), mode="replicate"), "copy", lambda h, w: {}),
    ("constant_pad_nd", lambda x: F.pad(x, (1, 2, 3, 4), value=1.0), "copy", lambda h, w: {}),
    ("unfold", lambda x: F.unfold(x, 3, padding=1, stride=2), "unfold", lambda h, w: {}),
    ("fold", lambda x: F.fold(F.unfold(x, 2, stride=2), (x.shape[2] // 2 * 2, x.shape[3] // 2 * 2), 2, stride=2),
     "fold", lambda h, w: {"add": 3 * 4 * (h // 2) * (w // 2)}),                    # one add per column value
    ("tensor_unfold", lambda x: x.unfold(3, 4, 2), "neg", None),                    # a view: nothing to cost
    ("full_like", lambda x: torch.full_like(x, 3.0) + x, "add", lambda h, w: {"add": 3 * h * w}),
    ("bilinear_scale", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), "upsample",
     lambda h, w: {"mul": 3 * 3 * 2 * h * 2 * w, "add": 6 * 3 * 2 * h * 2 * w}),   # 3 lerps of (1 mul, 2 add)
    ("bilinear_half", lambda x: F.interpolate(x, size=(x.shape[2] // 2, x.shape[3] // 2), mode="bilinear"),
     "upsample", lambda h, w: {"mul": 3 * 3 * (h // 2) * (w // 2), "add": 6 * 3 * (h // 2) * (w // 2)}),
    ("bicubic_ceil", lambda x: F.interpolate(x, size=(-(-x.shape[2] // 4), 2 * x.shape[3]), mode="bicubic"),
     "upsample", lambda h, w: {"mul": 20 * 3 * -(-h // 4) * 2 * w, "add": 15 * 3 * -(-h // 4) * 2 * w}),
    ("nearest_module", nn.Upsample(scale_factor=2), "upsample", lambda h, w: {}),
    ("bicubic_module", nn.Upsample(scale_factor=2, mode="bicubic"), "upsample",
     lambda h, w: {"mul": 20 * 3 * 4 * h * w, "add": 15 * 3 * 4 * h * w}),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1), "maxpool2d",                # 8 cmp per 3x3 window
     lambda h, w: {"cmp": 8 * 3 * ((h - 1) // 2 + 1) * ((w - 1) // 2 + 1)}),
    ("adaptive_avg_pool1d", lambda x: F.adaptive_avg_pool1d(x.flatten(2), 1), "mean",  # torch takes the mean
     lambda h, w: {"add": 3 * (h * w - 1), "div": 3}),
    ("adaptive_max_pool1d", lambda x: F.adaptive_max_pool1d(x.flatten(2), 1), "adaptive_maxpool2d",
     lambda h, w: {"cmp": 3 * (h * w - 1)}),
    ("pow_tensor_exponent", lambda x: 2.0 ** x, "exp", lambda h, w: {"fn": 3 * h * w}),
    # added as one handler each in tracing/ops/pointwise.py: an elementwise library call, 1 fn per element
    ("erf", lambda x: torch.erf(x), "exp", lambda h, w: {"fn": 3 * h * w}),
    ("log1p", lambda x: torch.log1p(x), "exp", lambda h, w: {"fn": 3 * h * w}),
    ("expm1_then_log2", lambda x: torch.log2(torch.expm1(x)), "exp", lambda h, w: {"fn": 3 * h * w}),  # first: expm1
    ("arange_from_input", lambda x: x + torch.arange(x.shape[3] // 4, device=x.device).repeat_interleave(4)[:1],
     "add", lambda h, w: {"add": 3 * h * w}),  # a grid computed from the input's size
]


#: ops torch runs as a larger op on a view (1-D adaptive pooling: the 2-D op on an unsqueezed input)
SHAPE_OF_A_PART = {"adaptive_avg_pool1d", "adaptive_max_pool1d"}


@pytest.mark.parametrize("name, fn, layer, expected", CASES, ids=[c[0] for c in CASES])
def test_op_one_derivation_exact_at_every_residue(name, fn, layer, expected):
    model, mc = derive(fn)
    for h, w in SIZES:
        shape = (1, 3, h, w)
        values = mc.evaluate({"H": h, "W": w}, "torch")
        assert values["flops"] == torch_flops(model, shape), (name, h, w)
        if expected is None:
            continue
        row = op_row(mc, layer)
        ops = {k: int(v.xreplace({s: {"H": h, "W": w}[str(s)] for s in v.free_symbols}))
               for k, v in row.cost.ops.items()}
        assert ops == expected(h, w), (name, h, w, ops)
        got = tuple(int(d.xreplace({s: {"H": h, "W": w}[str(s)] for s in d.free_symbols}))
                    for d in row.cost.output_shape)
        if row is mc.rows[0] and name not in SHAPE_OF_A_PART:  # the op's row is the op: its output shape is torch's
            assert got == torch_shape(fn, shape), (name, h, w)


def test_rotary_embedding_sin_cos_neg_covered_in_L():
    # rotate_half as Llama writes it: cat(-x2, x1); x*cos + rotate_half(x)*sin over (1, L, 8)
    class Rotary(nn.Module):
        def forward(self, x):
            pos = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)[:, None]
            pos = pos * torch.ones(4, device=x.device)
            emb = torch.cat((pos, pos), dim=-1)
            x1, x2 = x[..., :4], x[..., 4:]
            y = x * emb.cos() + torch.cat((-x2, x1), dim=-1) * emb.sin()
            return y.reshape(1, -1) @ y.reshape(-1, 1)

    model = Rotary()
    mc = trace(model, (1, "L", 8))
    assert mc.uncovered == {}
    for n in (1, 7, 32, 100):
        assert mc.evaluate({"L": n}, "torch")["flops"] == torch_flops(model, (1, n, 8))
        # cos and sin: 8L fn each (the table (L, 8)); 2 mul of 8L, 1 add of 8L, 4L products for pos * ones
        assert mc.evaluate({"L": n}, "flops")["flops"] - mc.evaluate({"L": n}, "torch")["flops"] == \
            16 * n + 16 * n + 8 * n + 4 * n


def test_tf_same_padding_is_a_formula_at_every_residue():
    # timm's Conv2dSame: pad = max((ceil(x/s) - 1) s + (k-1) d + 1 - x, 0), computed from the input in forward
    timm = pytest.importorskip("timm")
    from timm.layers import create_conv2d, create_pool2d

    model = nn.Sequential(create_conv2d(3, 8, 3, stride=2, padding="same"),
                          create_pool2d("max", 3, stride=2, padding="same"),
                          create_conv2d(8, 4, 5, stride=2, dilation=1, padding="same"))
    assert timm  # used
    mc = trace(model, (1, 3, "H", "W"))
    assert mc.uncovered == {}
    for h, w in SIZES + [(224, 224), (225, 193)]:
        assert mc.evaluate({"H": h, "W": w}, "torch")["flops"] == torch_flops(model, (1, 3, h, w)), (h, w)


def test_antialiased_resize_exact_at_a_concrete_size_refused_in_symbols():
    def fn(x):
        return F.interpolate(x, size=(7, 9), mode="bilinear", antialias=True)

    model = Probe(fn)
    with pytest.raises(NoSingleFormula, match="antialiased"):
        trace(model, (1, 3, "H", "W"))
    mc = trace(model, (1, 3, 20, 18))
    assert mc.uncovered == {}
    assert mc.evaluate({}, "torch")["flops"] == torch_flops(model, (1, 3, 20, 18))
    row = op_row(mc, "upsample")
    # W 18 -> 9 (scale 2, support 2): centers 2i+1, windows [2i-1, 2i+3) clipped to [0, 18): 7 of 4 taps, 2 of 3;
    # H 20 -> 7 (scale 20/7, support 20/7): windows clipped at both ends (computed below, torch's formula)
    def taps(n_in, n_out):
        scale = n_in / n_out
        support = scale  # bilinear: interp_size 2, half of it times the scale
        return sum(min(int(scale * (i + .5) + support + .5), n_in) - max(int(scale * (i + .5) - support + .5), 0)
                   for i in range(n_out))

    assert taps(18, 9) == 7 * 4 + 2 * 3
    # horizontal pass on 3 planes x 20 rows, vertical pass on 3 planes x 9 columns
    assert row.cost.ops == {"mul": 3 * 20 * 34 + 3 * 9 * taps(20, 7),
                            "add": 3 * 20 * (34 - 9) + 3 * 9 * (taps(20, 7) - 7)}


def test_upsample_module_mode_is_its_own_not_train_or_eval():
    for train in (False, True):
        mc = trace(nn.Upsample(scale_factor=2, mode="bilinear"), (1, 3, "H", "W"), train=train)
        assert mc.rows[0].args["mode"] == "bilinear"


HF_FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "phi3", "falcon", "gpt_neox", "gemma", "gpt2", "opt", "bert",
               "roberta"]


@pytest.mark.sampled(every=2)  # a slow corpus: the default run takes a fixed sample (conftest.py)
@pytest.mark.slow
@pytest.mark.parametrize("model_type", HF_FAMILIES)
def test_hugging_face_family_fully_covered_in_L(model_type):
    # the default config with 2 layers (the ops are the same in every layer): rotary sin/cos/neg, cumsum positions
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2)
    if hasattr(config, "layer_types") and config.layer_types is not None:
        config.layer_types = config.layer_types[:2]
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config).eval()
    mc = trace(model, (1, "L"), input_dtype="int64")
    assert mc.uncovered == {}, mc.uncovered
    for n in (1, 17, 64, 96):
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, n, dtype=torch.int64, device="meta"))
        assert mc.evaluate({"L": n}, "torch")["flops"] == counter.get_total_flops(), (model_type, n)


def test_lstm_covered_at_a_size_and_summed_in_symbols():
    # nn.LSTM runs as aten ops, once per step (addmm/mm for the gates, unsafe_split into 4 gates: a view): the
    # number of ops grows with the sequence; in symbols the steps are summed (tracing.loops), at a size exact
    class RowLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            y, _ = self.lstm(x.mean(2).transpose(1, 2))  # (1, W, 3): a sequence of length W
            return y

    model = RowLSTM()
    summed = trace(model, (1, 3, 5, "W"))
    for w in (1, 8, 17, 32):
        assert summed.evaluate({"W": w}, "torch")["flops"] == torch_flops(model.to("meta"), (1, 3, 5, w)), w
        mc = trace(model, (1, 3, 5, w))
        assert mc.uncovered == {}
        assert mc.zero_cost_ops.get("aten.unsafe_split", 0) == w
        assert mc.evaluate({}, "torch")["flops"] == torch_flops(model.to("meta"), (1, 3, 5, w)), w
        assert mc.evaluate({}, "torch")["params"] == sum(p.numel() for p in model.parameters())
