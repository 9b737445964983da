"""Mixture-of-experts models (mixtral, qwen2_moe, …): an experts implementation that traces, and params active per
token.

Which experts a token is routed to depends on the data, which meta tensors do not have.  Hugging Face's default
``grouped_mm`` experts need bfloat16 on real devices and refuse float32 meta tensors, and the ``eager`` loop runs
only the experts that received tokens (``nonzero``: data-dependent).  symcost selects ``batched_mm``, named in the
notes: every (token, expert) pair -- tokens x top_k of them -- runs through the weights of the one expert the router
chose, whichever it is, so its MACs and FLOPs are the same for *every* routing: exact, with no assumption on the
router.  Reads count each expert weight tensor once, whole (symcost's once-per-tensor rule), so they do not depend
on the routing either; a kernel that skips experts no token chose reads less.
"""
from __future__ import annotations


#: the experts implementation symcost selects (see the module docstring)
IMPLEMENTATION = "batched_mm"


def _experts_modules(model) -> list:
    return [m for m in model.modules() if type(m).__name__.endswith("Experts") and hasattr(m, "num_experts")]


def select_experts_implementation(model, counts: bool = True) -> list[str]:
    """Run a Hugging Face MoE model's experts with ``batched_mm`` (in place); notes saying so and giving the params
    total and active per token, or [] for a model without experts.  ``counts=False``: one note without the model's
    numbers (a config formula's, the same at every configuration traced)."""
    experts = _experts_modules(model)
    if not experts:
        return []
    for m in model.modules():
        config = getattr(m, "config", None)
        if config is not None and hasattr(config, "_experts_implementation"):
            config._experts_implementation = IMPLEMENTATION
    if not counts:
        return [f"mixture of experts: experts run with experts_implementation={IMPLEMENTATION!r} (selected by "
                "symcost): tokens x top-k (token, expert) pairs, each through one expert's weights, so MACs and "
                "FLOPs hold for every routing"]
    info = experts_summary(model)
    return [f"mixture of experts: {info['experts']} experts per MoE layer, top {info['top_k']} per token; experts "
            f"run with experts_implementation={IMPLEMENTATION!r} (selected by symcost): tokens x {info['top_k']} "
            "(token, expert) pairs, each through one expert's weights, so MACs and FLOPs hold for every routing; "
            "reads count each expert weight tensor once, whole",
            f"params: {info['params_total']:,} total, {info['params_active']:,} active per token (the "
            f"{info['top_k']} chosen experts' weights in each MoE layer, and everything outside the experts)"]


def experts_summary(model) -> dict:
    """``experts`` and ``top_k`` per MoE layer, ``params_total`` and ``params_active`` (per token: the top-k
    experts' share of each experts module, plus every parameter outside the experts)."""
    experts = _experts_modules(model)
    total = sum(p.numel() for p in model.parameters())
    config = model.config.get_text_config(decoder=True) if hasattr(model, "config") else None
    inactive = 0
    counts, ks = set(), set()
    for m in experts:
        e = int(m.num_experts)
        k = int(getattr(m, "top_k", None) or getattr(config, "num_experts_per_tok"))
        counts.add(e)
        ks.add(k)
        n = sum(p.numel() for p in m.parameters())
        if n % e:
            raise ValueError(f"{type(m).__name__}: {n} parameters do not split over {e} experts")
        inactive += n // e * (e - k)
    return {"experts": "/".join(map(str, sorted(counts))), "top_k": "/".join(map(str, sorted(ks))),
            "params_total": total, "params_active": total - inactive}
