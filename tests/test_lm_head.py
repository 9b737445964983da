"""hf:MODEL_TYPE:HEAD builds the model with its task head through transformers' auto classes, and `symcost mfu`
counts the LM head by default, as every reference does.

Expected numbers come from the models themselves: ``sum(p.numel())`` of the auto class's model and
``FlopCounterMode`` around its forward (and ``backward()``) on meta tensors, at the default configuration.
"""
from __future__ import annotations

import json

import pytest
import sympy
import torch
from torch.utils.flop_counter import FlopCounterMode

import symcost
from symcost.errors import UsageError
from symcost.targets import load_target
from tests.test_models import cli

transformers = pytest.importorskip("transformers")


def _built(auto: str, model_type: str):
    with torch.device("meta"):
        return getattr(transformers, auto).from_config(transformers.AutoConfig.for_model(model_type)).eval()


def _flops(model, ids, backward=False) -> int:
    with FlopCounterMode(display=False) as c:
        if backward:
            out = model(ids)[0]
            out.backward(torch.ones_like(out))
        else:
            with torch.no_grad():
                model(ids)
    return c.get_total_flops()


def _ids(*shape):
    return torch.zeros(*shape, dtype=torch.long, device="meta")


@pytest.mark.parametrize("model_type,head,auto", [
    ("gpt2", "causal-lm", "AutoModelForCausalLM"),
    ("llama", "causal-lm", "AutoModelForCausalLM"),
    ("bert", "masked-lm", "AutoModelForMaskedLM"),
    ("bert", "classification", "AutoModelForSequenceClassification"),
    ("t5", "seq2seq-lm", "AutoModelForSeq2SeqLM"),
    ("llama", "base", "AutoModel"),
])
def test_head_builds_through_the_auto_class(model_type, head, auto):
    model = load_target(f"hf:{model_type}:{head}", device="meta")
    reference = _built(auto, model_type)
    assert type(model) is type(reference)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("model_type,lengths", [("gpt2", (7, 8, 32)), ("llama", (5, 33))])
def test_causal_lm_params_and_flops_equal_the_real_model(model_type, lengths):
    reference = _built("AutoModelForCausalLM", model_type)
    mc = symcost.model(f"hf:{model_type}:causal-lm", "1xL", use_cache=False)
    total = mc.total("torch")
    assert total["params"] == sum(p.numel() for p in reference.parameters())
    (L,) = mc.symbols
    for n in lengths:
        assert int(total["flops"].subs(L, n)) == _flops(reference, _ids(1, n)), n
    # the head adds exactly one d x V matmul per token over the base model (2 FLOPs per MAC)
    base = symcost.model(f"hf:{model_type}", "1xL", use_cache=False).total("torch")["flops"]
    c = reference.config
    assert sympy.expand(total["flops"] - base.subs(base.free_symbols.pop(), L)) == 2 * c.hidden_size * c.vocab_size * L


def test_nanogpt_identity_with_the_head_in_n():
    """nanoGPT/PaLM: a training step is 6N + 12·n_layer·H·Q·T FLOPs per token when N is the matmul weights, the
    LM head included (GPT-2's is tied to the token table: counted once)."""
    from transformers.pytorch_utils import Conv1D

    reference = _built("AutoModelForCausalLM", "gpt2")
    weights = {id(m.weight): m.weight.numel() for m in reference.modules() if isinstance(m, (torch.nn.Linear, Conv1D))}
    n_matmul = sum(weights.values())
    assert n_matmul == 12 * (4 * 768 * 768 + 2 * 4 * 768 * 768) + 768 * 50257   # 12 blocks + the tied head
    mc = symcost.model("hf:gpt2:causal-lm", "1xT", backward=True, use_cache=False)
    (T,) = mc.symbols
    c = reference.config
    per_token = sympy.expand(mc.total("torch")["flops"] / T)
    assert per_token == 6 * n_matmul + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * T
    for t in (7, 32):   # and FlopCounterMode around a real training step agrees
        assert int(per_token.subs(T, t)) * t == _flops(reference, _ids(1, t), backward=True)


def test_unknown_and_unavailable_heads_are_refused():
    with pytest.raises(UsageError, match="unknown head 'causal'; did you mean causal-lm"):
        load_target("hf:gpt2:causal", device="meta")
    with pytest.raises(UsageError, match="no seq2seq-lm model for gpt2.*its heads: base, causal-lm"):
        load_target("hf:gpt2:seq2seq-lm", device="meta")


