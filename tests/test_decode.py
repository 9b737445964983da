"""Decoding with a KV cache: one step as a formula in the cached length T, and a generation in closed form."""
import json
import os
import subprocess
import sys

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.decode import decode_step, generation
from symcost.errors import OutsideProvenDomain
from tests.test_models import cli

transformers = pytest.importorskip("transformers")


def small(model_type: str):
    # 2 layers, width 64, 4 heads of 16; llama with 2 key/value heads (grouped-query attention)
    extra = {"num_key_value_heads": 2} if model_type == "llama" else {}
    cfg = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            intermediate_size=128, n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                            bos_token_id=0, eos_token_id=0, **extra)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(cfg).eval()


def ids(batch, length):
    return torch.zeros(batch, length, dtype=torch.long, device="meta")


def value(expr, **values):
    return int(expr.xreplace({s: values[str(s)] for s in expr.free_symbols}))


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_decode_step_equals_flop_counter_over_a_real_cache(model_type):
    model = small(model_type)
    mc = decode_step(model, 2, 1, "T")
    assert [str(s) for s in mc.symbols] == ["T"]
    for cached in (5, 8, 32, 33):
        with torch.no_grad():
            cache = model(ids(2, cached), use_cache=True).past_key_values   # a prefill builds the cache
            with FlopCounterMode(display=False) as c:
                model(ids(2, 1), past_key_values=cache, use_cache=True)
        assert mc.evaluate({"T": cached}, "torch")["flops"] == c.get_total_flops(), (model_type, cached)
    # attention over T + 1 keys: QK^T and AV, 2 layers x 2 sequences x 4 heads x 16 x 2 products = 512 MACs per
    # cached token (every query head reads its key/value head: grouped-query attention saves reads, not MACs)
    t = mc.symbols[0]
    assert sympy.expand(mc.total("macs")["macs"]).coeff(t) == 512
    # reads grow by at least the cache: K and V, 2 layers x 2 sequences x kv_heads x 16 per cached token
    kv_heads = 2 if model_type == "llama" else 4
    assert sympy.expand(mc.total()["reads"]).coeff(t) >= 2 * 2 * 2 * kv_heads * 16


def small_variant(model_type: str):
    """Families whose decode step computes sizes in Python from the cached length (a mask of T + 1 columns, cache
    positions T ... T + L - 1): each at 2 layers, width 64, 4 heads."""
    kw = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=100,
              bos_token_id=0, eos_token_id=0, pad_token_id=0)
    kw.update({"falcon": dict(new_decoder_architecture=False, multi_query=True),
               "opt": dict(ffn_dim=128, word_embed_proj_dim=64),
               "qwen2_moe": dict(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                 shared_expert_intermediate_size=32)}[model_type])
    cfg = transformers.AutoConfig.for_model(model_type, **kw)
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(cfg).eval()
    from symcost.moe import select_experts_implementation

    select_experts_implementation(model)
    return model


@pytest.mark.parametrize("model_type", ["falcon", "opt", "qwen2_moe"])
def test_decode_step_with_sizes_computed_from_the_cache_length(model_type):
    # these once refused (no single formula): a size T + 1 computed in Python was not recognised as one
    model = small_variant(model_type)
    mc = decode_step(model, 2, 1, "T")
    for cached in (5, 8, 33):
        with torch.no_grad():
            cache = model(ids(2, cached), use_cache=True).past_key_values
            with FlopCounterMode(display=False) as c:
                model(ids(2, 1), past_key_values=cache, use_cache=True)
        assert mc.evaluate({"T": cached}, "torch")["flops"] == c.get_total_flops(), (model_type, cached)


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_generation_closed_form_equals_a_cached_generation_loop(model_type):
    model = small(model_type)
    g = generation(model, 1, "P", "n", "torch")
    for prompt, steps in ((7, 4), (8, 3), (32, 1), (1, 6)):
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            out = model(ids(1, prompt), use_cache=True)
            for _ in range(steps):
                out = model(ids(1, 1), past_key_values=out.past_key_values, use_cache=True)
        assert value(g["total"]["flops"], P=prompt, n=steps) == c.get_total_flops(), (model_type, prompt, steps)


