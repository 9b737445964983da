"""Korthikanti et al.'s s·b·h·(34 + 5·a·s/h) activation bytes per layer and "16 bytes per parameter", derived from
symcost's memory formulas (``symcost.memory``) for GPT-2-style blocks."""
from __future__ import annotations

import warnings

import sympy

from ._doc import Doc, equal, fixed, mnum, num, require, same, tex

TITLE = "Korthikanti's activation memory and 16 bytes per parameter, derived from symcost's memory formulas"

s, b, h, a = sympy.symbols("s b h a", positive=True, integer=True)
B, L = sympy.symbols("B L", positive=True, integer=True)

#: Korthikanti et al. 2022, eq. (1): activation bytes per transformer layer, 16-bit activations, 1-byte dropout masks
KORTHIKANTI = s * b * h * (34 + 5 * a * s / h)

#: (n_embd, n_head): two widths to solve for the coefficient of h, a third that checks the fit
FIT = ((32, 4), (64, 4))
CHECK = (48, 6)

#: variant -> (GPT-2 activation_function, training mode): what differs between them is one formula term each
VARIANTS = {
    "train": ("gelu_new", True),          # GPT-2's default: its tanh GELU written as 8 torch ops
    "train-fused": ("gelu_pytorch_tanh", True),   # one GELU kernel: saves only its input
    "eval-fused": ("gelu_pytorch_tanh", False),   # no dropout
}

#: one GPT-2 block (h = 32, a = 4, bf16, eval, gelu_pytorch_tanh) on a real CPU, bytes per B·L beside the eager
#: run's 2·a·L² probabilities: measured with saved_tensors_hooks (tests/test_memory_derivations.py re-measures both)
EAGER_CPU, SDPA_CPU = 1032, 1176

#: sizes the page evaluates at, batch 1: (s, h, a)
SIZES = {"GPT-3 175B": (2048, 12288, 96), "Llama-2-7B sizes": (4096, 4096, 32)}


def gpt2(n_layer: int, n_embd: int, n_head: int, activation: str):
    """A GPT-2 language model (its logits) with eager attention, so the L×L probabilities are what autograd saves."""
    import torch
    import transformers

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids):
            return self.model(ids).logits

    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=100, n_positions=256,
                                  bos_token_id=0, eos_token_id=0, attn_implementation="eager",
                                  activation_function=activation)
    return Logits(transformers.GPT2LMHeadModel(cfg))


