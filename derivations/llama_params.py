"""Llama's parameter count in its hyperparameters (d, n, f, V, h, k), derived by symcost, beside Kaplan's 12·n·d²."""
from __future__ import annotations

import sympy

from ._doc import Doc, equal, fixed, num, same, tex

TITLE = "Llama's parameters in d, n, f, V, h, k, next to Kaplan's N ≈ 12·n·d²"

FIELDS = {"hidden_size": "d", "num_hidden_layers": "n", "intermediate_size": "f", "vocab_size": "V",
          "num_attention_heads": "h", "num_key_value_heads": "k"}

#: published grouped-query configurations (h >= 2k), entered by hand from each model's config.json, with the
#: published parameter count (LM head included)
MODELS = {
    "Llama-2-70B": ({"hidden_size": 8192, "num_hidden_layers": 80, "intermediate_size": 28672, "vocab_size": 32000,
                     "num_attention_heads": 64, "num_key_value_heads": 8}, 68_976_648_192),
    "Llama-3-8B": ({"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336, "vocab_size": 128256,
                    "num_attention_heads": 32, "num_key_value_heads": 8}, 8_030_261_248),
    "Llama-3-70B": ({"hidden_size": 8192, "num_hidden_layers": 80, "intermediate_size": 28672, "vocab_size": 128256,
                     "num_attention_heads": 64, "num_key_value_heads": 8}, 70_553_706_496),
}


def _numel(config: dict) -> int:
    """sum(p.numel()) of the model with its LM head, built on meta from the configuration (never downloaded)."""
    import torch
    import transformers

    cfg = transformers.AutoConfig.for_model("llama", **config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def derive() -> str:
    from symcost.hyper import derive_config

    # params do not depend on the sequence length: a concrete one (8 tokens) keeps each trace a single recording
    cc = derive_config("hf:llama", "1x8", FIELDS, use_cache=True)  # code-keyed: regenerations reuse it
    s = cc.config_symbols
    d, n, f, V, h, k = (s[field] for field in FIELDS)
    params = cc.total("torch")["params"]
    # by hand, per layer: q_proj and o_proj d x d; k_proj and v_proj d x (k d/h) (k key/value heads of d/h);
    # gate, up and down d x f; two RMSNorm weights d each.  Once: the token table V x d, the final norm d.
    same(params, V * d + n * (2 * d**2 + 2 * d**2 * k / h + 3 * d * f + 2 * d) + d, "params by hand")
    head = V * d                                   # lm_head (untied in Llama), not in AutoModel
    kaplan = 12 * n * d**2
    diff = sympy.expand(params + head - kaplan)
    attention = n * (2 * d**2 * k / h - 2 * d**2)  # GQA: k/v projections k/h of Kaplan's d x d each
    mlp = n * (3 * d * f - 8 * d**2)               # gated (SwiGLU): three d x f matrices, not two d x 4d
    norms = 2 * d * n + d                          # two RMSNorms per layer, one final
    embeddings = 2 * V * d                         # token table and LM head
    same(diff, attention + mlp + norms + embeddings, "exact - Kaplan")
    doc = Doc(TITLE, "Kaplan et al. 2020 (*Scaling Laws for Neural Language Models*, section 2.1) count "
                     "$N \\approx 12\\, n_\\text{layer} d_\\text{model}^2$ parameters: attention $4d^2$ per layer "
                     "(Q, K, V, O, each $d \\times d$) and an MLP of $8d^2$ ($d \\times 4d$ and back), embeddings, "
                     "biases and norms left out. Below, symcost derives Llama's exact count as a formula in its "
                     "configuration fields from the model's code (`symcost model hf:llama --input 1x8 --config "
                     + ",".join(f"{k}={v}" for k, v in FIELDS.items()) + "`: traced at "
                     f"{cc.fit['traces']} small configurations on meta tensors, fitted exactly and verified at "
                     f"{len(cc.fit['verified_at'])} more), then writes the difference from Kaplan's as a formula.")
    doc.h2("1. The derived formula")
    doc.p("`AutoModel` (no LM head), valid where " + "; ".join(cc.condition_texts()) + ":")
    doc.math(f"P_\\text{{AutoModel}} = {tex(params)}",
             f"P = P_\\text{{AutoModel}} + {tex(head)} = {tex(sympy.expand(params + head))}")
    doc.p("The second line adds the LM head ($V \\times d$, not tied to the token table in Llama), which "
          "published counts include.")
    doc.h2("2. The exact difference from Kaplan's 12·n·d²")
    doc.math(f"P - 12 n d^2 = {tex(diff)}")
    doc.bullets([
        (f"${tex(attention)}$: grouped-query attention. K and V have $k$ heads of $d/h$, so they are "
         "$d \\times kd/h$, not $d \\times d$ (0 when $k = h$);"),
        (f"${tex(mlp)}$: the gated MLP (SwiGLU) has three $d \\times f$ matrices where Kaplan's has two "
         "$d \\times 4d$ (0 when $f = 8d/3$);"),
        f"${tex(norms)}$: the RMSNorm weights, two per layer and a final one;",
        f"${tex(embeddings)}$: the token table and the LM head, which Kaplan's $N$ excludes.",
    ])
    doc.h2("3. Published configurations")
    rows = []
    for name, (config, published) in MODELS.items():
        values = {str(s[field]): v for field, v in config.items()}
        exact = cc.evaluate(values, "torch")["params"] + config["vocab_size"] * config["hidden_size"]
        equal(exact, _numel(config), f"{name}: formula vs sum(p.numel())")
        equal(exact, published, f"{name}: formula vs the published count")
        hand = 12 * config["num_hidden_layers"] * config["hidden_size"] ** 2
        rows.append([name, ", ".join(f"{v}={x:,}" for v, x in values.items()), num(exact), num(hand),
                     fixed(exact, hand, 3)])
    doc.p("Each exact count equals `sum(p.numel())` of `AutoModelForCausalLM` built from the configuration on meta "
          "tensors, and the published count. (Llama-2-7B and 13B have $k = h$, where the formula's condition "
          "$h \\geq 2k$ fails: their count is the same polynomial at $k = h$, derived on its own with "
          "`--config …,num_key_value_heads=h`.)")
    doc.table(["model", "configuration", "exact P", "12·n·d²", "P / 12nd²"], rows, "llrrr")
    return str(doc)
