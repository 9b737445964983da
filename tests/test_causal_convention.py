"""The ``torch-causal`` convention: the causal triangle of attention's score and value products, nothing else."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.conventions import CONVENTIONS
from symcost.tracing import trace
from helpers import at_point


def cli(*args):
    return subprocess.run([sys.executable, "-m", "symcost.cli", *args], capture_output=True, text=True, check=False,
                          env=dict(os.environ))

transformers = pytest.importorskip("transformers")


def _meta(model_type: str, **config):
    cfg = transformers.AutoConfig.for_model(model_type, **config)
    with torch.device("meta"):
        return transformers.AutoModel.from_config(cfg).eval()


def _torch_flops(model, length: int) -> int:
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as c:
        model(ids)
    return c.get_total_flops()


def test_causal_triangle_of_a_decoder():
    # 3 layers, 4 heads of width 16 (hidden 64): each layer's QK^T and AV each have 4*L*L*16 MACs under torch
    model = _meta("llama", num_hidden_layers=3, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=101)
    mc = trace(model, (1, "L"), input_dtype="int64")
    for length in (1, 33, 64, 97):
        full = _torch_flops(model, length)
        assert mc.evaluate({"L": length}, "torch")["flops"] == full
        # the pairs a causal kernel computes, counted from the mask itself: tril(ones(L, L)).sum() = L(L+1)/2
        kept = int(torch.tril(torch.ones(length, length)).sum())
        skipped = length * length - kept
        # 3 layers x 2 products x 2 FLOPs per MAC x 4 heads x 16 wide x skipped pairs
        expected = full - 3 * 2 * 2 * 4 * 16 * skipped
        assert mc.evaluate({"L": length}, "torch-causal")["flops"] == expected, length
    assert any("torch-causal" in n for n in mc.notes)


def test_sliding_window_attention_is_counted_in_full_with_a_note():
    # Mistral masks a window of 16 in every layer: past it a causal kernel computes a band, not the triangle, and
    # symcost does not derive the band: torch-causal counts those calls as torch does, and says so
    model = _meta("mistral", num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=101, sliding_window=16)
    mc = trace(model, (1, "L"), input_dtype="int64")
    for length in (7, 40):  # (below the window the mask takes a path of its own: traced there on its own)
        values = at_point(mc, {"L": length}, "torch-causal", lambda: trace(model, (1, length), input_dtype="int64"))
        assert values["flops"] == _torch_flops(model, length)
    assert any("sliding window are counted in full" in n for n in mc.notes)


@pytest.mark.parametrize("convention", ["torch-causal", "megatron"])
def test_encoder_attention_is_not_causal(convention):
    model = _meta("bert", num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                  vocab_size=101)
    mc = trace(model, (1, "L"), input_dtype="int64")
    for length in (7, 64):
        assert mc.evaluate({"L": length}, convention) == mc.evaluate({"L": length}, "torch")
    assert not any(n.startswith(convention + ":") for n in mc.notes)


def test_layer_formulas_unchanged_and_listed():
    conv = CONVENTIONS["torch-causal"]
    assert conv.causal_attention and dict(conv.weights) == dict(CONVENTIONS["torch"].weights)
    r = cli("conventions")
    assert r.returncode == 0 and "torch-causal" in r.stdout and "L(L+1)/2" in r.stdout


def _torch_step_flops(model, length: int) -> int:
    """FlopCounterMode around one forward and a backward seeded with ones from the first output."""
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as c:
        out = model(ids).last_hidden_state
        out.backward(torch.ones_like(out))
    return c.get_total_flops()


def test_megatron_halves_every_causal_attention_product_forward_and_backward():
    # Megatron-LM since 8873b55d: attention is 6*l*q*s FLOPs per token of a training step where FlopCounterMode
    # counts 12*l*q*s (QK^T and AV, each 2*q*s per token forward, twice that backward): 6*l*q*L**2 less per step
    model = _meta("llama", num_hidden_layers=3, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=101).train()
    step = trace(model, (1, "L"), input_dtype="int64", backward=True)
    forward = trace(model, (1, "L"), input_dtype="int64")
    for length in (2, 33, 64, 97):
        full = _torch_step_flops(model, length)
        assert step.evaluate({"L": length}, "torch")["flops"] == full
        # l = 3 layers, q = 4 heads x 16 = 64
        assert step.evaluate({"L": length}, "megatron")["flops"] == full - 6 * 3 * 64 * length**2, length
        # forward alone: 2 products x 2 FLOPs per MAC x q x L**2 per layer, halved
        assert forward.evaluate({"L": length}, "megatron")["flops"] == \
            _torch_flops(model, length) - 2 * 3 * 64 * length**2, length
    assert any(n.startswith("megatron:") and "backward products too" in n for n in step.notes)


def test_megatron_counts_a_decode_step_over_a_cache_in_full():
    # L = 1 new query over S = T + 1 keys is no s x s square: Megatron's formula does not apply, counted as torch
    from symcost.decode import decode_step

    model = _meta("llama", num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=101)
    mc = decode_step(model, 1, 1, "T")
    for cached in (3, 40):
        assert mc.evaluate({"T": cached}, "megatron") == mc.evaluate({"T": cached}, "torch")
    assert any(n.startswith("megatron: 2 attention calls of new tokens over a KV cache") for n in mc.notes)


def test_tables_show_a_conventions_note_only_under_it(tmp_path):
    env = {**os.environ, "SYMCOST_CACHE_DIR": str(tmp_path)}

    def notes(convention):
        r = subprocess.run([sys.executable, "-m", "symcost.cli", "table", "hf:gpt2", "--input", "1x16", "--json",
                            "--convention", convention], capture_output=True, text=True, check=False, env=env)
        assert r.returncode == 0, r.stderr
        import json

        return json.loads(r.stdout)["notes"]

    assert not any(n.startswith(("torch-causal:", "megatron:")) for n in notes("flops"))
    causal = notes("torch-causal")
    assert any(n.startswith("torch-causal:") for n in causal) and not any(n.startswith("megatron:") for n in causal)
