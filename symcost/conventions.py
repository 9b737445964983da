"""Counting conventions: how many "FLOPs" each primitive operation is worth.

A layer reports primitive counts (``Cost.ops``: mac, dot, bias, add, mul, div,
cmp, fn).  A ``Convention`` is one weight per kind, written down in one place,
so two numbers computed under different conventions can never be mixed up:
every number symcost prints carries its convention's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import sympy

from .cost import OP_KINDS, Cost

#: element counts a convention may weigh besides the operations, in ``family_weights`` and ``functional_weights``
#: only: peer tools whose rule is "one per input element" or "one per output element" (a pooling layer's input,
#: an activation's output) rather than per operation.  ``Cost.reads`` and ``Cost.writes``, as the layer reports them.
ELEMENT_KINDS: dict[str, str] = {
    "reads": "elements read (the inputs, plus any weights and buffers)",
    "writes": "elements written (the outputs)",
}


@dataclass(frozen=True)
class Convention:
    name: str
    summary: str
    source: str
    weights: Mapping[str, int]
    #: per layer name or family ("conv2d", "norm"), weights that replace the defaults: peer tools count
    #: layer types differently.  A layer name wins over its family.
    family_weights: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: whether functional calls outside modules (a residual ``x + y``) are seen; module-hook tools see none
    sees_functional: bool = True
    #: per layer name or family, weights for a *functional* call (outside any catalogued module, e.g. ``F.relu(x)``)
    #: that replace ``family_weights`` for it: a tool that hooks modules and also patches ``torch.nn.functional``
    #: counts ``nn.ReLU`` twice (its hook, then the patched ``F.relu`` inside its forward) but ``F.relu`` once
    functional_weights: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = set(OP_KINDS) - set(self.weights)
        if missing:  # every kind must be weighed on purpose, never zero by omission
            raise ValueError(f"convention {self.name!r} does not weigh {sorted(missing)}")
        known = set(OP_KINDS) | set(ELEMENT_KINDS)
        for what, table in (("family", self.family_weights), ("functional", self.functional_weights)):
            for fam, w in table.items():
                if set(w) - known:
                    raise ValueError(f"convention {self.name!r}, {what} {fam!r}: "
                                     f"unknown kinds {sorted(set(w) - known)}")

    def weights_for(self, family: str, layer: str = "", functional: bool = False) -> Mapping[str, int]:
        tables = (self.functional_weights, self.family_weights) if functional else (self.family_weights,)
        for table in tables:
            for key in (layer, family):
                if key and key in table:
                    return {**self.weights, **table[key]}
        return self.weights

    def count(self, cost: Cost, functional: bool = False) -> sympy.Expr:
        """The cost's FLOPs under this convention, as a sympy expression (``functional``: the call was made
        outside any catalogued module, see ``functional_weights``)."""
        if (self.family_weights or self.functional_weights) and (cost.family == "mixed" or not cost.layer):
            raise ValueError(f"convention {self.name!r} weighs layer families differently: "
                             "count each layer, then add the counts")
        w = self.weights_for(cost.family, cost.layer, functional)
        total = sympy.Add(*[w[k] * v for k, v in cost.ops.items()])
        return total + w.get("reads", 0) * cost.reads + w.get("writes", 0) * cost.writes

    def describe(self) -> str:
        parts = [f"{k}={w}" for k, w in self.weights.items()]
        return f"{self.name}: {self.summary} [{', '.join(parts)}] ({self.source})"


def _weights(default: int, **overrides: int) -> dict[str, int]:
    w = {k: default for k in OP_KINDS}
    w.update(overrides)
    return w


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            "macs",
            "one per multiply-accumulate; nothing else counts",
            "torchvision weight metadata (_ops), ResNet and MobileNet papers",
            _weights(0, mac=1),
        ),
        Convention(
            "flops",
            "two per multiply-accumulate, one per bias add and per elementwise operation of norms, activations, pooling",
            "the common 'a MAC is two FLOPs' reading (seed 002)",
            _weights(1, mac=2, dot=0),
        ),
        Convention(
            "exact",
            "every elementary operation once; a length-n sum is n-1 additions, a bias one more",
            "seeds 000 and 002: (2*K_h*K_w*C_in - 1) per output without bias, 2*K_h*K_w*C_in with",
            _weights(1, mac=2, dot=-1),
        ),
        Convention(
            "mults",
            "multiplications only (a MAC's multiply, squares, scales); no additions, divisions or comparisons",
            "seed 004: conv 32*64*4*40, BN in training 2 multiplications per element",
            _weights(0, mac=1, mul=1),
        ),
        Convention(
            "torch",
            "what torch.utils.flop_counter.FlopCounterMode reports: 2 per MAC of conv, mm/addmm/bmm and attention; "
            "bias adds, norms, activations and pooling count 0",
            "torch/utils/flop_counter.py",
            _weights(0, mac=2),
        ),
        Convention(
            "fritz",
            "the Fritz AI / Core ML benchmark table of seed 001: a convolution counts one per MAC plus its bias add, "
            "a dense layer two per MAC plus its bias add, batch norm a multiply and an add per element",
            "seed 001 (conv2d 0.92, batch_normalization 0.07, dense 2.82 MFLOPS, 1 MFLOPS = 10**6)",
            _weights(1, mac=2, dot=0),
            {"conv": {"mac": 1}},
        ),
    )
}


#: the conventions symcost defines itself; the rest reproduce a seed document or a peer tool
CORE = ("macs", "flops", "exact", "mults", "torch")


def get_convention(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown convention {name!r}; choose one of: {', '.join(CONVENTIONS)}") from None


from .peers import PEER_CONVENTIONS  # noqa: E402

CONVENTIONS.update(PEER_CONVENTIONS)