def test_mfu_counts_the_lm_head_by_default_and_says_so():
    gpt2 = _built("AutoModelForCausalLM", "gpt2")
    steps = {}
    for target in ("hf:gpt2", "hf:gpt2:base"):
        r = cli("mfu", target, "--input", "2x16", "--step-time", "0.01", "--device", "h100-sxm", "--json")
        assert r.returncode == 0, r.stderr
        steps[target] = json.loads(r.stdout)
    d = steps["hf:gpt2"]
    assert d["counted"] == "hf:gpt2:causal-lm" and "counted hf:gpt2:causal-lm" in " ".join(d["notes"])
    assert d["flops_per_step"] == _flops(gpt2, _ids(2, 16))
    assert steps["hf:gpt2:base"]["counted"] == "hf:gpt2:base"
    assert "counted hf:gpt2:base: the base model" in " ".join(steps["hf:gpt2:base"]["notes"])
    # 2 FLOPs per MAC of the 768 x 50257 head, for each of the 32 tokens
    assert d["flops_per_step"] - steps["hf:gpt2:base"]["flops_per_step"] == 2 * 768 * 50257 * 32
    # counted under torch: the notes of conventions not used are left out
    assert not any(n.startswith(("torch-causal:", "megatron:")) for n in d["notes"]), d["notes"]


def test_mfu_input_dtype_and_the_embedding_hint(tmp_path):
    f = tmp_path / "lm.py"
    f.write_text("import torch\n"
                 "def lm():\n"
                 "    return torch.nn.Sequential(torch.nn.Embedding(100, 16), torch.nn.Linear(16, 100))\n")
    r = cli("mfu", f"{f}:lm", "--input", "3x5", "--step-time", "1", "--device", "h100-sxm")
    assert r.returncode == 2 and "give --input-dtype int64" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("mfu", f"{f}:lm", "--input", "3x5", "--step-time", "1", "--device", "h100-sxm", "--input-dtype", "int64",
            "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["flops_per_step"] == 2 * 15 * 16 * 100 and d["flops_per_token"] == 3200   # 15 tokens x 16 x 100 MACs
    r = cli("mfu", f"{f}:lm", "--input", "3x5", "--step-time", "1", "--device", "h100-sxm", "--input-dtype", "int64")
    assert "FLOPs per token  3,200\n" in r.stdout   # an exact integer, printed as one


def test_config_formula_with_the_head():
    """--config on hf:gpt2:causal-lm: the formula in d and n, at configurations the fit chose not, equals the
    auto class's model built there."""
    cc = symcost.model("hf:gpt2:causal-lm", "1x9", config={"n_embd": "d", "n_layer": "n"}, use_cache=False)
    for d, n in ((120, 3), (36, 5)):
        cfg = transformers.AutoConfig.for_model("gpt2", n_embd=d, n_layer=n)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        got = cc.evaluate({"d": d, "n": n}, "torch")
        assert got["params"] == sum(p.numel() for p in model.parameters())
        assert got["flops"] == _flops(model, _ids(1, 9))


def test_table_and_plot_take_input_dtype(tmp_path):
    f = tmp_path / "lm.py"
    f.write_text("import torch\n"
                 "def lm():\n"
                 "    return torch.nn.Sequential(torch.nn.Embedding(100, 16), torch.nn.Linear(16, 100))\n")
    r = cli("table", f"{f}:lm", "--input", "3x5", "--json")
    assert r.returncode == 2 and "give --input-dtype int64" in r.stderr
    r = cli("table", f"{f}:lm", "--input", "3x5", "--input-dtype", "int64", "--json", "--convention", "torch")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"][-1]["flops"] == 2 * 15 * 16 * 100   # the Linear: 15 tokens x 16 x 100 MACs
    out = tmp_path / "p.svg"
    r = cli("plot", f"{f}:lm", "--input", "3xL", "--range", "L=2:6:2", "--out", str(out), "--input-dtype", "int64")
    assert r.returncode == 0 and out.exists(), r.stderr


def test_a_cached_mfu_call_imports_neither_torch_nor_transformers(tmp_path):
    import os

    from helpers import cached_call_outputs

    args = ["mfu", "hf:gpt2", "--input", "1x8", "--step-time", "0.1", "--device", "h100-sxm", "--json"]
    first, again = cached_call_outputs(args, {**os.environ, "SYMCOST_CACHE_DIR": str(tmp_path)})
    assert json.loads(again) == json.loads(first)    # the head chosen and every number, from the cache
