"""Megatron-LM's num_floating_point_operations (GQA, SwiGLU, LM head), against symcost's exact training-step count."""
from __future__ import annotations

import sympy

from ._doc import Doc, equal, mnum, num, same, tex
from ._llm import CONFIGS, LENGTHS, ratio, setup
from ._pins import cite

TITLE = "Megatron-LM's training FLOPs formula, derived exactly"


def padded(vocab: int, multiple: int = 128) -> int:
    """Megatron pads the vocabulary to a multiple of --make-vocab-size-divisible-by (128) times TP (1 here)."""
    return -(-vocab // multiple) * multiple


def megatron(s, L) -> sympy.Expr:
    """Per token (batch 1, seq_length L), as megatron/training/training.py writes it: 12 = 3 (forward, weight
    gradient, input gradient) x 2 (GEMMs stacked twice) x 2 (FLOPs per multiply-accumulate)."""
    r = sympy.Rational
    q_ratio = r(s.heads * s.head_dim, s.d_model)
    gated = r(3, 2) if s.gated else 1
    return sympy.expand(12 * s.n_layer * s.d_model ** 2 * (
        (1 + r(s.kv_heads, s.heads) + L / s.d_model) * q_ratio
        + r(s.d_ff, s.d_model) * gated
        + r(padded(s.vocab), 2 * s.n_layer * s.d_model)))


def megatron_after(s, L) -> sympy.Expr:
    """After 8873b55d (2025-03-06): "Only half of the attention matrix is non-zero and needs to be multiplied with
    V" -- the s/h of the attention term halved; the MLP term rewritten for dense and MoE layers (the same for a
    dense model)."""
    r = sympy.Rational
    q_ratio = r(s.heads * s.head_dim, s.d_model)
    gated = r(3, 2) if s.gated else 1
    return sympy.expand(12 * s.n_layer * s.d_model ** 2 * (
        (1 + r(s.kv_heads, s.heads) + L / s.d_model / 2) * q_ratio
        + r(s.d_ff * s.n_layer, s.n_layer * s.d_model) * gated
        + r(padded(s.vocab), 2 * s.n_layer * s.d_model)))


def derive() -> str:
    doc = Doc(TITLE, "Megatron-LM's `num_floating_point_operations` (Narayanan et al. 2021, appendix) changed in "
                     "March 2025; both versions are derived below. Read from: " + cite("megatron-before") + "; "
                     + cite("megatron-after") + "; " + cite("megatron-padding") + ". Before the change it "
                     "counts a training step as $12 \\cdot B s\\, l h^2 \\left[(1 + g/a + s/h)"
                     "\\,\\frac{q}{h} + \\frac{f}{h} \\cdot m + \\frac{V}{2 l h}\\right]$: $l$ layers of width $h$, "
                     "$a$ heads and $g$ query groups (GQA), query projection width $q$, MLP width $f$, "
                     "$m = 3/2$ for SwiGLU, $V$ the padded vocabulary. symcost derives the exact count from each "
                     "model's code (`torch` convention: `FlopCounterMode` around `loss.backward()`), per token at "
                     "$s = L$, batch 1. Since 8873b55d the attention term's $s/h$ is $s/(2h)$: Megatron counts the "
                     "causal half of $QK^T$ and $AV$, $6 l q s$ per token where FlopCounterMode counts the full "
                     "square, $12 l q s$. Its LM head has the padded vocabulary's rows: "
                     "$V_\\text{pad} = \\lceil V / 128 \\rceil \\cdot 128$ (`--make-vocab-size-divisible-by` 128, "
                     "tensor parallelism 1), $6 B s h (V_\\text{pad} - V)$ FLOPs a step more than the model has.")
    after_rows = []
    rows = []
    for k, name in enumerate(CONFIGS, 1):
        s = setup(name)
        L = s.L
        exact = sympy.expand(s.step / L)
        hand = megatron(s, L)
        diff = sympy.expand(exact - hand)
        # the one difference: Megatron's LM head is the padded vocabulary's, 6 h (V_pad - V) per token
        same(diff, -6 * s.d_model * (padded(s.vocab) - s.vocab), f"{name}: exact - Megatron")
        doc.h2(f"{k}. {name}")
        doc.p(f"$l = {s.n_layer}$, $h = {s.d_model}$, $a = {s.heads}$, $g = {s.kv_heads}$, $q = "
              f"{s.heads * s.head_dim}$, $f = {s.d_ff}$, $m = {'3/2' if s.gated else '1'}$, "
              f"$V = {mnum(s.vocab)}$ padded to ${mnum(padded(s.vocab))}$.")
        doc.math(f"C_\\text{{exact}}(L) = {tex(exact)}", f"C_\\text{{Megatron}}(L) = {tex(hand)}",
                 f"C_\\text{{exact}} - C_\\text{{Megatron}} = {tex(diff)}")
        doc.p("Term by term Megatron's formula is six times the matmul weights ($Q$ and output projection: the "
              "$1$; $K$ and $V$: $g/a$; the MLP's two or three matrices: $f/h \\cdot m$; the LM head: "
              "$V / 2lh$) plus $12 l h s$ for $QK^T$ and $AV$ forward and backward over the full $s \\times s$ "
              "square — exactly what FlopCounterMode counts. Norms, biases, softmax and activations count 0 in "
              "both. "
              + ("The only difference is the padding of the vocabulary: Megatron multiplies by "
                 f"{num(padded(s.vocab) - s.vocab)} LM-head rows that the Hugging Face model does not have."
                 if padded(s.vocab) != s.vocab else "The vocabulary needs no padding: the formulas agree exactly."))
        after = megatron_after(s, L)
        diff_after = sympy.expand(exact - after)
        q = s.heads * s.head_dim
        # the causal half of the attention products, and the padded head: written out by hand
        same(diff_after, 6 * s.n_layer * q * L - 6 * s.d_model * (padded(s.vocab) - s.vocab),
             f"{name}: exact - Megatron after 8873b55d")
        # symcost's megatron convention (half of every causal attention product, forward and backward) against the
        # formula as transcribed: only the padded head is left
        by_convention = sympy.expand(s.step_megatron / L - after)
        same(by_convention, -6 * s.d_model * (padded(s.vocab) - s.vocab), f"{name}: megatron convention - after")
        doc.p("After 8873b55d (2025-03-06):")
        doc.math(f"C_\\text{{Megatron, after}}(L) = {tex(after)}",
                 f"C_\\text{{exact}} - C_\\text{{Megatron, after}} = {tex(diff_after)} "
                 "= 6 l q L - 6 h (V_\\text{pad} - V)",
                 f"C_\\text{{exact, megatron}} - C_\\text{{Megatron, after}} = {tex(by_convention)}")
        for length in LENGTHS[name]:
            e, h = (int(x.subs(L, length)) for x in (exact, hand))
            equal(e * length, int(s.step.subs(L, length)), f"{name} per token at {length}")
            rows.append([name, num(length), num(e), num(h), num(e - h)])
            a = after.subs(L, length)
            equal(a, int(a), f"{name}: Megatron after at {length} is an integer")
            after_rows.append([name, num(length), num(e), num(int(a)), num(e - int(a)), ratio(int(a), e)])
    if "Llama-2-7B" in CONFIGS:  # the number quoted for the change: Llama-2-7B at 2048 tokens
        s = setup("Llama-2-7B")
        equal(megatron_after(s, s.L).subs(s.L, 2048), 41253076992, "Llama-2-7B after 8873b55d at 2048")
    doc.h2(f"{len(CONFIGS) + 1}. Per token, side by side")
    doc.table(["model", "s", "exact (torch)", "Megatron", "difference"], rows, "lrrrr")
    doc.h2(f"{len(CONFIGS) + 2}. After 8873b55d (2025-03-06), per token")
    doc.p("The causal half of the attention products: Llama-2-7B at 2048 tokens is 41,253,076,992 FLOPs per token, "
          "0.962 of the exact (full-square) count. `--convention megatron` counts that way (half of every causal "
          "attention product, forward and backward): symcost's count under it differs from the formula above by "
          "the padded LM head's rows alone, checked for each model above (`C_exact, megatron`); `--convention "
          "torch-causal` counts the exact triangle of the forward products instead.")
    doc.table(["model", "s", "exact (torch)", "Megatron after", "difference", "after / exact"], after_rows, "lrrrrr")
    return str(doc)
