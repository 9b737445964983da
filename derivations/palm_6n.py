"""PaLM / nanoGPT model FLOPs per token, 6N + 12·n_layer·H·Q·T, against symcost's exact training-step count."""
from __future__ import annotations

import sympy

from ._doc import Doc, equal, mnum, num, same, tex
from ._llm import CONFIGS, LENGTHS, ratio, setup
from ._pins import cite

TITLE = "PaLM's and nanoGPT's 6N + 12·L·H·Q·T, derived exactly"


def derive() -> str:
    doc = Doc(TITLE, "Read from: " + cite("palm") + "; " + cite("nanogpt") + ". "
                     "PaLM (Chowdhery et al. 2022, Appendix B) and nanoGPT's `estimate_mfu` count one training step "
                     "(forward and backward, no optimizer) as $6N + 12 \\cdot n_\\text{layer} \\cdot H \\cdot Q "
                     "\\cdot T$ FLOPs per token: $N$ parameters, $H$ heads of width $Q$, context $T$. symcost derives "
                     "the exact count from each model's code (`torch` convention, what `FlopCounterMode` reports "
                     "around `loss.backward()`), per token: the step's FLOPs on $1 \\times L$ tokens divided by "
                     "$L = T$. The hand formula is exact when $N$ is the weights that matmuls multiply; what users "
                     "plug in for $N$ differs by the terms below.")
    rows = []
    for k, name in enumerate(CONFIGS, 1):
        s = setup(name)
        L = s.L
        exact = sympy.expand(s.step / L)
        attention = 12 * s.n_layer * s.heads * s.head_dim * L
        same(exact, 6 * s.matmul_weights + attention, f"{name}: exact = 6 * matmul weights + 12 L H Q T")
        nanogpt = s.all_params - s.position_table     # nanoGPT's get_num_params(non_embedding=True)
        hand = 6 * nanogpt + attention
        diff = sympy.expand(exact - hand)
        # nanoGPT's N less the matmul weights: the lookup-only token table (Llama, untied) and 1-D params
        same(diff, -6 * (s.embeddings - s.position_table + s.vector_params), f"{name}: exact - nanoGPT")
        doc.h2(f"{k}. {name}")
        doc.p(f"$n_\\text{{layer}} = {s.n_layer}$, $H = {s.heads}$, $Q = {s.head_dim}$. Weights that matmuls "
              f"multiply (every Linear / Conv1D weight, the LM head once): ${mnum(s.matmul_weights)}$; all "
              f"parameters: ${mnum(s.all_params)}$; nanoGPT's $N$ (all less the position table): ${mnum(nanogpt)}$.")
        doc.math(f"C_\\text{{exact}}(L) = {tex(exact)} = 6 \\cdot {mnum(s.matmul_weights)} + {tex(attention)}",
                 f"C_\\text{{nanoGPT}}(L) = {tex(hand)}",
                 f"C_\\text{{exact}} - C_\\text{{nanoGPT}} = {tex(diff)}")
        doc.bullets([
            ("forward $2N$, backward $4N$ (the gradient of the input and of the weight): every matmul weight "
            "three times, 2 FLOPs per multiply-accumulate;"),
            ("attention: $QK^T$ and $AV$, $4 n_\\text{layer} H Q T$ forward and $8$ backward, over the full "
            "$T \\times T$ square (a causal kernel does $T(T+1)/2$ of it: `--convention torch-causal`);"),
            f"the difference, ${tex(diff)}$: six times what is in nanoGPT's $N$ but no matmul multiplies — "
            + (f"the {num(s.embeddings)} entries of the untied token table and " if not s.position_table else "")
            + f"the {num(s.vector_params)} norm weights and biases.",
        ])
        for length in LENGTHS[name]:
            e, h = (int(x.subs(L, length)) for x in (exact, hand))
            equal(e * length, int(s.step.subs(L, length)), f"{name} per token at {length}")
            rows.append([name, num(length), num(e), num(h), ratio(e, h)])
    doc.h2(f"{len(CONFIGS) + 1}. Per token, side by side")
    doc.table(["model", "T", "exact (torch)", "6N + 12·L·H·Q·T (nanoGPT's N)", "exact / hand"], rows, "lrrrr")
    return str(doc)
