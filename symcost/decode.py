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

from .errors import NeedsTensorValues, SymcostError, UsageError
from .parse import size_value


def decode_step_module(model, past_limit: bool = False):
    """A module whose input ``x`` of shape (B, L, T) (values unused) runs ``model`` on ids of shape (B, L) with a
    cache of T tokens: T travels as a tensor size, so the trace derives the cost in it.

    A sliding-window cache layer (window W) keeps the last W - 1 tokens, so its share of the cost stops growing at
    T = W - 1: it is filled with min(T, W - 1) tokens, as ``generate`` leaves it.  ``past_limit`` (T a symbol):
    refuse T > W - 1 instead, so that one formula in T holds (for T <= W - 1)."""
    import torch
    from transformers import DynamicCache

    from .tracing.record import padding_warning_off

    with torch.no_grad(), padding_warning_off(model):  # the cache's layer shapes: a one-token call, not recorded
        probe = getattr(model(torch.zeros(1, 1, dtype=torch.long, device="meta"), use_cache=True),
                        "past_key_values", None)
    if probe is None or not getattr(probe, "layers", None):
        raise UsageError("the model returns no KV cache (use_cache=True): it is not a decoder symcost can step")
    other = sorted({type(layer).__name__ for layer in probe.layers} - {"DynamicLayer", "DynamicSlidingWindowLayer"})
    if other:  # recurrent or convolution states (Falcon-H1's Mamba layers): a step's cost depends on them too
        raise UsageError(f"the model's cache has layers of kind {', '.join(other)} (states beside keys and values): "
                         "symcost steps key/value caches only")
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
                kept = cached
                if getattr(layer, "is_sliding", False):
                    window = int(layer.sliding_window)
                    if past_limit and cached > window - 1:
                        raise ValueError(f"a sliding-window cache layer (window {window}) keeps {window - 1} tokens: "
                                         f"the step's cost in T changes at T = {window - 1}, one formula holds for "
                                         f"T <= {window - 1} only (give --past a number for a larger cache)")
                    kept = min(cached, window - 1)
                    layer.cumulative_length = cached
                k = torch.zeros(batch, ks[0], kept, *ks[1:], dtype=dtype, device=x.device)
                v = torch.zeros(batch, vs[0], kept, *vs[1:], dtype=dtype, device=x.device)
                layer.lazy_initialization(k, v)
                layer.keys, layer.values = k, v
            return self.model(x[:, :, 0], past_key_values=cache, use_cache=True)

    return DecodeStep()


def sliding_window(model) -> int | None:
    """The smallest sliding window of the model's KV cache layers (None: every layer keeps every token)."""
    from transformers import DynamicCache

    windows = [int(layer.sliding_window) for layer in DynamicCache(config=model.config).layers
               if getattr(layer, "is_sliding", False)]
    return min(windows) if windows else None


def tidy(e: sympy.Expr) -> sympy.Expr:
    """A total as a polynomial where it is one: per-row sizes such as (32*T + 32)/(T + 1) cancel exactly."""
    if e.has(sympy.floor, sympy.ceiling):
        return e
    return sympy.expand(sympy.cancel(e))


def _check_decoder(model) -> None:
    if not hasattr(model, "config"):
        raise UsageError("--past and --generate need a decoder that takes a transformers KV cache (an hf: target, or "
                         "a file target returning a transformers model such as LlamaForCausalLM)")


def decode_step(model, batch, new_tokens, past, *, target: str = ""):
    """The ``ModelCost`` of one call on (batch, new_tokens) ids with ``past`` cached tokens (ints or symbols)."""
    from .tracing import trace

    _check_decoder(model)
    past = size_value(past, "--past")
    symbolic = isinstance(past, sympy.Basic)
    try:
        step = decode_step_module(model, past_limit=symbolic)
        window = sliding_window(model)
    except SymcostError:
        raise
    except (AttributeError, TypeError, ValueError, RuntimeError) as e:  # RuntimeError: .item() on meta
        from .tracing.meta_ops import meta_op

        if op := meta_op(e):  # an sdpa mask reading its values: eager attention may not (derive_decode retries)
            raise NeedsTensorValues(f"--past: the model calls {op}, which cannot run on meta tensors (its result "
                                    "depends on tensor values; symcost traces shapes only)") from None
        raise UsageError(f"--past: cannot build a KV cache for this model: {type(e).__name__}: {e}") from None
    # a window below symcost's usual trace sizes of T (225, 161 and a check above): traced around W/2 instead
    around = (window // 2,) if window is not None and symbolic and 66 <= window < 450 else None
    mc = trace(step, (batch, new_tokens, past), target=target, input_dtype="int64", default_shape=around)
    if window is not None and symbolic:  # beyond W - 1 cached tokens the sliding layers' cost stops growing
        t = next(s for s in mc.symbols if s.name == str(past))
        mc.domain = tuple(sorted(set(mc.domain) | {window - t}, key=sympy.default_sort_key))
        mc.notes.append(f"sliding-window cache layers (window {window}) keep the last {window - 1} tokens: the "
                        f"formula holds for {t} <= {window - 1} (refused above; give --past a number there)")
    return mc


def generation(model, batch, prompt, steps, convention: str = "flops", *, target: str = "") -> dict:
    """Prefill ``prompt`` tokens, then ``steps`` decode steps of one token: ``{"prefill", "decode", "total"}`` (each
    metric -> expression) and the derivations.  The decode part is the decode-step formula summed over
    T = prompt … prompt + steps - 1 in closed form; params and buffers are the model's, never summed."""
    from .tracing import trace

    _check_decoder(model)
    steps = size_value(steps, "--generate")
    prompt = size_value(prompt, "the prompt length")
    first = sympy.sympify(prompt)
    last = first + sympy.sympify(steps) - 1
    window = sliding_window(model)
    if window is not None and not (last.is_Integer and last <= window - 1):
        raise UsageError(f"--generate: the model's sliding-window cache layers (window {window}) keep the last "
                         f"{window - 1} tokens, so the decode steps have one formula up to {window - 1} cached tokens "
                         f"only: give a prompt and a number of steps with prompt + steps - 1 <= {window - 1}")
    prefill = trace(model, (batch, prompt), target=target, input_dtype="int64")
    step = decode_step(model, batch, 1, "T_cached", target=target)
    t = next(s for s in step.symbols if str(s) == "T_cached")
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
    out = {"prefill": pre, "decode": decode, "total": total, "step": per_step, "derivations": (prefill, step),
           "step_symbol": t, "first": first, "last": last}
    if not (first.free_symbols or last.free_symbols):
        check_steps(out, {})
    return out


def check_steps(g: dict, values: dict[str, int]) -> None:
    """The summed steps must each lie inside the step formula's domain: its sizes and size guards are checked at the
    first and the last cached length, T = prompt and prompt + steps - 1 (``values``: the other symbols' sizes by
    name); ``UsageError`` naming the step otherwise."""
    step = g["derivations"][-1]
    for end in (g["first"], g["last"]):
        cached = int(end.xreplace({s: sympy.Integer(values[str(s)]) for s in end.free_symbols}))
        point = {str(s): values[str(s)] for s in step.symbols if str(s) in values}
        point[str(g["step_symbol"])] = cached
        try:
            step.check_domain(point)
        except ValueError as e:
            raise UsageError(f"--generate: the decode step at {cached} cached tokens is outside the step formula's "
                             f"domain ({e}); --past N traces such a step on its own") from None
