"""What ``symcost.memory`` returns: each heading's bytes as formulas (``Memory``), the dtypes and optimizers it takes."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError

#: --dtype -> the dtype the model and its floating-point inputs are cast to; "mixed" keeps fp32 master weights
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "mixed": "bfloat16"}
OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class Memory:
    """Formulas (sympy, bytes) of one forward or training step; ``at`` evaluates them, ``fit`` solves the peak."""

    target: str
    input_shape: tuple
    dtype: str
    backward: bool
    parts: dict                   # heading -> formula
    peaks: list                   # (op label, formula of the live bytes there): the peak is their Max
    resident: object              # optimizer states + master weights: held through the whole step
    domain: tuple = ()            # sizes that must be >= 1 where the formulas hold
    notes: list = field(default_factory=list)
    checked_at: list = field(default_factory=list)   # assignments the formulas were verified at
    flops: dict = field(default_factory=dict)   # with checkpointing: the step's FLOPs with and without, the extra
    #: a training step's saved activations by the innermost module running when autograd saved each storage
    saved_by_module: dict = field(default_factory=dict)
    #: the recorded step's ops and its live bytes after any of them (``derive.Positions``), not shown
    positions: object = field(default=None, repr=False, compare=False)

    @property
    def symbols(self) -> tuple:
        import sympy

        found = set().union(*(sympy.sympify(e).free_symbols for e in self.parts.values()),
                            *(e.free_symbols for _, e in self.peaks), *(d.free_symbols for d in self.domain))
        return tuple(sorted(found, key=str))

    @property
    def peak(self):
        """The peak of live bytes over the step, optimizer states and master weights included (they are held
        throughout); a ``Max`` where no one position holds the most at every size."""
        import sympy

        step = self.peaks[0][1] if len(self.peaks) == 1 else sympy.Max(*[e for _, e in self.peaks])
        return step + self.resident

    def at(self, values: dict) -> dict:
        """Every heading, the peak and the op where it occurs, as integers at ``values`` (symbol name -> int)."""
        import sympy

        subs = {s: sympy.Integer(int(values[str(s)])) for s in self.symbols}
        missing = [str(s) for s in self.symbols if str(s) not in values]
        if missing:
            raise UsageError(f"no value for {', '.join(missing)}")
        for d in self.domain:
            if int(d.xreplace(subs)) < 1:
                from ..export.formulas import text

                raise UsageError(f"{', '.join(f'{k}={v}' for k, v in values.items())} is outside the formulas' domain "
                                 f"({text(d)} >= 1); derive at that size with numbers in the input shape")
        out = {k: int(sympy.sympify(e).xreplace(subs)) for k, e in self.parts.items()}
        best = None
        for label, e in self.peaks:
            v = int(e.xreplace(subs))
            if best is None or v > best[0]:
                best = (v, label)
        out["peak"] = best[0] + int(sympy.sympify(self.resident).xreplace(subs))
        out["peak_op"] = best[1]
        for k, e in self.flops.items():
            out[k] = int(sympy.sympify(e).xreplace(subs))
        if self.saved_by_module:
            out["saved_by_module"] = {m: int(e.xreplace(subs)) for m, e in self.saved_by_module.items()}
        return out

    def fit(self, symbol: str, budget: int, values: dict) -> dict:
        from .fit import fit

        return fit(self, symbol, budget, values)

    def as_dict(self) -> dict:
        import sympy

        from ..export.formulas import text

        out = {"target": self.target, "input_shape": [str(d) for d in self.input_shape], "dtype": self.dtype,
               "step": "forward+backward" if self.backward else
               "decode step (no_grad)" if "kv_cache" in self.parts else "forward (no_grad)"}
        def shown(e):  # a number as a JSON integer, a formula as its text
            e = sympy.sympify(e)
            return int(e) if e.is_Integer else text(e)

        out["bytes"] = {k: shown(e) for k, e in self.parts.items()}
        out["bytes"]["peak"] = shown(self.peak)
        out["peak_candidates"] = [{"op": label, "live_bytes": shown(e)} for label, e in self.peaks]
        if self.flops:
            out["flops"] = {k: shown(e) for k, e in self.flops.items()}
        if self.saved_by_module:
            out["saved_by_module"] = {m or "(model)": shown(e) for m, e in self.saved_by_module.items()}
        out["domain"] = [f"{text(d)} >= 1" for d in self.domain]
        out["checked_at"] = [{str(k): int(v) for k, v in p.items()} for p in self.checked_at]
        out["notes"] = list(self.notes)
        return out
