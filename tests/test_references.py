"""Every published FLOPs formula symcost is compared with, transcribed here from its source at a pinned commit (or
paper version) and date, evaluated at published configurations against symcost's exact count, with the difference
written out by hand as a formula.

symcost's side: ``hf:llama:causal-lm`` (the default Llama config is Llama-2-7B: d 4096, n 32, h 32, f 11008,
V 32000) and ``hf:gpt2:causal-lm`` (GPT-2 small: d 768, n 12, h 12, V 50257), LM heads included, under the
``torch`` convention (2 per multiply-accumulate of every matmul: FlopCounterMode's count, checked in
tests/test_lm_head.py), per token of a 1 x L sequence.  Each reference's own formula is written with plain integer
arithmetic from the published configuration; nothing on the reference side comes from symcost.
"""
from __future__ import annotations

from fractions import Fraction

import pytest
import sympy

import symcost

pytest.importorskip("transformers")

LLAMA2_7B = dict(d=4096, n=32, h=32, kv=32, q=128, f=11008, V=32000, gated=True)
GPT2_SMALL = dict(d=768, n=12, h=12, kv=12, q=64, f=3072, V=50257, gated=False)

#: weights every matmul multiplies (the LM head once), from the architectures: Llama-2-7B: 32 layers of q, k, v, o
#: (4 d^2) and gate, up, down (3 d f), plus the d x V head; GPT-2 small: 12 layers of c_attn, c_proj (4 d^2) and
#: c_fc, c_proj (2 d f = 8 d^2), plus the head tied to the token table
MATMUL = {"llama": 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 4096 * 32000,
          "gpt2": 12 * (4 * 768**2 + 2 * 768 * 3072) + 768 * 50257}
#: 1-D parameters (norm weights and biases): Llama's 2 RMSNorms a layer and the final one; GPT-2's per layer
#: ln_1, ln_2 (2 d each), c_attn bias 3d, attn c_proj d, c_fc 4d, mlp c_proj d = 13 d, and ln_f 2 d
VECTORS = {"llama": (2 * 32 + 1) * 4096, "gpt2": 13 * 12 * 768 + 2 * 768}
#: lookup-only tables: Llama's token embedding (untied), GPT-2's 1024-position table (its token table is the head)
LOOKUP = {"llama": 32000 * 4096, "gpt2": 1024 * 768}
LENGTHS = {"llama": (2048, 4096, 333), "gpt2": (1024, 128, 97)}
CONFIG = {"llama": LLAMA2_7B, "gpt2": GPT2_SMALL}


@pytest.fixture(scope="module")
def counts():
    """symcost's exact torch FLOPs per token: training step and forward (functions of L), by model."""
    out = {}
    for name in ("llama", "gpt2"):
        step = symcost.model(f"hf:{name}:causal-lm", "1xL", backward=True)
        forward = symcost.model(f"hf:{name}:causal-lm", "1xL")
        (L,) = step.symbols
        (L2,) = forward.symbols
        out[name] = (sympy.expand(step.total("torch")["flops"] / L), sympy.expand(forward.total("torch")["flops"] / L2),
                     L, L2, step.total("torch")["params"], sympy.expand(step.total("torch-causal")["flops"] / L))
    return out


def per_token(expr, L, s) -> int:
    return int(expr.subs(L, s))