def block_saved(n_embd: int, n_head: int, variant: str):
    """symcost's saved activations of the first block (bf16), a formula in B and L: the storages saved while a module
    under ``transformer.h.0`` runs."""
    import symcost

    activation, train = VARIANTS[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = symcost.memory(gpt2(1, n_embd, n_head, activation), "BxL", backward=True, train=train, dtype="bf16",
                             input_dtype="int64")
    parts = [e for k, e in mem.saved_by_module.items() if k.startswith("model.transformer.h.0.")]
    require(bool(parts), "no saved bytes under transformer.h.0")
    return sympy.expand(sympy.Add(*parts).subs({sympy.Symbol("B"): B, sympy.Symbol("L"): L}))


def per_layer(variant: str):
    """The block's saved bytes as s·b·(α·h + β) + γ·a·s²·b, solved from two widths and checked at a third."""
    got = {cfg: block_saved(*cfg, variant) for cfg in (*FIT, CHECK)}
    (h1, a1), (h2, _) = FIT
    lin = [sympy.Poly(got[c], B, L).coeff_monomial(B * L) for c in FIT]
    quad = sympy.Poly(got[FIT[0]], B, L).coeff_monomial(B * L ** 2)
    alpha = sympy.Rational(lin[1] - lin[0], h2 - h1)
    beta = lin[0] - alpha * h1
    gamma = sympy.Rational(quad, a1)
    formula = s * b * (alpha * h + beta) + gamma * a * s ** 2 * b
    for cfg in (*FIT, CHECK):
        same(got[cfg], formula.subs({h: cfg[0], a: cfg[1], s: L, b: B}), f"{variant} at h, a = {cfg}")
    return formula, got


def per_parameter():
    """Mixed-precision Adam's resident bytes on a GPT-2 block stack, and the parameter count by torch."""
    import symcost

    model = gpt2(2, 32, 4, "gelu_new")
    n = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = symcost.memory(model, "BxL", backward=True, dtype="mixed", optimizer="adam", input_dtype="int64")
    parts = {k: int(mem.parts[k]) for k in ("params", "gradients", "optimizer_states", "master_weights")}
    return n, tensors, parts


def sq(formula) -> int:
    """The bytes per element of the L×L tensors: the coefficient of a·s²·b."""
    return int(sympy.Poly(formula, s, b, h, a).coeff_monomial(a * b * s ** 2))


def derive() -> str:
    doc = Doc(TITLE, "Korthikanti et al. 2022 (*Reducing Activation Recomputation in Large Transformer Models*, "
                     "eq. 1) count the activations one GPT-style layer keeps for its backward as "
                     "$sbh(34 + 5as/h)$ bytes: sequence $s$, batch $b$, width $h$, $a$ heads, 16-bit activations, "
                     "dropout masks of 1 byte per element. symcost derives the bytes autograd saves from the model's "
                     "code (`symcost.memory`, the heading `saved_activations`, by module with `--layers`); here for "
                     "Hugging Face's GPT-2 block with eager attention in bf16 at $(h, a)$ = (32, 4), (64, 4) and "
                     "(48, 6). symcost's formulas are in $B = b$ and $L = s$ for one "
                     "configuration: the coefficients of $h$ and $a$ below are read off two configurations and "
                     "checked on a third, then the formula is evaluated at larger sizes — an extrapolation in "
                     "$h$ and $a$ the page states rather than records.")
    forms = {}
    for variant in VARIANTS:
        forms[variant] = per_layer(variant)[0]
    K = KORTHIKANTI
    train, fused, evalf = forms["train"], forms["train-fused"], forms["eval-fused"]
    gelu = sympy.expand(train - fused)
    dropout = sympy.expand(fused - evalf)
    same(gelu, 24 * s * b * h, "gelu_new's extra saved tensors")
    # Korthikanti's dropout bytes: two residual masks (1 byte x sbh each), the attention mask (1 byte x a s^2 b)
    # and the dropped probabilities the value product keeps (2 bytes x a s^2 b)
    korth_dropout = 2 * s * b * h + 3 * a * s ** 2 * b
    mask_dtype = sympy.expand(dropout - korth_dropout)
    same(mask_dtype, 2 * s * b * h + a * s ** 2 * b, "masks in the activations' dtype: one more byte each")
    stats = sympy.expand(evalf - (K - korth_dropout))
    same(stats, 16 * s * b, "LayerNorm statistics: 2 norms x (mean, rstd) x 4 bytes per token")
    same(train, K + gelu + mask_dtype + stats, "the decomposition")

    doc.h2("1. symcost's per-layer formula")
    doc.p("Summed over the modules of `transformer.h.0` (`saved_by_module`), bf16, `--train` (dropout $p = 0.1$), "
          "GPT-2's default GELU (`gelu_new`), and with one GELU kernel (`activation_function=\"gelu_pytorch_tanh\"`), "
          "and in eval mode (no dropout):")
    doc.math(f"M_\\text{{train}} &= {tex(train)}", f"M_\\text{{fused}} &= {tex(fused)}",
             f"M_\\text{{eval}} &= {tex(evalf)}", f"M_\\text{{Korthikanti}} &= {tex(sympy.expand(K))}")
    doc.h2("2. Where they differ, term by term")
    doc.math(f"M_\\text{{train}} - M_\\text{{Korthikanti}} = {tex(gelu)} + {tex(mask_dtype)} + {tex(stats)}")
    doc.bullets([
        (f"${tex(gelu)}$ — **fused kernels**: `gelu_new` is eight torch ops whose backward keeps four $4h$-wide "
         "bf16 tensors, $32sbh$ bytes (the GELU's input and three intermediate products); one GELU kernel saves "
         "its input only, $8sbh$ bytes, as Korthikanti count it;"),
        (f"${tex(mask_dtype)}$ — **dropout masks**: torch's `dropout` off CUDA multiplies by a noise tensor in the "
         "activations' dtype (2 bytes an element); CUDA's fused `native_dropout` keeps a 1-byte bool mask, "
         "Korthikanti's assumption. In eval mode the three masks and the dropped probabilities go: "
         f"${tex(sympy.expand(dropout))}$ bytes, of which Korthikanti count ${tex(korth_dropout)}$;"),
        (f"${tex(stats)}$ — **LayerNorm statistics**: each norm keeps its mean and reciprocal standard deviation "
         "in float32 for bf16 input (as on CUDA), 8 bytes per token, which the paper omits;"),
        ("**softmax input vs output**: with dropout off, one $L \\times L$ tensor per head is saved, "
         f"${sq(evalf)} a s^2 b$ bytes: the softmax's output (its backward needs only the output), which the "
         "value product reuses; the scores before it (scaled, causally masked) are not kept — as Korthikanti "
         "count;"),
        ("**SDPA / flash attention** (`attn_implementation=\"sdpa\"`) keeps no $L \\times L$ tensor: the flash "
         "kernel saves its output and a float32 `logsumexp` per query and head, $4asb$ bytes, in place of the "
         f"$5as^2b$ (Korthikanti) or ${sq(train)} a s^2 b$ (here) of probabilities, masks and dropped "
         "probabilities. symcost records SDPA's math path, so this term is the kernel's, not derived here; on a "
         f"CPU, torch's flash kernel runs for real, and at $h = 32$, $a = 4$ one block saves {SDPA_CPU}·B·L bytes "
         f"(bf16, eval; `saved_tensors_hooks`): no $L \\times L$ term, {SDPA_CPU - EAGER_CPU}·B·L more than eager "
         f"attention's {EAGER_CPU}·B·L on the same CPU, of which $4a = 16$ the `logsumexp` and $128 = 4h$ two "
         "more $h$-wide bf16 tensors per token."),
    ])
    doc.h2("3. At GPT-3 175B and Llama-2-7B sizes, one layer, batch 1")
    doc.p("The GPT-2 block at each model's $s$, $h$, $a$ (Llama's own block has a gated MLP and RMSNorm: only the "
          "sizes are Llama-2-7B's). Bytes; the ratio to Korthikanti's value to three decimals.")
    rows = []
    for name, (S, H, A) in SIZES.items():
        at = {s: S, b: 1, h: H, a: A}
        kv = equal(K.subs(at), S * H * 34 + 5 * A * S * S, f"{name}: Korthikanti")
        flash = kv - 5 * A * S * S + 4 * A * S
        for label, e in (("Korthikanti", K), ("symcost, train", train), ("symcost, fused GELU", fused),
                         ("symcost, eval", evalf)):
            v = int(e.subs(at))
            rows.append([name, label, num(v), fixed(v, kv, 3)])
        rows.append([name, "Korthikanti with flash ($4asb$ for $5as^2b$)", num(flash), fixed(flash, kv, 3)])
    doc.table(["sizes", "formula", "bytes per layer", "/ Korthikanti"], rows, "llrr")

    doc.h2("4. 16 bytes per parameter")
    n, tensors, parts = per_parameter()
    total = sum(parts.values())
    equal(parts["params"], 2 * n, "bf16 weights")
    equal(parts["gradients"], 2 * n, "bf16 gradients")
    equal(parts["master_weights"], 4 * n, "fp32 master weights")
    equal(parts["optimizer_states"], 8 * n + 4 * tensors, "two fp32 moments and a step counter per tensor")
    doc.p(f"`symcost memory ... --backward --dtype mixed --optimizer adam` on a two-layer GPT-2 ($h = 32$): "
          f"{num(n)} parameters in {tensors} tensors (`sum(p.numel())`, the tied token table once).")
    doc.table(["heading", "bytes", "per parameter"],
              [[k, num(v), fixed(v, n, 4)] for k, v in parts.items()] + [["total", num(total), fixed(total, n, 4)]],
              "lrr")
    doc.math(f"{mnum(total)} = 16 \\cdot {mnum(n)} + 4 \\cdot {tensors}")
    equal(total, 16 * n + 4 * tensors, "16 bytes per parameter plus the step counters")
    doc.bullets([
        ("2 (bf16 weights) + 2 (bf16 gradients: the parameters' `.grad` take their dtype) + 4 (fp32 master copy) "
         "+ 8 (Adam's two fp32 moments) = 16, exactly the rule;"),
        ("plus `torch.optim.Adam`'s `step`: a 4-byte float32 scalar per parameter tensor, not per parameter — "
         f"{4 * tensors} bytes here, 4 × (number of tensors) in general;"),
        ("a framework that keeps its gradients in fp32 (accumulating them there) holds 4 bytes of gradient "
         "instead of 2: 18 bytes per parameter."),
    ])
    return str(doc)