def test_generation_sum_equals_the_sum_of_concrete_traces_under_every_metric():
    from symcost.tracing import trace

    model = small("llama")
    g = generation(model, 1, "P", "n", "exact")
    prompt, steps = 5, 3
    expected = trace(model, (1, prompt), input_dtype="int64").total("exact")   # concrete: no symbols at all
    expected = {m: int(v) for m, v in expected.items()}
    for cached in range(prompt, prompt + steps):                               # T = 5, 6, 7
        step = decode_step(model, 1, 1, cached).total("exact")
        for m in ("macs", "flops", "reads", "writes"):
            expected[m] += int(step[m])
    for m in ("params", "macs", "flops", "reads", "writes"):
        assert value(g["total"][m], P=prompt, n=steps) == expected[m], m


def test_cli_past_and_generate(tmp_path):
    env = {"SYMCOST_CACHE_DIR": str(tmp_path)}
    args = ("model", "hf:gpt2", "--input", "1x1", "--past", "T", "--json", "--convention", "torch", "--at", "T=100")
    r = cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # GPT-2 small, one token against T cached: 12 layers x 12 heads x 64 x 2 products x 2 FLOPs = 36864 per cached
    # token (attention over T + 1 keys), plus the 124M-parameter matmuls once: 2 x 84934656 + 36864
    assert d["formula"]["flops"] == "36864*T + 169906176"
    assert d["evaluations"][0]["total"]["flops"] == 36864 * 100 + 169906176
    # the same call again answers from the cache: no torch, no transformers, the same numbers
    code = ("import sys; from symcost.cli import main; "
            f"main({list(args)!r}); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported'")
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert again.returncode == 0, again.stderr
    d2 = json.loads(again.stdout)
    assert d2["formula"] == d["formula"] and d2["evaluations"] == d["evaluations"]
    r = cli("model", "hf:gpt2", "--input", "1x3x4", "--past", "T")
    assert r.returncode == 2 and "B x L" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("model", "hf:gpt2", "--input", "1x1", "--past", "0")
    assert r.returncode == 2 and "positive" in r.stderr


def sliding(model_type: str, window: int):
    """A decoder whose KV cache has sliding-window layers: gemma2 alternates sliding and full layers, mistral's are
    all sliding; 2 layers, width 64, 4 heads of 16."""
    cfg = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=100,
                                            sliding_window=window, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(cfg).eval()


def measured_step(model, cached: int) -> int:
    with torch.no_grad():
        cache = model(ids(2, cached), use_cache=True).past_key_values   # a prefill keeps the window's last tokens
        with FlopCounterMode(display=False) as c:
            model(ids(2, 1), past_key_values=cache, use_cache=True)
    return c.get_total_flops()


@pytest.mark.parametrize(("model_type", "window"), [("gemma2", 512), ("mistral", 512), ("mistral", 128)])
def test_sliding_window_cache_formula_holds_below_the_window_and_is_refused_above(model_type, window):
    # was silent: every layer was filled with T tokens, while a sliding layer keeps the last W - 1 (gpt-oss: W = 128,
    # below symcost's usual trace sizes of T, so traced around W/2)
    model = sliding(model_type, window)
    mc = decode_step(model, 2, 1, "T")
    for cached in (5, 8, 33, window - 2, window - 1):
        try:
            flops = mc.evaluate({"T": cached}, "torch")["flops"]
        except OutsideProvenDomain:  # the cache's own branch near its window: that step traced on its own
            assert cached >= window - 2, (model_type, cached)
            flops = decode_step(model, 2, 1, cached).total("torch")["flops"]
        assert flops == measured_step(model, cached), (model_type, cached)
    with pytest.raises(ValueError, match=f"cannot take T={window}"):
        mc.evaluate({"T": window}, "torch")
    assert any("sliding-window" in n for n in mc.notes)


def test_gpt_oss_decode_step_at_its_window_of_128():
    # was refused: traced around W/2 (T = 65 and 33, both odd) a size of the step fits T + 1 and 2*ceil(T/2) alike,
    # and the far check point that tells them apart lies beyond the window; the next check point (64) is used now
    from symcost.moe import select_experts_implementation

    cfg = transformers.AutoConfig.for_model("gpt_oss", num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            intermediate_size=128, vocab_size=100, pad_token_id=0,
                                            num_key_value_heads=2, head_dim=16, num_local_experts=4,
                                            num_experts_per_tok=2)
    assert cfg.sliding_window == 128
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(cfg).eval()
    select_experts_implementation(model)
    mc = decode_step(model, 2, 1, "T")
    for cached in (5, 8, 33, 64, 126, 127):
        try:
            flops = mc.evaluate({"T": cached}, "torch")["flops"]
        except OutsideProvenDomain:  # the cache's own branch near its window: that step traced on its own
            assert cached >= 126, cached
            flops = decode_step(model, 2, 1, cached).total("torch")["flops"]
        assert flops == measured_step(model, cached), cached
    with pytest.raises(ValueError, match="cannot take T=128"):
        mc.evaluate({"T": 128}, "torch")


