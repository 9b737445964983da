"""Formulas in a model's own hyperparameters (symcost.hyper): checked at random configurations never used in the
fit, against a fresh build measured by torch (FlopCounterMode, sum(p.numel())) and against formulas written by hand
from each architecture."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

import symcost
from symcost.errors import TraceError
from symcost.hyper import derive_config
from symcost.tracing import trace

d, n, f, h, k, V, L, w, R = sympy.symbols("d n f h k V L w R", integer=True, positive=True)

LLAMA = "hidden_size=d,num_hidden_layers=n,intermediate_size=f,num_attention_heads=h,num_key_value_heads=k,vocab_size=V"

CNN = textwrap.dedent("""
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


    def build(width=16, depth=2, classes=10):
        layers = [nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers += [Block(width) for _ in range(depth)]
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),
                   nn.ReLU()]
        layers += [Block(2 * width) for _ in range(depth)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes)]
        return nn.Sequential(*layers)


    def thirds(width=8):
        return nn.Sequential(nn.Linear(8, width // 3 + 1))   # not a polynomial in width


    def wider_from_ten(width=8, depth=2):
        # polynomial at every value the fit samples (2..7), another one from 10 on: only the check at random
        # configurations can see it
        return nn.Sequential(*[nn.Linear(8, 8) for _ in range(depth)], nn.Linear(8, width if width < 10 else 2 * width))
""")


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Derivations cached by these tests stay in a folder of their own."""
    folder = tmp_path_factory.mktemp("cache")
    old = os.environ.get("SYMCOST_CACHE_DIR")
    os.environ["SYMCOST_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("SYMCOST_CACHE_DIR")
    else:
        os.environ["SYMCOST_CACHE_DIR"] = old


def hf_model(model_type: str, **config):
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        return AutoModel.from_config(AutoConfig.for_model(model_type, **config)).eval()


def call(model, x):
    """The model on token ids ``x``; an encoder-decoder gets ``x`` as its decoder ids too (as symcost chooses)."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return model(input_ids=x, decoder_input_ids=x)
    return model(x)


def torch_flops(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call(model, x)
    return counter.get_total_flops()


def assert_matches_fresh_build(cc, model, values: dict, x) -> None:
    """The derived formula at ``values`` equals FlopCounterMode, sum(p.numel()) and a fresh symcost trace."""
    got = cc.evaluate(values, "torch")
    assert got["flops"] == torch_flops(model, x), values
    assert got["params"] == sum(p.numel() for p in model.parameters()), values
    fresh = trace(model, tuple(x.shape), input_dtype=str(x.dtype).removeprefix("torch."))
    for convention in ("macs", "flops", "exact", "fvcore"):
        ours = cc.evaluate(values, convention)
        theirs = {m: int(e) for m, e in fresh.total(convention).items()}
        assert ours == theirs, (values, convention)


def torch_step_flops(model, x) -> int:
    """FlopCounterMode around one training step: forward, then loss.backward() (the loss the sum of the first
    output: its gradient is ones, as symcost seeds it; a sum's backward is an expand, no FLOPs)."""
    for p in model.parameters():
        p.grad = None
    with FlopCounterMode(display=False) as counter:
        out = call(model, x)
        loss = (out if isinstance(out, torch.Tensor) else out[0]).sum()
        loss.backward()
    return counter.get_total_flops()


def assert_step_matches_torch(cc, model, values: dict, x) -> None:
    """A training step's formula at ``values``: total = FlopCounterMode around forward + backward, forward part =
    FlopCounterMode around the forward alone, params = sum(p.numel()); per token = total / (B*L)."""
    subs = {s: values[str(s)] for s in cc.symbols}
    parts = {name: {m: e.xreplace(subs) for m, e in t.items()} for name, t in cc.parts("torch").items()}
    cc.check_domain(values)
    assert parts["total"]["flops"] == torch_step_flops(model, x), values
    assert parts["forward"]["flops"] == torch_flops(model, x), values
    assert parts["total"]["params"] == sum(p.numel() for p in model.parameters()), values
    per = {m: e.xreplace(subs) for m, e in cc.per_token("torch")["total"].items()}
    assert per["flops"] * x.shape[0] * x.shape[1] == parts["total"]["flops"]
    assert per["params"] == parts["total"]["params"]


def unused(cc, config: dict) -> bool:
    return config not in cc.fit["traced_at"]


def unseen(cc, sample, count: int):
    """``count`` draws of ``sample()`` (a config, or a tuple whose first item is one) whose configuration ``cc``'s
    fit never traced: each formula is checked where it was not fitted."""
    found = 0
    while found < count:
        drawn = sample()
        if unused(cc, drawn[0] if isinstance(drawn, tuple) else drawn):
            found += 1
            yield drawn


# ------------------------------------------------------------------------------------------------------- GPT-2

@pytest.fixture(scope="module")
def gpt2():
    pytest.importorskip("transformers")
    return symcost.model("hf:gpt2", "1xL", config={"n_embd": "d", "n_layer": "n", "n_head": "h"})


def test_gpt2_formula_is_the_architecture_written_by_hand(gpt2):
    # per block: c_attn d x 3d + 3d bias, attn c_proj d x d + d, mlp c_fc d x 4d + 4d, c_proj 4d x d + d,
    # ln_1 and ln_2 2d each -> 12 d^2 + 13 d; wte 50257 x d, wpe 1024 x d, ln_f 2d.
    # Kaplan et al.'s N = 12 n d^2 is the first term only: it drops the 13 n d of biases and norms and the
    # (50257 + 1024 + 2) d of embeddings and final norm (at GPT-2 small, 124,439,808 vs 84,934,656).
    kaplan = 12 * n * d**2
    assert sympy.expand(gpt2.total()["params"] - kaplan - (13 * n * d + (50257 + 1024 + 2) * d)) == 0
    # MACs: per block L(3d^2 + d^2 + 4d^2 + 4d^2) in the linears, and QK^T plus AV: 2 h L^2 (d/h)
    assert sympy.expand(gpt2.total()["macs"] - n * (12 * L * d**2 + 2 * L**2 * d)) == 0
    assert gpt2.evaluate({"d": 768, "n": 12, "h": 12, "L": 1024})["params"] == 124439808  # GPT-2 small


def test_gpt2_at_random_configs_equals_flop_counter_and_numel(gpt2):
    rng = random.Random(11)

    def sample():
        heads = rng.randint(2, 9)
        return {"n_layer": rng.randint(2, 4), "n_head": heads, "n_embd": heads * rng.randint(2, 9)}

    for config in unseen(gpt2, sample, 20):  # the issue asks for 20 random valid configurations
        model = hf_model("gpt2", **config)
        for length in (7, 64):  # odd and a multiple of 32
            x = torch.zeros(1, length, dtype=torch.long, device="meta")
            values = {"d": config["n_embd"], "n": config["n_layer"], "h": config["n_head"], "L": length}
            assert_matches_fresh_build(gpt2, model, values, x)


def test_head_dim_divisibility_is_a_condition_and_breaking_it_is_refused(gpt2):
    assert gpt2.condition_texts() == ["d divisible by h, d >= 2*h (head_dim = d/h)"]
    with pytest.raises(ValueError, match=r"holds only where d divisible by h, d >= 2\*h \(head_dim = d/h\)"):
        gpt2.evaluate({"d": 100, "n": 2, "h": 12, "L": 8})
    with pytest.raises(ValueError, match="fitted and verified for h >= 2"):
        gpt2.evaluate({"d": 100, "n": 2, "h": 1, "L": 8})
    # the NumPy sweep marks the same configurations invalid: (768, 12) valid, (100, 12) not
    run = gpt2.lambdified("torch")
    import numpy as np

    out = run(*[np.array(v) for v in ([8, 8], [768, 100], [12, 12], [12, 12])])  # symbols L, d, h, n
    assert [s.name for s in gpt2.symbols] == ["L", "d", "h", "n"] and out["valid"].tolist() == [True, False]
    assert int(out["params"][0]) == 124439808


@pytest.fixture(scope="module")
def gpt2_step():
    pytest.importorskip("transformers")
    return symcost.model("hf:gpt2", "1xL", config={"n_embd": "d", "n_layer": "n", "n_head": "h"}, backward=True)


def test_gpt2_training_step_at_random_configs_equals_flop_counter_around_backward(gpt2_step):
    # by hand (torch convention, matmuls only): per block forward 2 L (3d^2 + d^2 + 4d^2 + 4d^2) FLOPs in the linears
    # and 2 (2 L^2 d) in QK^T and AV; backward twice that (gradients of both operands of every matmul)
    forward = n * (24 * L * d**2 + 4 * L**2 * d)
    parts = gpt2_step.parts("torch")
    assert sympy.expand(parts["forward"]["flops"] - forward) == 0
    assert sympy.expand(parts["backward"]["flops"] - 2 * forward) == 0
    assert sympy.expand(gpt2_step.per_token("torch")["total"]["flops"] - 3 * forward / L) == 0  # 72 n d^2 + 12 n L d
    rng = random.Random(13)

    def sample():
        heads = rng.randint(2, 7)
        return {"n_layer": rng.randint(2, 4), "n_head": heads, "n_embd": heads * rng.randint(2, 9)}

    for config in unseen(gpt2_step, sample, 4):
        model = hf_model("gpt2", **config)
        for length in (9, 32):  # odd and a multiple of 32
            x = torch.zeros(1, length, dtype=torch.long, device="meta")
            assert_step_matches_torch(gpt2_step, model, {"d": config["n_embd"], "n": config["n_layer"],
                                                         "h": config["n_head"], "L": length}, x)


# ------------------------------------------------------------------------------------------------------- Llama

def llama_sample(rng) -> dict:
    """A grouped-query Llama config: 2-3 key/value heads, each shared by 2-3 query heads of even width."""
    kv = rng.randint(2, 3)
    heads = kv * rng.randint(2, 3)
    return {"num_key_value_heads": kv, "num_attention_heads": heads, "hidden_size": 2 * heads * rng.randint(2, 5),
            "num_hidden_layers": rng.randint(2, 3), "intermediate_size": rng.randint(2, 40)}


def llama_values(config: dict) -> dict:
    """The symbols of ``LLAMA`` (but V) at a config."""
    return {"d": config["hidden_size"], "n": config["num_hidden_layers"], "f": config["intermediate_size"],
            "h": config["num_attention_heads"], "k": config["num_key_value_heads"]}


@pytest.fixture(scope="module")
def llama():
    pytest.importorskip("transformers")
    return derive_config("hf:llama", "1xL", LLAMA)


@pytest.mark.slow
def test_llama_in_six_fields_by_hand_and_at_random_configs(llama):
    # per layer: q_proj, o_proj d x d; k_proj, v_proj d x (k d/h) (grouped-query attention); gate, up, down d x f;
    # two RMSNorms d each; embed_tokens V x d; final norm d (AutoModel: no lm_head)
    hand = V * d + n * (2 * d**2 + 2 * d * k * d / h + 3 * d * f + 2 * d) + d
    assert sympy.expand(llama.total()["params"] - hand) == 0
    # MACs: the seven projections per token, plus QK^T and AV (2 h L^2 d/h); rotary and softmax are no MACs
    macs = n * (L * (2 * d**2 + 2 * d * k * d / h + 3 * d * f) + 2 * L**2 * d)
    assert sympy.expand(llama.total()["macs"] - macs) == 0
    # Llama-2-70B's published 68,976,648,192 params include the 32000 x 8192 lm_head AutoModel leaves out
    seventy_b = {"d": 8192, "n": 80, "f": 28672, "h": 64, "k": 8, "V": 32000, "L": 2048}
    assert llama.evaluate(seventy_b)["params"] == 68976648192 - 32000 * 8192
    # 7B has h = k: repeat_kv returns early there (no copy), so reads differ: that case is derived on its own
    seven_b = {"d": 4096, "n": 32, "f": 11008, "h": 32, "k": 32, "V": 32000, "L": 2048}
    with pytest.raises(ValueError, match="query heads per key/value head is 1"):
        llama.evaluate(seven_b)
    assert set(llama.condition_texts()) == {"d divisible by 2*h, d >= 4*h (head_dim = d/h must be even)",
                                            "h divisible by k, h >= 2*k (query heads per key/value head = h/k)"}
    rng = random.Random(7)
    for config in unseen(llama, lambda: {**llama_sample(rng), "vocab_size": rng.randint(2, 50)}, 4):
        model = hf_model("llama", **config)
        for length in (5, 32):
            x = torch.zeros(1, length, dtype=torch.long, device="meta")
            values = {**llama_values(config), "V": config["vocab_size"], "L": length}
            assert_matches_fresh_build(llama, model, values, x)
    with pytest.raises(ValueError, match="d divisible by 2\\*h"):
        llama.evaluate({**seven_b, "d": 4100})       # 4100 / 32 is not an integer
    with pytest.raises(ValueError, match="h divisible by k"):
        llama.evaluate({**seven_b, "k": 5})          # 32 query heads cannot share 5 key/value heads


def test_cli_llama_training_flops_per_token_in_width_depth_and_length():
    # the example: training FLOPs per token in d, n and L (the other fields at Llama's defaults)
    pytest.importorskip("transformers")
    r = cli("model", "hf:llama", "--input", "1xL", "--config", "hidden_size=d,num_hidden_layers=n", "--backward",
            "--per-token", "--json", "--convention", "torch", "--at", "d=128,320", "--at", "n=2,3", "--at", "L=7,32")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["per_token"]["divided_by"] == "L" and set(data["formula"]["flops"]) >= set("dnL")
    # by hand, per token: 6 FLOPs per weight of the 7 projections (q, k, v, o: d x d with 32 heads = 32 key/value
    # heads; gate, up, down: d x 11008), and 3 x 4 L d for QK^T and AV over the full L x L
    hand = n * (6 * (4 * d**2 + 3 * 11008 * d) + 12 * L * d)
    assert sympy.expand(sympy.sympify(data["formula"]["flops"], locals={"d": d, "n": n, "L": L}) - hand) == 0
    assert len(data["evaluations"]) == 8
    for e in data["evaluations"]:
        v = e["values"]
        model = hf_model("llama", hidden_size=v["d"], num_hidden_layers=v["n"])
        x = torch.zeros(1, v["L"], dtype=torch.long, device="meta")
        step = torch_step_flops(model, x)
        assert step % v["L"] == 0 and e["total"]["flops"] == step // v["L"], v   # per token: an integer here
        assert e["forward"]["flops"] * v["L"] == torch_flops(model, x), v
        assert e["total"]["params"] == sum(p.numel() for p in model.parameters()), v


@pytest.mark.slow
def test_llama_training_step_in_five_fields_at_random_configs():
    pytest.importorskip("transformers")
    step = symcost.model("hf:llama", "1xL", config=LLAMA.removesuffix(",vocab_size=V"), backward=True)
    rng = random.Random(17)
    for config in unseen(step, lambda: llama_sample(rng), 4):
        model = hf_model("llama", **config)
        for length in (5, 32):
            x = torch.zeros(1, length, dtype=torch.long, device="meta")
            assert_step_matches_torch(step, model, {**llama_values(config), "L": length}, x)


def test_llama_in_an_explicit_head_dim():
    """head_dim as a field of its own (Gemma, Qwen3 and many others set it apart from hidden_size / heads): the
    projections are d x h*k, and rotary embeddings need k even."""
    pytest.importorskip("transformers")
    cc = derive_config("hf:llama", "1xL", "hidden_size=d,num_attention_heads=h,num_key_value_heads=h,head_dim=k,"
                                          "num_hidden_layers=n")
    # per layer: q, k, v projections d x h*k and o h*k x d (as many key/value heads as query heads); gate, up, down
    # d x 11008; two RMSNorms d; embed_tokens 32000 x d; final norm d
    assert sympy.expand(cc.total()["params"] - (32000 * d + n * (4 * d * h * k + 3 * 11008 * d + 2 * d) + d)) == 0
    # MACs: the seven projections per token, plus QK^T and AV over L x L for each of h heads of width k
    macs = n * (L * (4 * d * h * k + 3 * 11008 * d) + 2 * L**2 * h * k)
    assert sympy.expand(cc.total()["macs"] - macs) == 0
    assert "k divisible by 2, k >= 4 (rotary embeddings rotate the two halves of each head)" in cc.condition_texts()
    rng = random.Random(11)

    def sample():   # head widths that are not hidden_size / heads
        heads = rng.randint(2, 3)
        return {"hidden_size": heads * rng.randint(2, 7), "num_attention_heads": heads,
                "head_dim": 2 * rng.randint(2, 6), "num_hidden_layers": rng.randint(2, 3)}

    for config in unseen(cc, sample, 3):
        heads = config["num_attention_heads"]
        x = torch.zeros(1, rng.randint(3, 20), dtype=torch.long, device="meta")
        values = {"d": config["hidden_size"], "h": heads, "k": config["head_dim"], "n": config["num_hidden_layers"],
                  "L": x.shape[1]}
        assert_matches_fresh_build(cc, hf_model("llama", **config, num_key_value_heads=heads), values, x)
    with pytest.raises(ValueError, match="k divisible by 2"):
        cc.evaluate({"d": 12, "h": 2, "k": 5, "n": 2, "L": 4})
    with pytest.raises(symcost.errors.UsageError, match="head_dim must be even"):
        derive_config("hf:llama", "1xL", "hidden_size=d,head_dim=5")
    with pytest.raises(symcost.errors.UsageError, match="head_dim shares its symbol"):
        derive_config("hf:llama", "1xL", "hidden_size=d,num_attention_heads=h,head_dim=h")


@pytest.mark.slow
def test_llama_multi_head_attention_ties_two_fields_to_one_symbol():
    pytest.importorskip("transformers")
    mha = derive_config("hf:llama", "1xL", "hidden_size=d,num_hidden_layers=n,num_attention_heads=h,"
                                           "num_key_value_heads=h")
    # Llama-2-7B: 6,738,415,616 published, less the 32000 x 4096 lm_head AutoModel leaves out
    assert mha.evaluate({"d": 4096, "n": 32, "h": 32, "L": 2048})["params"] == 6738415616 - 32000 * 4096
    config = {"hidden_size": 60, "num_hidden_layers": 3, "num_attention_heads": 3, "num_key_value_heads": 3}
    assert unused(mha, {k: v for k, v in config.items() if k != "num_key_value_heads"})
    x = torch.zeros(1, 9, dtype=torch.long, device="meta")
    assert_matches_fresh_build(mha, hf_model("llama", **config), {"d": 60, "n": 3, "h": 3, "L": 9}, x)


@pytest.mark.slow
def test_bert_in_width_depth_heads_and_ffn():
    pytest.importorskip("transformers")
    bert = derive_config("hf:bert", "1xL", "hidden_size=d,num_hidden_layers=n,num_attention_heads=h,"
                                           "intermediate_size=f")
    # per layer: Q, K, V, attention output d x d + d each; intermediate d x f + f; output f x d + d; 2 LayerNorms
    # 2d each -> 4d^2 + 2df + 9d + f; embeddings (30522 words + 512 positions + 2 token types) x d + LayerNorm 2d;
    # pooler d x d + d
    hand = n * (4 * d**2 + 2 * d * f + 9 * d + f) + (30522 + 512 + 2) * d + 2 * d + d**2 + d
    assert sympy.expand(bert.total()["params"] - hand) == 0
    assert bert.evaluate({"d": 768, "n": 12, "h": 12, "f": 3072, "L": 128})["params"] == 109482240  # BERT-base
    rng = random.Random(5)
    for _ in range(3):
        heads = rng.randint(2, 6)
        config = {"hidden_size": heads * rng.randint(2, 7), "num_hidden_layers": rng.randint(2, 3),
                  "num_attention_heads": heads, "intermediate_size": rng.randint(2, 50)}
        if not unused(bert, config):
            continue
        model = hf_model("bert", **config)
        x = torch.zeros(1, 13, dtype=torch.long, device="meta")
        values = {"d": config["hidden_size"], "n": config["num_hidden_layers"], "h": heads,
                  "f": config["intermediate_size"], "L": 13}
        assert_matches_fresh_build(bert, model, values, x)


def _bert(rng):
    heads = rng.randint(2, 5)
    config = {"hidden_size": heads * rng.randint(2, 6), "num_hidden_layers": rng.randint(2, 3),
              "num_attention_heads": heads, "intermediate_size": rng.randint(2, 40)}
    return config, {"d": config["hidden_size"], "n": config["num_hidden_layers"], "h": heads,
                    "f": config["intermediate_size"]}


def _t5(rng):
    config = {"d_model": rng.randint(2, 40), "num_layers": rng.randint(2, 3), "d_ff": rng.randint(2, 40),
              "num_heads": rng.randint(2, 4)}
    return config, {"d": config["d_model"], "n": config["num_layers"], "f": config["d_ff"], "h": config["num_heads"]}


def _mixtral(rng):
    # 32 query heads (the default) with rotary halves: d a multiple of 64; top-2 routing (the default) of E experts
    config = {"hidden_size": 64 * rng.randint(2, 3), "num_hidden_layers": rng.randint(2, 3),
              "intermediate_size": rng.randint(2, 30), "num_local_experts": rng.randint(2, 7)}
    return config, {"d": config["hidden_size"], "n": config["num_hidden_layers"], "f": config["intermediate_size"],
                    "E": config["num_local_experts"]}


@pytest.mark.slow
@pytest.mark.sampled(every=2)   # 20-45 s each; every family with SYMCOST_FULL_TESTS=1
@pytest.mark.parametrize("model_type, fields, sample", [
    ("bert", "hidden_size=d,num_hidden_layers=n,num_attention_heads=h,intermediate_size=f", _bert),
    ("t5", "d_model=d,num_layers=n,d_ff=f,num_heads=h", _t5),
    ("mixtral", "hidden_size=d,num_hidden_layers=n,intermediate_size=f,num_local_experts=E", _mixtral),
])
def test_training_step_at_random_configs_forward_and_backward(model_type, fields, sample):
    """One derivation of the training step gives both proofs: its forward part against FlopCounterMode around the
    forward alone, its total against FlopCounterMode around forward + loss.backward()."""
    pytest.importorskip("transformers")
    from symcost.moe import select_experts_implementation

    step = symcost.model(f"hf:{model_type}", "1xL", config=fields, backward=True)
    # bert's token-type embedding gradient is not costed by symcost yet (reported, counted in no metric)
    assert set(step.uncovered) <= {"aten.embedding_dense_backward"}, step.uncovered
    rng = random.Random(29)
    for config, values in unseen(step, lambda: sample(rng), 3):
        model = hf_model(model_type, **config)
        select_experts_implementation(model)  # mixtral: experts as batched matmuls, which run on meta
        for length in (7, 32):
            x = torch.zeros(1, length, dtype=torch.long, device="meta")
            assert_step_matches_torch(step, model, {**values, "L": length}, x)


def test_mixtral_in_experts_and_top_k_with_the_bound_between_them():
    pytest.importorskip("transformers")
    from symcost.moe import select_experts_implementation

    fixed = {"hidden_size": 128, "intermediate_size": 8, "num_hidden_layers": 2}
    cc = derive_config("hf:mixtral", "1xL", {**fixed, "num_local_experts": "E", "num_experts_per_tok": "top_k"})
    assert "top_k <= E (num_experts_per_tok <= num_local_experts)" in cc.condition_texts()
    E, top_k = sympy.symbols("E top_k", integer=True, positive=True)
    # per layer, per token: the router 128 x E, and top_k experts of three 128 x 8 matrices (batched_mm)
    macs = cc.total()["macs"]
    assert sympy.expand(macs.coeff(E) - 2 * 128 * L) == 0 and sympy.expand(macs.coeff(top_k) - 2 * 3 * 128 * 8 * L) == 0
    rng = random.Random(31)

    def sample():
        experts = rng.randint(2, 9)
        return {"num_local_experts": experts, "num_experts_per_tok": rng.randint(2, experts)}

    for config in unseen(cc, sample, 4):
        model = hf_model("mixtral", **fixed, **config)
        select_experts_implementation(model)  # experts as batched matmuls, which run on meta
        for length in (7, 32):
            x = torch.zeros(1, length, dtype=torch.long, device="meta")
            got = cc.evaluate({"E": config["num_local_experts"], "top_k": config["num_experts_per_tok"], "L": length},
                              "torch")
            assert got["flops"] == torch_flops(model, x), config
            assert got["params"] == sum(p.numel() for p in model.parameters()), config
    with pytest.raises(ValueError, match="holds only where top_k <= E"):
        cc.evaluate({"E": 2, "top_k": 3, "L": 5})
    import numpy as np

    assert [str(s) for s in cc.symbols] == ["E", "L", "top_k"]
    assert cc.lambdified()(np.array([2, 2]), np.array([5, 5]), np.array([2, 3]))["valid"].tolist() == [True, False]


# --------------------------------------------------------------------------------------------- a CNN factory

@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "my_nets.py"
    path.write_text(CNN)
    return path


@pytest.fixture(scope="module")
def cnn(nets):
    return derive_config(f"{nets}:build", "1x3xRxR", "width=w,depth=n")


def test_cnn_factory_at_random_width_depth_and_resolution(cnn, nets):
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_nets_check", nets)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # params by hand: stem 27w + 2w (BN); per block at width c: 2 (9c^2 + 2c); transition 9w*2w + 4w;
    # fc 2w*10 + 10 -> 18w^2 n + 4wn + 72w^2 n + 8wn + 18w^2 + 29w + 4w + 20w + 10
    hand = 27 * w + 2 * w + n * (18 * w**2 + 4 * w) + 18 * w**2 + 4 * w + n * (72 * w**2 + 8 * w) + 20 * w + 10
    assert sympy.expand(cnn.total()["params"] - hand) == 0
    assert any(isinstance(a, sympy.floor) for a in sympy.preorder_traversal(cnn.total()["macs"]))  # floors in R
    rng = random.Random(3)
    for _ in range(5):
        config = {"width": rng.randint(2, 24), "depth": rng.randint(2, 4)}
        if not unused(cnn, config):
            continue
        model = module.build(**config).eval()
        for size in (rng.randint(8, 31), 32, 33):  # odd, a multiple of 32, one past it
            x = torch.zeros(1, 3, size, size)
            assert_matches_fresh_build(cnn, model, {"w": config["width"], "n": config["depth"], "R": size}, x)


class BasicBlock(torch.nn.Module):
    """A ResNet basic block; ``stride`` 2 halves the size and doubles nothing here (the caller picks the widths),
    with a 1x1 stride-2 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.short = nn.Sequential() if stride == 1 and c_in == c_out else \
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


def resnet(width: int = 16, depth: int = 2, classes: int = 10):
    """Two stages of ``depth`` blocks at widths w and 2w; the second stage starts with a stride-2 block."""
    nn = torch.nn
    layers = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
              nn.MaxPool2d(3, stride=2, padding=1)]
    layers += [BasicBlock(width, width) for _ in range(depth)]
    layers += [BasicBlock(width, 2 * width, stride=2)] + [BasicBlock(2 * width, 2 * width) for _ in range(depth - 1)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes)]
    return nn.Sequential(*layers)


def test_python_trace_of_a_resnet_factory_in_width_depth_and_resolution():
    cc = symcost.trace(resnet, (1, 3, "R", "R"), config={"width": "w", "depth": "n"})
    # params by hand: stem 27w + 2w; stage 1: n blocks of 2 (9w^2 + 2w); stage 2: first block 9w*2w + 9(2w)^2 + 4w
    # + 4w, shortcut 2w^2 + 4w; then n - 1 blocks of 2 (9 (2w)^2 + 4w); fc 20w + 10
    hand = (29 * w + n * (18 * w**2 + 4 * w) + (18 * w**2 + 36 * w**2 + 8 * w + 2 * w**2 + 4 * w)
            + (n - 1) * (72 * w**2 + 8 * w) + 20 * w + 10)
    assert sympy.expand(cc.total()["params"] - hand) == 0
    assert cc.target.endswith("resnet") and set(map(str, cc.symbols)) == {"R", "n", "w"}
    rng = random.Random(23)
    for config in unseen(cc, lambda: {"width": rng.randint(2, 20), "depth": rng.randint(2, 4)}, 5):
        model = resnet(**config).eval()
        for size in (2 * rng.randint(4, 20) + 1, 32, 33, 30):  # odd, a multiple of 32, one past it, 2 mod 4
            x = torch.zeros(1, 3, size, size)
            values = {"w": config["width"], "n": config["depth"], "R": size}
            got = cc.evaluate(values, "torch")
            assert got["flops"] == torch_flops(model, x), values
            assert got["params"] == sum(p.numel() for p in model.parameters()), values
    with pytest.raises(symcost.errors.UsageError, match="config= needs a factory"):
        symcost.trace(resnet(), (1, 3, "R", "R"), config={"width": "w"})


def mlp(width: int = 4, depth: int = 2):
    nn = torch.nn
    return nn.Sequential(*[nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 8)) for _ in range(depth)])


@pytest.mark.parametrize("hide_a_term", [False, True])
def test_sparse_fit_and_its_fallback_to_the_full_grid(monkeypatch, hide_a_term):
    """With a symbolic input, which terms exist is found at a concrete size and only those are fitted from symbolic
    traces; a term that fit misses (simulated) fails the verification and the full grid of symbolic traces decides."""
    from symcost.hyper import derivation

    B = sympy.Symbol("B", integer=True, positive=True)
    if hide_a_term:
        sparse = derivation._sparse_fit

        def missing(*args):
            out = sparse(*args)
            return {m: e + (B * w if m == "macs" else 0) for m, e in out.items()}   # as if a term had been hidden

        monkeypatch.setattr(derivation, "_sparse_fit", missing)
    cc = symcost.trace(mlp, ("B", 8), config={"width": "w", "depth": "n"})
    # per block: Linear(8, w) 8w + w params and 8w MACs per row, Linear(w, 8) 8w + 8 and 8w MACs per row
    assert sympy.expand(cc.total()["params"] - n * (17 * w + 8)) == 0
    assert sympy.expand(cc.total()["macs"] - n * B * 16 * w) == 0
    # sparse: 1 symbolic trace (naming the functions of B that occur: B and 1) + 3 checks, the terms n*w and n from
    # concrete traces at two sizes of B; the fallback adds 11 probes and the 2 x 2 grid
    assert cc.fit["concrete_traces"] > 0
    assert (cc.fit["traces"] > 10) if hide_a_term else (cc.fit["traces"] == 4), cc.fit


def test_a_field_no_polynomial_explains_is_refused_by_name(nets):
    with pytest.raises(TraceError, match=r"no polynomial of degree <= 4 in width \(= w\)"):
        derive_config(f"{nets}:thirds", "1x8", "width=w")


def test_a_formula_the_random_checks_refute_is_refused_naming_the_field(nets):
    with pytest.raises(TraceError, match=r"not one polynomial in width;"):
        derive_config(f"{nets}:wider_from_ten", "1x8", "width=w,depth=n", checks=12)


# ------------------------------------------------------------------------------------------------- the CLI

def cli(*args):
    return subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ))


def test_cli_config_json_and_refusals(nets, tmp_path):
    r = cli("model", f"{nets}:build", "--input", "1x3xRxR", "--config", "width=w,depth=n", "--json",
            "--at", "w=5,n=3,R=37", "--convention", "torch")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert "w" in data["formula"]["macs"] and "R" in data["formula"]["macs"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_nets_cli", nets)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build(width=5, depth=3).eval()
    (point,) = data["evaluations"]
    assert point["total"]["flops"] == torch_flops(model, torch.zeros(1, 3, 37, 37))
    assert point["total"]["params"] == sum(p.numel() for p in model.parameters())
    for args, message in (
        (["--config", "width=w,depth=n", "--at", "w=1,n=3,R=37"], "fitted and verified for w >= 2"),
        (["--config", "widht=w"], "has no argument 'widht'"),
        (["--config", "width=R"], "also an input symbol"),
        (["--config", "width=2+2"], "not a valid symbol name"),
        (["--config", "width=w", "--per-token"], "needs a token-id input of shape B x L"),
        (["--config", "width=w", "--past", "8"], "--past: the input is B x L token ids"),
        (["--config", "width=w", "--generate", "8"], "--generate need token ids of shape B x L"),
        (["--config", "width=w", "--trace-sizes", "R=33:35"], "does not combine with --trace-sizes"),
    ):
        r = cli("model", f"{nets}:build", "--input", "1x3xRxR", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_table_rows_from_one_formula_equal_fresh_builds(tmp_path):
    pytest.importorskip("transformers")
    rows = {"small": {"n_embd": 768, "n_layer": 12, "n_head": 12}, "medium": {"n_embd": 1024, "n_layer": 24,
                                                                              "n_head": 16}}
    path = tmp_path / "gpt2_configs.json"
    path.write_text(json.dumps(rows))
    r = cli("table", "hf:gpt2", "--input", "1x64", "--config-values", str(path), "--json", "--convention", "torch")
    assert r.returncode == 0, r.stderr
    assert "one formula in d, h, n" in r.stderr
    table = json.loads(r.stdout)
    got = {row["name"]: row for row in table["rows"]}
    for name, config in rows.items():
        model = hf_model("gpt2", **config)
        assert got[name]["params"] == sum(p.numel() for p in model.parameters()), name
        assert got[name]["flops"] == torch_flops(model, torch.zeros(1, 64, dtype=torch.long, device="meta")), name


def test_numpy_sweep_over_many_configs_equals_exact_evaluation(gpt2):
    import numpy as np

    rng = np.random.default_rng(0)
    h_ = rng.integers(2, 64, 100_000)
    d_ = h_ * rng.integers(1, 5, 100_000) + (rng.random(100_000) < 0.2)  # d/h = 1 and d % h != 0 are invalid
    n_, L_ = rng.integers(1, 9, 100_000), rng.integers(1, 1025, 100_000)   # GPT-2's 1024 positions
    out = gpt2.lambdified("torch")(L_, d_, h_, n_)   # symbols in order L, d, h, n
    assert 0.3 < out["valid"].mean() < 0.7
    # past the position table torch refuses (an index error on real tensors): so does the formula
    assert not gpt2.lambdified("torch")(np.array([1025]), np.array([64]), np.array([2]), np.array([2]))["valid"][0]
    for i in range(0, 100_000, 997):
        values = {"L": int(L_[i]), "d": int(d_[i]), "h": int(h_[i]), "n": int(n_[i])}
        try:
            exact = gpt2.evaluate(values, "torch")
        except ValueError:
            assert not out["valid"][i], values
            continue
        assert out["valid"][i] and int(out["flops"][i]) == exact["flops"] and int(out["params"][i]) == exact["params"]


def test_cli_plot_against_a_config_field(nets, tmp_path):
    out = tmp_path / "cost_vs_width.png"
    r = cli("plot", f"{nets}:build", "--input", "1x3x32x32", "--config", "width=w", "--range", "w=1:40:3",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and "1 of 14 values skipped (w=1)" in r.stdout


def test_vectorised_evaluation_is_exact_in_int64_and_beyond():
    """hyper.sweep against Python integers point by point: int64 where safe, Python ints past 2**63, and the points
    where a divisor does not divide (a configuration a condition excludes) flagged, never rounded silently."""
    import numpy as np

    from symcost.hyper.sweep import exact_values

    formula = V * d + n * (2 * d**2 + 2 * d**2 * k / h + 3 * d * f + 2 * d) + d   # Llama's params
    rng = np.random.default_rng(1)
    size = 20_000
    env = {"h": rng.integers(1, 65, size), "k": rng.integers(1, 9, size), "f": rng.integers(1, 10**5, size),
           "V": rng.integers(1, 10**6, size), "n": rng.integers(1, 200, size)}
    env["d"] = env["h"] * rng.integers(1, 300, size) + (rng.random(size) < 0.1)   # 10 % not divisible by h
    env["n"][:50] = 10**6       # some points past int64: d^2 n k / h up to about 10**18 * ...
    env["d"][:50] = 3 * 10**6 * env["h"][:50]
    values, integral = exact_values(formula, env, size)
    for i in range(size):
        p = {s: int(v[i]) for s, v in env.items()}
        top = 2 * p["d"] ** 2 * p["k"] * p["n"]
        rest = p["V"] * p["d"] + p["n"] * (2 * p["d"] ** 2 + 3 * p["d"] * p["f"] + 2 * p["d"]) + p["d"]
        exact_num = rest * p["h"] + top
        assert bool(integral[i]) == (exact_num % p["h"] == 0), p
        if integral[i]:
            assert int(values[i]) == exact_num // p["h"], p
    assert values.dtype == object and int(values[0]) > 2**63   # the big points kept exact


def test_llama_decode_step_in_width_depth_ffn_and_cached_tokens():
    """--config with --past: one decode step (2 sequences, one new token each, T cached) in d, n, f and T, checked
    against FlopCounterMode around a real cached step of fresh builds at random configurations."""
    pytest.importorskip("transformers")
    from symcost.hyper import derive_config

    cc = derive_config("hf:llama", "2x1", "hidden_size=d,num_hidden_layers=n,intermediate_size=f", past="T")
    t = sympy.Symbol("T", integer=True, positive=True)
    # per layer and sequence: q, k, v, o d x d (32 heads = 32 key/value heads), gate, up, down d x f, and QK^T and
    # AV over the T cached keys and the new one (2 (T + 1) d)
    macs = 2 * n * (4 * d**2 + 3 * d * f + 2 * (t + 1) * d)
    assert sympy.expand(cc.total()["macs"] - macs.subs(t, cc.past)) == 0
    from tests.test_decode import measured_step   # FlopCounterMode around a real cached step of 2 x 1 ids

    rng = random.Random(5)
    for config in unseen(cc, lambda: {"hidden_size": 64 * rng.randint(2, 4), "num_hidden_layers": rng.randint(2, 3),
                                      "intermediate_size": rng.randint(2, 40)}, 3):
        model = hf_model("llama", **config)
        for cached in (rng.randint(1, 9), rng.randint(30, 70)):
            values = {"d": config["hidden_size"], "n": config["num_hidden_layers"], "f": config["intermediate_size"],
                      "T": cached}
            assert cc.evaluate(values, "torch")["flops"] == measured_step(model, cached), values
            assert cc.evaluate(values)["params"] == sum(p.numel() for p in model.parameters()), values
    r = cli("model", "hf:llama", "--input", "1x1", "--past", "T", "--config", "hidden_size=d", "--generate", "3")
    assert r.returncode == 2 and "--generate" in r.stderr.strip().splitlines()[-1]
    r = cli("model", "hf:llama", "--input", "1x1", "--past", "T", "--config", "hidden_size=d", "--backward")
    assert r.returncode == 2 and "decode step of inference" in r.stderr


def test_llama_generation_in_width_depth_prompt_and_steps():
    """--config with --generate: prefill of P tokens, then N decode steps, in d, n, P and N; checked against
    FlopCounterMode around a real generation loop (prefill, then N cached one-token calls) at random values."""
    pytest.importorskip("transformers")
    r = cli("model", "hf:llama", "--input", "1xP", "--generate", "N", "--config", "hidden_size=d,num_hidden_layers=n",
            "--convention", "torch", "--json", "--at", "d=128,192", "--at", "n=2,3", "--at", "P=1,9", "--at", "N=1,4")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    # MACs by hand: the prefill runs the seven projections on P tokens (4 d^2 + 3 d 11008 each) and QK^T, AV over
    # P x P (2 P^2 d); the step at T cached tokens runs them on one token with attention over T + 1 keys
    p, steps, t = sympy.symbols("P N t", integer=True, positive=True)
    step = n * (4 * d**2 + 3 * 11008 * d + 2 * (t + 1) * d)
    hand = n * (p * (4 * d**2 + 3 * 11008 * d) + 2 * p**2 * d) + sympy.summation(step, (t, p, p + steps - 1))
    got = sympy.sympify(data["formula"]["macs"], locals={"d": d, "n": n, "P": p, "N": steps})
    assert sympy.expand(got - hand) == 0
    assert len(data["evaluations"]) == 16
    for e in data["evaluations"][::3]:
        v = e["values"]
        model = hf_model("llama", hidden_size=v["d"], num_hidden_layers=v["n"])
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(torch.zeros(1, v["P"], dtype=torch.long, device="meta"), use_cache=True)
            for _ in range(v["N"]):
                out = model(torch.zeros(1, 1, dtype=torch.long, device="meta"), past_key_values=out.past_key_values,
                            use_cache=True)
        assert e["total"]["flops"] == counter.get_total_flops(), v
