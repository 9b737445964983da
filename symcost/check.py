"""Symbolic vs empirical: the layer formula against the real torch module, exact equality."""
from __future__ import annotations

from dataclasses import dataclass, field

from .conventions import CONVENTIONS
from .cost import to_int


@dataclass
class CheckResult:
    layer: str
    input_shapes: list
    rows: list = field(default_factory=list)  # (quantity, symcost, torch, ok)

    @property
    def ok(self) -> bool:
        return all(r[3] for r in self.rows)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "input_shapes": self.input_shapes, "ok": self.ok,
                "rows": [{"quantity": q, "symcost": a, "torch": b, "equal": ok} for q, a, b, ok in self.rows]}

    def table(self) -> str:
        from .render import table

        body = [(q, _fmt(a), _fmt(b), "ok" if ok else "DIFFERENT") for q, a, b, ok in self.rows]
        verdict = "all equal" if self.ok else "MISMATCH"
        return f"{self.layer} on {' , '.join('x'.join(map(str, s)) for s in self.input_shapes)}: {verdict}\n" + \
            table(["quantity", "symcost", "pytorch", ""], body, {1, 2})


def _fmt(v) -> str:
    from .render import count

    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else count(v)


def check_layer(layer, shapes) -> CheckResult:
    """Build ``layer``'s torch module, run it on random inputs of ``shapes``, compare exactly."""
    from .empirical import measure

    cost = layer.cost(*shapes)
    flags = {a.name for a in layer.args if a.kind == "flag"}
    kwargs = {k: (bool(v) if k in flags else _plain(v)) for k, v in layer.values.items() if v is not None}
    train = kwargs.get("mode") == "train"
    integer_high = kwargs.get("num_embeddings")
    torch_shapes = [tuple(int(d) for d in s) for s in shapes]
    if layer.family == "attention" and len(torch_shapes) < 3:
        torch_shapes += [torch_shapes[-1]] * (3 - len(torch_shapes))  # q (k = v): self-attention
    real = measure(layer.torch_name, kwargs, torch_shapes, train=train, integer_high=integer_high)
    ours_shape = [to_int(d, "output size") for d in cost.output_shape]
    result = CheckResult(layer.name, [[int(d) for d in s] for s in shapes])
    pairs = [
        ("output shape", ours_shape, list(real.output_shape)),
        ("params (numel)", to_int(cost.params), real.params),
        ("buffers (numel)", to_int(cost.buffers), real.buffers),
        ("FLOPs[torch] vs FlopCounterMode", to_int(CONVENTIONS["torch"].count(cost)), real.flops),
    ]
    result.rows = [(q, a, b, a == b) for q, a, b in pairs]
    return result


def _plain(v):
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    if hasattr(v, "is_Integer") and v.is_Integer:
        return int(v)
    return v
