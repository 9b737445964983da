"""--past / --generate on any decoder that takes a transformers cache (a file target returning a causal LM, heads
included), and --config on a factory: sampled configurations respect the model's divisibility rules, and a
builder's refusal is quoted whole.

Expected numbers: FlopCounterMode around the real model (on meta tensors) over a real cache, and ``numel()``.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.test_models import cli

transformers = pytest.importorskip("transformers")

LM = """
from transformers import LlamaConfig, LlamaForCausalLM


def config(hidden_size=64, num_hidden_layers=2):
    return LlamaConfig(hidden_size=hidden_size, intermediate_size=96, num_hidden_layers=num_hidden_layers,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=101, bos_token_id=0, eos_token_id=0)


def llama_lm():
    return LlamaForCausalLM(config())


def build(hidden_size=64, num_hidden_layers=2):   # fields named as the config's: heads fixed inside
    return LlamaForCausalLM(config(hidden_size, num_hidden_layers))


def by_width(width=64):                              # a name symcost cannot relate to the heads
    return LlamaForCausalLM(config(width))
"""


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("decoders") / "lm.py"
    path.write_text(LM)
    return path


def real(hidden_size=64, num_hidden_layers=2):
    cfg = transformers.LlamaConfig(hidden_size=hidden_size, intermediate_size=96, num_hidden_layers=num_hidden_layers,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=101, bos_token_id=0,
                                   eos_token_id=0)
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(cfg).eval()


def ids(batch, length):
    return torch.zeros(batch, length, dtype=torch.long, device="meta")


def step_flops(model, batch, cached) -> int:
    with torch.no_grad():
        cache = model(ids(batch, cached), use_cache=True).past_key_values
        with FlopCounterMode(display=False) as c:
            model(ids(batch, 1), past_key_values=cache, use_cache=True)
    return c.get_total_flops()


def run_json(*args):
    r = cli("model", *args, "--convention", "torch", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_decode_step_of_a_file_causal_lm(lm):
    d = run_json(f"{lm}:llama_lm", "--input", "2x1", "--past", "T", "--at", "T=5,8,33")
    model = real()
    for e in d["evaluations"]:
        assert e["total"]["flops"] == step_flops(model, 2, e["values"]["T"]), e["values"]
        assert e["total"]["params"] == sum(p.numel() for p in model.parameters())


def test_generation_of_a_file_causal_lm(lm):
    d = run_json(f"{lm}:llama_lm", "--input", "1xP", "--generate", "n", "--at", "P=4,n=3")
    model = real()
    with torch.no_grad(), FlopCounterMode(display=False) as c:   # a real generation loop: prefill, 3 steps
        cache = model(ids(1, 4), use_cache=True).past_key_values
        for _ in range(3):
            cache = model(ids(1, 1), past_key_values=cache, use_cache=True).past_key_values
    assert d["evaluations"][0]["total"]["flops"] == c.get_total_flops()


def test_config_on_a_factory_samples_what_the_model_accepts(lm):
    d = run_json(f"{lm}:build", "--input", "1x9", "--input-dtype", "int64", "--config",
                 "hidden_size=d,num_hidden_layers=3", "--at", "d=40,200")
    # the heads (4, fixed inside the factory) and rotary embeddings: head_dim = d/4 must be even
    assert any("d divisible by 8" in c for c in d["conditions"]), d["conditions"]
    for e in d["evaluations"]:
        model = real(e["values"]["d"], 3)
        with torch.no_grad(), FlopCounterMode(display=False) as c:
            model(ids(1, 9))
        assert e["total"]["flops"] == c.get_total_flops()
        assert e["total"]["params"] == sum(p.numel() for p in model.parameters())


def test_decode_step_in_a_factory_config(lm):
    d = run_json(f"{lm}:build", "--input", "1x1", "--past", "T", "--config", "num_hidden_layers=n",
                 "--at", "n=3,T=7")
    (e,) = d["evaluations"]
    assert e["total"]["flops"] == step_flops(real(num_hidden_layers=3), 1, 7)


def test_a_factory_refusal_is_quoted_whole(lm):
    r = cli("model", f"{lm}:by_width", "--input", "1x9", "--input-dtype", "int64", "--config", "width=w")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    # transformers' StrictDataclassClassValidationError: its reason follows a colon on the next line
    assert "validate_architecture': ValueError: The hidden size" in r.stderr
    assert "is not a multiple of the number of attention heads (4)" in r.stderr
    assert "fix that field with a number" in r.stderr


def test_a_file_model_without_a_transformers_cache_is_refused(tmp_path):
    f = tmp_path / "mlp.py"
    f.write_text("import torch\ndef mlp():\n    return torch.nn.Linear(4, 4)\n")
    for flag in ("--past", "--generate"):
        r = cli("model", f"{f}:mlp", "--input", "1x4", flag, "3", "--no-cache")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "need a decoder that takes a transformers KV cache" in r.stderr


def test_decoding_warns_of_nothing_deprecated():
    """The cache is driven through transformers' current API (DynamicCache layers, past_key_values): neither
    Python's warnings nor transformers' logger announce a deprecation while a step and a generation are traced."""
    import logging
    import warnings

    from symcost.decode import decode_step, generation

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = transformers.utils.logging.get_logger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            decode_step(real(), 1, 1, "T")
            generation(real(), 1, 3, 2)
    finally:
        logger.removeHandler(handler)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in records]
    assert not [s for s in said if "deprecat" in s.lower() or "will be removed" in s.lower()], said
