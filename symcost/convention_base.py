"""The ``Convention`` class: one weight per primitive operation (see ``symcost.conventions`` for the presets).

Kept apart from the presets so that ``peers.py`` can build its conventions without importing the module that
registers them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import sympy

from .op_kinds import OP_KINDS
from .registry import check_names

if TYPE_CHECKING:
    from .cost import Cost

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
    #: count only the causal triangle of attention score and value products: a traced row's ``causal_skip``
    #: (the MACs above the diagonal, set by ``tracing.causal``) is taken off its MACs
    causal_attention: bool = False
    #: count every attention product of a causal module, forward and backward, as half of it (half the L x S
    #: square: Megatron-LM since 8873b55d): a traced row's ``causal_half`` is taken off its MACs
    causal_halved: bool = False

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
            check_names(table, f"convention {self.name!r}, {what} weights")

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
        terms = [(w[k], v) for k, v in cost.ops.items()]
        terms += [(w.get("reads", 0), cost.reads), (w.get("writes", 0), cost.writes)]
        if all(type(k) is int and v.is_Integer for k, v in terms):  # concrete sizes: the same Integer, in Python
            return sympy.Integer(sum(k * int(v) for k, v in terms))
        total = sympy.Add(*[w[k] * v for k, v in cost.ops.items()])
        return total + w.get("reads", 0) * cost.reads + w.get("writes", 0) * cost.writes

    def sees(self, row) -> bool:
        """Whether this convention counts a traced ``model.Row`` at all: a tool that hooks modules does not see a
        functional call (``x + y`` in a forward)."""
        return self.sees_functional or not row.functional

    def count_row(self, row) -> sympy.Expr:
        """A traced ``model.Row``'s FLOPs: 0 for a functional call this convention does not see, the causal
        triangle only for a causal attention product under a ``causal_attention`` convention."""
        if not self.sees(row):
            return sympy.Integer(0)
        flops = self.count(row.cost, row.functional)
        skip = getattr(row, "causal_skip", 0)
        if self.causal_attention and skip:
            flops -= self.weights_for(row.cost.family, row.cost.layer, row.functional)["mac"] * skip
        half = getattr(row, "causal_half", 0)
        if self.causal_halved and half:
            flops -= self.weights_for(row.cost.family, row.cost.layer, row.functional)["mac"] * half
        return flops

    def describe(self) -> str:
        parts = [f"{k}={w}" for k, w in self.weights.items()]
        return f"{self.name}: {self.summary} [{', '.join(parts)}] ({self.source})"


def weight_table(default: int, **overrides: int) -> dict[str, int]:
    w = {k: default for k in OP_KINDS}
    w.update(overrides)
    return w
