r"""Which traced matmuls are the score and value products of *causal* attention (for ``torch-causal``).

On meta tensors a mask has no values, so the trace alone cannot tell a causal mask from any other.  symcost takes
the model's own word for it: a module whose ``is_causal`` attribute is True (every Hugging Face attention module
has one: True in decoder self-attention, False in encoders and cross-attention).  Inside such a module, in
execution order, a matmul whose output $(\ast, L, S)$ is the input of a softmax over $(\ast, L, S)$ is the score
product $Q K^T$, and the next matmul whose first input is $(\ast, L, S)$ is the value product $A V$.

Query $i$ (of $L$, the last $L$ of the $S \ge L$ positions, as with a KV cache) sees keys $0 \dots S-L+i$:
$L S - L(L-1)/2$ pairs per slice ($L(L+1)/2$ when $S = L$), so a causal kernel skips $L(L-1)/2$ of the $L S$
pairs, each worth $E$ MACs in $Q K^T$ and $E_v$ in $A V$: ``Row.causal_skip`` $= \text{slices} \cdot L(L-1)/2
\cdot E$.  Backward products are not marked for that (counted in full).

For ``megatron`` (half of every causal attention product over an $L \times L$ square, forward and backward:
Megatron-LM since 2025-03; new tokens over a KV cache are no square and stay whole) each of the two products gets
``Row.causal_half`` $=$ half its MACs, and so do their gradients: a backward step has no
module, so the gradients of $y = a b$ ($a$: $(\ast, m, k)$, $b$: $(\ast, k, n)$) are found by their shapes,
$g\,b^T$ on $((\ast, m, n), (\ast, n, k))$ and $a^T g$ on $((\ast, k, m), (\ast, m, n))$, one backward row for
each; where one is missing none of the backward is halved, and a note says so.
"""
from __future__ import annotations

import sympy

from ..cost import numel

_MATMULS = ("bmm", "matmul")


def _owner(model, row_name: str):
    name = row_name.split(":", 1)[0]
    try:
        return model.get_submodule(name) if name and name != "(model)" else model
    except AttributeError:
        return None


def _sliding(model, owner) -> bool:
    """Whether the attention module masks a sliding window: its own ``sliding_window``, or the model config's
    (every layer when the config has no ``layer_types``, as Mistral; else the module's layer's type)."""
    if getattr(owner, "sliding_window", None):
        return True
    cfg = getattr(model, "config", None)
    if not getattr(cfg, "sliding_window", None) or getattr(cfg, "use_sliding_window", True) is False:
        return False
    types = getattr(cfg, "layer_types", None)
    if types is None:
        return True
    idx = getattr(owner, "layer_idx", None)
    return isinstance(idx, int) and idx < len(types) and types[idx] == "sliding_attention"


def mark(model, rows: list) -> list[str]:
    """Set ``causal_skip`` on the causal attention products among ``rows``; notes on what was marked."""
    marked = windowed = unsquare = 0
    halved: list = []
    notes: list[str] = []
    for k, row in enumerate(rows):
        if row.backward or row.layer != "softmax" or not row.functional:
            continue
        owner = _owner(model, row.name)
        if getattr(owner, "is_causal", None) is not True:
            continue
        if _sliding(model, owner):  # a band past the window, not a triangle: not derived
            windowed += 1
            continue
        scores = tuple(row.input_shapes[0])[-2:]
        prefix = row.name.split(":", 1)[0] + ":"
        before = [r for r in rows[:k] if r.name.startswith(prefix) and r.layer in _MATMULS]
        after = [r for r in rows[k + 1:] if r.name.startswith(prefix) and r.layer in _MATMULS]
        if not before or not after:
            continue
        qk, av = before[-1], after[0]
        if tuple(qk.cost.output_shape)[-2:] != scores or tuple(av.input_shapes[0])[-2:] != scores:
            continue
        q_len, kv_len = scores
        if sympy.simplify(kv_len - q_len).is_negative:
            continue
        above = q_len * (q_len - 1) / 2
        qk.causal_skip = sympy.expand(numel(qk.cost.output_shape[:-2]) * above * qk.input_shapes[0][-1])
        av.causal_skip = sympy.expand(numel(av.input_shapes[0][:-2]) * above * av.input_shapes[1][-1])
        marked += 1
        if sympy.expand(kv_len - q_len) != 0:   # queries over a KV cache: Megatron's formula counts an s x s square
            unsquare += 1
            continue
        for product in (qk, av):
            _halve(product)
            halved.append(product)
    missing = _halve_gradients(rows, halved)
    notes += missing
    notes += [f"torch-causal: {windowed} attention calls with a sliding window are counted in full (all L*S pairs, "
             "as torch counts them): past the window a causal kernel computes a band, which symcost does not derive"
             ] if windowed else []
    if windowed:
        notes.append(f"megatron: {windowed} attention calls with a sliding window are counted in full")
    if unsquare:
        notes.append(f"megatron: {unsquare} attention calls of new tokens over a KV cache (L queries, S > L keys) are "
                     "counted in full: Megatron's formula halves the s x s square of a training step only")
    if not marked:
        return notes
    backward = any(r.backward for r in rows)
    notes.append(f"torch-causal: {marked} attention calls of modules with is_causal=True counted as the causal "
                 "triangle (L*S - L*(L-1)/2 query-key pairs per head, L(L+1)/2 when S = L); megatron counts half of "
                 "an L x L square, every other convention all L*S" + (" (backward products in full)" if backward else ""))
    if marked > unsquare:
        gradients = backward and not missing
        notes.append(f"megatron: {marked - unsquare} attention calls of modules with is_causal=True counted as half "
                     "of their L*L query-key pairs (L*L/2 per head), as Megatron-LM does since 2025-03"
                     + (" (their backward products too)" if gradients else ""))
    return notes

def _gradient_shapes(row) -> list[tuple]:
    """The (input shapes, output shape) of the two backward products of the forward product ``row``."""
    a, b = (tuple(s) for s in row.input_shapes[:2])
    lead, (m, k), n = a[:-2], a[-2:], b[-1]
    return [(((*lead, m, n), (*lead, n, k)), (*lead, m, k)), (((*lead, k, m), (*lead, m, n)), (*lead, k, n))]


def _halve_gradients(rows: list, halved: list) -> list[str]:
    """Mark the backward products of the forward products ``halved`` (``megatron``); a note if any is missing."""
    if not halved or not any(r.backward for r in rows):
        return []
    pool = [r for r in rows if r.backward and r.layer in _MATMULS + ("mm",) and not r.causal_half]
    found = []
    for product in halved:
        for want in _gradient_shapes(product):
            match = next((r for r in pool if (tuple(map(tuple, r.input_shapes[:2])), tuple(r.cost.output_shape))
                          == want), None)
            if match is None:
                return ["megatron: the backward products of causal attention were not all found by their shapes: "
                        "the backward counts them in full"]
            pool.remove(match)
            found.append(match)
    for r in found:
        _halve(r)
    return []


def _halve(row) -> None:
    """Mark ``row`` as counted half under ``megatron``: half of its MACs come off."""
    row.causal_half = sympy.expand(sympy.sympify(row.cost.macs) / 2)
