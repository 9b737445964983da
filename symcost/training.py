"""One training step's cost split into its forward and backward passes, and costs per token.

A derivation made with ``trace(..., backward=True)`` has rows of both passes (``Row.backward``); ``split`` gives
each pass as a ``ModelCost`` of its own, so every convention, ``evaluate`` and ``summary`` work on each part.
Nothing here imports torch.
"""
from __future__ import annotations

from dataclasses import replace

import sympy

from .errors import UsageError
from .model import ModelCost

#: metrics that scale with the tokens of a step; params and buffers do not, and are never divided
PER_TOKEN_METRICS = ("macs", "flops", "reads", "writes")


def split(mc: ModelCost) -> dict[str, ModelCost]:
    """``{"total": mc, "forward": …, "backward": …}``; without backward rows, only ``total`` and ``forward``.
    Parameters are counted in the forward part (the backward part reads the same ones)."""
    fwd = replace(mc, rows=[r for r in mc.rows if not r.backward])
    parts = {"total": mc, "forward": fwd}
    if any(r.backward for r in mc.rows):
        parts["backward"] = replace(mc, rows=[r for r in mc.rows if r.backward])
    return parts


def tokens(input_shape: tuple, named: dict | None = None) -> sympy.Expr:
    """Tokens in one step: batch x sequence length of a (B, L) token-id input (``named``: a derivation's named
    inputs, refused: which one's tokens to divide by is the user's choice, not symcost's)."""
    if named:
        raise UsageError(f"per-token counts divide by the tokens of one B x L input; with named inputs "
                         f"({', '.join(named)}) give one shape instead")
    if len(input_shape) != 2:
        raise UsageError(f"--per-token needs a token-id input of shape B x L, got rank {len(input_shape)} "
                         f"({'x'.join(map(str, input_shape))})")
    return sympy.Mul(*[sympy.sympify(d) for d in input_shape])


def per_token(total: dict, n_tokens: sympy.Expr) -> dict:
    """``total`` with the metrics that scale with tokens divided by ``n_tokens`` (exact rationals)."""
    return {m: sympy.cancel(v / n_tokens) if m in PER_TOKEN_METRICS else v for m, v in total.items()}


def exact(v: sympy.Expr):
    """An int, a "p/q" string for a rational that is not an integer, or the printed formula."""
    if v.is_Integer:
        return int(v)
    if v.is_Rational:
        return f"{v.p}/{v.q}"
    return sympy.sstr(v)
