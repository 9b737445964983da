"""Counting conventions: how many "FLOPs" each primitive operation is worth.

A layer reports primitive counts (``Cost.ops``: mac, dot, bias, add, mul, div,
cmp, fn).  A ``Convention`` is one weight per kind, written down in one place,
so two numbers computed under different conventions can never be mixed up:
every number symcost prints carries its convention's name.
"""
from __future__ import annotations

from .convention_base import ELEMENT_KINDS, Convention, weight_table  # noqa: F401  (re-exported)
from .errors import unknown_convention
from .peers import PEER_CONVENTIONS

CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            "macs",
            "one per multiply-accumulate; nothing else counts",
            "torchvision weight metadata (_ops), ResNet and MobileNet papers",
            weight_table(0, mac=1),
        ),
        Convention(
            "flops",
            "two per multiply-accumulate, one per bias add and per elementwise operation of norms, activations, pooling",
            "the common 'a MAC is two FLOPs' reading (seed 002)",
            weight_table(1, mac=2, dot=0),
        ),
        Convention(
            "exact",
            "every elementary operation once; a length-n sum is n-1 additions, a bias one more",
            "seeds 000 and 002: (2*K_h*K_w*C_in - 1) per output without bias, 2*K_h*K_w*C_in with",
            weight_table(1, mac=2, dot=-1),
        ),
        Convention(
            "mults",
            "multiplications only (a MAC's multiply, squares, scales); no additions, divisions or comparisons",
            "seed 004: conv 32*64*4*40, BN in training 2 multiplications per element",
            weight_table(0, mac=1, mul=1),
        ),
        Convention(
            "torch",
            "what torch.utils.flop_counter.FlopCounterMode reports: 2 per MAC of conv, mm/addmm/bmm and attention; "
            "bias adds, norms, activations and pooling count 0",
            "torch/utils/flop_counter.py",
            weight_table(0, mac=2),
        ),
        Convention(
            "torch-causal",
            "as torch, but the score and value products of causal attention (modules with is_causal=True) count "
            "only the causal triangle: L*S - L*(L-1)/2 query-key pairs per head (L(L+1)/2 when S = L) instead of "
            "L*S, the work a causal kernel does (FlashAttention-style MFU reports halve L*L instead, L*L/2); forward products only",
            "FlashAttention benchmarks' causal FLOPs; symcost.tracing.causal",
            weight_table(0, mac=2),
            causal_attention=True,
        ),
        Convention(
            "megatron",
            "as torch, but every score and value product of causal attention (modules with is_causal=True) over its "
            "L x L square, forward and backward, counts half of it, as Megatron-LM's num_floating_point_operations "
            "has since its 2025-03 change (6*l*q*s per token for attention instead of 12*l*q*s); new tokens over a "
            "KV cache in full",
            "Megatron-LM megatron/training/training.py, commit 8873b55d (2025-03-06); symcost.tracing.causal",
            weight_table(0, mac=2),
            causal_halved=True,
        ),
        Convention(
            "fritz",
            "the Fritz AI / Core ML benchmark table of seed 001: a convolution counts one per MAC plus its bias add, "
            "a dense layer two per MAC plus its bias add, batch norm a multiply and an add per element",
            "seed 001 (conv2d 0.92, batch_normalization 0.07, dense 2.82 MFLOPS, 1 MFLOPS = 10**6)",
            weight_table(1, mac=2, dot=0),
            {"conv": {"mac": 1}},
        ),
    )
}


#: the conventions symcost defines itself (and torch-causal, which differs from torch on attention only); the rest
#: reproduce a seed document or a peer tool
CORE = ("macs", "flops", "exact", "mults", "torch")


def get_convention(name: str) -> Convention:
    """The convention of that name (``UnknownConvention``, a ``UsageError``, naming the closest otherwise)."""
    try:
        return CONVENTIONS[name]
    except (KeyError, TypeError):
        raise unknown_convention(name, CONVENTIONS) from None


def as_convention(convention: str | Convention) -> Convention:
    """How every function taking ``convention=`` reads it: a ``Convention`` as given (one a user made too), a name
    looked up."""
    return convention if isinstance(convention, Convention) else get_convention(convention)


def report_convention(convention: str | Convention, generation: bool = False) -> tuple[Convention, dict]:
    """The convention a report weighs (a name, or a ``Convention`` -- one a user made too) and the conventions its
    totals and notes are keyed by: symcost's own, and a user's under its own name, which must not be one of
    symcost's (``UsageError``: two different weightings would share a name).  ``generation``: a generation's sums,
    stored under symcost's conventions only, refuse one of the user's."""
    from .errors import UsageError

    conv = as_convention(convention)
    known = CONVENTIONS.get(conv.name)
    if known is None and generation:
        raise UsageError(f"convention {conv.name!r} is your own: a generation's sums are stored under symcost's "
                         "conventions only; a forward pass, a training step, a decode step (--past) and a config "
                         "formula are weighed with yours")
    if known is None:
        return conv, {**CONVENTIONS, conv.name: conv}
    if known != conv:
        raise UsageError(f"a convention named {conv.name!r} that weighs differently from symcost's own "
                         f"{conv.name!r}: give yours a name of its own")
    return known, CONVENTIONS


def convention_name(convention: str | Convention) -> str:
    """The name totals are stored under (``Summary``, ``ConfigCost``), for a ``Convention`` or a name."""
    return convention.name if isinstance(convention, Convention) else convention


CONVENTIONS.update(PEER_CONVENTIONS)


def notes_for(notes, convention: str, conventions) -> list[str]:
    """``notes`` as shown under ``convention``: each once, and a note about one of the ``conventions`` (names;
    ``"torch-causal: …"``) only under that convention."""
    return [n for n in dict.fromkeys(notes)
            if not (n.split(":", 1)[0] in conventions and n.split(":", 1)[0] != convention)]
