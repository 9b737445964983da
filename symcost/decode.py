"""One decode step with a KV cache of T tokens, and a generation (prefill + n steps) summed in closed form.

``symcost model hf:llama --input 1x1 --past T`` costs one forward call of a Hugging Face decoder on the new tokens'
ids with ``past_key_values`` holding T cached tokens per layer (a ``DynamicCache``, as ``generate`` builds): a
formula in T, derived like any other (recorded at two sizes of T, shapes checked against both).  The cache's reads
are counted where the model reads it (the attention matmuls, and the concatenation by which ``DynamicCache`` grows).

``--generate n`` on ``--input BxP``: the prefill of P tokens (with the cache being built) plus the decode steps at
T = P, …, P + n - 1, summed with ``sympy.summation`` of the decode formula: a closed form in P and n.
"""
from __future__ import annotations

import sympy

from .errors import UsageError


def decode_step_module(model):
    """A module whose input ``x`` of shape (B, L, T) (values unused) runs ``model`` on ids of shape (B, L) with a
    cache of T tokens: T travels as a tensor size, so the trace derives the cost in it."""
    import torch
    from transformers import DynamicCache

    with torch.no_grad():  # the cache's per-layer shapes, from a one-token call outside any recording
        probe = model(torch.zeros(1, 1, dtype=torch.long, device="meta"), use_cache=True).past_key_values
    if probe is None or not getattr(probe, "layers", None):
        raise UsageError("the model returns no KV cache (use_cache=True): it is not a decoder symcost can step")
    shapes = [(tuple(layer.keys.shape[1:2]) + tuple(layer.keys.shape[3:]),
               tuple(layer.values.shape[1:2]) + tuple(layer.values.shape[3:]), layer.keys.dtype)
              for layer in probe.layers]

    class DecodeStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            batch, cached = x.shape[0], x.shape[2]
            cache = DynamicCache(config=model.config)
            for layer, (ks, vs, dtype) in zip(cache.layers, shapes):  # filled in place: not part of the step
                k = torch.zeros(batch, ks[0], cached, *ks[1:], dtype=dtype, device=x.device)
                v = torch.zeros(batch, vs[0], cached, *vs[1:], dtype=dtype, device=x.device)
                layer.lazy_initialization(k, v)
                layer.keys, layer.values = k, v
            return self.model(x[:, :, 0], past_key_values=cache, use_cache=True)

    return DecodeStep()


def tidy(e: sympy.Expr) -> sympy.Expr:
    """A total as a polynomial where it is one: per-row sizes such as (32*T + 32)/(T + 1) cancel exactly."""
    if e.has(sympy.floor, sympy.ceiling):
        return e
    return sympy.expand(sympy.cancel(e))


def _symbol_or_int(v, what: str):
    from .parse import parse_dim

    d = parse_dim(str(v).strip(), True)
    if isinstance(d, int) and d < 1:
        raise UsageError(f"{what} must be a positive integer or a symbol name, got {v}")
    return d


def decode_step(model, batch, new_tokens, past, *, target: str = ""):
    """The ``ModelCost`` of one call on (batch, new_tokens) ids with ``past`` cached tokens (ints or symbols)."""
    from .tracing import trace

    if not hasattr(model, "config"):
        raise UsageError("--past and --generate need a Hugging Face decoder model (hf:MODEL_TYPE)")
    past = _symbol_or_int(past, "--past")
    try:
        step = decode_step_module(model)
    except (AttributeError, TypeError, ValueError, RuntimeError) as e:  # RuntimeError: .item() on meta
        raise UsageError(f"--past: cannot build a KV cache for this model: {type(e).__name__}: {e}") from None
    return trace(step, (batch, new_tokens, past), target=target, input_dtype="int64")


def generation(model, batch, prompt, steps, convention: str = "flops", *, target: str = "") -> dict:
    """Prefill ``prompt`` tokens, then ``steps`` decode steps of one token: ``{"prefill", "decode", "total"}`` (each
    metric -> expression) and the derivations.  The decode part is the decode-step formula summed over
    T = prompt … prompt + steps - 1 in closed form; params and buffers are the model's, never summed."""
    from .tracing import trace

    steps = _symbol_or_int(steps, "--generate")
    prompt = _symbol_or_int(prompt, "the prompt length")
    prefill = trace(model, (batch, prompt), target=target, input_dtype="int64")
    step = decode_step(model, batch, 1, "T_cached", target=target)
    t = next(s for s in step.symbols if str(s) == "T_cached")
    first = sympy.sympify(prompt)
    last = first + sympy.sympify(steps) - 1
    pre = prefill.total(convention)
    per_step = {m: tidy(e) for m, e in step.total(convention).items()}
    decode = {}
    for m, e in per_step.items():
        if m in ("params", "buffers"):
            decode[m] = sympy.Integer(0)
        else:
            decode[m] = sympy.factor_terms(sympy.expand(sympy.summation(sympy.expand(e), (t, first, last))))
    pre = {m: tidy(e) for m, e in pre.items()}
    total = {m: sympy.expand(pre[m] + decode[m]) for m in pre}
    return {"prefill": pre, "decode": decode, "total": total, "step": per_step, "derivations": (prefill, step),
            "step_symbol": t}
