"""Symbolic vs empirical: the layer formula against the real torch module, exact equality."""
from __future__ import annotations

from dataclasses import dataclass, field

from .conventions import CONVENTIONS
from .cost import to_int
from .errors import LayerError

#: what torch raises when it refuses arguments or inputs (a TypeError stays a bug: symcost built the call)
TORCH_REFUSALS = (RuntimeError, ValueError, IndexError, AssertionError, NotImplementedError)
#: bytes per element symcost budgets for a check's tensors: float32 inputs, outputs and weights, twice over for the
#: temporaries torch makes beside them
_BYTES_PER_ELEMENT = 8
#: the largest size torch takes (int64)
_MAX_SIZE = 2 ** 63 - 1


@dataclass
class CheckResult:
    layer: str
    input_shapes: list
    rows: list = field(default_factory=list)  # (quantity, symcost, torch, ok)
    #: torch's refusal of a configuration symcost counted (a difference: symcost should have refused it too)
    torch_refused: str = ""

    @property
    def ok(self) -> bool:
        return not self.torch_refused and all(r[3] for r in self.rows)

    def as_dict(self) -> dict:
        out = {"layer": self.layer, "input_shapes": self.input_shapes, "ok": self.ok,
               "rows": [{"quantity": q, "symcost": a, "torch": b, "equal": ok} for q, a, b, ok in self.rows]}
        if self.torch_refused:
            out["torch_refused"] = self.torch_refused
        return out

    def table(self) -> str:
        from .render import table

        if self.torch_refused:
            return (f"{self.layer} on {' , '.join('x'.join(map(str, s)) for s in self.input_shapes)}: MISMATCH: "
                    f"symcost counts this configuration but torch refuses it: {self.torch_refused}")
        body = [(q, _fmt(a), _fmt(b), "ok" if ok else "DIFFERENT") for q, a, b, ok in self.rows]
        verdict = "all equal" if self.ok else "MISMATCH"
        return f"{self.layer} on {' , '.join('x'.join(map(str, s)) for s in self.input_shapes)}: {verdict}\n" + \
            table(["quantity", "symcost", "pytorch", ""], body, {1, 2})


def _fmt(v) -> str:
    from .render import count

    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else count(v)


def first_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (torch appends a C++ stack)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def available_memory() -> int | None:
    """Bytes of memory this process could still allocate (Linux's MemAvailable, else free pages), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _refuse_unrunnable(layer, shapes, cost) -> None:
    """Refuse sizes torch cannot hold (past int64) or this machine cannot allocate, before torch tries: an
    allocation the system grants lazily would be killed midway instead of raising."""
    from .render import si

    for s in shapes:
        if any(int(d) > _MAX_SIZE for d in s):
            raise LayerError(f"{layer.name}: input {'x'.join(map(str, s))} has a size past torch's largest "
                             f"({_MAX_SIZE}); `symcost eval` gives its numbers without running torch")
    import math

    # the random inputs, the weights and the output torch allocates (a view's cost reads and writes nothing)
    elements = sum(math.prod(int(d) for d in s) for s in shapes) + to_int(cost.params) + to_int(cost.buffers) + \
        math.prod(to_int(d) for d in cost.output_shape)
    need, have = elements * _BYTES_PER_ELEMENT, available_memory()
    if need > _MAX_SIZE or (have is not None and need > have):
        where = f"more than the {si(have, 'B')} available" if have is not None and need <= _MAX_SIZE else \
            "more than any machine holds"
        raise LayerError(f"{layer.name}: running torch on these sizes needs about {si(need, 'B')}, {where}; "
                         "`symcost eval` gives the numbers without running torch")


def check_layer(layer, shapes) -> CheckResult:
    """Build ``layer``'s torch module, run it on random inputs of ``shapes``, compare exactly.

    Sizes torch cannot hold or this machine cannot allocate raise ``LayerError``; a configuration torch refuses
    (which symcost counted) is a difference: ``CheckResult.torch_refused`` names torch's reason."""
    from .empirical import measure

    cost = layer.cost(*shapes)
    _refuse_unrunnable(layer, shapes, cost)
    flags = {a.name for a in layer.args if a.kind == "flag"}
    kwargs = {k: (bool(v) if k in flags else _plain(v)) for k, v in layer.values.items() if v is not None}
    torch_name, kwargs = torch_call(layer.torch_name, kwargs)
    train = kwargs.get("mode") == "train"
    integer_high = kwargs.get("num_embeddings")
    torch_shapes = [tuple(int(d) for d in s) for s in shapes]
    if layer.family == "attention" and len(torch_shapes) < 3:
        torch_shapes += [torch_shapes[-1]] * (3 - len(torch_shapes))  # q (k = v): self-attention
    result = CheckResult(layer.name, [[int(d) for d in s] for s in shapes])
    try:
        real = measure(torch_name, kwargs, torch_shapes, train=train, integer_high=integer_high)
    except MemoryError as e:
        raise LayerError(f"{layer.name}: torch could not allocate these sizes ({first_line(e)}); "
                         "`symcost eval` gives the numbers without running torch") from None
    except TORCH_REFUSALS as e:
        if "can't allocate memory" in str(e) or "out of memory" in str(e):
            raise LayerError(f"{layer.name}: torch could not allocate these sizes ({first_line(e)}); "
                             "`symcost eval` gives the numbers without running torch") from None
        result.torch_refused = first_line(e)
        return result
    ours_shape = [to_int(d, "output size") for d in cost.output_shape]
    pairs = [
        ("output shape", ours_shape, list(real.output_shape)),
        ("params (numel)", to_int(cost.params), real.params),
        ("buffers (numel)", to_int(cost.buffers), real.buffers),
        ("FLOPs[torch] vs FlopCounterMode", to_int(CONVENTIONS["torch"].count(cost)), real.flops),
    ]
    result.rows = [(q, a, b, a == b) for q, a, b in pairs]
    return result


#: catalog flags that pick a sibling torch function: (flag, value) -> the torch name called instead
_SIBLINGS = {("divide", True): "torch.addcdiv", ("product", True): "torch.cumprod"}


def torch_call(torch_name: str, kwargs: dict) -> tuple[str, dict]:
    """The torch callable a layer's arguments name, and the arguments it takes: a catalog flag that picks a sibling
    (addcdiv, cumprod, var_mean) is not passed on, and antialiasing is F.interpolate's (nn.Upsample has none)."""
    kwargs = dict(kwargs)
    for (flag, value), sibling in _SIBLINGS.items():
        if flag in kwargs and kwargs.pop(flag) == value:
            torch_name = sibling
    if kwargs.pop("with_mean", False):
        torch_name += "_mean"
    if "with_values" in kwargs:  # max/min along a dim: the same comparisons, the values written beside
        if kwargs.pop("with_values"):
            torch_name = "torch.max"
    if torch_name == "torch.nn.Upsample" and "antialias" in kwargs:
        torch_name = "torch.nn.functional.interpolate"
    return torch_name, kwargs


def _plain(v):
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    if hasattr(v, "is_Integer") and v.is_Integer:
        return int(v)
    return v