def padded(vocab: int, multiple: int = 128) -> int:
    """Megatron's _vocab_size_with_padding: up to a multiple of --make-vocab-size-divisible-by (128) x TP (1)."""
    return -(-vocab // multiple) * multiple


def test_the_matmul_weights_are_those_of_the_built_models(counts):
    assert counts["llama"][4] == 6738415616 == MATMUL["llama"] + VECTORS["llama"] + LOOKUP["llama"]   # published 6.74B
    assert counts["gpt2"][4] == 124439808 == MATMUL["gpt2"] + VECTORS["gpt2"] + LOOKUP["gpt2"]


# ---- Megatron-LM, megatron/training/training.py num_floating_point_operations ----------------------------------

def megatron_before(c, s, batch=1) -> Fraction:
    """NVIDIA/Megatron-LM at fdfcef87 (2025-03-03), the parent of 8873b55d: per global batch, divided by its
    tokens.  12 = 3 (forward, wgrad, dgrad) x 2 (GEMMs stacked twice) x 2 (FLOPs per MAC)."""
    d, n, a, g, q = c["d"], c["n"], c["h"], c["kv"], c["h"] * c["q"]
    m = Fraction(3, 2) if c["gated"] else 1
    total = 12 * batch * s * n * d * d * ((1 + Fraction(g, a) + Fraction(s, d)) * Fraction(q, d)
                                          + Fraction(c["f"], d) * m + Fraction(padded(c["V"]), 2 * n * d))
    return total / (batch * s)


def megatron_after(c, s, batch=1) -> Fraction:
    """8873b55d (2025-03-06, "Fixes in number of floating-point operation estimates for MoE and attention
    layer"): the same but the attention term's s/h halved ("only half of the attention matrix is non-zero")."""
    d, n, a, g, q = c["d"], c["n"], c["h"], c["kv"], c["h"] * c["q"]
    m = Fraction(3, 2) if c["gated"] else 1
    dense_layers = n   # (f * dense layers + (moe f * topk + shared f) * moe layers) * m / (n d): no MoE layers
    total = 12 * batch * s * n * d * d * ((1 + Fraction(g, a) + Fraction(s, d) / 2) * Fraction(q, d)
                                          + Fraction(c["f"] * dense_layers, 1) * m / (n * d)
                                          + Fraction(padded(c["V"]), 2 * n * d))
    return total / (batch * s)


def megatron_head(c, s, batch=1) -> Fraction:
    """d98e8a64 (2026-08-22), transformer_flops() of a dense model without MTP or linear attention: token-linear
    terms per real token, the core attention per squared sequence length (BSHD: batch x s^2)."""
    d, n, q, kv = c["d"], c["n"], c["h"] * c["q"], c["kv"] * c["q"]
    fb, fma, ffn = 3, 2, (3 if c["gated"] else 2)
    attn = fb * fma * (d * (q + kv + kv) + q * d)
    core = Fraction(fb * fma * q, 2) * 2
    tokens, squares = batch * s, batch * s * s
    total = tokens * (fb * fma * d * (c["f"] * ffn) * n + attn * n + fb * fma * d * padded(c["V"])) + squares * core * n
    return Fraction(total, tokens)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_megatron_before_and_after_march_2025(counts, name):
    step, _, L, _, _, _ = counts[name]
    c = CONFIG[name]
    head_padding = 6 * c["d"] * (padded(c["V"]) - c["V"])   # Megatron's LM head has V_pad rows: 0 for 32000, 47 more
    for s in LENGTHS[name]:
        exact = per_token(step, L, s)
        assert exact - megatron_before(c, s) == -head_padding, s
        # after 8873b55d: QK^T and AV over the causal half, 6 n (h q) s per token instead of 12 n (h q) s
        assert exact - megatron_after(c, s) == 6 * c["n"] * c["h"] * c["q"] * s - head_padding, s
        assert megatron_head(c, s) == megatron_after(c, s), s   # unchanged in substance to 2026-08
        # torch-causal counts the forward's triangle, L(L+1)/2 pairs (2 l q (L + 1) a token), and the backward in
        # full (8 l q L); Megatron halves all three passes (6 l q L)
        causal = per_token(counts[name][5], L, s)
        lq = c["n"] * c["h"] * c["q"]
        assert causal - megatron_after(c, s) == lq * (4 * s + 2) - head_padding, s
    if name == "llama":
        after = megatron_after(c, 2048)
        assert after == 41253076992 and per_token(step, L, 2048) == 42863689728
        assert round(after / 42863689728, 3) == Fraction(962, 1000)   # the ratio 0.962


def test_megatron_vocab_padding_term_at_a_batch(counts):
    # a global batch of B sequences of s tokens: Megatron's padded head adds 6 B s d (V_pad - V), GPT-2's 47 rows
    step, _, L, _, _, _ = counts["gpt2"]
    c, B, s = GPT2_SMALL, 8, 1024
    exact_batch = per_token(step, L, s) * B * s
    assert megatron_before(c, s, B) * B * s - exact_batch == 6 * B * s * c["d"] * (padded(c["V"]) - c["V"])
    assert padded(c["V"]) - c["V"] == 47


# ---- nanoGPT, model.py GPT.estimate_mfu ------------------------------------------------------------------------

def nanogpt(c, n_params, T) -> int:
    """karpathy/nanoGPT model.py, last changed at f08abb45 (2023-06-14; unchanged at 3adf61e1, 2025-11-12):
    flops_per_token = 6*N + 12*L*H*Q*T, N = get_num_params() (every parameter but the position table wpe)."""
    return 6 * n_params + 12 * c["n"] * c["h"] * c["q"] * T


def test_nanogpt_estimate_mfu(counts):
    step, _, L, _, params, _ = counts["gpt2"]
    n_nanogpt = params - LOOKUP["gpt2"]          # get_num_params(non_embedding=True): less wpe, the tied wte kept
    for T in LENGTHS["gpt2"]:
        # nanoGPT's N holds the 121,344 norm weights and biases, which no matmul multiplies
        assert per_token(step, L, T) - nanogpt(GPT2_SMALL, n_nanogpt, T) == -6 * VECTORS["gpt2"] == -728064
        # with N the matmul weights (the head included) the identity is exact
        assert per_token(step, L, T) == nanogpt(GPT2_SMALL, MATMUL["gpt2"], T)


# ---- nanochat, nanochat/gpt.py estimate_flops / estimate_decode_flops / estimate_prefill_flops -----------------

def nanochat_train(c, n_matmul, t, windows=None) -> int:
    """karpathy/nanochat at 92d63d4e (2026-07-03): 6 * num_matmul_params() + sum over layers of 12*h*q*min(window, t)
    (num_matmul_params: every Linear weight, the untied lm_head included)."""
    windows = windows or [t] * c["n"]
    return 6 * n_matmul + sum(12 * c["h"] * c["q"] * min(w, t) for w in windows)


def nanochat_decode(c, n_matmul, context_len) -> int:
    return 2 * n_matmul + sum(4 * c["h"] * c["q"] * min(context_len, w) for w in [10**9] * c["n"])


def nanochat_prefill(c, n_matmul, num_tokens) -> int:
    attn = 0
    for window in [10**9] * c["n"]:
        w = min(window, num_tokens)
        attn += 4 * c["h"] * c["q"] * (w * (w + 1) // 2 + (num_tokens - w) * w)
    return 2 * n_matmul * num_tokens + attn


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_nanochat_training_is_exact(counts, name):
    step, _, L, _, _, _ = counts[name]
    for t in LENGTHS[name]:
        assert per_token(step, L, t) == nanochat_train(CONFIG[name], MATMUL[name], t)   # difference: 0


def test_nanochat_decode_and_prefill():
    c, n_mm = GPT2_SMALL, MATMUL["gpt2"]
    from symcost.derive import derive_decode

    mc = derive_decode("hf:gpt2:causal-lm", "1x1", past="T")["step"]
    (T,) = mc.symbols
    flops = mc.total("torch")["flops"]
    for cached in (5, 100, 1023):
        # a step with T cached tokens attends to T + 1 keys (its own included): nanochat's context_len = T + 1
        assert int(flops.subs(T, cached)) == nanochat_decode(c, n_mm, cached + 1)
        assert int(flops.subs(T, cached)) - nanochat_decode(c, n_mm, cached) == 4 * c["n"] * c["h"] * c["q"]
    prefill = symcost.model("hf:gpt2:causal-lm", "1xP")
    (P,) = prefill.symbols
    for p in (7, 64, 1024):
        # nanochat counts the causal triangle P(P+1)/2: torch-causal exactly; torch counts the full square
        assert int(prefill.total("torch-causal")["flops"].subs(P, p)) == nanochat_prefill(c, n_mm, p)
        assert int(prefill.total("torch")["flops"].subs(P, p)) - nanochat_prefill(c, n_mm, p) == \
            2 * c["n"] * c["h"] * c["q"] * p * (p - 1)


# ---- torchtitan, torchtitan/models/utils.py get_dense_model_nparams_and_flops -----------------------------------

def torchtitan(c, nparams, embedding, seq_len, tied=False) -> int:
    """pytorch/torchtitan utils.py last changed at 73aed7f6 (2026-08-20; HEAD b5bcd76c, 2026-08-21):
    6 * (nparams - embedding unless tied) + 6 * n_layers * n_heads * head_dims * seq_len, head_dims = 2 * q for
    llama3 (qk and v head dimensions summed)."""
    matmul = nparams if tied else nparams - embedding
    return 6 * matmul + 6 * c["n"] * c["h"] * (2 * c["q"]) * seq_len


def test_torchtitan_dense_flops(counts):
    step, _, L, _, params, _ = counts["llama"]
    for s in LENGTHS["llama"]:
        # torchtitan keeps the 65 x 4096 RMSNorm weights in its matmul count
        assert per_token(step, L, s) - torchtitan(LLAMA2_7B, params, LOOKUP["llama"], s) == -6 * VECTORS["llama"] \
            == -1597440


# ---- Kaplan et al. 2020, PaLM 2022, Chinchilla 2022 --------------------------------------------------------------

def test_kaplan_c_forward(counts):
    """arXiv:2001.08361v1 (2020-01-23), Table 1: C_forward = 2N + 2 n_layer n_ctx d_attn, N the non-embedding
    parameters (no token or position table, no de-embedding)."""
    for name in ("llama", "gpt2"):
        _, forward, _, L, params, _ = counts[name]
        c = CONFIG[name]
        head = c["d"] * c["V"]
        n_kaplan = params - LOOKUP[name] - head   # GPT-2's head is its token table: out of N either way
        for s in LENGTHS[name]:
            hand = 2 * n_kaplan + 2 * c["n"] * s * c["h"] * c["q"]
            # + the LM head (not in N), + the second attention product, - the 1-D parameters in N
            assert per_token(forward, L, s) - hand == 2 * head + 2 * c["n"] * s * c["h"] * c["q"] - 2 * VECTORS[name]


def test_palm_appendix_b(counts):
    """arXiv:2204.02311v1 (2022-04-05), Appendix B: 6N + 12 L H Q T model FLOPs per token."""
    step, _, L, _, params, _ = counts["gpt2"]
    for T in LENGTHS["gpt2"]:
        palm = 6 * params + 12 * 12 * 12 * 64 * T        # N = every parameter (PaLM shares its embedding too)
        assert per_token(step, L, T) - palm == -6 * (LOOKUP["gpt2"] + VECTORS["gpt2"])
        assert per_token(step, L, T) == 6 * MATMUL["gpt2"] + 12 * 12 * 12 * 64 * T


def chinchilla_forward(c, seq_len) -> int:
    """arXiv:2203.15556v1 (2022-03-29), Appendix F, Table A4: forward FLOPs of one sequence."""
    d, V, f, h, k = c["d"], c["V"], c["f"], c["h"], c["q"]
    embeddings = 2 * seq_len * V * d
    attention = (2 * 3 * seq_len * d * (k * h) + 2 * seq_len * seq_len * (k * h) + 3 * h * seq_len * seq_len
                 + 2 * seq_len * seq_len * (k * h) + 2 * seq_len * (k * h) * d)
    dense = 2 * seq_len * (d * f + d * f)
    logits = 2 * seq_len * d * V
    return embeddings + c["n"] * (attention + dense) + logits


def test_chinchilla_table_a4(counts):
    step, _, L, _, _, _ = counts["gpt2"]      # Table A4 counts a two-matrix MLP: GPT-2's, not Llama's gated one
    c = GPT2_SMALL
    for s in LENGTHS["gpt2"]:
        train = 3 * Fraction(chinchilla_forward(c, s), s)   # "backward pass has twice the FLOPs of the forward"
        # Chinchilla counts the embedding lookup (2 V d) and 3 h s^2 softmax operations a layer: torch counts neither
        assert per_token(step, L, s) - train == -3 * (2 * c["V"] * c["d"] + 3 * c["n"] * c["h"] * s)