@pytest.mark.parametrize("model_type", ["gemma2", "mistral"])
def test_sliding_window_cache_at_a_number_of_cached_tokens_beyond_the_window(model_type):
    model = sliding(model_type, 8)
    for cached in (7, 8, 33):  # at the window's edge and beyond: the sliding layers read 7 cached tokens
        mc = decode_step(model, 2, 1, cached)
        assert mc.evaluate({}, "torch")["flops"] == measured_step(model, cached), (model_type, cached)


def test_sliding_window_cache_refused_with_its_reason():
    from symcost.errors import SymcostError

    model = sliding("gemma2", 8)  # every trace size is beyond the window: no formula in T
    with pytest.raises(SymcostError, match="sliding-window cache layer .window 8. keeps 7 tokens"):
        decode_step(model, 2, 1, "T")
    model = sliding("gemma2", 512)
    for prompt, steps in ((500, 13), ("P", 3), (4, "n")):  # the last step at 512 cached tokens; any, symbolic
        with pytest.raises(SymcostError, match="--generate: .*window 512"):
            generation(model, 2, prompt, steps)


def test_cli_past_beyond_a_sliding_window_is_refused(tmp_path):
    # Mistral's default config: every layer a sliding window of 4096 (was: a formula printed at any T, silently
    # counting attention over T + 1 keys where the cache holds 4095)
    env = {"SYMCOST_CACHE_DIR": str(tmp_path)}
    r = cli("model", "hf:mistral", "--input", "1x1", "--past", "T", "--at", "T=4095,4096", env=env)
    assert r.returncode == 2 and "cannot take T=4096" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_decode_of_a_model_whose_sdpa_mask_reads_values_falls_back_to_eager_attention():
    # BioGPT builds a mask of ones and asks sdpa's mask helper whether all are set (Tensor.item()): was refused as
    # "cannot build a KV cache"; now traced with eager attention (the same matmuls), as `symcost model` does
    from symcost.derive import derive_decode
    from symcost.targets import load_target

    got = derive_decode("hf:biogpt", "2x1", past="T", use_cache=False, progress=False)
    mc = got["step"]
    assert any("attn_implementation='eager'" in n for n in got["notes"])
    model = load_target("hf:biogpt", device="meta", attn_implementation="eager").eval()
    for cached in (5, 32, 33):
        assert mc.evaluate({"T": cached}, "torch")["flops"] == measured_step(model, cached), cached


def test_decode_of_a_model_without_a_kv_cache_is_refused_with_the_reason():
    r = cli("model", "hf:openai-gpt", "--input", "1x1", "--past", "T", "--no-cache")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.strip().endswith("the model returns no KV cache (use_cache=True): it is not a decoder symcost can "
                                     "step"), r.stderr


def hybrid(model_type: str):
    """A decoder whose cache holds states beside keys and values: Falcon-H1 (Mamba + attention in every layer), LFM2
    (a short-convolution layer, then an attention layer)."""
    kw = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
              intermediate_size=128, vocab_size=100, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if model_type == "lfm2":
        kw["layer_types"] = ["conv", "full_attention"]
    cfg = transformers.AutoConfig.for_model(model_type, **kw)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(cfg).eval()


@pytest.mark.parametrize("model_type", ["falcon_h1", "lfm2"])
def test_decode_of_a_cache_with_recurrent_or_convolution_states_is_refused(model_type):
    # Falcon-H1 was silently wrong: the step was traced with a DynamicCache of keys and values only, its Mamba states
    # left empty (a 2-layer config of width 64: 18,801,416,192 FLOPs at T=5 where FlopCounterMode over a real cache
    # counts 4,397,056); LFM2 was refused with an AttributeError ('LinearAttentionLayer' has no 'keys')
    from symcost.errors import UsageError

    with pytest.raises(UsageError, match="states beside keys and values"):
        decode_step(hybrid(model_type), 2, 1, "T")
