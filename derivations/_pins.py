"""Where each reference formula was read: a repository file at a commit and its date, or a paper's arXiv version.

The formulas themselves are transcribed in the derivation that uses them and, independently, in
tests/test_references.py, which evaluates each against symcost at Llama-2-7B and GPT-2 small.
"""
from __future__ import annotations

#: key -> (what, where, pinned at)
PINS = {
    "megatron-before": ("Megatron-LM `num_floating_point_operations`",
                        "NVIDIA/Megatron-LM, megatron/training/training.py",
                        "commit fdfcef87 (2025-03-03), the parent of 8873b55d"),
    "megatron-after": ("Megatron-LM `num_floating_point_operations`",
                       "NVIDIA/Megatron-LM, megatron/training/training.py",
                       "commit 8873b55d (2025-03-06, \"Fixes in number of floating-point operation estimates for MoE "
                       "and attention layer\"); the same for a dense model at d98e8a64 (2026-08-22), "
                       "`transformer_flops()`"),
    "megatron-padding": ("Megatron-LM `_vocab_size_with_padding`",
                         "NVIDIA/Megatron-LM, megatron/training/tokenizer/tokenizer.py and arguments.py "
                         "(`--make-vocab-size-divisible-by`, default 128)",
                         "commit fdfcef87 (2025-03-03)"),
    "nanogpt": ("nanoGPT `GPT.estimate_mfu`", "karpathy/nanoGPT, model.py",
                "commit f08abb45 (2023-06-14), unchanged at 3adf61e1 (2025-11-12)"),
    "nanochat": ("nanochat `GPT.estimate_flops`, `estimate_decode_flops`, `estimate_prefill_flops`",
                 "karpathy/nanochat, nanochat/gpt.py", "commit 92d63d4e (2026-07-03)"),
    "torchtitan": ("torchtitan `get_dense_model_nparams_and_flops`", "pytorch/torchtitan, torchtitan/models/utils.py "
                   "(called by torchtitan/models/llama3/model.py with head_dims = 2 q)",
                   "commit 73aed7f6 (2026-08-20), unchanged at b5bcd76c (2026-08-21)"),
    "kaplan": ("Kaplan et al., Scaling Laws for Neural Language Models, Table 1", "arXiv:2001.08361",
               "v1 (2020-01-23)"),
    "palm": ("Chowdhery et al., PaLM, Appendix B (model FLOPs utilization)", "arXiv:2204.02311", "v1 (2022-04-05)"),
    "chinchilla": ("Hoffmann et al., Training Compute-Optimal Large Language Models, Appendix F, Table A4",
                   "arXiv:2203.15556", "v1 (2022-03-29)"),
}


def cite(key: str) -> str:
    what, where, when = PINS[key]
    return f"{what} — {where}, {when}"
