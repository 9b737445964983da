"""Llama-2-7B and GPT-2 small, built from their published configurations (never downloaded), derived by symcost.

Shared by the three hand-formula pages (Kaplan, PaLM/nanoGPT, Megatron-LM): each model is traced once per process,
forward and forward + backward, in the sequence length L (batch 1), under the ``torch`` convention (what
FlopCounterMode reports).  Parameter groups come from the modules themselves (``numel()``), not from symcost.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy

#: the published configurations, entered by hand (Llama-2-7B: Touvron et al. 2023, Table 1 and its config.json;
#: GPT-2 small: Radford et al. 2019, the 117M/124M model)
CONFIGS = {
    "Llama-2-7B": ("llama", {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                                 "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                                 "max_position_embeddings": 4096}),
    "GPT-2 small": ("gpt2", {"n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}),
}

#: contexts to tabulate, within each model's position range (GPT-2's table has 1024 rows)
LENGTHS = {"Llama-2-7B": (128, 512, 2048), "GPT-2 small": (128, 512, 1024)}


@dataclass(frozen=True)
class Setup:
    name: str
    L: sympy.Symbol
    forward: sympy.Expr        # torch FLOPs of one forward pass on 1 x L tokens
    step: sympy.Expr           # torch FLOPs of forward + backward
    n_layer: int
    d_model: int
    heads: int
    head_dim: int
    kv_heads: int
    d_ff: int
    vocab: int
    gated: bool                # SwiGLU (three MLP matrices) or not (two)
    matmul_weights: int        # numel of every Linear / Conv1D weight (the LM head once when tied)
    all_params: int
    embeddings: int            # token (and position) tables used by lookup only, not by a matmul
    position_table: int        # GPT-2's wpe (0 for Llama)
    lm_head: int               # the de-embedding matrix (GPT-2: the token table, tied)
    vector_params: int         # 1-D parameters: norm weights and biases
    step_megatron: sympy.Expr = 0   # forward + backward under symcost's ``megatron`` convention


def _build(kind: str, config: dict):
    import torch
    import transformers

    cfg = transformers.AutoConfig.for_model(kind, **config)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def _groups(model) -> dict:
    import torch
    from transformers.pytorch_utils import Conv1D

    seen: set = set()
    matmul = 0
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, Conv1D)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            matmul += m.weight.numel()
    params = list(model.parameters())  # each tied tensor once
    lookup = [p for n, p in model.named_parameters() if p.dim() == 2 and id(p) not in seen]
    wpe = getattr(getattr(model, "transformer", None), "wpe", None)
    return {"matmul_weights": matmul, "all_params": sum(p.numel() for p in params),
            "embeddings": sum(p.numel() for p in lookup), "lm_head": model.lm_head.weight.numel(),
            "position_table": wpe.weight.numel() if wpe is not None else 0,
            "vector_params": sum(p.numel() for p in params if p.dim() == 1)}


@cache
def setup(name: str) -> Setup:
    from symcost.tracing import trace

    kind, config = CONFIGS[name]
    model = _build(kind, config)
    forward = trace(model, (1, "L"), input_dtype="int64")
    step = trace(model, (1, "L"), input_dtype="int64", backward=True)
    c = model.config
    d, heads = c.hidden_size, c.num_attention_heads
    return Setup(name, forward.symbols[0], sympy.expand(forward.total("torch")["flops"]),
                 sympy.expand(step.total("torch")["flops"]), c.num_hidden_layers, d, heads, d // heads,
                 getattr(c, "num_key_value_heads", None) or heads,
                 getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d, c.vocab_size,
                 kind == "llama", **_groups(model), step_megatron=sympy.expand(step.total("megatron")["flops"]))


def ratio(a: int, b: int) -> str:
    from ._doc import fixed

    return fixed(a, b, 3)
