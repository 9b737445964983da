"""Mixture of experts: traced with batched_mm experts, exact against FlopCounterMode with the same implementation."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from symcost.moe import experts_summary, select_experts_implementation
from symcost.tracing import trace

transformers = pytest.importorskip("transformers")
#: forward ops another branch costs (rotary embeddings, deepseek's group mask)
FORWARD_ONLY_UNCOVERED = {"aten.neg", "aten.cos", "aten.sin", "aten.bitwise_and", "aten.bitwise_not", "aten.scatter_"}


def small(model_type: str):
    # 2 layers, width 64, 4 heads (2 key/value), 8 experts of width 128 (qwen2_moe: 32, plus a shared expert of 48),
    # top 2 per token
    # deepseek_v3: its first layer dense, 2 groups of 4 experts (top 1 group), low-rank attention 32/16, heads of 24
    deepseek = dict(num_key_value_heads=4, first_k_dense_replace=1, n_routed_experts=8, n_group=2, topk_group=1,
                    q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16)
    cfg = transformers.AutoConfig.for_model(model_type, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                            intermediate_size=128, moe_intermediate_size=32,
                                            shared_expert_intermediate_size=48, num_experts=8, num_local_experts=8,
                                            num_experts_per_tok=2, vocab_size=100,
                                            **(deepseek if model_type == "deepseek_v3" else {"num_key_value_heads": 2}))
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(cfg).eval()
    notes = select_experts_implementation(model)
    assert "batched_mm" in notes[0]
    return model


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "deepseek_v3"])
@pytest.mark.parametrize("backward", [False, True])
def test_moe_equals_flop_counter_with_the_same_experts_implementation(model_type, backward):
    model = small(model_type)
    mc = trace(model, (1, "L"), input_dtype="int64", backward=backward)
    assert set(mc.uncovered) <= FORWARD_ONLY_UNCOVERED, mc.uncovered
    for length in (5, 8, 32, 33):
        x = torch.zeros(1, length, dtype=torch.long, device="meta")
        for p in model.parameters():
            p.grad = None
        with torch.set_grad_enabled(backward), FlopCounterMode(display=False) as c:
            out = model(x)[0]
            if backward:
                out.backward(torch.ones_like(out))
        assert mc.evaluate({"L": length}, "torch")["flops"] == c.get_total_flops(), (model_type, length)
        assert mc.evaluate({"L": length}, "torch")["params"] == sum(p.numel() for p in model.parameters())


def test_active_params_per_token():
    info = experts_summary(small("mixtral"))
    # experts per layer: gate_up 8 x (2*128) x 64 + down 8 x 64 x 128 = 196608; two layers 393216, of which 6 of 8
    # experts idle per token: 294912
    assert (info["experts"], info["top_k"]) == ("8", "2")
    assert info["params_total"] - info["params_active"] == 2 * 196608 * 6 // 8
