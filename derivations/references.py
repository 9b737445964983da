"""Every reference FLOPs formula, pinned to a commit (or paper version) and a date, with its exact difference from
symcost's count as a formula, at Llama-2-7B and GPT-2 small."""
from __future__ import annotations

import sympy

from ._doc import Doc, mnum, same, tex
from ._llm import CONFIGS, setup
from ._pins import PINS
from .megatron_flops import megatron, megatron_after, padded

TITLE = "Reference FLOPs formulas, pinned, and their exact differences"


def _pin(doc: Doc, key: str) -> None:
    what, where, when = PINS[key]
    doc.p(f"*{what}* — {where}, {when}.")


def derive() -> str:
    doc = Doc(TITLE, "Each formula below is transcribed from its source at the commit or paper version named, and "
                     "compared with symcost's exact count of the same model (`torch` convention: what "
                     "`FlopCounterMode` reports, 2 per multiply-accumulate of every matmul, the LM head included; "
                     "models built with `AutoModelForCausalLM` from their published configurations). $C$ is FLOPs "
                     "per token of one training step (forward and backward, no optimizer) on a $1 \\times L$ "
                     "sequence unless said otherwise; $l$ layers, width $d$, $H$ heads of width $Q$ ($q = HQ$), "
                     "vocabulary $V$. Each difference is derived with sympy and checked against the term written "
                     "by hand from the architecture; `tests/test_references.py` evaluates every transcription "
                     "again, independently, at the published configurations.")
    models = {name: setup(name) for name in CONFIGS}
    sections = []

    def section(title: str, key: str, body) -> None:
        sections.append((title, key, body))

    def megatron_body(s, L, exact):
        before, after = megatron(s, L), megatron_after(s, L)
        pad = 6 * s.d_model * (padded(s.vocab) - s.vocab)
        q = s.heads * s.head_dim
        d1, d2 = same(sympy.expand(exact - before), -pad, "Megatron before"), \
            same(sympy.expand(exact - after), 6 * s.n_layer * q * L - pad, "Megatron after")
        return [f"C - C_\\text{{before}} = {tex(d1)} = -6 d (V_\\text{{pad}} - V)",
                f"C - C_\\text{{after}} = {tex(d2)} = 6 l q L - 6 d (V_\\text{{pad}} - V)"]

    def nanogpt_body(s, L, exact):
        n = s.all_params - s.position_table     # get_num_params(): every parameter but wpe
        hand = 6 * n + 12 * s.n_layer * s.heads * s.head_dim * L
        d = same(sympy.expand(exact - hand), -6 * (s.embeddings - s.position_table + s.vector_params), "nanoGPT")
        return [f"C_\\text{{nanoGPT}} = 6 \\cdot {mnum(n)} + {tex(12 * s.n_layer * s.heads * s.head_dim * L)}",
                f"C - C_\\text{{nanoGPT}} = {tex(d)} = -6\\,(\\text{{lookup-only tables}} + \\text{{1-D parameters}})"]

    def nanochat_body(s, L, exact):
        hand = 6 * s.matmul_weights + 12 * s.n_layer * s.heads * s.head_dim * L   # full windows: min(window, t) = t
        same(sympy.expand(exact - hand), 0, "nanochat")
        attention = 12 * s.n_layer * s.heads * s.head_dim * L
        return [f"C_\\text{{nanochat}} = 6 \\cdot {mnum(s.matmul_weights)} + {tex(attention)}",
                "C - C_\\text{nanochat} = 0"]

    def torchtitan_body(s, L, exact):
        if s.position_table:       # torchtitan's dense formula is for its own Llama models
            return None
        hand = 6 * (s.all_params - s.embeddings) + 6 * s.n_layer * s.heads * (2 * s.head_dim) * L
        d = same(sympy.expand(exact - hand), -6 * s.vector_params, "torchtitan")
        return [f"C_\\text{{torchtitan}} = 6\\,(N - N_\\text{{embedding}}) + 6 l H (2Q) L = {tex(hand)}",
                f"C - C_\\text{{torchtitan}} = {tex(d)} = -6 \\cdot \\text{{norm weights}}"]

    def palm_body(s, L, exact):
        hand = 6 * s.all_params + 12 * s.n_layer * s.heads * s.head_dim * L
        d = same(sympy.expand(exact - hand), -6 * (s.embeddings + s.vector_params), "PaLM, N = every parameter")
        return [f"C_\\text{{PaLM}} = 6N + 12 l H Q L = {tex(hand)}",
                f"C - C_\\text{{PaLM}} = {tex(d)} = -6\\,(\\text{{lookup-only tables}} + \\text{{1-D parameters}})",
                "C = 6 N_\\text{matmul} + 12 l H Q L \\text{ exactly}"]

    def kaplan_body(s, L, exact_step):
        forward = sympy.expand(s.forward / L)
        n = s.all_params - s.embeddings - s.lm_head
        hand = 2 * n + 2 * s.n_layer * L * s.heads * s.head_dim
        d = same(sympy.expand(forward - hand), 2 * s.d_model * s.vocab + 2 * s.n_layer * L * s.heads * s.head_dim
                 - 2 * s.vector_params, "Kaplan")
        return [f"C_\\text{{forward}} - C_\\text{{Kaplan}} = {tex(d)} = 2 d V + 2 l L q - 2 \\cdot "
                "\\text{1-D parameters} \\quad\\text{(forward only)}"]

    def chinchilla_body(s, L, exact):
        if s.gated:               # Table A4 counts a two-matrix MLP
            return None
        d, V, f, h, k = s.d_model, s.vocab, s.d_ff, s.heads, s.head_dim
        fwd = (2 * L * V * d + s.n_layer * (2 * 3 * L * d * (k * h) + 2 * L * L * (k * h) + 3 * h * L * L
                                            + 2 * L * L * (k * h) + 2 * L * (k * h) * d + 2 * L * (d * f + d * f))
               + 2 * L * d * V)
        hand = sympy.expand(3 * fwd / L)
        diff = same(sympy.expand(exact - hand), -3 * (2 * V * d + 3 * s.n_layer * h * L), "Chinchilla")
        return [f"C_\\text{{Chinchilla}} = 3\\,C_\\text{{forward}} / L = {tex(hand)}",
                f"C - C_\\text{{Chinchilla}} = {tex(diff)} = -3\\,(2 V d + 3 l H L)"]

    section("Megatron-LM, before and after March 2025", "megatron-after", megatron_body)
    section("nanoGPT `estimate_mfu`: 6N + 12·l·H·Q·T", "nanogpt", nanogpt_body)
    section("nanochat `estimate_flops`: exact", "nanochat", nanochat_body)
    section("torchtitan", "torchtitan", torchtitan_body)
    section("Kaplan et al. 2020", "kaplan", kaplan_body)
    section("PaLM, Appendix B", "palm", palm_body)
    section("Chinchilla, Table A4", "chinchilla", chinchilla_body)
    notes = {
        "megatron-after": "Before 8873b55d (at fdfcef87, 2025-03-03) the attention term counts the full "
                          "$s \\times s$ square, after it the causal half; the LM head has $V_\\text{pad} = "
                          "\\lceil V/128 \\rceil \\cdot 128$ rows, $6 B L d (V_\\text{pad} - V)$ FLOPs a step more "
                          "than the model does. Derivation: [megatron_flops.md](megatron_flops.md).",
        "nanogpt": "$N$ = `get_num_params()`: every parameter but the position table (the token table stays: tied "
                   "to the LM head). Exact when $N$ is the matmul weights. Derivation: [palm_6n.md](palm_6n.md).",
        "nanochat": "`6 * num_matmul_params() + Σ 12·h·q·min(window, t)`: with full windows exactly symcost's "
                    "count. Its decode step, `2·N_matmul + Σ 4·h·q·min(context_len, window)`, equals symcost's "
                    "`--past T` step with `context_len` = T + 1 (the new token attends to itself; with T: 4·l·H·Q "
                    "less); its prefill, `2·N_matmul·P + Σ 4·h·q·P(P+1)/2`, equals the forward pass under "
                    "`--convention torch-causal` and is 2·l·H·Q·P(P−1) below `torch`'s full square.",
        "torchtitan": "`6 * (nparams - embedding) + 6 * n_layers * n_heads * head_dims * seq_len`, head_dims = 2Q; "
                      "the norm weights stay in its count. (For Llama only: GPT-2 is not a torchtitan model.)",
        "kaplan": "$C_\\text{forward} \\approx 2N + 2 n_\\text{layer} n_\\text{ctx} d_\\text{attn}$, $N$ without "
                  "embeddings and the LM head. Derivation: [kaplan_c_forward.md](kaplan_c_forward.md).",
        "palm": "$6N + 12 L H Q T$ with $N$ every parameter. Derivation: [palm_6n.md](palm_6n.md).",
        "chinchilla": "Forward: embeddings $2 L V d$ + $l$ × (QKV $6 L d\\,kH$, logits $2L^2 kH$, softmax $3 H L^2$, "
                      "softmax @ values $2L^2 kH$, output $2 L kH d$, dense $2L(2 d f)$) + logits $2 L d V$; backward "
                      "twice the forward. (GPT-2 only: Table A4 has a two-matrix MLP.)",
    }
    for k, (title, key, body) in enumerate(sections, 1):
        doc.h2(f"{k}. {title}")
        _pin(doc, key)
        if key == "megatron-after":
            _pin(doc, "megatron-before")
        doc.p(notes[key])
        for name, s in models.items():
            lines = body(s, s.L, sympy.expand(s.step / s.L))
            if lines:
                doc.p(f"{name}:")
                doc.math(*lines)
    return str(doc)
