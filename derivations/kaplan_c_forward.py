"""Kaplan et al. 2020, Table 1: C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn, against symcost's exact forward count."""
from __future__ import annotations

import sympy

from ._doc import Doc, equal, mnum, num, same, tex
from ._llm import CONFIGS, LENGTHS, ratio, setup
from ._pins import cite

TITLE = "Kaplan et al.'s C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn, derived exactly"


def derive() -> str:
    doc = Doc(TITLE, "Read from: " + cite("kaplan") + ". "
                     "Kaplan et al. 2020 (*Scaling Laws for Neural Language Models*), Table 1, count the forward "
                     "pass per token as $C_\\text{forward} \\approx 2N + 2 n_\\text{layer} n_\\text{ctx} "
                     "d_\\text{attn}$ with $N$ the non-embedding parameters. Below, symcost derives the exact count "
                     "from each model's own code (`torch` convention: what `FlopCounterMode` reports, 2 per "
                     "multiply-accumulate of every matmul, 0 for everything else), per token at context $L$ "
                     "(forward FLOPs on $1 \\times L$ tokens divided by $L$, LM head included), and writes the hand "
                     "formula's difference as a formula. Models built from their published configurations with "
                     "`AutoModelForCausalLM.from_config` on meta tensors, never downloaded.")
    rows = []
    for k, name in enumerate(CONFIGS, 1):
        s = setup(name)
        L = s.L
        exact = sympy.expand(s.forward / L)
        # N: everything but the lookup-only tables (Llama's token table, GPT-2's position table) and the LM head
        # (GPT-2's is its tied token table)
        n_kaplan = s.all_params - s.embeddings - s.lm_head
        d_attn = s.heads * s.head_dim
        hand = 2 * n_kaplan + 2 * s.n_layer * L * d_attn
        diff = sympy.expand(exact - hand)
        # what the difference is made of, worked out by hand from the architecture:
        head = 2 * s.d_model * s.vocab                      # the LM head, 2 per MAC, not in N
        second_product = 2 * s.n_layer * L * d_attn         # torch counts QK^T and AV, 2·n_layer·L·d_attn each
        vectors = -2 * s.vector_params                      # norm weights and biases: in N, no matmul FLOPs
        same(diff, head + second_product + vectors, f"{name}: exact - Kaplan")
        doc.h2(f"{k}. {name}")
        doc.p(f"$n_\\text{{layer}} = {s.n_layer}$, $d_\\text{{model}} = d_\\text{{attn}} = {d_attn}$, "
              f"vocabulary {num(s.vocab)}; $N$ = all {num(s.all_params)} parameters less the token table"
              + (" (tied to the LM head)" if s.name.startswith("GPT") else " and the LM head")
              + (" and the position table" if s.position_table else "") + f": $N = {num(n_kaplan)}$.")
        doc.math(f"C_\\text{{exact}}(L) = {tex(exact)}", f"C_\\text{{Kaplan}}(L) = {tex(hand)}",
                 f"C_\\text{{exact}} - C_\\text{{Kaplan}} = {tex(diff)}")
        doc.bullets([
            (f"$+{mnum(head)}$: the LM head ($2 \\cdot {s.d_model} \\cdot {num(s.vocab)}$), which Table 1 lists as "
            "\"De-embed\" but leaves out of $C_\\text{forward}$;"),
            (f"$+{tex(second_product)}$: the attention products. Table 1's one row ($2 n_\\text{{layer}} n_\\text{{ctx}} "
            f"d_\\text{{attn}}$) covers one of $QK^T$ and $AV$; FlopCounterMode counts both, each over the full "
            "$L \\times L$ square;"),
            (f"${mnum(vectors)}$: the {num(s.vector_params)} norm weights and biases, in $N$ at 2 FLOPs each, which "
            "no matmul multiplies (0 under `torch`)."),
        ])
        for length in LENGTHS[name]:
            e, h = (int(x.subs(L, length)) for x in (exact, hand))
            equal(e * length, int(s.forward.subs(L, length)), f"{name} per token at {length}")
            rows.append([name, num(length), num(e), num(h), ratio(e, h)])
    doc.h2(f"{len(CONFIGS) + 1}. Per token, side by side")
    doc.table(["model", "L", "exact (torch)", "Kaplan", "exact / Kaplan"], rows, "lrrrr")
    return str(doc)
